//! Live streams as Server-Sent Events: the statistics of every location and upstream once a
//! second ([`crate::observe::live::stats`]), and the tail of the access log
//! ([`crate::observe::live::log_tail`]) with filters. A stream ends when the client goes away
//! or the process shuts down; a client too slow for the log tail misses records, which it is told
//! about (an event `dropped`) and which are counted in `pingap_log_tail_dropped_total`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::observe::live::{LogFilter, log_tail, stats};

/// One Server-Sent Event as the streams send it (how the OpenAPI document describes them).
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    /// The event's name: `stats`; `log` or `dropped`.
    pub event: String,
    /// Its data: JSON text of a `StatsFrame` (`stats`), a `LogRecord` (`log`) or a `Dropped`
    /// (`dropped`).
    pub data: String,
}

/// The `data` of a `dropped` event of the log tail.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dropped {
    /// Records this client missed because it read too slowly.
    pub dropped: u64,
}

/// Statistics once a second: per location and per upstream, requests/s, p50/p95/p99 latency
/// and 4xx/5xx ratios over the last second and the last minute. Each event is `stats` with a
/// [`StatsFrame`](crate::observe::live::StatsFrame) as its data.
#[utoipa::path(get, path = "/api/stats/stream", tag = "operations",
    responses(
        (status = 200, description = "Server-Sent Events: `event: stats`, `data:` a StatsFrame, once a second", body = StreamEvent, content_type = "text/event-stream"),
        (status = 401, body = ErrorBody)))]
pub async fn stats_stream(State(_state): State<AdminState>) -> Response {
    let events = futures::stream::unfold(None::<tokio::time::Interval>, |interval| async move {
        let mut interval = match interval {
            Some(interval) => interval,
            None => {
                let mut interval = tokio::time::interval(Duration::from_secs(1));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval
            }
        };
        interval.tick().await;
        let frame = stats().frame();
        let event = Event::default().event("stats").json_data(&frame);
        Some((event.map_err(|_| ()), Some(interval)))
    });
    sse(futures::StreamExt::filter_map(events, |event| async move {
        event.ok().map(Ok::<_, Infallible>)
    }))
}

/// The access log as it is written: each finished request is an event `log` with a
/// [`LogRecord`](crate::observe::live::LogRecord) as its data (the path without its query string), filtered by
/// `status` (`5xx`, `4xx`, or an exact status), `location` and `slow_ms` (at least this many
/// milliseconds). A client too slow to keep up gets an event `dropped`.
#[utoipa::path(get, path = "/api/logs/stream", tag = "operations", params(LogFilter),
    responses(
        (status = 200, description = "Server-Sent Events: `event: log` with a LogRecord, `event: dropped` with Dropped", body = StreamEvent, content_type = "text/event-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn logs_stream(
    State(_state): State<AdminState>,
    ApiQuery(filter): ApiQuery<LogFilter>,
) -> Result<Response, ApiError> {
    filter.validate().map_err(ApiError::bad_request)?;
    let receiver = log_tail().subscribe();
    let events = futures::stream::unfold((receiver, filter), |(mut receiver, filter)| async move {
        loop {
            match receiver.recv().await {
                Ok(record) if record.matches(&filter) => {
                    let event = Event::default().event("log").json_data(record.as_ref());
                    return Some((event, (receiver, filter)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    log_tail().note_dropped(missed);
                    let event = Event::default()
                        .event("dropped")
                        .json_data(Dropped { dropped: missed });
                    return Some((event, (receiver, filter)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(sse(futures::StreamExt::filter_map(
        events,
        |event| async move { event.ok().map(Ok::<_, Infallible>) },
    )))
}

/// The stream as an SSE response. It opens with a comment so the status and headers reach the
/// client at once, not with the first event (which, for a filtered log tail, may be long).
fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    let opened = futures::stream::once(async { Ok(Event::default().comment("open")) });
    Sse::new(futures::StreamExt::chain(opened, events))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
