//! The live tail of access-log records: every finished request, whether or not a server has an
//! access log, broadcast in process to whoever follows it (the admin API's log stream).
//!
//! Publishing never blocks or waits: the broadcast is bounded ([`CAPACITY`] records) and a
//! subscriber that falls behind misses the oldest records instead of holding requests up; it
//! learns how many when it next receives, and reports them with [`LogTail::note_dropped`]
//! (`pingap_log_tail_dropped_total`). While no one follows, a request only reads one atomic
//! flag: the record is not even built.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

/// Records a subscriber may fall behind by before it misses some.
pub const CAPACITY: usize = 1024;

/// The tail of access-log records.
pub struct LogTail {
    sender: broadcast::Sender<Arc<LogRecord>>,
    /// Whether anyone may be subscribed: false once a send found no receiver, true again with
    /// the next subscription. Read on every request instead of the channel's receiver count,
    /// which takes the channel's lock.
    subscribed: AtomicBool,
    dropped: IntCounter,
}

/// The process-wide tail of access-log records.
pub fn log_tail() -> &'static LogTail {
    static TAIL: OnceLock<LogTail> = OnceLock::new();
    TAIL.get_or_init(|| {
        LogTail::new(
            CAPACITY,
            crate::observe::metrics::metrics().log_tail_dropped(),
        )
    })
}

impl LogTail {
    fn new(capacity: usize, dropped: IntCounter) -> LogTail {
        LogTail {
            sender: broadcast::Sender::new(capacity),
            subscribed: AtomicBool::new(false),
            dropped,
        }
    }

    /// Sends the record `record` builds to the subscribers, if there are any (otherwise
    /// `record` is not called). Never blocks, never waits.
    pub fn publish(&self, record: impl FnOnce() -> LogRecord) {
        if !self.subscribed.load(Ordering::Relaxed) {
            return;
        }
        if self.sender.send(Arc::new(record())).is_err() {
            // The last subscriber has gone. Clear the flag, then look again: a subscription made
            // before this look is seen by it, one made after it sets the flag after this store.
            self.subscribed.store(false, Ordering::SeqCst);
            if self.sender.receiver_count() > 0 {
                self.subscribed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Follows the records published from now on. A receiver that falls more than
    /// [`CAPACITY`] records behind gets `RecvError::Lagged(n)`: report `n` with
    /// [`LogTail::note_dropped`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        let receiver = self.sender.subscribe();
        self.subscribed.store(true, Ordering::SeqCst);
        receiver
    }

    /// Records slow subscribers missed, since the process started.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Counts `n` records a subscriber missed.
    pub fn note_dropped(&self, n: u64) {
        self.dropped.inc_by(n);
    }
}

/// One finished request, as the log stream sends it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogRecord {
    /// When the request ended (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The server (listener) that received it.
    pub server: String,
    /// The location that served it; none when no location matched.
    pub location: Option<String>,
    /// The location's upstream, if the request was proxied.
    pub upstream: Option<String>,
    /// The backend of the last attempt, if any.
    pub backend: Option<String>,
    /// The request method.
    pub method: String,
    /// The host the client asked for.
    pub host: Option<String>,
    /// The path as received, without the query string (which may carry secrets).
    pub path: String,
    /// The status sent to the client; 0 when none was sent.
    pub status: u16,
    /// From the request header to the end of the response, in milliseconds.
    pub latency_ms: f64,
    /// The client's address (after trusted proxies' headers).
    pub client: Option<String>,
    /// Body bytes sent to the client.
    pub bytes_sent: u64,
    /// The id set by the `request_id` plugin.
    pub request_id: Option<String>,
}

/// Which records the log stream sends: all of these that are given must match.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogFilter {
    /// A status class (`4xx`, `5xx`) or an exact status (`404`).
    pub status: Option<String>,
    /// A location name.
    pub location: Option<String>,
    /// Only requests that took at least this many milliseconds.
    pub slow_ms: Option<u64>,
}

/// A parsed `status` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusFilter {
    /// `1xx` to `5xx`: the hundreds digit.
    Class(u16),
    Exact(u16),
}

impl StatusFilter {
    fn parse(text: &str) -> Option<StatusFilter> {
        let bytes = text.as_bytes();
        if bytes.len() != 3 {
            return None;
        }
        if bytes[1..].eq_ignore_ascii_case(b"xx") {
            return matches!(bytes[0], b'1'..=b'5')
                .then(|| StatusFilter::Class(u16::from(bytes[0] - b'0')));
        }
        match text.parse::<u16>() {
            Ok(status @ 100..=599) => Some(StatusFilter::Exact(status)),
            _ => None,
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusFilter::Class(class) => status / 100 == class,
            StatusFilter::Exact(exact) => status == exact,
        }
    }
}

impl LogFilter {
    /// Whether the filter makes sense; the error says why not, for a 400 answer.
    pub fn validate(&self) -> Result<(), String> {
        match self.status.as_deref() {
            Some(status) if !status.is_empty() && StatusFilter::parse(status).is_none() => {
                Err(format!(
                    "status: {status:?} is neither a status class (1xx to 5xx) nor a status (100 to 599)"
                ))
            }
            _ => Ok(()),
        }
    }
}

impl LogRecord {
    /// Whether the record passes `filter` (an empty `status` or `location` filters nothing; a
    /// `status` that does not [validate](LogFilter::validate) matches no record).
    pub fn matches(&self, filter: &LogFilter) -> bool {
        if let Some(status) = filter.status.as_deref().filter(|s| !s.is_empty())
            && !StatusFilter::parse(status).is_some_and(|f| f.matches(self.status))
        {
            return false;
        }
        if let Some(location) = filter.location.as_deref().filter(|l| !l.is_empty())
            && self.location.as_deref() != Some(location)
        {
            return false;
        }
        filter
            .slow_ms
            .is_none_or(|slow| self.latency_ms >= slow as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    fn record(status: u16, location: Option<&str>, latency_ms: f64) -> LogRecord {
        LogRecord {
            time: "2025-01-01T00:00:00.000Z".to_string(),
            server: "main".to_string(),
            location: location.map(str::to_string),
            upstream: None,
            backend: None,
            method: "GET".to_string(),
            host: None,
            path: "/".to_string(),
            status,
            latency_ms,
            client: None,
            bytes_sent: 0,
            request_id: None,
        }
    }

    fn filter(status: Option<&str>, location: Option<&str>, slow_ms: Option<u64>) -> LogFilter {
        LogFilter {
            status: status.map(str::to_string),
            location: location.map(str::to_string),
            slow_ms,
        }
    }

    fn tail() -> LogTail {
        LogTail::new(4, IntCounter::new("dropped", "test").unwrap())
    }

    #[test]
    fn filters_match_status_classes_exact_statuses_locations_and_slow_requests() {
        let api_502 = record(502, Some("api"), 12.5);
        let web_404 = record(404, Some("web"), 1.0);
        let unrouted = record(404, None, 0.1);
        let cases = [
            (filter(None, None, None), [true, true, true]),
            (filter(Some("5xx"), None, None), [true, false, false]),
            (filter(Some("4XX"), None, None), [false, true, true]),
            (filter(Some("404"), None, None), [false, true, true]),
            (filter(Some("404"), Some("web"), None), [false, true, false]),
            (filter(None, Some("api"), None), [true, false, false]),
            (filter(None, None, Some(12)), [true, false, false]),
            (filter(None, None, Some(13)), [false, false, false]),
            (filter(Some(""), Some(""), None), [true, true, true]),
        ];
        for (filter, expected) in cases {
            assert_eq!(filter.validate(), Ok(()), "{filter:?}");
            let got = [&api_502, &web_404, &unrouted].map(|r| r.matches(&filter));
            assert_eq!(got, expected, "{filter:?}");
        }
    }

    #[test]
    fn bad_status_filters_are_refused_and_match_nothing() {
        for bad in ["6xx", "0xx", "abc", "5x", "5xxx", "99", "600", "+20", "x5x"] {
            let filter = filter(Some(bad), None, None);
            let error = filter.validate().unwrap_err();
            assert!(
                error.starts_with("status: ") && error.contains(bad),
                "{error}"
            );
            assert!(!record(500, None, 1.0).matches(&filter), "{bad}");
        }
    }

    #[test]
    fn without_subscribers_publishing_builds_nothing() {
        let tail = tail();
        tail.publish(|| panic!("built a record no one follows"));
        let receiver = tail.subscribe();
        drop(receiver);
        // The first publish after the last subscriber left finds out; the next builds nothing.
        let mut built = 0;
        tail.publish(|| {
            built += 1;
            record(200, None, 1.0)
        });
        assert_eq!(built, 1);
        tail.publish(|| panic!("built a record no one follows"));
    }

    #[test]
    fn subscribers_get_every_record_and_slow_ones_learn_how_many_they_missed() {
        let tail = tail();
        let mut fast = tail.subscribe();
        let mut slow = tail.subscribe();
        for status in [200, 201, 202] {
            tail.publish(|| record(status, None, 1.0));
            assert_eq!(fast.try_recv().unwrap().status, status);
        }
        for status in [203, 204, 205, 206] {
            tail.publish(|| record(status, None, 1.0));
        }
        // Capacity 4: the slow one missed 200, 201 and 202 and is told so, once.
        assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Lagged(3));
        tail.note_dropped(3);
        assert_eq!(slow.try_recv().unwrap().status, 203);
        assert_eq!(tail.dropped(), 3);
        // A subscriber that comes later gets what is published from then on.
        let mut late = tail.subscribe();
        tail.publish(|| record(207, None, 1.0));
        assert_eq!(late.try_recv().unwrap().status, 207);
    }

    #[test]
    fn a_subscription_racing_the_last_unsubscription_is_never_starved() {
        // Publishers see the last subscriber leave while new ones subscribe: whoever subscribes
        // must receive what is published after its subscription returned.
        let tail = Arc::new(tail());
        for _ in 0..200 {
            let first = tail.subscribe();
            let publisher = {
                let tail = tail.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        tail.publish(|| record(200, None, 1.0));
                    }
                })
            };
            drop(first);
            let mut second = tail.subscribe();
            publisher.join().unwrap();
            tail.publish(|| record(299, None, 1.0));
            let mut last = None;
            loop {
                match second.try_recv() {
                    Ok(record) => last = Some(record.status),
                    Err(TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            assert_eq!(last, Some(299));
        }
    }
}
