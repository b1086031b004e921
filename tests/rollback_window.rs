//! The automatic rollback window (`basic.rollback_window`), end to end under steady load: a
//! configuration that breaks a location is taken back by itself, with the errors confined to
//! the window, written back to the file and recorded in the history; a good one stays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Pingap, RefusingPort, command, run_to_exit};
use nix::sys::signal::Signal;

fn config(upstream: &str, window: &str, extra_location: &str) -> String {
    format!(
        "[basic]\nrollback_window = '{window}'\n\
         [metrics]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [upstreams.api]\naddrs = ['{upstream}']\n\
         [locations.api]\nupstream = 'api'\n{extra_location}\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n"
    )
}

/// One request after another until stopped (at most 60 s): when each ended and its status (0 for
/// a failed exchange).
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, u16)>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = common::client_builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let began = Instant::now();
                let mut results = Vec::new();
                while !stop.load(Ordering::SeqCst) && began.elapsed() < Duration::from_secs(60) {
                    let status = match client.get(&url).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    results.push((Instant::now(), status));
                    // A steady trickle, not a flood: about 200 requests a second.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                results
            })
        };
        Load { stop, task }
    }

    async fn finish(self) -> Vec<(Instant, u16)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_that_breaks_a_location_is_rolled_back_within_the_window() {
    let backend = Backend::start("good").await;
    let dead = RefusingPort::new();
    let good = config(&backend.addr.to_string(), "20s", "");
    let pingap = Pingap::start(&good);
    let metrics = pingap.metrics_url();
    let load = Load::start(pingap.url("main", "/"));
    // Rates before the apply: a second of good traffic.
    assert!(backend.wait_for_hits(200, Duration::from_secs(20)).await);

    let bad = config(&dead.addr.to_string(), "20s", "");
    std::fs::write(pingap.config_path(), &bad).unwrap();
    let applied_at = Instant::now();
    pingap.signal(Signal::SIGHUP);
    let line = tokio::task::block_in_place(|| {
        pingap
            .output
            .wait_for("rolled back automatically", Duration::from_secs(20))
    })
    .unwrap_or_else(|| panic!("no rollback:\n{}", pingap.output.text()));
    let rolled_back_at = Instant::now();
    assert!(line.contains("location \"api\""), "{line}");
    // Good answers again, from the same process.
    let hits = backend.hits();
    assert!(
        backend
            .wait_for_hits(hits + 50, Duration::from_secs(10))
            .await
    );
    let results = load.finish().await;

    let failures: Vec<Instant> = results
        .iter()
        .filter(|(_, status)| *status != 200)
        .map(|(at, _)| *at)
        .collect();
    assert!(!failures.is_empty(), "the bad configuration was never live");
    assert!(failures.iter().all(|at| *at >= applied_at));
    // Confined to the window, and in fact to the time until the rollback (plus the request in
    // flight at that moment).
    let last = *failures.iter().max().unwrap();
    assert!(
        last <= rolled_back_at + Duration::from_secs(1),
        "errors went on {:?} after the rollback",
        last.saturating_duration_since(rolled_back_at)
    );
    assert!(last.duration_since(applied_at) < Duration::from_secs(20));
    // 200 good answers before the apply and 50 after the rollback.
    assert!(
        results.len() - failures.len() >= 240,
        "{} answers",
        results.len()
    );

    // The good configuration is back in the file and recorded with the reason.
    assert_eq!(std::fs::read_to_string(pingap.config_path()).unwrap(), good);
    let mut history = command();
    history.arg("history").arg("-c").arg(pingap.config_path());
    let (status, listing) = run_to_exit(history);
    assert!(status.success(), "{listing}");
    let last_line = listing.lines().last().unwrap_or_default();
    assert!(last_line.contains("automatic rollback"), "{listing}");
    assert!(last_line.contains("restores version 1"), "{listing}");
    assert_eq!(
        common::metric(&metrics, "pingap_config_rollbacks_total").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_configuration_under_the_same_load_stays() {
    let backend = Backend::start("good").await;
    let pingap = Pingap::start(&config(&backend.addr.to_string(), "2s", ""));
    let metrics = pingap.metrics_url();
    let load = Load::start(pingap.url("main", "/"));
    assert!(backend.wait_for_hits(200, Duration::from_secs(20)).await);

    let changed = config(
        &backend.addr.to_string(),
        "2s",
        "headers_set = ['X-Version: 2']",
    );
    std::fs::write(pingap.config_path(), &changed).unwrap();
    pingap.signal(Signal::SIGHUP);
    assert!(
        tokio::task::block_in_place(|| pingap
            .output
            .wait_for("the configuration stays", Duration::from_secs(20)))
        .is_some(),
        "{}",
        pingap.output.text()
    );
    let results = load.finish().await;
    assert!(results.iter().all(|(_, status)| *status == 200));
    assert!(!pingap.output.text().contains("rolled back"));
    assert_eq!(
        std::fs::read_to_string(pingap.config_path()).unwrap(),
        changed
    );
    assert_eq!(
        common::metric(&metrics, "pingap_config_rollbacks_total").await,
        Some(0.0)
    );
}
