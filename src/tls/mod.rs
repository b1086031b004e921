//! TLS for HTTPS listeners: loading certificates and keys, and the rustls certificate resolver
//! that serves them.
//!
//! The resolver holds its certificate in an `ArcSwap`, so a reload replaces it without touching
//! the listener; choosing among several certificates by SNI, ACME and OCSP stapling grow here.
//! Certificates from ACME directories are obtained and renewed by [`acme`].

pub mod acme;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// The oldest TLS version a listener accepts (`tls_min_version`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl MinVersion {
    /// Parses `"1.2"` or `"1.3"`.
    pub fn parse(text: &str) -> Result<MinVersion, String> {
        match text.trim() {
            "1.2" => Ok(MinVersion::Tls12),
            "1.3" => Ok(MinVersion::Tls13),
            other => Err(format!(
                "\"{other}\" is not a TLS version pingap offers (\"1.2\" or \"1.3\")"
            )),
        }
    }
}

/// Serves one certificate for every handshake; swapping it takes effect for new handshakes.
///
/// It also enforces `tls_min_version`: Pingora's rustls listener always offers TLS 1.2 and 1.3,
/// and rustls picks 1.3 whenever the client supports it, so a client is held to 1.3 by refusing
/// the handshakes of clients that offer no TLS 1.3 cipher suite.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    tls13_only: AtomicBool,
}

impl CertResolver {
    /// A resolver serving `key` to clients of `min_version` or later.
    pub fn new(key: CertifiedKey, min_version: MinVersion) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(key),
            tls13_only: AtomicBool::new(min_version == MinVersion::Tls13),
        }
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// The oldest version accepted now.
    pub fn min_version(&self) -> MinVersion {
        if self.tls13_only.load(Ordering::Relaxed) {
            MinVersion::Tls13
        } else {
            MinVersion::Tls12
        }
    }

    /// Replaces the certificate and the oldest version for new handshakes.
    pub fn replace(&self, key: Arc<CertifiedKey>, min_version: MinVersion) {
        self.current.store(key);
        self.tls13_only
            .store(min_version == MinVersion::Tls13, Ordering::Relaxed);
    }
}

/// Whether a client hello offers a TLS 1.3 cipher suite (0x1301 to 0x1305).
fn offers_tls13(hello: &ClientHello<'_>) -> bool {
    hello
        .cipher_suites()
        .iter()
        .any(|suite| (0x1301..=0x1305).contains(&u16::from(*suite)))
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.tls13_only.load(Ordering::Relaxed) && !offers_tls13(&hello) {
            tracing::debug!(
                "TLS handshake refused: the client does not speak TLS 1.3 (tls_min_version)"
            );
            return None;
        }
        Some(self.current.load_full())
    }
}
