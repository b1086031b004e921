//! The live views' request path: what `LiveStats::record_at` costs a request (alone, and with
//! two threads counting into the same series or into their own; the proxy passes the clock
//! reading it makes anyway), what `LiveStats::record` adds by reading the clock itself, what a
//! proxied request pays for its location and upstream together, what `LogTail::publish` costs
//! without and with a follower, and what a once-a-second `LiveStats::frame` costs.
//!
//! `cargo bench --bench live`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pingap::observe::live::{LogRecord, SeriesHandle, log_tail, stats};

/// Statuses and latencies cycled through, so that several buckets and counters are touched.
const REQUESTS: [(u16, Duration); 8] = [
    (200, Duration::from_micros(850)),
    (200, Duration::from_millis(3)),
    (404, Duration::from_micros(120)),
    (200, Duration::from_millis(12)),
    (502, Duration::from_secs(1)),
    (200, Duration::from_micros(950)),
    (201, Duration::from_millis(40)),
    (200, Duration::from_millis(2)),
];

/// The end of request `i`: a clock reading taken every 1024 requests, so that seconds turn as
/// they do under load without the bench measuring the clock.
fn ended(i: u64, last: &mut Instant) -> Instant {
    if i.is_multiple_of(1024) {
        *last = Instant::now();
    }
    *last
}

/// Runs `iters` records on each of `series.len()` threads at once; the time is that of the
/// slowest thread, so the figure is the cost of one call while the others count too.
fn contended(series: &[SeriesHandle], iters: u64) -> Duration {
    let stats = stats();
    std::thread::scope(|scope| {
        let threads: Vec<_> = series
            .iter()
            .map(|series| {
                scope.spawn(move || {
                    let start = Instant::now();
                    let mut last = start;
                    for i in 0..iters {
                        let (status, latency) = REQUESTS[i as usize % REQUESTS.len()];
                        stats.record_at(series, ended(i, &mut last), status, latency);
                    }
                    start.elapsed()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .max()
            .unwrap()
    })
}

fn record(c: &mut Criterion) {
    let stats = stats();
    let api = stats.location("bench-api");
    let pool = stats.upstream("bench-pool");
    let other = stats.location("bench-other");
    let mut group = c.benchmark_group("live record");
    group.bench_function("record_at, 1 thread", |b| {
        let (mut i, mut last) = (0, Instant::now());
        b.iter(|| {
            let (status, latency) = REQUESTS[i as usize % REQUESTS.len()];
            stats.record_at(black_box(&api), ended(i, &mut last), status, latency);
            i += 1;
        })
    });
    group.bench_function("record (reads the clock), 1 thread", |b| {
        let mut i = 0;
        b.iter(|| {
            let (status, latency) = REQUESTS[i % REQUESTS.len()];
            i += 1;
            stats.record(black_box(&api), status, latency);
        })
    });
    group.bench_function("the clock alone: Instant::now", |b| b.iter(Instant::now));
    group.bench_function("record_at, 2 threads, one series", |b| {
        b.iter_custom(|iters| contended(&[api.clone(), api.clone()], iters))
    });
    group.bench_function("record_at, 2 threads, own series", |b| {
        b.iter_custom(|iters| contended(&[api.clone(), other.clone()], iters))
    });
    group.bench_function("record_at, proxied request: location and upstream", |b| {
        let (mut i, mut last) = (0, Instant::now());
        b.iter(|| {
            let (status, latency) = REQUESTS[i as usize % REQUESTS.len()];
            let ended = ended(i, &mut last);
            stats.record_at(black_box(&api), ended, status, latency);
            stats.record_at(black_box(&pool), ended, status, latency / 2);
            i += 1;
        })
    });
    group.finish();

    // A frame of 1000 series, 100 of them with a full minute of traffic.
    let busy: Vec<_> = (0..1000)
        .map(|i| stats.location(&format!("bench-frame-{i}")))
        .collect();
    for series in busy.iter().take(100) {
        for (status, latency) in REQUESTS {
            stats.record(series, status, latency);
        }
    }
    c.bench_function("live frame: 1000 series, 100 with traffic", |b| {
        b.iter(|| black_box(stats.frame()))
    });
}

fn log_record(status: u16) -> LogRecord {
    LogRecord {
        time: "2025-06-01T12:00:00.123Z".to_string(),
        server: "main".to_string(),
        location: Some("api".to_string()),
        upstream: Some("api-pool".to_string()),
        backend: Some("10.0.0.7:8080".to_string()),
        method: "GET".to_string(),
        host: Some("api.example.com".to_string()),
        path: "/api/v1/users/42".to_string(),
        status,
        latency_ms: 3.25,
        client: Some("203.0.113.9".to_string()),
        bytes_sent: 1234,
        request_id: Some("01J0Z8Y6W5V4T3S2R1Q0P9N8M7".to_string()),
    }
}

fn publish(c: &mut Criterion) {
    let tail = log_tail();
    let mut group = c.benchmark_group("log tail publish");
    group.bench_function("no follower", |b| {
        b.iter(|| tail.publish(|| log_record(black_box(200))))
    });
    // A follower that never reads: the channel overwrites its oldest record each time, the
    // worst case for the publisher.
    let follower = tail.subscribe();
    group.bench_function("one follower", |b| {
        b.iter(|| tail.publish(|| log_record(black_box(200))))
    });
    drop(follower);
    group.finish();
}

criterion_group!(benches, record, publish);
criterion_main!(benches);
