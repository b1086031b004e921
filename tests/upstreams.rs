//! Upstreams when backends fail, end to end through the binary: failover with zero client
//! errors, active health checks taking a dead backend out and bringing it back, passive health,
//! the circuit breaker, retries, 503 when nothing is left, and HTTPS to backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{Backend, Pingap, RefusingPort, client, get};

/// One server, one location, upstream `api` over `addrs` with extra upstream keys.
fn config(addrs: &[String], upstream_extra: &str) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "[upstreams.api]\naddrs = [{}]\n{upstream_extra}\n\
         [locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
        addrs.join(", ")
    )
}

/// Waits (off the async workers) for a log line holding all of `needles`.
fn log_line(pingap: &Pingap, needles: &[&str], timeout: Duration) -> Option<String> {
    tokio::task::block_in_place(|| pingap.output.wait_for_all(needles, timeout))
}

/// Sends `count` GETs one after another; returns how many did not answer 200.
async fn failed_gets(client: &reqwest::Client, url: &str, count: usize) -> usize {
    let mut failed = 0;
    for _ in 0..count {
        match client.get(url).send().await {
            Ok(response) if response.status() == 200 => {}
            _ => failed += 1,
        }
    }
    failed
}

/// Requests sent by [`load`] and how many did not answer 200.
#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    failed: AtomicUsize,
}

/// Four clients sending GETs back to back until `stop` turns true.
fn load(url: &str, tally: &Arc<Tally>, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|_| {
            let (url, tally, stop) = (url.to_string(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::SeqCst) {
                    let ok = matches!(client.get(&url).send().await, Ok(r) if r.status() == 200);
                    tally.sent.fetch_add(1, Ordering::SeqCst);
                    if !ok {
                        tally.failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_errors_is_taken_out_by_the_check_and_comes_back() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let b_addr = b.addr;
    let pingap = Pingap::start(&config(
        &[a.addr.to_string(), b_addr.to_string(), c.addr.to_string()],
        "health_check = 'http://api.internal/healthz?interval=100ms&timeout=500ms'\n\
         healthy_threshold = 2\nunhealthy_threshold = 2\nfail_timeout = '1s'",
    ));
    let client = client();
    let url = pingap.url("main", "/");
    assert_eq!(failed_gets(&client, &url, 30).await, 0);
    assert_eq!(b.hits(), 10, "round robin before the failure");
    assert!(b.checks() > 0, "checked with GET /healthz");

    // Kill b under load from four clients, and keep the load on until the check took it out.
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let clients = load(&url, &tally, &stop);
    assert!(b.wait_for_hits(30, Duration::from_secs(10)).await);
    let killed = Instant::now();
    drop(b);
    let line = log_line(
        &pingap,
        &["backend unhealthy", &format!("backend={b_addr}")],
        Duration::from_secs(10),
    )
    .expect("the active check takes the dead backend out");
    let taken_out = killed.elapsed();
    let during = tally.sent.load(Ordering::SeqCst);
    assert!(
        a.wait_for_hits(a.hits() + 50, Duration::from_secs(10))
            .await,
        "load goes on"
    );
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert!(line.contains("upstream=api"), "{line}");
    let (sent, failed) = (
        tally.sent.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    eprintln!(
        "backend killed under load: {failed} of {sent} requests failed; taken out by the \
         active check after {taken_out:?} ({during} requests sent by then)"
    );
    assert_eq!(
        failed, 0,
        "no client saw the dead backend ({sent} requests)"
    );

    let b = Backend::start_on("b", b_addr, None).await;
    log_line(
        &pingap,
        &["backend healthy", &format!("backend={b_addr}")],
        Duration::from_secs(10),
    )
    .expect("the check brings it back");
    // Passive health may still hold it out for the rest of its fail_timeout (1s).
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.hits() <= 2 && Instant::now() < deadline {
        assert_eq!(failed_gets(&client, &url, 10).await, 0);
    }
    assert!(b.hits() > 2, "back in rotation: {} requests", b.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_requests_in_proportion() {
    let heavy = Backend::start("heavy").await;
    let light = Backend::start("light").await;
    let pingap = Pingap::start(&config(
        &[format!("{} 3", heavy.addr), light.addr.to_string()],
        "algorithm = 'weighted_round_robin'",
    ));
    let client = client();
    assert_eq!(failed_gets(&client, &pingap.url("main", "/"), 400).await, 0);
    let (heavy, light) = (heavy.hits(), light.hits());
    assert!(
        (270..=330).contains(&heavy) && heavy + light == 400,
        "3:1 within 10%: {heavy} and {light}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_fail_over_and_nothing_left_is_a_503_naming_the_upstream() {
    let live = Backend::start("live").await;
    let dead = RefusingPort::new();
    let pingap = Pingap::start(&config(
        &[dead.addr.to_string(), live.addr.to_string()],
        "max_fails = 0",
    ));
    let client = client();
    let url = pingap.url("main", "/");
    // Without passive health the dead backend stays in rotation; every request to it fails
    // over, POSTs included (nothing was sent).
    for _ in 0..10 {
        let response = client.post(&url).body("x").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(live.hits(), 10);
    drop(live);

    let pingap_all_down = Pingap::start(&config(
        &[
            RefusingPort::new().addr.to_string(),
            RefusingPort::new().addr.to_string(),
        ],
        "",
    ));
    let url = pingap_all_down.url("main", "/");
    let first = get(&url, &[]).await;
    assert_eq!(first.status(), 502, "both tried, both refused");
    // Passive health (max_fails = 1) took both out.
    let (status, body) = common::get_json(&url, &[("accept", "application/json")]).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["message"], "no healthy backend in upstream \"api\"",
        "{body}"
    );
    drop(pingap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_takes_a_failing_backend_out_for_fail_timeout() {
    let bad = Backend::start("bad").await;
    let good = Backend::start("good").await;
    bad.set_status(500);
    let pingap = Pingap::start(&config(
        &[bad.addr.to_string(), good.addr.to_string()],
        "max_fails = 2\nfail_timeout = '30s'\npassive_fail_status = [500]",
    ));
    let url = pingap.url("main", "/");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(get(&url, &[]).await.status().as_u16());
    }
    assert_eq!(bad.hits(), 2, "out after max_fails failures: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 2);
    log_line(
        &pingap,
        &["backend taken out", &format!("backend={}", bad.addr)],
        Duration::from_secs(5),
    )
    .expect("logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_send_idempotent_requests_elsewhere_after_a_503_or_a_timeout() {
    let unavailable = Backend::start("unavailable").await;
    let slow = Backend::start("slow").await;
    let good = Backend::start("good").await;
    unavailable.set_status(503);
    slow.set_delay_ms(2_000);
    let pingap = Pingap::start(&config(
        &[
            unavailable.addr.to_string(),
            slow.addr.to_string(),
            good.addr.to_string(),
        ],
        "retries = 2\nread_timeout = '300ms'\nmax_fails = 0",
    ));
    let client = client();
    let url = pingap.url("main", "/");
    for _ in 0..6 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let echo: common::backend::Echo = response.json().await.unwrap();
        assert_eq!(echo.backend, "good");
    }
    assert!(unavailable.hits() > 0 && slow.hits() > 0);

    // A POST is not retried: whoever answers first is the answer.
    let mut statuses = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let response = client.post(&url).body("x").send().await.unwrap();
        statuses.insert(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 503, 504].into_iter().collect(),
        "each backend answered POSTs once in turn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_timeout_is_a_504() {
    let slow = Backend::start("slow").await;
    let good = Backend::start("good").await;
    slow.set_delay_ms(2_000);
    let pingap = Pingap::start(&config(
        &[slow.addr.to_string(), good.addr.to_string()],
        "read_timeout = '200ms'\nmax_fails = 0",
    ));
    let url = pingap.url("main", "/");
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..2).map(|_| async { get(&url, &[]).await.status().as_u16() }),
    )
    .await;
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, [200, 504]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_half_opens_and_closes() {
    let backend = Backend::start("only").await;
    backend.set_status(500);
    let pingap = Pingap::start(&config(
        &[backend.addr.to_string()],
        "passive_fail_status = [500]\ncircuit_breaker_failures = 3\n\
         circuit_breaker_open_for = '300ms'\ncircuit_breaker_successes = 2",
    ));
    let url = pingap.url("main", "/");
    for _ in 0..3 {
        assert_eq!(get(&url, &[]).await.status(), 500);
    }
    // Open: refused without reaching the backend.
    let refused = get(&url, &[]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(backend.hits(), 3);
    log_line(&pingap, &["circuit open for"], Duration::from_secs(5)).expect("logged");

    // After open_for a probe goes through; it fails, so the circuit opens again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get(&url, &[]).await.status(), 500);
    assert_eq!(get(&url, &[]).await.status(), 503);
    assert_eq!(backend.hits(), 4);

    // The backend recovers: two successful probes close the circuit.
    backend.set_status(0);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get(&url, &[]).await.status(), 200);
    assert_eq!(get(&url, &[]).await.status(), 200);
    log_line(&pingap, &["circuit closed"], Duration::from_secs(5)).expect("logged");
    for _ in 0..5 {
        assert_eq!(get(&url, &[]).await.status(), 200);
    }
    assert_eq!(backend.hits(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_with_a_trusted_ca_without_verification_and_an_unknown_ca() {
    let pki = Pki::new(&["backend.test"]);
    let backend =
        Backend::start_on("tls", "127.0.0.1:0".parse().unwrap(), Some(pki.acceptor())).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pki.ca_pem).unwrap();
    let addr = format!("https://{}", backend.addr);
    let cases = [
        (
            format!(
                "sni = 'backend.test'\nca_file = '{}'\nalpn = 'h2'",
                ca.path().display()
            ),
            200,
        ),
        ("sni = 'backend.test'\nverify_cert = false".to_string(), 200),
        ("sni = 'backend.test'".to_string(), 502),
        (
            format!("sni = 'other.test'\nca_file = '{}'", ca.path().display()),
            502,
        ),
    ];
    for (extra, expected) in cases {
        let pingap = Pingap::start(&config(std::slice::from_ref(&addr), &extra));
        let response = get(&pingap.url("main", "/"), &[]).await;
        assert_eq!(response.status(), expected, "{extra}");
        if expected == 200 {
            let echo: common::backend::Echo = response.json().await.unwrap();
            assert_eq!(echo.backend, "tls");
            let version = if extra.contains("alpn") {
                "HTTP/2.0"
            } else {
                "HTTP/1.1"
            };
            assert_eq!(echo.version, version, "{extra}");
        }
    }
    assert_eq!(backend.hits(), 2);
}

/// Two backends on the same port of 127.0.0.2 and 127.0.0.3, as two hosts behind one name.
async fn backends_on_one_port() -> (Backend, Backend, u16) {
    for _ in 0..20 {
        let first = Backend::start_on("b2", "127.0.0.2:0".parse().unwrap(), None).await;
        let port = first.addr.port();
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.3", port)) {
            drop(listener);
            let second = Backend::start_on("b3", ([127, 0, 0, 3], port).into(), None).await;
            return (first, second, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_follows_the_answers_and_keeps_the_last_good_set() {
    let dns = common::dns::DnsServer::start().await;
    let (b2, b3, port) = backends_on_one_port().await;
    let (ip2, ip3) = ([127, 0, 0, 2].into(), [127, 0, 0, 3].into());
    dns.set("api.test", &[ip2]);
    let pingap = Pingap::start(&config(
        &[format!("api.test:{port}")],
        &format!("dns_server = '{}'\ndns_refresh = '100ms'", dns.addr),
    ));
    let client = client();
    let url = pingap.url("main", "/");
    assert_eq!(failed_gets(&client, &url, 4).await, 0);
    assert_eq!((b2.hits(), b3.hits()), (4, 0));

    dns.set("api.test", &[ip2, ip3]);
    log_line(
        &pingap,
        &[&format!(
            "backends changed by DNS: 127.0.0.2:{port}, 127.0.0.3:{port}"
        )],
        Duration::from_secs(10),
    )
    .expect("the new address is picked up");
    assert_eq!(failed_gets(&client, &url, 10).await, 0);
    assert_eq!((b2.hits(), b3.hits()), (9, 5));

    // 127.0.0.2 leaves while a request to it is in flight: that request still completes.
    let slow = tokio::spawn({
        let url = url.clone();
        async move {
            common::get(&url, &[("x-echo-delay-ms", "1500")])
                .await
                .status()
        }
    });
    assert!(b2.wait_for_hits(10, Duration::from_secs(5)).await);
    dns.set("api.test", &[ip3]);
    log_line(
        &pingap,
        &[&format!("backends changed by DNS: 127.0.0.3:{port}")],
        Duration::from_secs(10),
    )
    .expect("the removal is picked up");
    assert_eq!(failed_gets(&client, &url, 6).await, 0);
    assert_eq!(b2.hits(), 10, "no new request to the removed backend");
    assert_eq!(slow.await.unwrap(), 200, "the in-flight request finished");

    // The name stops resolving: the last good set stays.
    dns.set("api.test", &[]);
    log_line(
        &pingap,
        &["DNS refresh failed, keeping the last good backends"],
        Duration::from_secs(10),
    )
    .expect("logged");
    let before = b3.hits();
    assert_eq!(failed_gets(&client, &url, 4).await, 0);
    assert_eq!(b3.hits(), before + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_backend_added_by_reload_moves_few_consistent_hash_keys() {
    let mut backends = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        backends.push(Backend::start(name).await);
    }
    let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let keyed = "algorithm = 'consistent_hash'\nhash_key = 'query:user'";
    let pingap = Pingap::start(&config(&addrs[..4], keyed));
    let client = client();
    let owners = async |client: &reqwest::Client| {
        let mut owners = Vec::new();
        for user in 0..200 {
            let url = pingap.url("main", &format!("/?user={user}"));
            let echo: common::backend::Echo =
                client.get(&url).send().await.unwrap().json().await.unwrap();
            owners.push(echo.backend);
        }
        owners
    };
    let before = owners(&client).await;
    assert_eq!(before, owners(&client).await, "stable per key");

    std::fs::write(pingap.config_path(), config(&addrs, keyed)).unwrap();
    pingap.signal(nix::sys::signal::Signal::SIGHUP);
    log_line(&pingap, &["configuration applied"], Duration::from_secs(10)).expect("reloaded");
    let after = owners(&client).await;
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(
        after.iter().any(|owner| owner == "e"),
        "the new backend takes keys"
    );
    assert!(
        after.iter().zip(&before).all(|(a, b)| a == b || a == "e"),
        "keys only move to the new backend"
    );
    assert!(moved <= 70, "{moved} of 200 keys moved (at most 35%)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_timeout_bounds_the_attempts() {
    let mut slow = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let backend = Backend::start(name).await;
        backend.set_delay_ms(3_000);
        slow.push(backend);
    }
    let addrs: Vec<String> = slow.iter().map(|b| b.addr.to_string()).collect();
    let pingap = Pingap::start(&config(
        &addrs,
        "retries = 3\nread_timeout = '300ms'\nretry_timeout = '550ms'\nmax_fails = 0",
    ));
    let started = Instant::now();
    let response = get(&pingap.url("main", "/"), &[]).await;
    assert_eq!(response.status(), 504);
    // Attempts start at about 0 and 300 ms; the one due at 600 ms is past retry_timeout.
    let hits: usize = slow.iter().map(Backend::hits).sum();
    assert_eq!(hits, 2, "after {:?}", started.elapsed());
}
