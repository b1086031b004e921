//! Limits on what a request and an upstream response may hold, sent as raw bytes over TCP to the
//! real binary (vendor/pingora-core/PATCHED.md, vendor/pingora-proxy/PATCHED.md):
//!
//! - a request line with a space in its target is refused (400), not proxied percent-encoded;
//! - a request target over 64 KiB is answered `414 URI Too Long`;
//! - a request head over 1 MiB is answered `431 Request Header Fields Too Large`;
//! - an upstream response head over 64 KiB is answered `502`.
//!
//! In each refusal the backend must receive nothing. Ports are ephemeral, everything is
//! loopback, every read has a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Pingap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long one exchange (connect, write, read the whole response) may take.
const IO_DEADLINE: Duration = Duration::from_secs(15);

/// `/big-header` goes to the backend that answers with an oversized header, everything else to
/// the echo backend.
fn config(echo: SocketAddr, big: SocketAddr) -> String {
    format!(
        r#"
[upstreams.echo]
addrs = ["{echo}"]

[upstreams.big]
addrs = ["{big}"]

[locations.big]
path = "/big-header"
upstream = "big"

[locations.open]
path = "/"
upstream = "echo"

[servers.main]
addr = "127.0.0.1:0"
locations = ["big", "open"]
"#
    )
}

/// A backend that answers every request with `200` and a `X-Big` header of `header_len` bytes,
/// counting the connections it accepted.
struct BigHeaderBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl BigHeaderBackend {
    async fn start(header_len: usize) -> BigHeaderBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Read the request head, then answer.
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let mut response =
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX-Big: "
                            .to_vec();
                    response.extend(std::iter::repeat_n(b'a', header_len));
                    response.extend_from_slice(b"\r\n\r\nok");
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        BigHeaderBackend { addr, connections }
    }
}

struct Lab {
    pingap: Pingap,
    echo: Backend,
    big: BigHeaderBackend,
}

impl Lab {
    async fn start() -> Lab {
        let echo = Backend::start("echo").await;
        // 200 KB, over the 64 KiB cap on upstream response heads.
        let big = BigHeaderBackend::start(200_000).await;
        let pingap = Pingap::start(&config(echo.addr, big.addr));
        Lab { pingap, echo, big }
    }

    fn addr(&self) -> SocketAddr {
        self.pingap.addr("main")
    }
}

/// Sends `request` and returns the status of the response and the whole reply. Write errors are
/// ignored (the proxy may answer and close before it has read all of an oversized request);
/// what it answered is still read.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let result = tokio::time::timeout(IO_DEADLINE, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let request = request.to_vec();
        let write = tokio::spawn(async move {
            let _ = writer.write_all(&request).await;
            writer
        });
        let mut reply = Vec::new();
        let mut chunk = vec![0u8; 65536];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
                // A reset after the response (the proxy closed with request bytes unread).
                Err(_) => break,
            }
        }
        drop(write.await);
        reply
    })
    .await;
    let reply = result.expect("the exchange finished within the deadline");
    let text = String::from_utf8_lossy(&reply).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "not an HTTP/1.1 response: {:?}",
                &text[..text.len().min(300)]
            )
        });
    (status, text)
}

fn get(target: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: limits.example\r\n{extra_headers}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The head of a reply, for assertion messages.
fn head(reply: &str) -> &str {
    reply.split("\r\n\r\n").next().unwrap_or(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_request_is_proxied() {
    let lab = Lab::start().await;
    let (status, reply) = exchange(lab.addr(), &get("/normal?q=1", "")).await;
    assert_eq!(status, 200, "{}", head(&reply));
    assert!(lab.echo.wait_for_hits(1, IO_DEADLINE).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_in_the_request_target_is_refused() {
    let lab = Lab::start().await;
    let (status, reply) = exchange(lab.addr(), &get("/a b", "")).await;
    assert_eq!(status, 400, "{}", head(&reply));
    // Other bytes httparse refuses in a target, which Pingora also used to percent-encode.
    for target in ["/a?q=<b>", "/a\"b\""] {
        let (status, reply) = exchange(lab.addr(), &get(target, "")).await;
        assert_eq!(status, 400, "{target}: {}", head(&reply));
    }
    // Something reaches the echo backend afterwards, and it is only this request.
    let (status, _) = exchange(lab.addr(), &get("/after", "")).await;
    assert_eq!(status, 200);
    assert_eq!(
        lab.echo.hits(),
        1,
        "the refused requests reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_target_over_64_kib_is_answered_414() {
    let lab = Lab::start().await;
    let target = format!("/{}", "a".repeat(100 * 1024));
    let (status, reply) = exchange(lab.addr(), &get(&target, "")).await;
    assert_eq!(status, 414, "{}", head(&reply));
    assert!(
        head(&reply)
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        head(&reply)
    );
    // Just under the limit is still proxied (http::Uri holds it).
    let target = format!("/{}", "a".repeat(60 * 1024));
    let (status, reply) = exchange(lab.addr(), &get(&target, "")).await;
    assert_eq!(status, 200, "{}", head(&reply));
    assert_eq!(lab.echo.hits(), 1, "the 414 request reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_1_mib_is_answered_431() {
    let lab = Lab::start().await;
    let big = format!("X-Big: {}\r\n", "a".repeat(1100 * 1024));
    let (status, reply) = exchange(lab.addr(), &get("/big-request", &big)).await;
    assert_eq!(status, 431, "{}", head(&reply));
    assert!(
        head(&reply)
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        head(&reply)
    );
    // A request line alone over 1 MiB is a URI too long.
    let target = format!("/{}", "a".repeat(1100 * 1024));
    let (status, reply) = exchange(lab.addr(), &get(&target, "")).await;
    assert_eq!(status, 414, "{}", head(&reply));
    assert_eq!(
        lab.echo.hits(),
        0,
        "the refused requests reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_response_header_over_64_kib_is_answered_502() {
    let lab = Lab::start().await;
    let (status, reply) = exchange(lab.addr(), &get("/big-header", "")).await;
    assert_eq!(status, 502, "{}", head(&reply));
    assert!(
        !reply.contains("aaaaaaaaaaaaaaaa"),
        "the oversized header reached the client"
    );
    assert!(
        reply.contains("is too large"),
        "the error page says why: {}",
        head(&reply)
    );
    assert!(lab.big.connections.load(Ordering::SeqCst) >= 1);
}
