//! Applying a change the running process cannot take (a listener added, removed or moved, a
//! process setting changed): pingap starts itself again in upgrade mode (`-u`) with the same
//! command line, waits until the new process is ready to receive the listening sockets, and then
//! hands them over the way SIGQUIT does. The kernel keeps each socket open throughout, so no
//! connection is refused; the old process finishes its requests and exits.
//!
//! Before anything starts, the addresses the new configuration adds are bound once to check they
//! are free: a new process that could not listen would fail after the old one stopped
//! accepting.
//!
//! A supervised process does not upgrade itself, because its supervisor follows the old process:
//! the container's main process (pid 1), whose exit ends the container, new process included;
//! and a systemd service, where the new process is not systemd's child, so that systemd does not
//! wait for it on stop but kills it without a drain (whatever `MAINPID=` says). The change is
//! rejected with a message saying to restart the container or the service, and the running
//! configuration stays.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::control::{UpgradeHook, UpgradeRequest};

/// How long the new process may take to be ready for the sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The environment variable that tells the new process the addresses the old one listens on
/// (`server=ip:port;…`), so a listener configured with port 0 keeps its port.
const INHERITED_ADDRS: &str = "PINGAP_UPGRADE_ADDRS";

/// The name the metrics endpoint has among the inherited addresses.
pub const METRICS: &str = "[metrics]";
/// The name the admin listener is handed over under.
pub const ADMIN: &str = "[admin]";

/// The hook that upgrades this process, whose listeners (by server name) are `bound`;
/// `handover` tells the signal watch to hand the listeners over.
pub fn hook(bound: Vec<(String, SocketAddr)>, handover: UnboundedSender<()>) -> UpgradeHook {
    Box::new(move |request: &UpgradeRequest| {
        if let Some(supervised) = supervised() {
            return Err(supervised.to_string());
        }
        for addr in &request.listeners {
            let held = bound
                .iter()
                .any(|(_, held)| held == addr || (addr.port() == 0 && held.ip() == addr.ip()));
            if !held && addr.port() != 0 {
                std::net::TcpListener::bind(addr)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            }
        }
        let inherited = bound
            .iter()
            .map(|(name, addr)| format!("{name}={addr}"))
            .collect::<Vec<_>>()
            .join(";");
        start_new_process(&request.upgrade_sock, &inherited)?;
        handover
            .send(())
            .map_err(|_| "the process is shutting down already".to_string())
    })
}

/// Why this process's supervisor would not follow a graceful upgrade, if it would not.
fn supervised() -> Option<&'static str> {
    if std::process::id() == 1 {
        return Some(
            "pingap is the container's main process (pid 1), which a graceful upgrade would end: restart the container to apply it",
        );
    }
    // systemd sets INVOCATION_ID for every service, NOTIFY_SOCKET for Type=notify ones.
    if ["INVOCATION_ID", "NOTIFY_SOCKET"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        return Some(
            "pingap runs as a systemd service, which would not follow the new process of a graceful upgrade: restart the service to apply it",
        );
    }
    None
}

/// Starts `pingap -u` with this process's arguments and waits until it listens on
/// `upgrade_sock` for the sockets.
fn start_new_process(upgrade_sock: &Path, inherited: &str) -> Result<(), String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot find pingap: {e}"))?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !args.iter().any(|arg| arg == "-u" || arg == "--upgrade") {
        args.push("-u".into());
    }
    // A socket file left from an earlier upgrade would look ready.
    match std::fs::remove_file(upgrade_sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", upgrade_sock.display())),
    }
    let mut child = Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .env(INHERITED_ADDRS, inherited)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    tracing::info!(pid = child.id(), "started the new process");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if upgrade_sock.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the new process exited ({status}) before taking the listeners; its log says why"
            ));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the new process was not ready for the listeners within {}s",
                READY_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The addresses the old process listened on, by server name (empty outside an upgrade pingap
/// started itself).
pub fn inherited_addrs() -> Vec<(String, SocketAddr)> {
    let Ok(value) = std::env::var(INHERITED_ADDRS) else {
        return Vec::new();
    };
    value
        .split(';')
        .filter_map(|entry| {
            let (name, addr) = entry.split_once('=')?;
            Some((name.to_string(), addr.parse().ok()?))
        })
        .collect()
}

/// `addr`, or for port 0 the address server `name` had in the old process on the same IP.
pub fn keep_port(inherited: &[(String, SocketAddr)], name: &str, addr: SocketAddr) -> SocketAddr {
    if addr.port() != 0 {
        return addr;
    }
    inherited
        .iter()
        .find(|(server, old)| server == name && old.ip() == addr.ip())
        .map_or(addr, |(_, old)| *old)
}
