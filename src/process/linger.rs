//! Letting connections accepted just before a shutdown deliver their first request.
//!
//! When a listener stops accepting, Pingora's cleanup closes every connection still waiting for a
//! request header: right for idle keep-alive connections, but a connection accepted a moment
//! earlier, whose request is still on its way, would be closed unanswered. This wrapper delays
//! that cleanup by [`LINGER`]; requests that arrive in time are counted in flight and served.
//! It also counts each server's open client connections for the metrics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::observe::metrics::ServerMetrics;

/// How long after a listener stops accepting its fresh connections may still deliver a request.
pub const LINGER: Duration = Duration::from_millis(500);

/// A server application whose cleanup waits [`LINGER`].
pub struct Lingering<A> {
    inner: Arc<A>,
    metrics: ServerMetrics,
}

impl<A> Lingering<A> {
    /// Wraps `inner`, the application of server `server`, whose connections it counts.
    pub fn new(inner: A, server: &str) -> Self {
        Lingering {
            inner: Arc::new(inner),
            metrics: crate::observe::metrics::metrics().server(server),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Lingering<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = self.metrics.connection();
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.inner.cleanup().await;
    }
}
