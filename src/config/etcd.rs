//! etcd as a configuration source: one key per entity under a prefix, read into a [`Snapshot`],
//! written back from one in a single transaction, edited one entity at a time with
//! compare-and-swap on `mod_revision`, and watched for changes.
//!
//! # Layout
//!
//! | key                          | value                                    |
//! | ---------------------------- | ---------------------------------------- |
//! | `PREFIX/basic`               | the body of `[basic]` (`key = value` lines) |
//! | `PREFIX/metrics`, `tracing`, `admin` | the body of that table           |
//! | `PREFIX/servers/NAME`        | the body of `[servers.NAME]`             |
//! | `PREFIX/locations/NAME`, `upstreams/NAME`, `plugins/NAME`, `certificates/NAME` | likewise |
//! | `PREFIX/_…`                  | not configuration (`_history/`, `_acme/`, …; see [`data`]) |
//!
//! A value is what an operator would type:
//! `etcdctl put /pingap/servers/web $'addr = "127.0.0.1:80"\nlocations = ["api"]'`.
//!
//! [`EtcdSource::read`] turns each value into a complete TOML document named after its key
//! relative to the prefix (`servers/web`): the `[servers.web]` header line followed by the value
//! exactly as stored, so comments survive and the line numbers of errors are the value's own plus
//! one (the header). Values with table headers of their own (`[headers]`) cannot be wrapped that
//! way and are re-serialised instead. A value that is not TOML is wrapped all the same, so
//! [`Snapshot::load`] reports the TOML error with the key as the file name, together with the
//! errors of every other key.
//!
//! # Runtime
//!
//! pingap calls these methods from synchronous code, on threads that may belong to another tokio
//! runtime (Pingora's). An [`EtcdSource`] therefore owns a small runtime of its own (one worker
//! thread named `etcd`); each method spawns its work there and waits for it with
//! [`futures::executor::block_on`], bounded by the `timeout` option. The runtime is shut down in
//! the background when the last clone of the source (and the last [`WatchGuard`]) is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};

mod data;

pub use data::EtcdLock;

use super::Snapshot;
use super::load::EnvLookup;
use super::values::ConfigDuration;

/// Top-level tables stored as one key each (`PREFIX/basic`).
const SINGLE_TABLES: [&str; 4] = ["basic", "metrics", "tracing", "admin"];
/// Top-level tables whose entries are stored as one key each (`PREFIX/servers/NAME`).
const NAMED_TABLES: [&str; 5] = [
    "servers",
    "locations",
    "upstreams",
    "plugins",
    "certificates",
];
/// The prefix used when the URL has no path.
const DEFAULT_PREFIX: &str = "/pingap";
/// The port of an endpoint that names none.
const DEFAULT_PORT: u16 = 2379;
/// The default `timeout`: how long one operation may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest wait between two attempts to re-establish a lost watch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first wait before re-establishing a lost watch.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Where the history lives, relative to the prefix.
const HISTORY: &str = "_history/";
/// How often `write` re-reads and retries when the store changed between its read and its
/// transaction (without an expected revision; with one, the second attempt reports the conflict).
const WRITE_ATTEMPTS: usize = 5;

/// gRPC status codes that mean the cluster could not be reached (rather than refused).
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The `etcd://` URL (or a file it names) is not usable.
    #[error("invalid etcd URL: {0}")]
    InvalidUrl(String),
    /// No endpoint answered.
    #[error("etcd at {endpoints} is unreachable: {reason}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// Why.
        reason: String,
    },
    /// A compare-and-swap failed: the key was changed by someone else.
    #[error(
        "etcd key {key} changed since it was read (expected mod_revision {expected}, it is \
         {actual}): read it again and retry"
    )]
    Conflict {
        /// The etcd key.
        key: String,
        /// The mod_revision the writer expected (0: that it did not exist).
        expected: i64,
        /// The mod_revision it has (0: it does not exist).
        actual: i64,
    },
    /// A key or value that does not fit the layout.
    #[error("{key}: {message}")]
    Invalid {
        /// The etcd key, or the document, at fault.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// etcd refused the request.
    #[error("etcd: {0}")]
    Etcd(String),
}

/// Connection settings parsed from
/// `etcd://HOST:PORT[,HOST:PORT…]/PREFIX?user=…&password=…&ca=…&cert=…&key=…&timeout=5s&connect_timeout=3s`
/// with `PINGAP_ETCD_USER`, `PINGAP_ETCD_PASSWORD`, `PINGAP_ETCD_CA`, `PINGAP_ETCD_CERT`,
/// `PINGAP_ETCD_KEY` read through `env` when the query does not set them.
///
/// A port defaults to 2379, the prefix to `/pingap`. Query values are percent-decoded (a password
/// with `&` in it is written `%26`). With `ca` (and optionally `cert` and `key` for a client
/// certificate) the endpoints are reached over TLS; the system's trust roots are not used.
/// Neither `Display` nor `Debug` shows the user or the password.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    /// Where the keys live: a leading '/', no trailing '/', e.g. `/pingap`.
    pub prefix: String,
    /// The user to authenticate as.
    pub user: Option<String>,
    /// Their password.
    pub password: Option<String>,
    /// The PEM file of the CA that signed the members' certificates (TLS).
    pub ca: Option<PathBuf>,
    /// The PEM file of a client certificate (TLS).
    pub cert: Option<PathBuf>,
    /// The PEM file of its private key.
    pub key: Option<PathBuf>,
    /// How long one operation may take.
    pub timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl EtcdOptions {
    /// Parses an `etcd://` URL; see [`EtcdOptions`].
    pub fn parse(url: &str, env: EnvLookup<'_>) -> Result<EtcdOptions, EtcdError> {
        let invalid = |message: String| EtcdError::InvalidUrl(message);
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("etcd://"))
            .and_then(|_| url.get(7..))
            .ok_or_else(|| invalid(format!("\"{}\" does not start with etcd://", redact(url))))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match location.find('/') {
            Some(slash) => location.split_at(slash),
            None => (location, ""),
        };
        if authority.contains('@') {
            return Err(invalid(
                "a user and password go in the query: etcd://HOST:PORT/PREFIX?user=…&password=…"
                    .to_string(),
            ));
        }
        let endpoints = authority
            .split(',')
            .map(parse_endpoint)
            .collect::<Result<Vec<_>, _>>()?;
        let prefix = parse_prefix(path)?;

        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                invalid(format!("\"{name}\" in the query has no value", name = pair))
            })?;
            const KNOWN: [&str; 7] = [
                "user",
                "password",
                "ca",
                "cert",
                "key",
                "timeout",
                "connect_timeout",
            ];
            let Some(known) = KNOWN.iter().find(|known| **known == name) else {
                return Err(invalid(format!(
                    "unknown query parameter \"{name}\"; expected one of: {}",
                    KNOWN.join(", ")
                )));
            };
            let value = percent_decode(value).map_err(|e| invalid(format!("{name}: {e}")))?;
            if value.is_empty() {
                return Err(invalid(format!("{name} is empty")));
            }
            if values.insert(known, value).is_some() {
                return Err(invalid(format!("{name} is given twice")));
            }
        }
        let mut setting = |name: &str, variable: &str| {
            values
                .remove(name)
                .or_else(|| env(variable).filter(|value| !value.is_empty()))
        };
        let user = setting("user", "PINGAP_ETCD_USER");
        let password = setting("password", "PINGAP_ETCD_PASSWORD");
        let ca = setting("ca", "PINGAP_ETCD_CA").map(PathBuf::from);
        let cert = setting("cert", "PINGAP_ETCD_CERT").map(PathBuf::from);
        let key = setting("key", "PINGAP_ETCD_KEY").map(PathBuf::from);
        let duration = |name: &str, default: Duration| -> Result<Duration, EtcdError> {
            match values.get(name) {
                None => Ok(default),
                Some(text) => {
                    let duration = ConfigDuration::parse(text)
                        .map_err(|e| invalid(format!("{name}: {e}")))?
                        .get();
                    if duration.is_zero() {
                        return Err(invalid(format!("{name} cannot be zero")));
                    }
                    Ok(duration)
                }
            }
        };
        let timeout = duration("timeout", DEFAULT_TIMEOUT)?;
        let connect_timeout = duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT)?;

        match (&user, &password) {
            (Some(_), None) => {
                return Err(invalid(
                    "a user needs a password (password= or PINGAP_ETCD_PASSWORD)".to_string(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "a password needs a user (user= or PINGAP_ETCD_USER)".to_string(),
                ));
            }
            _ => {}
        }
        if cert.is_some() != key.is_some() {
            return Err(invalid(
                "a client certificate needs both cert= and key=".to_string(),
            ));
        }
        if cert.is_some() && ca.is_none() {
            return Err(invalid(
                "TLS needs ca=, the CA that signed the etcd members' certificates".to_string(),
            ));
        }
        Ok(EtcdOptions {
            endpoints,
            prefix,
            user,
            password,
            ca,
            cert,
            key,
            timeout,
            connect_timeout,
        })
    }

    /// Whether the members are reached over TLS.
    fn tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The endpoints as one string, for messages.
    fn endpoint_list(&self) -> String {
        self.endpoints.join(",")
    }

    /// The client's options: authentication, TLS, keep-alive and the connect timeout. (Each
    /// operation is bounded by `timeout` around it, not by a per-request gRPC timeout, which
    /// would also cut the long-lived watch stream.)
    fn connect_options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            // etcd's default --grpc-keepalive-min-time is 5 s: ping no more often than that.
            .with_keep_alive(Duration::from_secs(10), self.timeout);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(ca) = &self.ca {
            let read = |path: &PathBuf, what: &str| {
                std::fs::read(path).map_err(|e| {
                    EtcdError::InvalidUrl(format!("cannot read the {what} {}: {e}", path.display()))
                })
            };
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(ca, "CA")?));
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read(cert, "certificate")?,
                    read(key, "key")?,
                ));
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }

    /// The endpoints as URLs for the client.
    fn endpoint_urls(&self) -> Vec<String> {
        let scheme = if self.tls() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|endpoint| format!("{scheme}://{endpoint}"))
            .collect()
    }
}

impl fmt::Display for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The URL without its query, for messages (the query may hold a password).
fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(location, _)| location)
}

/// `host:port`, `[v6]:port`, or either without a port (2379).
fn parse_endpoint(text: &str) -> Result<String, EtcdError> {
    let invalid = |why: &str| EtcdError::InvalidUrl(format!("endpoint \"{text}\": {why}"));
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("empty; write HOST:PORT[,HOST:PORT…]"));
    }
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (address, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid("an IPv6 address needs a closing ']'"))?;
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid("not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid("expected :PORT after the address"))?,
            ),
        };
        (format!("[{address}]"), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if host.contains(':') {
            return Err(invalid("write an IPv6 address in brackets: [::1]:2379"));
        }
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(invalid("not a host name or address"));
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
    };
    Ok(format!("{host}:{port}"))
}

/// The path of the URL as a prefix: a leading '/', no trailing '/'.
fn parse_prefix(path: &str) -> Result<String, EtcdError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(DEFAULT_PREFIX.to_string());
    }
    let decoded = percent_decode(trimmed)
        .map_err(|e| EtcdError::InvalidUrl(format!("prefix \"{path}\": {e}")))?;
    if decoded.split('/').any(str::is_empty) {
        return Err(EtcdError::InvalidUrl(format!(
            "prefix \"{path}\" has an empty segment"
        )));
    }
    Ok(format!("/{decoded}"))
}

/// Decodes `%XX` escapes (and nothing else: `+` stays a plus).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| "a '%' must be followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())
}

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Configuration keys changed; `revision` is the newest change seen.
    Changed {
        /// The store revision of the (last) change.
        revision: i64,
    },
    /// The revisions the watch had to resume from were compacted away: changes may have been
    /// missed, so read everything again. The watch goes on from a revision at most that of a read
    /// made after this event.
    Compacted {
        /// The oldest revision etcd still has.
        compact_revision: i64,
    },
    /// The connection was lost; the watch keeps retrying.
    Unreachable(String),
    /// The connection is back; changes made meanwhile follow as [`WatchEvent::Changed`].
    Reachable,
}

/// Stops its watch when dropped.
#[must_use = "the watch stops when the guard is dropped"]
pub struct WatchGuard {
    stop: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
    /// Keeps the runtime the watch runs on alive.
    _source: EtcdSource,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WatchGuard({})", self._source)
    }
}

/// The configuration kept in etcd; see the [module documentation](self). Clones share one
/// connection and one runtime.
#[derive(Clone)]
pub struct EtcdSource {
    inner: Arc<Inner>,
}

struct Inner {
    /// Taken by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    store: Store,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the futures run on the source's runtime need: cheap to clone.
#[derive(Clone)]
struct Store {
    client: Client,
    options: Arc<EtcdOptions>,
}

impl EtcdSource {
    /// Connects (bounded by `connect_timeout`) and checks that the members answer by reading
    /// the prefix. The error names the endpoints and says why.
    pub fn connect(options: EtcdOptions) -> Result<EtcdSource, EtcdError> {
        let connect_options = options.connect_options()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(8)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| EtcdError::Etcd(format!("cannot start the etcd runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let options = Arc::new(options);
        let connecting = {
            let options = options.clone();
            async move {
                let attempt = async {
                    let mut client =
                        Client::connect(options.endpoint_urls(), Some(connect_options)).await?;
                    client
                        .get(
                            config_start(&options.prefix),
                            Some(GetOptions::new().with_prefix().with_count_only()),
                        )
                        .await?;
                    Ok::<_, etcd_client::Error>(client)
                };
                match tokio::time::timeout(options.connect_timeout, attempt).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(e)) => Err(classify(&options, e)),
                    Err(_) => Err(EtcdError::Unreachable {
                        endpoints: options.endpoint_list(),
                        reason: format!(
                            "no answer within {:?} (connect_timeout)",
                            options.connect_timeout
                        ),
                    }),
                }
            }
        };
        let outcome = futures::executor::block_on(handle.spawn(connecting))
            .unwrap_or_else(|e| Err(EtcdError::Etcd(format!("the etcd task failed: {e}"))));
        let client = match outcome {
            Ok(client) => client,
            Err(e) => {
                // Dropping a runtime blocks, which panics inside another runtime.
                runtime.shutdown_background();
                return Err(e);
            }
        };
        Ok(EtcdSource {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                handle,
                store: Store { client, options },
            }),
        })
    }

    /// The options it was connected with.
    pub fn options(&self) -> &EtcdOptions {
        &self.inner.store.options
    }

    /// Every configuration key under `PREFIX/` as a [`Snapshot`] (documents named after the keys
    /// relative to the prefix: `basic`, `servers/web`, …; see the [module documentation](self)),
    /// and the store revision the read was at. Keys whose first segment starts with `_` are not
    /// configuration; any other key that does not fit the layout is [`EtcdError::Invalid`].
    pub fn read(&self) -> Result<(Snapshot, i64), EtcdError> {
        self.run(|store| async move {
            let (kvs, revision) = store.config_kvs(None, false).await?;
            let mut documents = Vec::with_capacity(kvs.len());
            for kv in &kvs {
                let relative = store.relative(kv)?;
                let (table, name) = entity_of(&relative).map_err(|message| EtcdError::Invalid {
                    key: store.full_key(&relative),
                    message,
                })?;
                let body = kv.value_str().map_err(|_| EtcdError::Invalid {
                    key: store.full_key(&relative),
                    message: "the value is not UTF-8".to_string(),
                })?;
                documents.push((relative.clone(), entity_document(table, name, body)));
            }
            Ok((Snapshot::from_documents(documents), revision))
        })
    }

    /// Replaces the whole configuration with `snapshot` in one transaction: every entity of
    /// its documents is put (only those whose value differs), every configuration key it does
    /// not have is deleted. Returns the new revision.
    ///
    /// How a concurrent change is detected: the configuration keys are read first (at revision
    /// R). With `expected_revision` Some(r), a key whose `mod_revision` is above r, or a key that
    /// existed at r and is gone (found by reading at r, when R > r), is an
    /// [`EtcdError::Conflict`]; if revision r was compacted away, deletions cannot be ruled out and
    /// that is a conflict on the prefix itself. The transaction then only succeeds if nothing
    /// changed after R: each key read must still have its `mod_revision` (which also catches a
    /// deletion), and no configuration key may have a `mod_revision` above R (two range
    /// comparisons, either side of the `_` keys, which catch a key created since). If it fails, it
    /// is all done again (and with Some(r) the second round names the key). etcd caps the
    /// comparisons of one transaction (`--max-txn-ops`, default 128), which caps the number of
    /// entities this can replace at two fewer.
    pub fn write(
        &self,
        snapshot: &Snapshot,
        expected_revision: Option<i64>,
    ) -> Result<i64, EtcdError> {
        let entities = split_entities(snapshot)?;
        self.run(move |store| async move {
            for _ in 0..WRITE_ATTEMPTS {
                if let Some(revision) = store.try_write(&entities, expected_revision).await? {
                    return Ok(revision);
                }
            }
            Err(EtcdError::Etcd(format!(
                "the configuration under {} kept changing while it was being replaced",
                store.options.prefix
            )))
        })
    }

    /// Puts (`body` Some) or deletes (None) one entity: `table` `basic`, `metrics`, `tracing` or
    /// `admin` with `name` None, or `servers`, `locations`, `upstreams`, `plugins` or
    /// `certificates` with a name. `body` is the table's TOML body and must parse.
    /// `expected_mod_revision`: Some(0) the key must not exist yet, Some(r) its mod_revision must
    /// be r, None unconditional; otherwise [`EtcdError::Conflict`]. Returns the new revision.
    pub fn put_entity(
        &self,
        table: &str,
        name: Option<&str>,
        body: Option<&str>,
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, EtcdError> {
        let relative = entity_key(table, name).map_err(|message| EtcdError::Invalid {
            key: self.inner.store.full_key(&format!(
                "{table}{}",
                name.map(|n| format!("/{n}")).unwrap_or_default()
            )),
            message,
        })?;
        let key = self.inner.store.full_key(&relative);
        if let Some(body) = body {
            body.parse::<toml::Table>()
                .map_err(|e| EtcdError::Invalid {
                    key: key.clone(),
                    message: format!("invalid TOML: {e}"),
                })?;
        }
        let operation = match body {
            Some(body) => TxnOp::put(key.clone(), body, None),
            None => TxnOp::delete(key.clone(), None),
        };
        self.run(move |store| async move {
            store
                .compare_and_swap(key, expected_mod_revision, operation)
                .await
        })
    }

    /// The mod_revision of every configuration key, by key relative to the prefix.
    pub fn mod_revisions(&self) -> Result<BTreeMap<String, i64>, EtcdError> {
        self.run(|store| async move {
            let (kvs, _) = store.config_kvs(None, true).await?;
            kvs.iter()
                .map(|kv| Ok((store.relative(kv)?, kv.mod_revision())))
                .collect()
        })
    }

    /// Watches the configuration keys from `after_revision + 1`, calling `on_event` for each
    /// [`WatchEvent`], in order, on a blocking thread of the source's runtime (so it may call
    /// the source's methods). Changes of `_` keys are ignored; the events of one etcd response
    /// make one `Changed`.
    ///
    /// When the connection is lost, `Unreachable` is reported once and the watch is re-created
    /// with a backoff up to 5 s; once it is, `Reachable` is reported and it resumes from the last
    /// revision seen, so changes made meanwhile arrive as `Changed`. When etcd answers that the
    /// revisions to resume from were compacted, the current revision R is read first, then
    /// `Compacted` is reported and the watch resumes after R: whoever re-reads on `Compacted`
    /// reads at R or later, so nothing is missed (a change may be reported twice).
    ///
    /// The watch stops when the guard is dropped.
    pub fn watch(
        &self,
        after_revision: i64,
        on_event: Box<dyn Fn(WatchEvent) + Send + Sync>,
    ) -> WatchGuard {
        let stop = Arc::new(AtomicBool::new(false));
        let store = self.inner.store.clone();
        let task = self.inner.handle.spawn(watch_loop(
            store,
            self.inner.handle.clone(),
            after_revision,
            Arc::from(on_event),
            stop.clone(),
        ));
        WatchGuard {
            stop,
            task: task.abort_handle(),
            _source: self.clone(),
        }
    }

    /// Stores version `number` of the history (`PREFIX/_history/` and the number in 12 digits).
    /// A number that exists is [`EtcdError::Conflict`]: versions are never overwritten.
    pub fn history_put(&self, number: u64, value: &str) -> Result<(), EtcdError> {
        let key = self.history_key(number);
        let value = value.to_string();
        self.run(move |store| async move {
            store
                .compare_and_swap(key.clone(), Some(0), TxnOp::put(key, value, None))
                .await
                .map(|_| ())
        })
    }

    /// Version `number` of the history, if it is kept.
    pub fn history_get(&self, number: u64) -> Result<Option<String>, EtcdError> {
        let key = self.history_key(number);
        self.run(move |store| async move {
            let mut client = store.client.clone();
            let response = client
                .get(key.clone(), None)
                .await
                .map_err(|e| classify(&store.options, e))?;
            match response.kvs().first() {
                None => Ok(None),
                Some(kv) => kv
                    .value_str()
                    .map(|value| Some(value.to_string()))
                    .map_err(|_| EtcdError::Invalid {
                        key,
                        message: "the value is not UTF-8".to_string(),
                    }),
            }
        })
    }

    /// The numbers of the versions kept, ascending. Keys under `_history/` that are not numbers
    /// are skipped.
    pub fn history_list(&self) -> Result<Vec<u64>, EtcdError> {
        let start = self.history_key_prefix();
        self.run(move |store| async move {
            let mut client = store.client.clone();
            let response = client
                .get(
                    start.clone(),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                )
                .await
                .map_err(|e| classify(&store.options, e))?;
            let mut numbers: Vec<u64> = response
                .kvs()
                .iter()
                .filter_map(|kv| {
                    kv.key()
                        .strip_prefix(start.as_bytes())
                        .and_then(|digits| std::str::from_utf8(digits).ok())
                        .and_then(|digits| digits.parse().ok())
                })
                .collect();
            numbers.sort_unstable();
            Ok(numbers)
        })
    }

    /// Forgets version `number` of the history (nothing if it is not kept).
    pub fn history_delete(&self, number: u64) -> Result<(), EtcdError> {
        let key = self.history_key(number);
        self.run(move |store| async move {
            let mut client = store.client.clone();
            client
                .delete(key, None)
                .await
                .map_err(|e| classify(&store.options, e))?;
            Ok(())
        })
    }

    fn history_key_prefix(&self) -> String {
        format!("{}/{HISTORY}", self.inner.store.options.prefix)
    }

    fn history_key(&self, number: u64) -> String {
        format!("{}{number:012}", self.history_key_prefix())
    }

    /// Runs `operation` on the source's runtime and waits for it, at most `timeout`. Safe on any
    /// thread but the runtime's own worker (which only runs this module's futures).
    fn run<T, F, Fut>(&self, operation: F) -> Result<T, EtcdError>
    where
        F: FnOnce(Store) -> Fut,
        Fut: Future<Output = Result<T, EtcdError>> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.inner.store.clone();
        let options = store.options.clone();
        let timeout = options.timeout;
        let future = operation(store);
        let task = self
            .inner
            .handle
            .spawn(async move { tokio::time::timeout(timeout, future).await });
        match futures::executor::block_on(task) {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EtcdError::Unreachable {
                endpoints: options.endpoint_list(),
                reason: format!("no answer within {timeout:?} (timeout)"),
            }),
            Err(e) => Err(EtcdError::Etcd(format!("the etcd task failed: {e}"))),
        }
    }
}

impl fmt::Display for EtcdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.store.options.fmt(f)
    }
}

impl fmt::Debug for EtcdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EtcdSource({self})")
    }
}

/// The first configuration key: `PREFIX/`.
fn config_start(prefix: &str) -> String {
    format!("{prefix}/")
}

/// The two key ranges that hold configuration: `[PREFIX/, PREFIX/_)` and `[PREFIX/\`, PREFIX0)`
/// — everything under the prefix but the keys whose first segment starts with `_`.
fn config_ranges(prefix: &str) -> [(String, String); 2] {
    [
        (format!("{prefix}/"), format!("{prefix}/_")),
        // '`' follows '_', and '0' follows '/'.
        (format!("{prefix}/`"), format!("{prefix}0")),
    ]
}

impl Store {
    fn full_key(&self, relative: &str) -> String {
        format!("{}/{relative}", self.options.prefix)
    }

    /// The key of `kv` relative to the prefix.
    fn relative(&self, kv: &KeyValue) -> Result<String, EtcdError> {
        let start = config_start(&self.options.prefix);
        kv.key()
            .strip_prefix(start.as_bytes())
            .and_then(|relative| std::str::from_utf8(relative).ok())
            .map(str::to_string)
            .ok_or_else(|| EtcdError::Invalid {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                message: "the key is not UTF-8".to_string(),
            })
    }

    /// The configuration keys (with values unless `keys_only`) at `revision` (None: now), in
    /// key order, and the revision of the read.
    async fn config_kvs(
        &self,
        revision: Option<i64>,
        keys_only: bool,
    ) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let mut client = self.client.clone();
        let mut kvs = Vec::new();
        let mut header_revision = 0;
        for (start, end) in config_ranges(&self.options.prefix) {
            let mut get = GetOptions::new().with_range(end);
            if keys_only {
                get = get.with_keys_only();
            }
            // Both ranges are read at one revision: the second at the revision of the first.
            if let Some(revision) = revision.or((header_revision > 0).then_some(header_revision)) {
                get = get.with_revision(revision);
            }
            let mut response = client
                .get(start, Some(get))
                .await
                .map_err(|e| classify(&self.options, e))?;
            if header_revision == 0 {
                header_revision = response.header().map_or(0, |h| h.revision());
            }
            kvs.extend(response.take_kvs());
        }
        Ok((kvs, revision.unwrap_or(header_revision)))
    }

    /// One round of [`EtcdSource::write`]: Ok(None) when the store changed under it.
    async fn try_write(
        &self,
        entities: &BTreeMap<String, String>,
        expected_revision: Option<i64>,
    ) -> Result<Option<i64>, EtcdError> {
        let (current, read_revision) = self.config_kvs(None, false).await?;
        if let Some(expected) = expected_revision {
            self.check_unchanged_since(&current, read_revision, expected)
                .await?;
        }
        let mut compares = Vec::with_capacity(current.len() + 2);
        let mut operations = Vec::new();
        let mut existing = BTreeSet::new();
        for kv in &current {
            let relative = self.relative(kv)?;
            compares.push(Compare::mod_revision(
                kv.key().to_vec(),
                CompareOp::Equal,
                kv.mod_revision(),
            ));
            match entities.get(&relative) {
                Some(body) if body.as_bytes() == kv.value() => {}
                Some(body) => operations.push(TxnOp::put(kv.key().to_vec(), body.clone(), None)),
                None => operations.push(TxnOp::delete(kv.key().to_vec(), None)),
            }
            existing.insert(relative);
        }
        for (start, end) in config_ranges(&self.options.prefix) {
            compares.push(
                Compare::mod_revision(start, CompareOp::Less, read_revision + 1).with_range(end),
            );
        }
        for (relative, body) in entities {
            if !existing.contains(relative) {
                operations.push(TxnOp::put(self.full_key(relative), body.clone(), None));
            }
        }
        let mut client = self.client.clone();
        let response = client
            .txn(Txn::new().when(compares).and_then(operations))
            .await
            .map_err(|e| self.txn_error(e))?;
        if response.succeeded() {
            Ok(Some(
                response.header().map_or(read_revision, |h| h.revision()),
            ))
        } else {
            Ok(None)
        }
    }

    /// With `expected` revision r: no configuration key read at `read_revision` was modified
    /// after r, and none that existed at r is gone.
    async fn check_unchanged_since(
        &self,
        current: &[KeyValue],
        read_revision: i64,
        expected: i64,
    ) -> Result<(), EtcdError> {
        if let Some(kv) = current.iter().find(|kv| kv.mod_revision() > expected) {
            return Err(EtcdError::Conflict {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                expected,
                actual: kv.mod_revision(),
            });
        }
        if read_revision <= expected || expected <= 0 {
            return Ok(());
        }
        let (then, _) = match self.config_kvs(Some(expected), true).await {
            Ok(read) => read,
            Err(EtcdError::Etcd(message)) if message.contains("compacted") => {
                return Err(EtcdError::Conflict {
                    key: self.options.prefix.clone(),
                    expected,
                    actual: read_revision,
                });
            }
            Err(e) => return Err(e),
        };
        let now: BTreeSet<&[u8]> = current.iter().map(KeyValue::key).collect();
        if let Some(gone) = then.iter().find(|kv| !now.contains(kv.key())) {
            return Err(EtcdError::Conflict {
                key: String::from_utf8_lossy(gone.key()).into_owned(),
                expected: gone.mod_revision(),
                actual: 0,
            });
        }
        Ok(())
    }

    /// Applies `operation` to `key` if its mod_revision is `expected` (Some(0): absent).
    async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<i64>,
        operation: TxnOp,
    ) -> Result<i64, EtcdError> {
        let mut client = self.client.clone();
        let Some(expected) = expected else {
            let response = client
                .txn(Txn::new().and_then([operation]))
                .await
                .map_err(|e| self.txn_error(e))?;
            return Ok(response.header().map_or(0, |h| h.revision()));
        };
        let compare = Compare::mod_revision(key.clone(), CompareOp::Equal, expected);
        let response = client
            .txn(
                Txn::new()
                    .when([compare])
                    .and_then([operation])
                    .or_else([TxnOp::get(
                        key.clone(),
                        Some(GetOptions::new().with_keys_only()),
                    )]),
            )
            .await
            .map_err(|e| self.txn_error(e))?;
        if response.succeeded() {
            return Ok(response.header().map_or(0, |h| h.revision()));
        }
        let actual = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => {
                    Some(get.kvs().first().map_or(0, |kv| kv.mod_revision()))
                }
                _ => None,
            })
            .unwrap_or(0);
        Err(EtcdError::Conflict {
            key,
            expected,
            actual,
        })
    }

    fn txn_error(&self, e: etcd_client::Error) -> EtcdError {
        match classify(&self.options, e) {
            EtcdError::Etcd(message) if message.contains("too many operations") => {
                EtcdError::Etcd(format!(
                    "{message}: the configuration has more entities than etcd's --max-txn-ops \
                     (default 128) lets one transaction replace"
                ))
            }
            other => other,
        }
    }
}

/// Sorts an etcd client error into unreachable (transport, unavailable, deadline) or refused.
fn classify(options: &EtcdOptions, error: etcd_client::Error) -> EtcdError {
    let unreachable = |reason: String| EtcdError::Unreachable {
        endpoints: options.endpoint_list(),
        reason,
    };
    match error {
        etcd_client::Error::TransportError(e) => unreachable(error_chain(&e)),
        etcd_client::Error::IoError(e) => unreachable(e.to_string()),
        etcd_client::Error::GRpcStatus(status) => {
            let code = status.code() as i32;
            let message = status_text(status.message(), &status);
            if matches!(
                code,
                GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED | GRPC_CANCELLED
            ) {
                unreachable(message)
            } else {
                EtcdError::Etcd(format!("{} ({message})", status.code().description()))
            }
        }
        other => EtcdError::Etcd(other.to_string()),
    }
}

/// The message of a gRPC status and the errors behind it ("tcp connect error: Connection
/// refused (os error 111)").
fn status_text(message: &str, status: &(dyn std::error::Error + 'static)) -> String {
    append_causes(message.to_string(), status.source())
}

/// An error and its sources, joined with ": ".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    append_causes(error.to_string(), error.source())
}

/// `text` and the messages of `source` and its sources, leaving out what `text` already says
/// and tonic's uninformative "transport error".
fn append_causes(
    mut text: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if cause_text != "transport error" && !text.contains(&cause_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The state of a watch between two etcd watch streams.
struct Watcher {
    store: Store,
    handle: tokio::runtime::Handle,
    on_event: Arc<dyn Fn(WatchEvent) + Send + Sync>,
    stop: Arc<AtomicBool>,
    /// Every change up to this revision has been reported.
    seen: i64,
    /// Whether the last thing reported was not `Unreachable`.
    reachable: bool,
    /// Whether the current watch stream was created.
    established: bool,
}

impl Watcher {
    /// Calls `on_event` on a blocking thread (it may call the source's methods, which block).
    async fn emit(&self, event: WatchEvent) {
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let on_event = self.on_event.clone();
        let stop = self.stop.clone();
        let _ = self
            .handle
            .spawn_blocking(move || {
                if !stop.load(Ordering::SeqCst) {
                    on_event(event);
                }
            })
            .await;
    }

    async fn lost(&mut self, reason: String) {
        if self.reachable {
            self.reachable = false;
            self.emit(WatchEvent::Unreachable(reason)).await;
        }
    }

    /// Whether the key of an event is configuration.
    fn is_config(&self, key: &[u8]) -> bool {
        let start = config_start(&self.store.options.prefix);
        key.strip_prefix(start.as_bytes())
            .is_some_and(|relative| !relative.starts_with(b"_"))
    }

    /// One watch stream, until it ends: Err(reason) when the connection is lost.
    async fn follow(&mut self) -> Result<(), String> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_progress_notify()
            .with_start_revision(self.seen + 1);
        let mut client = self.store.client.clone();
        let timeout = self
            .store
            .options
            .timeout
            .max(self.store.options.connect_timeout);
        let mut stream = match tokio::time::timeout(
            timeout,
            client.watch(config_start(&self.store.options.prefix), Some(options)),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(classify(&self.store.options, e).to_string()),
            Err(_) => return Err(format!("no answer within {timeout:?}")),
        };
        let mut created = false;
        loop {
            // Until the watch is created, an answer must come in time; after, etcd's progress
            // notifications and the HTTP/2 keep-alive detect a dead connection.
            let message = if created {
                stream.message().await
            } else {
                match tokio::time::timeout(timeout, stream.message()).await {
                    Ok(message) => message,
                    Err(_) => return Err(format!("no answer within {timeout:?}")),
                }
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => return Err("the watch stream was closed".to_string()),
                Err(etcd_client::Error::GRpcStatus(status)) => {
                    return Err(EtcdError::Unreachable {
                        endpoints: self.store.options.endpoint_list(),
                        reason: format!(
                            "the watch stream broke: {}",
                            status_text(status.message(), &status)
                        ),
                    }
                    .to_string());
                }
                Err(e) => return Err(classify(&self.store.options, e).to_string()),
            };
            if response.compact_revision() != 0 {
                return self.compacted(response.compact_revision()).await;
            }
            if response.canceled() {
                return Err(format!(
                    "the watch was canceled: {}",
                    response.cancel_reason()
                ));
            }
            if response.created() {
                created = true;
                self.established = true;
                if !self.reachable {
                    self.reachable = true;
                    self.emit(WatchEvent::Reachable).await;
                }
                continue;
            }
            let events = response.events();
            if events.is_empty() {
                // A progress notification: everything up to its revision has been sent.
                if let Some(header) = response.header() {
                    self.seen = self.seen.max(header.revision());
                }
                continue;
            }
            let mut changed = None;
            for event in events {
                if let Some(kv) = event.kv() {
                    self.seen = self.seen.max(kv.mod_revision());
                    if self.is_config(kv.key()) {
                        changed = changed.max(Some(kv.mod_revision()));
                    }
                }
            }
            if let Some(revision) = changed {
                self.emit(WatchEvent::Changed { revision }).await;
            }
        }
    }

    /// The revisions after `seen` were compacted: read the current revision, report, and go on
    /// from there (see [`EtcdSource::watch`]).
    async fn compacted(&mut self, compact_revision: i64) -> Result<(), String> {
        let current = match tokio::time::timeout(
            self.store.options.timeout,
            self.store.config_kvs(None, true),
        )
        .await
        {
            Ok(Ok((_, revision))) => revision,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {:?}", self.store.options.timeout)),
        };
        self.emit(WatchEvent::Compacted { compact_revision }).await;
        self.seen = self.seen.max(current);
        Ok(())
    }
}

/// Follows watch streams until stopped, re-creating them after a loss with a backoff.
async fn watch_loop(
    store: Store,
    handle: tokio::runtime::Handle,
    after_revision: i64,
    on_event: Arc<dyn Fn(WatchEvent) + Send + Sync>,
    stop: Arc<AtomicBool>,
) {
    let mut watcher = Watcher {
        store,
        handle,
        on_event,
        stop,
        seen: after_revision,
        reachable: true,
        established: false,
    };
    let mut backoff = MIN_BACKOFF;
    while !watcher.stop.load(Ordering::SeqCst) {
        watcher.established = false;
        match watcher.follow().await {
            // Compacted: go on at once.
            Ok(()) => backoff = MIN_BACKOFF,
            Err(reason) => {
                if watcher.established {
                    // It had been working: the first retry comes soon.
                    backoff = MIN_BACKOFF;
                }
                watcher.lost(reason).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The table and name a key relative to the prefix stands for, or why it fits no table.
fn entity_of(relative: &str) -> Result<(&str, Option<&str>), String> {
    let expected = || {
        format!(
            "not a configuration key: expected one of {} or {}/NAME",
            SINGLE_TABLES.join(", "),
            NAMED_TABLES.join("/NAME, ")
        )
    };
    match relative.split_once('/') {
        None if SINGLE_TABLES.contains(&relative) => Ok((relative, None)),
        Some((table, name))
            if NAMED_TABLES.contains(&table) && !name.is_empty() && !name.contains('/') =>
        {
            Ok((table, Some(name)))
        }
        _ => Err(expected()),
    }
}

/// The key relative to the prefix of an entity, or why there is none.
fn entity_key(table: &str, name: Option<&str>) -> Result<String, String> {
    match name {
        None if SINGLE_TABLES.contains(&table) => Ok(table.to_string()),
        None if NAMED_TABLES.contains(&table) => Err(format!("[{table}] entries need a name")),
        Some(_) if SINGLE_TABLES.contains(&table) => {
            Err(format!("[{table}] is a single table and takes no name"))
        }
        Some(name) if NAMED_TABLES.contains(&table) => {
            if name.is_empty() || name.contains('/') {
                Err(format!(
                    "\"{name}\" cannot be stored in etcd: a name must not be empty or contain '/'"
                ))
            } else {
                Ok(format!("{table}/{name}"))
            }
        }
        _ => Err(format!(
            "unknown table \"{table}\"; expected one of: {}",
            [SINGLE_TABLES.as_slice(), NAMED_TABLES.as_slice()]
                .concat()
                .join(", ")
        )),
    }
}

/// `name` as a TOML key: bare when it can be, quoted otherwise.
fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        toml::Value::String(name.to_string()).to_string()
    }
}

/// The header line of an entity's table: `[basic]`, `[servers.web]`.
fn header_line(table: &str, name: Option<&str>) -> String {
    match name {
        None => format!("[{table}]"),
        Some(name) => format!("[{table}.{}]", toml_key(name)),
    }
}

/// `body` placed at the entity's path in a table of its own.
fn wrap(table: &str, name: Option<&str>, body: toml::Table) -> toml::Table {
    let inner = match name {
        None => body,
        Some(name) => toml::Table::from_iter([(name.to_string(), toml::Value::Table(body))]),
    };
    toml::Table::from_iter([(table.to_string(), toml::Value::Table(inner))])
}

/// A complete TOML document for one entity whose value is `body`: the header line and the body
/// verbatim when that means the same thing (or when the body is not TOML, so that loading the
/// document reports the error), else the body re-serialised under its path.
fn entity_document(table: &str, name: Option<&str>, body: &str) -> String {
    let mut verbatim = header_line(table, name);
    verbatim.push('\n');
    verbatim.push_str(body);
    if !verbatim.ends_with('\n') {
        verbatim.push('\n');
    }
    let Ok(parsed) = body.parse::<toml::Table>() else {
        return verbatim;
    };
    let wrapped = wrap(table, name, parsed);
    if verbatim.parse::<toml::Table>().ok().as_ref() == Some(&wrapped) {
        return verbatim;
    }
    toml::to_string(&wrapped).unwrap_or(verbatim)
}

/// Splits the documents of `snapshot` (any TOML documents: one file with every table, or one
/// document per entity as [`EtcdSource::read`] makes them) into the value of each entity key,
/// by key relative to the prefix. A document that is just one entity's header line and a body
/// gives that body verbatim (comments and all); otherwise each table is serialised. A document
/// that is not TOML, has a section other than the configuration's, or an entity defined twice
/// (in one document or across several) is [`EtcdError::Invalid`].
pub fn split_entities(snapshot: &Snapshot) -> Result<BTreeMap<String, String>, EtcdError> {
    let mut entities: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (document, text) in snapshot.documents() {
        let invalid = |message: String| EtcdError::Invalid {
            key: document.to_string(),
            message,
        };
        let parsed = text
            .parse::<toml::Table>()
            .map_err(|e| invalid(format!("invalid TOML: {e}")))?;
        let mut found: Vec<(String, Option<String>, toml::Table)> = Vec::new();
        for (section, value) in parsed {
            let toml::Value::Table(table) = value else {
                return Err(invalid(format!("[{section}] is not a table")));
            };
            if SINGLE_TABLES.contains(&section.as_str()) {
                found.push((section, None, table));
            } else if NAMED_TABLES.contains(&section.as_str()) {
                for (name, entity) in table {
                    let toml::Value::Table(entity) = entity else {
                        return Err(invalid(format!("[{section}.{name}] is not a table")));
                    };
                    found.push((section.clone(), Some(name), entity));
                }
            } else {
                return Err(invalid(format!(
                    "unknown section [{section}]; expected one of: {}",
                    [SINGLE_TABLES.as_slice(), NAMED_TABLES.as_slice()]
                        .concat()
                        .join(", ")
                )));
            }
        }
        let single = found.len() == 1;
        for (table, name, body) in found {
            let key = entity_key(&table, name.as_deref()).map_err(&invalid)?;
            let verbatim = single
                .then(|| {
                    let header = header_line(&table, name.as_deref());
                    text.strip_prefix(header.as_str())?.strip_prefix('\n')
                })
                .flatten()
                .filter(|rest| rest.parse::<toml::Table>().ok().as_ref() == Some(&body));
            let value = match verbatim {
                Some(rest) => rest.to_string(),
                None => toml::to_string(&body)
                    .map_err(|e| invalid(format!("cannot serialise {key}: {e}")))?,
            };
            if let Some((first, _)) = entities.get(&key) {
                return Err(EtcdError::Invalid {
                    key,
                    message: format!("defined twice: in {first} and in {document}"),
                });
            }
            entities.insert(key, (document.to_string(), value));
        }
    }
    Ok(entities
        .into_iter()
        .map(|(key, (_, value))| (key, value))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(url: &str) -> Result<EtcdOptions, EtcdError> {
        EtcdOptions::parse(url, &no_env)
    }

    fn parse_err(url: &str) -> String {
        match parse(url) {
            Ok(options) => panic!("{url} parsed: {options:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn urls_with_several_endpoints_and_defaults() -> Result<(), EtcdError> {
        let options = parse("etcd://10.0.0.1:2379,etcd-2,[::1]:32379/pingap/prod/")?;
        assert_eq!(
            options.endpoints,
            ["10.0.0.1:2379", "etcd-2:2379", "[::1]:32379"]
        );
        assert_eq!(options.prefix, "/pingap/prod");
        assert_eq!(options.timeout, DEFAULT_TIMEOUT);
        assert_eq!(options.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(options.user, None);
        assert!(!options.tls());
        assert_eq!(
            options.endpoint_urls(),
            [
                "http://10.0.0.1:2379",
                "http://etcd-2:2379",
                "http://[::1]:32379"
            ]
        );
        assert_eq!(parse("etcd://h:1")?.prefix, "/pingap");
        assert_eq!(parse("ETCD://h:1/")?.prefix, "/pingap");
        assert_eq!(parse("etcd://h:1?timeout=1s")?.prefix, "/pingap");
        assert_eq!(parse("etcd://h:1/a%20b")?.prefix, "/a b");
        Ok(())
    }

    #[test]
    fn query_parameters() -> Result<(), EtcdError> {
        let options = parse(
            "etcd://h1:2379/cfg?user=root&password=p%26ss%3Dw&ca=/etc/ca.pem&cert=/c.pem&key=/k.pem&timeout=500ms&connect_timeout=2s",
        )?;
        assert_eq!(options.user.as_deref(), Some("root"));
        assert_eq!(options.password.as_deref(), Some("p&ss=w"));
        assert_eq!(options.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(options.cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(options.key, Some(PathBuf::from("/k.pem")));
        assert_eq!(options.timeout, Duration::from_millis(500));
        assert_eq!(options.connect_timeout, Duration::from_secs(2));
        assert!(options.tls());
        assert_eq!(options.endpoint_urls(), ["https://h1:2379"]);
        Ok(())
    }

    #[test]
    fn environment_fills_what_the_query_does_not_set() -> Result<(), EtcdError> {
        let env = |name: &str| match name {
            "PINGAP_ETCD_USER" => Some("env-user".to_string()),
            "PINGAP_ETCD_PASSWORD" => Some("env-secret".to_string()),
            "PINGAP_ETCD_CA" => Some("/env/ca.pem".to_string()),
            "PINGAP_ETCD_CERT" => Some(String::new()),
            _ => None,
        };
        let options = EtcdOptions::parse("etcd://h:2379/p?user=url-user", &env)?;
        assert_eq!(options.user.as_deref(), Some("url-user"));
        assert_eq!(options.password.as_deref(), Some("env-secret"));
        assert_eq!(options.ca, Some(PathBuf::from("/env/ca.pem")));
        // An empty variable counts as unset.
        assert_eq!(options.cert, None);
        Ok(())
    }

    #[test]
    fn the_password_is_never_shown() -> Result<(), EtcdError> {
        let options = parse("etcd://h1:2379,h2:2379/pingap?user=admin&password=hunter2")?;
        assert_eq!(options.to_string(), "etcd://h1:2379,h2:2379/pingap");
        let debug = format!("{options:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("admin"),
            "{debug}"
        );
        let error = parse_err("http://h1/p?password=hunter2");
        assert!(!error.contains("hunter2"), "{error}");
        Ok(())
    }

    #[test]
    fn bad_urls() {
        for (url, expected) in [
            ("http://h:2379/p", "does not start with etcd://"),
            ("etcd:///p", "empty"),
            ("etcd://h1,,h2/p", "empty"),
            ("etcd://h:99999/p", "port"),
            ("etcd://h:0/p", "port"),
            ("etcd://h:x/p", "port"),
            ("etcd://::1/p", "IPv6"),
            ("etcd://[::1/p", "closing"),
            ("etcd://u:p@h/p", "query"),
            ("etcd://h/a//b", "empty segment"),
            ("etcd://h/p?timeout=soon", "timeout"),
            ("etcd://h/p?timeout=0s", "zero"),
            ("etcd://h/p?usr=x", "unknown query parameter \"usr\""),
            ("etcd://h/p?user", "no value"),
            ("etcd://h/p?user=", "empty"),
            ("etcd://h/p?user=a&user=b&password=c", "twice"),
            ("etcd://h/p?user=a", "needs a password"),
            ("etcd://h/p?password=a", "needs a user"),
            ("etcd://h/p?ca=/ca&cert=/c", "both cert= and key="),
            ("etcd://h/p?cert=/c&key=/k", "needs ca="),
            ("etcd://h/p?user=%zz", "hex"),
        ] {
            let error = parse_err(url);
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn keys_fit_the_layout_or_are_named() {
        assert_eq!(entity_of("basic"), Ok(("basic", None)));
        assert_eq!(entity_of("servers/web"), Ok(("servers", Some("web"))));
        for bad in ["servers", "servers/", "servers/a/b", "nope", "basic/x", ""] {
            assert!(entity_of(bad).is_err(), "{bad}");
        }
        assert_eq!(
            entity_key("servers", Some("web")).as_deref(),
            Ok("servers/web")
        );
        assert!(entity_key("servers", None).is_err());
        assert!(entity_key("basic", Some("x")).is_err());
        assert!(entity_key("servers", Some("a/b")).is_err());
        assert!(entity_key("nope", None).is_err());
    }

    #[test]
    fn entity_documents_keep_the_value_when_they_can() {
        let body = "# the front\naddr = \"127.0.0.1:80\"\nlocations = [\"api\"]";
        assert_eq!(
            entity_document("servers", Some("web"), body),
            format!("[servers.web]\n{body}\n")
        );
        assert_eq!(
            entity_document("servers", Some("web.v2"), "addr = 1\n"),
            "[servers.\"web.v2\"]\naddr = 1\n"
        );
        // A value with a table header of its own cannot simply follow the entity's header.
        let nested = "path = \"/\"\n[headers]\nx = \"1\"\n";
        let document = entity_document("locations", Some("api"), nested);
        let parsed: Result<toml::Table, _> = document.parse();
        let expected = wrap("locations", Some("api"), nested.parse().unwrap_or_default());
        assert_eq!(parsed.ok(), Some(expected), "{document}");
        // Not TOML: wrapped as it is, so loading names the key and the line.
        let broken = "addr = \"127.0.0.1:80\"\nlocations = [";
        let document = entity_document("servers", Some("web"), broken);
        assert_eq!(document, format!("[servers.web]\n{broken}\n"));
        let snapshot = Snapshot::single("servers/web", document);
        let errors = snapshot.load(&no_env).err().map(|e| e.to_string());
        assert!(
            errors
                .as_deref()
                .is_some_and(|e| e.contains("servers/web:3") && e.contains("invalid TOML")),
            "{errors:?}"
        );
    }

    #[test]
    fn split_and_join_round_trip() -> Result<(), EtcdError> {
        let file = r#"
[basic]
name = "edge"

[upstreams.app]
addrs = ["127.0.0.1:8080"]

[locations.api]
path = "/api"
upstream = "app"
[locations.api.headers]
x = "1"

[servers.web]
addr = "127.0.0.1:6188"
locations = ["api"]

[servers."web.v2"]
addr = "127.0.0.1:6189"
"#;
        let entities = split_entities(&Snapshot::single("pingap.toml", file))?;
        assert_eq!(
            entities.keys().collect::<Vec<_>>(),
            [
                "basic",
                "locations/api",
                "servers/web",
                "servers/web.v2",
                "upstreams/app"
            ]
        );
        assert_eq!(entities["basic"], "name = \"edge\"\n");
        // Join them as `read` does, and split again: the same values.
        let joined = Snapshot::from_documents(entities.iter().map(|(key, body)| {
            let (table, name) = entity_of(key).unwrap_or(("?", None));
            (key.clone(), entity_document(table, name, body))
        }));
        assert_eq!(split_entities(&joined)?, entities);
        // The joined documents mean what the file meant.
        let merged: toml::Table = file.parse().unwrap_or_default();
        let mut rejoined = toml::Table::new();
        for (_, text) in joined.documents() {
            let table: toml::Table = text.parse().unwrap_or_default();
            for (section, value) in table {
                match (rejoined.get_mut(&section), value) {
                    (Some(toml::Value::Table(existing)), toml::Value::Table(more)) => {
                        existing.extend(more)
                    }
                    (_, value) => {
                        rejoined.insert(section, value);
                    }
                }
            }
        }
        assert_eq!(rejoined, merged);
        // A verbatim body keeps its comments through the round trip.
        let commented = Snapshot::single(
            "servers/web",
            "[servers.web]\n# why\naddr = \"127.0.0.1:1\"\n",
        );
        assert_eq!(
            split_entities(&commented)?["servers/web"],
            "# why\naddr = \"127.0.0.1:1\"\n"
        );
        Ok(())
    }

    #[test]
    fn split_refuses_what_does_not_fit() {
        let twice = Snapshot::from_documents([
            (
                "a.toml".to_string(),
                "[servers.web]\naddr = \"x\"\n".to_string(),
            ),
            (
                "b.toml".to_string(),
                "[servers.web]\naddr = \"y\"\n".to_string(),
            ),
        ]);
        let error = split_entities(&twice).err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("servers/web")
                && e.contains("a.toml")
                && e.contains("b.toml")),
            "{error:?}"
        );
        for (text, expected) in [
            ("[nope]\nx = 1\n", "unknown section [nope]"),
            ("basic = 1\n", "not a table"),
            ("[servers]\nweb = 1\n", "not a table"),
            ("[servers.\"a/b\"]\n", "'/'"),
            ("[basic\n", "invalid TOML"),
        ] {
            let error = split_entities(&Snapshot::single("doc.toml", text))
                .err()
                .map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains(expected) && e.contains("doc.toml")),
                "{text}: {error:?}"
            );
        }
    }

    #[test]
    fn config_ranges_leave_out_underscore_keys() {
        let [(a, a_end), (b, b_end)] = config_ranges("/p");
        let inside = |key: &str| {
            (a.as_str() <= key && key < a_end.as_str())
                || (b.as_str() <= key && key < b_end.as_str())
        };
        for key in ["/p/basic", "/p/servers/web", "/p/~x", "/p/`"] {
            assert!(inside(key), "{key}");
        }
        for key in [
            "/p/_history/000000000001",
            "/p/_acme/x",
            "/p",
            "/p0",
            "/q/basic",
            "/pp/basic",
        ] {
            assert!(!inside(key), "{key}");
        }
    }
}
