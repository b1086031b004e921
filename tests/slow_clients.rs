//! Slow and misbehaving clients, through the real binary: a connection that sends no request,
//! or sends its request head a byte at a time, is closed at `basic.client_header_timeout`; a
//! client that stops reading a response is cut off at `basic.send_timeout` and the upstream
//! connection is released; `max_connections` holds further connections back until one closes;
//! pipelined HTTP/1.1 requests are all answered, in order, on the same connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::backend::Echo;
use common::{Backend, Pingap, check_config, eventually, get};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The header timeout of these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// An early closure this much before the configured time is a failure (timers are not exact).
const SLACK: Duration = Duration::from_millis(100);

/// The longest any expected closure or response may take, on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// A configuration with `[basic]` lines `basic`, one upstream and one location, and server
/// `main` (plus the `extra` text, e.g. more servers or `main`'s own keys).
fn config(basic: &str, upstream: SocketAddr, main: &str, extra: &str) -> String {
    format!(
        "[basic]\n{basic}\n\
         [upstreams.api]\naddrs = ['{upstream}']\n\
         [locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n{main}\n{extra}"
    )
}

/// Reads from `socket` until the peer closes it (EOF or an error such as a reset), at most
/// until `DEADLINE` after `since`; returns how long after `since` it closed and what was read.
async fn wait_closed(socket: &mut (impl AsyncRead + Unpin), since: Instant) -> (Duration, Vec<u8>) {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(DEADLINE.saturating_sub(since.elapsed()), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match closed {
        Ok(after) => (after, received),
        Err(_) => panic!(
            "the connection is still open after {DEADLINE:?}; received {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
}

/// One HTTP/1.1 response: its head and its body (de-chunked).
struct Response {
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn echo(&self) -> Echo {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response from `socket`; `buf` holds bytes read before and keeps those read past
/// the response (the start of the next one).
async fn read_response(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Response {
    async fn fill(socket: &mut TcpStream, buf: &mut Vec<u8>, needed: usize) {
        let mut chunk = vec![0u8; 64 * 1024];
        while buf.len() < needed {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the connection closed mid-response: {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    async fn line(socket: &mut TcpStream, buf: &mut Vec<u8>, from: usize) -> usize {
        loop {
            if let Some(at) = buf[from..].windows(2).position(|w| w == b"\r\n") {
                return from + at;
            }
            fill(socket, buf, buf.len() + 1).await;
        }
    }
    tokio::time::timeout(DEADLINE, async {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            fill(socket, buf, buf.len() + 1).await;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut response = Response {
            head,
            body: Vec::new(),
        };
        let mut at = head_end + 4;
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let end = line(socket, buf, at).await;
                let size_text = String::from_utf8_lossy(&buf[at..end]).to_string();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
                at = end + 2;
                fill(socket, buf, at + size + 2).await;
                response.body.extend_from_slice(&buf[at..at + size]);
                at += size + 2;
                if size == 0 {
                    break;
                }
            }
        } else {
            let len: usize = response
                .header("content-length")
                .map_or(0, |v| v.parse().unwrap());
            fill(socket, buf, at + len).await;
            response.body = buf[at..at + len].to_vec();
            at += len;
        }
        buf.drain(..at);
        response
    })
    .await
    .expect("a response within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_at_the_header_timeout() {
    let backend = Backend::start("b").await;
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/certs");
    let pingap = Pingap::start(&config(
        "client_header_timeout = '1s'",
        backend.addr,
        "",
        &format!(
            "[servers.h2c]\naddr = '127.0.0.1:0'\nlocations = ['api']\nh2c = true\n\
             [servers.secure]\naddr = '127.0.0.1:0'\nlocations = ['api']\n\
             tls_cert = '{}'\ntls_key = '{}'\n",
            certs.join("example.crt").display(),
            certs.join("example.key").display()
        ),
    ));
    // A plain HTTP/1 listener, one that first looks for the h2c preface, and a TLS one (whose
    // handshake has the same time).
    let silent = ["main", "h2c", "secure"].map(|server| {
        let addr = pingap.addr(server);
        tokio::spawn(async move {
            let since = Instant::now();
            let mut socket = TcpStream::connect(addr).await.unwrap();
            let (after, received) = wait_closed(&mut socket, since).await;
            (server, after, received)
        })
    });
    for task in silent {
        let (server, after, received) = task.await.unwrap();
        assert!(received.is_empty(), "{server}: {received:?}");
        assert!(
            after >= HEADER_TIMEOUT - SLACK,
            "{server}: closed after {after:?}, before the header timeout"
        );
    }
    // And the listeners keep serving.
    let response = get(&pingap.url("main", "/after"), &[]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(
        "client_header_timeout = '1s'",
        backend.addr,
        "",
        "",
    ));
    let since = Instant::now();
    let socket = TcpStream::connect(pingap.addr("main")).await.unwrap();
    let (mut reader, mut writer) = socket.into_split();
    // One byte every 200 ms, with no end in sight: 40 s of head.
    let mut head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(200, b'a');
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(200));
            for byte in head {
                ticks.tick().await;
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let (after, received) = wait_closed(&mut reader, since).await;
    let sent = sent.load(Ordering::SeqCst);
    sender.abort();
    assert!(after >= HEADER_TIMEOUT - SLACK, "closed after {after:?}");
    assert!(
        (4..40).contains(&sent),
        "closed after {sent} bytes, in {after:?}"
    );
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.starts_with("HTTP/1.1 408"),
        "an incomplete head is answered 408: {received:?}"
    );
    assert_eq!(backend.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_kept_alive_connection_the_header_timeout_starts_with_the_request() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(
        "client_header_timeout = '1s'\nkeepalive_timeout = '30s'",
        backend.addr,
        "",
        "",
    ));
    let mut socket = TcpStream::connect(pingap.addr("main")).await.unwrap();
    let mut buf = Vec::new();
    socket
        .write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut socket, &mut buf).await.status(), 200);
    // Idle for longer than the header timeout: governed by keepalive_timeout, so the
    // connection stays and the next request is served.
    tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(500)).await;
    socket
        .write_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let second = read_response(&mut socket, &mut buf).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.echo().path, "/second");
    // A third head trickled in is cut off a header timeout after its first byte.
    socket.write_all(b"GET /thi").await.unwrap();
    let since = Instant::now();
    let (after, received) = wait_closed(&mut socket, since).await;
    assert!(after >= HEADER_TIMEOUT - SLACK, "closed after {after:?}");
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 408"),
        "{received:?}"
    );
}

/// What the streaming backend saw of its big response.
#[derive(Default)]
struct Stream {
    /// Body bytes handed to the connection.
    produced: AtomicUsize,
    /// Whether the body was sent to its end.
    finished: AtomicBool,
    /// Whether the body was dropped before its end (the proxy let the connection go).
    dropped: AtomicBool,
    dropped_event: Notify,
}

/// Sets [`Stream::dropped`] when the body is dropped unfinished.
struct DropGuard {
    stream: Arc<Stream>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.stream.finished.load(Ordering::SeqCst) {
            self.stream.dropped.store(true, Ordering::SeqCst);
            self.stream.dropped_event.notify_waiters();
        }
    }
}

/// A backend answering `/big` with `len` bytes streamed in 64 KiB chunks, and anything else
/// with `ok`.
async fn streaming_backend(len: usize) -> (SocketAddr, Arc<Stream>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stream = Arc::new(Stream::default());
    let seen = stream.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let stream = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let stream = stream.clone();
                    async move {
                        let body: BoxBody<Bytes, Infallible> = if req.uri().path() == "/big" {
                            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                            let guard = DropGuard { stream };
                            let frames = futures_util::stream::unfold(
                                (guard, 0usize),
                                move |(guard, sent)| {
                                    let chunk = chunk.clone();
                                    async move {
                                        if sent >= len {
                                            guard.stream.finished.store(true, Ordering::SeqCst);
                                            return None;
                                        }
                                        let size = chunk.len().min(len - sent);
                                        guard.stream.produced.fetch_add(size, Ordering::SeqCst);
                                        let frame = hyper::body::Frame::data(chunk.slice(..size));
                                        Some((Ok::<_, Infallible>(frame), (guard, sent + size)))
                                    }
                                },
                            );
                            StreamBody::new(frames).boxed()
                        } else {
                            Full::new(Bytes::from_static(b"ok")).boxed()
                        };
                        Ok::<_, Infallible>(hyper::Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (addr, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_at_the_send_timeout() {
    const BIG: usize = 64 << 20;
    let (upstream, stream) = streaming_backend(BIG).await;
    let pingap = Pingap::start(&config("send_timeout = '1s'", upstream, "", ""));
    let mut client = TcpStream::connect(pingap.addr("main")).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The response flows until the buffers between the backend and this client are full.
    assert!(
        eventually(DEADLINE, || stream.produced.load(Ordering::SeqCst)
            >= 1 << 20)
        .await,
        "the backend streams"
    );
    // Other clients are served meanwhile.
    let response = get(&pingap.url("main", "/small"), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    // The stalled response is ended: the proxy lets go of the upstream connection.
    let dropped = stream.dropped_event.notified();
    tokio::pin!(dropped);
    dropped.as_mut().enable();
    if !stream.dropped.load(Ordering::SeqCst) {
        tokio::time::timeout(DEADLINE, dropped)
            .await
            .expect("the upstream response is dropped after the send timeout");
    }
    let produced = stream.produced.load(Ordering::SeqCst);
    assert!(produced < BIG, "the whole body was produced: {produced}");
    assert!(
        pingap
            .output
            .wait_for("send timeout", Duration::from_secs(5))
            .is_some(),
        "the cause is logged"
    );
    // The client connection is closed: what was already on its way, then the end.
    let (_, received) = wait_closed(&mut client, Instant::now()).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&received[..received.len().min(200)])
    );
    assert!(received.len() < BIG, "{} bytes received", received.len());
    // And pingap still serves.
    let response = get(&pingap.url("main", "/small"), &[]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_further_connections_back_until_one_closes() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config("", backend.addr, "max_connections = 2", ""));
    let addr = pingap.addr("main");
    let request = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
    // Two kept-alive connections, each served once.
    let mut held = Vec::new();
    for path in ["/one", "/two"] {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(&request(path)).await.unwrap();
        let mut buf = Vec::new();
        let response = read_response(&mut socket, &mut buf).await;
        assert_eq!(response.echo().path, path);
        held.push(socket);
    }
    // A third one is accepted by the kernel but not served while both are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(&request("/three")).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "the third connection was served: {early:?}");
    assert!(
        pingap
            .output
            .wait_for_all(
                &["server main", "2 connections open", "max_connections"],
                Duration::from_secs(5)
            )
            .is_some(),
        "the limit is logged"
    );
    // Once one closes, it is.
    drop(held.remove(0));
    let mut buf = Vec::new();
    let response = read_response(&mut third, &mut buf).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.echo().path, "/three");
    assert_eq!(
        pingap.output.count("max_connections"),
        1,
        "one warning, not one per connection"
    );
}

/// Writes `requests` on one connection in a single write and checks that each is answered, in
/// order, and that the connection stays usable.
async fn pipeline(addr: SocketAddr, requests: &[(&str, &str)]) {
    let mut batch = Vec::new();
    for (path, body) in requests {
        if body.is_empty() {
            batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        } else {
            batch.extend_from_slice(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    }
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(&batch).await.unwrap();
    let mut buf = Vec::new();
    for (path, body) in requests {
        let response = read_response(&mut socket, &mut buf).await;
        assert_eq!(response.status(), 200, "{path}: {}", response.head);
        assert_ne!(
            response.header("connection").map(str::to_ascii_lowercase),
            Some("close".to_string()),
            "{path}: {}",
            response.head
        );
        let echo = response.echo();
        assert_eq!(echo.path, *path, "answered in order");
        assert_eq!(echo.body_len, body.len(), "{path}");
    }
    assert!(
        buf.is_empty(),
        "nothing more: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // The connection is still open and usable.
    socket
        .write_all(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut socket, &mut buf).await.echo().path,
        "/after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config("", backend.addr, "", ""));
    let addr = pingap.addr("main");
    pipeline(addr, &[("/p1", ""), ("/p2", "")]).await;
    let ten: Vec<(String, &str)> = (1..=10)
        .map(|i| (format!("/q{i}"), if i % 3 == 0 { "hello" } else { "" }))
        .collect();
    let ten: Vec<(&str, &str)> = ten.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    pipeline(addr, &ten).await;
    assert_eq!(backend.hits(), 2 + 1 + 10 + 1);
}

#[test]
fn client_timeouts_and_connection_limits_are_checked() {
    let backend: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cases = [
        (
            config("client_header_timeout = '0s'", backend, "", ""),
            "basic.client_header_timeout: must be at least 1ms",
        ),
        (
            config("send_timeout = '500us'", backend, "", ""),
            "basic.send_timeout: must be at least 1ms",
        ),
        (
            config("send_timeout = '400days'", backend, "", ""),
            "longer than the longest accepted",
        ),
        (
            config("", backend, "max_connections = 0", ""),
            "servers.main.max_connections: must be at least 1",
        ),
        (
            config("", backend, "max_connections = 100000000", ""),
            "servers.main.max_connections: 100000000 is more than the 10000000 connections",
        ),
    ];
    for (text, expected) in cases {
        let (status, output) = check_config(&text);
        assert_eq!(status.code(), Some(1), "{output}");
        assert!(output.contains(expected), "{expected}: {output}");
    }
    let (status, output) = check_config(&config(
        "client_header_timeout = '10s'\nsend_timeout = '2m'",
        backend,
        "max_connections = 1000",
        "",
    ));
    assert!(status.success(), "{output}");
}
