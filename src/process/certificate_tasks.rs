//! The background service that maintains the process's certificates: OCSP stapling and expiry
//! warnings ([`crate::tls::maintenance`]), on the store every listener reads.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::tls::CertificateStore;

/// Runs [`crate::tls::maintenance::run`] on the process's store.
pub struct CertificateMaintenance {
    /// The store (the same for every runtime of the process).
    pub store: Arc<CertificateStore>,
}

#[async_trait]
impl BackgroundService for CertificateMaintenance {
    async fn start(&self, shutdown: ShutdownWatch) {
        crate::tls::maintenance::run(self.store.clone(), shutdown).await;
    }
}
