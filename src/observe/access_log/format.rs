//! Access-log formats: `combined`, `common`, `json` or a custom string of `$variables`, parsed
//! once when the configuration is compiled and rendered into one line per request.
//!
//! In the text formats a value is escaped as nginx does (`"`, `\`, control and non-ASCII bytes
//! as `\xHH`) and an empty value is written `-`; in `json` values are JSON strings or numbers
//! and an absent value is `null`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderName;
use pingap_plugins::vars::{Piece, Var, pieces};

use super::Entry;

/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent`
pub const COMMON: &str =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent";
/// `common` followed by `"$http_referer" "$http_user_agent"`.
pub const COMBINED: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status \
                            $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

/// The keys of the `json` format and the variables they hold.
const JSON_FIELDS: &[(&str, &str)] = &[
    ("time", "time_iso8601"),
    ("remote_addr", "remote_addr"),
    ("remote_port", "remote_port"),
    ("request_id", "request_id"),
    ("server", "server_name"),
    ("location", "location"),
    ("method", "request_method"),
    ("scheme", "scheme"),
    ("host", "host"),
    ("uri", "request_uri"),
    ("protocol", "server_protocol"),
    ("status", "status"),
    ("body_bytes_sent", "body_bytes_sent"),
    ("request_length", "request_length"),
    ("request_time", "request_time"),
    ("upstream", "upstream_name"),
    ("upstream_addr", "upstream_addr"),
    ("upstream_status", "upstream_status"),
    ("upstream_response_time", "upstream_response_time"),
    ("referer", "http_referer"),
    ("user_agent", "http_user_agent"),
    ("tls_protocol", "tls_protocol"),
    ("cache_status", "cache_status"),
    ("error", "error"),
];

/// Every variable name, for the error message about an unknown one.
const KNOWN: &str = "remote_addr client_ip realip_remote_addr remote_port remote_user \
    request_id time_local time_iso8601 msec request request_method scheme host request_uri uri \
    args upstream_uri server_protocol status body_bytes_sent bytes_sent request_length \
    request_time http_NAME sent_http_NAME cookie_NAME arg_NAME upstream_name upstream_addr \
    upstream_status upstream_connect_time upstream_header_time upstream_response_time location \
    server_name server_addr server_port connection connection_requests tls_protocol tls_cipher \
    cache_status error pid ssl_client_verify ssl_client_s_dn ssl_client_i_dn ssl_client_serial";

/// A variable of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogVar {
    /// A request variable shared with header rules (`$host`, `$http_NAME`, ...).
    Request(Var),
    /// `$realip_remote_addr`: the TCP peer's address (`$remote_addr` is the client's).
    PeerAddr,
    /// `$remote_user`: the user of Basic authentication.
    RemoteUser,
    /// `$time_local`: `22/Nov/2026:13:55:36 +0000`.
    TimeLocal,
    /// `$time_iso8601`: `2026-11-22T13:55:36+00:00`.
    TimeIso8601,
    /// `$msec`: seconds since the epoch, with milliseconds.
    Msec,
    /// `$request`: the request line.
    RequestLine,
    /// `$args`: the query string.
    Args,
    /// `$upstream_uri`: the path and query sent upstream (after rewrites).
    UpstreamUri,
    /// `$server_protocol`: `HTTP/1.1`, `HTTP/2.0`.
    Protocol,
    /// `$status`
    Status,
    /// `$body_bytes_sent`
    BodyBytesSent,
    /// `$bytes_sent`: the response header and body.
    BytesSent,
    /// `$request_length`: the request header and body.
    RequestLength,
    /// `$request_time`: seconds, with milliseconds.
    RequestTime,
    /// `$sent_http_NAME`: a response header.
    SentHeader(HeaderName),
    /// `$upstream_name`
    UpstreamName,
    /// `$upstream_addr`: every backend tried, comma separated.
    UpstreamAddr,
    /// `$upstream_status`: each attempt's status.
    UpstreamStatus,
    /// `$upstream_connect_time`: each attempt's time to a connection.
    UpstreamConnectTime,
    /// `$upstream_header_time`: each attempt's time to the response header.
    UpstreamHeaderTime,
    /// `$upstream_response_time`: each attempt's time to its end.
    UpstreamResponseTime,
    /// `$server_name`: the pingap server (listener).
    ServerName,
    /// `$connection`: the serial number of the client connection.
    Connection,
    /// `$connection_requests`: requests on the connection so far.
    ConnectionRequests,
    /// `$tls_protocol`
    TlsProtocol,
    /// `$tls_cipher`
    TlsCipher,
    /// `$cache_status`
    CacheStatus,
    /// `$error`: why pingap failed the request.
    Error,
    /// `$pid`
    Pid,
}

impl LogVar {
    /// Resolves a variable name (without `$`).
    pub fn parse(name: &str) -> Result<LogVar, String> {
        let var = match name {
            "client_ip" => LogVar::Request(Var::RemoteAddr),
            "request_method" => LogVar::Request(Var::Method),
            "realip_remote_addr" => LogVar::PeerAddr,
            "remote_user" => LogVar::RemoteUser,
            "time_local" => LogVar::TimeLocal,
            "time_iso8601" => LogVar::TimeIso8601,
            "msec" => LogVar::Msec,
            "request" => LogVar::RequestLine,
            "args" | "query_string" => LogVar::Args,
            "upstream_uri" => LogVar::UpstreamUri,
            "server_protocol" => LogVar::Protocol,
            "status" => LogVar::Status,
            "body_bytes_sent" => LogVar::BodyBytesSent,
            "bytes_sent" => LogVar::BytesSent,
            "request_length" => LogVar::RequestLength,
            "request_time" => LogVar::RequestTime,
            "upstream_name" => LogVar::UpstreamName,
            "upstream_addr" => LogVar::UpstreamAddr,
            "upstream_status" => LogVar::UpstreamStatus,
            "upstream_connect_time" => LogVar::UpstreamConnectTime,
            "upstream_header_time" => LogVar::UpstreamHeaderTime,
            "upstream_response_time" => LogVar::UpstreamResponseTime,
            "server_name" => LogVar::ServerName,
            "connection" => LogVar::Connection,
            "connection_requests" => LogVar::ConnectionRequests,
            "tls_protocol" => LogVar::TlsProtocol,
            "tls_cipher" => LogVar::TlsCipher,
            "cache_status" => LogVar::CacheStatus,
            "error" => LogVar::Error,
            "pid" => LogVar::Pid,
            _ => {
                if let Some(header) = name.strip_prefix("sent_http_").filter(|h| !h.is_empty()) {
                    let header = header.replace('_', "-").to_ascii_lowercase();
                    return HeaderName::try_from(header)
                        .map(LogVar::SentHeader)
                        .map_err(|e| format!("invalid header in ${name}: {e}"));
                }
                return Var::parse(name)
                    .map(LogVar::Request)
                    .map_err(|_| format!("unknown variable ${name} (known: {KNOWN})"));
            }
        };
        Ok(var)
    }

    /// Whether the value is a number in JSON.
    fn is_number(&self) -> bool {
        matches!(
            self,
            LogVar::Status
                | LogVar::BodyBytesSent
                | LogVar::BytesSent
                | LogVar::RequestLength
                | LogVar::RequestTime
                | LogVar::Msec
                | LogVar::Connection
                | LogVar::ConnectionRequests
                | LogVar::Pid
                | LogVar::Request(Var::RemotePort | Var::ServerPort)
        )
    }

    /// Appends the value for `entry` to `out`, unescaped (nothing when it has none).
    pub fn render(&self, entry: &Entry<'_>, out: &mut String) {
        match self {
            LogVar::Request(var) => var.render(&entry.vars, out),
            LogVar::PeerAddr => {
                if let Some(peer) = entry.vars.remote_addr {
                    let _ = write!(out, "{}", peer.ip());
                }
            }
            LogVar::RemoteUser => {
                if let Some(user) = basic_user(entry) {
                    out.push_str(&user);
                }
            }
            LogVar::TimeLocal => with_clock(entry.time, |clock| out.push_str(&clock.local)),
            LogVar::TimeIso8601 => with_clock(entry.time, |clock| out.push_str(&clock.iso8601)),
            LogVar::Msec => {
                let since = entry.time.duration_since(UNIX_EPOCH).unwrap_or_default();
                let _ = write!(out, "{}.{:03}", since.as_secs(), since.subsec_millis());
            }
            LogVar::RequestLine => {
                let _ = write!(
                    out,
                    "{} {} {}",
                    entry.vars.req.method,
                    entry.vars.request_uri,
                    protocol(entry.vars.req.version)
                );
            }
            LogVar::Args => {
                if let Some((_, query)) = entry.vars.request_uri.split_once('?') {
                    out.push_str(query);
                }
            }
            LogVar::UpstreamUri => {
                if entry.upstream_name.is_some() {
                    out.push_str(entry.upstream_uri);
                }
            }
            LogVar::Protocol => out.push_str(protocol(entry.vars.req.version)),
            LogVar::Status => push_number(out, entry.status),
            LogVar::BodyBytesSent => push_number(out, entry.body_bytes_sent),
            LogVar::BytesSent => {
                let header = entry.response.map_or(0, response_header_len);
                push_number(out, header + entry.body_bytes_sent);
            }
            LogVar::RequestLength => {
                push_number(out, request_header_len(entry) + entry.body_bytes_read);
            }
            LogVar::RequestTime => push_seconds(out, entry.duration),
            LogVar::SentHeader(name) => {
                if let Some(value) = entry.response.and_then(|r| r.headers.get(name)) {
                    out.push_str(&String::from_utf8_lossy(value.as_bytes()));
                }
            }
            LogVar::UpstreamName => out.push_str(entry.upstream_name.unwrap_or_default()),
            LogVar::UpstreamAddr => push_list(out, entry, |out, a| {
                let _ = write!(out, "{}", a.addr);
            }),
            LogVar::UpstreamStatus => push_list(out, entry, |out, a| match a.status {
                Some(status) => push_number(out, status),
                None => out.push('-'),
            }),
            LogVar::UpstreamConnectTime => {
                push_list(out, entry, |out, a| push_since(out, a.started, a.connected))
            }
            LogVar::UpstreamHeaderTime => {
                push_list(out, entry, |out, a| push_since(out, a.started, a.answered))
            }
            LogVar::UpstreamResponseTime => push_list(out, entry, |out, a| {
                push_since(out, a.started, a.ended.or(Some(entry.ended)))
            }),
            LogVar::ServerName => out.push_str(entry.server),
            LogVar::Connection => {
                if let Some(connection) = entry.connection {
                    push_number(out, connection.serial);
                }
            }
            LogVar::ConnectionRequests => {
                if let Some(connection) = entry.connection {
                    push_number(out, connection.requests);
                }
            }
            LogVar::TlsProtocol => {
                if let Some(tls) = entry.tls {
                    out.push_str(&tls.version);
                }
            }
            LogVar::TlsCipher => {
                if let Some(tls) = entry.tls {
                    out.push_str(&tls.cipher);
                }
            }
            LogVar::CacheStatus => out.push_str(entry.cache_status.unwrap_or_default()),
            LogVar::Error => {
                if let Some(error) = entry.error {
                    let _ = write!(out, "{error}");
                }
            }
            LogVar::Pid => push_number(out, std::process::id()),
        }
    }
}

/// Serial number and request count of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSerial {
    /// The connection's serial number, counted from 1 since the process started.
    pub serial: u64,
    /// Requests on the connection so far, this one included.
    pub requests: u64,
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn push_number(out: &mut String, n: impl std::fmt::Display) {
    let _ = write!(out, "{n}");
}

fn push_seconds(out: &mut String, duration: Duration) {
    let millis = duration.as_millis();
    let _ = write!(out, "{}.{:03}", millis / 1000, millis % 1000);
}

fn push_since(out: &mut String, from: Instant, to: Option<Instant>) {
    match to {
        Some(to) => push_seconds(out, to.saturating_duration_since(from)),
        None => out.push('-'),
    }
}

/// One value per upstream attempt, `", "` between them (as nginx writes them).
fn push_list(
    out: &mut String,
    entry: &Entry<'_>,
    mut each: impl FnMut(&mut String, &crate::observe::UpstreamAttempt),
) {
    for (i, attempt) in entry.attempts.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        each(out, attempt);
    }
}

/// The user name of an `Authorization: Basic` header.
fn basic_user(entry: &Entry<'_>) -> Option<String> {
    use base64::Engine as _;
    let value = entry
        .vars
        .req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    decoded.split_once(':').map(|(user, _)| user.to_string())
}

/// The size of the request header as HTTP/1.1 sends it.
fn request_header_len(entry: &Entry<'_>) -> usize {
    let req = entry.vars.req;
    let line = req.method.as_str().len() + entry.vars.request_uri.len() + " HTTP/1.1\r\n ".len();
    line + headers_len(&req.headers) + 2
}

/// The size of a response header as HTTP/1.1 sends it.
fn response_header_len(resp: &pingora::http::ResponseHeader) -> usize {
    let reason = resp.status.canonical_reason().unwrap_or_default();
    "HTTP/1.1 200 \r\n".len() + reason.len() + headers_len(&resp.headers) + 2
}

fn headers_len(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// The formatted times of one second, cached per thread: a busy proxy logs many lines a second.
struct Clock {
    second: u64,
    local: String,
    iso8601: String,
}

fn with_clock(time: SystemTime, f: impl FnOnce(&Clock)) {
    thread_local! {
        static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
    }
    let second = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    CLOCK.with_borrow_mut(|clock| {
        if clock.as_ref().is_none_or(|c| c.second != second) {
            let local: chrono::DateTime<chrono::Local> = time.into();
            *clock = Some(Clock {
                second,
                local: local.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
                iso8601: local.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            });
        }
        if let Some(clock) = clock {
            f(clock);
        }
    });
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(LogVar),
}

/// A parsed access-log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(Kind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A line of text with variables.
    Text(Vec<Segment>),
    /// One JSON object per line.
    Json(Vec<(String, LogVar)>),
}

impl Format {
    /// Parses `combined`, `common`, `json` or a custom format.
    pub fn parse(spec: &str) -> Result<Format, String> {
        match spec {
            "combined" => Format::text(COMBINED),
            "common" => Format::text(COMMON),
            "json" => JSON_FIELDS
                .iter()
                .map(|(key, var)| LogVar::parse(var).map(|var| (key.to_string(), var)))
                .collect::<Result<_, _>>()
                .map(|fields| Format(Kind::Json(fields))),
            custom => Format::text(custom),
        }
    }

    fn text(template: &str) -> Result<Format, String> {
        let mut segments = Vec::new();
        for piece in pieces(template, false) {
            segments.push(match piece {
                Piece::Literal(text) => Segment::Literal(text),
                Piece::Name(name) => Segment::Var(LogVar::parse(name)?),
            });
        }
        if !segments.iter().any(|s| matches!(s, Segment::Var(_))) {
            return Err(format!(
                "\"{template}\" is neither combined, common nor json, and has no $variable"
            ));
        }
        Ok(Format(Kind::Text(segments)))
    }

    /// Whether a variable needs the connection's serial number.
    pub fn uses_connection(&self) -> bool {
        self.vars()
            .any(|v| matches!(v, LogVar::Connection | LogVar::ConnectionRequests))
    }

    fn vars(&self) -> Box<dyn Iterator<Item = &LogVar> + '_> {
        match &self.0 {
            Kind::Text(segments) => Box::new(segments.iter().filter_map(|s| match s {
                Segment::Var(var) => Some(var),
                Segment::Literal(_) => None,
            })),
            Kind::Json(fields) => Box::new(fields.iter().map(|(_, var)| var)),
        }
    }

    /// Appends the line for `entry` to `out`, with its newline.
    pub fn render(&self, entry: &Entry<'_>, out: &mut String) {
        match &self.0 {
            Kind::Text(segments) => {
                for segment in segments {
                    match segment {
                        Segment::Literal(text) => out.push_str(text),
                        Segment::Var(var) => {
                            let start = out.len();
                            var.render(entry, out);
                            if out.len() == start {
                                out.push('-');
                            } else {
                                escape_in_place(out, start, escape_text);
                            }
                        }
                    }
                }
            }
            Kind::Json(fields) => {
                out.push('{');
                for (i, (key, var)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(key);
                    out.push_str("\":");
                    let start = out.len();
                    var.render(entry, out);
                    if out.len() == start {
                        out.push_str("null");
                    } else if !var.is_number() {
                        escape_in_place(out, start, escape_json);
                        out.insert(start, '"');
                        out.push('"');
                    }
                }
                out.push('}');
            }
        }
        out.push('\n');
    }
}

/// Escapes `out[start..]` with `escape`; allocates only when something needs escaping.
fn escape_in_place(out: &mut String, start: usize, escape: fn(&str, &mut String)) {
    let value = &out[start..];
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return;
    }
    let value = out.split_off(start);
    escape(&value, out);
}

/// nginx's escaping of log values: `"`, `\`, control characters and bytes beyond ASCII as
/// `\xHH`, so that a line stays one line and its fields stay delimited.
pub fn escape_text(value: &str, out: &mut String) {
    for byte in value.bytes() {
        if byte == b'"' || byte == b'\\' || !(0x20..0x7f).contains(&byte) {
            let _ = write!(out, "\\x{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
}

/// Escapes `value` for the inside of a JSON string.
pub fn escape_json(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}
