//! What a reload carries from the running runtime into the new one: the one place that decides
//! which state survives a configuration change, and by what identity.
//!
//! | state | lives in | carried when | identity |
//! |---|---|---|---|
//! | plugin instances (rate-limit counters, concurrency slots, JWKS, …) | `Runtime::plugins` | the plugin's type, priority and settings are unchanged | name + settings fingerprint |
//! | a rebuilt plugin's own state (a cache's entries) | the instance | the plugin is rebuilt with other settings under the same name | name, handed to the build as `BuildEnv::previous` |
//! | backend health (passive failures, circuit breaker, active-check streaks) | each `Pool`'s members | the upstream keeps its name; per backend address | upstream name + backend address |
//! | access-log writers (open file, queue, rotation schedule) | each server's `AccessLog` | some server of the new configuration logs to the same target with the same rotation | target + rotation |
//! | the certificate store (ACME-issued certificates, OCSP staples, tls-alpn-01 challenges) | `Runtime::certificates` | always: one store per process, which the listeners read | — |
//!
//! Everything else is rebuilt from the configuration. A request in flight keeps the runtime it
//! started with, and with it whatever that runtime held; state nobody carried is freed when the
//! last such request ends. What is not carried here is process-wide on purpose (the Prometheus
//! registry, the trace exporter), not configuration state.

use std::sync::Arc;

use pingap_plugins::Instance;

use super::Runtime;
use crate::observe::access_log::{Rotation, Sink, Target};
use crate::tls::CertificateStore;
use crate::upstream::Pool;

/// The state of the running runtime that the next one may take over.
#[derive(Clone, Copy, Default)]
pub struct Carry<'a> {
    previous: Option<&'a Runtime>,
}

impl<'a> Carry<'a> {
    /// What `previous` (the running runtime, if any) can hand over.
    pub fn from(previous: Option<&'a Runtime>) -> Self {
        Carry { previous }
    }

    /// The running instance of plugin `name`, when its settings are unchanged: it is kept as is.
    pub fn plugin(&self, name: &str, fingerprint: u64) -> Option<Arc<Instance>> {
        self.previous?
            .plugins
            .get(name)
            .filter(|old| old.fingerprint == fingerprint)
            .map(|old| old.instance.clone())
    }

    /// The running instance of plugin `name` whatever its settings, for a rebuild to take its
    /// state from.
    pub fn rebuilt_plugin(&self, name: &str) -> Option<Arc<Instance>> {
        self.previous?
            .plugins
            .get(name)
            .map(|old| old.instance.clone())
    }

    /// The running pool of upstream `name`, whose backends' health the new pool keeps.
    pub fn pool(&self, name: &str) -> Option<&'a Pool> {
        self.previous?.upstreams.get(name).map(|pool| &**pool)
    }

    /// The running access-log sink writing to `target` with `rotation`.
    pub fn sink(&self, target: &Target, rotation: &Rotation) -> Option<Arc<Sink>> {
        self.previous?
            .access_log_sinks()
            .find(|sink| sink.serves(target, rotation))
            .cloned()
    }

    /// The process's certificate store: the running one's, or a new one at the first start.
    pub fn certificate_store(&self) -> Arc<CertificateStore> {
        self.previous
            .map_or_else(CertificateStore::new, |previous| {
                previous.certificates.store.clone()
            })
    }
}
