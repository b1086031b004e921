//! The rustls certificate resolver of one HTTPS listener: reads the store's live table for every
//! handshake, so a swap of certificates takes effect for the next handshake and never touches an
//! established connection.
//!
//! It also enforces `tls_min_version`: Pingora's rustls listener always offers TLS 1.2 and 1.3,
//! and rustls picks 1.3 whenever the client supports it, so a client is held to 1.3 by refusing
//! the handshakes of clients that offer no TLS 1.3 cipher suite. And it answers ACME's
//! tls-alpn-01 validation: a handshake whose only ALPN protocol is `acme-tls/1` gets the
//! challenge certificate of its SNI, if the ACME side has set one
//! ([`CertificateStore::set_challenge`]), and nothing else.
//!
//! `resolve()` does no I/O and takes no lock: one atomic load of the table and two hash lookups.

use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::CertificateStore;

/// The ALPN protocol of ACME's tls-alpn-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate resolver of one HTTPS server's listener.
pub struct ListenerTls {
    server: Arc<str>,
    store: Arc<CertificateStore>,
}

impl ListenerTls {
    /// The resolver of `server`'s listener, serving from `store`.
    pub fn new(server: &str, store: Arc<CertificateStore>) -> ListenerTls {
        ListenerTls {
            server: Arc::from(server),
            store,
        }
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The store it serves from.
    pub fn store(&self) -> &Arc<CertificateStore> {
        &self.store
    }
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListenerTls({})", self.server)
    }
}

/// Whether a client hello offers a TLS 1.3 cipher suite (0x1301 to 0x1305).
fn offers_tls13(hello: &ClientHello<'_>) -> bool {
    hello
        .cipher_suites()
        .iter()
        .any(|suite| (0x1301..=0x1305).contains(&u16::from(*suite)))
}

/// Whether the only ALPN protocol offered is `acme-tls/1`.
fn is_acme_validation(hello: &ClientHello<'_>) -> bool {
    hello.alpn().is_some_and(|mut protocols| {
        protocols.next() == Some(ACME_TLS_ALPN) && protocols.next().is_none()
    })
}

impl ResolvesServerCert for ListenerTls {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        if is_acme_validation(&hello) {
            let challenge = sni.and_then(|domain| self.store.challenge(domain));
            if challenge.is_none() {
                tracing::info!(
                    server = %self.server,
                    "TLS handshake refused: an acme-tls/1 validation for {} with no challenge pending",
                    sni.unwrap_or("(no SNI)")
                );
            }
            return challenge;
        }
        self.store.with_table(|table| {
            if table
                .server(&self.server)
                .is_some_and(|server| server.tls13_only)
                && !offers_tls13(&hello)
            {
                tracing::debug!(
                    "TLS handshake refused: the client does not speak TLS 1.3 (tls_min_version)"
                );
                return None;
            }
            match table.choose(&self.server, sni) {
                Some((served, _)) => Some(served.key.clone()),
                None => {
                    tracing::warn!(
                        server = %self.server,
                        "TLS handshake refused: no certificate for {}",
                        sni.map_or_else(|| "a client without SNI".to_string(), |name| format!("\"{name}\""))
                    );
                    None
                }
            }
        })
    }
}
