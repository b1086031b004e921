//! Echo backends: hyper servers on ephemeral loopback ports that answer every request with a
//! JSON description of what they received (method, path, query, headers, body length and
//! checksum), so tests can check what pingap sent upstream.
//!
//! Request headers steer them: `x-echo-delay-ms: N` answers after N ms (announcing the request
//! first, see [`Backend::wait_for_hits`]); `x-echo-status: N` answers with status N;
//! `x-echo-header: Name: value` adds a response header; `x-echo-body-bytes: N` answers with N
//! bytes of text (see [`text_body`]) with a `Content-Length`, `x-echo-stream-bytes: N` streams
//! them in 64 KiB chunks without one; `x-echo-content-type` sets the content type of those.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

/// What a backend received, as it reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    /// The backend's name.
    pub backend: String,
    /// The HTTP version of the request, e.g. `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The request method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Every header, lower-cased name to values in order.
    pub headers: std::collections::BTreeMap<String, Vec<String>>,
    /// The body length.
    pub body_len: usize,
    /// FNV-1a of the body.
    pub body_fnv: u64,
}

impl Echo {
    /// The single value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The text body of `len` bytes the backend sends for `x-echo-body-bytes`/`x-echo-stream-bytes`.
pub fn text_body(len: usize) -> Vec<u8> {
    // 64 bytes, so that 64 KiB chunks of it concatenate to the same text.
    let line = b"pingap streams and compresses this line of text, 64 bytes long.\n";
    line.iter().copied().cycle().take(len).collect()
}

/// FNV-1a, to compare bodies without echoing them back.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A running echo backend; stops when dropped.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    hit: Arc<Notify>,
    stop: watch::Sender<bool>,
}

impl Backend {
    /// Starts a backend named `name` on the current tokio runtime.
    pub async fn start(name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let hit = Arc::new(Notify::new());
        let (stop, mut stopped) = watch::channel(false);
        let name: Arc<str> = Arc::from(name);
        let (task_hits, task_hit, task_received) = (hits.clone(), hit.clone(), received.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => return,
                };
                let counters = Counters {
                    hits: task_hits.clone(),
                    hit: task_hit.clone(),
                    received: task_received.clone(),
                };
                let name = name.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (name, counters) = (name.clone(), counters.clone());
                        async move { Ok::<_, Infallible>(echo(&name, req, &counters).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            addr,
            hits,
            received,
            hit,
            stop,
        }
    }

    /// Body bytes received so far, over all requests, counted as they arrive (also for bodies
    /// cut short).
    pub fn received_bytes(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` requests have arrived.
    pub async fn wait_for_hits(&self, count: usize, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.hit.notified();
                if self.hits() >= count {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What a backend counts.
#[derive(Clone)]
struct Counters {
    hits: Arc<AtomicUsize>,
    hit: Arc<Notify>,
    received: Arc<AtomicUsize>,
}

async fn echo(
    name: &str,
    req: Request<Incoming>,
    counters: &Counters,
) -> Response<BoxBody<Bytes, Infallible>> {
    let (parts, mut incoming) = req.into_parts();
    let mut body = Vec::new();
    while let Some(Ok(frame)) = incoming.frame().await {
        if let Some(data) = frame.data_ref() {
            counters.received.fetch_add(data.len(), Ordering::SeqCst);
            body.extend_from_slice(data);
        }
    }
    counters.hits.fetch_add(1, Ordering::SeqCst);
    counters.hit.notify_waiters();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(delay) = header("x-echo-delay-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = header("x-echo-status")
        .and_then(|v| v.parse().ok())
        .and_then(|v| StatusCode::from_u16(v).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (key, value) in &parts.headers {
        headers
            .entry(key.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let report = Echo {
        backend: name.to_string(),
        version: format!("{:?}", parts.version),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body_len: body.len(),
        body_fnv: fnv(&body),
    };
    let mut response = Response::builder().status(status).header("server", "echo");
    if let Some((name, value)) = header("x-echo-header").and_then(|v| v.split_once(':')) {
        response = response.header(name.trim(), value.trim());
    }
    let text_type = header("x-echo-content-type").unwrap_or("text/plain; charset=utf-8");
    let number = |name: &str| header(name).and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = number("x-echo-body-bytes") {
        let body = Full::new(Bytes::from(text_body(len))).map_err(|never| match never {});
        return response
            .header("content-type", text_type)
            .body(body.boxed())
            .unwrap();
    }
    if let Some(len) = number("x-echo-stream-bytes") {
        const CHUNK: usize = 64 * 1024;
        let chunk = Bytes::from(text_body(CHUNK));
        let frames = (0..len.div_ceil(CHUNK)).map(move |i| {
            let size = CHUNK.min(len - i * CHUNK);
            Ok::<_, Infallible>(hyper::body::Frame::data(chunk.slice(..size)))
        });
        let body = StreamBody::new(futures_util::stream::iter(frames));
        return response
            .header("content-type", text_type)
            .body(body.boxed())
            .unwrap();
    }
    let body = Full::new(Bytes::from(serde_json::to_vec(&report).unwrap()));
    response
        .header("content-type", "application/json")
        .body(body.map_err(|never| match never {}).boxed())
        .unwrap()
}
