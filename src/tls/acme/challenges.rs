//! The answers to the ACME challenges pending now, while a directory validates an order:
//!
//! * http-01: `GET /.well-known/acme-challenge/TOKEN` on a plain HTTP server is answered with
//!   the key authorization, looked up by the proxy in [`challenges`] ([`Challenges::http01`]);
//! * tls-alpn-01: a TLS handshake for the domain that offers only the ALPN protocol `acme-tls/1`
//!   gets a self-signed certificate for the domain carrying the SHA-256 of the key authorization
//!   in its critical `acmeIdentifier` extension (RFC 8737, [`validation_certificate`]), set in
//!   the certificate store, whose resolver answers such handshakes.
//!
//! [`Answering`] sets both up for the length of an order. The http-01 answers are a process
//! global: what is pending is a fact of the process, not of one configuration, and every plain
//! listener answers the same. A lookup takes a read lock only for requests under the challenge
//! path, which are rare.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::spec::ChallengeKind;
use crate::tls::CertificateStore;

/// The path prefix of http-01 answers.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
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

/// The http-01 challenges being answered.
#[derive(Default)]
pub struct Challenges {
    /// Token → key authorization.
    http01: RwLock<HashMap<String, String>>,
}

/// The http-01 challenges of this process.
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

    /// Starts answering the http-01 `token` with `key_authorization`.
    pub fn add(&self, token: &str, key_authorization: &str) {
        self.http01
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_string(), key_authorization.to_string());
    }

    /// Stops answering the http-01 `token`.
    pub fn remove(&self, token: &str) {
        self.http01
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }
}

/// Answers its challenges (http-01 in [`challenges`], tls-alpn-01 in the certificate store)
/// until dropped.
pub struct Answering {
    store: Arc<CertificateStore>,
    pending: Vec<Pending>,
}

impl Answering {
    /// Nothing answered yet; tls-alpn-01 answers go to `store`.
    pub fn new(store: Arc<CertificateStore>) -> Answering {
        Answering {
            store,
            pending: Vec::new(),
        }
    }

    /// Answers `pending` from now until the guard is dropped (or [`Answering::retain`] lets it
    /// go).
    pub fn add(&mut self, pending: Pending) -> Result<(), String> {
        match pending.kind {
            PendingKind::Http01 => challenges().add(&pending.token, &pending.key_authorization),
            PendingKind::TlsAlpn01 => {
                let certificate =
                    validation_certificate(&pending.domain, &pending.key_authorization)?;
                self.store
                    .set_challenge(&pending.domain, Arc::new(certificate));
            }
        }
        self.pending.push(pending);
        Ok(())
    }

    /// Whether `pending` is answered.
    pub fn contains(&self, pending: &Pending) -> bool {
        self.pending.contains(pending)
    }

    /// Stops answering every challenge that `keep` refuses.
    pub fn retain(&mut self, keep: impl Fn(&Pending) -> bool) {
        let (kept, gone): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| keep(p));
        for pending in &gone {
            self.stop(pending);
        }
        self.pending = kept;
    }

    fn stop(&self, pending: &Pending) {
        match pending.kind {
            PendingKind::Http01 => challenges().remove(&pending.token),
            PendingKind::TlsAlpn01 => self.store.remove_challenge(&pending.domain),
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            self.stop(&pending);
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
        challenges.add("tok1", "tok1.thumbprint");
        assert_eq!(
            challenges
                .http01("/.well-known/acme-challenge/tok1")
                .as_deref(),
            Some("tok1.thumbprint")
        );
        assert_eq!(challenges.http01("/.well-known/acme-challenge/other"), None);
        assert_eq!(challenges.http01("/tok1"), None);
        challenges.remove("tok1");
        assert_eq!(challenges.http01("/.well-known/acme-challenge/tok1"), None);
    }

    #[test]
    fn answers_last_as_long_as_the_guard() {
        let store = CertificateStore::new();
        let http = pending(PendingKind::Http01, "a.example.com", "guard-token");
        let alpn = pending(PendingKind::TlsAlpn01, "A.example.com", "alpn-token");
        let path = "/.well-known/acme-challenge/guard-token";
        let mut answering = Answering::new(store.clone());
        answering.add(http.clone()).unwrap();
        answering.add(alpn.clone()).unwrap();
        assert!(challenges().http01(path).is_some());
        assert!(store.challenge("a.example.com").is_some());
        answering.retain(|p| p.kind == PendingKind::Http01);
        assert!(store.challenge("a.example.com").is_none());
        assert!(answering.contains(&http) && !answering.contains(&alpn));
        drop(answering);
        assert!(challenges().http01(path).is_none());
    }

    #[test]
    fn tls_alpn01_certificates_carry_the_digest() {
        let certificate = validation_certificate("a.example.com", "tok.thumbprint").unwrap();
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
    }
}
