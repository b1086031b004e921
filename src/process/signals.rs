//! Signals: SIGTERM and SIGINT shut down gracefully, SIGQUIT hands the listeners to a new
//! process (graceful upgrade), SIGHUP reloads the configuration, SIGUSR1 reopens the access logs
//! (after logrotate moved them).
//!
//! The handlers are registered when the process starts, before it reports that it listens, so a
//! signal sent right after that is never lost; they are read once Pingora runs (after it has
//! daemonized, if it does).

use std::sync::Mutex;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use super::reload::Reloader;

/// Turns signals into Pingora shutdowns and reloads.
pub struct SignalWatch {
    signals: Mutex<Option<Signals>>,
    reloader: Reloader,
}

/// Registers the handlers; signals that arrive from now on are queued until Pingora runs.
pub fn register() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1])
}

impl SignalWatch {
    /// Watches the `signals` registered earlier, reloading with `reloader` on SIGHUP.
    pub fn new(signals: Signals, reloader: Reloader) -> SignalWatch {
        SignalWatch {
            signals: Mutex::new(Some(signals)),
            reloader,
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
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
        while let Some(signal) = rx.recv().await {
            match signal {
                SIGHUP => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    self.reloader.reload_and_log();
                }
                SIGUSR1 => {
                    tracing::info!("SIGUSR1: reopening the access logs");
                    for sink in self.reloader.runtime().load().access_log_sinks() {
                        sink.reopen();
                    }
                }
                SIGQUIT => {
                    tracing::info!("SIGQUIT: handing the listeners over to the new process");
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ => {
                    tracing::info!(signal, "shutting down gracefully");
                    return ShutdownSignal::GracefulTerminate;
                }
            }
        }
        ShutdownSignal::GracefulTerminate
    }
}
