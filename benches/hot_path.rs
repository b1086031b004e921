//! The per-request hot path besides routing (see `router.rs`): creating the request context,
//! choosing a backend with each algorithm, and applying header rules.
//!
//! `cargo bench --bench hot_path`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use pingap::config::schema::Upstream;
use pingap::headers::HeaderRules;
use pingap::proxy::InFlight;
use pingap::proxy::ctx::RequestCtx;
use pingap::upstream::{Pool, PoolEnv};
use pingap::vars::{Scope, Vars};
use pingora::http::RequestHeader;

fn pool(algorithm: &str, hash_key: Option<&str>) -> Pool {
    let spec = Upstream {
        addrs: (1..=8).map(|i| format!("127.0.0.1:{}", 8000 + i)).collect(),
        algorithm: Some(toml::Value::from(algorithm).try_into().unwrap()),
        hash_key: hash_key.map(str::to_string),
        ..Upstream::default()
    };
    let cx = PoolEnv {
        resolve: &|p| p.to_path_buf(),
        previous: None,
    };
    Pool::compile("bench", &spec, &cx).unwrap()
}

fn request() -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/users/42?page=2", None).unwrap();
    req.insert_header("host", "api.example.com").unwrap();
    req.insert_header("user-agent", "bench/1.0").unwrap();
    req.insert_header("x-user", "alice").unwrap();
    req
}

fn bench(c: &mut Criterion) {
    let in_flight = Arc::new(InFlight::default());
    c.bench_function("request context: create and drop", |b| {
        b.iter(|| black_box(RequestCtx::new(in_flight.enter())))
    });

    let req = request();
    let client = Some("203.0.113.9".parse().unwrap());
    for (name, algorithm, key) in [
        ("round_robin", "round_robin", None),
        ("least_connections", "least_connections", None),
        ("ip_hash", "ip_hash", None),
        (
            "consistent_hash header",
            "consistent_hash",
            Some("header:x-user"),
        ),
    ] {
        let pool = pool(algorithm, key);
        c.bench_function(&format!("select a backend: {name} of 8"), |b| {
            b.iter(|| black_box(pool.select(black_box(&req), client, |_| false)))
        });
    }

    let rules = HeaderRules::compile(
        "headers",
        &["X-Served-By: pingap".to_string()],
        &[
            "X-Real-Host: $host".to_string(),
            "X-Forwarded-Prefix: /api".to_string(),
        ],
        &["X-Internal".to_string()],
        Scope {
            captures: &[],
            groups: None,
        },
    )
    .unwrap();
    let cx = Vars {
        req: &req,
        request_uri: "/api/users/42?page=2",
        host: "api.example.com",
        tls: false,
        client_ip: client,
        remote_addr: None,
        server_addr: None,
        request_id: None,
        location: "api",
        captures: &[],
        client_cert: None,
    };
    c.bench_function("header rules: remove 1, set 2 (one variable), add 1", |b| {
        b.iter(|| {
            let mut target = req.clone();
            rules.apply(&mut target, &cx);
            black_box(target)
        })
    });
    c.bench_function("baseline: clone the request header", |b| {
        b.iter(|| black_box(req.clone()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
