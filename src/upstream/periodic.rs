//! The loop shared by the upstreams' background services (active checks, DNS refresh): a task
//! per upstream that wants one, each at its own period, looked up in the runtime current at
//! each tick, so that reloads add, change and remove tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pingora::server::ShutdownWatch;
use tokio::time::Instant;

use super::Pool;
use crate::runtime::RuntimeHandle;

/// The longest sleep between two looks at the runtime.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// When a task first runs for an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// As soon as the upstream appears.
    AtOnce,
    /// One period after it appears.
    AfterPeriod,
}

/// Until shutdown, spawns `task` for each upstream whose `period` is `Some`, every period.
pub async fn every_upstream(
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
