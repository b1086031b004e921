//! What requests know about a backend's health: the verdict of the active check, passive ejection
//! (nginx's `max_fails` failures within `fail_timeout` take a backend out for `fail_timeout`) and
//! a per-backend circuit breaker (closed → open after consecutive failures → half-open after
//! `circuit_breaker_open_for`, one probe request at a time → closed after enough successes).
//!
//! Selection reads a few atomics per backend and never locks; the bookkeeping after a failure
//! takes a lock owned by that one backend. A [`BackendHealth`] is keyed by upstream name and
//! backend address and carried into the next runtime on reload, so health survives it.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Default `fail_timeout`: the window failures are counted in, and how long a backend stays out.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `max_fails`.
pub const DEFAULT_MAX_FAILS: u32 = 1;
/// Default `circuit_breaker_open_for`.
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(10);
/// Default `circuit_breaker_successes`.
pub const DEFAULT_BREAKER_SUCCESSES: u32 = 1;

/// Milliseconds since the process's first call, never 0 (0 means "never" below).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How an upstream judges its backends from live traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// Failures within `fail_timeout` that take a backend out; 0 turns passive health off.
    pub max_fails: u32,
    /// The counting window and the time out.
    pub fail_timeout: Duration,
    /// Upstream statuses that count as failures (connect errors and timeouts always do).
    pub fail_statuses: Vec<u16>,
    /// The circuit breaker, when `circuit_breaker_failures` is set.
    pub breaker: Option<BreakerPolicy>,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            max_fails: DEFAULT_MAX_FAILS,
            fail_timeout: DEFAULT_FAIL_TIMEOUT,
            fail_statuses: Vec::new(),
            breaker: None,
        }
    }
}

impl HealthPolicy {
    /// Whether an upstream response with `status` counts as a failure.
    pub fn is_failure_status(&self, status: u16) -> bool {
        self.fail_statuses.contains(&status)
    }
}

/// When a backend's circuit opens and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
    /// Consecutive successful probes that close it.
    pub successes: u32,
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Requests flow.
    Closed,
    /// Requests are refused until the open period ends.
    Open,
    /// One probe request at a time is let through.
    HalfOpen,
}

impl Circuit {
    fn from_u8(value: u8) -> Circuit {
        match value {
            1 => Circuit::Open,
            2 => Circuit::HalfOpen,
            _ => Circuit::Closed,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Circuit::Closed => 0,
            Circuit::Open => 1,
            Circuit::HalfOpen => 2,
        }
    }

    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half-open",
        }
    }
}

/// The outcome of one attempt on a backend, as health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered with a status that is not a failure.
    Success,
    /// It could not be connected to, timed out, or answered with a failure status.
    Failure,
}

/// The health of one backend of one upstream.
#[derive(Debug)]
pub struct BackendHealth {
    upstream: Arc<str>,
    addr: String,
    /// The active check's verdict (true until a check says otherwise).
    checked_up: AtomicBool,
    check_streak: Mutex<CheckStreak>,
    /// Passive ejection: out until this time (ms), 0 when in.
    out_until: AtomicU64,
    passive: Mutex<PassiveWindow>,
    circuit: AtomicU8,
    /// When the open circuit lets a probe through (ms).
    open_until: AtomicU64,
    /// Until when the current half-open probe holds its turn (ms); a probe that never reports
    /// back frees its turn after `open_for`.
    probe_until: AtomicU64,
    consecutive_failures: AtomicU32,
    probe_successes: AtomicU32,
    /// Requests sent to it and not finished.
    in_flight: AtomicU32,
}

#[derive(Debug, Default)]
struct CheckStreak {
    passes: u32,
    fails: u32,
    last: Option<CheckResult>,
}

/// The last active check of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// When it ended (ms since the epoch).
    pub at_ms: u64,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub reason: String,
}

/// A request in flight to a backend: counted while it lives.
#[derive(Debug)]
pub struct InFlightGuard(Arc<BackendHealth>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct PassiveWindow {
    started: u64,
    fails: u32,
}

impl BackendHealth {
    /// A healthy backend `addr` of upstream `upstream`.
    pub fn new(upstream: Arc<str>, addr: String) -> Self {
        BackendHealth {
            upstream,
            addr,
            checked_up: AtomicBool::new(true),
            check_streak: Mutex::new(CheckStreak::default()),
            out_until: AtomicU64::new(0),
            passive: Mutex::new(PassiveWindow::default()),
            circuit: AtomicU8::new(Circuit::Closed.as_u8()),
            open_until: AtomicU64::new(0),
            probe_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            probe_successes: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    /// Counts a request to the backend until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }

    /// Requests sent to it and not finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether it is ejected by passive health at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        now < self.out_until.load(Ordering::Relaxed)
    }

    /// The last active check, if one ran.
    pub fn last_check(&self) -> Option<CheckResult> {
        self.check_streak.lock().ok()?.last.clone()
    }

    /// The backend's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the active check considers it up.
    pub fn checked_up(&self) -> bool {
        self.checked_up.load(Ordering::Relaxed)
    }

    /// The circuit's state.
    pub fn circuit(&self) -> Circuit {
        Circuit::from_u8(self.circuit.load(Ordering::Acquire))
    }

    /// Whether ordinary requests may go to it at `now`: checked up, not ejected, circuit closed.
    pub fn serving(&self, now: u64) -> bool {
        self.checked_up()
            && now >= self.out_until.load(Ordering::Relaxed)
            && self.circuit() == Circuit::Closed
    }

    /// Whether it is up by check and not ejected (its circuit may be open).
    fn reachable(&self, now: u64) -> bool {
        self.checked_up() && now >= self.out_until.load(Ordering::Relaxed)
    }

    /// Takes the probe turn of an open or half-open circuit, if it is due; the caller then
    /// sends the request to this backend.
    pub fn claim_probe(&self, policy: &HealthPolicy, now: u64) -> bool {
        let Some(breaker) = policy.breaker else {
            return false;
        };
        if !self.reachable(now) {
            return false;
        }
        match self.circuit() {
            Circuit::Closed => false,
            Circuit::Open => {
                if now < self.open_until.load(Ordering::Acquire) {
                    return false;
                }
                let moved = self
                    .circuit
                    .compare_exchange(
                        Circuit::Open.as_u8(),
                        Circuit::HalfOpen.as_u8(),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok();
                if moved {
                    self.probe_successes.store(0, Ordering::Relaxed);
                    self.probe_until
                        .store(now + millis(breaker.open_for), Ordering::Release);
                    tracing::info!(
                        upstream = %self.upstream, backend = %self.addr,
                        "circuit half-open: letting a probe request through"
                    );
                }
                moved
            }
            Circuit::HalfOpen => {
                let held_until = self.probe_until.load(Ordering::Acquire);
                now >= held_until
                    && self
                        .probe_until
                        .compare_exchange(
                            held_until,
                            now + millis(breaker.open_for),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
            }
        }
    }

    /// Records the outcome of a request. `passive` is false for upstreams with one backend,
    /// which passive health never takes out (as in nginx).
    pub fn record(&self, policy: &HealthPolicy, outcome: Outcome, passive: bool, now: u64) {
        match outcome {
            Outcome::Success => self.record_success(policy),
            Outcome::Failure => {
                if passive && policy.max_fails > 0 {
                    self.record_passive_failure(policy, now);
                }
                if let Some(breaker) = policy.breaker {
                    self.record_breaker_failure(breaker, now);
                }
            }
        }
    }

    fn record_success(&self, policy: &HealthPolicy) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        let Some(breaker) = policy.breaker else {
            return;
        };
        if self.circuit() != Circuit::HalfOpen {
            return;
        }
        let successes = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
        if successes >= breaker.successes {
            if self.set_circuit(Circuit::HalfOpen, Circuit::Closed) {
                tracing::info!(
                    upstream = %self.upstream, backend = %self.addr,
                    "circuit closed after {successes} successful probe(s)"
                );
            }
        } else {
            // Free the turn for the next probe.
            self.probe_until.store(0, Ordering::Release);
        }
    }

    fn record_passive_failure(&self, policy: &HealthPolicy, now: u64) {
        let Ok(mut window) = self.passive.lock() else {
            return;
        };
        let timeout = millis(policy.fail_timeout);
        if window.fails == 0 || now.saturating_sub(window.started) > timeout {
            window.started = now;
            window.fails = 0;
        }
        window.fails += 1;
        if window.fails >= policy.max_fails {
            window.fails = 0;
            self.out_until.store(now + timeout, Ordering::Relaxed);
            tracing::warn!(
                upstream = %self.upstream, backend = %self.addr,
                "backend taken out for {:?}: {} failure(s) within {:?} (max_fails)",
                policy.fail_timeout, policy.max_fails, policy.fail_timeout
            );
        }
    }

    fn record_breaker_failure(&self, breaker: BreakerPolicy, now: u64) {
        let open_until = now + millis(breaker.open_for);
        match self.circuit() {
            Circuit::HalfOpen => {
                self.open_until.store(open_until, Ordering::Release);
                if self.set_circuit(Circuit::HalfOpen, Circuit::Open) {
                    tracing::warn!(
                        upstream = %self.upstream, backend = %self.addr,
                        "circuit open again: the probe request failed"
                    );
                }
            }
            Circuit::Closed => {
                let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                if failures >= breaker.failures {
                    self.open_until.store(open_until, Ordering::Release);
                    if self.set_circuit(Circuit::Closed, Circuit::Open) {
                        self.consecutive_failures.store(0, Ordering::Relaxed);
                        tracing::warn!(
                            upstream = %self.upstream, backend = %self.addr,
                            "circuit open for {:?} after {failures} consecutive failures",
                            breaker.open_for
                        );
                    }
                }
            }
            Circuit::Open => {}
        }
    }

    fn set_circuit(&self, from: Circuit, to: Circuit) -> bool {
        self.circuit
            .compare_exchange(
                from.as_u8(),
                to.as_u8(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Records an active check result; the verdict flips after `threshold` results in a row
    /// (`healthy` passes to come up, `unhealthy` failures to go down), logged with `reason`.
    pub fn record_check(&self, passed: bool, healthy: u32, unhealthy: u32, reason: &str) {
        let Ok(mut streak) = self.check_streak.lock() else {
            return;
        };
        let up = self.checked_up();
        streak.last = Some(CheckResult {
            at_ms: now_ms(),
            passed,
            reason: reason.to_string(),
        });
        if passed {
            streak.fails = 0;
            streak.passes = streak.passes.saturating_add(1);
            if !up && streak.passes >= healthy {
                self.checked_up.store(true, Ordering::Relaxed);
                tracing::info!(
                    upstream = %self.upstream, backend = %self.addr,
                    "backend healthy: {reason} ({} check(s) in a row)", streak.passes
                );
            }
        } else {
            streak.passes = 0;
            streak.fails = streak.fails.saturating_add(1);
            if up && streak.fails >= unhealthy {
                self.checked_up.store(false, Ordering::Relaxed);
                tracing::warn!(
                    upstream = %self.upstream, backend = %self.addr,
                    "backend unhealthy: {reason} ({} check(s) in a row)", streak.fails
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> BackendHealth {
        BackendHealth::new(Arc::from("api"), "127.0.0.1:1".to_string())
    }

    fn policy(max_fails: u32, breaker: Option<(u32, u64, u32)>) -> HealthPolicy {
        HealthPolicy {
            max_fails,
            fail_timeout: Duration::from_millis(1000),
            fail_statuses: vec![500],
            breaker: breaker.map(|(failures, open_ms, successes)| BreakerPolicy {
                failures,
                open_for: Duration::from_millis(open_ms),
                successes,
            }),
        }
    }

    #[test]
    fn passive_failures_within_the_window_take_a_backend_out_for_fail_timeout() {
        let health = backend();
        let policy = policy(3, None);
        health.record(&policy, Outcome::Failure, true, 100);
        health.record(&policy, Outcome::Failure, true, 200);
        assert!(health.serving(300));
        // The third failure comes after the window of the first: counting restarts.
        health.record(&policy, Outcome::Failure, true, 1_500);
        assert!(health.serving(1_600));
        health.record(&policy, Outcome::Failure, true, 1_700);
        health.record(&policy, Outcome::Failure, true, 1_800);
        assert!(!health.serving(1_900));
        assert!(!health.serving(2_799));
        assert!(health.serving(2_800));
    }

    #[test]
    fn single_backend_upstreams_and_max_fails_0_are_never_ejected() {
        let health = backend();
        for now in 1..10 {
            health.record(&policy(1, None), Outcome::Failure, false, now);
            health.record(&policy(0, None), Outcome::Failure, true, now);
        }
        assert!(health.serving(20));
    }

    #[test]
    fn the_circuit_opens_half_opens_and_closes() {
        let health = backend();
        let policy = policy(0, Some((3, 1_000, 2)));
        health.record(&policy, Outcome::Failure, true, 10);
        health.record(&policy, Outcome::Success, true, 11);
        health.record(&policy, Outcome::Failure, true, 12);
        health.record(&policy, Outcome::Failure, true, 13);
        assert_eq!(
            health.circuit(),
            Circuit::Closed,
            "a success resets the count"
        );
        health.record(&policy, Outcome::Failure, true, 14);
        assert_eq!(health.circuit(), Circuit::Open);
        assert!(!health.serving(15));
        assert!(!health.claim_probe(&policy, 500), "still open");

        assert!(health.claim_probe(&policy, 1_014));
        assert_eq!(health.circuit(), Circuit::HalfOpen);
        assert!(!health.claim_probe(&policy, 1_015), "one probe at a time");
        health.record(&policy, Outcome::Failure, true, 1_020);
        assert_eq!(health.circuit(), Circuit::Open, "a failed probe reopens");

        assert!(health.claim_probe(&policy, 2_020));
        health.record(&policy, Outcome::Success, true, 2_021);
        assert_eq!(health.circuit(), Circuit::HalfOpen, "needs two successes");
        assert!(health.claim_probe(&policy, 2_022), "the turn was freed");
        health.record(&policy, Outcome::Success, true, 2_023);
        assert_eq!(health.circuit(), Circuit::Closed);
        assert!(health.serving(2_024));
    }

    #[test]
    fn a_probe_that_never_reports_frees_its_turn() {
        let health = backend();
        let policy = policy(0, Some((1, 100, 1)));
        health.record(&policy, Outcome::Failure, true, 1);
        assert!(health.claim_probe(&policy, 101));
        assert!(!health.claim_probe(&policy, 150));
        assert!(health.claim_probe(&policy, 201));
    }

    #[test]
    fn active_checks_flip_after_their_thresholds() {
        let health = backend();
        health.record_check(false, 2, 3, "refused");
        health.record_check(false, 2, 3, "refused");
        assert!(health.serving(1));
        health.record_check(false, 2, 3, "refused");
        assert!(!health.serving(1));
        health.record_check(true, 2, 3, "200");
        assert!(!health.serving(1));
        health.record_check(true, 2, 3, "200");
        assert!(health.serving(1));
    }
}
