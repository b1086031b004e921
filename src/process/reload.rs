//! Reloading the configuration: read, validate, compile, swap, on one code path.
//!
//! A configuration that fails any step is rejected and the running one stays. Listeners belong
//! to the process, so a reload that would add, remove or move one is rejected too: that takes a
//! graceful upgrade (start `pingap -u`, then send SIGQUIT to the old process).
//!
//! After each attempt the metric series of whatever the running configuration no longer has
//! (renamed or removed locations, upstreams, backends) are dropped, so the `/metrics` output
//! follows the configuration instead of growing with every rename.

use std::sync::{Arc, Mutex};

use pingap_plugins::Registry;

use crate::config::{ConfigErrors, Source};
use crate::observe::metrics::{LiveNames, metrics};
use crate::runtime::{ListenerPlan, Runtime, RuntimeHandle, compile};

/// Why a reload was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration has errors.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    /// The listeners changed.
    #[error(
        "the listeners changed ({0}); that needs a graceful upgrade: start `pingap -u` with the new configuration, then send SIGQUIT to this process"
    )]
    ListenersChanged(String),
}

/// Reloads configurations from a source into a runtime handle.
pub struct Reloader {
    source: Source,
    registry: Registry,
    runtime: Arc<RuntimeHandle>,
    listeners: Vec<ListenerPlan>,
    /// One reload at a time: a compile that resolves the counters of a name must not run
    /// between another reload's install and its pruning of that name.
    serial: Mutex<()>,
}

impl Reloader {
    /// A reloader for the process started with `listeners`.
    pub fn new(
        source: Source,
        registry: Registry,
        runtime: Arc<RuntimeHandle>,
        listeners: Vec<ListenerPlan>,
    ) -> Self {
        Reloader {
            source,
            registry,
            runtime,
            listeners,
            serial: Mutex::new(()),
        }
    }

    /// The runtime it reloads.
    pub fn runtime(&self) -> &Arc<RuntimeHandle> {
        &self.runtime
    }

    /// Reloads; returns the new generation and a summary.
    pub fn reload(&self) -> Result<(u64, String), ReloadError> {
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.try_reload();
        let metrics = metrics();
        // Also after a rejected configuration: compiling it may have resolved the counters of
        // names only it had. Before the generation is published, so a scrape that shows the new
        // generation shows no series of the names it dropped.
        let dropped = metrics.retain(&live_names(&self.runtime.load()));
        if dropped > 0 {
            tracing::debug!("dropped {dropped} metric series of names no longer configured");
        }
        metrics.reloaded(result.as_ref().ok().map(|(generation, _)| *generation));
        result
    }

    fn try_reload(&self) -> Result<(u64, String), ReloadError> {
        let loaded = self.source.load()?;
        let current = self.runtime.load();
        let compiled = compile(&loaded, &self.registry, Some(&current))?;
        self.check_listeners(&compiled.plan.listeners)?;
        for warning in &compiled.warnings {
            tracing::warn!("{warning}");
        }
        // Hand new certificates to the running listeners.
        for (running, new) in self.listeners.iter().zip(&compiled.plan.listeners) {
            if let (Some(running), Some(new)) = (&running.tls, &new.tls) {
                running.replace(new.current(), new.min_version());
            }
        }
        let summary = compiled.summary();
        let generation = self.runtime.install(compiled.runtime);
        Ok((generation, summary))
    }

    /// Reloads and logs the outcome.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok((generation, summary)) => {
                tracing::info!(
                    generation,
                    "configuration reloaded from {}: {summary}",
                    self.source
                );
            }
            Err(e) => tracing::error!(
                generation = self.runtime.load().generation,
                "configuration reload from {} rejected, keeping the running one: {e}",
                self.source
            ),
        }
    }

    fn check_listeners(&self, new: &[ListenerPlan]) -> Result<(), ReloadError> {
        let describe = |plans: &[ListenerPlan]| -> Vec<String> {
            plans
                .iter()
                .map(|l| {
                    let scheme = if l.tls.is_some() { "https" } else { "http" };
                    format!("{}={scheme}://{}", l.server, l.addr)
                })
                .collect()
        };
        let (running, wanted) = (describe(&self.listeners), describe(new));
        // Port 0 was resolved to a real port at start; compare what was asked for.
        let same = running.len() == wanted.len()
            && self.listeners.iter().zip(new).all(|(r, n)| {
                r.server == n.server
                    && r.tls.is_some() == n.tls.is_some()
                    && (r.addr == n.addr || (n.addr.port() == 0 && r.addr.ip() == n.addr.ip()))
            });
        if same {
            Ok(())
        } else {
            Err(ReloadError::ListenersChanged(format!(
                "running: {}; new: {}",
                running.join(", "),
                wanted.join(", ")
            )))
        }
    }
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
