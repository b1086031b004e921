//! Shared harness for the end-to-end tests: the real `pingap` binary on ephemeral loopback ports
//! with a generated config, Rust echo backends, and an HTTP client.
//!
//! Listeners are configured as `127.0.0.1:0`; pingap binds them before it starts and logs
//! `listening on http://ADDR server=NAME`, which is how the harness learns the ports (no port is
//! ever guessed, so parallel tests cannot collide). Readiness is its `started` line; every wait
//! has a deadline; children are killed when the harness is dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod admin;
pub mod backend;
pub mod dns;
pub mod otlp;
pub mod pebble;
pub mod pki;
pub mod ports;
pub mod tls_client;
pub mod websocket;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use backend::Backend;

/// How long pingap may take to start.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pingap")
}

/// Output lines of a child process, with a way to wait for one.
#[derive(Clone, Default)]
pub struct Output {
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Output {
    fn capture(&self, stream: impl std::io::Read + Send + 'static) {
        let output = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lines, changed) = &*output.lines;
                lines.lock().unwrap().push(line);
                changed.notify_all();
            }
        });
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// Waits until a line containing `needle` appears; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_all(&[needle], timeout)
    }

    /// Waits for a line containing every one of `needles`; returns it.
    pub fn wait_for_all(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.lines;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(line) = guard
                .iter()
                .find(|l| needles.iter().all(|needle| l.contains(needle)))
            {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// A running pingap.
pub struct Pingap {
    child: Child,
    /// The bound address of each server.
    pub servers: HashMap<String, SocketAddr>,
    /// stdout and stderr, interleaved.
    pub output: Output,
    dir: tempfile::TempDir,
}

impl Pingap {
    /// Starts pingap with `config` written to a fresh directory; panics with the output if it
    /// does not start.
    pub fn start(config: &str) -> Pingap {
        Pingap::start_with(config, &[], &[])
    }

    /// Starts pingap with extra arguments and environment variables.
    pub fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Pingap {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("pingap.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = command();
        command.arg("-c").arg(&config_path).args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        Pingap::spawn(command, dir)
    }

    /// Starts pingap with `-c` pointing at an existing path.
    pub fn start_path(path: &Path) -> Pingap {
        let mut command = command();
        command.arg("-c").arg(path);
        Pingap::spawn(command, tempfile::tempdir().unwrap())
    }

    /// Starts pingap with no `-c` (the embedded default).
    pub fn start_default() -> Pingap {
        Pingap::spawn(command(), tempfile::tempdir().unwrap())
    }

    fn spawn(command: Command, dir: tempfile::TempDir) -> Pingap {
        let mut pingap = Pingap::launch(command, dir);
        pingap.wait_started();
        pingap
    }

    /// Starts the process without waiting for it to be ready (see [`Pingap::wait_started`]).
    pub fn launch(mut command: Command, dir: tempfile::TempDir) -> Pingap {
        // Its own process group, which a process it starts for a graceful upgrade joins: the
        // drop stops them all, so no test leaves a successor running.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn pingap");
        let output = Output::default();
        output.capture(child.stdout.take().unwrap());
        output.capture(child.stderr.take().unwrap());
        Pingap {
            child,
            servers: HashMap::new(),
            output,
            dir,
        }
    }

    /// The URL of the `[metrics]` endpoint, from the line that announces it.
    pub fn metrics_url(&self) -> String {
        self.announced_url("metrics on ")
    }

    /// The URL logged after `announcement` (`"metrics on "`, `"admin API on "`).
    pub fn announced_url(&self, announcement: &str) -> String {
        let needle = format!("{announcement}http");
        let line =
            tokio::task::block_in_place(|| self.output.wait_for(&needle, Duration::from_secs(10)))
                .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", self.output.text()));
        line.split(announcement)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("a URL after the announcement")
            .to_string()
    }

    /// Waits for the `started` line and reads the listening addresses.
    pub fn wait_started(&mut self) {
        if self.output.wait_for(" started", START_DEADLINE).is_none() {
            panic!("pingap did not start:\n{}", self.output.text());
        }
        for line in self.output.text().lines() {
            if let Some((addr, server)) = parse_listening(line) {
                self.servers.insert(server, addr);
            }
        }
    }

    /// The address of server `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .servers
            .get(name)
            .unwrap_or_else(|| panic!("no server {name}: {:?}", self.servers))
    }

    /// `http://ADDR{path}` of server `name`.
    pub fn url(&self, name: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr(name))
    }

    /// The config file pingap was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pingap.toml")
    }

    /// The directory the config file is in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Pingap {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- pingap output ---\n{}\n---", self.output.text());
        }
    }
}

/// A `pingap` command with a clean environment (no `RUST_LOG` or `PINGAP_*` from the caller, nor
/// the variables that tell pingap it runs as a systemd service).
pub fn command() -> Command {
    let mut command = Command::new(binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("PINGAP_")
            || ["RUST_LOG", "NOTIFY_SOCKET", "INVOCATION_ID"].contains(&name.as_str())
        {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `pingap` to completion (for `-t` and failing starts) and returns its exit status and
/// its stdout and stderr, concatenated.
pub fn run_to_exit(mut command: Command) -> (ExitStatus, String) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let read_all = |mut stream: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let Some(status) = wait_exit(&mut child, START_DEADLINE) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "pingap did not exit:\n{}{}",
            stdout.join().unwrap(),
            stderr.join().unwrap()
        );
    };
    (status, stdout.join().unwrap() + &stderr.join().unwrap())
}

/// Writes `config` to a temporary file and runs `pingap -t -c` on it.
pub fn check_config(config: &str) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pingap.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = command();
    command.arg("-t").arg("-c").arg(&path);
    run_to_exit(command)
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn parse_listening(line: &str) -> Option<(SocketAddr, String)> {
    let rest = line.split("listening on ").nth(1)?;
    let url = rest.split_whitespace().next()?;
    let addr = url.split("://").nth(1)?.parse().ok()?;
    let server = rest.split("server=").nth(1)?.split_whitespace().next()?;
    Some((addr, server.to_string()))
}

/// An HTTP client that talks to loopback only, never through a proxy.
pub fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

/// The builder of [`client`], to adjust.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
}

/// Sends a request with `method` and `headers` to `url`.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().request(method.parse().unwrap(), url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// GETs `url` with `headers`.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    send("GET", url, headers).await
}

/// GETs `url` asking for JSON and returns the status and the JSON body (pingap's error pages
/// are JSON for such clients).
pub async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut all = vec![("accept", "application/json")];
    all.extend_from_slice(headers);
    let response = get(url, &all).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Sends raw bytes (a request with `Connection: close`) and returns the status and body of a
/// `Content-Length` response.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&reply[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, reply[split + 4..].to_vec())
}

/// The value of the first series of the `/metrics` page at `url` whose line starts with `name`.
pub async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = get(url, &[]).await.text().await.ok()?;
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().last()?.parse().ok())
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// A loopback port on which connections are refused: a socket bound but not listening, held
/// for as long as the value lives, so no other test can take the port.
pub struct RefusingPort {
    _socket: socket2::Socket,
    /// The address.
    pub addr: SocketAddr,
}

impl RefusingPort {
    /// Reserves one.
    pub fn new() -> RefusingPort {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        RefusingPort {
            _socket: socket,
            addr,
        }
    }
}
