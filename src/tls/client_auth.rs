//! Mutual TLS on HTTPS listeners: the client-certificate verifier of each listener, and what the
//! handshake hands to requests about the certificate the client presented.
//!
//! A server asks for client certificates with `client_ca` (the CAs that sign them) and
//! `client_auth = "required"` (the default: a client without a valid certificate is refused in
//! the handshake) or `"optional"` (a client without one is served, `$ssl_client_verify` is
//! `NONE`; one with an invalid certificate is still refused). Every HTTPS listener gets a
//! [`ListenerClientAuth`] that reads the server's policy from the store's live table for every
//! handshake, so `client_ca` and `client_auth` change with a reload, without a restart.
//!
//! The verified certificate reaches requests through Pingora's post-handshake callback
//! ([`ClientCertCallback`]), which stores a [`ClientCert`] in the connection's TLS digest.
//!
//! The CertificateRequest carries no CA names (rustls' `root_hint_subjects` must borrow from the
//! verifier, which is swapped): clients offer the certificate they are configured with.

use std::sync::Arc;

use async_trait::async_trait;
use pingap_plugins::vars::ClientCert;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::certificate::distinguished_name;
pub use super::store::ClientAuthMode;
use super::store::{CertificateStore, ClientAuthPolicy};

/// The verifier of client certificates signed by the CAs in `ca_pem`.
pub fn client_auth_policy(ca_pem: &[u8], mode: ClientAuthMode) -> Result<ClientAuthPolicy, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("invalid certificate PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate found in the PEM".to_string());
    }
    let builder = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    );
    let builder = match mode {
        ClientAuthMode::Required => builder,
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder.build().map_err(|e| e.to_string())?;
    Ok(ClientAuthPolicy { mode, verifier })
}

/// The client-certificate verifier of one HTTPS server's listener: the server's policy of the
/// moment, or none.
#[derive(Debug)]
pub struct ListenerClientAuth {
    server: Arc<str>,
    store: Arc<CertificateStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ListenerClientAuth {
    /// The verifier of `server`'s listener.
    pub fn new(server: &str, store: Arc<CertificateStore>) -> ListenerClientAuth {
        ListenerClientAuth {
            server: Arc::from(server),
            store,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    fn policy(&self) -> Option<ClientAuthPolicy> {
        self.store.with_table(|table| {
            table
                .server(&self.server)
                .and_then(|server| server.client_auth.clone())
        })
    }
}

impl ClientCertVerifier for ListenerClientAuth {
    fn offer_client_auth(&self) -> bool {
        self.policy().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.policy()
            .is_some_and(|policy| policy.mode == ClientAuthMode::Required)
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.policy() {
            Some(policy) => policy
                .verifier
                .verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General(
                "this server does not take client certificates".to_string(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Pingora's post-handshake callback: reads the client certificate rustls verified, for
/// `$ssl_client_*`. Connections without one cost a check and nothing else.
#[derive(Debug, Default)]
pub struct ClientCertCallback;

#[async_trait]
impl TlsAccept for ClientCertCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        let cert = read_client_cert(der)?;
        Some(Arc::new(Arc::new(cert)))
    }
}

/// The fields of a client certificate requests can see.
fn read_client_cert(der: &[u8]) -> Option<ClientCert> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(ClientCert {
        subject: distinguished_name(cert.subject()),
        issuer: distinguished_name(cert.issuer()),
        serial: cert.raw_serial_as_string().replace(':', ""),
    })
}

/// The client certificate of a connection, from its TLS digest.
pub fn client_cert_of(digest: &pingora::protocols::tls::SslDigest) -> Option<Arc<ClientCert>> {
    digest.extension.get::<Arc<ClientCert>>().cloned()
}
