//! Listener changes without a manual restart: a saved configuration that adds or removes a
//! server makes pingap start itself again in upgrade mode and hand its listening sockets over,
//! with no failed request on the servers that stay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Backend, Pingap, command, run_to_exit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn config(sock: &std::path::Path, backend: SocketAddr, second: bool) -> String {
    let mut text = format!(
        "[basic]\nupgrade_sock = '{}'\ngraceful_shutdown_timeout = '2s'\n\
         [upstreams.api]\naddrs = ['{backend}']\n[locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
        sock.display()
    );
    if second {
        text.push_str("[servers.second]\naddr = '127.0.0.1:0'\nlocations = ['api']\n");
    }
    text
}

/// Saves `text` over `path` the way an editor does.
fn save(path: &std::path::Path, text: &str) {
    let temporary = path.with_extension("toml.swp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The pids of every pingap that logged its start, in order.
fn started_pids(output: &str) -> Vec<i32> {
    output
        .lines()
        .filter(|line| line.contains(" started name="))
        .filter_map(|line| {
            line.split("pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The address server `name` listens on, as the newest process logged it.
fn listening(output: &str, name: &str) -> Option<SocketAddr> {
    output
        .lines()
        .rev()
        .filter(|line| line.contains(&format!(" server={name} ")))
        .find_map(|line| {
            line.split("listening on http://")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// Stops the processes pingap started itself (they are not the test's children).
struct Reaper(Vec<i32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_and_removing_a_server_hands_the_listeners_over_without_failed_requests() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let mut pingap = Pingap::start_with(&config(&sock, backend.addr, false), &["--watch"], &[]);
    let main = pingap.addr("main");
    let mut reaper = Reaper(Vec::new());

    // Fresh connections throughout both hand-overs.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let client = common::client_builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) && ok < 100_000 {
                match client.get(format!("http://{main}/")).send().await {
                    Ok(response) if response.status() == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };
    assert!(backend.wait_for_hits(20, Duration::from_secs(10)).await);

    // Add a server: a second process takes over and serves both.
    save(&pingap.config_path(), &config(&sock, backend.addr, true));
    let decided = tokio::task::block_in_place(|| {
        pingap
            .output
            .wait_for("needs a graceful upgrade", Duration::from_secs(30))
    })
    .unwrap_or_else(|| panic!("no upgrade:\n{}", pingap.output.text()));
    assert!(decided.contains("server \"second\" added"), "{decided}");
    assert!(
        tokio::task::block_in_place(|| pingap
            .output
            .wait_for("server=second", Duration::from_secs(30)))
        .is_some(),
        "{}",
        pingap.output.text()
    );
    let status = tokio::task::block_in_place(|| pingap.wait_exit(Duration::from_secs(20)))
        .expect("the old process exits");
    assert!(status.success());
    let text = pingap.output.text();
    let pids = started_pids(&text);
    assert_eq!(pids.len(), 2, "{text}");
    reaper.0.push(pids[1]);
    let second = listening(&text, "second").expect("the second server's address");
    let answer = common::get(&format!("http://{second}/"), &[]).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(listening(&text, "main"), Some(main), "main keeps its port");

    // Remove it again: a third process, and the second server's port is closed.
    let served = backend.hits();
    assert!(
        backend
            .wait_for_hits(served + 20, Duration::from_secs(10))
            .await
    );
    save(&pingap.config_path(), &config(&sock, backend.addr, false));
    assert!(
        common::eventually(Duration::from_secs(30), || started_pids(
            &pingap.output.text()
        )
        .len()
            == 3)
        .await,
        "{}",
        pingap.output.text()
    );
    reaper.0.push(started_pids(&pingap.output.text())[2]);
    assert!(
        common::eventually(Duration::from_secs(20), || std::net::TcpStream::connect(
            second
        )
        .is_err())
        .await,
        "the removed server's port still accepts"
    );
    let served = backend.hits();
    assert!(
        backend
            .wait_for_hits(served + 20, Duration::from_secs(10))
            .await
    );
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = traffic.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );

    // Each hand-over is recorded once, by the process that decided it.
    let mut history = command();
    history.arg("history").arg("-c").arg(pingap.config_path());
    let (status, listing) = run_to_exit(history);
    assert!(status.success(), "{listing}");
    let versions: Vec<&str> = listing.lines().skip(1).collect();
    assert_eq!(versions.len(), 3, "{listing}");
    assert!(versions[1].contains("file watch"), "{listing}");
    assert!(
        versions[2].contains("same configuration as version 1"),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_be_bound_keeps_the_running_process() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pingap = Pingap::start_with(&config(&sock, backend.addr, false), &["--watch"], &[]);
    let url = pingap.url("main", "/");
    let with_taken = format!(
        "{}[servers.second]\naddr = '{}'\nlocations = ['api']\n",
        config(&sock, backend.addr, false),
        taken.local_addr().unwrap()
    );
    save(&pingap.config_path(), &with_taken);
    let line = tokio::task::block_in_place(|| {
        pingap
            .output
            .wait_for("rejected, keeping the running one", Duration::from_secs(20))
    })
    .unwrap_or_else(|| panic!("{}", pingap.output.text()));
    assert!(line.contains("cannot listen on"), "{line}");
    assert_eq!(started_pids(&pingap.output.text()).len(), 1);
    assert_eq!(common::get(&url, &[]).await.status(), 200);
}
