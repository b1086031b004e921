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
//! [`Backend::set_status`] and [`Backend::set_delay_ms`] make one backend misbehave for every
//! request; dropping a backend closes its listener and its open connections. Every answer
//! carries `x-echo-from`, the address its connection came from, which tells the proxy's
//! upstream connections apart.
//! Request bodies are hashed as they arrive, never kept.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
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
    counters: Counters,
    stop: watch::Sender<bool>,
}

impl Backend {
    /// Starts a backend named `name` on the current tokio runtime.
    pub async fn start(name: &str) -> Backend {
        Backend::start_on(name, "127.0.0.1:0".parse().unwrap(), None).await
    }

    /// Starts a backend named `name` on `addr` (e.g. the address of one that was stopped),
    /// speaking HTTPS when `tls` is given.
    pub async fn start_on(
        name: &str,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Counters::default();
        let (stop, stopped) = watch::channel(false);
        let name: Arc<str> = Arc::from(name);
        let task_counters = counters.clone();
        tokio::spawn(async move {
            let mut accepting = stopped.clone();
            loop {
                let (stream, from) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                    _ = accepting.changed() => return,
                };
                let (counters, name, tls) = (task_counters.clone(), name.clone(), tls.clone());
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (name, counters) = (name.clone(), counters.clone());
                        async move { Ok::<_, Infallible>(echo(&name, from, req, &counters).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // Stopping the backend also closes its open connections, as a killed
                    // process would.
                    match tls {
                        None => tokio::select! {
                            _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                            _ = stopped.changed() => {}
                        },
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            tokio::select! {
                                _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                                _ = stopped.changed() => {}
                            }
                        }
                    }
                });
            }
        });
        Backend {
            addr,
            counters,
            stop,
        }
    }

    /// From now on, answers every request with `status` (0: as the request asks).
    pub fn set_status(&self, status: u16) {
        self.counters.status.store(status, Ordering::SeqCst);
    }

    /// From now on, waits `ms` before answering every request.
    pub fn set_delay_ms(&self, ms: u64) {
        self.counters.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Lets a held stream (`x-echo-hold`) go on.
    pub fn release(&self) {
        self.counters.released.notify_one();
    }

    /// Body bytes received so far, over all requests, counted as they arrive (also for bodies
    /// cut short).
    pub fn received_bytes(&self) -> usize {
        self.counters.received.load(Ordering::SeqCst)
    }

    /// Health checks (requests for [`HEALTH_CHECK_PATH`]) received so far.
    pub fn checks(&self) -> usize {
        self.counters.checks.load(Ordering::SeqCst)
    }

    /// Requests received so far, health checks aside.
    pub fn hits(&self) -> usize {
        self.counters.hits.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` requests have arrived.
    pub async fn wait_for_hits(&self, count: usize, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.counters.hit.notified();
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

/// What a backend counts, and how it was told to behave.
#[derive(Clone, Default)]
struct Counters {
    hits: Arc<AtomicUsize>,
    hit: Arc<Notify>,
    received: Arc<AtomicUsize>,
    released: Arc<Notify>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    checks: Arc<AtomicUsize>,
}

/// Requests for this path are health checks: counted by [`Backend::checks`], not as hits.
pub const HEALTH_CHECK_PATH: &str = "/healthz";

async fn echo(
    name: &str,
    from: SocketAddr,
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
    if parts.uri.path() == HEALTH_CHECK_PATH {
        counters.checks.fetch_add(1, Ordering::SeqCst);
    } else {
        counters.hits.fetch_add(1, Ordering::SeqCst);
        counters.hit.notify_waiters();
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let delay = match counters.delay_ms.load(Ordering::SeqCst) {
        0 => header("x-echo-delay-ms").and_then(|v| v.parse().ok()),
        forced => Some(forced),
    };
    if let Some(delay) = delay {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = match counters.status.load(Ordering::SeqCst) {
        0 => header("x-echo-status").and_then(|v| v.parse().ok()),
        forced => Some(forced),
    }
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
    // The address the request's connection came from (the proxy's end of it).
    let mut response = Response::builder()
        .status(status)
        .header("server", "echo")
        .header("x-echo-from", from.to_string());
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
