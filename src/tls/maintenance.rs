//! Certificate maintenance, in one background task per process: OCSP staples fetched, checked,
//! stapled and refreshed, stale ones dropped, and a warning logged for certificates that expire
//! within two weeks.
//!
//! The task wakes when the store changes (a reload, an issued certificate) and otherwise when
//! the next thing is due: a staple's refresh (halfway through its validity), a retry after a
//! failed fetch (one minute, doubling up to an hour), a staple running out, the daily expiry
//! check. Fetches for several certificates run one after the other, each bounded by a timeout;
//! nothing here runs inside a handshake.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::ocsp;
use super::store::{CertificateStore, ServedCertificate};

/// Certificates expiring within this are warned about.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);
/// How often a certificate that expires soon is warned about again.
const WARN_EVERY_SECS: i64 = 24 * 3600;
/// The first retry after a failed OCSP fetch.
const RETRY_FIRST_SECS: i64 = 60;
/// The longest wait between two OCSP retries.
const RETRY_MAX_SECS: i64 = 3600;
/// The longest the task sleeps.
const MAX_SLEEP_SECS: i64 = 3600;

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What the task remembers of one certificate (by fingerprint).
#[derive(Debug, Default, Clone, Copy)]
struct Tracked {
    /// When to fetch its OCSP response next (0: now).
    next_fetch: i64,
    /// Failed fetches in a row.
    failures: u32,
    /// When it was last warned about expiring.
    warned: Option<i64>,
    /// Whether a certificate whose chain cannot be checked was reported.
    unusable_reported: bool,
}

/// Runs the maintenance of `store` until `shutdown` says so.
pub async fn run(store: Arc<CertificateStore>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tracked: HashMap<[u8; 32], Tracked> = HashMap::new();
    loop {
        let wake = maintain(&store, &mut tracked).await;
        let sleep = Duration::from_secs(
            u64::try_from((wake - unix_now()).clamp(1, MAX_SLEEP_SECS)).unwrap_or(1),
        );
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = store.changed() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One round: warns, fetches what is due, drops stale staples. Returns when to wake next
/// (Unix seconds).
async fn maintain(store: &CertificateStore, tracked: &mut HashMap<[u8; 32], Tracked>) -> i64 {
    let now = unix_now();
    let served = store.served();
    tracked.retain(|fingerprint, _| {
        served
            .iter()
            .any(|cert| cert.loaded.info.fingerprint == *fingerprint)
    });
    let mut wake = now + MAX_SLEEP_SECS;
    for cert in &served {
        let state = tracked.entry(cert.loaded.info.fingerprint).or_default();
        warn_expiry(cert, state, now);
        if let Some(when) = staple(store, cert, state).await {
            wake = wake.min(when);
        }
        if let Some(staple) = &cert.staple {
            wake = wake.min(staple.next_update);
        }
    }
    store.drop_stale_staples(unix_now());
    wake
}

/// Logs a warning for `cert` when it expires within [`EXPIRY_WARNING`] (once a day).
fn warn_expiry(cert: &ServedCertificate, state: &mut Tracked, now: i64) {
    let not_after = cert.loaded.info.not_after;
    let left = not_after - now;
    let soon = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    if left >= soon || state.warned.is_some_and(|at| now - at < WARN_EVERY_SECS) {
        return;
    }
    state.warned = Some(now);
    let when = chrono::DateTime::from_timestamp(not_after, 0)
        .map_or_else(|| not_after.to_string(), |t| t.to_rfc3339());
    if left <= 0 {
        tracing::error!(
            certificate = %cert.name,
            domains = %cert.domains.join(","),
            "certificate {} expired on {when}",
            cert.name
        );
    } else {
        tracing::warn!(
            certificate = %cert.name,
            domains = %cert.domains.join(","),
            "certificate {} expires in {} days ({when})",
            cert.name,
            left / 86_400
        );
    }
}

/// Fetches and staples the OCSP response of `cert` when it is due; returns when it is due
/// next (`None`: never, it names no responder).
async fn staple(
    store: &CertificateStore,
    cert: &ServedCertificate,
    state: &mut Tracked,
) -> Option<i64> {
    let now = unix_now();
    let due = match &cert.staple {
        Some(staple) => state.next_fetch.max(ocsp::refresh_at(staple, now)),
        None => state.next_fetch,
    };
    if due > now {
        return Some(due);
    }
    let query = match ocsp::query_for(&cert.loaded) {
        Ok(Some(query)) => query,
        // No responder: served without a staple, silently.
        Ok(None) => return None,
        Err(e) => {
            if !state.unusable_reported {
                state.unusable_reported = true;
                tracing::warn!(
                    certificate = %cert.name,
                    "no OCSP stapling for certificate {}: {e}",
                    cert.name
                );
            }
            return None;
        }
    };
    let result = match ocsp::fetch(&query).await {
        Ok(response) => ocsp::verify(&query, &response, unix_now()),
        Err(e) => Err(e),
    };
    let now = unix_now();
    match result {
        Ok(staple) => {
            let next = ocsp::refresh_at(&staple, now);
            let valid_until = chrono::DateTime::from_timestamp(staple.next_update, 0)
                .map_or_else(|| staple.next_update.to_string(), |t| t.to_rfc3339());
            tracing::info!(
                certificate = %cert.name,
                "OCSP response stapled to certificate {} (valid until {valid_until})",
                cert.name
            );
            store.set_staple(cert.loaded.info.fingerprint, staple);
            state.failures = 0;
            state.next_fetch = next;
            Some(next)
        }
        Err(e) => {
            let wait = RETRY_FIRST_SECS
                .saturating_mul(1 << state.failures.min(6))
                .min(RETRY_MAX_SECS);
            state.failures = state.failures.saturating_add(1);
            state.next_fetch = now + wait;
            tracing::warn!(
                certificate = %cert.name,
                "OCSP response for certificate {} not stapled ({e}); trying again in {wait}s",
                cert.name
            );
            Some(state.next_fetch)
        }
    }
}
