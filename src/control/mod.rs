//! The control plane: one apply path for every configuration change, whatever triggered it —
//! the start, SIGHUP, a watched file or etcd key, the admin API, a rollback, the automatic
//! rollback window.
//!
//! ```text
//! source ─read→ Snapshot ─load→ Config ─compile(running runtime)→ Compiled
//!        ─Changes::between→ plan ─┬─ swap the runtime ──────────→ record in history → watch window
//!                                 └─ listeners/process settings → record → graceful upgrade
//! ```
//!
//! A configuration that fails any step is rejected with every error it has, and the running one
//! stays. Applies are serialised: one at a time per process. Every step is a library function
//! the command line, the admin API and the tests call alike.

pub mod changes;
mod etcd_watch;
pub mod file_watch;
pub mod history;
pub mod secrets;
pub mod window;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use pingap_plugins::Registry;

use crate::config::schema::Config;
use crate::config::{ConfigErrors, Snapshot, Source, WriteError};
use crate::observe::metrics::{LiveNames, metrics};
use crate::runtime::{Compiled, LifecyclePlan, ListenerPlan, Runtime, RuntimeHandle, compile};
pub use changes::{Change, ChangeKind, Changes, Impact, KeyChange};
pub use history::{History, HistoryError, Record, Version};

/// A configuration read and checked, ready to be applied.
pub struct Candidate {
    /// Its documents, as the source holds them.
    pub snapshot: Snapshot,
    /// Its settings as written: `${ENV}` references are kept as they are, so a plan or a diff
    /// made from them never shows what the environment holds (secrets, typically).
    pub config: Config,
    /// What it compiles to.
    pub compiled: Compiled,
}

/// Reads and checks `snapshot` as a start would, carrying state from `previous`.
pub fn check(
    snapshot: Snapshot,
    registry: &Registry,
    previous: Option<&Runtime>,
) -> Result<Candidate, ConfigErrors> {
    let loaded = snapshot.load(&crate::config::load::process_env)?;
    let compiled = compile(&loaded, registry, previous)?;
    let config = if snapshot.documents().any(|(_, text)| text.contains("${")) {
        as_written(&snapshot)?
    } else {
        loaded.config
    };
    Ok(Candidate {
        snapshot,
        config,
        compiled,
    })
}

/// The settings of `snapshot` with every `${NAME}` left as written.
pub fn as_written(snapshot: &Snapshot) -> Result<Config, ConfigErrors> {
    let unexpanded = |name: &str| Some(format!("${{{name}}}"));
    Ok(snapshot.load(&unexpanded)?.config)
}

/// Reads `source` and checks what it holds.
pub fn read_and_check(
    source: &Source,
    registry: &Registry,
    previous: Option<&Runtime>,
) -> Result<Candidate, ConfigErrors> {
    check(source.read()?, registry, previous)
}

/// The history of `source` as `lifecycle` places it: `basic.history_dir`, or `<config>.history`.
pub fn history_of(source: &Source, lifecycle: &LifecyclePlan) -> Option<History> {
    history_at(
        source,
        lifecycle.history_dir.clone(),
        lifecycle.history_keep,
    )
}

/// The history in `dir`, or by default beside the file or under the etcd prefix.
fn history_at(source: &Source, dir: Option<std::path::PathBuf>, keep: usize) -> Option<History> {
    match (dir, source.etcd()) {
        (Some(dir), _) => Some(History::in_dir(dir, keep)),
        (None, Some(etcd)) => Some(History::in_etcd(etcd.clone(), keep)),
        (None, None) => Some(History::in_dir(source.default_history_dir()?, keep)),
    }
}

/// The history of `source` for the command line: only as much of the configuration is read as
/// placing the history needs (`basic.history_dir`, `history_keep`), so the history of a broken
/// configuration can still be listed and rolled back.
pub fn history_for(source: &Source) -> Option<History> {
    let keep = crate::runtime::compile::DEFAULT_HISTORY_KEEP;
    let (dir, keep) = match source.load() {
        Ok(loaded) => {
            let basic = &loaded.config.basic;
            (
                basic
                    .history_dir
                    .as_ref()
                    .map(|dir| loaded.origins.resolve("basic", dir)),
                basic.history_keep.unwrap_or(keep),
            )
        }
        Err(_) => (None, keep),
    };
    history_at(source, dir, keep)
}

/// Whether two snapshots hold the same configuration: the same documents, or documents laid out
/// differently (etcd keeps one key per entity) with the same settings.
fn same_configuration(a: &Snapshot, b: &Snapshot) -> bool {
    if a.digest() == b.digest() {
        return true;
    }
    let settings = |snapshot: &Snapshot| {
        as_written(snapshot)
            .ok()
            .and_then(|config| toml::Value::try_from(&config).ok())
    };
    matches!((settings(a), settings(b)), (Some(a), Some(b)) if a == b)
}

/// Why a configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// It has errors; the running configuration stays.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    /// It could not be written to the source.
    #[error("{0}")]
    Write(#[from] WriteError),
    /// The history could not be read.
    #[error("{0}")]
    History(#[from] HistoryError),
    /// It needs a graceful upgrade, and that could not be started.
    #[error("the change needs a graceful upgrade ({reasons}), which could not start: {message}")]
    Upgrade {
        /// Why it needs one.
        reasons: String,
        /// Why it could not start.
        message: String,
    },
    /// A graceful upgrade is under way; the new process applies what the source holds.
    #[error("a graceful upgrade is under way; the new process applies the source when it starts")]
    Upgrading,
    /// The source holds a configuration that is not the running one (edited and not applied
    /// yet): an edit of the running configuration would overwrite it.
    #[error(
        "{0} was changed and the change is not applied yet; apply it (SIGHUP, or enable the watch) or undo it, then retry"
    )]
    SourceChanged(String),
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The source holds the running configuration already.
    Unchanged,
    /// The new runtime serves new requests.
    Swapped {
        /// The runtime's generation.
        generation: u64,
    },
    /// A new process is taking the listening sockets over and applies it.
    Upgrading,
}

/// The result of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// What happened.
    pub outcome: Outcome,
    /// What changed.
    pub changes: Changes,
    /// The version recorded, when the history is kept and could be written.
    pub version: Option<u64>,
}

/// Asked of the process when a change needs a graceful upgrade.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// Why.
    pub reasons: Vec<String>,
    /// The addresses the new configuration listens on.
    pub listeners: Vec<SocketAddr>,
    /// The unix socket the new configuration hands listeners over on.
    pub upgrade_sock: std::path::PathBuf,
}

/// Starts a graceful upgrade; an error says why it could not.
pub type UpgradeHook = Box<dyn Fn(&UpgradeRequest) -> Result<(), String> + Send + Sync>;

/// The running configuration and what an apply compares against.
struct Running {
    snapshot: Snapshot,
    config: Config,
    warnings: Vec<String>,
    lifecycle: LifecyclePlan,
    version: Option<u64>,
    upgrading: bool,
}

/// Applies configurations from a source to the running process.
pub struct Controller {
    source: Source,
    registry: Registry,
    runtime: Arc<RuntimeHandle>,
    /// The listeners as bound at start.
    listeners: Vec<ListenerPlan>,
    upgrade_sock: std::path::PathBuf,
    history: Option<History>,
    running: Mutex<Running>,
    upgrade: OnceLock<UpgradeHook>,
    window: window::Window,
    /// The file or etcd watch, while one runs.
    watch: Mutex<Option<Box<dyn Send>>>,
    /// The watch of the certificate, key and CA files the running configuration names, with
    /// those files.
    certificate_watch: Mutex<Option<(Vec<std::path::PathBuf>, file_watch::FileWatch)>>,
    /// Itself, for the watches' callbacks.
    me: std::sync::Weak<Controller>,
}

/// How the process started.
pub struct Started {
    /// The configuration it started with.
    pub snapshot: Snapshot,
    /// Its settings.
    pub config: Config,
    /// Its warnings.
    pub warnings: Vec<String>,
    /// Its lifecycle settings.
    pub lifecycle: LifecyclePlan,
    /// The listeners bound (ports resolved).
    pub listeners: Vec<ListenerPlan>,
    /// The upgrade socket of the process.
    pub upgrade_sock: std::path::PathBuf,
    /// Why it started: `start`, or `upgrade` for a process that took the listeners over.
    pub trigger: &'static str,
}

impl Controller {
    /// The controller of a process that started with `started`, serving `runtime`. Records the
    /// starting configuration in the history (unless it is the newest version already).
    pub fn new(
        source: Source,
        registry: Registry,
        runtime: Arc<RuntimeHandle>,
        started: Started,
    ) -> Arc<Controller> {
        let history = history_of(&source, &started.lifecycle);
        let version = history.as_ref().and_then(|history| {
            record_logged(
                history,
                &started.snapshot,
                Record::new(started.trigger).by(user()),
            )
        });
        Arc::new_cyclic(|weak| Controller {
            source,
            registry,
            runtime,
            listeners: started.listeners,
            upgrade_sock: started.upgrade_sock,
            history,
            running: Mutex::new(Running {
                snapshot: started.snapshot,
                config: started.config,
                warnings: started.warnings,
                lifecycle: started.lifecycle,
                version,
                upgrading: false,
            }),
            upgrade: OnceLock::new(),
            window: window::Window::new(weak.clone()),
            watch: Mutex::new(None),
            certificate_watch: Mutex::new(None),
            me: weak.clone(),
        })
    }

    /// Sets what starts a graceful upgrade (the process does; without it such changes are
    /// rejected).
    pub fn set_upgrade_hook(&self, hook: UpgradeHook) {
        let _ = self.upgrade.set(hook);
    }

    /// The source it applies from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The runtime it applies to.
    pub fn runtime(&self) -> &Arc<RuntimeHandle> {
        &self.runtime
    }

    /// The plugin types configurations are compiled with.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The listeners as bound at start (ports resolved).
    pub fn listeners(&self) -> &[ListenerPlan] {
        &self.listeners
    }

    /// The history, when the source keeps one.
    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// The running configuration's documents and version.
    pub fn running(&self) -> (Snapshot, Option<u64>) {
        let running = self.lock();
        (running.snapshot.clone(), running.version)
    }

    /// Starts what runs beside the process: the file watch when `watch` (`--watch`) or
    /// `basic.auto_reload` asks for it, the watch of the certificate files, the sampling of the
    /// rollback window when it is set.
    pub fn start(self: &Arc<Self>, watch: bool) {
        metrics().source_up(true);
        self.watch_certificate_files();
        let lifecycle = self.lock().lifecycle.clone();
        if let Some(plan) = lifecycle.rollback {
            self.window.start_sampling(plan.window);
        }
        if watch || lifecycle.auto_reload {
            self.start_watching();
        }
    }

    fn start_watching(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let apply = move |trigger: &str| {
            if let Some(controller) = weak.upgrade() {
                controller.apply_and_log(Record::new(trigger), true);
            }
        };
        let watch: Box<dyn Send> = match self.source.etcd() {
            Some(etcd) => Box::new(etcd_watch::start(etcd, self.source.read_revision(), apply)),
            None => match file_watch::FileWatch::start(&self.source, move || apply("file watch")) {
                Ok(Some(watch)) => Box::new(watch),
                Ok(None) => return,
                Err(e) => {
                    tracing::error!("cannot watch {}: {e}", self.source);
                    return;
                }
            },
        };
        tracing::info!("watching {} for changes", self.source);
        *self.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(watch);
    }

    /// Watches the certificate, key and CA files of the running configuration (again, when they
    /// are not the ones watched already): a change of their contents applies the running
    /// configuration again ([`Controller::reapply_running`]), whatever `auto_reload` says.
    fn watch_certificate_files(&self) {
        let files = self.runtime.load().certificates.set.files.clone();
        let mut watch = self
            .certificate_watch
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if watch.as_ref().is_some_and(|(watched, _)| *watched == files) {
            return;
        }
        *watch = None;
        if files.is_empty() {
            return;
        }
        let me = self.me.clone();
        let reapply = move || {
            if let Some(controller) = me.upgrade() {
                controller.reapply_running(
                    Record::new("certificate file")
                        .noting("a certificate, key or CA file changed".to_string()),
                );
            }
        };
        match file_watch::FileWatch::files(files.clone(), reapply) {
            Ok(started) => *watch = Some((files, started)),
            Err(e) => tracing::error!("cannot watch the certificate files: {e}"),
        }
    }

    /// Applies the running configuration again, as its text is, through the apply path: the
    /// files it names (certificates, keys, CAs) are read again. A file that is now bad rejects
    /// it, and the running certificates stay. Logged like every apply.
    pub fn reapply_running(&self, record: Record) {
        let trigger = record.trigger.clone();
        let began = std::time::Instant::now();
        let result = {
            let mut running = self.lock();
            if running.upgrading {
                Err(ApplyError::Upgrading)
            } else {
                check(
                    running.snapshot.clone(),
                    &self.registry,
                    Some(&self.runtime.load()),
                )
                .map_err(ApplyError::from)
                .and_then(|candidate| self.apply_candidate(&mut running, candidate, record))
            }
        };
        self.after_attempt(result.as_ref().ok());
        self.log_outcome(&trigger, result, began);
    }

    /// Reads the source and applies what it holds, even when its text is the running one's (an
    /// operator's SIGHUP also picks up files the configuration names, such as certificates).
    pub fn apply(&self, record: Record) -> Result<Applied, ApplyError> {
        self.apply_from_source(record, false)
    }

    /// Reads the source and applies what it holds unless its text is the running one's (the
    /// watches: a save that changed nothing, or the echo of pingap's own write).
    pub fn apply_if_changed(&self, record: Record) -> Result<Applied, ApplyError> {
        self.apply_from_source(record, true)
    }

    fn apply_from_source(&self, record: Record, if_changed: bool) -> Result<Applied, ApplyError> {
        let mut running = self.lock();
        let result = self.apply_source(&mut running, record, if_changed);
        self.after_attempt(result.as_ref().ok());
        result
    }

    /// [`Controller::apply`] (or [`Controller::apply_if_changed`]), with the outcome logged.
    pub fn apply_and_log(&self, record: Record, if_changed: bool) {
        let trigger = record.trigger.clone();
        let began = std::time::Instant::now();
        let result = self.apply_from_source(record, if_changed);
        self.log_outcome(&trigger, result, began);
    }

    fn log_outcome(
        &self,
        trigger: &str,
        result: Result<Applied, ApplyError>,
        began: std::time::Instant,
    ) {
        match result {
            Ok(applied) => log_applied(trigger, &self.source, &applied, began.elapsed()),
            Err(ApplyError::Upgrading) => tracing::info!(
                "configuration from {} ({trigger}) left to the new process: {}",
                self.source,
                ApplyError::Upgrading
            ),
            Err(e) => tracing::error!(
                generation = self.runtime.load().generation,
                "configuration from {} ({trigger}) rejected, keeping the running one: {e}",
                self.source
            ),
        }
    }

    /// Checks `snapshot`, writes it to the source and applies it (the admin API's writes).
    pub fn apply_snapshot(
        &self,
        snapshot: Snapshot,
        record: Record,
    ) -> Result<Applied, ApplyError> {
        self.write_and_apply(snapshot, record, true)
    }

    /// Edits the running configuration: `edit` gets its documents and returns the new ones (or
    /// an error that ends the edit), which are checked, written to the source and applied, all
    /// while no other apply can start, so an edit never overwrites a change it did not see. The
    /// source must hold the running configuration (no change waiting to be applied).
    pub fn apply_edit<E: From<ApplyError>>(
        &self,
        record: Record,
        edit: impl FnOnce(&Snapshot) -> Result<Snapshot, E>,
    ) -> Result<Applied, E> {
        let mut running = self.lock();
        if running.upgrading {
            return Err(ApplyError::Upgrading.into());
        }
        let held = self.source.read().map_err(ApplyError::from)?;
        if !same_configuration(&held, &running.snapshot) {
            return Err(ApplyError::SourceChanged(self.source.to_string()).into());
        }
        let snapshot = edit(&running.snapshot)?;
        let result = self.check_write_apply(&mut running, snapshot, record, true);
        self.after_attempt(result.as_ref().ok());
        Ok(result?)
    }

    /// Checks `snapshot`, writes it to the source and applies it; when `must_write` is false a
    /// source that cannot be written to is logged and the snapshot applied anyway.
    fn write_and_apply(
        &self,
        snapshot: Snapshot,
        record: Record,
        must_write: bool,
    ) -> Result<Applied, ApplyError> {
        let mut running = self.lock();
        if running.upgrading {
            return Err(ApplyError::Upgrading);
        }
        let result = self.check_write_apply(&mut running, snapshot, record, must_write);
        self.after_attempt(result.as_ref().ok());
        result
    }

    fn check_write_apply(
        &self,
        running: &mut Running,
        snapshot: Snapshot,
        record: Record,
        must_write: bool,
    ) -> Result<Applied, ApplyError> {
        let candidate = check(snapshot, &self.registry, Some(&self.runtime.load()))?;
        match self.source.write(&candidate.snapshot) {
            Ok(()) => {}
            Err(e) if !must_write => tracing::error!(
                "cannot write the configuration back to {}; it is applied, but the source still holds the one it replaces: {e}",
                self.source
            ),
            Err(e) => return Err(e.into()),
        }
        self.apply_candidate(running, candidate, record)
    }

    /// What applying `snapshot` would change, without applying it.
    pub fn plan(&self, snapshot: Snapshot) -> Result<Changes, ConfigErrors> {
        // Compiled without the running runtime: a plan must not touch running state.
        let candidate = check(snapshot, &self.registry, None)?;
        let running = self.lock();
        Ok(Changes::between(
            Some(&running.config),
            &candidate.config,
            &running.warnings,
            &candidate.compiled.warnings,
        ))
    }

    /// Applies version `number` of the history again and writes it to the source.
    pub fn rollback(&self, number: u64, author: Option<String>) -> Result<Applied, ApplyError> {
        let history = self
            .history
            .as_ref()
            .ok_or(HistoryError::NoSuchVersion(number))?;
        let version = history.get(number)?;
        let record = Record::new("rollback")
            .by(author)
            .noting(format!("restores version {number}"));
        self.apply_snapshot(version.snapshot, record)
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply_source(
        &self,
        running: &mut Running,
        record: Record,
        if_changed: bool,
    ) -> Result<Applied, ApplyError> {
        if running.upgrading {
            return Err(ApplyError::Upgrading);
        }
        let snapshot = self.source.read()?;
        if if_changed && snapshot.digest() == running.snapshot.digest() {
            return Ok(Applied {
                outcome: Outcome::Unchanged,
                changes: Changes::default(),
                version: running.version,
            });
        }
        let candidate = check(snapshot, &self.registry, Some(&self.runtime.load()))?;
        self.apply_candidate(running, candidate, record)
    }

    /// Swaps `candidate` in, or hands over to a new process when it needs one.
    fn apply_candidate(
        &self,
        running: &mut Running,
        candidate: Candidate,
        record: Record,
    ) -> Result<Applied, ApplyError> {
        let Candidate {
            snapshot,
            config,
            compiled,
        } = candidate;
        let changes = Changes::between(
            Some(&running.config),
            &config,
            &running.warnings,
            &compiled.warnings,
        );
        let reasons = changes.upgrade_reasons();
        if !reasons.is_empty() {
            let request = UpgradeRequest {
                reasons: reasons.clone(),
                listeners: compiled.plan.listeners.iter().map(|l| l.addr).collect(),
                upgrade_sock: compiled.plan.upgrade_sock.clone(),
            };
            if request.upgrade_sock != self.upgrade_sock {
                return Err(ApplyError::Upgrade {
                    reasons: reasons.join("; "),
                    message: "basic.upgrade_sock changed: restart pingap to apply it".to_string(),
                });
            }
            let hook = self.upgrade.get().ok_or_else(|| ApplyError::Upgrade {
                reasons: reasons.join("; "),
                message: "this process cannot upgrade itself".to_string(),
            })?;
            hook(&request).map_err(|message| ApplyError::Upgrade {
                reasons: reasons.join("; "),
                message,
            })?;
            self.window.disarm();
            running.upgrading = true;
            let version = self
                .history
                .as_ref()
                .and_then(|history| record_logged(history, &snapshot, record));
            return Ok(Applied {
                outcome: Outcome::Upgrading,
                changes,
                version,
            });
        }
        // The start logged every warning; an apply logs the new ones (the rest is noise at every
        // reload, and `pingap -t` lists them all).
        for warning in &changes.new_warnings {
            tracing::warn!("{warning}");
        }
        let still =
            compiled.warnings.len() - changes.new_warnings.len().min(compiled.warnings.len());
        if still > 0 {
            tracing::info!(
                "{still} earlier configuration warning(s) still apply (pingap -t lists them)"
            );
        }
        let previous = (running.snapshot.clone(), running.version);
        let is_rollback = record.trigger.contains("rollback");
        let generation = self.runtime.install(compiled.runtime);
        let version = self
            .history
            .as_ref()
            .and_then(|history| record_logged(history, &snapshot, record));
        *running = Running {
            snapshot,
            config,
            warnings: compiled.warnings,
            lifecycle: compiled.plan.lifecycle,
            version,
            upgrading: false,
        };
        match running.lifecycle.rollback {
            Some(plan) if !is_rollback => self.window.arm(plan, previous.0, previous.1),
            _ => self.window.disarm(),
        }
        Ok(Applied {
            outcome: Outcome::Swapped { generation },
            changes,
            version,
        })
    }

    /// After an apply, applied or not: drops the metric and live-statistics series of names the
    /// running configuration no longer has (compiling a rejected one may have resolved some)
    /// and counts the attempt.
    fn after_attempt(&self, applied: Option<&Applied>) {
        let metrics = metrics();
        let live = live_names(&self.runtime.load());
        let dropped = metrics.retain(&live);
        crate::observe::live::stats().retain(&live.locations, &live.upstreams);
        if dropped > 0 {
            tracing::debug!("dropped {dropped} metric series of names no longer configured");
        }
        match applied.map(|a| &a.outcome) {
            Some(Outcome::Swapped { generation }) => {
                metrics.reloaded(Some(*generation));
                self.watch_certificate_files();
            }
            Some(Outcome::Unchanged | Outcome::Upgrading) => {}
            None => metrics.reloaded(None),
        }
    }

    /// Applies `snapshot` again because the window found the running one worse (called by
    /// the window).
    fn roll_back_automatically(&self, snapshot: Snapshot, note: String) {
        let record = Record::new("automatic rollback").noting(note.clone());
        // Serving the previous configuration matters more than the source holding it.
        match self.write_and_apply(snapshot, record, false) {
            Ok(applied) => {
                metrics().rolled_back();
                tracing::warn!(
                    version = applied.version,
                    "configuration rolled back automatically: {note}"
                );
            }
            Err(e) => tracing::error!("automatic rollback failed ({note}): {e}"),
        }
    }
}

fn log_applied(trigger: &str, source: &Source, applied: &Applied, took: std::time::Duration) {
    let took_ms = took.as_secs_f64() * 1000.0;
    match &applied.outcome {
        Outcome::Unchanged => {
            tracing::debug!("configuration from {source} ({trigger}) unchanged");
        }
        Outcome::Swapped { generation } => {
            tracing::info!(
                generation,
                version = applied.version,
                took_ms,
                "configuration applied from {source} ({trigger}): {} change(s)",
                applied.changes.entries.len()
            );
        }
        Outcome::Upgrading => tracing::info!(
            version = applied.version,
            "configuration from {source} ({trigger}) needs a graceful upgrade ({}): a new process takes the listeners over",
            applied.changes.upgrade_reasons().join("; ")
        ),
    }
}

/// Records a version; a history that cannot be written is logged, not fatal (the
/// configuration is live already).
fn record_logged(history: &History, snapshot: &Snapshot, record: Record) -> Option<u64> {
    let record = match (&record.note, history.find_digest(&snapshot.digest())) {
        (None, Ok(Some(older))) => record.noting(format!("same configuration as version {older}")),
        _ => record,
    };
    match history.record(snapshot, record) {
        Ok(version) => Some(version.number),
        Err(e) => {
            tracing::error!("cannot record the configuration in the history: {e}");
            None
        }
    }
}

/// The user running the command, for versions recorded from the command line.
pub fn user() -> Option<String> {
    std::env::var("USER").ok().filter(|user| !user.is_empty())
}

/// The names of the servers, routed locations, upstreams and backends of `runtime`: the metric
/// series worth keeping.
fn live_names(runtime: &Runtime) -> LiveNames {
    let mut live = LiveNames::default();
    for server in &runtime.servers {
        live.servers.insert(server.name.clone());
        live.locations.extend(
            server
                .router
                .targets()
                .map(|location| location.name.to_string()),
        );
    }
    for (name, pool) in &runtime.upstreams {
        live.upstreams.insert(name.clone());
        live.backends.extend(
            pool.members()
                .backends()
                .iter()
                .map(|member| (name.clone(), member.addr.to_string())),
        );
    }
    live
}
