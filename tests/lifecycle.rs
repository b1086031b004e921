//! The process: starting on the embedded default, failing fast when a listener cannot bind,
//! graceful shutdown with requests in flight, and reloading on SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::backend::Echo;
use common::{Backend, Pingap, client, command, run_to_exit};
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_configuration_serves_a_welcome_page() {
    // The embedded default listens on 127.0.0.1:6188; run the same file on a fresh port.
    let default =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/default.toml"))
            .unwrap();
    assert!(default.contains("127.0.0.1:6188"));
    let pingap = Pingap::start(&default.replace("127.0.0.1:6188", "127.0.0.1:0"));
    let response = client()
        .get(pingap.url("welcome", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let page = response.text().await.unwrap();
    assert!(page.contains("<h1>Welcome to pingap</h1>"), "{page}");
}

#[test]
fn an_address_in_use_ends_the_start_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pingap.toml");
    std::fs::write(
        &path,
        format!(
            "[servers.main]\naddr = '{addr}'\nlocations = ['page']\n[locations.page]\nplugins = ['page']\n\
             [plugins.page]\ntype = 'mock'\nbody = 'x'\n"
        ),
    )
    .unwrap();
    let mut start = command();
    start.arg("-c").arg(&path);
    let began = Instant::now();
    let (status, output) = run_to_exit(start);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!(
            "server \"main\" cannot listen on {addr}: Address already in use"
        )),
        "{output}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "no retrying for 30 s"
    );
}

fn proxy_config(backend: &Backend, extra_basic: &str) -> String {
    format!(
        "[basic]\n{extra_basic}\n[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
        backend.addr
    )
}

/// A GET of `url` in the background, which the echo backend answers after `delay_ms`.
fn request_held_for(
    url: String,
    delay_ms: u64,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    tokio::spawn(async move {
        client()
            .get(url)
            .header("x-echo-delay-ms", delay_ms.to_string())
            .send()
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish() {
    // Also with a single-threaded scheduler per worker thread, whose drain cannot use
    // `block_in_place` for its final flush.
    for (signal, basic) in [
        (Signal::SIGTERM, ""),
        (Signal::SIGINT, ""),
        (Signal::SIGTERM, "work_stealing = false"),
    ] {
        let backend = Backend::start("slow").await;
        let mut pingap = Pingap::start(&proxy_config(&backend, basic));
        let url = pingap.url("main", "/");
        let in_flight = request_held_for(url, 1000);
        assert!(backend.wait_for_hits(1, Duration::from_secs(10)).await);
        pingap.signal(signal);
        assert!(
            pingap
                .output
                .wait_for("shutting down", Duration::from_secs(10))
                .is_some(),
            "{signal}"
        );
        let response = in_flight.await.unwrap().unwrap();
        assert_eq!(response.status(), 200, "{signal}");
        let echo: Echo = response.json().await.unwrap();
        assert_eq!(echo.backend, "slow");
        let status = pingap
            .wait_exit(Duration::from_secs(10))
            .expect("exits once drained");
        assert!(status.success(), "{signal}: {status:?}");
        assert!(
            pingap
                .output
                .wait_for("every request finished", Duration::from_secs(10))
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_when_the_shutdown_begins() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start("slow").await;
    let mut pingap = Pingap::start(&proxy_config(&backend, "keepalive_timeout = '60s'"));
    // A connection kept alive after one request, now waiting for its next one.
    let mut idle = tokio::net::TcpStream::connect(pingap.addr("main"))
        .await
        .unwrap();
    // 204: an answer without a body, complete with its head.
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\nx-echo-status: 204\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !answer.ends_with(b"\r\n\r\n") {
        let read = idle.read(&mut buf).await.unwrap();
        assert!(read > 0, "answered: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..read]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 204"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A request in flight keeps the process draining for a while after the signal.
    let url = pingap.url("main", "/slow");
    let in_flight = request_held_for(url, 5000);
    assert!(backend.wait_for_hits(2, Duration::from_secs(10)).await);
    let signalled = Instant::now();
    pingap.signal(Signal::SIGTERM);
    // The idle connection is closed as the drain begins, not when the process exits.
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("closed within 10 s");
    assert_eq!(
        closed.unwrap_or(0),
        0,
        "no answer, just the end of the stream"
    );
    // Not at the exit, which waits for the request in flight (5 s).
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "closed {:?} after the signal",
        signalled.elapsed()
    );
    assert!(!in_flight.is_finished(), "closed before the drain ended");
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert!(pingap.wait_exit(Duration::from_secs(10)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graceful_shutdown_timeout_bounds_the_wait() {
    let backend = Backend::start("stuck").await;
    let mut pingap = Pingap::start(&proxy_config(
        &backend,
        "graceful_shutdown_timeout = '300ms'",
    ));
    let url = pingap.url("main", "/");
    let in_flight = request_held_for(url, 20000);
    assert!(backend.wait_for_hits(1, Duration::from_secs(10)).await);
    let signalled = Instant::now();
    pingap.signal(Signal::SIGTERM);
    let status = pingap
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the timeout");
    assert!(status.success());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        pingap
            .output
            .wait_for("graceful_shutdown_timeout reached", Duration::from_secs(10))
            .is_some()
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the stuck request is cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_config_keeps_the_running_one() {
    let (first, second) = (
        Backend::start("first").await,
        Backend::start("second").await,
    );
    let pingap = Pingap::start(&proxy_config(&first, ""));
    let client = client();
    let backend_of = |client: reqwest::Client, url: String| async move {
        let echo: Echo = client.get(url).send().await.unwrap().json().await.unwrap();
        echo.backend
    };
    let url = pingap.url("main", "/");
    assert_eq!(backend_of(client.clone(), url.clone()).await, "first");

    std::fs::write(pingap.config_path(), proxy_config(&second, "")).unwrap();
    pingap.signal(Signal::SIGHUP);
    assert!(
        pingap
            .output
            .wait_for("configuration applied", Duration::from_secs(10))
            .is_some(),
        "{}",
        pingap.output.text()
    );
    assert_eq!(backend_of(client.clone(), url.clone()).await, "second");

    std::fs::write(
        pingap.config_path(),
        proxy_config(&first, "").replace("upstream = 'api'", "upstream = 'missing'"),
    )
    .unwrap();
    pingap.signal(Signal::SIGHUP);
    let rejected = pingap
        .output
        .wait_for("rejected", Duration::from_secs(10))
        .expect("the bad reload is reported");
    assert!(rejected.contains("keeping the running one"), "{rejected}");
    assert!(
        pingap
            .output
            .wait_for(
                "locations.api.upstream: no upstream named \"missing\"",
                Duration::from_secs(10)
            )
            .is_some(),
        "{}",
        pingap.output.text()
    );
    assert_eq!(backend_of(client.clone(), url.clone()).await, "second");

    assert_eq!(backend_of(client, url).await, "second");
}

/// Kills a daemonized pingap (not a child of the test) when dropped.
struct Daemon(nix::unistd::Pid);

impl Daemon {
    fn alive(&self) -> bool {
        nix::sys::signal::kill(self.0, None).is_ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
    }
}

async fn wait_until(timeout: Duration, check: impl Fn() -> bool) -> bool {
    common::eventually(timeout, check).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_mode_writes_a_pid_file_and_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pingap.pid");
    let error_log = dir.path().join("error.log");
    let config = format!(
        "[basic]\npid_file = '{}'\nerror_log = '{}'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['page']\n[locations.page]\nplugins = ['page']\n\
         [plugins.page]\ntype = 'mock'\nbody = 'from the daemon'\n",
        pid_file.display(),
        error_log.display()
    );
    let mut pingap = Pingap::start_with(&config, &["-d"], &[]);
    let parent = pingap
        .wait_exit(Duration::from_secs(10))
        .expect("the parent exits");
    assert!(parent.success());
    assert!(wait_until(Duration::from_secs(10), || pid_file.exists()).await);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let daemon = Daemon(nix::unistd::Pid::from_raw(pid));
    assert_ne!(pid, pingap.pid(), "the daemon is a new process");
    assert!(daemon.alive());

    let body = client()
        .get(pingap.url("main", "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "from the daemon");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            &error_log
        )
        .is_ok_and(|log| log.contains("Starting service")))
        .await,
        "the daemon logs to basic.error_log"
    );

    nix::sys::signal::kill(daemon.0, Signal::SIGTERM).unwrap();
    assert!(wait_until(Duration::from_secs(10), || !daemon.alive()).await);
    assert!(!pid_file.exists(), "the pid file is removed on exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_hands_the_listener_over_without_failed_requests() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let config = |addr: &str| {
        format!(
            "[basic]\nupgrade_sock = '{}'\n[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
             [servers.main]\naddr = '{addr}'\nlocations = ['api']\n",
            sock.display(),
            backend.addr
        )
    };
    let mut old = Pingap::start(&config("127.0.0.1:0"));
    let addr = old.addr("main");
    // The new process asks for the very address the old one bound.
    let new_config = dir.path().join("new.toml");
    std::fs::write(&new_config, config(&addr.to_string())).unwrap();
    let mut upgrade = command();
    upgrade.arg("-u").arg("-c").arg(&new_config);
    let mut new = Pingap::launch(upgrade, tempfile::tempdir().unwrap());

    // Traffic on fresh connections throughout the hand-over.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let client = common::client_builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match client.get(format!("http://{addr}/")).send().await {
                    Ok(response) if response.status() == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };

    assert!(
        wait_until(Duration::from_secs(10), || sock.exists()).await,
        "the new process waits for the listeners"
    );
    old.signal(Signal::SIGQUIT);
    new.wait_started();
    assert_eq!(new.addr("main"), addr);
    let status = old
        .wait_exit(Duration::from_secs(20))
        .expect("the old process exits");
    assert!(status.success());
    // A few more requests, now only the new process can answer.
    let served_before = backend.hits();
    assert!(
        backend
            .wait_for_hits(served_before + 5, Duration::from_secs(10))
            .await
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = traffic.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 10, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_with_per_module_levels() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pingap.toml");
    std::fs::write(
        &config,
        format!(
            "[basic]\nlog_format = 'json'\nlog_level = 'warn,pingap::process=info,pingora_core::server=info'\n\
             [upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
             [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut cmd = command();
    cmd.arg("-c").arg(&config).env_remove("RUST_LOG");
    let pingap = Pingap::launch(cmd, tempfile::tempdir().unwrap());
    let started = tokio::task::block_in_place(|| {
        pingap.output.wait_for("started\"", Duration::from_secs(10))
    });
    assert!(started.is_some(), "{}", pingap.output.text());
    let lines: Vec<serde_json::Value> = pingap
        .output
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let listening = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on http://"))
        })
        .expect("the listening line");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "pingap::process");
    assert_eq!(listening["fields"]["server"], "main");
    assert!(listening["timestamp"].is_string());
    // Pingora logs through the `log` crate: bridged into the same JSON lines.
    assert!(lines.iter().any(from_pingora_server), "{lines:#?}");
    // Other modules log at warn and above only (pingap's configuration summary is info).
    assert!(
        lines.iter().all(|l| l["level"] != "INFO"
            || l["target"] == "pingap::process"
            || from_pingora_server(l)),
        "{lines:#?}"
    );
    assert!(!pingap.output.text().contains("configuration from"));
}

fn from_pingora_server(line: &serde_json::Value) -> bool {
    line["target"]
        .as_str()
        .is_some_and(|t| t.starts_with("pingora_core::server"))
}
