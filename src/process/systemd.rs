//! systemd's readiness protocol (`Type=notify`, sd_notify(3)), over the datagram socket systemd
//! names in `NOTIFY_SOCKET`. Without that variable (not started by systemd) every call does
//! nothing.
//!
//! * `READY=1` once the listeners are bound and the configuration compiled: when the signal
//!   watch starts, after Pingora has started every service (and daemonized, with `-d`);
//! * `RELOADING=1` with `MONOTONIC_USEC` when a SIGHUP reload begins (systemd 253's
//!   `Type=notify-reload` wants the clock reading; older versions ignore it), then `READY=1`
//!   when it is over, applied or rejected;
//! * `STOPPING=1` when SIGTERM or SIGINT starts the drain (not when SIGQUIT hands the listeners
//!   over).
//!
//! Under systemd pingap applies no change by a graceful upgrade (see [`super::upgrade`]): the
//! service's main process stays the one systemd started.

use sd_notify::NotifyState;

/// Tells systemd the process serves, and shows `status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
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
