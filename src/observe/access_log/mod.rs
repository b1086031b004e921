//! Per-server access logs: `access_log` (a path or `stdout`), `access_log_format` (`combined`,
//! `common`, `json` or a custom string of `$variables`, see [`format`]) and rotation
//! (`access_log_rotate`, `access_log_keep`, `access_log_gzip`, see [`rotate`]).
//!
//! A request's line is rendered when the request ends, in the request's task (about a
//! microsecond; see `benches/access_log.rs`) into a buffer the sink recycles, and handed to the
//! file's [`sink::Sink`], whose writer thread does the I/O in batches.

pub mod format;
pub mod rotate;
pub mod sink;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pingora::http::ResponseHeader;
use pingora::protocols::tls::SslDigest;

use super::UpstreamAttempt;
pub use format::{ConnectionSerial, Format};
use pingap_plugins::vars::Vars;
pub use rotate::Rotation;
pub use sink::{Sink, Target};

/// Everything a log line can say about one finished request.
pub struct Entry<'a> {
    /// The request-side variables (shared with header rules).
    pub vars: Vars<'a>,
    /// The path and query sent upstream.
    pub upstream_uri: &'a str,
    /// When the request ended.
    pub time: SystemTime,
    /// The same moment on the monotonic clock.
    pub ended: Instant,
    /// From the request header to the end of the response.
    pub duration: Duration,
    /// The status sent (0 when none was).
    pub status: u16,
    /// The response header sent.
    pub response: Option<&'a ResponseHeader>,
    /// Response body bytes sent.
    pub body_bytes_sent: usize,
    /// Request body bytes read.
    pub body_bytes_read: usize,
    /// The upstream of the location, if it has one.
    pub upstream_name: Option<&'a str>,
    /// The attempts made on its backends.
    pub attempts: &'a [UpstreamAttempt],
    /// The server (listener) name.
    pub server: &'a str,
    /// The client connection's serial and request count (HTTP/1.x).
    pub connection: Option<ConnectionSerial>,
    /// The TLS session, for HTTPS.
    pub tls: Option<&'a SslDigest>,
    /// The response cache's verdict, for cached locations.
    pub cache_status: Option<&'static str>,
    /// The error that failed the request, if any.
    pub error: Option<&'a pingora::Error>,
}

/// The access log of one server.
pub struct AccessLog {
    format: Format,
    sink: Arc<Sink>,
}

impl AccessLog {
    /// A log in `format` written to `sink`.
    pub fn new(format: Format, sink: Arc<Sink>) -> Self {
        AccessLog { format, sink }
    }

    /// The sink its lines go to.
    pub fn sink(&self) -> &Arc<Sink> {
        &self.sink
    }

    /// Whether the format uses `$connection` or `$connection_requests`.
    pub fn uses_connection(&self) -> bool {
        self.format.uses_connection()
    }

    /// Formats the line for `entry` and hands it to the writer.
    pub fn log(&self, entry: &Entry<'_>) {
        let mut line = self.sink.buffer();
        self.format.render(entry, &mut line);
        self.sink.send(line);
    }
}
