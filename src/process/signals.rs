//! Signals: SIGTERM and SIGINT shut down gracefully, SIGQUIT hands the listeners to a new
//! process (graceful upgrade), SIGHUP reloads the configuration, SIGUSR1 reopens the access logs
//! (after logrotate moved them). A configuration change that needs a graceful upgrade ends the
//! process the way SIGQUIT does, once the new process is ready to take the listeners.
//!
//! With `basic.shutdown_delay`, SIGTERM first only marks the process as draining — the health
//! endpoints answer 503 while the listeners still accept — and the shutdown starts when the
//! delay is over (or at a second SIGTERM/SIGINT).
//!
//! The handlers are registered when the process starts, before it reports that it listens, so a
//! signal sent right after that is never lost; they are read once Pingora runs (after it has
//! daemonized, if it does).
//!
//! Under systemd the watch also reports the service's state ([`super::systemd`]): ready when it
//! starts, reloading around a SIGHUP, stopping when the drain begins.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use super::systemd;
use crate::control::{Controller, Record};
use crate::proxy::InFlight;

/// Turns signals into Pingora shutdowns and reloads.
pub struct SignalWatch {
    signals: Mutex<Option<Signals>>,
    controller: Arc<Controller>,
    upgrade_requested: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<()>>>,
    in_flight: Arc<InFlight>,
    shutdown_delay: Duration,
}

/// Registers the handlers; signals that arrive from now on are queued until Pingora runs.
pub fn register() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1])
}

impl SignalWatch {
    /// Watches the `signals` registered earlier, applying the source with `controller` on
    /// SIGHUP, and hands over when `upgrade_requested` says so.
    /// SIGTERM marks `in_flight` as draining and waits `shutdown_delay` before the shutdown.
    pub fn new(
        signals: Signals,
        controller: Arc<Controller>,
        upgrade_requested: tokio::sync::mpsc::UnboundedReceiver<()>,
        in_flight: Arc<InFlight>,
        shutdown_delay: Duration,
    ) -> SignalWatch {
        SignalWatch {
            signals: Mutex::new(Some(signals)),
            controller,
            upgrade_requested: Mutex::new(Some(upgrade_requested)),
            in_flight,
            shutdown_delay,
        }
    }
}

impl SignalWatch {
    /// What the process serves, for systemd's status line.
    fn serving(&self) -> String {
        format!(
            "serving configuration generation {}",
            self.controller.runtime().load().generation
        )
    }
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        // Pingora asks once it has started every service: the listeners were bound before.
        systemd::ready(&self.serving());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let signals = self.signals.lock().ok().and_then(|mut s| s.take());
        if let Some(mut signals) = signals {
            std::thread::spawn(move || {
                for signal in signals.forever() {
                    if tx.send(signal).is_err() {
                        break;
                    }
                }
            });
        }
        let mut upgrade_requested = self
            .upgrade_requested
            .lock()
            .ok()
            .and_then(|mut r| r.take());
        loop {
            let signal = tokio::select! {
                signal = rx.recv() => signal,
                Some(()) = async {
                    match upgrade_requested.as_mut() {
                        Some(requested) => requested.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    tracing::info!("handing the listeners over to the new process");
                    return ShutdownSignal::GracefulUpgrade;
                }
            };
            let Some(signal) = signal else { break };
            match signal {
                SIGHUP => {
                    tracing::info!("SIGHUP: applying the configuration");
                    systemd::reloading();
                    let controller = self.controller.clone();
                    // The apply reads files (or etcd) and compiles: off the async threads.
                    let _ = tokio::task::spawn_blocking(move || {
                        controller.apply_and_log(Record::new("sighup"), false)
                    })
                    .await;
                    systemd::ready(&self.serving());
                }
                SIGUSR1 => {
                    tracing::info!("SIGUSR1: reopening the access logs");
                    for sink in self.controller.runtime().load().access_log_sinks() {
                        sink.reopen();
                    }
                }
                SIGQUIT => {
                    tracing::info!("SIGQUIT: handing the listeners over to the new process");
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ => {
                    systemd::stopping();
                    self.in_flight.start_draining();
                    if !self.shutdown_delay.is_zero() {
                        tracing::info!(
                            signal,
                            delay = ?self.shutdown_delay,
                            "draining: health checks answer 503; the listeners close when the shutdown delay is over"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(self.shutdown_delay) => {}
                            Some(SIGTERM | SIGINT) = rx.recv() => {}
                        }
                    }
                    tracing::info!(signal, "shutting down gracefully");
                    return ShutdownSignal::GracefulTerminate;
                }
            }
        }
        ShutdownSignal::GracefulTerminate
    }
}
