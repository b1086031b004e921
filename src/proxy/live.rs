//! Feeds each finished request to the admin API's live views ([`crate::observe::live`]): the
//! statistics of its location and of its upstream, and the log tail.

use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::request::request_uri;
use crate::observe::UpstreamAttempt;
use crate::observe::live::{self, LogRecord};

/// Counts the request, which ended at `ended`, in its location's series and each of its
/// attempts in its upstream's, and publishes its record to the log tail's followers, if any.
pub(super) fn finished(
    server: &str,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    ended: Instant,
) {
    let elapsed = ended.saturating_duration_since(ctx.started);
    let stats = live::stats();
    if let Some(location) = &ctx.location {
        stats.record_at(&location.live, ended, status, elapsed);
        if let Some(pool) = &location.upstream {
            for attempt in ctx.attempts.list() {
                if let Some((status, took)) = attempt_outcome(attempt, ended) {
                    stats.record_at(pool.live(), ended, status, took);
                }
            }
        }
    }
    live::log_tail().publish(|| log_record(server, session, ctx, status, elapsed));
}

/// What an attempt counts as in its upstream's series: its backend's status, with the time from
/// choosing the backend to the response header; a failure without an answer (connection
/// refused, timeout, broken connection) as a 502, with the time until it failed; nothing for an
/// attempt cut short without either (the client went away first).
fn attempt_outcome(attempt: &UpstreamAttempt, request_ended: Instant) -> Option<(u16, Duration)> {
    match (attempt.status, attempt.answered) {
        (Some(status), Some(answered)) => {
            Some((status, answered.saturating_duration_since(attempt.started)))
        }
        _ if attempt.failure.is_some() => {
            let ended = attempt.ended.unwrap_or(request_ended);
            Some((502, ended.saturating_duration_since(attempt.started)))
        }
        _ => None,
    }
}

/// The log tail's record of the request.
fn log_record(
    server: &str,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    elapsed: Duration,
) -> LogRecord {
    let req = session.req_header();
    let uri = request_uri(req, ctx);
    let path = uri.split_once('?').map_or(uri, |(path, _query)| path);
    let location = ctx.location.as_deref();
    LogRecord {
        time: chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        server: server.to_string(),
        location: location.map(|l| l.name.to_string()),
        upstream: location
            .and_then(|l| l.upstream.as_ref())
            .map(|pool| pool.name().to_string()),
        backend: ctx.attempts.last().map(|a| a.addr.to_string()),
        method: req.method.as_str().to_string(),
        host: Some(&ctx.plugin.host)
            .filter(|host| !host.is_empty())
            .cloned(),
        path: path.to_string(),
        status,
        latency_ms: elapsed.as_secs_f64() * 1000.0,
        client: ctx.plugin.client_ip.map(|ip| ip.to_string()),
        bytes_sent: session.body_bytes_sent() as u64,
        request_id: ctx.plugin.request_id.clone(),
    }
}
