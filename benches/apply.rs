//! Applying a large configuration: load (parse, place every key) → validate → compile, as a
//! reload does, for 1,000 and 10,000 locations with as many upstreams.
//!
//! `cargo bench --bench apply`
//!
//! The configuration is made by [`config`]: each location on its own host and path, every tenth
//! with plugins, every seventh with header rules, every fifth with a prefix rewrite and every
//! fiftieth with a regex path and rewrite; each upstream with one or two loopback backends and no
//! health check (nothing starts I/O); two servers listing half of the locations each. The reload
//! case compiles with the running runtime as `previous`, so pools and plugins are carried.

#![allow(clippy::unwrap_used)]

use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pingap::config::Snapshot;
use pingap::runtime::{compile, plugin_registry};

/// A configuration with `n` locations and `n` upstreams (`/tmp/10k.toml` for `pingap -t` in the
/// README is the same text, written with `n = 10000`).
fn config(n: usize) -> String {
    let mut text = String::with_capacity(n * 200);
    text.push_str(
        "[plugins.rid]\ntype = 'request_id'\n[plugins.cors]\ntype = 'cors'\n\
         allow_origins = ['*']\n\n",
    );
    for i in 0..n {
        let port = 10_000 + i % 50_000;
        write!(text, "[upstreams.u{i}]\naddrs = ['127.0.0.1:{port}'").unwrap();
        if i % 2 == 1 {
            write!(text, ", '127.0.0.2:{port}'").unwrap();
        }
        text.push_str("]\nconnection_timeout = '3s'\n\n");
    }
    for i in 0..n {
        write!(
            text,
            "[locations.l{i}]\nupstream = 'u{i}'\nhost = 'h{}.example.com'\n",
            i / 10
        )
        .unwrap();
        if i % 50 == 49 {
            write!(
                text,
                "path = '~^/re{i}/(?<id>\\d+)$'\nrewrite = '^/re{i}/(?<id>\\d+)$ /item/$id'\n"
            )
            .unwrap();
        } else {
            writeln!(text, "path = '/svc{}/v{}'", i % 10, i % 3).unwrap();
            if i % 5 == 0 {
                text.push_str("rewrite = '/'\n");
            }
        }
        if i % 10 == 3 {
            text.push_str("plugins = ['rid', 'cors']\n");
        }
        if i % 7 == 0 {
            write!(
                text,
                "headers_add = ['X-Location:l{i}']\nresponse_headers_remove = ['Server']\n"
            )
            .unwrap();
        }
        text.push('\n');
    }
    for server in 0..2 {
        let names: Vec<String> = (server..n).step_by(2).map(|i| format!("'l{i}'")).collect();
        write!(
            text,
            "[servers.s{server}]\naddr = '127.0.0.1:{}'\nlocations = [{}]\n\n",
            18_080 + server,
            names.join(", ")
        )
        .unwrap();
    }
    text
}

fn bench(c: &mut Criterion) {
    let registry = plugin_registry();
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    if let Ok(path) = std::env::var("PINGAP_APPLY_WRITE") {
        // For the `pingap -t` measurement: the 10,000-location configuration as a file.
        std::fs::write(path, config(10_000)).unwrap();
    }
    for (name, n) in [("1k", 1_000), ("10k", 10_000)] {
        let snapshot = Snapshot::single(format!("{name}.toml"), config(n));
        let loaded = snapshot.load(&|_| None).unwrap();
        let running = compile(&loaded, &registry, None).unwrap().runtime;
        group.bench_function(format!("{name} locations, reload"), |b| {
            b.iter(|| {
                let loaded = black_box(&snapshot).load(&|_| None).unwrap();
                compile(&loaded, &registry, Some(&running)).unwrap()
            })
        });
        if n == 10_000 {
            group.bench_function(format!("{name} locations, first start"), |b| {
                b.iter(|| {
                    let loaded = black_box(&snapshot).load(&|_| None).unwrap();
                    compile(&loaded, &registry, None).unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
