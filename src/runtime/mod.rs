//! Stage 3: the immutable runtime snapshot requests are served from, and the handle that swaps
//! it atomically on reload.
//!
//! A request loads the current snapshot once, when it starts, and keeps it to the end: a reload
//! never changes a request in flight. State that must outlive a reload is carried over from the
//! previous snapshot by [`compile`], as [`carry`] decides.

pub mod carry;
pub mod compile;
pub mod error_page;
pub mod plan;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use indexmap::IndexMap;
use pingap_plugins::{Chain, Instance};

use crate::cache::CachePolicy;
use crate::headers::HeaderRules;
use crate::headers::TrustedProxies;
use crate::observe::access_log::{AccessLog, Sink};
use crate::observe::live::SeriesHandle;
use crate::observe::metrics::LocationMetrics;
use crate::router::Router;
use crate::router::path_rewrite::Rewrite;
use crate::tls::acme::AcmePlan;
use crate::tls::{CertificateSet, CertificateStore, ListenerTls};
use crate::upstream::Pool;
use error_page::ErrorPages;

pub use compile::{Compiled, compile};

/// The plugin types pingap knows: the built-in ones of `pingap-plugins` and the response cache.
pub fn plugin_registry() -> pingap_plugins::Registry {
    let mut registry = pingap_plugins::Registry::builtin();
    registry.register(crate::cache::TYPE);
    registry
}

/// Everything a request needs, compiled from one configuration.
pub struct Runtime {
    /// Increases by one with every snapshot installed in a [`RuntimeHandle`].
    pub generation: u64,
    /// The routing table of each server, in config order.
    pub servers: Vec<ServerRoutes>,
    /// Every upstream, by name.
    pub upstreams: IndexMap<String, Arc<Pool>>,
    /// Every plugin instance, by name.
    pub plugins: IndexMap<String, CompiledPlugin>,
    /// How error responses look.
    pub error_pages: ErrorPages,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Seconds an idle HTTP/1 client connection waits for its next request (`basic.keepalive_timeout`).
    pub keepalive_timeout_secs: u64,
    /// The certificates it serves, and the process's store they go live in.
    pub certificates: RuntimeCertificates,
    /// The certificates obtained from ACME directories, and where their material is kept.
    pub acme: Arc<AcmePlan>,
}

/// The certificates of a runtime: the set compiled from its configuration and the store of the
/// process (carried from runtime to runtime), which serves the set once the runtime is installed.
#[derive(Debug, Clone)]
pub struct RuntimeCertificates {
    /// The process's certificate store: what handshakes are served from, what ACME installs
    /// into and the admin API reads ([`CertificateStore::summaries`]).
    pub store: Arc<CertificateStore>,
    /// What this configuration says.
    pub set: Arc<CertificateSet>,
}

impl Runtime {
    /// The routes of server `name`.
    pub fn server(&self, name: &str) -> Option<&ServerRoutes> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The sinks of the servers' access logs (one per server that logs; servers logging to the
    /// same target share one).
    pub fn access_log_sinks(&self) -> impl Iterator<Item = &Arc<Sink>> {
        self.servers
            .iter()
            .filter_map(|server| server.access_log.as_ref())
            .map(AccessLog::sink)
    }
}

/// One server's routing table.
pub struct ServerRoutes {
    /// The server's name.
    pub name: String,
    /// Whether requests must come over TLS 1.3 (`tls_min_version = "1.3"`).
    pub tls13_only: bool,
    /// Its locations.
    pub router: Router<Arc<Location>>,
    /// Its access log, if it has one.
    pub access_log: Option<AccessLog>,
    /// The path pingap answers itself for load balancers' health checks.
    pub health_path: Option<String>,
}

/// A plugin instance with the fingerprint of the settings it was built from.
pub struct CompiledPlugin {
    /// Hash of type, priority and settings; an unchanged fingerprint keeps the instance.
    pub fingerprint: u64,
    /// The instance.
    pub instance: Arc<Instance>,
}

/// What to do with a request that matched a location.
pub struct Location {
    /// The location's name.
    pub name: Arc<str>,
    /// Whether its templates use the named captures of its host and path regexes (which are
    /// then extracted for each request).
    pub needs_captures: bool,
    /// Where to proxy; `None` when only plugins answer.
    pub upstream: Option<Arc<Pool>>,
    /// Its plugins, in run order.
    pub chain: Chain,
    /// The path rewrite.
    pub rewrite: Option<Rewrite>,
    /// Rules for the request sent upstream.
    pub request_headers: HeaderRules,
    /// Rules for the response.
    pub response_headers: HeaderRules,
    /// The response cache, when a `cache` plugin is in the chain.
    pub cache: Option<Arc<CachePolicy>>,
    /// How long an upgraded connection may stay silent.
    pub websocket_idle_timeout: Option<Duration>,
    /// Whether gRPC-web calls are bridged to gRPC.
    pub grpc_web: bool,
    /// Its counters.
    pub metrics: LocationMetrics,
    /// Its live statistics.
    pub live: SeriesHandle,
}

/// Settings that shape the process rather than requests: they take effect at start.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    /// `basic.name`.
    pub name: String,
    /// Worker threads per server.
    pub threads: usize,
    /// Work stealing between worker threads.
    pub work_stealing: bool,
    /// Pid file for daemon mode.
    pub pid_file: Option<PathBuf>,
    /// Standard error of the daemon.
    pub error_log: Option<PathBuf>,
    /// Socket for graceful upgrades.
    pub upgrade_sock: PathBuf,
    /// User to switch to after daemonizing.
    pub user: Option<String>,
    /// Group to switch to after daemonizing.
    pub group: Option<String>,
    /// Time in-flight requests get after SIGTERM.
    pub graceful_shutdown_timeout: Duration,
    /// Time between SIGTERM and closing the listeners, with the health endpoints answering 503.
    pub shutdown_delay: Duration,
    /// Log filter.
    pub log_level: String,
    /// `basic.log_format`.
    pub log_format: crate::observe::logs::LogFormat,
    /// Idle upstream connections kept.
    pub upstream_keepalive_pool_size: usize,
    /// Time a client has for the head of each request (`basic.client_header_timeout`).
    pub client_header_timeout: Duration,
    /// Time a write to a client may make no progress (`basic.send_timeout`).
    pub send_timeout: Duration,
    /// The Prometheus endpoint, when `[metrics]` is enabled.
    pub metrics: Option<MetricsPlan>,
    /// `[tracing]`, when enabled.
    pub tracing: Option<crate::observe::trace::TracingPlan>,
    /// One listener per server.
    pub listeners: Vec<ListenerPlan>,
    /// How configuration changes are picked up, kept and watched.
    pub lifecycle: LifecyclePlan,
    /// The admin API, when `[admin]` is enabled.
    pub admin: Option<AdminPlan>,
}

/// `[admin]`, checked: where the admin API listens and who may use it.
#[derive(Debug, Clone)]
pub struct AdminPlan {
    /// The listen address.
    pub addr: SocketAddr,
    /// Its certificate, for HTTPS.
    pub tls: Option<Arc<rustls::sign::CertifiedKey>>,
    /// Who may sign in.
    pub users: Vec<AdminUser>,
    /// API tokens, by name, as SHA-256 digests of the token.
    pub tokens: Vec<(String, [u8; 32])>,
    /// A session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A session ends this long after the login.
    pub session_lifetime: Duration,
    /// Failed logins from one address before it is locked out.
    pub lockout_threshold: u32,
    /// How long a locked-out address waits.
    pub lockout_duration: Duration,
}

/// A user of the admin API.
#[derive(Clone)]
pub struct AdminUser {
    /// The name.
    pub name: String,
    /// How the password is checked.
    pub password: AdminPassword,
}

/// How an admin user's password is checked.
#[derive(Clone)]
pub enum AdminPassword {
    /// An argon2 hash in PHC form (`$argon2id$v=19$…`).
    Argon2(String),
    /// A plain password from the configuration (accepted with a warning).
    Plain(String),
}

impl std::fmt::Debug for AdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password, hashed or not, never reaches a log.
        f.debug_struct("AdminUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `basic.auto_reload`, `history_*` and `rollback_*`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecyclePlan {
    /// Apply changes of the source as they happen.
    pub auto_reload: bool,
    /// `basic.history_dir`, resolved against the file that set it.
    pub history_dir: Option<PathBuf>,
    /// How many versions the history keeps.
    pub history_keep: usize,
    /// The automatic rollback window, when set.
    pub rollback: Option<RollbackPlan>,
}

/// When an applied configuration is taken back automatically.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollbackPlan {
    /// How long after an apply error rates are compared.
    pub window: Duration,
    /// Percentage points of 5xx answers a location may get worse by.
    pub threshold: f64,
    /// Requests a location needs in the window for its rate to count.
    pub min_requests: u64,
}

/// Where `[metrics]` is served.
#[derive(Debug, Clone)]
pub struct MetricsPlan {
    /// The listen address.
    pub addr: SocketAddr,
    /// The path.
    pub path: String,
}

/// A server's listener.
#[derive(Debug, Clone)]
pub struct ListenerPlan {
    /// The server's name.
    pub server: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate resolver, for HTTPS.
    pub tls: Option<Arc<ListenerTls>>,
    /// Worker threads, when the server overrides `basic.threads`.
    pub threads: Option<usize>,
    /// HTTP/2 without TLS (plain listeners).
    pub h2c: bool,
    /// HTTP/2 by ALPN (TLS listeners).
    pub enable_h2: bool,
    /// The most client connections open at once (`max_connections`); `None`: no limit.
    pub max_connections: Option<usize>,
}

/// The current snapshot, swapped atomically.
pub struct RuntimeHandle {
    current: ArcSwap<Runtime>,
    generations: AtomicU64,
}

impl RuntimeHandle {
    /// A handle serving `runtime` as generation 1 (its certificates go live).
    pub fn new(mut runtime: Runtime) -> Self {
        runtime.generation = 1;
        activate(&runtime);
        RuntimeHandle {
            current: ArcSwap::from_pointee(runtime),
            generations: AtomicU64::new(1),
        }
    }

    /// The current snapshot, to keep for a whole request.
    pub fn load(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Installs `runtime` as the next generation (its certificates go live for the next
    /// handshake) and returns that generation.
    pub fn install(&self, mut runtime: Runtime) -> u64 {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        runtime.generation = generation;
        activate(&runtime);
        self.current.store(Arc::new(runtime));
        generation
    }
}

/// Serves the certificates of `runtime`.
fn activate(runtime: &Runtime) {
    let certificates = &runtime.certificates;
    certificates.store.activate(certificates.set.clone());
}
