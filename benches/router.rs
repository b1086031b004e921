//! Route matching over a large table: 10,000 locations on 1,000 exact hosts (10 prefixes each),
//! plus wildcard, regex and host-less locations.
//!
//! `cargo bench --bench router`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pingap::router::conditions::Conditions;
use pingap::router::host::HostPattern;
use pingap::router::host_parse::parse_host;
use pingap::router::path::PathPattern;
use pingap::router::path_normalize::normalize_path;
use pingap::router::{RouteSpec, Router};
use pingora::http::RequestHeader;

fn table() -> Router<usize> {
    let mut specs = Vec::new();
    for host in 0..1000 {
        for service in 0..10 {
            specs.push(RouteSpec {
                hosts: vec![HostPattern::parse(&format!("host-{host}.example.com")).unwrap()],
                path: Some(PathPattern::parse(&format!("/svc{service}/v{}", service % 3)).unwrap()),
                conditions: Conditions::default(),
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
            conditions: Conditions::default(),
            priority: 0,
            target: 20_000 + index,
        });
    }
    specs.push(RouteSpec {
        hosts: Vec::new(),
        path: Some(PathPattern::parse("=/health").unwrap()),
        conditions: Conditions::default(),
        priority: 0,
        target: 30_000,
    });
    Router::new(specs)
}

fn get(path: &str) -> RequestHeader {
    RequestHeader::build("GET", path.as_bytes(), None).unwrap()
}

fn bench(c: &mut Criterion) {
    let router = table();
    let mut group = c.benchmark_group("route");
    let cases = [
        (
            "exact host + prefix (match)",
            "host-517.example.com",
            "/svc7/v1/users/42",
        ),
        (
            "exact host, no path matches",
            "host-517.example.com",
            "/nothing/here",
        ),
        ("unknown host (no match)", "unknown.example.net", "/svc7/v1"),
        ("wildcard host", "shop.apps.example.com", "/cart"),
        ("regex host", "tenant-42.example.org", "/cart"),
    ];
    for (name, host, path) in cases {
        let req = get(path);
        group.bench_function(name, |b| {
            b.iter(|| {
                router
                    .route(black_box(host), black_box(&req))
                    .map(|m| *m.target)
            })
        });
    }
    group.bench_function("parse host header", |b| {
        b.iter(|| {
            let mut buf = [0u8; 256];
            parse_host(black_box(b"Host-517.Example.COM:8443"), &mut buf).map(|h| h.name.len())
        })
    });
    group.bench_function("normalize a normal path", |b| {
        b.iter(|| normalize_path(black_box("/api/v1/users/12345/orders")).map(|p| p.len()))
    });
    group.bench_function("normalize a path with dot segments", |b| {
        b.iter(|| normalize_path(black_box("/api/./v1//users/../users/%61b")).map(|p| p.len()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
