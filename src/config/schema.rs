//! Stage 1 of the configuration: serde structs that mirror the TOML exactly.
//!
//! Nothing here has logic beyond parsing single values; names are resolved and everything is
//! checked in [`super::validate`] and compiled in [`crate::runtime::compile`]. Every struct
//! rejects unknown keys, so a misspelt key is an error rather than an ignored line. Optional keys
//! are `Option`s: defaults live where the config is compiled, next to their documentation.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::values::{ByteSize, ConfigDuration, OneOrMany};

/// The whole configuration, merged from every file.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Config {
    /// `[basic]`: process-wide settings.
    pub basic: Basic,
    /// `[upstreams.NAME]`: pools of backends.
    pub upstreams: IndexMap<String, Upstream>,
    /// `[locations.NAME]`: what to match and where to send it.
    pub locations: IndexMap<String, Location>,
    /// `[servers.NAME]`: listeners and the locations they serve.
    pub servers: IndexMap<String, Server>,
    /// `[plugins.NAME]`: plugin instances, referenced by locations.
    pub plugins: IndexMap<String, Plugin>,
    /// `[certificates.NAME]`: certificates chosen by SNI.
    pub certificates: IndexMap<String, Certificate>,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: Option<Metrics>,
    /// `[tracing]`: OpenTelemetry export.
    pub tracing: Option<Tracing>,
    /// `[admin]`: the admin API and dashboard.
    pub admin: Option<Admin>,
}

/// `[basic]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Basic {
    /// A name for this instance, used in logs.
    pub name: Option<String>,
    /// Worker threads per server (default: the number of CPUs).
    pub threads: Option<usize>,
    /// Whether worker threads steal work from each other (default false: each connection stays
    /// on the thread that accepted it, and each thread reuses its own upstream connections).
    pub work_stealing: Option<bool>,
    /// Where to write the process id when running as a daemon.
    pub pid_file: Option<PathBuf>,
    /// Where a daemon's standard error (its log) goes; without it, the daemon keeps the
    /// standard error it was started with.
    pub error_log: Option<PathBuf>,
    /// The unix socket used to hand listeners over in a graceful upgrade.
    pub upgrade_sock: Option<PathBuf>,
    /// User to switch to after daemonizing.
    pub user: Option<String>,
    /// Group to switch to after daemonizing.
    pub group: Option<String>,
    /// An HTML file used for error pages instead of the built-in one.
    pub error_template: Option<PathBuf>,
    /// How long in-flight requests may take to finish after SIGTERM (default 10s).
    pub graceful_shutdown_timeout: Option<ConfigDuration>,
    /// After SIGTERM, how long to keep accepting with the health endpoints answering 503 before
    /// the listeners close, so load balancers stop sending first (default 0; a second SIGTERM
    /// ends the wait).
    pub shutdown_delay: Option<ConfigDuration>,
    /// Log filter, e.g. `"info"` or `"info,pingap::proxy=debug"` (default `"info"`).
    pub log_level: Option<String>,
    /// pingap's own log: `"text"` (default) or `"json"` (one object per line).
    pub log_format: Option<String>,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Idle upstream connections kept per process (default 128).
    pub upstream_keepalive_pool_size: Option<usize>,
    /// How long an idle client connection is kept open for its next request (default 60s).
    pub keepalive_timeout: Option<ConfigDuration>,
    /// The time a client has to send the whole head of a request (default 60s).
    pub client_header_timeout: Option<ConfigDuration>,
    /// How long a write to a client may make no progress before the request ends and the
    /// connection is closed (default 60s).
    pub send_timeout: Option<ConfigDuration>,
    /// Apply the configuration when its file, directory or etcd keys change (default false;
    /// `--watch` turns it on too).
    pub auto_reload: Option<bool>,
    /// Where applied configurations are kept (default: `<config>.history` beside the file or
    /// directory; `PREFIX/_history/` in etcd).
    pub history_dir: Option<PathBuf>,
    /// Where ACME accounts and certificates are kept (default: `<config>.acme` beside the file
    /// or directory; `PREFIX/_acme/` in etcd).
    pub acme_dir: Option<PathBuf>,
    /// How many applied configurations the history keeps (default 50).
    pub history_keep: Option<usize>,
    /// After an apply, watch error rates this long and take the change back if they got worse
    /// (off unless set).
    pub rollback_window: Option<ConfigDuration>,
    /// How much worse (percentage points of 5xx answers, in some location) counts as worse
    /// (default 5).
    pub rollback_threshold: Option<f64>,
    /// Requests a location must have had in the window before its error rate counts
    /// (default 20).
    pub rollback_min_requests: Option<u64>,
}

/// `algorithm` of an upstream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each backend in turn.
    #[default]
    RoundRobin,
    /// Each backend in turn, in proportion to its weight.
    WeightedRoundRobin,
    /// The backend with the fewest requests in flight.
    LeastConnections,
    /// A backend chosen by the client address.
    IpHash,
    /// A backend chosen by a request key on a hash ring.
    ConsistentHash,
}

/// `protocol` (or `alpn`) of an upstream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 (`"http1"` or `"h1"`).
    #[default]
    #[serde(alias = "h1")]
    Http1,
    /// HTTP/2 only (h2c on plain connections).
    H2,
    /// HTTP/2 if the backend agrees by TLS ALPN, else HTTP/1.1 (`"auto"` or `"h2h1"`).
    #[serde(alias = "h2h1")]
    Auto,
}

/// `[upstreams.NAME]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Backends as `"host:port"` or `"host:port weight"`.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// How a backend is chosen.
    pub algorithm: Option<Algorithm>,
    /// For `consistent_hash`: `ip`, `uri`, `path`, `header:NAME`, `cookie:NAME` or `query:NAME`.
    pub hash_key: Option<String>,
    /// Active health check URL: `http://host/path`, `https://…` or `tcp://`.
    pub health_check: Option<String>,
    /// Time between two active checks of a backend (default 5s).
    pub health_check_interval: Option<ConfigDuration>,
    /// Time allowed for one check (default 2s).
    pub health_check_timeout: Option<ConfigDuration>,
    /// Statuses a passing HTTP check answers with, e.g. `"200-399"` or `"200,204"` (default
    /// `"200-299"`).
    pub health_check_status: Option<String>,
    /// Passing checks in a row that bring a backend back (default 2).
    pub healthy_threshold: Option<u32>,
    /// Failing checks in a row that take a backend out (default 3).
    pub unhealthy_threshold: Option<u32>,
    /// Failures within `fail_timeout` that take a backend out for `fail_timeout` (default 1;
    /// 0 turns passive health off).
    pub max_fails: Option<u32>,
    /// The window failures are counted in and how long a backend stays out (default 10s).
    pub fail_timeout: Option<ConfigDuration>,
    /// Upstream statuses that count as failures, e.g. `[500, 502, 503]` (default none).
    #[serde(default)]
    pub passive_fail_status: Vec<u16>,
    /// Consecutive failures that open a backend's circuit (default: no circuit breaker).
    pub circuit_breaker_failures: Option<u32>,
    /// How long an open circuit refuses requests before a probe goes through (default 10s).
    pub circuit_breaker_open_for: Option<ConfigDuration>,
    /// Successful probes in a row that close the circuit (default 1).
    pub circuit_breaker_successes: Option<u32>,
    /// Extra attempts on another backend for idempotent requests after a timeout or a 502/503
    /// (default 0). Connection failures always try another backend.
    pub retries: Option<u32>,
    /// No new attempt starts later than this after the first one (default: no limit).
    pub retry_timeout: Option<ConfigDuration>,
    /// How often host names in `addrs` are resolved again (default 30s).
    pub dns_refresh: Option<ConfigDuration>,
    /// The DNS server host names are resolved with, e.g. `"127.0.0.1:53"` (default: the
    /// system's resolver).
    pub dns_server: Option<String>,
    /// HTTP version to the backends: `http1`/`h1` (default), `h2` (HTTP/2 only; h2c without
    /// TLS) or `auto`/`h2h1` (HTTP/2 when TLS ALPN agrees, else HTTP/1.1).
    #[serde(alias = "alpn")]
    pub protocol: Option<Protocol>,
    /// Connect to the backends over TLS.
    pub tls: Option<bool>,
    /// SNI (and certificate name) for TLS to the backends; setting it turns TLS on.
    pub sni: Option<String>,
    /// Verify the backends' certificates (default true).
    pub verify_cert: Option<bool>,
    /// CA certificates (PEM file or inline) trusted for the backends instead of the system's.
    pub ca_file: Option<String>,
    /// Client certificate chain (PEM file or inline) presented to backends that ask for one.
    pub client_cert: Option<String>,
    /// The private key of `client_cert` (PEM file or inline).
    pub client_key: Option<String>,
    /// Time allowed to establish a connection (default 10s).
    pub connection_timeout: Option<ConfigDuration>,
    /// Time allowed to connect including the TLS handshake (default: no limit beyond
    /// `connection_timeout` and the handshake's own).
    pub total_connection_timeout: Option<ConfigDuration>,
    /// Time allowed between two reads from the backend (default 60s).
    pub read_timeout: Option<ConfigDuration>,
    /// Time allowed between two writes to the backend (default 60s).
    pub write_timeout: Option<ConfigDuration>,
    /// How long an idle pooled connection is kept (default 60s).
    pub idle_timeout: Option<ConfigDuration>,
}

/// `[locations.NAME]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// The upstream requests are proxied to.
    pub upstream: Option<String>,
    /// Hosts matched: exact, `*.example.com` or `~regex`; any host when absent.
    pub host: Option<OneOrMany>,
    /// Path matched: a prefix, `=/exact` or `~regex`; every path when absent.
    pub path: Option<String>,
    /// Methods matched, e.g. `["GET", "POST"]`; any method when empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions: `"Name: value"`, `"Name"` (present) or `"Name: ~regex"`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query conditions: `"name=value"`, `"name"` (present) or `"name=~regex"`.
    #[serde(default)]
    pub query: Vec<String>,
    /// Overrides the computed matching order: higher goes first (default 0).
    pub priority: Option<i32>,
    /// Plugin instances run for requests that match, by name.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Rewrite of the path sent upstream.
    pub rewrite: Option<String>,
    /// The largest request body accepted (413 beyond); a shorthand for a `request_size` plugin.
    pub client_max_body_size: Option<ByteSize>,
    /// How long a WebSocket (an upgraded connection) may stay silent in both directions
    /// before pingap closes it (default: the upstream's `read_timeout`).
    pub websocket_idle_timeout: Option<ConfigDuration>,
    /// Translate gRPC-web calls from browsers (`application/grpc-web`) into gRPC to the upstream.
    pub grpc_web: Option<bool>,
    /// Headers appended to the request sent upstream, `"Name: value"`.
    #[serde(default)]
    pub headers_add: Vec<String>,
    /// Headers set (replaced) on the request sent upstream.
    #[serde(default)]
    pub headers_set: Vec<String>,
    /// Headers removed from the request sent upstream, by name.
    #[serde(default)]
    pub headers_remove: Vec<String>,
    /// Headers appended to the response.
    #[serde(default)]
    pub response_headers_add: Vec<String>,
    /// Headers set (replaced) on the response.
    #[serde(default)]
    pub response_headers_set: Vec<String>,
    /// Headers removed from the response, by name.
    #[serde(default)]
    pub response_headers_remove: Vec<String>,
}

/// `[servers.NAME]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The listen address, `ip:port` (`[::]:port` for IPv6).
    pub addr: String,
    /// The locations served, by name.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Where to write the access log: a file path or `"stdout"` (default: no access log).
    pub access_log: Option<String>,
    /// `"combined"` (default), `"common"`, `"json"` or a custom string of `$variables`.
    pub access_log_format: Option<String>,
    /// Rotate the access log: `"daily"`, `"hourly"`, a size such as `"100MB"`, or both.
    pub access_log_rotate: Option<String>,
    /// Rotated access logs kept; older ones are deleted (default: all kept).
    pub access_log_keep: Option<usize>,
    /// Compress rotated access logs with gzip (default false).
    pub access_log_gzip: Option<bool>,
    /// Serve HTTPS with the certificates of `[certificates]`, chosen by SNI (implied by
    /// `tls_cert`).
    pub tls: Option<bool>,
    /// Certificate chain for HTTPS: a PEM file path or inline PEM. Served when the SNI matches
    /// no certificate of `[certificates]`.
    pub tls_cert: Option<String>,
    /// Private key for HTTPS: a PEM file path or inline PEM.
    pub tls_key: Option<String>,
    /// CA certificates (PEM file or inline) that sign the client certificates asked for
    /// (mutual TLS).
    pub client_ca: Option<String>,
    /// With `client_ca`: `"required"` (default) refuses clients without a valid certificate,
    /// `"optional"` serves them too.
    pub client_auth: Option<String>,
    /// Worker threads for this server (default `basic.threads`).
    pub threads: Option<usize>,
    /// Accept HTTP/2 without TLS ("prior knowledge") besides HTTP/1.1 (plain listeners).
    pub h2c: Option<bool>,
    /// Offer HTTP/2 by ALPN (TLS listeners; default true).
    pub enable_h2: Option<bool>,
    /// The oldest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    pub tls_min_version: Option<String>,
    /// The most client connections open at once on this listener (default: no limit).
    pub max_connections: Option<usize>,
    /// A path pingap answers itself with 200 (503 while draining), before routing and plugins:
    /// a health check for the load balancer in front (e.g. `"/healthz"`).
    pub health_path: Option<String>,
}

/// `[plugins.NAME]`: a type, an optional priority, and the type's own settings.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Plugin {
    /// The plugin type, e.g. `"jwt"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Overrides the type's default priority; higher runs first.
    pub priority: Option<i32>,
    /// Every other key, checked by the plugin type itself.
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// `[certificates.NAME]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Host names served with this certificate (default: its subject alternative names).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Certificate chain: a PEM file path or inline PEM.
    pub tls_cert: Option<String>,
    /// Private key: a PEM file path or inline PEM.
    pub tls_key: Option<String>,
    /// Obtain the certificate from an ACME directory: `"letsencrypt"` (or `"lets_encrypt"`),
    /// `"letsencrypt-staging"`, or the directory's `https://` URL.
    pub acme: Option<String>,
    /// The contact address given to the ACME account (optional).
    pub acme_email: Option<String>,
    /// CA certificates (PEM file or inline) trusted for the ACME directory's HTTPS instead of the
    /// system's and the Mozilla roots: for a private CA, or a test CA.
    pub acme_ca_file: Option<String>,
    /// How the directory checks that the domains are ours: `"http-01"` (answered on the plain
    /// HTTP servers) or `"tls-alpn-01"` (answered on the TLS servers); default: `http-01` when
    /// there is a plain HTTP server, else `tls-alpn-01`.
    pub acme_challenge: Option<String>,
    /// The wait after a failed order (default 1m); it doubles with every failure in a row, up
    /// to a day.
    pub acme_retry_delay: Option<ConfigDuration>,
    /// Serve this certificate when no other matches the SNI.
    pub is_default: Option<bool>,
}

/// `[metrics]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Whether the endpoint is served.
    #[serde(default)]
    pub enabled: bool,
    /// Listen address of the endpoint.
    pub addr: Option<String>,
    /// Path of the endpoint (default `/metrics`).
    pub path: Option<String>,
}

/// `[tracing]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// Whether spans are exported.
    #[serde(default)]
    pub enabled: bool,
    /// OTLP collector endpoint.
    pub endpoint: Option<String>,
    /// `service.name` of the spans.
    pub service_name: Option<String>,
    /// Fraction of requests traced, 0 to 1.
    pub sample_ratio: Option<f64>,
    /// `grpc` or `http`.
    pub protocol: Option<String>,
}

/// `[admin]`
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Whether the admin API and dashboard are served.
    #[serde(default)]
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:9180`; `PINGAP_ADMIN_ADDR` overrides it).
    pub addr: Option<String>,
    /// One user's name, with `password` (`PINGAP_ADMIN_USER` overrides it).
    pub user: Option<String>,
    /// That user's password: an argon2 hash (`$argon2id$…`, from `pingap hash-password`), or a
    /// plain password, accepted with a warning (`PINGAP_ADMIN_PASSWORD` overrides it).
    pub password: Option<String>,
    /// Users as `"name:$argon2id$…"`.
    #[serde(default)]
    pub users: Vec<String>,
    /// API tokens for automation as `"name:<sha256 hex of the token>"` (from
    /// `pingap hash-token`), sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Certificate chain for HTTPS: a PEM file path or inline PEM.
    pub tls_cert: Option<String>,
    /// Its private key: a PEM file path or inline PEM.
    pub tls_key: Option<String>,
    /// A session ends after this long without a request (default 30m).
    pub session_idle_timeout: Option<ConfigDuration>,
    /// A session ends this long after the login, however active (default 12h).
    pub session_lifetime: Option<ConfigDuration>,
    /// Failed logins from one address before it is locked out (default 5).
    pub lockout_threshold: Option<u32>,
    /// How long a locked-out address waits (default 15m).
    pub lockout_duration: Option<ConfigDuration>,
}
