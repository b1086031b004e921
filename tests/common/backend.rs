//! Echo backends: hyper servers on ephemeral loopback ports that answer every request with a
//! JSON description of what they received (method, path, query, headers, body length and
//! checksum), so tests can check what pingap sent upstream.
//!
//! Request headers steer them: `x-echo-delay-ms: N` answers after N ms (announcing the request
//! first, see [`Backend::wait_for_hits`]); `x-echo-status: N` answers with status N;
//! `x-echo-header: Name: value` adds a response header; `x-echo-body-bytes: N` answers with N
//! bytes of text (see [`text_body`]) with a `Content-Length`, `x-echo-stream-bytes: N` streams
//! them in 64 KiB chunks without one; `x-echo-content-type` sets the content type of those;
//! with `x-echo-hold: 1` a stream stops after its first chunk until [`Backend::release`].
//! Request bodies are hashed as they arrive, never kept.

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

/// The FNV-1a offset basis (the hash of nothing).
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, to compare bodies without echoing them back.
pub fn fnv(data: &[u8]) -> u64 {
    fnv_update(FNV_START, data)
}

/// Continues an FNV-1a hash with more data.
pub fn fnv_update(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A running echo backend; stops when dropped.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    released: Arc<Notify>,
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
        let released = Arc::new(Notify::new());
        let hit = Arc::new(Notify::new());
        let (stop, mut stopped) = watch::channel(false);
        let name: Arc<str> = Arc::from(name);
        let (task_hits, task_hit, task_received, task_released) = (
            hits.clone(),
            hit.clone(),
            received.clone(),
            released.clone(),
        );
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
                    released: task_released.clone(),
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
            released,
            hit,
            stop,
        }
    }

    /// Lets a held stream (`x-echo-hold`) go on.
    pub fn release(&self) {
        self.released.notify_one();
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
    released: Arc<Notify>,
}

async fn echo(
    name: &str,
    req: Request<Incoming>,
    counters: &Counters,
) -> Response<BoxBody<Bytes, Infallible>> {
    let (parts, mut incoming) = req.into_parts();
    let (mut body_len, mut body_fnv) = (0, FNV_START);
    while let Some(Ok(frame)) = incoming.frame().await {
        if let Some(data) = frame.data_ref() {
            counters.received.fetch_add(data.len(), Ordering::SeqCst);
            body_len += data.len();
            body_fnv = fnv_update(body_fnv, data);
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
        body_len,
        body_fnv,
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
        let hold = header("x-echo-hold")
            .is_some()
            .then(|| counters.released.clone());
        let frames = futures_util::StreamExt::then(
            futures_util::stream::iter(0..len.div_ceil(CHUNK)),
            move |i| {
                let (chunk, hold) = (chunk.clone(), hold.clone());
                async move {
                    if i == 1
                        && let Some(released) = hold
                    {
                        released.notified().await;
                    }
                    let size = CHUNK.min(len - i * CHUNK);
                    Ok::<_, Infallible>(hyper::body::Frame::data(chunk.slice(..size)))
                }
            },
        );
        let body = StreamBody::new(frames);
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
