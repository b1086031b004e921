//! What a reload leaves behind, through the binary: renaming locations and upstreams over many
//! reloads must not grow `/metrics` (the series of removed names are dropped, those of names
//! that stay keep counting), and renaming a filled `cache` plugin must free the old cache's
//! memory (RSS stays put however often it happens).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::Signal;

use common::{Backend, Pingap, client};

/// Scrapes `url` until `done` holds for the text (for at most 10 s); returns that scrape.
async fn scrape_until(url: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = client.get(url).send().await.unwrap().text().await.unwrap();
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `text` has the sample line `series value` exactly.
fn has(text: &str, series: &str, value: usize) -> bool {
    let line = format!("{series} {value}");
    text.lines().any(|l| l == line)
}

/// Rewrites the configuration, sends SIGHUP, and waits until `generation` runs (the generation
/// gauge is published after the reload has dropped the series of removed names).
async fn reload(pingap: &Pingap, metrics: &str, config: &str, generation: usize) {
    std::fs::write(pingap.config_path(), config).unwrap();
    pingap.signal(Signal::SIGHUP);
    scrape_until(metrics, &format!("generation {generation}"), |text| {
        has(text, "pingap_config_generation", generation)
    })
    .await;
}

/// How many reloads the metrics test renames through.
const RENAMES: usize = 20;

/// Location `a{round}` on upstream `u{round}` (both renamed each round), and location `stay` on
/// upstream `stay` (never renamed).
fn renamed_config(backend: &Backend, round: usize) -> String {
    format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [upstreams.u{round}]\naddrs = ['{addr}']\n\
         [upstreams.stay]\naddrs = ['{addr}']\n\
         [locations.a{round}]\nupstream = 'u{round}'\npath = '/a'\n\
         [locations.stay]\nupstream = 'stay'\npath = '/stay'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['a{round}', 'stay']\n",
        addr = backend.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_series_of_renamed_locations_and_upstreams_are_dropped() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&renamed_config(&backend, 0));
    let metrics = pingap.metrics_url();
    let client = client();
    let mut sizes = Vec::new();
    for round in 0..=RENAMES {
        if round > 0 {
            reload(
                &pingap,
                &metrics,
                &renamed_config(&backend, round),
                round + 1,
            )
            .await;
        }
        for path in ["/a", "/stay"] {
            let response = client.get(pingap.url("main", path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.bytes().await.unwrap();
        }
        // Requests are counted just after they are answered: wait for both.
        let (location, pool) = (format!("a{round}"), format!("u{round}"));
        let text = scrape_until(&metrics, &format!("round {round} counted"), |text| {
            let requests = |location: &str, count| {
                has(
                    text,
                    &format!(
                        r#"pingap_requests_total{{location="{location}",method="GET",status="2xx"}}"#
                    ),
                    count,
                )
            };
            let upstream = |upstream: &str, count| {
                has(
                    text,
                    &format!(r#"pingap_upstream_response_seconds_count{{upstream="{upstream}"}}"#),
                    count,
                )
            };
            // The location that stays keeps counting across every reload.
            requests(&location, 1)
                && requests("stay", round + 1)
                && upstream(&pool, 1)
                && upstream("stay", round + 1)
        })
        .await;
        for gone in 0..round {
            for label in [format!(r#""a{gone}""#), format!(r#""u{gone}""#)] {
                assert!(
                    !text.contains(&label),
                    "round {round}: {label} is still exported:\n{text}"
                );
            }
        }
        sizes.push(text.len());
    }
    println!("/metrics size (bytes) after each round: {sizes:?}");
    let (second, last) = (sizes[1], sizes[RENAMES]);
    assert!(
        last * 2 <= second * 3,
        "/metrics grew from {second} to {last} bytes over {RENAMES} renames: {sizes:?}"
    );
}

/// Bytes of each cached body.
const BODY: usize = 256 * 1024;
/// Bodies per fill: 24 MiB in a 32 MiB cache, so nothing is evicted.
const BODIES: usize = 96;
/// Fills: the first, then one after each rename.
const ROUNDS: usize = 7;
/// Concurrent requests while filling.
const PARALLEL: usize = 4;

/// A location whose `cache` plugin is named `cache{round}`.
fn cache_config(backend: SocketAddr, round: usize) -> String {
    format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [upstreams.api]\naddrs = ['{backend}']\n\
         [plugins.cache{round}]\ntype = 'cache'\nmax_size = '32MiB'\n\
         [locations.api]\nupstream = 'api'\nplugins = ['cache{round}']\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n"
    )
}

/// A backend that answers every request with the same cacheable [`BODY`] bytes
/// (`Cache-Control: max-age=600`), shared rather than rebuilt, so the test spends its time in
/// the proxy.
async fn cacheable_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(vec![b'x'; BODY]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/octet-stream")
                                .header("cache-control", "max-age=600")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// GETs `url` (a [`BODY`]-byte cacheable answer); returns its `X-Cache-Status`.
async fn fetch_body(client: &reqwest::Client, url: String) -> String {
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let status = response.headers()["x-cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(response.bytes().await.unwrap().len(), BODY, "{url}");
    status
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_filled_cache_frees_its_memory() {
    let backend = cacheable_backend().await;
    let pingap = Pingap::start(&cache_config(backend, 0));
    let metrics = pingap.metrics_url();
    let client = client();
    let mut after_fill = Vec::new();
    for round in 0..ROUNDS {
        if round > 0 {
            reload(&pingap, &metrics, &cache_config(backend, round), round + 1).await;
        }
        let before = rss(pingap.pid());
        // Distinct paths per round: a renamed cache starts empty, so every one is a miss.
        let urls: Vec<String> = (0..BODIES)
            .map(|i| pingap.url("main", &format!("/r{round}/{i}")))
            .collect();
        let statuses: Vec<String> = futures_util::stream::iter(urls.clone())
            .map(|url| fetch_body(&client, url))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        assert!(
            statuses.iter().all(|s| s == "MISS"),
            "round {round}: {statuses:?}"
        );
        // The entries are stored once their body is complete: the first, a middle and the last
        // are answered from the cache soon after.
        for url in [&urls[0], &urls[BODIES / 2], &urls[BODIES - 1]] {
            let deadline = Instant::now() + Duration::from_secs(10);
            while fetch_body(&client, url.clone()).await != "HIT" {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: {url} never a HIT"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let filled = rss(pingap.pid());
        println!(
            "round {round} (plugin cache{round}): RSS {} MiB before the fill, {} MiB after",
            before / MIB,
            filled / MIB
        );
        after_fill.push(filled);
    }
    let (first, last) = (after_fill[0], after_fill[ROUNDS - 1]);
    assert!(
        last <= first + 48 * MIB,
        "RSS grew from {} MiB to {} MiB over {} renames of a filled 32 MiB cache: {:?} MiB",
        first / MIB,
        last / MIB,
        ROUNDS - 1,
        after_fill.iter().map(|r| r / MIB).collect::<Vec<_>>()
    );
}
