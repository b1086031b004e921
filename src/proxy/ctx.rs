//! The per-request context of the proxy, and the count of requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pingap_plugins::Ctx;

use super::failover::Attempts;
use super::respond::Reply;
use crate::observe::UpstreamAttempt;
use crate::observe::access_log::ConnectionSerial;
use crate::observe::trace::RequestTrace;
use crate::runtime::{Location, Runtime};
use crate::upstream::balance::Selected;

/// Requests being served right now, across all servers; graceful shutdown waits for zero.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
}

impl InFlight {
    /// Counts a request until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }

    /// How many requests are in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// Keeps a request counted in [`InFlight`].
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Release);
    }
}

/// What the proxy knows about one request, from its header to its log line.
pub struct RequestCtx {
    /// The snapshot this request is served from, loaded once when it starts.
    pub runtime: Option<Arc<Runtime>>,
    /// The matched location.
    pub location: Option<Arc<Location>>,
    /// How many bytes of the path the location's pattern matched (for prefix rewrites).
    pub matched_len: usize,
    /// The values of the location's named captures, when its templates use them.
    pub captures: Vec<Option<String>>,
    /// The path and query as received, kept when a rewrite changes them.
    pub original_uri: Option<String>,
    /// What the plugins share.
    pub plugin: Ctx,
    /// The backend chosen for the request (the latest, when retried).
    pub backend: Option<Selected>,
    /// The attempts made on backends.
    pub attempts: Attempts,
    /// Whether the TCP peer is a trusted proxy.
    pub peer_trusted: bool,
    /// Whether the response cache looked the request up.
    pub cache_looked_up: bool,
    /// pingap's own answer, decided when the request was routed.
    pub early_reply: Option<Reply>,
    /// When the request header arrived.
    pub started: Instant,
    /// The gRPC-web bridge, for gRPC-web calls to `grpc_web` locations.
    pub grpc_web: Option<super::grpc_web::Bridge>,
    /// Each attempt on a backend, for the access log and traces.
    pub upstream_attempts: Vec<UpstreamAttempt>,
    /// The `X-Cache-Status` sent, for cached locations.
    pub cache_status: Option<&'static str>,
    /// The client connection's serial and request count, when the access log uses them.
    pub connection: Option<ConnectionSerial>,
    /// The request's trace, when traces are exported.
    pub trace: Option<RequestTrace>,
    _in_flight: InFlightGuard,
}

impl RequestCtx {
    /// A context for a new request.
    pub fn new(in_flight: InFlightGuard) -> Self {
        RequestCtx {
            runtime: None,
            location: None,
            matched_len: 0,
            captures: Vec::new(),
            original_uri: None,
            plugin: Ctx::default(),
            backend: None,
            attempts: Attempts::default(),
            peer_trusted: false,
            cache_looked_up: false,
            early_reply: None,
            grpc_web: None,
            started: Instant::now(),
            upstream_attempts: Vec::new(),
            cache_status: None,
            connection: None,
            trace: None,
            _in_flight: in_flight,
        }
    }
}

impl RequestCtx {
    /// The attempt in progress, if any.
    pub fn current_attempt(&mut self) -> Option<&mut UpstreamAttempt> {
        self.upstream_attempts
            .last_mut()
            .filter(|attempt| attempt.ended.is_none())
    }

    /// Ends the attempt in progress, with why it failed.
    pub fn end_attempt(&mut self, failure: Option<&'static str>) {
        if let Some(attempt) = self.current_attempt() {
            attempt.ended = Some(Instant::now());
            attempt.failure = failure;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_requests() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.enter();
        let second = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        drop(first);
        assert_eq!(in_flight.count(), 1);
        drop(second);
        assert_eq!(in_flight.count(), 0);
    }
}
