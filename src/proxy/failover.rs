//! What happens after an attempt on a backend fails: health learns from it (passive health and
//! the circuit breaker) and the request may try another backend.
//!
//! | failure | counts against the backend | tries another backend |
//! |---|---|---|
//! | connecting failed or timed out | yes | always, while untried backends remain |
//! | the connection broke before the answer was passed on | yes | idempotent requests |
//! | timeout reading or writing | yes | idempotent requests, within `retries` |
//! | a 502 or 503 answer | if in `passive_fail_status` | idempotent requests, within `retries` |
//! | a pooled connection the backend had closed | no | as Pingora does: idempotent requests |
//!
//! No attempt starts after `retry_timeout`, and a request whose body no longer fits Pingora's
//! replay buffer, or whose response has begun, is never tried again.

use std::net::SocketAddr;
use std::time::Instant;

use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use crate::observe::UpstreamAttempt;
use crate::upstream::Pool;
use crate::upstream::balance::Selected;
use crate::upstream::health::Outcome;

/// The attempts of one request on backends: one [`UpstreamAttempt`] record each, which failover
/// decides on, the access log and traces report, and the upstream's response-time histogram
/// measures.
#[derive(Debug, Default)]
pub struct Attempts {
    /// Every attempt, in order; the last may still be in progress.
    list: Vec<UpstreamAttempt>,
    /// Retries spent on timeouts and 502/503 answers (connection failures cost none).
    retries: u32,
    /// Set when pingap itself failed the attempt to retry a 502/503 answer.
    retrying_status: bool,
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be established.
    Connect,
    /// The connection broke during the exchange.
    Broken,
    /// The backend was too slow to read from or write to.
    Timeout,
    /// The backend answered 502 or 503.
    Status(u16),
}

impl Attempts {
    /// Records an attempt on `addr` starting now.
    pub fn start(&mut self, addr: SocketAddr, span_id: u64) {
        self.list.push(UpstreamAttempt::start(addr, span_id));
    }

    /// Every attempt so far, in order.
    pub fn list(&self) -> &[UpstreamAttempt] {
        &self.list
    }

    /// The latest attempt, ended or not.
    pub fn last(&self) -> Option<&UpstreamAttempt> {
        self.list.last()
    }

    /// The attempt in progress, if any.
    pub fn current(&mut self) -> Option<&mut UpstreamAttempt> {
        self.list
            .last_mut()
            .filter(|attempt| attempt.ended.is_none())
    }

    /// Ends the attempt in progress, with why it failed.
    pub fn end_current(&mut self, failure: Option<&'static str>) {
        if let Some(attempt) = self.current() {
            attempt.ended = Some(Instant::now());
            attempt.failure = failure;
        }
    }

    /// Whether `addr` failed this request already (and so is not chosen again for it).
    pub fn excludes(&self, addr: &SocketAddr) -> bool {
        self.list
            .iter()
            .any(|attempt| attempt.excluded && attempt.addr == *addr)
    }

    /// Whether the failed attempt on `selected` should be followed by another; records it as
    /// tried. `replayable` says whether the request can be sent again.
    fn decide(
        &mut self,
        pool: &Pool,
        selected: &Selected,
        failure: Failure,
        replayable: bool,
    ) -> bool {
        if let Some(addr) = selected.backend.addr.as_inet()
            && let Some(attempt) = self.list.last_mut().filter(|a| a.addr == *addr)
        {
            attempt.excluded = true;
        }
        let policy = pool.retry_policy();
        let in_time = match (policy.retry_timeout, self.list.first()) {
            (Some(limit), Some(first)) => first.started.elapsed() < limit,
            _ => true,
        };
        let tried = self.list.iter().filter(|a| a.excluded).count();
        let untried_left = tried < pool.backend_count();
        let costs_a_retry = matches!(failure, Failure::Timeout | Failure::Status(_));
        let allowed = match failure {
            Failure::Connect => true,
            Failure::Broken => replayable,
            Failure::Timeout | Failure::Status(_) => replayable && self.retries < policy.retries,
        };
        let retry = in_time && untried_left && allowed;
        if retry && costs_a_retry {
            self.retries += 1;
        }
        retry
    }
}

/// Whether the request can be sent again: an idempotent method, a body still held in full by
/// the replay buffer, and nothing of the response sent yet.
fn replayable(session: &Session) -> bool {
    session.req_header().method.is_idempotent()
        && !session.as_ref().retry_buffer_truncated()
        && session.response_written().is_none()
}

/// After a connection to `selected` failed: records it and decides on a retry.
pub fn connect_failed(
    pool: &Pool,
    selected: Option<&Selected>,
    attempts: &mut Attempts,
    mut e: Box<Error>,
) -> Box<Error> {
    let Some(selected) = selected else {
        return e;
    };
    pool.record(selected, Outcome::Failure);
    let retry = attempts.decide(pool, selected, Failure::Connect, true);
    e.set_retry(retry);
    e
}

/// After an attempt failed while proxying: records it and decides on a retry.
pub fn proxy_failed(
    pool: &Pool,
    selected: Option<&Selected>,
    attempts: &mut Attempts,
    session: &Session,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    if std::mem::take(&mut attempts.retrying_status) {
        // Raised by `answered` below, which has decided and recorded already.
        return e;
    }
    let Some(selected) = selected else {
        return e;
    };
    let timed_out = matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    );
    if e.esource() != &ErrorSource::Upstream {
        e.set_retry(false);
    } else if timed_out {
        pool.record(selected, Outcome::Failure);
        let retry = attempts.decide(pool, selected, Failure::Timeout, replayable(session));
        e.set_retry(retry);
    } else if client_reused {
        // A pooled connection the backend had already closed: not the backend's fault.
        let retry = replayable(session);
        e.set_retry(retry);
    } else {
        pool.record(selected, Outcome::Failure);
        let retry = attempts.decide(pool, selected, Failure::Broken, replayable(session));
        e.set_retry(retry);
    }
    e
}

/// When the backend's response header arrives: records the outcome, and for a 502 or 503 that
/// may be retried returns the error that makes Pingora try another backend.
pub fn answered(
    pool: &Pool,
    selected: Option<&Selected>,
    attempts: &mut Attempts,
    session: &Session,
    status: u16,
) -> Result<(), Box<Error>> {
    let Some(selected) = selected else {
        return Ok(());
    };
    let failed = pool.health_policy().is_failure_status(status);
    pool.record(
        selected,
        if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        },
    );
    if matches!(status, 502 | 503)
        && pool.retry_policy().retries > 0
        && attempts.decide(pool, selected, Failure::Status(status), replayable(session))
    {
        attempts.retrying_status = true;
        let mut e = Error::explain(
            ErrorType::HTTPStatus(status),
            format!("upstream \"{}\" answered {status}", pool.name()),
        );
        e.set_retry(true);
        return Err(e);
    }
    Ok(())
}
