//! Upstream pools: the backends of an `[upstreams.NAME]` table, how one is chosen (see
//! [`balance`]), which are healthy (see [`health`] and the active [`check`]s), and how pingap
//! connects to them.

pub mod active;
pub mod balance;
pub mod check;
pub mod dns;
pub mod health;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use balance::{Balancer, HashKey, Selected};
use check::HealthCheck;
use dns::{Discovery, Entry};
use health::{BackendHealth, BreakerPolicy, HealthPolicy, Outcome, now_ms};
use pingora::http::RequestHeader;
use pingora::lb::Backend;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509};

use crate::config::schema::{Algorithm, Protocol, Upstream};
use crate::observe::live::SeriesHandle;

/// Default time allowed to connect to a backend.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed between two reads from a backend.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time allowed between two writes to a backend.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time an idle pooled connection is kept.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Heaviest weight a backend may have.
const MAX_WEIGHT: usize = 1000;

/// A compiled upstream.
pub struct Pool {
    name: Arc<str>,
    algorithm: Algorithm,
    hash_key: Option<HashKey>,
    members: ArcSwap<Members>,
    policy: HealthPolicy,
    check: Option<HealthCheck>,
    retry: RetryPolicy,
    discovery: Discovery,
    connect: ConnectOptions,
    response_time: prometheus::Histogram,
    live: SeriesHandle,
}

/// The backends of a pool at one moment, with the balancer over them.
pub struct Members {
    balancer: Balancer,
    backends: Vec<Member>,
}

/// One backend.
pub struct Member {
    /// Its address.
    pub addr: SocketAddr,
    /// Its weight.
    pub weight: usize,
    /// Its health, shared with the balancer's copy of it.
    pub health: Arc<BackendHealth>,
    backend: Backend,
}

impl Members {
    /// The backends.
    pub fn backends(&self) -> &[Member] {
        &self.backends
    }

    /// The health of `backend` (a linear scan: pools are small and this stays allocation-free).
    fn health(&self, backend: &Backend) -> Option<&Arc<BackendHealth>> {
        self.backends
            .iter()
            .find(|m| m.backend.addr == backend.addr)
            .map(|m| &m.health)
    }
}

/// When a failed attempt is tried again on another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Extra attempts for idempotent requests after a timeout or a 502/503.
    pub retries: u32,
    /// No attempt starts later than this after the first.
    pub retry_timeout: Option<Duration>,
}

struct ConnectOptions {
    tls: bool,
    sni: String,
    verify_cert: bool,
    ca: Option<Arc<[WrappedX509]>>,
    client_cert: Option<Arc<CertKey>>,
    protocol: Protocol,
    connection_timeout: Duration,
    total_connection_timeout: Option<Duration>,
    read_timeout: Duration,
    write_timeout: Duration,
    idle_timeout: Duration,
}

/// A config error inside one upstream table: the key and the reason.
pub type KeyError = (String, String);

/// What compiling a pool needs besides its table.
pub struct PoolEnv<'a> {
    /// Turns a path from the config into a full path.
    pub resolve: &'a dyn Fn(&Path) -> PathBuf,
    /// The pool of the same name in the running configuration, whose backends' health is kept.
    pub previous: Option<&'a Pool>,
}

impl Pool {
    /// Builds the pool for `[upstreams.NAME]`, resolving host names once.
    pub fn compile(name: &str, spec: &Upstream, cx: &PoolEnv) -> Result<Pool, Vec<KeyError>> {
        let mut errors = Vec::new();
        let mut entries = Vec::new();
        let mut schemes = BTreeSet::new();
        for (index, addr) in spec.addrs.iter().enumerate() {
            match parse_backend(addr) {
                Ok((scheme, entry)) => {
                    schemes.extend(scheme);
                    entries.push(entry);
                }
                Err(e) => errors.push((format!("addrs[{index}]"), e)),
            }
        }
        let dns_server = spec.dns_server.as_deref().and_then(|text| {
            parse_dns_server(text)
                .map_err(|e| errors.push(("dns_server".to_string(), e)))
                .ok()
        });
        let discovery = Discovery {
            entries,
            server: dns_server,
            refresh: spec.dns_refresh.map_or(dns::DEFAULT_REFRESH, |d| d.get()),
        };
        if schemes.len() > 1 {
            errors.push((
                "addrs".to_string(),
                "mixes http:// and https:// backends; use one upstream for each".to_string(),
            ));
        }
        let hash_key = match spec.hash_key.as_deref().map(HashKey::parse).transpose() {
            Ok(key) => key,
            Err(e) => {
                errors.push(("hash_key".to_string(), e));
                None
            }
        };
        let check = match &spec.health_check {
            Some(url) => HealthCheck::compile(url, spec)
                .map_err(|e| errors.extend(e))
                .ok(),
            None => None,
        };
        let policy = health_policy(spec, &mut errors);
        let ca = spec.ca_file.as_deref().and_then(|value| {
            read_ca(value, cx.resolve)
                .map_err(|e| errors.push(("ca_file".to_string(), e)))
                .ok()
        });
        let client_cert = match (&spec.client_cert, &spec.client_key) {
            (Some(cert), Some(key)) => read_client_cert(cert, key, cx.resolve)
                .map_err(|e| errors.push(e))
                .ok(),
            (Some(_), None) => {
                errors.push((
                    "client_key".to_string(),
                    "client_cert and client_key must be set together".to_string(),
                ));
                None
            }
            (None, Some(_)) => {
                errors.push((
                    "client_cert".to_string(),
                    "client_cert and client_key must be set together".to_string(),
                ));
                None
            }
            (None, None) => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let addrs = if discovery.is_dynamic() {
            discovery
                .resolve_blocking()
                .map_err(|e| vec![("addrs".to_string(), e)])?
        } else {
            discovery
                .entries
                .iter()
                .filter_map(|entry| match entry {
                    Entry::Fixed(addr, weight) => Some((*addr, *weight)),
                    Entry::Name(..) => None,
                })
                .collect()
        };
        let name: Arc<str> = Arc::from(name);
        let response_time = crate::observe::metrics::metrics().upstream(&name);
        let live = crate::observe::live::stats().upstream(&name);
        let algorithm = spec.algorithm.unwrap_or_default();
        let previous = cx.previous.map(|p| p.members.load_full());
        let members = build_members(
            &name,
            algorithm,
            hash_key.clone(),
            addrs,
            previous.as_deref(),
        )
        .map_err(|e| vec![("hash_key".to_string(), e)])?;
        let sni = spec.sni.clone().unwrap_or_default();
        let https = schemes.first().is_some_and(|s| *s == "https");
        let tls = spec.tls.unwrap_or(https || !sni.is_empty());
        if client_cert.is_some() && !tls {
            return Err(vec![(
                "client_cert".to_string(),
                "is presented over TLS: set tls = true (or https:// backends)".to_string(),
            )]);
        }
        Ok(Pool {
            name,
            algorithm,
            hash_key,
            members: ArcSwap::from_pointee(members),
            policy,
            check,
            retry: RetryPolicy {
                retries: spec.retries.unwrap_or(0),
                retry_timeout: spec.retry_timeout.map(|d| d.get()),
            },
            discovery,
            response_time,
            live,
            connect: ConnectOptions {
                tls,
                sni,
                verify_cert: spec.verify_cert.unwrap_or(true),
                ca,
                client_cert,
                protocol: spec.protocol.unwrap_or_default(),
                connection_timeout: spec
                    .connection_timeout
                    .map_or(DEFAULT_CONNECTION_TIMEOUT, |d| d.get()),
                total_connection_timeout: spec.total_connection_timeout.map(|d| d.get()),
                read_timeout: spec.read_timeout.map_or(DEFAULT_READ_TIMEOUT, |d| d.get()),
                write_timeout: spec
                    .write_timeout
                    .map_or(DEFAULT_WRITE_TIMEOUT, |d| d.get()),
                idle_timeout: spec.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.get()),
            },
        })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current backends.
    pub fn members(&self) -> arc_swap::Guard<Arc<Members>> {
        self.members.load()
    }

    /// How many backends it has.
    pub fn backend_count(&self) -> usize {
        self.members.load().backends.len()
    }

    /// The backends' addresses, with their weight when it is not 1.
    pub fn backends(&self) -> Vec<String> {
        self.members
            .load()
            .backends
            .iter()
            .map(|m| match m.weight {
                1 => m.addr.to_string(),
                weight => format!("{} (weight {weight})", m.addr),
            })
            .collect()
    }

    /// The active health check, if configured.
    pub fn health_check(&self) -> Option<&HealthCheck> {
        self.check.as_ref()
    }

    /// The histogram of its backends' response times.
    pub fn response_time(&self) -> &prometheus::Histogram {
        &self.response_time
    }

    /// Its live statistics: one request per attempt on one of its backends.
    pub fn live(&self) -> &SeriesHandle {
        &self.live
    }

    /// How the backends are found.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Resolves the host names of `addrs` again and takes the result; a name that fails keeps
    /// the last good backends, and says so in the log.
    pub async fn refresh_backends(&self) {
        match self.discovery().resolve().await {
            Ok(found) => self.update_backends(found),
            Err(e) => tracing::warn!(
                upstream = %self.name(),
                "DNS refresh failed, keeping the last good backends: {e}"
            ),
        }
    }

    /// Replaces the backends with `found` (from a DNS refresh) when they differ, keeping the
    /// health of those that stay. Requests in flight keep the backend they have.
    pub fn update_backends(&self, found: Vec<(SocketAddr, usize)>) {
        let current = self.members.load_full();
        let mut wanted: Vec<(SocketAddr, usize)> = found.clone();
        wanted.sort();
        wanted.dedup();
        let mut have: Vec<(SocketAddr, usize)> = current
            .backends
            .iter()
            .map(|m| (m.addr, m.weight))
            .collect();
        have.sort();
        if wanted == have {
            return;
        }
        match build_members(
            &self.name,
            self.algorithm,
            self.hash_key.clone(),
            found,
            Some(&current),
        ) {
            Ok(members) => {
                self.members.store(Arc::new(members));
                tracing::info!(
                    upstream = %self.name,
                    "backends changed by DNS: {}",
                    self.backends().join(", ")
                );
            }
            Err(e) => tracing::warn!(upstream = %self.name, "cannot use the new backends: {e}"),
        }
    }

    /// When failed attempts are retried.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// How live traffic judges the backends.
    pub fn health_policy(&self) -> &HealthPolicy {
        &self.policy
    }

    /// Chooses a healthy backend for a request from `client_ip`, other than those `excluded`
    /// (that failed this request already).
    /// A backend whose open circuit is due for a probe gets the request first.
    pub fn select(
        &self,
        req: &RequestHeader,
        client_ip: Option<IpAddr>,
        excluded: impl Fn(&SocketAddr) -> bool,
    ) -> Option<Selected> {
        let members = self.members.load();
        let now = now_ms();
        let untried = |backend: &Backend| backend.addr.as_inet().is_none_or(|a| !excluded(a));
        if self.policy.breaker.is_some() {
            for member in &members.backends {
                if untried(&member.backend) && member.health.claim_probe(&self.policy, now) {
                    let mut selected = members.balancer.take(&member.backend);
                    selected.in_flight = Some(member.health.enter());
                    selected.health = Some(member.health.clone());
                    return Some(selected);
                }
            }
        }
        let mut selected = members.balancer.select(req, client_ip, &|backend| {
            untried(backend) && members.health(backend).is_none_or(|h| h.serving(now))
        })?;
        selected.health = members.health(&selected.backend).cloned();
        selected.in_flight = selected.health.as_ref().map(BackendHealth::enter);
        Some(selected)
    }

    /// Records how an attempt on `selected` went, for passive health and the circuit breaker.
    pub fn record(&self, selected: &Selected, outcome: Outcome) {
        if let Some(health) = &selected.health {
            let passive = self.members.load().backends.len() > 1;
            health.record(&self.policy, outcome, passive, now_ms());
        }
    }

    /// How to connect to `backend`.
    pub fn peer(&self, backend: &Backend) -> HttpPeer {
        let connect = &self.connect;
        let mut peer = HttpPeer::new(backend.addr.clone(), connect.tls, connect.sni.clone());
        peer.options.connection_timeout = Some(connect.connection_timeout);
        peer.options.total_connection_timeout = connect.total_connection_timeout;
        peer.options.read_timeout = Some(connect.read_timeout);
        peer.options.write_timeout = Some(connect.write_timeout);
        peer.options.idle_timeout = Some(connect.idle_timeout);
        peer.options.verify_cert = connect.verify_cert;
        peer.options.verify_hostname = connect.verify_cert;
        peer.options.ca = connect.ca.clone();
        peer.client_cert_key = connect.client_cert.clone();
        match connect.protocol {
            Protocol::Http1 => peer.options.set_http_version(1, 1),
            Protocol::H2 => peer.options.set_http_version(2, 2),
            Protocol::Auto => peer.options.set_http_version(2, 1),
        }
        peer
    }
}

fn health_policy(spec: &Upstream, errors: &mut Vec<KeyError>) -> HealthPolicy {
    let mut policy = HealthPolicy {
        max_fails: spec.max_fails.unwrap_or(health::DEFAULT_MAX_FAILS),
        fail_timeout: spec
            .fail_timeout
            .map_or(health::DEFAULT_FAIL_TIMEOUT, |d| d.get()),
        fail_statuses: spec.passive_fail_status.clone(),
        breaker: None,
    };
    for (index, status) in spec.passive_fail_status.iter().enumerate() {
        if !(100..=599).contains(status) {
            errors.push((
                format!("passive_fail_status[{index}]"),
                format!("{status} is not an HTTP status"),
            ));
        }
    }
    match spec.circuit_breaker_failures {
        Some(0) => errors.push((
            "circuit_breaker_failures".to_string(),
            "must be at least 1 (leave it out to turn the breaker off)".to_string(),
        )),
        Some(failures) => {
            policy.breaker = Some(BreakerPolicy {
                failures,
                open_for: spec
                    .circuit_breaker_open_for
                    .map_or(health::DEFAULT_BREAKER_OPEN_FOR, |d| d.get()),
                successes: spec
                    .circuit_breaker_successes
                    .unwrap_or(health::DEFAULT_BREAKER_SUCCESSES)
                    .max(1),
            })
        }
        None => {
            for (key, set) in [
                (
                    "circuit_breaker_open_for",
                    spec.circuit_breaker_open_for.is_some(),
                ),
                (
                    "circuit_breaker_successes",
                    spec.circuit_breaker_successes.is_some(),
                ),
            ] {
                if set {
                    errors.push((
                        key.to_string(),
                        "has no effect without circuit_breaker_failures".to_string(),
                    ));
                }
            }
        }
    }
    policy
}

/// Builds the members over `addrs`, keeping the health of backends `previous` already had.
fn build_members(
    upstream: &Arc<str>,
    algorithm: Algorithm,
    hash_key: Option<HashKey>,
    addrs: Vec<(SocketAddr, usize)>,
    previous: Option<&Members>,
) -> Result<Members, String> {
    let kept: HashMap<SocketAddr, &Arc<BackendHealth>> = previous
        .map(|p| p.backends.iter().map(|m| (m.addr, &m.health)).collect())
        .unwrap_or_default();
    let mut unique: BTreeSet<Backend> = BTreeSet::new();
    let mut healths = Vec::new();
    for (addr, weight) in addrs {
        let health = kept.get(&addr).map_or_else(
            || Arc::new(BackendHealth::new(upstream.clone(), addr.to_string())),
            |h| Arc::clone(h),
        );
        let backend = Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            weight,
            ext: Default::default(),
        };
        if unique.insert(backend.clone()) {
            healths.push((backend, health));
        }
    }
    let backends = unique
        .iter()
        .filter_map(|backend| {
            let (_, health) = healths.iter().find(|(b, _)| b == backend)?;
            Some(Member {
                addr: *backend.addr.as_inet()?,
                weight: backend.weight,
                health: health.clone(),
                backend: backend.clone(),
            })
        })
        .collect();
    Ok(Members {
        balancer: Balancer::build(algorithm, hash_key, unique)?,
        backends,
    })
}

/// Reads the PEM certificates of `ca_file`.
fn read_ca(value: &str, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<Arc<[WrappedX509]>, String> {
    let pem = crate::tls::read_pem(value, resolve)?;
    Ok(crate::tls::certificates(&pem)?
        .into_iter()
        .map(|der| WrappedX509::new(der.to_vec(), pingora::utils::tls::parse_x509))
        .collect())
}

/// Reads `client_cert` and `client_key`: the chain (leaf first) and the key, which must belong
/// to the leaf.
fn read_client_cert(
    cert: &str,
    key: &str,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Arc<CertKey>, KeyError> {
    use rustls::pki_types::PrivateKeyDer;
    let cert_pem =
        crate::tls::read_pem(cert, resolve).map_err(|e| ("client_cert".to_string(), e))?;
    let key_pem = crate::tls::read_pem(key, resolve).map_err(|e| ("client_key".to_string(), e))?;
    let certified = crate::tls::certified_key(&cert_pem, &key_pem)
        .map_err(|e| ("client_cert".to_string(), e))?;
    let key_der = {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| {
                (
                    "client_key".to_string(),
                    format!("invalid private key PEM: {e}"),
                )
            })?
            .secret_der()
            .to_vec()
    };
    // Pingora reads the key back from DER without saying which format it is in.
    PrivateKeyDer::try_from(key_der.clone()).map_err(|e| {
        (
            "client_key".to_string(),
            format!("unusable private key: {e}"),
        )
    })?;
    let chain = certified.cert.iter().map(|der| der.to_vec()).collect();
    Ok(Arc::new(CertKey::new(chain, key_der)))
}

/// Parses `"host:port"` or `"host:port weight"`, optionally with `http://` or `https://`
/// (which makes the port optional). Returns the scheme given, if any.
fn parse_backend(text: &str) -> Result<(Option<&'static str>, Entry), String> {
    let mut parts = text.split_whitespace();
    let addr = parts
        .next()
        .ok_or_else(|| "an address is empty".to_string())?;
    let weight = match parts.next() {
        None => 1,
        Some(weight) => match weight.parse::<usize>() {
            Ok(w) if (1..=MAX_WEIGHT).contains(&w) => w,
            _ => {
                return Err(format!(
                    "weight \"{weight}\" must be a number from 1 to {MAX_WEIGHT}"
                ));
            }
        },
    };
    if parts.next().is_some() {
        return Err(format!(
            "\"{text}\" is not \"host:port\" or \"host:port weight\""
        ));
    }
    let (scheme, addr) = match addr.split_once("://") {
        Some(("http", rest)) => (Some("http"), rest.trim_end_matches('/')),
        Some(("https", rest)) => (Some("https"), rest.trim_end_matches('/')),
        Some((other, _)) => {
            return Err(format!(
                "\"{other}://\" is not a backend scheme (http:// or https://)"
            ));
        }
        None => (None, addr),
    };
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return Ok((scheme, Entry::Fixed(socket, weight)));
    }
    let default_port = match scheme {
        Some("https") => Some(443),
        Some(_) => Some(80),
        None => None,
    };
    let (host, port) = match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse::<u16>() {
            Ok(port) => (host, port),
            Err(_) => return Err(format!("\"{addr}\" has an invalid port")),
        },
        _ => match default_port {
            Some(port) => (addr.trim_matches(['[', ']']), port),
            None => return Err(format!("\"{addr}\" has no port (write host:port)")),
        },
    };
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok((scheme, Entry::Fixed(SocketAddr::new(ip, port), weight)));
    }
    if host.is_empty() {
        return Err(format!("\"{addr}\" has no host"));
    }
    Ok((scheme, Entry::Name(host.to_string(), port, weight)))
}

/// Parses `dns_server`: `"IP"` (port 53) or `"IP:PORT"`.
fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("\"{text}\" is not an IP address with an optional port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> RequestHeader {
        RequestHeader::build("GET", b"/", None).unwrap()
    }

    fn compile(name: &str, spec: &Upstream) -> Result<Pool, Vec<KeyError>> {
        Pool::compile(
            name,
            spec,
            &PoolEnv {
                resolve: &|p| p.to_path_buf(),
                previous: None,
            },
        )
    }

    fn upstream(addrs: &[&str]) -> Upstream {
        Upstream {
            addrs: addrs.iter().map(|s| s.to_string()).collect(),
            ..Upstream::default()
        }
    }

    #[test]
    fn round_robin_visits_every_backend_evenly() {
        let pool = compile(
            "api",
            &upstream(&["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]),
        )
        .unwrap();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..300 {
            *counts
                .entry(
                    pool.select(&get(), None, |_| false)
                        .unwrap()
                        .backend
                        .addr
                        .to_string(),
                )
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&n| n == 100), "{counts:?}");
    }

    #[test]
    fn weights_and_host_names() {
        let pool = compile("w", &upstream(&["127.0.0.1:1 3", "localhost:2"])).unwrap();
        assert!(pool.backend_count() >= 2);
        let mut heavy = 0;
        for _ in 0..400 {
            if pool
                .select(&get(), None, |_| false)
                .unwrap()
                .backend
                .addr
                .to_string()
                == "127.0.0.1:1"
            {
                heavy += 1;
            }
        }
        assert!(heavy > 200, "weight 3 of total >= 4: {heavy}");
    }

    #[test]
    fn bad_backends_are_named() {
        let errors = compile(
            "bad",
            &upstream(&["127.0.0.1:1 0", "no-port", "127.0.0.1:1 2 3"]),
        )
        .err()
        .unwrap();
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["addrs[0]", "addrs[1]", "addrs[2]"]);
        assert!(errors[0].1.contains("must be a number from 1"));
        assert!(errors[1].1.contains("\"no-port\" has no port"));
    }

    #[test]
    fn health_is_kept_by_address_when_the_pool_is_compiled_again() {
        let spec = upstream(&["127.0.0.1:8001", "127.0.0.1:8002"]);
        let first = compile("api", &spec).unwrap();
        let changed = upstream(&["127.0.0.1:8002", "127.0.0.1:8003"]);
        let second = Pool::compile(
            "api",
            &changed,
            &PoolEnv {
                resolve: &|p| p.to_path_buf(),
                previous: Some(&first),
            },
        )
        .unwrap();
        let health = |pool: &Pool, port: u16| {
            pool.members()
                .backends()
                .iter()
                .find(|m| m.addr.port() == port)
                .map(|m| m.health.clone())
                .unwrap()
        };
        assert!(Arc::ptr_eq(&health(&first, 8002), &health(&second, 8002)));
        assert!(!Arc::ptr_eq(&health(&first, 8001), &health(&second, 8003)));
    }

    #[test]
    fn unhealthy_and_tried_backends_are_skipped_by_every_algorithm() {
        for algorithm in [
            "round_robin",
            "least_connections",
            "ip_hash",
            "consistent_hash",
        ] {
            let mut spec = upstream(&["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]);
            spec.algorithm = Some(toml::Value::from(algorithm).try_into().unwrap());
            if algorithm == "consistent_hash" {
                spec.hash_key = Some("uri".into());
            }
            let pool = compile("api", &spec).unwrap();
            let down = pool.members().backends()[0].health.clone();
            for _ in 0..3 {
                down.record_check(false, 1, 1, "test");
            }
            let tried = ["127.0.0.1:8002".parse().unwrap()];
            for i in 0..20 {
                let req = RequestHeader::build("GET", format!("/{i}").as_bytes(), None).unwrap();
                let ip = Some(format!("10.0.0.{i}").parse().unwrap());
                let chosen = pool.select(&req, ip, |a| tried.contains(a)).unwrap();
                assert_eq!(
                    chosen.backend.addr.to_string(),
                    "127.0.0.1:8003",
                    "{algorithm}"
                );
            }
            let everything = [
                "127.0.0.1:8002".parse().unwrap(),
                "127.0.0.1:8003".parse().unwrap(),
            ];
            assert!(
                pool.select(&get(), None, |a| everything.contains(a))
                    .is_none(),
                "{algorithm}"
            );
        }
    }

    #[test]
    fn backends_with_schemes_host_names_and_dns_servers() {
        assert_eq!(
            parse_backend("https://10.0.0.1").unwrap(),
            (
                Some("https"),
                Entry::Fixed("10.0.0.1:443".parse().unwrap(), 1)
            )
        );
        assert_eq!(
            parse_backend("api.internal:8080 5").unwrap(),
            (None, Entry::Name("api.internal".into(), 8080, 5))
        );
        assert_eq!(
            parse_backend("http://[::1]").unwrap().1,
            Entry::Fixed("[::1]:80".parse().unwrap(), 1)
        );
        assert!(parse_backend("ftp://x:1").is_err());
        assert!(parse_backend("x:port").is_err());
        assert_eq!(parse_dns_server("127.0.0.1").unwrap().port(), 53);
        assert!(parse_dns_server("dns.example").is_err());
        let mixed = compile(
            "m",
            &upstream(&["http://127.0.0.1:1", "https://127.0.0.1:2"]),
        );
        assert_eq!(mixed.err().unwrap()[0].0, "addrs");
    }

    #[test]
    fn peers_carry_timeouts_and_tls() {
        let mut spec = upstream(&["127.0.0.1:443"]);
        spec.sni = Some("api.example.com".into());
        spec.read_timeout = Some(crate::config::values::ConfigDuration(
            Duration::from_millis(250),
        ));
        let pool = compile("tls", &spec).unwrap();
        let peer = pool.peer(&pool.select(&get(), None, |_| false).unwrap().backend);
        assert_eq!(peer.sni, "api.example.com");
        assert!(peer.is_tls());
        assert_eq!(peer.options.read_timeout, Some(Duration::from_millis(250)));
        assert_eq!(
            peer.options.connection_timeout,
            Some(DEFAULT_CONNECTION_TIMEOUT)
        );
    }
}
