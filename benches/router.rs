//! Route matching over a large table: 10,000 locations on 1,000 exact hosts (10 prefixes each),
//! plus wildcard, regex and host-less locations.
//!
//! `cargo bench --bench router`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pingap::router::host::{HostPattern, normalize_host};
use pingap::router::path::PathPattern;
use pingap::router::{RouteSpec, Router};

fn table() -> Router<usize> {
    let mut specs = Vec::new();
    for host in 0..1000 {
        for service in 0..10 {
            specs.push(RouteSpec {
                hosts: vec![HostPattern::parse(&format!("host-{host}.example.com")).unwrap()],
                path: Some(PathPattern::parse(&format!("/svc{service}/v{}", service % 3)).unwrap()),
                priority: 0,
                target: specs.len(),
            });
        }
    }
    for (index, host) in ["*.apps.example.com", "~^tenant-\\d+\\.example\\.org$"]
        .iter()
        .enumerate()
    {
        specs.push(RouteSpec {
            hosts: vec![HostPattern::parse(host).unwrap()],
            path: Some(PathPattern::parse("/").unwrap()),
            priority: 0,
            target: 20_000 + index,
        });
    }
    specs.push(RouteSpec {
        hosts: Vec::new(),
        path: Some(PathPattern::parse("=/health").unwrap()),
        priority: 0,
        target: 30_000,
    });
    Router::new(specs)
}

fn bench(c: &mut Criterion) {
    let router = table();
    let mut group = c.benchmark_group("route");
    group.bench_function("exact host + prefix (match)", |b| {
        b.iter(|| {
            router.route(
                black_box("host-517.example.com"),
                black_box("/svc7/v1/users/42"),
            )
        })
    });
    group.bench_function("exact host, no path matches", |b| {
        b.iter(|| {
            router.route(
                black_box("host-517.example.com"),
                black_box("/nothing/here"),
            )
        })
    });
    group.bench_function("unknown host (no match)", |b| {
        b.iter(|| router.route(black_box("unknown.example.net"), black_box("/svc7/v1")))
    });
    group.bench_function("wildcard host", |b| {
        b.iter(|| router.route(black_box("shop.apps.example.com"), black_box("/cart")))
    });
    group.bench_function("regex host", |b| {
        b.iter(|| router.route(black_box("tenant-42.example.org"), black_box("/cart")))
    });
    group.bench_function("normalize host header", |b| {
        b.iter(|| {
            let mut buf = [0u8; 256];
            normalize_host(black_box(b"Host-517.Example.COM:8443"), &mut buf).map(str::len)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
