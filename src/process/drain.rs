//! Graceful shutdown that ends as soon as the requests in flight are done.
//!
//! On SIGTERM Pingora stops accepting, closes idle connections, then waits its whole grace
//! period however few requests are left. This background service waits only until no request is
//! in flight (bounded by `basic.graceful_shutdown_timeout`) and then ends the process. It first
//! waits out [`super::linger::LINGER`], during which connections accepted just before the
//! shutdown can still deliver a request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::Instant;

use crate::proxy::InFlight;
use crate::runtime::RuntimeHandle;

/// How often the in-flight count is checked while draining.
const POLL: Duration = Duration::from_millis(10);

/// The drain service.
pub struct Drain {
    /// Requests in flight.
    pub in_flight: Arc<InFlight>,
    /// The longest wait for them.
    pub timeout: Duration,
    /// A pid file to remove on exit (daemon mode).
    pub pid_file: Option<PathBuf>,
    /// The live runtime, whose access logs are written out before the process ends.
    pub runtime: Arc<RuntimeHandle>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        self.in_flight.start_draining();
        let deadline = Instant::now() + self.timeout;
        tracing::info!(
            in_flight = self.in_flight.count(),
            timeout = ?self.timeout,
            "shutting down: no longer accepting connections, waiting for requests in flight"
        );
        // Connections accepted just before may still be delivering their first request.
        tokio::time::sleep(super::linger::LINGER.min(self.timeout)).await;
        loop {
            let left = self.in_flight.count();
            if left == 0 {
                tracing::info!("shut down: every request finished");
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = left,
                    "shut down: graceful_shutdown_timeout reached, dropping requests in flight"
                );
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        if let Some(pid_file) = &self.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
        // The flush blocks (up to 2 s) on the access log writers' threads and the trace
        // exporter's own runtime, never on this scheduler's tasks, and the process ends right
        // after, so it runs here directly: `block_in_place` is refused by the single-threaded
        // schedulers that `work_stealing = false` (the default) gives each service.
        crate::observe::flush(self.runtime.load().access_log_sinks());
        std::process::exit(0);
    }
}
