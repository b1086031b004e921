//! The certificate store: every certificate the process serves, chosen by SNI, shared by every
//! HTTPS listener and swapped atomically.
//!
//! A configuration compiles into a [`CertificateSet`]: the `[certificates.NAME]` entries (read
//! from their files or inline PEM) and, per HTTPS server, its own certificate, oldest TLS version
//! and client-certificate policy. When a runtime goes live its set is activated
//! (`CertificateStore::activate`): the store combines it with what lives outside the
//! configuration and publishes one lookup [`Table`] that every handshake reads without a lock:
//!
//! * certificates issued by ACME ([`CertificateStore::install_issued`]): kept in the store, by
//!   certificate name, across reloads; an entry with `acme` serves its issued certificate once
//!   there is one (before that, the files it names, if any);
//! * OCSP responses ([`CertificateStore::set_staple`]): kept by certificate fingerprint, so a
//!   reload that keeps a certificate keeps its staple, and dropped once past their `nextUpdate`;
//! * tls-alpn-01 challenge certificates ([`CertificateStore::set_challenge`]), answered for
//!   handshakes whose only ALPN protocol is `acme-tls/1`.
//!
//! Choosing a certificate for a server's handshake ([`Table::choose`]): the SNI's exact domain,
//! then the wildcard of its parent (`*.example.com` covers one label), then the server's own
//! certificate (`tls_cert`), then the `is_default` one. Nothing matching refuses the handshake.
//!
//! Every change (an activation, an issued certificate, a staple) rebuilds the table under one
//! mutex, off the request path, and wakes the store's maintenance ([`super::maintenance`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use serde::Serialize;

use super::certificate::CertificateInfo;
use super::client_auth::ClientAuthMode;

/// Where a certificate's PEM came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CertificateSource {
    /// Files (watched for changes).
    File,
    /// PEM written in the configuration.
    Inline,
    /// Issued by ACME and kept in the configuration's storage.
    Acme,
}

/// A certificate with its key, ready to serve, and what was read from it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The chain and key rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The leaf's fields.
    pub info: Arc<CertificateInfo>,
}

impl Loaded {
    /// Reads the leaf of `key`.
    pub fn new(key: CertifiedKey) -> Result<Loaded, String> {
        let leaf = key
            .cert
            .first()
            .ok_or_else(|| "no certificate in the chain".to_string())?;
        let info = CertificateInfo::read(leaf)?;
        Ok(Loaded {
            key: Arc::new(key),
            info: Arc::new(info),
        })
    }

    /// The issuer's certificate (DER), when the chain has one.
    pub fn issuer_der(&self) -> Option<&[u8]> {
        self.key.cert.get(1).map(|c| c.as_ref())
    }
}

/// One `[certificates.NAME]`, compiled.
#[derive(Debug, Clone)]
pub struct CompiledCertificate {
    /// Its name.
    pub name: String,
    /// The domains configured (lower-cased); empty means the certificate's own DNS names.
    pub domains: Vec<String>,
    /// Whether it serves handshakes nothing else matches.
    pub is_default: bool,
    /// The ACME directory it is obtained from, when it is.
    pub acme: Option<String>,
    /// Where its PEM came from (`Acme` when it has no files and waits for ACME).
    pub source: CertificateSource,
    /// The certificate from its files or inline PEM; `None` for an ACME certificate that has
    /// none.
    pub loaded: Option<Loaded>,
}

/// How one HTTPS server handles handshakes.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's name.
    pub server: String,
    /// Its own certificate (`tls_cert`/`tls_key`), served when the SNI matches no certificate
    /// of the store.
    pub own: Option<(Loaded, CertificateSource)>,
    /// Whether clients without TLS 1.3 are refused (`tls_min_version = "1.3"`).
    pub tls13_only: bool,
    /// Client certificates (`client_ca`), when asked for.
    pub client_auth: Option<ClientAuthPolicy>,
}

/// A server's client-certificate policy.
#[derive(Clone)]
pub struct ClientAuthPolicy {
    /// `required` or `optional`.
    pub mode: ClientAuthMode,
    /// Verifies the client certificates against the server's `client_ca`.
    pub verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ClientAuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthPolicy")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Everything a configuration says about certificates, compiled.
#[derive(Debug, Clone, Default)]
pub struct CertificateSet {
    /// `[certificates.NAME]`, in configuration order.
    pub certificates: Vec<CompiledCertificate>,
    /// The HTTPS servers.
    pub servers: Vec<ServerTls>,
    /// The certificate, key and CA files named (watched for changes).
    pub files: Vec<PathBuf>,
}

impl CertificateSet {
    /// Which certificate each domain gets, one line each (for `pingap -t`); ACME certificates
    /// not issued yet are listed as such.
    pub fn describe(&self) -> Vec<String> {
        let (table, _) = Table::build(self, &HashMap::new(), &HashMap::new());
        let mut lines = table.describe();
        for cert in self.certificates.iter().filter(|c| c.loaded.is_none()) {
            for domain in &cert.domains {
                lines.push(format!(
                    "{domain} -> certificates.{} (ACME, once issued)",
                    cert.name
                ));
            }
        }
        lines
    }
}

/// An OCSP response stapled to a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staple {
    /// The DER `OCSPResponse`, verified.
    pub response: Vec<u8>,
    /// Its `thisUpdate`, in Unix seconds.
    pub this_update: i64,
    /// Until when it may be served: its `nextUpdate` (Unix seconds).
    pub next_update: i64,
}

/// A certificate as the table serves it.
#[derive(Debug)]
pub struct Served {
    /// `[certificates.NAME]`'s name, or the server's name for its own certificate.
    pub name: Arc<str>,
    /// What is handed to rustls (with its staple, when it has one).
    pub key: Arc<CertifiedKey>,
}

/// One server's part of the table.
#[derive(Debug)]
pub struct ServerEntry {
    /// Its own certificate.
    pub own: Option<Arc<Served>>,
    /// Whether clients without TLS 1.3 are refused.
    pub tls13_only: bool,
    /// Its client-certificate policy.
    pub client_auth: Option<ClientAuthPolicy>,
}

/// The lookup table every handshake reads.
#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<String, Arc<Served>>,
    /// By the parent domain: `*.example.com` is under `example.com`.
    wildcard: HashMap<String, Arc<Served>>,
    default: Option<Arc<Served>>,
    servers: HashMap<String, ServerEntry>,
}

/// Why a certificate was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The SNI is one of its domains.
    Exact,
    /// The SNI is under one of its wildcards.
    Wildcard,
    /// The server's own certificate.
    Server,
    /// The `is_default` certificate.
    Default,
}

impl Table {
    /// Builds the table of `set`, serving issued certificates for ACME entries and attaching
    /// the staples. Returns it with notes about domains claimed twice (the first certificate in
    /// configuration order keeps them).
    pub fn build(
        set: &CertificateSet,
        issued: &HashMap<String, Loaded>,
        staples: &HashMap<[u8; 32], Staple>,
    ) -> (Table, Vec<String>) {
        let served = |name: &str, loaded: &Loaded| {
            let key = match staples.get(&loaded.info.fingerprint) {
                Some(staple) => Arc::new(CertifiedKey {
                    cert: loaded.key.cert.clone(),
                    key: loaded.key.key.clone(),
                    ocsp: Some(staple.response.clone()),
                }),
                None => loaded.key.clone(),
            };
            Arc::new(Served {
                name: Arc::from(name),
                key,
            })
        };
        let mut table = Table::default();
        let mut notes = Vec::new();
        for cert in &set.certificates {
            let Some((loaded, _)) = serving(cert, issued) else {
                continue;
            };
            let entry = served(&cert.name, loaded);
            if cert.is_default && table.default.is_none() {
                table.default = Some(entry.clone());
            }
            for domain in domains_of(cert, loaded) {
                let (map, key) = match domain.strip_prefix("*.") {
                    Some(parent) => (&mut table.wildcard, parent),
                    None => (&mut table.exact, domain.as_str()),
                };
                match map.get(key) {
                    Some(first) if *first.name != *cert.name => notes.push(format!(
                        "certificates.{}: domain {domain} is served by certificates.{} (first in \
                         order)",
                        cert.name, first.name
                    )),
                    Some(_) => {}
                    None => {
                        map.insert(key.to_string(), entry.clone());
                    }
                }
            }
        }
        for server in &set.servers {
            table.servers.insert(
                server.server.clone(),
                ServerEntry {
                    own: server
                        .own
                        .as_ref()
                        .map(|(loaded, _)| served(&server.server, loaded)),
                    tls13_only: server.tls13_only,
                    client_auth: server.client_auth.clone(),
                },
            );
        }
        (table, notes)
    }

    /// The certificate for a handshake with `server` asking for `sni`, and why.
    pub fn choose(&self, server: &str, sni: Option<&str>) -> Option<(&Arc<Served>, Match)> {
        if let Some(sni) = sni {
            if let Some(found) = self.exact.get(sni) {
                return Some((found, Match::Exact));
            }
            if let Some((_, parent)) = sni.split_once('.')
                && let Some(found) = self.wildcard.get(parent)
            {
                return Some((found, Match::Wildcard));
            }
        }
        if let Some(own) = self.servers.get(server).and_then(|s| s.own.as_ref()) {
            return Some((own, Match::Server));
        }
        self.default.as_ref().map(|d| (d, Match::Default))
    }

    /// The part of `server`.
    pub fn server(&self, server: &str) -> Option<&ServerEntry> {
        self.servers.get(server)
    }

    /// Which certificate each domain gets, one line each (for `pingap -t`).
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .exact
            .iter()
            .map(|(domain, served)| format!("{domain} -> certificates.{}", served.name))
            .chain(
                self.wildcard
                    .iter()
                    .map(|(parent, served)| format!("*.{parent} -> certificates.{}", served.name)),
            )
            .collect();
        lines.sort();
        let mut servers: Vec<(&String, &ServerEntry)> = self.servers.iter().collect();
        servers.sort_by_key(|(name, _)| *name);
        for (name, entry) in servers {
            let fallback = match (&entry.own, &self.default) {
                (Some(_), _) => "its own tls_cert".to_string(),
                (None, Some(default)) => format!("certificates.{} (is_default)", default.name),
                (None, None) => "none: the handshake is refused".to_string(),
            };
            lines.push(format!(
                "servers.{name}: other names and clients without SNI -> {fallback}"
            ));
        }
        lines
    }
}

/// The certificate `cert` serves: its issued one (for ACME) or its own, with its source.
fn serving<'a>(
    cert: &'a CompiledCertificate,
    issued: &'a HashMap<String, Loaded>,
) -> Option<(&'a Loaded, CertificateSource)> {
    match (cert.acme.is_some(), issued.get(&cert.name), &cert.loaded) {
        (true, Some(issued), _) => Some((issued, CertificateSource::Acme)),
        (_, _, Some(loaded)) => Some((loaded, cert.source)),
        _ => None,
    }
}

/// The domains `cert` serves: the configured ones, or the certificate's names.
fn domains_of<'a>(cert: &'a CompiledCertificate, loaded: &'a Loaded) -> &'a [String] {
    if cert.domains.is_empty() {
        &loaded.info.dns_names
    } else {
        &cert.domains
    }
}

/// Why the store refused something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name is not a `[certificates.NAME]` of the running configuration.
    #[error("no certificates.{0} in the running configuration")]
    Unknown(String),
    /// The certificate cannot be served.
    #[error("certificates.{name}: {message}")]
    Unusable {
        /// The certificate's name.
        name: String,
        /// Why.
        message: String,
    },
}

/// What the admin API shows of one certificate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CertificateSummary {
    /// `[certificates.NAME]`'s name, or the server's name for a server's own certificate.
    pub name: String,
    /// The server whose own certificate (`tls_cert`) this is; `None` for `[certificates]`.
    pub server: Option<String>,
    /// The domains it is served for.
    pub domains: Vec<String>,
    /// Its issuer (RFC 4514); empty while an ACME certificate waits to be issued.
    pub issuer: String,
    /// Its subject (RFC 4514).
    pub subject: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Where it came from.
    pub source: CertificateSource,
    /// Whether it serves handshakes nothing else matches.
    pub is_default: bool,
    /// Its OCSP stapling.
    pub ocsp: OcspSummary,
    /// The ACME state, as the ACME side reports it ([`CertificateStore::set_acme_status`]).
    #[schema(value_type = Option<Object>)]
    pub acme: Option<serde_json::Value>,
}

/// The OCSP stapling of a certificate.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct OcspSummary {
    /// The responder its issuer names, if any.
    pub responder: Option<String>,
    /// Whether a verified response is stapled now.
    pub stapled: bool,
    /// Until when the stapled response is valid (its `nextUpdate`, Unix seconds).
    pub next_update: Option<i64>,
}

/// A certificate the store serves, for its maintenance (OCSP, expiry warnings, metrics).
#[derive(Debug, Clone)]
pub struct ServedCertificate {
    /// Its name (`[certificates.NAME]`, or the server's).
    pub name: String,
    /// The domains it is served for.
    pub domains: Vec<String>,
    /// The certificate.
    pub loaded: Loaded,
    /// Its staple, if any.
    pub staple: Option<Staple>,
}

/// What the store keeps besides the live table.
#[derive(Default)]
struct State {
    set: Arc<CertificateSet>,
    issued: HashMap<String, Loaded>,
    acme_status: HashMap<String, serde_json::Value>,
    staples: HashMap<[u8; 32], Staple>,
}

/// The process's certificates (see the module documentation).
pub struct CertificateStore {
    live: ArcSwap<Table>,
    state: Mutex<State>,
    challenges: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateStore")
    }
}

impl Default for CertificateStore {
    fn default() -> Self {
        CertificateStore {
            live: ArcSwap::from_pointee(Table::default()),
            state: Mutex::new(State::default()),
            challenges: ArcSwap::from_pointee(HashMap::new()),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl CertificateStore {
    /// An empty store.
    pub fn new() -> Arc<CertificateStore> {
        Arc::new(CertificateStore::default())
    }

    /// The table handshakes read now.
    pub fn table(&self) -> Arc<Table> {
        self.live.load_full()
    }

    /// Calls `f` with the table of now, without taking a reference count (the handshake path).
    pub fn with_table<R>(&self, f: impl FnOnce(&Table) -> R) -> R {
        f(&self.live.load())
    }

    /// Serves `set` from now on (a configuration went live).
    pub fn activate(&self, set: Arc<CertificateSet>) {
        let mut state = self.lock();
        state.set = set;
        self.publish(&state);
    }

    /// The set served now.
    pub fn set(&self) -> Arc<CertificateSet> {
        self.lock().set.clone()
    }

    /// Serves `key`, issued by ACME, for `[certificates.NAME]` from now on, and across reloads
    /// for as long as the configuration has that name with `acme`. The chain must be complete
    /// (leaf first) and the key must match it.
    pub fn install_issued(&self, name: &str, key: Arc<CertifiedKey>) -> Result<(), StoreError> {
        let unusable = |message: String| StoreError::Unusable {
            name: name.to_string(),
            message,
        };
        key.keys_match().map_err(|e| unusable(e.to_string()))?;
        let loaded = Loaded::new(CertifiedKey {
            ocsp: None,
            ..(*key).clone()
        })
        .map_err(unusable)?;
        let mut state = self.lock();
        if !state
            .set
            .certificates
            .iter()
            .any(|c| c.name == name && c.acme.is_some())
        {
            return Err(StoreError::Unknown(name.to_string()));
        }
        state.issued.insert(name.to_string(), loaded);
        self.publish(&state);
        Ok(())
    }

    /// Records what the ACME side reports about `[certificates.NAME]` (shown in
    /// [`CertificateSummary::acme`]).
    pub fn set_acme_status(&self, name: &str, status: serde_json::Value) {
        self.lock().acme_status.insert(name.to_string(), status);
    }

    /// Serves `key` for tls-alpn-01 handshakes (ALPN exactly `acme-tls/1`) asking for `domain`.
    pub fn set_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(domain.to_ascii_lowercase(), key.clone());
            next
        });
    }

    /// Stops answering tls-alpn-01 handshakes for `domain`.
    pub fn remove_challenge(&self, domain: &str) {
        self.challenges.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(&domain.to_ascii_lowercase());
            next
        });
    }

    /// The tls-alpn-01 certificate for `domain`, if one is set.
    pub fn challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges.load().get(domain).cloned()
    }

    /// Staples `staple` to the certificate with `fingerprint` (SHA-256 of its DER) from now on.
    pub fn set_staple(&self, fingerprint: [u8; 32], staple: Staple) {
        let mut state = self.lock();
        if state.staples.get(&fingerprint) == Some(&staple) {
            return;
        }
        state.staples.insert(fingerprint, staple);
        self.publish(&state);
    }

    /// Drops staples whose `nextUpdate` is at or before `now` (Unix seconds), and those of
    /// certificates no longer served. Returns how many were dropped.
    pub fn drop_stale_staples(&self, now: i64) -> usize {
        let mut state = self.lock();
        let served: Vec<[u8; 32]> = served_in(&state)
            .map(|c| c.loaded.info.fingerprint)
            .collect();
        let before = state.staples.len();
        state
            .staples
            .retain(|fingerprint, staple| staple.next_update > now && served.contains(fingerprint));
        let dropped = before - state.staples.len();
        if dropped > 0 {
            self.publish(&state);
        }
        dropped
    }

    /// Every certificate served now, each once (a certificate of several servers or names is
    /// listed under each name).
    pub fn served(&self) -> Vec<ServedCertificate> {
        let state = self.lock();
        served_in(&state).collect()
    }

    /// A summary of every certificate served now (and of ACME certificates not issued yet).
    pub fn summaries(&self) -> Vec<CertificateSummary> {
        let state = self.lock();
        let mut summaries = Vec::new();
        for cert in &state.set.certificates {
            let serving = serving(cert, &state.issued);
            let summary = match serving {
                Some((loaded, source)) => summary_of(
                    &cert.name,
                    None,
                    domains_of(cert, loaded).to_vec(),
                    loaded,
                    source,
                    cert.is_default,
                    &state.staples,
                ),
                None => CertificateSummary {
                    name: cert.name.clone(),
                    server: None,
                    domains: cert.domains.clone(),
                    issuer: String::new(),
                    subject: String::new(),
                    not_before: 0,
                    not_after: 0,
                    source: CertificateSource::Acme,
                    is_default: cert.is_default,
                    ocsp: OcspSummary::default(),
                    acme: None,
                },
            };
            summaries.push(CertificateSummary {
                acme: state.acme_status.get(&cert.name).cloned(),
                ..summary
            });
        }
        for server in &state.set.servers {
            if let Some((loaded, source)) = &server.own {
                summaries.push(summary_of(
                    &server.server,
                    Some(server.server.clone()),
                    loaded.info.dns_names.clone(),
                    loaded,
                    *source,
                    false,
                    &state.staples,
                ));
            }
        }
        summaries
    }

    /// Resolves when something changed since the last call (for the maintenance task).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, state: &State) {
        let (table, _) = Table::build(&state.set, &state.issued, &state.staples);
        self.live.store(Arc::new(table));
        self.changed.notify_one();
    }
}

/// The certificates `state` serves.
fn served_in(state: &State) -> impl Iterator<Item = ServedCertificate> + '_ {
    let named = state.set.certificates.iter().filter_map(|cert| {
        let (loaded, _) = serving(cert, &state.issued)?;
        Some(ServedCertificate {
            name: cert.name.clone(),
            domains: domains_of(cert, loaded).to_vec(),
            loaded: loaded.clone(),
            staple: state.staples.get(&loaded.info.fingerprint).cloned(),
        })
    });
    let own = state.set.servers.iter().filter_map(|server| {
        let (loaded, _) = server.own.as_ref()?;
        Some(ServedCertificate {
            name: server.server.clone(),
            domains: loaded.info.dns_names.clone(),
            loaded: loaded.clone(),
            staple: state.staples.get(&loaded.info.fingerprint).cloned(),
        })
    });
    named.chain(own)
}

fn summary_of(
    name: &str,
    server: Option<String>,
    domains: Vec<String>,
    loaded: &Loaded,
    source: CertificateSource,
    is_default: bool,
    staples: &HashMap<[u8; 32], Staple>,
) -> CertificateSummary {
    let info = &loaded.info;
    let staple = staples.get(&info.fingerprint);
    CertificateSummary {
        name: name.to_string(),
        server,
        domains,
        issuer: info.issuer.clone(),
        subject: info.subject.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
        source,
        is_default,
        ocsp: OcspSummary {
            responder: info.ocsp_url.clone(),
            stapled: staple.is_some(),
            next_update: staple.map(|s| s.next_update),
        },
        acme: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(names: &[&str]) -> Loaded {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap()
                .self_signed(&key)
                .unwrap();
        let certified =
            crate::tls::certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
                .unwrap();
        Loaded::new(certified).unwrap()
    }

    fn named(
        name: &str,
        loaded: Option<Loaded>,
        acme: bool,
        is_default: bool,
    ) -> CompiledCertificate {
        CompiledCertificate {
            name: name.to_string(),
            domains: if loaded.is_none() {
                vec![format!("{name}.test")]
            } else {
                Vec::new()
            },
            is_default,
            acme: acme.then(|| "lets_encrypt".to_string()),
            source: if loaded.is_some() {
                CertificateSource::File
            } else {
                CertificateSource::Acme
            },
            loaded,
        }
    }

    fn server(name: &str, own: Option<Loaded>) -> ServerTls {
        ServerTls {
            server: name.to_string(),
            own: own.map(|own| (own, CertificateSource::Inline)),
            tls13_only: false,
            client_auth: None,
        }
    }

    fn chosen(table: &Table, server: &str, sni: Option<&str>) -> Option<(String, Match)> {
        table
            .choose(server, sni)
            .map(|(served, how)| (served.name.to_string(), how))
    }

    #[test]
    fn exact_then_wildcard_then_own_then_default() {
        let set = CertificateSet {
            certificates: vec![
                named("exact", Some(loaded(&["a.example.com"])), false, false),
                named("wild", Some(loaded(&["*.example.com"])), false, false),
                named("fallback", Some(loaded(&["fallback.test"])), false, true),
                // Claims a.example.com too: the first in order keeps it.
                named("late", Some(loaded(&["a.example.com"])), false, false),
            ],
            servers: vec![
                server("own", Some(loaded(&["own.test"]))),
                server("bare", None),
            ],
            files: Vec::new(),
        };
        let (table, notes) = Table::build(&set, &HashMap::new(), &HashMap::new());
        assert_eq!(
            notes,
            [
                "certificates.late: domain a.example.com is served by certificates.exact (first in order)"
            ]
        );
        let pick = |server, sni| chosen(&table, server, sni);
        assert_eq!(
            pick("own", Some("a.example.com")),
            Some(("exact".into(), Match::Exact))
        );
        assert_eq!(
            pick("own", Some("b.example.com")),
            Some(("wild".into(), Match::Wildcard))
        );
        assert_eq!(
            pick("own", Some("x.b.example.com")),
            Some(("own".into(), Match::Server))
        );
        assert_eq!(pick("own", None), Some(("own".into(), Match::Server)));
        assert_eq!(
            pick("bare", Some("other.test")),
            Some(("fallback".into(), Match::Default))
        );
        assert_eq!(
            pick("bare", Some("example.com")),
            Some(("fallback".into(), Match::Default))
        );
    }

    #[test]
    fn issued_certificates_are_served_at_once_and_kept_across_activations() {
        let store = CertificateStore::new();
        let set = || CertificateSet {
            certificates: vec![named("shop", None, true, false)],
            servers: vec![server("s", None)],
            files: Vec::new(),
        };
        store.activate(Arc::new(set()));
        assert!(store.table().choose("s", Some("shop.test")).is_none());
        assert_eq!(store.summaries()[0].source, CertificateSource::Acme);
        assert_eq!(store.summaries()[0].not_after, 0);

        let issued = loaded(&["shop.test"]);
        store.install_issued("shop", issued.key.clone()).unwrap();
        let served = |store: &CertificateStore| {
            store
                .table()
                .choose("s", Some("shop.test"))
                .map(|(served, _)| served.key.cert[0].clone())
        };
        assert_eq!(served(&store), Some(issued.key.cert[0].clone()));
        store.activate(Arc::new(set()));
        assert_eq!(served(&store), Some(issued.key.cert[0].clone()));
        let summary = &store.summaries()[0];
        assert_eq!(summary.source, CertificateSource::Acme);
        assert_eq!(summary.not_after, issued.info.not_after);
        assert_eq!(summary.domains, ["shop.test"]);

        assert!(matches!(
            store.install_issued("nope", issued.key.clone()),
            Err(StoreError::Unknown(_))
        ));
        // A key that is not the certificate's is refused.
        let other = loaded(&["shop.test"]);
        let mismatched = Arc::new(CertifiedKey::new(
            issued.key.cert.clone(),
            other.key.key.clone(),
        ));
        assert!(matches!(
            store.install_issued("shop", mismatched),
            Err(StoreError::Unusable { .. })
        ));
    }

    #[test]
    fn staples_are_served_until_their_next_update() {
        let store = CertificateStore::new();
        let cert = loaded(&["a.test"]);
        store.activate(Arc::new(CertificateSet {
            certificates: vec![named("a", Some(cert.clone()), false, false)],
            servers: vec![server("s", None)],
            files: Vec::new(),
        }));
        let ocsp = |store: &CertificateStore| {
            store
                .table()
                .choose("s", Some("a.test"))
                .and_then(|(served, _)| served.key.ocsp.clone())
        };
        assert_eq!(ocsp(&store), None);
        store.set_staple(
            cert.info.fingerprint,
            Staple {
                response: b"response".to_vec(),
                this_update: 100,
                next_update: 200,
            },
        );
        assert_eq!(ocsp(&store), Some(b"response".to_vec()));
        assert!(store.summaries()[0].ocsp.stapled);
        assert_eq!(store.drop_stale_staples(199), 0);
        assert_eq!(store.drop_stale_staples(200), 1);
        assert_eq!(ocsp(&store), None);
    }

    #[test]
    fn challenges_are_kept_by_lower_cased_domain() {
        let store = CertificateStore::new();
        let challenge = loaded(&["a.test"]);
        store.set_challenge("A.test", challenge.key.clone());
        assert!(store.challenge("a.test").is_some());
        store.remove_challenge("a.TEST");
        assert!(store.challenge("a.test").is_none());
    }
}
