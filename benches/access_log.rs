//! Access-log formatting: the cost of rendering one line in the `combined` and `json` formats
//! (what a request pays when its server has an access log; writing is the writer thread's).
//!
//! `cargo bench --bench access_log`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use pingap::observe::UpstreamAttempt;
use pingap::observe::access_log::{Entry, Format};
use pingap::vars::Vars;
use pingora::http::{RequestHeader, ResponseHeader};

fn bench_formats(c: &mut Criterion) {
    let mut req = RequestHeader::build("GET", b"/api/v1/users/42?expand=orders", None).unwrap();
    req.insert_header("host", "api.example.com").unwrap();
    req.insert_header(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0",
    )
    .unwrap();
    req.insert_header("referer", "https://www.example.com/account")
        .unwrap();
    req.insert_header("accept", "application/json").unwrap();
    let mut resp = ResponseHeader::build(200, None).unwrap();
    resp.insert_header("content-type", "application/json")
        .unwrap();
    resp.insert_header("content-length", "1834").unwrap();
    let started = Instant::now();
    let attempt = UpstreamAttempt {
        connected: Some(started),
        answered: Some(started + Duration::from_micros(800)),
        ended: Some(started + Duration::from_micros(1200)),
        status: Some(200),
        ..UpstreamAttempt::start("10.0.0.7:8080".parse().unwrap(), 0)
    };
    let attempts = [attempt];
    let entry = Entry {
        vars: Vars {
            req: &req,
            request_uri: "/api/v1/users/42?expand=orders",
            host: "api.example.com",
            tls: false,
            client_ip: Some("203.0.113.9".parse().unwrap()),
            remote_addr: Some("203.0.113.9:51234".parse().unwrap()),
            server_addr: Some("10.0.0.1:80".parse().unwrap()),
            request_id: None,
            location: "api",
            captures: &[],
            client_cert: None,
        },
        upstream_uri: "/api/v1/users/42?expand=orders",
        time: SystemTime::now(),
        ended: started + Duration::from_micros(1300),
        duration: Duration::from_micros(1300),
        status: 200,
        response: Some(&resp),
        body_bytes_sent: 1834,
        body_bytes_read: 0,
        upstream_name: Some("api"),
        attempts: &attempts,
        server: "main",
        connection: None,
        tls: None,
        cache_status: None,
        error: None,
    };
    let mut group = c.benchmark_group("access_log_line");
    for name in ["combined", "json"] {
        let format = Format::parse(name).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut line = String::with_capacity(256);
                format.render(black_box(&entry), &mut line);
                line
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_formats);
criterion_main!(benches);
