//! One look at one ACME certificate: read what is stored, decide ([`super::schedule`]), and when
//! an order is due take the order lock, order, and store the result. The caller serves the
//! certificate this returns at once, so what is stored is what is served (the failure of
//! vicanso/pingap#213 was a renewed certificate that never reached the SNI store).
//!
//! Instances that share the storage share the work: the one that takes the lock orders, the
//! others look again shortly after and find the new certificate stored. A failure is stored with
//! the record, so the back-off holds across restarts and instances; it is also kept in memory,
//! so it holds while the storage cannot be written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::challenges::{Answering, Pending};
use super::client::{self, AcmeError, blocking};
use super::schedule::{Step, next_step, retry_delay};
use super::spec::AcmeSpec;
use super::storage::{CertificateRecord, Failure, Issued, Storage, unix};
use crate::tls::CertificateStore;

/// The longest time between two looks at a certificate: instances sharing etcd see each
/// other's renewals within it.
pub const RECHECK: Duration = Duration::from_secs(10 * 60);
/// How soon to look again while another instance holds the order lock.
pub const LOCKED_RECHECK: Duration = Duration::from_secs(5);
/// The longest an order may take, from the account to the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// What an order came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// A first certificate was issued.
    Issued,
    /// A certificate was renewed (or replaced after a change of domains or directory).
    Renewed,
    /// The order failed, for this reason.
    Failed(String),
}

impl OrderOutcome {
    /// `issued`, `renewed` or `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            OrderOutcome::Issued => "issued",
            OrderOutcome::Renewed => "renewed",
            OrderOutcome::Failed(_) => "failed",
        }
    }
}

/// The result of one look.
#[derive(Debug)]
pub struct Checked {
    /// The certificate to serve: the one stored, or the one just issued.
    pub certificate: Option<Issued>,
    /// What the order of this look came to, if it ordered.
    pub ordered: Option<OrderOutcome>,
    /// When the certificate is due for renewal (or the next order after a failure may start).
    pub due: Option<SystemTime>,
    /// The last failure recorded.
    pub failure: Option<Failure>,
    /// When to look again.
    pub next_check: SystemTime,
}

/// Looks after the ACME certificates kept in one storage.
pub struct Renewer {
    storage: Storage,
    /// Names this process to other holders of etcd locks.
    holder: String,
    /// The records last read or written, by certificate: used while the storage cannot be read.
    records: Mutex<HashMap<String, CertificateRecord>>,
    /// The process's certificate store: tls-alpn-01 answers go there.
    store: Arc<CertificateStore>,
    /// The challenges of other instances answered here ([`Renewer::mirror_published`]).
    mirrored: Mutex<Answering>,
}

impl Renewer {
    /// A renewer keeping its material in `storage`, answering tls-alpn-01 challenges through
    /// `store`.
    pub fn new(storage: Storage, store: Arc<CertificateStore>) -> Renewer {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_default();
        Renewer {
            storage,
            holder: format!("{host} pid {}", std::process::id()),
            records: Mutex::new(HashMap::new()),
            mirrored: Mutex::new(Answering::new(store.clone())),
            store,
        }
    }

    /// Whether instances share this storage's challenges (etcd): then
    /// [`Renewer::mirror_published`] is worth calling.
    pub fn shares_challenges(&self) -> bool {
        matches!(self.storage, Storage::Etcd(_))
    }

    /// Answers the challenges other instances published while they order (they share etcd
    /// with this one, and the directory may validate through this one): the set answered is
    /// replaced with the set published now. A storage that cannot be read leaves it as it is.
    pub async fn mirror_published(&self) {
        let storage = self.storage.clone();
        let published = match blocking(move || storage.published("challenges/")).await {
            Ok(published) => published,
            Err(e) => {
                tracing::debug!("cannot read the challenges other instances published: {e}");
                return;
            }
        };
        let wanted: Vec<Pending> = published
            .iter()
            .filter_map(|(_, value)| serde_json::from_str(value).ok())
            .collect();
        let mut mirrored = self.mirrored.lock().unwrap_or_else(PoisonError::into_inner);
        mirrored.retain(|pending| wanted.contains(pending));
        for pending in wanted {
            if !mirrored.contains(&pending)
                && let Err(e) = mirrored.add(pending)
            {
                tracing::warn!("cannot answer a published challenge: {e}");
            }
        }
    }

    fn cached(&self, name: &str) -> Option<CertificateRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn remember(&self, name: &str, record: &CertificateRecord) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), record.clone());
    }

    /// Reads the record of `name`, falling back on the one last seen; a failure only known in
    /// memory (the storage could not be written) is kept.
    async fn read(&self, name: &str) -> CertificateRecord {
        let storage = self.storage.clone();
        let key = name.to_string();
        let cached = self.cached(name);
        let record = match blocking(move || storage.certificate(&key)).await {
            Ok(stored) => {
                let mut record = stored.unwrap_or_default();
                if let Some(cached) = &cached
                    && later(cached.failure.as_ref(), record.failure.as_ref())
                    && record.issued == cached.issued
                {
                    record.failure = cached.failure.clone();
                }
                record
            }
            Err(e) => {
                tracing::warn!(certificate = name, "cannot read the ACME record: {e}");
                cached.unwrap_or_default()
            }
        };
        self.remember(name, &record);
        record
    }

    /// Stores `record` (a failure to store is logged; the record is kept in memory).
    async fn write(&self, name: &str, record: &CertificateRecord) {
        self.remember(name, record);
        let storage = self.storage.clone();
        let key = name.to_string();
        let value = record.clone();
        if let Err(e) = blocking(move || storage.put_certificate(&key, &value)).await {
            tracing::error!(certificate = name, "cannot store the ACME record: {e}");
        }
    }

    /// Looks at `spec` now: decides, orders when due, stores the outcome.
    pub async fn check(&self, spec: &AcmeSpec) -> Checked {
        let name = spec.name.as_str();
        let record = self.read(name).await;
        let now = SystemTime::now();
        let reason = match next_step(spec, Some(&record), now) {
            Step::WaitUntil(due) => return checked(record, None, due),
            Step::Order(reason) => reason,
        };
        let lock = {
            let storage = self.storage.clone();
            let key = name.to_string();
            let holder = self.holder.clone();
            blocking(move || storage.try_lock(&key, &holder)).await
        };
        let lock = match lock {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::info!(
                    certificate = name,
                    "another instance is ordering this certificate; looking again shortly"
                );
                return checked(record, None, now + LOCKED_RECHECK);
            }
            Err(e) => {
                let error = format!("cannot take the order lock: {e}");
                return self.failed(spec, record, error).await;
            }
        };
        // Someone may have finished an order between the first read and the lock.
        let record = self.read(name).await;
        let reason = match next_step(spec, Some(&record), SystemTime::now()) {
            Step::WaitUntil(due) => return checked(record, None, due),
            Step::Order(_) => reason,
        };
        tracing::info!(
            certificate = name,
            directory = %spec.directory,
            domains = %spec.domains.join(","),
            "ordering a certificate: {reason}"
        );
        let publish = |pending: &Pending| {
            let value = serde_json::to_string(pending).unwrap_or_default();
            lock.publish(&format!("challenges/{}", pending.token), &value)
                .map(|()| self.shares_challenges())
        };
        let outcome = tokio::time::timeout(ORDER_TIMEOUT, async {
            let mut fresh = false;
            loop {
                let (account, created) = client::account(&self.storage, spec, fresh).await?;
                if created {
                    tracing::info!(
                        directory = %spec.directory,
                        "created an ACME account (stored in {})",
                        self.storage
                    );
                }
                match client::order(&account, spec, &self.store, &publish).await {
                    Err(e) if !fresh && client::is_unknown_account(&e) => {
                        tracing::warn!(
                            directory = %spec.directory,
                            "the directory no longer knows the stored ACME account: creating a \
                             new one"
                        );
                        fresh = true;
                    }
                    outcome => return outcome,
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(AcmeError::Order(format!(
                "the order took longer than {}s",
                ORDER_TIMEOUT.as_secs()
            )))
        });
        let certificate = match outcome {
            Ok(certificate) => certificate,
            Err(e) => {
                drop(lock);
                return self.failed(spec, record, e.to_string()).await;
            }
        };
        let issued = match Issued::new(
            &spec.directory,
            &spec.domains,
            certificate.chain_pem,
            certificate.key_pem,
            certificate.received_at,
        )
        .and_then(|issued| {
            super::super::certified_key(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())
                .map(|_| issued)
        }) {
            Ok(issued) => issued,
            Err(e) => {
                drop(lock);
                let error = format!("the directory issued an unusable certificate: {e}");
                return self.failed(spec, record, error).await;
            }
        };
        let outcome = if record.issued.is_some() {
            OrderOutcome::Renewed
        } else {
            OrderOutcome::Issued
        };
        let valid_until = super::storage::rfc3339(issued.not_after());
        let record = CertificateRecord {
            issued: Some(issued),
            failure: None,
        };
        self.write(name, &record).await;
        tracing::info!(
            certificate = name,
            %valid_until,
            "certificate {} (stored in {})",
            outcome.label(),
            self.storage
        );
        drop(lock);
        let due = match next_step(spec, Some(&record), SystemTime::now()) {
            Step::WaitUntil(due) => due,
            Step::Order(_) => SystemTime::now() + spec.retry_delay,
        };
        checked(record, Some(outcome), due)
    }

    /// Records a failed order of `spec` and when the next may start.
    async fn failed(
        &self,
        spec: &AcmeSpec,
        mut record: CertificateRecord,
        error: String,
    ) -> Checked {
        let now = SystemTime::now();
        let count = match &record.failure {
            Some(previous)
                if previous.directory == spec.directory && spec.same_domains(&previous.domains) =>
            {
                previous.count.saturating_add(1)
            }
            _ => 1,
        };
        let wait = retry_delay(spec.retry_delay, count);
        record.failure = Some(Failure {
            at: unix(now),
            count,
            error: error.clone(),
            directory: spec.directory.clone(),
            domains: spec.domains.clone(),
        });
        self.write(&spec.name, &record).await;
        tracing::error!(
            certificate = %spec.name,
            failures = count,
            retry_in_secs = wait.as_secs(),
            "ACME order failed: {error}"
        );
        // Whole seconds are stored: wait from the stored time, as a restart would.
        let due = record.failure.as_ref().map_or(now, Failure::at) + wait;
        checked(record, Some(OrderOutcome::Failed(error)), due)
    }
}

/// The result of a look that ends with `record`, due at `due`.
fn checked(record: CertificateRecord, ordered: Option<OrderOutcome>, due: SystemTime) -> Checked {
    let next_check = due.min(SystemTime::now() + RECHECK);
    Checked {
        certificate: record.issued,
        ordered,
        due: Some(due),
        failure: record.failure,
        next_check,
    }
}

/// Whether failure `a` is later than `b`.
fn later(a: Option<&Failure>, b: Option<&Failure>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a.at, a.count) > (b.at, b.count),
        (Some(_), None) => true,
        _ => false,
    }
}
