//! What pingap tells operators about the traffic it serves: Prometheus [`metrics`], per-server
//! [`access_log`]s, OpenTelemetry [`trace`]s, its own [`logs`], and the [`live`] statistics and
//! log tail the admin API streams.
//!
//! The request path only records facts into the request's context ([`UpstreamAttempt`]s, times,
//! statuses); formatting and exporting happen once, when the request ends, and writing and
//! sending happen off the request path (a writer thread per log file, a runtime of its own for
//! the trace exporter).

pub mod access_log;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod trace;

use std::net::SocketAddr;
use std::time::Instant;

/// Writes out what is still buffered (the lines of the access logs of `sinks`, spans); called
/// when the process ends.
pub fn flush<'a>(sinks: impl IntoIterator<Item = &'a std::sync::Arc<access_log::Sink>>) {
    access_log::sink::flush_all(sinks, std::time::Duration::from_secs(2));
    trace::shutdown();
}

/// One attempt to get the answer from a backend: the one record of it that failover decides
/// on and the access log, traces and metrics report.
#[derive(Debug, Clone)]
pub struct UpstreamAttempt {
    /// The backend.
    pub addr: SocketAddr,
    /// When the backend was chosen.
    pub started: Instant,
    /// When the connection was ready (a pooled one is ready at once).
    pub connected: Option<Instant>,
    /// When the backend's response header arrived.
    pub answered: Option<Instant>,
    /// When the attempt ended: failed, or (for the last one) when the request ended.
    pub ended: Option<Instant>,
    /// The backend's status, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed, if it did.
    pub failure: Option<&'static str>,
    /// The span id of the attempt, sent upstream in `traceparent` (0 without tracing).
    pub span_id: u64,
    /// Whether the backend failed this request, so that it is not chosen again for it.
    pub excluded: bool,
}

impl UpstreamAttempt {
    /// An attempt on `addr` starting now.
    pub fn start(addr: SocketAddr, span_id: u64) -> Self {
        UpstreamAttempt {
            addr,
            started: Instant::now(),
            connected: None,
            answered: None,
            ended: None,
            status: None,
            failure: None,
            span_id,
            excluded: false,
        }
    }
}
