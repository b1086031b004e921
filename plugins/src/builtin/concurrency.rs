//! `concurrency`: caps the requests in flight per key; over the cap a request gets 429, or
//! waits for a slot up to `queue_timeout`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max` | — | requests in flight per key |
//! | `key` | `"$remote_addr"` | what is counted, as for `rate_limit` |
//! | `queue_timeout` | — (no queue) | wait this long for a slot before answering 429 |
//!
//! A slot is held until the request finishes (its response is sent or it fails). Memory is
//! bounded by the requests in flight: a key is forgotten when its last request ends.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use pingora_http::RequestHeader;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::key::KeySource;
use crate::settings::ConfigDuration;
use crate::{
    BuildEnv, BuildError, Flow, Phase, Phases, Plugin, PluginCtx, PluginError, PluginType,
    Response, Settings,
};

pub(crate) const TYPE: PluginType = PluginType {
    name: "concurrency",
    default_priority: 3900,
    summary: "caps the requests in flight per key (429, or a bounded wait, over the cap)",
    build,
};

const SHARDS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max: u32,
    #[serde(default = "crate::key::default_key")]
    key: String,
    queue_timeout: Option<ConfigDuration>,
}

struct Concurrency {
    key: KeySource,
    hasher: RandomState,
    queue_timeout: Option<Duration>,
    slots: Arc<Slots>,
}

fn build(settings: &Settings, _: &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError> {
    let config: Config = crate::settings::parse(settings)?;
    if config.max == 0 {
        return Err(BuildError::at("max", "must be at least 1"));
    }
    Ok(Arc::new(Concurrency {
        key: KeySource::parse(&config.key).map_err(|e| BuildError::at("key", e))?,
        hasher: RandomState::new(),
        queue_timeout: config.queue_timeout.map(ConfigDuration::get),
        slots: Arc::new(Slots::new(config.max)),
    }))
}

/// In-flight counts by key hash, with a wake-up per shard for queued requests.
struct Slots {
    max: u32,
    shards: Box<[Shard]>,
}

#[derive(Default)]
struct Shard {
    counts: Mutex<HashMap<u64, u32>>,
    freed: Notify,
}

impl Shard {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u32>> {
        match self.counts.lock() {
            Ok(counts) => counts,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A held slot; dropping it frees the slot.
struct Permit {
    slots: Arc<Slots>,
    key: u64,
}

impl Slots {
    fn new(max: u32) -> Slots {
        Slots {
            max,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    fn shard(&self, key: u64) -> &Shard {
        &self.shards[(key % SHARDS as u64) as usize]
    }

    fn try_acquire(self: &Arc<Self>, key: u64) -> Option<Permit> {
        let mut counts = self.shard(key).counts();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Permit {
            slots: self.clone(),
            key,
        })
    }

    async fn acquire(self: &Arc<Self>, key: u64, timeout: Duration) -> Option<Permit> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let freed = self.shard(key).freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(permit) = self.try_acquire(key) {
                return Some(permit);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_acquire(key);
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let shard = self.slots.shard(self.key);
        let mut counts = shard.counts();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
        drop(counts);
        shard.freed.notify_waiters();
    }
}

#[async_trait]
impl Plugin for Concurrency {
    fn phases(&self) -> Phases {
        Phases::of(&[Phase::Request])
    }

    async fn request(
        &self,
        req: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<Flow, PluginError> {
        let key = self.key.hash(&self.hasher, req, ctx);
        let permit = match self.queue_timeout {
            None => self.slots.try_acquire(key),
            Some(timeout) => self.slots.acquire(key, timeout).await,
        };
        match permit {
            Some(permit) => {
                // Held in the request's state until the request ends.
                ctx.set_state(permit);
                Ok(Flow::Continue)
            }
            None => Ok(Flow::Respond(Response::refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests in flight",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::testing::{build_error, built};

    fn plugin(settings: &str) -> Arc<dyn Plugin> {
        built(build, settings)
    }

    async fn admitted(plugin: &dyn Plugin, ctx: &mut PluginCtx) -> bool {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        matches!(plugin.request(&mut req, ctx).await.unwrap(), Flow::Continue)
    }

    #[tokio::test]
    async fn caps_in_flight_requests_and_frees_slots_when_they_end() {
        let plugin = plugin("max = 2\nkey = 'all'");
        let (mut first, mut second, mut third) = (
            PluginCtx::default(),
            PluginCtx::default(),
            PluginCtx::default(),
        );
        assert!(admitted(plugin.as_ref(), &mut first).await);
        assert!(admitted(plugin.as_ref(), &mut second).await);
        assert!(!admitted(plugin.as_ref(), &mut third).await);
        drop(first);
        assert!(admitted(plugin.as_ref(), &mut third).await);
    }

    #[tokio::test(start_paused = true)]
    async fn queued_requests_get_a_freed_slot_or_time_out() {
        let plugin = plugin("max = 1\nkey = 'all'\nqueue_timeout = '5s'");
        let mut holder = PluginCtx::default();
        assert!(admitted(plugin.as_ref(), &mut holder).await);
        let waiting = {
            let plugin = plugin.clone();
            tokio::spawn(async move { admitted(plugin.as_ref(), &mut PluginCtx::default()).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(holder);
        assert!(waiting.await.unwrap(), "got the freed slot");

        let mut holder = PluginCtx::default();
        assert!(admitted(plugin.as_ref(), &mut holder).await);
        let start = tokio::time::Instant::now();
        assert!(!admitted(plugin.as_ref(), &mut PluginCtx::default()).await);
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[test]
    fn rejects_bad_settings() {
        let err = |s: &str| build_error(build, s);
        assert_eq!(err("max = 0").key(), Some("max"));
        assert_eq!(err("max = 1\nkey = '$nope'").key(), Some("key"));
    }
}
