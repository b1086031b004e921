//! The per-second windows of one series: a ring of slots indexed by the unix second, each with
//! atomic counters and a latency histogram, written by finished requests and read back, a
//! second or a minute at a time, by [`super::LiveStats::frame`].
//!
//! # Latency buckets
//!
//! Log-linear over microseconds: 16 linear buckets 4 µs wide below 64 µs, then 16 buckets per
//! power of two up to 2²⁶ µs (67.1 s), then one bucket for everything slower. A bucket is at
//! most 1/16 as wide as its lower bound, so its midpoint — the value a percentile reports — is
//! within 1/32 (3.1 %) of any latency in it from 64 µs up, and within 2 µs below.
//!
//! # Claiming a second's slot
//!
//! A slot's `tag` holds the second its counts belong to, and a state: *active*, *prepared*
//! (zeroed ahead of time, not yet written) or *resetting* (being zeroed). A request of second
//! `s` finds its slot tagged `s` and only adds to atomics (the hot path: one load, one or two
//! `fetch_add`s). The slot of a new second is zeroed in one of two ways:
//!
//! * **prepared in advance** (the normal case under traffic): the first request of second `s`
//!   also zeroes the slot of `s + 1` and tags it *prepared*, while no request can be writing to
//!   it (it held second `s - 63`, outside every window read). The first request of `s + 1`
//!   flips it to *active* with a compare-exchange, and the winner prepares `s + 2`. Nothing is
//!   lost.
//! * **claimed on arrival** (the first request after a second without traffic, or the very
//!   first): the request compare-exchanges the old tag to `s` + *resetting*, zeroes the slot,
//!   then publishes `s` as *active* with a release store. Requests of the same second that
//!   arrive meanwhile add to the slot anyway, and the zeroing may erase their counts.
//!
//! Worst case: only in the second case, the requests of the same series that finish during the
//! zeroing (about 350 stores, well under a microsecond, unless the claiming thread is preempted
//! mid-way) may go uncounted — and they arrive right after a second in which the series had no
//! traffic at all, so that is rarely more than a request or two. A request whose second is
//! older than its slot's (a thread that stalled for more than a minute) is dropped. No request
//! is ever counted in the wrong second.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Slots per ring: the second being written, the 60 complete seconds of the last minute, and
/// room for the one prepared in advance. A power of two, so that a second's slot is a mask.
const SLOTS: usize = 64;
/// The seconds of the last minute.
pub(super) const MINUTE: u64 = 60;

/// Buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Below 2^`FIRST_EXP` µs (64 µs) the buckets are linear, `LINEAR_WIDTH_US` wide.
const FIRST_EXP: u32 = 6;
const LINEAR_SHIFT: u32 = FIRST_EXP - SUB_BITS;
/// The last power of two with buckets of its own: from 2^(`LAST_EXP` + 1) µs (67.1 s) on,
/// latencies share the overflow bucket.
const LAST_EXP: u32 = 25;
/// Latency buckets: the linear ones, 16 per power of two, and the overflow bucket.
pub(super) const BUCKETS: usize = SUB + (LAST_EXP - FIRST_EXP + 1) as usize * SUB + 1;

/// The bucket of a latency of `micros` microseconds.
fn bucket(micros: u64) -> usize {
    if micros < 1 << FIRST_EXP {
        return (micros >> LINEAR_SHIFT) as usize;
    }
    let exp = 63 - micros.leading_zeros();
    if exp > LAST_EXP {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exp - SUB_BITS)) as usize & (SUB - 1);
    SUB + (exp - FIRST_EXP) as usize * SUB + sub
}

/// The value bucket `index` reports, in microseconds: its midpoint, or for the overflow bucket
/// its lower bound (the latency was at least that).
fn bucket_value(index: usize) -> f64 {
    if index < SUB {
        let width = 1u64 << LINEAR_SHIFT;
        return (index as u64 * width) as f64 + width as f64 / 2.0;
    }
    if index >= BUCKETS - 1 {
        return (1u64 << (LAST_EXP + 1)) as f64;
    }
    let i = index - SUB;
    let exp = FIRST_EXP + (i / SUB) as u32;
    let width = 1u64 << (exp - SUB_BITS);
    ((SUB + i % SUB) as u64 * width) as f64 + width as f64 / 2.0
}

/// The tag of a slot: the second (low bits) and the state (the two high bits).
const RESETTING: u64 = 1 << 63;
const PREPARED: u64 = 1 << 62;
const SECOND: u64 = PREPARED - 1;

/// The tag on its own cache line, so that counting does not evict it from the other cores.
#[repr(align(64))]
struct Tag(AtomicU64);

/// The counts of one second.
#[repr(align(64))]
struct Slot {
    tag: Tag,
    client_errors: AtomicU32,
    server_errors: AtomicU32,
    /// Requests by latency bucket; their sum is the second's requests.
    latency: [AtomicU32; BUCKETS],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            tag: Tag(AtomicU64::new(0)),
            client_errors: AtomicU32::new(0),
            server_errors: AtomicU32::new(0),
            latency: [const { AtomicU32::new(0) }; BUCKETS],
        }
    }

    fn zero(&self) {
        self.client_errors.store(0, Ordering::Relaxed);
        self.server_errors.store(0, Ordering::Relaxed);
        for count in &self.latency {
            count.store(0, Ordering::Relaxed);
        }
    }
}

/// The slots of one series.
pub(super) struct Ring {
    slots: Box<[Slot]>,
}

impl Ring {
    pub(super) fn new() -> Ring {
        Ring {
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        }
    }

    fn slot_of(&self, second: u64) -> &Slot {
        &self.slots[(second as usize) & (SLOTS - 1)]
    }

    /// Counts a request of second `second`.
    pub(super) fn record(&self, second: u64, status: u16, latency: Duration) {
        let slot = self.slot_of(second);
        if slot.tag.0.load(Ordering::Acquire) != second && !self.claim(slot, second) {
            return;
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        slot.latency[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => slot.client_errors.fetch_add(1, Ordering::Relaxed),
            500..=599 => slot.server_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Makes `slot` count second `second` (see the module docs); false when the request is to
    /// be dropped because the slot already counts a later second.
    #[cold]
    #[inline(never)]
    fn claim(&self, slot: &Slot, second: u64) -> bool {
        let mut tag = slot.tag.0.load(Ordering::Acquire);
        loop {
            let tagged = tag & SECOND;
            if tagged > second {
                return false;
            }
            if tagged == second {
                if tag & PREPARED != 0
                    && slot
                        .tag
                        .0
                        .compare_exchange(tag, second, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.prepare(second + 1);
                }
                // Active, prepared, or being zeroed for this second (the count may be erased).
                return true;
            }
            if tag & RESETTING != 0 {
                // Being zeroed for an earlier second by a request that stalled: leave it be.
                return false;
            }
            match slot.tag.0.compare_exchange(
                tag,
                second | RESETTING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    slot.zero();
                    slot.tag.0.store(second, Ordering::Release);
                    self.prepare(second + 1);
                    return true;
                }
                Err(actual) => tag = actual,
            }
        }
    }

    /// Zeroes the slot of `second` ahead of time, unless it is already (being) made ready.
    fn prepare(&self, second: u64) {
        let slot = self.slot_of(second);
        let tag = slot.tag.0.load(Ordering::Acquire);
        if tag & SECOND >= second || tag & RESETTING != 0 {
            return;
        }
        if slot
            .tag
            .0
            .compare_exchange(
                tag,
                second | RESETTING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            slot.zero();
            slot.tag.0.store(second | PREPARED, Ordering::Release);
        }
    }

    /// Adds the counts of second `second` to `totals`, if the ring still holds it.
    pub(super) fn add_second(&self, second: u64, totals: &mut Totals) {
        let slot = self.slot_of(second);
        let tag = slot.tag.0.load(Ordering::Acquire);
        if tag & SECOND != second || tag & RESETTING != 0 {
            return;
        }
        for (total, count) in totals.latency.iter_mut().zip(&slot.latency) {
            *total += u64::from(count.load(Ordering::Relaxed));
        }
        totals.client_errors += u64::from(slot.client_errors.load(Ordering::Relaxed));
        totals.server_errors += u64::from(slot.server_errors.load(Ordering::Relaxed));
    }
}

/// Counts summed over some seconds.
pub(super) struct Totals {
    latency: [u64; BUCKETS],
    client_errors: u64,
    server_errors: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            latency: [0; BUCKETS],
            client_errors: 0,
            server_errors: 0,
        }
    }
}

impl Totals {
    /// Requests counted.
    pub(super) fn requests(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// Requests answered with a 4xx status.
    pub(super) fn client_errors(&self) -> u64 {
        self.client_errors
    }

    /// Requests answered with a 5xx status.
    pub(super) fn server_errors(&self) -> u64 {
        self.server_errors
    }

    /// The `quantile` (0 to 1) of the latencies in milliseconds: the value of the bucket of the
    /// ⌈quantile · n⌉-th fastest request; `None` without requests.
    pub(super) fn percentile_ms(&self, quantile: f64) -> Option<f64> {
        let requests = self.requests();
        if requests == 0 {
            return None;
        }
        let rank = ((quantile * requests as f64).ceil() as u64).clamp(1, requests);
        let mut seen = 0;
        for (index, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_value(index) / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn buckets_cover_every_latency_in_order_and_within_three_percent() {
        assert_eq!(BUCKETS, 337);
        let mut previous = 0;
        for micros in (0..200_000).chain((200_000..80_000_000).step_by(997)) {
            let index = bucket(micros);
            assert!(index >= previous, "{micros} µs went back to bucket {index}");
            previous = index;
            let value = bucket_value(index);
            let micros = micros as f64;
            if index == BUCKETS - 1 {
                assert!(micros >= 67_108_864.0 && value == 67_108_864.0, "{micros}");
            } else if micros < 64.0 {
                assert!(
                    (value - micros).abs() <= 2.0,
                    "{micros} µs reported as {value}"
                );
            } else {
                let error = (value - micros).abs() / micros;
                assert!(error <= 1.0 / 32.0, "{micros} µs reported as {value}");
            }
        }
        assert_eq!(previous, BUCKETS - 1);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    fn second_totals(ring: &Ring, second: u64) -> Totals {
        let mut totals = Totals::default();
        ring.add_second(second, &mut totals);
        totals
    }

    #[test]
    fn a_slot_counts_its_second_only_and_is_zeroed_for_the_next_round() {
        let ring = Ring::new();
        let s = 1_700_000_000;
        ring.record(s, 200, Duration::from_millis(3));
        ring.record(s, 404, Duration::from_millis(3));
        ring.record(s, 503, Duration::from_millis(3));
        ring.record(s + 1, 200, Duration::from_millis(3));
        let first = second_totals(&ring, s);
        assert_eq!(
            (
                first.requests(),
                first.client_errors(),
                first.server_errors()
            ),
            (3, 1, 1)
        );
        assert_eq!(second_totals(&ring, s + 1).requests(), 1);
        assert_eq!(second_totals(&ring, s + 2).requests(), 0, "prepared, empty");
        assert_eq!(second_totals(&ring, s - 64).requests(), 0, "never written");

        // The same slot, a lap later: the old counts are gone, the old second unreadable.
        ring.record(s + 64, 500, Duration::from_secs(1));
        assert_eq!(second_totals(&ring, s).requests(), 0);
        let lap = second_totals(&ring, s + 64);
        assert_eq!((lap.requests(), lap.server_errors()), (1, 1));
        let p50 = lap.percentile_ms(0.5).unwrap();
        assert!((p50 - 1000.0).abs() <= 1000.0 / 32.0, "{p50}");

        // A straggler of a second whose slot has moved on is dropped, not counted in another.
        ring.record(s, 200, Duration::ZERO);
        assert_eq!(second_totals(&ring, s + 64).requests(), 1);
        assert_eq!(second_totals(&ring, s).requests(), 0);
    }

    #[test]
    fn percentiles_of_known_distributions_are_within_the_bucket_error() {
        let ring = Ring::new();
        let s = 10_000;
        // 1, 2, ..., 1000 ms: the p-th percentile is p * 10 ms.
        for ms in 1..=1000 {
            ring.record(s, 200, Duration::from_millis(ms));
        }
        let totals = second_totals(&ring, s);
        for (quantile, expected) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = totals.percentile_ms(quantile).unwrap();
            assert!(
                (got - expected).abs() / expected <= 1.0 / 32.0,
                "p{quantile}: {got} ms, expected {expected}"
            );
        }

        // Two modes: 90 % fast (0.2 ms), 10 % slow (30 s).
        let ring = Ring::new();
        for i in 0..1000 {
            let latency = if i % 10 == 0 {
                Duration::from_secs(30)
            } else {
                Duration::from_micros(200)
            };
            ring.record(s, 200, latency);
        }
        let totals = second_totals(&ring, s);
        let p50 = totals.percentile_ms(0.5).unwrap();
        let p95 = totals.percentile_ms(0.95).unwrap();
        assert!((p50 - 0.2).abs() / 0.2 <= 1.0 / 32.0, "{p50}");
        assert!((p95 - 30_000.0).abs() / 30_000.0 <= 1.0 / 32.0, "{p95}");
        assert_eq!(Totals::default().percentile_ms(0.5), None);
    }

    #[test]
    fn threads_crossing_seconds_together_lose_no_count_of_a_busy_series() {
        // Four threads write seconds 1..=200 in lockstep, 500 requests each per second; from
        // the second on, each second's slot was prepared during the one before, so nothing may
        // be lost, and no count may land in another second.
        let ring = Arc::new(Ring::new());
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (ring, barrier) = (ring.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for second in 1..=200u64 {
                        barrier.wait();
                        for i in 0..500u64 {
                            let status = if (i + t) % 10 == 0 { 503 } else { 200 };
                            ring.record(second, status, Duration::from_micros(100 + i));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // The ring holds the last 63 of them, three laps on (the slot of 137 now holds the
        // prepared 201).
        for second in 138..=200 {
            let totals = second_totals(&ring, second);
            assert_eq!(totals.requests(), 2000, "second {second}");
            assert_eq!(totals.server_errors(), 200, "second {second}");
        }
    }

    #[test]
    fn threads_racing_to_claim_an_idle_series_second_count_it_once() {
        // Every round starts after an idle gap, so the slot is claimed on arrival by racing
        // threads: each round's second must hold its own counts (at most the few made during
        // the zeroing lost), never those of the lap before.
        let ring = Arc::new(Ring::new());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let rounds = 200u64;
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (ring, barrier) = (ring.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for round in 0..rounds {
                        barrier.wait();
                        for _ in 0..1000 {
                            ring.record(round * 64, 200, Duration::from_millis(1));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let last = second_totals(&ring, (rounds - 1) * 64).requests();
        assert!((1000..=2000).contains(&last), "{last}");
    }
}
