//! The live statistics of every location and upstream: what the admin API streams each second.
//!
//! Each series (one per location name, one per upstream name) has a handle that the compiled
//! configuration holds, so that a finished request counts itself with no name lookup: it reads
//! the clock (or takes the caller's reading) and adds to the atomics of the current second
//! ([`super::window`]). The ring of a
//! series (64 seconds, about 94 KB) is allocated by its first request, so configured names that
//! get no traffic cost a few dozen bytes.
//!
//! Seconds are unix seconds read from the monotonic clock, anchored to the wall clock when the
//! process first records: a step of the wall clock (NTP, an operator) neither repeats nor skips
//! a second of the windows, at the price of the frames' `time` keeping the old offset.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use utoipa::ToSchema;

use super::window::{MINUTE, Ring, Totals};

/// The live statistics of the process: every location's and upstream's series.
pub struct LiveStats {
    clock: Clock,
    locations: Table,
    upstreams: Table,
}

/// The process-wide live statistics.
///
/// A process global for the same reason as [`crate::observe::metrics::metrics`]: a name's
/// series outlives the configurations that keep the name, so its windows continue across
/// reloads.
pub fn stats() -> &'static LiveStats {
    static STATS: OnceLock<LiveStats> = OnceLock::new();
    STATS.get_or_init(LiveStats::new)
}

/// The series of one location or upstream, to count its requests with [`LiveStats::record`].
/// Obtained once per name when a configuration is compiled.
#[derive(Clone)]
pub struct SeriesHandle(Arc<Series>);

impl SeriesHandle {
    /// The location's or upstream's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl std::fmt::Debug for SeriesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SeriesHandle").field(&self.0.name).finish()
    }
}

struct Series {
    name: Arc<str>,
    /// The second the series was created: the last minute of a younger series is shorter.
    created: u64,
    /// Allocated by the first request.
    ring: OnceLock<Ring>,
}

/// What the stream sends each second.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsFrame {
    /// The last complete second, in unix seconds: `last_second` is this second, `last_minute`
    /// the 60 seconds ending with it.
    pub time: i64,
    /// Every location, by name.
    pub locations: Vec<SeriesStats>,
    /// Every upstream, by name.
    pub upstreams: Vec<SeriesStats>,
}

/// One location's or upstream's statistics.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SeriesStats {
    /// The location's or upstream's name.
    pub name: String,
    /// The last complete second.
    pub last_second: WindowStats,
    /// The last 60 complete seconds (fewer for a series younger than a minute).
    pub last_minute: WindowStats,
}

/// The requests of a window.
///
/// For a location: every request it answered, with the time from the request header to the end
/// of the response. For an upstream: every attempt to get an answer from one of its backends
/// (a retried request counts each try), with the time from choosing the backend to its response
/// header; an attempt that got no answer (connection refused, timeout, broken connection) counts
/// as a 5xx, with the time until it failed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WindowStats {
    /// Requests finished in the window.
    pub requests: u64,
    /// `requests` divided by the window's length in seconds.
    pub requests_per_second: f64,
    /// Median latency in milliseconds (within 3.1 %); none without requests.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency in milliseconds.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// The share of requests answered with a 4xx status (0 to 1; 0 without requests).
    pub ratio_4xx: f64,
    /// The share of requests answered with a 5xx status.
    pub ratio_5xx: f64,
}

impl WindowStats {
    fn of(totals: &Totals, seconds: u64) -> WindowStats {
        let requests = totals.requests();
        let ratio = |count: u64| {
            if requests == 0 {
                0.0
            } else {
                count.min(requests) as f64 / requests as f64
            }
        };
        WindowStats {
            requests,
            requests_per_second: requests as f64 / seconds.max(1) as f64,
            p50_ms: totals.percentile_ms(0.50),
            p95_ms: totals.percentile_ms(0.95),
            p99_ms: totals.percentile_ms(0.99),
            ratio_4xx: ratio(totals.client_errors()),
            ratio_5xx: ratio(totals.server_errors()),
        }
    }
}

impl LiveStats {
    fn new() -> LiveStats {
        LiveStats {
            clock: Clock::new(),
            locations: Table::default(),
            upstreams: Table::default(),
        }
    }

    /// Counts one finished request of `series`: atomics only, no lock, no allocation (except
    /// the series' ring, by its first request). Reads the clock, which costs more than the
    /// counting (about 60 ns on a KVM guest): a caller that has just read it should use
    /// [`LiveStats::record_at`].
    pub fn record(&self, series: &SeriesHandle, status: u16, latency: Duration) {
        self.record_at(series, Instant::now(), status, latency);
    }

    /// [`LiveStats::record`] for a request that ended at `ended` (a clock reading the caller
    /// made anyway, e.g. to measure `latency`): the request path's form, with no clock read.
    pub fn record_at(&self, series: &SeriesHandle, ended: Instant, status: u16, latency: Duration) {
        self.record_in(series, self.clock.second_at(ended), status, latency);
    }

    fn record_in(&self, series: &SeriesHandle, second: u64, status: u16, latency: Duration) {
        series
            .0
            .ring
            .get_or_init(Ring::new)
            .record(second, status, latency);
    }

    /// The series of location `name`: that of the name's earlier configurations, so its windows
    /// continue, or a new one for a name not seen since the last [`LiveStats::retain`].
    pub fn location(&self, name: &str) -> SeriesHandle {
        self.locations.series(name, self.clock.second())
    }

    /// The series of upstream `name`.
    pub fn upstream(&self, name: &str) -> SeriesHandle {
        self.upstreams.series(name, self.clock.second())
    }

    /// Every series with its last complete second and last minute.
    pub fn frame(&self) -> StatsFrame {
        self.frame_at(self.clock.second())
    }

    fn frame_at(&self, now: u64) -> StatsFrame {
        StatsFrame {
            time: i64::try_from(now.saturating_sub(1)).unwrap_or(i64::MAX),
            locations: self.locations.stats(now),
            upstreams: self.upstreams.stats(now),
        }
    }

    /// Forgets the series of locations and upstreams not in `locations` and `upstreams` (the
    /// names the running configuration has). Handles still held by requests of an older
    /// configuration keep working, unreported; a name added again starts afresh.
    pub fn retain(&self, locations: &HashSet<String>, upstreams: &HashSet<String>) {
        self.locations.retain(locations);
        self.upstreams.retain(upstreams);
    }
}

/// The series of one kind, by name.
#[derive(Default)]
struct Table(Mutex<BTreeMap<Arc<str>, SeriesHandle>>);

impl Table {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, SeriesHandle>> {
        // The map is consistent whatever a panicking holder was doing: keep using it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn series(&self, name: &str, now: u64) -> SeriesHandle {
        let mut table = self.lock();
        if let Some(series) = table.get(name) {
            return series.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let series = SeriesHandle(Arc::new(Series {
            name: name.clone(),
            created: now,
            ring: OnceLock::new(),
        }));
        table.insert(name, series.clone());
        series
    }

    fn stats(&self, now: u64) -> Vec<SeriesStats> {
        let series: Vec<SeriesHandle> = self.lock().values().cloned().collect();
        series.iter().map(|series| series.stats(now)).collect()
    }

    fn retain(&self, names: &HashSet<String>) {
        self.lock().retain(|name, _| names.contains(name.as_ref()));
    }
}

impl SeriesHandle {
    /// The statistics of the second before `now` and of the minute ending with it.
    fn stats(&self, now: u64) -> SeriesStats {
        let mut last_second = Totals::default();
        let mut last_minute = Totals::default();
        if let Some(ring) = self.0.ring.get() {
            let last = now.saturating_sub(1);
            ring.add_second(last, &mut last_second);
            for second in now.saturating_sub(MINUTE)..now {
                ring.add_second(second, &mut last_minute);
            }
        }
        // The complete seconds since the series was created, the first one (partly) included.
        let minute_seconds = now.saturating_sub(self.0.created).clamp(1, MINUTE);
        SeriesStats {
            name: self.0.name.to_string(),
            last_second: WindowStats::of(&last_second, 1),
            last_minute: WindowStats::of(&last_minute, minute_seconds),
        }
    }
}

/// Unix seconds from the monotonic clock, anchored to the wall clock once.
struct Clock {
    base: Instant,
    base_unix_nanos: u64,
}

impl Clock {
    fn new() -> Clock {
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            base: Instant::now(),
            base_unix_nanos: u64::try_from(unix.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn second(&self) -> u64 {
        self.second_at(Instant::now())
    }

    fn second_at(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.base);
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        self.base_unix_nanos.saturating_add(nanos) / 1_000_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: Option<f64>, expected: f64) -> bool {
        got.is_some_and(|got| (got - expected).abs() / expected <= 1.0 / 32.0)
    }

    #[test]
    fn a_frame_reports_the_last_complete_second_and_the_minute_before() {
        let stats = LiveStats::new();
        let now = stats.clock.second();
        let api = stats.location("api");
        let idle = stats.location("idle");
        let pool = stats.upstream("pool");
        assert_eq!(api.name(), "api");
        // 70 seconds of history, 10 requests each: one 5xx and two 4xx; latencies 1..=10 ms.
        // The minute before `now + 70` is seconds now+10 ..= now+69.
        for second in now..now + 70 {
            for i in 1..=10u64 {
                let status = match i {
                    1 => 503,
                    2 | 3 => 404,
                    _ => 200,
                };
                stats.record_in(&api, second, status, Duration::from_millis(i));
            }
        }
        // The second being written does not show yet.
        stats.record_in(&api, now + 70, 500, Duration::from_secs(5));
        stats.record_in(&pool, now + 69, 200, Duration::from_millis(40));

        let frame = stats.frame_at(now + 70);
        assert_eq!(frame.time, (now + 69) as i64);
        let names: Vec<_> = frame.locations.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "idle"]);
        let api_stats = &frame.locations[0];
        let second = &api_stats.last_second;
        assert_eq!(second.requests, 10);
        assert_eq!(second.requests_per_second, 10.0);
        assert_eq!((second.ratio_4xx, second.ratio_5xx), (0.2, 0.1));
        assert!(close(second.p50_ms, 5.0), "{second:?}");
        assert!(close(second.p95_ms, 10.0) && close(second.p99_ms, 10.0));
        let minute = &api_stats.last_minute;
        assert_eq!(minute.requests, 600);
        assert_eq!(minute.requests_per_second, 10.0);
        assert_eq!((minute.ratio_4xx, minute.ratio_5xx), (0.2, 0.1));
        assert!(close(minute.p50_ms, 5.0) && close(minute.p99_ms, 10.0));

        let idle_stats = &frame.locations[1].last_minute;
        assert_eq!(idle_stats.requests, 0);
        assert_eq!((idle_stats.p50_ms, idle_stats.ratio_5xx), (None, 0.0));
        assert_eq!(frame.upstreams.len(), 1);
        assert_eq!(frame.upstreams[0].last_second.requests, 1);
        assert!(close(frame.upstreams[0].last_minute.p99_ms, 40.0));

        // A frame a minute and more after the traffic stopped reports nothing.
        let later = stats.frame_at(now + 71 + 60);
        assert_eq!(later.locations[0].last_minute.requests, 0);
        drop(idle);
    }

    #[test]
    fn the_minute_of_a_young_series_is_as_long_as_the_series() {
        let stats = LiveStats::new();
        let now = stats.clock.second();
        let api = stats.location("api");
        for second in now..now + 10 {
            for _ in 0..6 {
                stats.record_in(&api, second, 200, Duration::from_millis(1));
            }
        }
        let minute = &stats.frame_at(now + 10).locations[0].last_minute;
        assert_eq!(minute.requests, 60);
        assert_eq!(minute.requests_per_second, 6.0);
        // Created this very second: no complete second yet, and no division by zero.
        let frame = stats.frame_at(now);
        assert_eq!(frame.locations[0].last_minute.requests_per_second, 0.0);
    }

    #[test]
    fn retain_forgets_removed_names_and_keeps_the_others_counting() {
        let stats = LiveStats::new();
        let now = stats.clock.second();
        let (gone, kept) = (stats.location("gone"), stats.location("kept"));
        let pool = stats.upstream("old-pool");
        for series in [&gone, &kept, &pool] {
            stats.record_in(series, now, 200, Duration::from_millis(1));
        }
        stats.retain(&HashSet::from(["kept".to_string()]), &HashSet::new());
        // A request of the old configuration still counts, unreported.
        stats.record_in(&gone, now, 200, Duration::from_millis(1));
        stats.record_in(&kept, now, 200, Duration::from_millis(1));
        let frame = stats.frame_at(now + 1);
        assert_eq!(frame.locations.len(), 1);
        assert_eq!(frame.locations[0].name, "kept");
        assert_eq!(frame.locations[0].last_second.requests, 2);
        assert!(frame.upstreams.is_empty());
        // The same handle for a kept name; a fresh series for a name added again.
        stats.record_in(&stats.location("kept"), now, 200, Duration::ZERO);
        stats.record_in(&stats.location("gone"), now, 200, Duration::ZERO);
        let frame = stats.frame_at(now + 1);
        let requests: Vec<_> = frame
            .locations
            .iter()
            .map(|s| (s.name.as_str(), s.last_second.requests))
            .collect();
        assert_eq!(requests, [("gone", 1), ("kept", 3)]);
    }

    #[test]
    fn the_process_clock_counts_real_seconds() {
        let stats = stats();
        let api = stats.location("clock-test");
        stats.record(&api, 200, Duration::from_millis(2));
        stats.record_at(&api, Instant::now(), 500, Duration::from_millis(2));
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let frame = stats.frame();
        assert!(
            (frame.time - (unix - 1)).abs() <= 1,
            "{} vs {unix}",
            frame.time
        );
        // Both requests are in the current second or the one before (if it just turned).
        let minute = api.stats(frame.time as u64 + 2).last_minute;
        assert_eq!((minute.requests, minute.ratio_5xx), (2, 0.5));
        let json = serde_json::to_value(&frame).unwrap();
        assert!(
            json["locations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "clock-test")
        );
    }
}
