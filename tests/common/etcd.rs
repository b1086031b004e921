//! A private etcd for the tests: Debian's `/usr/bin/etcd` with a temporary data directory on
//! free loopback ports, ready when `/health` says so, killed when dropped. Its log is kept in
//! the data directory's parent and shown when it does not start.
//!
//! With [`Tls`] it serves clients over TLS and requires client certificates; readiness is then
//! its "ready to serve client requests" log line.
//!
//! Its ports are free ones below the kernel's ephemeral range (see [`reserved_port`]), so that
//! they stay free while etcd is down between a kill and a restart; if etcd still cannot bind
//! one at its start (another test reserved it meanwhile), it is started again on new ports.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Also loaded as `common::ports` by the tests that use both harnesses; it holds only a function.
#[allow(clippy::duplicate_mod)]
#[path = "ports.rs"]
mod ports;
use ports::reserved_port;

/// The etcd binary of Debian's `etcd-server`.
pub const ETCD: &str = "/usr/bin/etcd";
/// How long etcd may take to become healthy.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// PEM files for serving clients over TLS and requiring their certificates.
#[derive(Clone)]
pub struct Tls {
    /// The CA clients' certificates must be signed by.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// A running (or killed, to be restarted) etcd.
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<Tls>,
}

impl EtcdServer {
    /// Starts a fresh etcd; panics with its log if it does not become healthy.
    pub fn start() -> EtcdServer {
        EtcdServer::start_with(None)
    }

    /// Starts a fresh etcd serving clients over TLS with client certificates.
    pub fn start_tls(tls: Tls) -> EtcdServer {
        EtcdServer::start_with(Some(tls))
    }

    fn start_with(tls: Option<Tls>) -> EtcdServer {
        let mut dir = tempfile::tempdir().unwrap();
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut server = EtcdServer {
                child: None,
                dir,
                client_port: reserved_port(),
                peer_port: reserved_port(),
                tls: tls.clone(),
            };
            if server.client_port == server.peer_port {
                dir = server.into_dir();
                continue;
            }
            if server.launch() {
                return server;
            }
            last_log = server.log();
            dir = server.into_dir();
            // A failed start may have left a half-made data directory: start from scratch.
            let _ = std::fs::remove_dir_all(dir.path().join("data"));
        }
        panic!("etcd did not start on any ports tried:\n{last_log}");
    }

    /// Gives the directory back without deleting it (for another attempt).
    fn into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let empty = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, empty)
    }

    /// `127.0.0.1:PORT` of the client URL.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// An `etcd://` URL for `prefix` (with its leading '/').
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}{prefix}", self.endpoint())
    }

    /// Kills etcd (its data stays, for [`EtcdServer::restart`]).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again with the same data and ports; panics with its log if it does not
    /// become healthy.
    pub fn restart(&mut self) {
        self.kill();
        // The port may take a moment to be free again: retry until the deadline.
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if self.launch() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("etcd did not restart:\n{}", self.log());
    }

    /// What etcd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Starts the process and waits for health; false if it exits or is not healthy in time.
    fn launch(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let log_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(ETCD);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--name", "t"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {ETCD}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            let ready = match self.tls {
                None => healthy(self.client_port),
                // No TLS client here: the log says when it serves.
                Some(_) => self
                    .log()
                    .get(log_start..)
                    .is_some_and(|log| log.contains("ready to serve client requests")),
            };
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether etcd's `/health` on `port` answers `"health":"true"`.
fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}
