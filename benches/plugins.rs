//! Plugin hot paths: the rate limiter alone and under contention, and compression throughput.
//!
//! `cargo bench --bench plugins`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use pingap_plugins::{BuildEnv, Instance, PluginCtx, Registry, RequestHeader, ResponseHeader};

fn build(kind: &str, settings: &str) -> Arc<Instance> {
    let instance = Registry::builtin()
        .build(
            kind,
            kind,
            None,
            &settings.parse().unwrap(),
            &BuildEnv::default(),
        )
        .unwrap();
    Arc::new(instance)
}

fn request(user: &str) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.insert_header("x-user", user).unwrap();
    req
}

/// Runs `iters` rate-limit checks split over `threads` threads; `distinct` gives each thread
/// its own key.
fn contended(limit: &Arc<Instance>, iters: u64, threads: u64, distinct: bool) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let limit = limit.clone();
            scope.spawn(move || {
                let user = if distinct {
                    format!("user-{thread}")
                } else {
                    "shared".to_string()
                };
                let mut req = request(&user);
                for _ in 0..iters / threads {
                    let mut ctx = PluginCtx::default();
                    black_box(block_on(limit.plugin().request(&mut req, &mut ctx)).unwrap());
                }
            });
        }
    });
    start.elapsed()
}

fn rate_limit(c: &mut Criterion) {
    // A rate no benchmark reaches, so every check is admitted and counted.
    let limit = build(
        "rate_limit",
        "rate = 1e12\nburst = 1000000000\nkey = '$http_x_user'",
    );
    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("1 thread", |b| {
        b.iter_custom(|iters| contended(&limit, iters, 1, false))
    });
    group.bench_function("2 threads, one key", |b| {
        b.iter_custom(|iters| contended(&limit, iters, 2, false))
    });
    group.bench_function("2 threads, own keys", |b| {
        b.iter_custom(|iters| contended(&limit, iters, 2, true))
    });
    group.finish();
}

fn compression(c: &mut Criterion) {
    let text: Vec<u8> = (0..20_000)
        .flat_map(|i| {
            format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}}\n").into_bytes()
        })
        .take(1 << 20)
        .collect();
    let chunks: Vec<Bytes> = text.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    let mut group = c.benchmark_group("compression");
    group.throughput(Throughput::Bytes(text.len() as u64));
    for algorithm in ["gzip", "br", "zstd"] {
        let plugin = build("compression", &format!("algorithms = ['{algorithm}']"));
        group.bench_function(format!("{algorithm}, 1 MiB JSON in 64 KiB chunks"), |b| {
            b.iter(|| {
                let mut ctx = PluginCtx::default();
                let mut req = RequestHeader::build("GET", b"/", None).unwrap();
                req.insert_header("accept-encoding", algorithm).unwrap();
                block_on(plugin.plugin().request(&mut req, &mut ctx)).unwrap();
                let mut resp = ResponseHeader::build(200, None).unwrap();
                resp.insert_header("content-type", "application/json")
                    .unwrap();
                plugin
                    .plugin()
                    .response_headers(&mut resp, &mut ctx)
                    .unwrap();
                let mut out = 0;
                for (index, chunk) in chunks.iter().enumerate() {
                    let mut body = Some(chunk.clone());
                    plugin
                        .plugin()
                        .response_body(&mut body, index + 1 == chunks.len(), &mut ctx)
                        .unwrap();
                    out += body.map_or(0, |b| b.len());
                }
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, rate_limit, compression);
criterion_main!(benches);
