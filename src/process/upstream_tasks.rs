//! The background services that work on the upstreams of the live runtime: active health
//! checks ([`ActiveChecks`]) and DNS refresh ([`DnsRefresh`]). They share one loop: a task per
//! upstream that wants one, each at its own period, looked up in the runtime current at each
//! tick, so that reloads add, change and remove tasks. The work itself (one round of checks,
//! one resolution) belongs to the upstream ([`crate::upstream::active`], [`crate::upstream::dns`]);
//! what survives a reload (each backend's health) is carried by the runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::Instant;

use crate::runtime::RuntimeHandle;
use crate::upstream::Pool;
use crate::upstream::active::check_backends;

/// The longest sleep between two looks at the runtime.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// When a task first runs for an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    /// As soon as the upstream appears.
    AtOnce,
    /// One period after it appears.
    AfterPeriod,
}

/// Until shutdown, spawns `task` for each upstream whose `period` is `Some`, every period.
async fn every_upstream(
    runtime: &RuntimeHandle,
    mut shutdown: ShutdownWatch,
    first: First,
    period: impl Fn(&Pool) -> Option<Duration>,
    task: impl Fn(Arc<Pool>),
) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let current = runtime.load();
        let now = Instant::now();
        let mut wake = now + MAX_SLEEP;
        for (name, pool) in &current.upstreams {
            let Some(period) = period(pool) else {
                continue;
            };
            let when = due.entry(name.clone()).or_insert(match first {
                First::AtOnce => now,
                First::AfterPeriod => now + period,
            });
            if *when <= now {
                *when = now + period;
                task(pool.clone());
            }
            wake = wake.min(*when);
        }
        due.retain(|name, _| current.upstreams.contains_key(name));
        drop(current);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs the active health checks of every upstream that has one, each at its own interval.
/// Results go to each backend's health, which survives reloads.
pub struct ActiveChecks {
    /// Where the upstreams are found.
    pub runtime: Arc<RuntimeHandle>,
}

#[async_trait]
impl BackgroundService for ActiveChecks {
    async fn start(&self, shutdown: ShutdownWatch) {
        every_upstream(
            &self.runtime,
            shutdown,
            First::AtOnce,
            |pool| pool.health_check().map(|check| check.interval),
            |pool| {
                tokio::spawn(check_backends(pool));
            },
        )
        .await;
    }
}

/// Resolves the host names of every upstream again every `dns_refresh`.
pub struct DnsRefresh {
    /// Where the upstreams are found.
    pub runtime: Arc<RuntimeHandle>,
}

#[async_trait]
impl BackgroundService for DnsRefresh {
    async fn start(&self, shutdown: ShutdownWatch) {
        // Compiling the config resolved the names just now.
        every_upstream(
            &self.runtime,
            shutdown,
            First::AfterPeriod,
            |pool| {
                Some(pool.discovery())
                    .filter(|d| d.is_dynamic())
                    .map(|d| d.refresh)
            },
            |pool| {
                tokio::spawn(async move { pool.refresh_backends().await });
            },
        )
        .await;
    }
}
