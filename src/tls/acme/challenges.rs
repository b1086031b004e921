//! The answers to the ACME challenges pending now, looked up by the proxy and the certificate
//! resolver while a directory validates an order:
//!
//! * http-01: `GET /.well-known/acme-challenge/TOKEN` on a plain HTTP server is answered with
//!   the key authorization ([`Challenges::http01`]);
//! * tls-alpn-01: a TLS handshake for the domain that offers only the ALPN protocol `acme-tls/1`
//!   gets a self-signed certificate for the domain carrying the SHA-256 of the key authorization
//!   in its critical `acmeIdentifier` extension (RFC 8737; [`Challenges::tls_alpn01`]).
//!
//! A process global ([`challenges`]): what is pending is a fact of the process, not of one
//! configuration, and every listener answers the same. Lookups take a read lock only for
//! requests under the challenge path and handshakes offering `acme-tls/1`, which are rare.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::spec::ChallengeKind;

/// The path prefix of http-01 answers.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
/// The ALPN protocol of tls-alpn-01 validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// One challenge to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Which challenge.
    pub kind: PendingKind,
    /// The domain validated.
    pub domain: String,
    /// The challenge's token.
    pub token: String,
    /// The key authorization (token and account key thumbprint).
    pub key_authorization: String,
}

/// [`ChallengeKind`] as stored with a [`Pending`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PendingKind {
    /// http-01.
    Http01,
    /// tls-alpn-01.
    TlsAlpn01,
}

impl From<ChallengeKind> for PendingKind {
    fn from(kind: ChallengeKind) -> Self {
        match kind {
            ChallengeKind::Http01 => PendingKind::Http01,
            ChallengeKind::TlsAlpn01 => PendingKind::TlsAlpn01,
        }
    }
}

/// The challenges being answered.
#[derive(Default)]
pub struct Challenges {
    /// http-01: token → key authorization.
    http01: RwLock<HashMap<String, String>>,
    /// tls-alpn-01: domain → validation certificate.
    tls_alpn01: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

/// The challenges of this process.
pub fn challenges() -> &'static Challenges {
    static CHALLENGES: OnceLock<Challenges> = OnceLock::new();
    CHALLENGES.get_or_init(Challenges::default)
}

impl Challenges {
    /// The key authorization to answer a request for `path` with, when `path` is the http-01
    /// path of a pending token.
    pub fn http01(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.http01
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// The validation certificate for a handshake naming `server_name` that offered only
    /// `acme-tls/1`.
    pub fn tls_alpn01(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let map = self
            .tls_alpn01
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return None;
        }
        map.get(&server_name.to_ascii_lowercase()).cloned()
    }

    /// Whether a client hello's ALPN offer is exactly `acme-tls/1`, the mark of a tls-alpn-01
    /// validation.
    pub fn is_validation<'a, I: Iterator<Item = &'a [u8]>>(alpn: Option<I>) -> bool {
        let Some(mut offered) = alpn else {
            return false;
        };
        offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none()
    }

    /// Starts answering `pending`.
    pub fn add(&self, pending: &Pending) -> Result<(), String> {
        match pending.kind {
            PendingKind::Http01 => {
                self.http01
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(pending.token.clone(), pending.key_authorization.clone());
            }
            PendingKind::TlsAlpn01 => {
                let certificate =
                    validation_certificate(&pending.domain, &pending.key_authorization)?;
                self.tls_alpn01
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(pending.domain.to_ascii_lowercase(), Arc::new(certificate));
            }
        }
        Ok(())
    }

    /// Stops answering `pending`.
    pub fn remove(&self, pending: &Pending) {
        match pending.kind {
            PendingKind::Http01 => {
                self.http01
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&pending.token);
            }
            PendingKind::TlsAlpn01 => {
                self.tls_alpn01
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&pending.domain.to_ascii_lowercase());
            }
        }
    }
}

/// Answers its challenges until dropped.
pub struct Answering {
    pending: Vec<Pending>,
}

impl Answering {
    /// Nothing answered yet.
    pub fn new() -> Answering {
        Answering {
            pending: Vec::new(),
        }
    }

    /// Answers `pending` from now until the guard is dropped.
    pub fn add(&mut self, pending: Pending) -> Result<(), String> {
        challenges().add(&pending)?;
        self.pending.push(pending);
        Ok(())
    }
}

impl Default for Answering {
    fn default() -> Self {
        Answering::new()
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        for pending in &self.pending {
            challenges().remove(pending);
        }
    }
}

/// The tls-alpn-01 validation certificate for `domain`: self-signed, with the SHA-256 of the
/// key authorization in the critical `id-pe-acmeIdentifier` extension.
pub fn validation_certificate(
    domain: &str,
    key_authorization: &str,
) -> Result<CertifiedKey, String> {
    let digest = Sha256::digest(key_authorization.as_bytes());
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
        .map_err(|e| format!("cannot make a validation certificate for {domain}: {e}"))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
    let key =
        rcgen::KeyPair::generate().map_err(|e| format!("cannot make a validation key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign a validation certificate for {domain}: {e}"))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its check that the key matches parses the certificate
    // with webpki, which refuses the critical acmeIdentifier extension.
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("unusable validation key: {e}"))?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing_key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(kind: PendingKind, domain: &str, token: &str) -> Pending {
        Pending {
            kind,
            domain: domain.into(),
            token: token.into(),
            key_authorization: format!("{token}.thumbprint"),
        }
    }

    #[test]
    fn http01_answers_pending_tokens_only() {
        let challenges = Challenges::default();
        let one = pending(PendingKind::Http01, "a.example.com", "tok1");
        challenges.add(&one).unwrap();
        assert_eq!(
            challenges
                .http01("/.well-known/acme-challenge/tok1")
                .as_deref(),
            Some("tok1.thumbprint")
        );
        assert_eq!(challenges.http01("/.well-known/acme-challenge/other"), None);
        assert_eq!(challenges.http01("/tok1"), None);
        challenges.remove(&one);
        assert_eq!(challenges.http01("/.well-known/acme-challenge/tok1"), None);
    }

    #[test]
    fn tls_alpn01_certificates_carry_the_digest() {
        let challenges = Challenges::default();
        let one = pending(PendingKind::TlsAlpn01, "A.example.com", "tok");
        challenges.add(&one).unwrap();
        let certificate = challenges.tls_alpn01("a.example.com").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&certificate.cert[0]).unwrap();
        let extension = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(extension.critical);
        let digest = Sha256::digest(b"tok.thumbprint");
        // An OCTET STRING of 32 bytes.
        assert_eq!(extension.value[..2], [0x04, 0x20]);
        assert_eq!(&extension.value[2..], digest.as_slice());
        assert!(challenges.tls_alpn01("b.example.com").is_none());
        challenges.remove(&one);
        assert!(challenges.tls_alpn01("a.example.com").is_none());
    }

    #[test]
    fn only_an_offer_of_exactly_acme_tls_is_a_validation() {
        let offer = |protocols: &[&'static [u8]]| {
            Challenges::is_validation(Some(protocols.iter().copied()))
        };
        assert!(offer(&[b"acme-tls/1"]));
        assert!(!offer(&[b"acme-tls/1", b"http/1.1"]));
        assert!(!offer(&[b"h2"]));
        assert!(!offer(&[]));
        assert!(!Challenges::is_validation::<std::iter::Empty<&[u8]>>(None));
    }
}
