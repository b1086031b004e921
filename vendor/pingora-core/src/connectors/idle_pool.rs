// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! pingap patch: the idle streams a [`super::TransportConnector`] keeps for reuse.
//!
//! The streams are held directly, grouped by their peer's reuse hash, most recently released
//! last; a reuse takes the most recent one. Nothing runs per idle stream: one sweeper task per
//! pool wakes every [`SWEEP_PERIOD`] and drops the streams whose idle timeout has passed or
//! whose server closed them (or sent data). A reuse also checks the expiry, and the connector
//! checks that the stream is still open before it hands it out, as before.
//!
//! The pool holds about `capacity` streams (concurrent releases may pass it by one each): when
//! it is full, the stream idle longest gives way, taken from the releasing key's shard if that
//! holds any, otherwise from the other shards. Streams are closed outside the shard locks.
//!
//! A pool may keep each worker thread's streams apart ([`IdlePool::new`]'s `per_thread`): a
//! thread then reuses only the streams it released, as an nginx worker does. That is for
//! runtimes without work stealing, where a stream's readiness is reported by the scheduler of
//! the thread that opened it: a request on another thread would wait for that thread to poll
//! its I/O driver, and each of its wakeups would cross threads.

use super::test_reusable_stream;
use crate::protocols::Stream;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the sweeper drops expired and closed idle streams.
pub(crate) const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Peers (or, when the pool is kept per thread, threads) are spread over this many locks.
const SHARDS: usize = 16;

/// Whose idle streams to a peer are meant: every thread's (`thread` 0), or one thread's.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PoolKey {
    peer: u64,
    thread: u32,
}

impl PoolKey {
    fn shard(self) -> usize {
        let spread = if self.thread == 0 {
            self.peer
        } else {
            u64::from(self.thread)
        };
        (spread % SHARDS as u64) as usize
    }
}

/// A number for the calling thread, unique in the process and never 0.
pub(crate) fn thread_number() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static NUMBER: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| *number)
}

struct IdleStream {
    stream: Stream,
    since: Instant,
    expires: Option<Instant>,
}

impl IdleStream {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|expires| expires <= now)
    }
}

/// The idle streams of the keys that fall in one shard. A key's deque is kept when it empties
/// (so a peer whose one connection comes and goes does not allocate each time) and pruned by
/// the sweeper.
type Shard = HashMap<PoolKey, VecDeque<IdleStream>>;

pub(crate) struct IdlePool {
    capacity: usize,
    per_thread: bool,
    idle: AtomicUsize,
    shards: [Mutex<Shard>; SHARDS],
    sweeping: AtomicBool,
    /// Streams found with data from their server while idle (shared with the connector).
    unexpected_data: Arc<AtomicU64>,
}

impl IdlePool {
    /// A pool of about `capacity` streams; with `per_thread`, a thread reuses only the streams
    /// it released.
    pub(crate) fn new(capacity: usize, per_thread: bool, unexpected_data: Arc<AtomicU64>) -> Self {
        IdlePool {
            capacity,
            per_thread,
            idle: AtomicUsize::new(0),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            sweeping: AtomicBool::new(false),
            unexpected_data,
        }
    }

    /// The key under which the calling thread releases and reuses streams to `peer`.
    fn key(&self, peer: u64) -> PoolKey {
        let thread = if self.per_thread { thread_number() } else { 0 };
        PoolKey { peer, thread }
    }

    fn shard(&self, key: PoolKey) -> &Mutex<Shard> {
        &self.shards[key.shard()]
    }

    /// Keeps `stream` for a later [`Self::take`] for the same `peer` (on the same thread when
    /// the pool is kept per thread), until `idle_timeout`. Returns how long a stream dropped to
    /// make room had been idle.
    pub(crate) fn put(
        self: &Arc<Self>,
        peer: u64,
        stream: Stream,
        idle_timeout: Option<Duration>,
    ) -> Option<Duration> {
        if self.capacity == 0 {
            return None;
        }
        self.start_sweeper();
        let key = self.key(peer);
        let now = Instant::now();
        let evicted = if self.idle.load(Ordering::Relaxed) >= self.capacity {
            self.evict_oldest(key)
        } else {
            None
        };
        let idle = IdleStream {
            stream,
            since: now,
            expires: idle_timeout.and_then(|timeout| now.checked_add(timeout)),
        };
        let mut shard = self.shard(key).lock();
        shard.entry(key).or_default().push_back(idle);
        self.idle.fetch_add(1, Ordering::Relaxed);
        drop(shard);
        evicted.map(|oldest| now.saturating_duration_since(oldest.since))
    }

    /// The most recently released stream for `peer` that has not expired.
    pub(crate) fn take(&self, peer: u64) -> Option<Stream> {
        let key = self.key(peer);
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut shard = self.shard(key).lock();
        let streams = shard.get_mut(&key)?;
        let mut found = None;
        while let Some(idle) = streams.pop_back() {
            self.idle.fetch_sub(1, Ordering::Relaxed);
            if idle.expired(now) {
                expired.push(idle);
            } else {
                found = Some(idle.stream);
                break;
            }
        }
        drop(shard);
        drop(expired);
        found
    }

    /// Removes the stream idle longest: from `key`'s shard if it holds one, otherwise from the
    /// other shards (locked one at a time).
    fn evict_oldest(&self, key: PoolKey) -> Option<IdleStream> {
        let mut evicted = pop_oldest(&mut self.shard(key).lock());
        if evicted.is_none() {
            let (_, shard) = self
                .shards
                .iter()
                .filter_map(|shard| oldest(&shard.lock()).map(|(since, _)| (since, shard)))
                .min_by_key(|(since, _)| *since)?;
            evicted = pop_oldest(&mut shard.lock());
        }
        if evicted.is_some() {
            self.idle.fetch_sub(1, Ordering::Relaxed);
        }
        evicted
    }

    /// Drops the idle streams that expired or that their server closed or wrote to.
    fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut dropped = Vec::new();
            let mut shard = shard.lock();
            shard.retain(|_, streams| {
                for mut idle in std::mem::take(streams) {
                    if !idle.expired(now)
                        && test_reusable_stream(&mut idle.stream, &self.unexpected_data)
                    {
                        streams.push_back(idle);
                    } else {
                        dropped.push(idle);
                    }
                }
                !streams.is_empty()
            });
            self.idle.fetch_sub(dropped.len(), Ordering::Relaxed);
            drop(shard);
            drop(dropped);
        }
    }

    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(self);
        pingora_runtime::current_handle().spawn(sweep_every(pool, SWEEP_PERIOD));
    }
}

/// When the stream of `shard` idle longest was released, and its key.
fn oldest(shard: &Shard) -> Option<(Instant, PoolKey)> {
    shard
        .iter()
        .filter_map(|(key, streams)| streams.front().map(|idle| (idle.since, *key)))
        .min_by_key(|(since, _)| *since)
}

/// Removes the stream of `shard` that has been idle longest.
fn pop_oldest(shard: &mut Shard) -> Option<IdleStream> {
    let (_, key) = oldest(shard)?;
    shard.get_mut(&key)?.pop_front()
}

/// The sweeper: ends when the pool is dropped. Should its task be dropped first (its runtime
/// shutting down), the next release starts another.
async fn sweep_every(pool: Weak<IdlePool>, period: Duration) {
    let _restart = RestartOnDrop(pool.clone());
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.sweep(Instant::now());
    }
}

struct RestartOnDrop(Weak<IdlePool>);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if let Some(pool) = self.0.upgrade() {
            pool.sweeping.store(false, Ordering::Relaxed);
        }
    }
}
