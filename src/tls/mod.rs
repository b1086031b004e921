//! TLS for HTTPS listeners: the certificate store chosen from by SNI, the resolver and
//! client-certificate verifier of each listener, OCSP stapling and certificate maintenance.
//!
//! * [`store`]: every certificate the process serves (`[certificates.NAME]`, servers' own
//!   `tls_cert`, ACME-issued ones), with their staples, in one atomically swapped table;
//! * [`resolver`]: the rustls `ResolvesServerCert` of each listener (SNI, `tls_min_version`,
//!   tls-alpn-01);
//! * [`client_auth`]: mutual TLS (`client_ca`, `client_auth`) and `$ssl_client_*`;
//! * [`certificate`]: the fields read from a certificate;
//! * [`ocsp`] and [`maintenance`]: OCSP responses fetched, verified and stapled in the
//!   background, expiry warnings;
//! * [`acme`]: certificates obtained from ACME directories and kept renewed.
//!
//! Seams for ACME and the admin API: [`CertificateStore::install_issued`] (an issued certificate
//! served at once and kept across reloads), [`CertificateStore::set_challenge`] (tls-alpn-01),
//! [`CertificateStore::set_acme_status`] and [`CertificateStore::summaries`]; the live store is
//! `RuntimeHandle::load().certificates.store`.

pub mod acme;
pub mod certificate;
pub mod client_auth;
pub mod maintenance;
pub mod ocsp;
pub mod resolver;
pub mod store;

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

pub use client_auth::{ClientAuthMode, ListenerClientAuth};
pub use resolver::ListenerTls;
pub use store::{
    CertificateSet, CertificateSource, CertificateStore, CertificateSummary, Loaded, StoreError,
};

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

/// The certificates of a PEM text, in order; at least one.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid certificate PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("no certificate found in the PEM".to_string());
    }
    Ok(certificates)
}

/// Builds a certificate with its key from PEM: the chain (leaf first) and a PKCS#8, PKCS#1 or
/// SEC1 private key, which must belong to the leaf.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain = certificates(cert_pem)?;
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
