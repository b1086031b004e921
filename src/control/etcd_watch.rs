//! Watching an etcd source: each change of its configuration keys is applied through the apply
//! path, on a thread of its own (the watch's callback runs on the etcd client's runtime, which an
//! apply, reading etcd, must not block). Events that arrive while an apply runs are merged: one
//! more apply reads whatever the store holds by then.
//!
//! When etcd stops answering the running configuration stays; `pingap_config_source_up` drops to
//! 0 and an error is logged, and both recover when it answers again. After a compaction of the
//! revisions the watch had to resume from, everything is read again.

use std::sync::mpsc;

use crate::config::etcd::{EtcdSource, WatchEvent, WatchGuard};
use crate::observe::metrics::metrics;

/// A running etcd watch; dropping it stops it.
pub struct EtcdWatch {
    _guard: WatchGuard,
}

/// Watches `etcd` for changes after `revision`, calling `apply` with the trigger name.
pub fn start(etcd: &EtcdSource, revision: i64, apply: impl Fn(&str) + Send + 'static) -> EtcdWatch {
    let (events, received) = mpsc::channel::<WatchEvent>();
    let source = etcd.to_string();
    let spawned = std::thread::Builder::new()
        .name("etcd watch".to_string())
        .spawn(move || {
            // Ends when the watch (and with it the sender) is dropped.
            while let Ok(event) = received.recv() {
                let mut events = vec![event];
                events.extend(received.try_iter());
                let mut changed = false;
                for event in events {
                    match event {
                        WatchEvent::Changed { .. } => changed = true,
                        WatchEvent::Compacted { compact_revision } => {
                            tracing::warn!(
                                compact_revision,
                                "{source}: the watch was compacted; reading everything again"
                            );
                            changed = true;
                        }
                        WatchEvent::Unreachable(reason) => {
                            metrics().source_up(false);
                            tracing::error!(
                                "{source} is unreachable, keeping the running configuration: {reason}"
                            );
                        }
                        WatchEvent::Reachable => {
                            metrics().source_up(true);
                            tracing::info!("{source} answers again");
                        }
                    }
                }
                if changed {
                    apply("etcd watch");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the etcd watch: {e}");
    }
    let guard = etcd.watch(
        revision,
        Box::new(move |event| {
            let _ = events.send(event);
        }),
    );
    EtcdWatch { _guard: guard }
}
