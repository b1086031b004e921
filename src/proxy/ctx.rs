//! The per-request context of the proxy: what it knows about one request, from its header to
//! its log line.

use std::sync::Arc;
use std::time::Instant;

use pingap_plugins::PluginCtx;

use super::failover::Attempts;
use super::in_flight::InFlightGuard;
use super::reply::Reply;
use crate::observe::access_log::ConnectionSerial;
use crate::observe::trace::RequestTrace;
use crate::runtime::{Location, Runtime};
use crate::upstream::balance::Selected;

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
    pub plugin: PluginCtx,
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
            plugin: PluginCtx::default(),
            backend: None,
            attempts: Attempts::default(),
            peer_trusted: false,
            cache_looked_up: false,
            early_reply: None,
            grpc_web: None,
            started: Instant::now(),
            cache_status: None,
            connection: None,
            trace: None,
            _in_flight: in_flight,
        }
    }
}
