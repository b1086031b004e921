//! The automatic rollback window (`basic.rollback_window`): after an apply, each location's
//! share of 5xx answers under the new configuration is compared with its share over the same
//! length of time before the apply; when some location got worse by more than
//! `basic.rollback_threshold` percentage points, with at least `basic.rollback_min_requests`
//! requests since the apply, the previous configuration is applied again (through the same
//! apply path, so it is written back to the source and recorded in the history with the reason).
//!
//! The counts are the ones `/metrics` shows (`pingap_http_requests_total` per location), read
//! twice a second by a sampler thread that keeps one window of samples; the request path does
//! nothing extra. A location that had fewer than the minimum requests before the apply (or did
//! not exist) is compared with 0%.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Controller;
use crate::config::Snapshot;
use crate::observe::metrics::RequestTotals;
use crate::runtime::{RollbackPlan, Runtime};

/// How often counts are sampled and the window checked.
const TICK: Duration = Duration::from_millis(500);

/// Per-location counts at one moment.
type Counts = HashMap<Arc<str>, RequestTotals>;

/// The window of one controller.
pub struct Window {
    controller: Weak<Controller>,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    /// Recent samples, oldest first.
    samples: VecDeque<(Instant, Counts)>,
    /// How long samples are kept.
    keep: Duration,
    armed: Option<Armed>,
    sampler: bool,
}

/// A window open after an apply.
struct Armed {
    plan: RollbackPlan,
    previous: Snapshot,
    previous_version: Option<u64>,
    at: Instant,
    /// Counts at the apply.
    start: Counts,
    /// Each location's 5xx share before the apply, in percent.
    baseline: HashMap<Arc<str>, (f64, u64)>,
}

impl Window {
    /// The window of `controller`.
    pub fn new(controller: Weak<Controller>) -> Window {
        Window {
            controller,
            shared: Arc::new(Mutex::new(Shared::default())),
        }
    }

    /// Opens a window for the configuration just applied; `previous` is what it replaced.
    pub fn arm(&self, plan: RollbackPlan, previous: Snapshot, previous_version: Option<u64>) {
        let Some(controller) = self.controller.upgrade() else {
            return;
        };
        let now = Instant::now();
        let counts = counts(&controller.runtime().load());
        let mut shared = self.lock();
        shared.keep = plan.window;
        // The rates before the apply: from the oldest sample within one window.
        let since = now.checked_sub(plan.window).unwrap_or(now);
        let baseline = shared
            .samples
            .iter()
            .find(|(at, _)| *at >= since)
            .map(|(_, before)| {
                counts
                    .iter()
                    .map(|(name, now)| {
                        let then = before.get(name).copied().unwrap_or_default();
                        let delta = difference(*now, then);
                        (name.clone(), (percent(delta), delta.requests))
                    })
                    .collect()
            })
            .unwrap_or_default();
        shared.armed = Some(Armed {
            plan,
            previous,
            previous_version,
            at: now,
            start: counts,
            baseline,
        });
        drop(shared);
        self.start_sampling(plan.window);
    }

    /// Starts sampling the counts (once), so the first apply has rates to compare with.
    pub fn start_sampling(&self, window: Duration) {
        let mut shared = self.lock();
        shared.keep = shared.keep.max(window);
        if shared.sampler {
            return;
        }
        shared.sampler = true;
        drop(shared);
        let (controller, shared) = (self.controller.clone(), self.shared.clone());
        let spawned = std::thread::Builder::new()
            .name("rollback window".to_string())
            .spawn(move || sample(controller, shared));
        if let Err(e) = spawned {
            tracing::error!("cannot start the rollback window: {e}");
            self.lock().sampler = false;
        }
    }

    /// Closes the window, if open.
    pub fn disarm(&self) {
        self.lock().armed = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Samples the counts and checks the open window, until the controller is gone.
fn sample(controller: Weak<Controller>, shared: Arc<Mutex<Shared>>) {
    loop {
        std::thread::sleep(TICK);
        let Some(controller) = controller.upgrade() else {
            return;
        };
        let now = Instant::now();
        let counts = counts(&controller.runtime().load());
        let verdict = {
            let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
            let keep = shared.keep + TICK * 2;
            while shared
                .samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > keep)
            {
                shared.samples.pop_front();
            }
            shared.samples.push_back((now, counts.clone()));
            match shared
                .armed
                .as_ref()
                .map(|armed| judge(armed, &counts, now))
            {
                Some(Verdict::Open) | None => None,
                Some(Verdict::Kept) => {
                    shared.armed = None;
                    tracing::info!("rollback window closed: the configuration stays");
                    None
                }
                Some(Verdict::Worse(note)) => shared.armed.take().map(|armed| (armed, note)),
            }
        };
        if let Some((armed, note)) = verdict {
            let note = match armed.previous_version {
                Some(version) => format!("{note}; restores version {version}"),
                None => note,
            };
            controller.roll_back_automatically(armed.previous, note);
        }
    }
}

enum Verdict {
    Open,
    Kept,
    Worse(String),
}

fn judge(armed: &Armed, counts: &Counts, now: Instant) -> Verdict {
    let elapsed = now.duration_since(armed.at);
    for (name, total) in counts {
        let since = difference(*total, armed.start.get(name).copied().unwrap_or_default());
        if since.requests < armed.plan.min_requests {
            continue;
        }
        let (before, before_requests) = armed
            .baseline
            .get(name)
            .copied()
            .filter(|(_, requests)| *requests >= armed.plan.min_requests)
            .unwrap_or((0.0, 0));
        let after = percent(since);
        if after - before > armed.plan.threshold {
            return Verdict::Worse(format!(
                "location \"{name}\": {after:.1}% of {} requests answered 5xx in the {:.1}s after the apply, {before:.1}% of {before_requests} before (threshold {} points)",
                since.requests,
                elapsed.as_secs_f64(),
                armed.plan.threshold
            ));
        }
    }
    if elapsed >= armed.plan.window {
        Verdict::Kept
    } else {
        Verdict::Open
    }
}

/// The counts of every routed location of `runtime`.
fn counts(runtime: &Runtime) -> Counts {
    let mut counts = Counts::new();
    for server in &runtime.servers {
        for location in server.router.targets() {
            counts
                .entry(location.name.clone())
                .or_insert_with(|| location.metrics.totals());
        }
    }
    counts
}

fn difference(now: RequestTotals, then: RequestTotals) -> RequestTotals {
    RequestTotals {
        requests: now.requests.saturating_sub(then.requests),
        server_errors: now.server_errors.saturating_sub(then.server_errors),
    }
}

fn percent(totals: RequestTotals) -> f64 {
    if totals.requests == 0 {
        0.0
    } else {
        totals.server_errors as f64 * 100.0 / totals.requests as f64
    }
}
