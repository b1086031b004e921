//! systemd's readiness protocol (`Type=notify`, sd_notify(3)), over the datagram socket systemd
//! names in `NOTIFY_SOCKET`. Without that variable (not started by systemd) every call does
//! nothing.
//!
//! * `READY=1` once the listeners are bound and the configuration compiled: when the signal
//!   watch starts, after Pingora has started every service (and daemonized, with `-d`);
//! * `RELOADING=1` with `MONOTONIC_USEC` when a SIGHUP reload begins (systemd 253's
//!   `Type=notify-reload` wants the clock reading; older versions ignore it), then `READY=1`
//!   when it is over, applied or rejected;
//! * `STOPPING=1` when SIGTERM or SIGINT starts the drain. A graceful upgrade sends none: the
//!   service goes on in the new process.
//!
//! Each `READY=1` at start also says `MAINPID=` this process: in a graceful upgrade (a listener
//! change applied by a new process, or `pingap -u`), the new process becomes the service's main
//! process before the old one exits, so systemd follows the hand-over instead of taking the old
//! process's exit for the service's end. systemd accepts that message from a process other than
//! the main one only with `NotifyAccess=all` (docker/pingap.service sets it).

use sd_notify::NotifyState;

/// Tells systemd this process serves, as the service's main process, and shows `status`.
pub fn started(status: &str) {
    send(&[
        NotifyState::MainPid(std::process::id()),
        NotifyState::Ready,
        NotifyState::Status(status),
    ]);
}

/// Tells systemd a reload begins.
pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ];
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.push(now),
        Err(e) => tracing::warn!("cannot read the monotonic clock for systemd: {e}"),
    }
    send(&states);
}

/// Tells systemd a reload is over, and shows `status`.
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the process is stopping (draining).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: finishing the requests in flight"),
    ]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}
