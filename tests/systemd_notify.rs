//! systemd's readiness protocol through the binary: a Unix datagram socket named by
//! `NOTIFY_SOCKET` plays systemd's side while pingap starts (`READY=1` once it serves), reloads on SIGHUP (`RELOADING=1` with `MONOTONIC_USEC`, then `READY=1`, whether
//! the configuration was applied or rejected), drains on SIGTERM (`STOPPING=1`), and refuses a
//! listener change, which would need a process systemd does not follow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Pingap, get};
use nix::sys::signal::Signal;

/// How long a notification may take (a debug build compiling a configuration).
const DEADLINE: Duration = Duration::from_secs(30);

/// systemd's end of the notification socket.
struct Systemd {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// One notification: its `KEY=value` lines.
#[derive(Debug)]
struct Message(Vec<(String, String)>);

impl Message {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Systemd {
    fn new() -> Systemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Systemd {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The environment that points pingap at this socket.
    fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap())
    }

    /// The next notification, if one comes within `timeout`.
    fn next_within(&self, timeout: Duration) -> Option<Message> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buffer = [0u8; 4096];
        let length = tokio::task::block_in_place(|| self.socket.recv(&mut buffer)).ok()?;
        let text = std::str::from_utf8(&buffer[..length]).unwrap();
        Some(Message(
            text.lines()
                .map(|line| {
                    let (key, value) = line.split_once('=').unwrap();
                    (key.to_string(), value.to_string())
                })
                .collect(),
        ))
    }

    /// The next notification; it must carry `state` (e.g. `READY`) set to 1.
    fn expect(&self, state: &str, pingap: &Pingap) -> Message {
        let message = self
            .next_within(DEADLINE)
            .unwrap_or_else(|| panic!("no {state}=1 notification:\n{}", pingap.output.text()));
        assert_eq!(message.get(state), Some("1"), "{message:?}");
        message
    }

    /// The notifications already sent (none is on its way: their sender has exited).
    fn pending(&self) -> Vec<Message> {
        std::iter::from_fn(|| self.next_within(Duration::from_millis(1))).collect()
    }
}

/// A server answering `body`, with `basic` settings.
fn config(basic: &str, body: &str) -> String {
    format!(
        "[basic]\n{basic}\n\
         [plugins.hello]\ntype = 'mock'\nbody = '{body}'\n\
         [locations.hello]\nplugins = ['hello']\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['hello']\nhealth_path = '/healthz'\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_start_reloading_around_sighup_and_stopping_when_the_drain_begins() {
    let systemd = Systemd::new();
    let config = |body| config("shutdown_delay = '60s'", body);
    let mut pingap = Pingap::start_with(&config("first"), &[], &[systemd.env()]);

    // Ready, and serving at that point.
    let ready = systemd.expect("READY", &pingap);
    assert_eq!(
        ready.get("STATUS"),
        Some("serving configuration generation 1")
    );
    let url = pingap.url("main", "/");
    assert_eq!(get(&url, &[]).await.text().await.unwrap(), "first");

    // A reload that applies: RELOADING with the monotonic clock, then READY once it serves.
    std::fs::write(pingap.config_path(), config("second")).unwrap();
    pingap.signal(Signal::SIGHUP);
    let reloading = systemd.expect("RELOADING", &pingap);
    let first_clock: u64 = reloading.get("MONOTONIC_USEC").unwrap().parse().unwrap();
    assert!(first_clock > 0);
    let reloaded = systemd.expect("READY", &pingap);
    assert_eq!(
        reloaded.get("STATUS"),
        Some("serving configuration generation 2")
    );
    assert_eq!(get(&url, &[]).await.text().await.unwrap(), "second");

    // A rejected one ends in READY too: the running configuration still serves.
    std::fs::write(pingap.config_path(), "[servers.main]\naddr = 'nowhere'\n").unwrap();
    pingap.signal(Signal::SIGHUP);
    let reloading = systemd.expect("RELOADING", &pingap);
    let second_clock: u64 = reloading.get("MONOTONIC_USEC").unwrap().parse().unwrap();
    assert!(second_clock > first_clock);
    let kept = systemd.expect("READY", &pingap);
    assert_eq!(
        kept.get("STATUS"),
        Some("serving configuration generation 2")
    );
    assert_eq!(get(&url, &[]).await.text().await.unwrap(), "second");

    // SIGTERM: STOPPING as the drain begins (the health path answers 503 during the delay);
    // a second SIGTERM ends the delay and the process exits cleanly.
    pingap.signal(Signal::SIGTERM);
    systemd.expect("STOPPING", &pingap);
    let health = get(&pingap.url("main", "/healthz"), &[]).await;
    assert_eq!(health.status(), 503);
    pingap.signal(Signal::SIGTERM);
    let status = pingap.wait_exit(DEADLINE).expect("pingap exits");
    assert!(status.success(), "{status:?}\n{}", pingap.output.text());
    let after: Vec<_> = systemd.pending();
    assert!(after.is_empty(), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_change_is_rejected_under_systemd_and_the_service_stays_ready() {
    let systemd = Systemd::new();
    let dir = tempfile::tempdir().unwrap();
    let basic = format!(
        "upgrade_sock = '{}'",
        dir.path().join("upgrade.sock").display()
    );
    let mut pingap = Pingap::start_with(&config(&basic, "hello"), &[], &[systemd.env()]);
    systemd.expect("READY", &pingap);

    // A new listener would need a new process, which systemd would not follow.
    std::fs::write(
        pingap.config_path(),
        config(&basic, "hello") + "[servers.second]\naddr = '127.0.0.1:0'\nlocations = ['hello']\n",
    )
    .unwrap();
    pingap.signal(Signal::SIGHUP);
    systemd.expect("RELOADING", &pingap);
    let ready = systemd.expect("READY", &pingap);
    assert_eq!(
        ready.get("STATUS"),
        Some("serving configuration generation 1")
    );
    assert!(
        pingap
            .output
            .wait_for("restart the service to apply it", DEADLINE)
            .is_some(),
        "{}",
        pingap.output.text()
    );
    assert_eq!(
        pingap.output.count(" started"),
        1,
        "{}",
        pingap.output.text()
    );
    assert_eq!(
        get(&pingap.url("main", "/"), &[])
            .await
            .text()
            .await
            .unwrap(),
        "hello"
    );

    pingap.signal(Signal::SIGTERM);
    systemd.expect("STOPPING", &pingap);
    let status = pingap.wait_exit(DEADLINE).expect("pingap exits");
    assert!(status.success(), "{status:?}");
}
