//! The ACME background service: looks after every `[certificates.NAME]` with `acme` in the
//! running configuration, each at its own time ([`crate::tls::acme::renewer`]), and serves what
//! is issued or found stored at once, in the step that obtained it.
//!
//! The certificates are looked up in the runtime current at each pass, so a reload that adds,
//! changes or removes one takes effect within a second; a changed table is looked at again at
//! once. With etcd, the challenges other instances publish while they order are answered here
//! too (read every second).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;

use crate::config::Source;
use crate::observe::metrics::metrics;
use crate::runtime::RuntimeHandle;
use crate::tls::acme::storage::{Issued, rfc3339};
use crate::tls::acme::{AcmePlan, AcmeSpec, AcmeStatus, Checked, OrderOutcome, Renewer, Storage};
use crate::tls::{CertificateStore, certified_key};

/// The longest sleep between two looks at the runtime.
const TICK: Duration = Duration::from_secs(1);

/// Keeps the ACME certificates of the running configuration issued and renewed, and serves
/// them from the process's certificate store.
pub struct AcmeRenewals {
    /// Where the certificates are found, and the store they are served from.
    pub runtime: Arc<RuntimeHandle>,
    /// The configuration's source, whose storage keeps accounts and certificates.
    pub source: Source,
    /// How long to wait before the first look: a process started by a graceful upgrade waits
    /// until the old one stops accepting ([`UPGRADE_OVERLAP`]), or a directory validating an
    /// order of the new process could reach the old one.
    pub first_look_after: Duration,
}

/// How long the old process of a graceful upgrade goes on accepting after the handover
/// (Pingora's `CLOSE_TIMEOUT`, 5 s), with a second to spare.
pub const UPGRADE_OVERLAP: Duration = Duration::from_secs(6);

/// What the service knows of one certificate between looks.
struct Known {
    /// The settings of the last look.
    spec: Arc<AcmeSpec>,
    /// When to look next.
    next_check: SystemTime,
    /// The chain served now.
    served: Option<String>,
    /// The last order this process saw end, and when.
    last_order: Option<(OrderOutcome, SystemTime)>,
}

#[async_trait]
impl BackgroundService for AcmeRenewals {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut renewer: Option<(Option<PathBuf>, Option<Arc<Renewer>>)> = None;
        let mut known: HashMap<String, Known> = HashMap::new();
        let mut running: JoinSet<(Arc<AcmeSpec>, Checked)> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        tokio::select! {
            _ = tokio::time::sleep(self.first_look_after) => {}
            _ = shutdown.changed() => return,
        }
        loop {
            let plan = self.runtime.load().acme.clone();
            known.retain(|name, _| plan.certificates.iter().any(|spec| &spec.name == name));
            let now = SystemTime::now();
            if let Some(renewer) = self.renewer(&mut renewer, &plan, &mut known) {
                for spec in &plan.certificates {
                    let due = known
                        .get(&spec.name)
                        .is_none_or(|known| known.spec != *spec || known.next_check <= now);
                    if due && in_flight.insert(spec.name.clone()) {
                        let spec = spec.clone();
                        let renewer = renewer.clone();
                        running.spawn(async move {
                            let checked = renewer.check(&spec).await;
                            (spec, checked)
                        });
                    }
                }
                if renewer.shares_challenges() {
                    renewer.mirror_published().await;
                }
            }
            tokio::select! {
                finished = running.join_next(), if !running.is_empty() => {
                    let Some(Ok((spec, checked))) = finished else { continue };
                    in_flight.remove(&spec.name);
                    if let Some(outcome) = &checked.ordered {
                        metrics().acme_order(&spec.name, outcome.label());
                    }
                    // A certificate removed from the configuration meanwhile is not served.
                    if !plan.certificates.iter().any(|s| s.name == spec.name) {
                        continue;
                    }
                    let name = spec.name.clone();
                    let entry = known.entry(name.clone()).or_insert_with(|| Known {
                        spec: spec.clone(),
                        next_check: checked.next_check,
                        served: None,
                        last_order: None,
                    });
                    entry.spec = spec.clone();
                    entry.next_check = checked.next_check;
                    if let Some(outcome) = &checked.ordered {
                        entry.last_order = Some((outcome.clone(), SystemTime::now()));
                    }
                    let store = self.runtime.load().certificates.store.clone();
                    if let Some(issued) = &checked.certificate
                        && entry.served.as_deref() != Some(issued.chain_pem.as_str())
                    {
                        match serve(&store, &name, issued) {
                            Ok(()) => {
                                tracing::info!(
                                    certificate = %name,
                                    domains = %issued.domains.join(","),
                                    valid_until = %rfc3339(issued.not_after()),
                                    "serving the ACME certificate"
                                );
                                entry.served = Some(issued.chain_pem.clone());
                            }
                            Err(e) => tracing::error!(
                                certificate = %name,
                                "cannot serve the ACME certificate: {e}"
                            ),
                        }
                    }
                    let status = AcmeStatus::new(&spec, &checked, entry.last_order.as_ref());
                    store.set_acme_status(&name, serde_json::to_value(status).unwrap_or_default());
                }
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl AcmeRenewals {
    /// The renewer for the plan's storage: the current one, or a new one when the storage
    /// changed (which forgets what was known). None when there is nothing to look after or
    /// nowhere to keep it.
    fn renewer(
        &self,
        current: &mut Option<(Option<PathBuf>, Option<Arc<Renewer>>)>,
        plan: &AcmePlan,
        known: &mut HashMap<String, Known>,
    ) -> Option<Arc<Renewer>> {
        if plan.certificates.is_empty() {
            return None;
        }
        if let Some((dir, renewer)) = current
            && *dir == plan.dir
        {
            return renewer.clone();
        }
        known.clear();
        let renewer = match Storage::for_source(&self.source, plan.dir.as_deref()) {
            Some(storage) => {
                tracing::info!("ACME accounts and certificates are kept in {storage}");
                let store = self.runtime.load().certificates.store.clone();
                Some(Arc::new(Renewer::new(storage, store)))
            }
            None => {
                tracing::error!(
                    "ACME needs somewhere to keep accounts and certificates: set basic.acme_dir"
                );
                None
            }
        };
        *current = Some((plan.dir.clone(), renewer.clone()));
        renewer
    }
}

/// Serves `issued` for `[certificates.NAME]` from the store, from the next handshake on.
fn serve(store: &CertificateStore, name: &str, issued: &Issued) -> Result<(), String> {
    let key = certified_key(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())?;
    store
        .install_issued(name, Arc::new(key))
        .map_err(|e| e.to_string())
}
