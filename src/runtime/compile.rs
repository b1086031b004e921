//! Stage 2, part two, and stage 3: parse every value, build every object (plugins, pools,
//! routers, certificates) and assemble the [`Runtime`] and the [`ProcessPlan`].
//!
//! All errors are collected, each placed at its file, key and line; a configuration with any
//! error produces no runtime, so a bad config never replaces a working one.

mod admin;

pub use admin::{ADMIN_ADDR_ENV, DEFAULT_ADMIN_ADDR};

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use pingap_plugins::{BuildEnv, Chain, Instance, Registry};

mod certificates;

use super::carry::Carry;
use super::error_page::ErrorPages;
use super::{
    CompiledPlugin, LifecyclePlan, ListenerPlan, Location, MetricsPlan, ProcessPlan, RollbackPlan,
    Runtime, RuntimeCertificates, ServerRoutes,
};
use crate::cache::{CachePlugin, CachePolicy};
use crate::config::schema::{
    Config, Location as LocationSpec, Plugin as PluginSpec, Server as ServerSpec,
};
use crate::config::validate::{Findings, parse_listen_addr, validate};
use crate::config::{ConfigErrors, Loaded, Origins};
use crate::headers::HeaderRules;
use crate::headers::TrustedProxies;
use crate::observe::access_log::{AccessLog, Format, Rotation, Sink, Target};
use crate::observe::live;
use crate::observe::logs::LogFormat;
use crate::observe::metrics::metrics;
use crate::observe::trace::TracingPlan;
use crate::router::conditions::Conditions;
use crate::router::host::HostPattern;
use crate::router::path::PathPattern;
use crate::router::path_rewrite::Rewrite;
use crate::router::{RouteSpec, Router, capture_names};
use crate::tls::acme::AcmePlan;
use crate::tls::acme::spec::Listeners as AcmeListeners;
use crate::tls::{CertificateStore, MinVersion};
use crate::upstream::{Pool, PoolEnv};
use pingap_plugins::vars::{Scope, check_group_name};

/// Default time in-flight requests get after SIGTERM.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default upgrade socket.
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/pingap_upgrade.sock";
/// Default time an idle client connection waits for its next request.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most worker threads a server may ask for: more is a mistake (each holds a runtime).
pub const MAX_THREADS: usize = 1024;
/// Default idle upstream connections kept.
pub const DEFAULT_KEEPALIVE_POOL_SIZE: usize = 128;
/// Versions the history keeps when `basic.history_keep` is not set.
pub const DEFAULT_HISTORY_KEEP: usize = 50;
/// The longest `basic.shutdown_delay`.
pub const MAX_SHUTDOWN_DELAY: Duration = Duration::from_secs(300);
/// The most versions `basic.history_keep` accepts.
pub const MAX_HISTORY_KEEP: usize = 10_000;
/// Percentage points a location's 5xx ratio may grow by in the rollback window.
pub const DEFAULT_ROLLBACK_THRESHOLD: f64 = 5.0;
/// Requests a location needs in the rollback window for its error ratio to count.
pub const DEFAULT_ROLLBACK_MIN_REQUESTS: u64 = 20;

/// The result of compiling a configuration.
pub struct Compiled {
    /// The snapshot to serve requests from.
    pub runtime: Runtime,
    /// The process settings.
    pub plan: ProcessPlan,
    /// Things worth telling the operator.
    pub warnings: Vec<String>,
}

impl Compiled {
    /// A one-line summary, e.g. `2 servers, 3 locations, 1 upstream (3 backends), 2 plugins`.
    pub fn summary(&self) -> String {
        let backends: usize = self
            .runtime
            .upstreams
            .values()
            .map(|p| p.backend_count())
            .sum();
        let locations = self
            .runtime
            .servers
            .iter()
            .flat_map(|s| s.router.targets().map(|l| &l.name))
            .collect::<std::collections::HashSet<_>>()
            .len();
        format!(
            "{}, {}, {} ({}), {}",
            plural(self.runtime.servers.len(), "server"),
            plural(locations, "location"),
            plural(self.runtime.upstreams.len(), "upstream"),
            plural(backends, "backend"),
            plural(self.runtime.plugins.len(), "plugin"),
        )
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Compiles a loaded configuration. `previous` is the running runtime: what it carries over to
/// the new one is decided in [`super::carry`].
pub fn compile(
    loaded: &Loaded,
    registry: &Registry,
    previous: Option<&Runtime>,
) -> Result<Compiled, ConfigErrors> {
    let mut findings = Findings::default();
    validate(loaded, &mut findings);
    let mut cx = Compiler {
        config: &loaded.config,
        origins: &loaded.origins,
        registry,
        findings,
        carry: Carry::from(previous),
        sinks: Vec::new(),
        store: Carry::from(previous).certificate_store(),
        tls_servers: Vec::new(),
        tls_files: Vec::new(),
    };

    let plan_basic = cx.basic();
    let trusted_proxies = cx.trusted_proxies();
    let error_pages = cx.error_pages();
    let plugins = cx.plugins();
    let upstreams = cx.upstreams();
    let locations = cx.locations(&upstreams, &plugins);
    let certificates = cx.certificates();
    let (servers, listeners) = cx.servers(&locations);
    let certificates = RuntimeCertificates {
        set: cx.certificate_set(certificates),
        store: cx.store.clone(),
    };
    let acme = cx.acme(&listeners);

    let Compiler { findings, .. } = cx;
    if !findings.errors.is_empty() {
        return Err(ConfigErrors(findings.errors));
    }
    let plan = ProcessPlan {
        listeners,
        ..plan_basic
    };
    Ok(Compiled {
        runtime: Runtime {
            generation: 0,
            servers,
            upstreams,
            plugins,
            error_pages,
            trusted_proxies,
            keepalive_timeout_secs: loaded
                .config
                .basic
                .keepalive_timeout
                .map_or(DEFAULT_KEEPALIVE_TIMEOUT, |d| d.get())
                .as_secs()
                .max(1),
            certificates,
            acme: Arc::new(acme),
        },
        plan,
        warnings: findings.warnings,
    })
}

/// Compiles one configuration: its inputs, what the running runtime hands over, and the errors
/// and warnings found so far.
struct Compiler<'a> {
    config: &'a Config,
    origins: &'a Origins,
    registry: &'a Registry,
    findings: Findings,
    /// What the running runtime hands over.
    carry: Carry<'a>,
    /// The access-log sinks opened or carried so far (servers logging to one target share one).
    sinks: Vec<Arc<Sink>>,
    /// The process's certificate store, which the listeners' resolvers read.
    store: Arc<CertificateStore>,
    /// The HTTPS servers compiled so far.
    tls_servers: Vec<crate::tls::store::ServerTls>,
    /// The certificate, key and CA files read so far.
    tls_files: Vec<PathBuf>,
}

impl Compiler<'_> {
    fn error(&mut self, table: &str, key: &str, message: impl Into<String>) {
        let error = self.origins.error(table, key, message);
        self.findings.errors.push(error);
    }

    fn resolve(&self, table: &str, path: &Path) -> PathBuf {
        self.origins.resolve(table, path)
    }

    fn basic(&mut self) -> ProcessPlan {
        let basic = &self.config.basic;
        let threads = match basic.threads {
            Some(0) => {
                self.error("basic", "threads", "must be at least 1");
                1
            }
            Some(n) if n > MAX_THREADS => {
                self.error(
                    "basic",
                    "threads",
                    format!("{n} is more than the {MAX_THREADS} worker threads accepted"),
                );
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let log_level = basic
            .log_level
            .clone()
            .unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            self.error("basic", "log_level", format!("invalid log filter: {e}"));
        }
        let log_format = match basic.log_format.as_deref().map(LogFormat::parse) {
            Some(Ok(format)) => format,
            Some(Err(e)) => {
                self.error("basic", "log_format", e);
                LogFormat::default()
            }
            None => LogFormat::default(),
        };
        // Client timeouts: 60 s like nginx's; at least 1 ms (the resolution of the timers; zero
        // would time every client out).
        let mut client_timeout = |key: &str, value: Option<Duration>| {
            const DEFAULT: Duration = Duration::from_secs(60);
            match value {
                Some(d) if d < Duration::from_millis(1) => {
                    self.error("basic", key, "must be at least 1ms");
                    DEFAULT
                }
                Some(d) => d,
                None => DEFAULT,
            }
        };
        let client_header_timeout = client_timeout(
            "client_header_timeout",
            basic.client_header_timeout.map(|d| d.get()),
        );
        let send_timeout = client_timeout("send_timeout", basic.send_timeout.map(|d| d.get()));
        let resolve_file = |path: &Option<PathBuf>| path.as_ref().map(|p| self.resolve("basic", p));
        ProcessPlan {
            name: basic.name.clone().unwrap_or_else(|| "pingap".to_string()),
            threads,
            // Each connection stays on the thread that took it and reuses that thread's upstream
            // connections, as in nginx's workers: less cross-thread work per request (see the
            // README's Performance, Round 2).
            work_stealing: basic.work_stealing.unwrap_or(false),
            pid_file: resolve_file(&basic.pid_file),
            error_log: resolve_file(&basic.error_log),
            upgrade_sock: resolve_file(&basic.upgrade_sock)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_UPGRADE_SOCK)),
            user: basic.user.clone(),
            group: basic.group.clone(),
            graceful_shutdown_timeout: basic
                .graceful_shutdown_timeout
                .map_or(DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT, |d| d.get()),
            shutdown_delay: self.shutdown_delay(),
            log_level,
            log_format,
            upstream_keepalive_pool_size: basic
                .upstream_keepalive_pool_size
                .unwrap_or(DEFAULT_KEEPALIVE_POOL_SIZE),
            client_header_timeout,
            send_timeout,
            metrics: self.metrics_plan(),
            tracing: self.tracing_plan(),
            listeners: Vec::new(),
            lifecycle: self.lifecycle_plan(),
            admin: self.admin_plan(),
        }
    }

    fn shutdown_delay(&mut self) -> Duration {
        let delay = self
            .config
            .basic
            .shutdown_delay
            .map_or(Duration::ZERO, |d| d.get());
        if delay > MAX_SHUTDOWN_DELAY {
            self.error(
                "basic",
                "shutdown_delay",
                format!("is more than {}s", MAX_SHUTDOWN_DELAY.as_secs()),
            );
        }
        delay
    }

    fn lifecycle_plan(&mut self) -> LifecyclePlan {
        let basic = &self.config.basic;
        let history_keep = match basic.history_keep {
            Some(n) if n == 0 || n > MAX_HISTORY_KEEP => {
                self.error(
                    "basic",
                    "history_keep",
                    format!("{n} is not between 1 and {MAX_HISTORY_KEEP}"),
                );
                DEFAULT_HISTORY_KEEP
            }
            Some(n) => n,
            None => DEFAULT_HISTORY_KEEP,
        };
        let threshold = match basic.rollback_threshold {
            Some(t) if !(t > 0.0 && t <= 100.0) => {
                self.error(
                    "basic",
                    "rollback_threshold",
                    format!("{t} is not a number of percentage points between 0 and 100"),
                );
                DEFAULT_ROLLBACK_THRESHOLD
            }
            Some(t) => t,
            None => DEFAULT_ROLLBACK_THRESHOLD,
        };
        let rollback = match basic.rollback_window.map(|d| d.get()) {
            Some(window) if window < Duration::from_secs(1) => {
                self.error("basic", "rollback_window", "must be at least 1s");
                None
            }
            Some(window) => Some(RollbackPlan {
                window,
                threshold,
                min_requests: basic
                    .rollback_min_requests
                    .unwrap_or(DEFAULT_ROLLBACK_MIN_REQUESTS)
                    .max(1),
            }),
            None => None,
        };
        let history_dir = basic
            .history_dir
            .as_ref()
            .map(|dir| self.resolve("basic", dir));
        LifecyclePlan {
            auto_reload: basic.auto_reload.unwrap_or(false),
            history_dir,
            history_keep,
            rollback,
        }
    }

    fn tracing_plan(&mut self) -> Option<TracingPlan> {
        let spec = self.config.tracing.as_ref().filter(|t| t.enabled)?;
        let Some(endpoint) = spec.endpoint.as_deref() else {
            self.error(
                "tracing",
                "endpoint",
                "enabled tracing needs an endpoint, e.g. \"127.0.0.1:4317\"",
            );
            return None;
        };
        match TracingPlan::new(
            endpoint,
            spec.service_name.as_deref(),
            spec.sample_ratio,
            spec.protocol.as_deref(),
        ) {
            Ok(plan) => Some(plan),
            Err((key, e)) => {
                self.error("tracing", key, e);
                None
            }
        }
    }

    fn metrics_plan(&mut self) -> Option<MetricsPlan> {
        let spec = self.config.metrics.as_ref().filter(|m| m.enabled)?;
        let path = spec.path.clone().unwrap_or_else(|| "/metrics".to_string());
        if !path.starts_with('/') {
            self.error("metrics", "path", format!("\"{path}\" must start with /"));
        }
        let Some(addr) = spec.addr.as_deref() else {
            self.error(
                "metrics",
                "addr",
                "an enabled endpoint needs an addr, e.g. \"127.0.0.1:9100\"",
            );
            return None;
        };
        match parse_listen_addr(addr) {
            Ok(addr) => Some(MetricsPlan { addr, path }),
            Err(e) => {
                self.error("metrics", "addr", e);
                None
            }
        }
    }

    fn trusted_proxies(&mut self) -> TrustedProxies {
        match TrustedProxies::parse(&self.config.basic.trusted_proxies) {
            Ok(proxies) => proxies,
            Err(errors) => {
                for (index, message) in errors {
                    self.error("basic", &format!("trusted_proxies[{index}]"), message);
                }
                TrustedProxies::default()
            }
        }
    }

    fn error_pages(&mut self) -> ErrorPages {
        let Some(template) = &self.config.basic.error_template else {
            return ErrorPages::default();
        };
        let path = self.resolve("basic", template);
        match std::fs::read_to_string(&path) {
            Ok(text) => ErrorPages::with_template(text),
            Err(e) => {
                self.error(
                    "basic",
                    "error_template",
                    format!("cannot read {}: {e}", path.display()),
                );
                ErrorPages::default()
            }
        }
    }

    fn plugins(&mut self) -> IndexMap<String, CompiledPlugin> {
        let mut built = IndexMap::new();
        for (name, spec) in &self.config.plugins {
            let fingerprint = fingerprint(spec);
            let instance = match self.carry.plugin(name, fingerprint) {
                Some(kept) => kept,
                None => match self.registry.build(
                    name,
                    &spec.kind,
                    spec.priority,
                    &spec.settings,
                    &BuildEnv {
                        base_dir: self.resolve(&format!("plugins.{name}"), Path::new("")),
                        name: name.clone(),
                        previous: self.carry.rebuilt_plugin(name),
                    },
                ) {
                    Ok(instance) => Arc::new(instance),
                    Err(e) => {
                        let key = e.key().unwrap_or_default().to_string();
                        self.error(&format!("plugins.{name}"), &key, e.to_string());
                        continue;
                    }
                },
            };
            built.insert(
                name.clone(),
                CompiledPlugin {
                    fingerprint,
                    instance,
                },
            );
        }
        built
    }

    fn upstreams(&mut self) -> IndexMap<String, Arc<Pool>> {
        let mut pools = IndexMap::new();
        for (name, spec) in &self.config.upstreams {
            if spec.addrs.is_empty() {
                continue; // reported by validation
            }
            let table = format!("upstreams.{name}");
            let resolve = |path: &Path| self.resolve(&table, path);
            let cx = PoolEnv {
                resolve: &resolve,
                previous: self.carry.pool(name),
            };
            match Pool::compile(name, spec, &cx) {
                Ok(pool) => {
                    pools.insert(name.clone(), Arc::new(pool));
                }
                Err(errors) => {
                    for (key, message) in errors {
                        self.error(&table, &key, message);
                    }
                }
            }
        }
        pools
    }

    fn locations(
        &mut self,
        upstreams: &IndexMap<String, Arc<Pool>>,
        plugins: &IndexMap<String, CompiledPlugin>,
    ) -> IndexMap<String, (RouteParts, Arc<Location>)> {
        let mut compiled = IndexMap::new();
        for (name, spec) in &self.config.locations {
            let table = format!("locations.{name}");
            if let Some(location) = self.location(&table, name, spec, upstreams, plugins) {
                compiled.insert(name.clone(), location);
            }
        }
        compiled
    }

    fn location(
        &mut self,
        table: &str,
        name: &str,
        spec: &LocationSpec,
        upstreams: &IndexMap<String, Arc<Pool>>,
        plugins: &IndexMap<String, CompiledPlugin>,
    ) -> Option<(RouteParts, Arc<Location>)> {
        let errors_before = self.findings.errors.len();
        let mut hosts = Vec::new();
        for (index, host) in spec.host.iter().flat_map(|h| h.0.iter()).enumerate() {
            match HostPattern::parse(host) {
                Ok(pattern) => hosts.push(pattern),
                Err(e) => self.error(table, &format!("host[{index}]"), e),
            }
        }
        let path = match spec.path.as_deref().map(PathPattern::parse) {
            Some(Ok(path)) => Some(path),
            Some(Err(e)) => {
                self.error(table, "path", e);
                None
            }
            None => None,
        };
        let conditions = match Conditions::parse(&spec.methods, &spec.headers, &spec.query) {
            Ok(conditions) => conditions,
            Err(errors) => {
                for (key, message) in errors {
                    self.error(table, &key, message);
                }
                Conditions::default()
            }
        };
        let captures = capture_names(&hosts, path.as_ref());
        for name in &captures {
            if let Err(e) = check_group_name(name) {
                let key = if path
                    .as_ref()
                    .and_then(PathPattern::regex)
                    .is_some_and(|r| r.capture_names().flatten().any(|n| n == name))
                {
                    "path"
                } else {
                    "host"
                };
                self.error(table, key, e);
            }
        }
        let scope = Scope {
            captures: &captures,
            groups: None,
        };
        let rewrite = match spec
            .rewrite
            .as_deref()
            .map(|text| Rewrite::parse(text, &captures))
        {
            Some(Ok(rewrite)) => Some(rewrite),
            Some(Err(e)) => {
                self.error(table, "rewrite", e);
                None
            }
            None => None,
        };
        let request_headers = self.header_rules(
            table,
            "headers",
            [&spec.headers_add, &spec.headers_set, &spec.headers_remove],
            scope,
        );
        let response_headers = self.header_rules(
            table,
            "response_headers",
            [
                &spec.response_headers_add,
                &spec.response_headers_set,
                &spec.response_headers_remove,
            ],
            scope,
        );
        if self.findings.errors.len() > errors_before {
            return None;
        }
        let upstream = spec
            .upstream
            .as_ref()
            .and_then(|name| upstreams.get(name).cloned());
        let mut instances: Vec<Arc<Instance>> = spec
            .plugins
            .iter()
            .filter_map(|name| plugins.get(name).map(|p| p.instance.clone()))
            .collect();
        if let Some(size) = spec.client_max_body_size {
            let mut settings = toml::Table::new();
            let bytes = i64::try_from(size.bytes()).unwrap_or(i64::MAX);
            settings.insert("max_size".to_string(), toml::Value::Integer(bytes));
            let built = self.registry.build(
                "client_max_body_size",
                "request_size",
                None,
                &settings,
                &BuildEnv::default(),
            );
            match built {
                Ok(instance) => instances.push(Arc::new(instance)),
                Err(e) => self.error(table, "client_max_body_size", e.to_string()),
            }
        }
        let caches: Vec<Arc<CachePolicy>> = instances
            .iter()
            .filter_map(|i| i.plugin().as_any()?.downcast_ref::<CachePlugin>())
            .map(|cache| cache.policy().clone())
            .collect();
        if caches.len() > 1 {
            self.error(table, "plugins", "a location can use one cache plugin");
        }
        let chain = Chain::new(instances);
        let needs_captures = request_headers.uses_captures()
            || response_headers.uses_captures()
            || rewrite.as_ref().is_some_and(Rewrite::uses_captures);
        let parts = RouteParts {
            hosts,
            path,
            conditions,
            priority: spec.priority.unwrap_or(0),
        };
        let location = Location {
            name: Arc::from(name),
            needs_captures,
            upstream,
            chain,
            rewrite,
            request_headers,
            response_headers,
            cache: caches.into_iter().next(),
            websocket_idle_timeout: spec.websocket_idle_timeout.map(|d| d.get()),
            grpc_web: spec.grpc_web.unwrap_or(false),
            metrics: metrics().location(name),
            live: live::stats().location(name),
        };
        Some((parts, Arc::new(location)))
    }

    fn header_rules(
        &mut self,
        table: &str,
        prefix: &str,
        lists: [&Vec<String>; 3],
        scope: Scope<'_>,
    ) -> HeaderRules {
        let [add, set, remove] = lists;
        match HeaderRules::compile(prefix, add, set, remove, scope) {
            Ok(rules) => rules,
            Err(errors) => {
                for (key, message) in errors {
                    self.error(table, &key, message);
                }
                HeaderRules::default()
            }
        }
    }

    fn servers(
        &mut self,
        locations: &IndexMap<String, (RouteParts, Arc<Location>)>,
    ) -> (Vec<ServerRoutes>, Vec<ListenerPlan>) {
        let mut servers = Vec::new();
        let mut listeners = Vec::new();
        for (name, spec) in &self.config.servers {
            let table = format!("servers.{name}");
            let specs = spec
                .locations
                .iter()
                .filter_map(|location| locations.get(location))
                .map(|(parts, location)| RouteSpec {
                    hosts: parts.hosts.clone(),
                    path: parts.path.clone(),
                    conditions: parts.conditions.clone(),
                    priority: parts.priority,
                    target: location.clone(),
                })
                .collect();
            let router = Router::new(specs);
            self.warn_shadowed(name, &router);
            let min_version = match spec.tls_min_version.as_deref().map(MinVersion::parse) {
                Some(Ok(version)) => version,
                Some(Err(e)) => {
                    self.error(&table, "tls_min_version", e);
                    MinVersion::default()
                }
                None => MinVersion::default(),
            };
            let health_path = spec.health_path.clone();
            if let Some(path) = &health_path
                && !path.starts_with('/')
            {
                self.error(
                    &table,
                    "health_path",
                    format!("\"{path}\" must start with /"),
                );
            }
            servers.push(ServerRoutes {
                name: name.clone(),
                tls13_only: min_version == MinVersion::Tls13,
                router,
                access_log: self.access_log(&table, spec),
                health_path,
            });
            match spec.threads {
                Some(0) => self.error(&table, "threads", "must be at least 1"),
                Some(n) if n > MAX_THREADS => self.error(
                    &table,
                    "threads",
                    format!("{n} is more than the {MAX_THREADS} worker threads accepted"),
                ),
                _ => {}
            }
            const MAX_CONNECTIONS: usize = 10_000_000;
            let max_connections = match spec.max_connections {
                Some(0) => {
                    self.error(&table, "max_connections", "must be at least 1");
                    None
                }
                Some(n) if n > MAX_CONNECTIONS => {
                    self.error(
                        &table,
                        "max_connections",
                        format!("{n} is more than the {MAX_CONNECTIONS} connections accepted"),
                    );
                    None
                }
                n => n,
            };
            let tls = self.server_tls(name, &table, spec, min_version == MinVersion::Tls13);
            // Address errors were reported by validation.
            if let Ok(addr) = parse_listen_addr(&spec.addr) {
                if tls.is_some() && spec.h2c.is_some() {
                    self.error(
                        &table,
                        "h2c",
                        "is for plain listeners; use enable_h2 with TLS",
                    );
                }
                if tls.is_none() && spec.enable_h2.is_some() {
                    self.error(
                        &table,
                        "enable_h2",
                        "is for TLS listeners; use h2c without TLS",
                    );
                }
                listeners.push(ListenerPlan {
                    server: name.clone(),
                    addr,
                    tls,
                    threads: spec.threads,
                    h2c: spec.h2c.unwrap_or(false),
                    enable_h2: spec.enable_h2.unwrap_or(true),
                    max_connections,
                });
            }
        }
        (servers, listeners)
    }

    /// The access log of a server: its format, rotation and (shared) writer.
    fn access_log(&mut self, table: &str, spec: &ServerSpec) -> Option<AccessLog> {
        let Some(target) = spec.access_log.as_deref() else {
            for key in [
                ("access_log_format", spec.access_log_format.is_some()),
                ("access_log_rotate", spec.access_log_rotate.is_some()),
                ("access_log_keep", spec.access_log_keep.is_some()),
                ("access_log_gzip", spec.access_log_gzip.is_some()),
            ]
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            {
                self.error(table, key, "has no effect without access_log");
            }
            return None;
        };
        let format = match Format::parse(spec.access_log_format.as_deref().unwrap_or("combined")) {
            Ok(format) => format,
            Err(e) => {
                self.error(table, "access_log_format", e);
                return None;
            }
        };
        let target = match Target::parse(target) {
            Target::File(path) => Target::File(self.resolve(table, &path)),
            Target::Stdout => Target::Stdout,
        };
        let mut rotation = Rotation {
            keep: spec.access_log_keep,
            gzip: spec.access_log_gzip.unwrap_or(false),
            ..Rotation::default()
        };
        if let Some(schedule) = &spec.access_log_rotate {
            match Rotation::parse_schedule(schedule) {
                Ok((period, max_size)) => {
                    rotation.period = period;
                    rotation.max_size = max_size;
                }
                Err(e) => {
                    self.error(table, "access_log_rotate", e);
                    return None;
                }
            }
            if target == Target::Stdout {
                self.error(
                    table,
                    "access_log_rotate",
                    "standard output cannot be rotated",
                );
                return None;
            }
        } else if rotation.keep.is_some() || rotation.gzip {
            let key = if rotation.gzip {
                "access_log_gzip"
            } else {
                "access_log_keep"
            };
            self.error(table, key, "has no effect without access_log_rotate");
        }
        let shared = self
            .sinks
            .iter()
            .find(|sink| sink.serves(&target, &rotation))
            .cloned()
            .or_else(|| self.carry.sink(&target, &rotation));
        if let Some(sink) = shared {
            if !self.sinks.iter().any(|s| Arc::ptr_eq(s, &sink)) {
                self.sinks.push(sink.clone());
            }
            return Some(AccessLog::new(format, sink));
        }
        match Sink::open(target.clone(), rotation) {
            Ok(sink) => {
                self.sinks.push(sink.clone());
                Some(AccessLog::new(format, sink))
            }
            Err(e) => {
                let shown = match &target {
                    Target::File(path) => path.display().to_string(),
                    Target::Stdout => "stdout".to_string(),
                };
                self.error(table, "access_log", format!("cannot open {shown}: {e}"));
                None
            }
        }
    }

    /// Warns about the locations of a server that can never match.
    fn warn_shadowed(&mut self, server: &str, router: &Router<Arc<Location>>) {
        let names: Vec<&Arc<Location>> = router.targets().collect();
        for (shadowed, by) in router.shadowed() {
            let describe = |index: usize| {
                let name = &names[index].name;
                let path = self.config.locations[name.as_ref()]
                    .path
                    .clone()
                    .unwrap_or_else(|| "/".to_string());
                (name.clone(), path)
            };
            let ((shadowed, shadowed_path), (by, by_path)) = (describe(shadowed), describe(by));
            self.findings.warnings.push(format!(
                "locations.{shadowed} can never match on servers.{server}: locations.{by} is tried \
                 first, has the same hosts and no conditions, and its path \"{by_path}\" covers \
                 \"{shadowed_path}\""
            ));
        }
    }

    /// The ACME certificates ([`crate::tls::acme::spec`]).
    fn acme(&mut self, listeners: &[ListenerPlan]) -> AcmePlan {
        let available = AcmeListeners {
            plain: listeners.iter().any(|l| l.tls.is_none()),
            tls: listeners.iter().any(|l| l.tls.is_some()),
        };
        let origins = self.origins;
        let mut errors = Vec::new();
        let plan = crate::tls::acme::spec::compile(
            self.config,
            available,
            &|table, path| origins.resolve(table, path),
            &mut |table, key, message| errors.push((table.to_string(), key.to_string(), message)),
        );
        for (table, key, message) in errors {
            self.error(&table, &key, message);
        }
        plan
    }
}

/// The matching part of a compiled location.
struct RouteParts {
    hosts: Vec<HostPattern>,
    path: Option<PathPattern>,
    conditions: Conditions,
    priority: i32,
}

fn fingerprint(spec: &PluginSpec) -> u64 {
    let mut hasher = DefaultHasher::new();
    spec.kind.hash(&mut hasher);
    spec.priority.hash(&mut hasher);
    spec.settings.to_string().hash(&mut hasher);
    hasher.finish()
}
