//! TLS for HTTPS listeners: loading certificates and keys, and the rustls certificate resolver
//! that serves them.
//!
//! The resolver holds its certificate in an `ArcSwap`, so a reload replaces it without touching
//! the listener; choosing among several certificates by SNI, ACME and OCSP stapling grow here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Reads PEM text given either inline (it starts with `-----BEGIN`) or as a file path, which
/// `resolve` turns into a full path. Returns the text and a description for error messages.
pub fn read_pem(value: &str, resolve: impl Fn(&Path) -> PathBuf) -> Result<Vec<u8>, String> {
    let trimmed = value.trim_start();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let path = resolve(Path::new(value));
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Builds a certificate with its key from PEM: the chain (leaf first) and a PKCS#8, PKCS#1 or
/// SEC1 private key, which must belong to the leaf.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate found in the PEM".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("invalid private key PEM: {e}"))?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| format!("unusable certificate or key: {e}"))
}

/// Serves one certificate for every handshake; swapping it takes effect for new handshakes.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Replaces the certificate for new handshakes.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
