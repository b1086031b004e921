//! gRPC-aware errors: a gRPC client gets pingap's own answers (no route, dead upstream, a
//! plugin's refusal) as a gRPC status, not as an HTML page it could not read.
//!
//! The answer is a "Trailers-Only" response: HTTP 200 with `content-type: application/grpc`,
//! `grpc-status` and a percent-encoded `grpc-message`, and no body. HTTP statuses map to gRPC
//! codes as the gRPC specification's table does, with 504 as `DEADLINE_EXCEEDED` and 413 as
//! `RESOURCE_EXHAUSTED`.
//!
//! A call's `grpc-timeout` bounds how long pingap waits for the upstream: past it the client
//! gets `DEADLINE_EXCEEDED` from pingap, whatever the upstream's own timeouts.

use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode, header};
use pingora::http::RequestHeader;

/// Whether the request is a gRPC call.
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The two gRPC-web encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebKind {
    /// `application/grpc-web` and `application/grpc-web+proto`.
    Binary,
    /// `application/grpc-web-text` (base64).
    Text,
}

/// Whether the request is a gRPC-web call, and of which kind.
pub fn web_kind(req: &RequestHeader) -> Option<WebKind> {
    let content_type = req.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let content_type = content_type.trim().to_ascii_lowercase();
    if content_type.starts_with("application/grpc-web-text") {
        Some(WebKind::Text)
    } else if content_type.starts_with("application/grpc-web") {
        Some(WebKind::Binary)
    } else {
        None
    }
}

/// The longest `grpc-timeout` value: 8 digits (the specification's limit).
const MAX_TIMEOUT_DIGITS: usize = 8;

/// The deadline a gRPC call asks for in `grpc-timeout` (`"200m"`, `"5S"` …), if any and valid.
pub fn timeout(req: &RequestHeader) -> Option<Duration> {
    let value = req.headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > MAX_TIMEOUT_DIGITS {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The gRPC code for an HTTP status.
pub fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 | 415 => 12,       // UNIMPLEMENTED
        413 => 8,              // RESOURCE_EXHAUSTED
        429 | 502 | 503 => 14, // UNAVAILABLE
        504 => 4,              // DEADLINE_EXCEEDED
        400 | 500 => 13,       // INTERNAL
        _ => 2,                // UNKNOWN
    }
}

/// The headers of a Trailers-Only gRPC error answer.
pub fn error_headers(status: StatusCode, message: &str) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        ),
        (
            HeaderName::from_static("grpc-status"),
            HeaderValue::from(u16::from(code_for(status))),
        ),
    ];
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.push((HeaderName::from_static("grpc-message"), message));
    }
    headers
}

/// Percent-encodes a `grpc-message` (everything outside printable ASCII, and `%`).
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses_and_encodes_messages() {
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), 14);
        assert_eq!(code_for(StatusCode::GATEWAY_TIMEOUT), 4);
        assert_eq!(code_for(StatusCode::NOT_FOUND), 12);
        assert_eq!(code_for(StatusCode::UNAUTHORIZED), 16);
        assert_eq!(code_for(StatusCode::IM_A_TEAPOT), 2);
        assert_eq!(percent_encode("100% naïve"), "100%25 na%C3%AFve");
        let headers = error_headers(StatusCode::SERVICE_UNAVAILABLE, "no backend");
        assert_eq!(headers[1].1, "14");
        assert_eq!(headers[2].1, "no backend");
    }

    #[test]
    fn grpc_timeouts_parse() {
        let with = |value: &str| {
            let mut req = RequestHeader::build("POST", b"/svc/Method", None).unwrap();
            req.insert_header("grpc-timeout", value).unwrap();
            timeout(&req)
        };
        assert_eq!(with("200m"), Some(Duration::from_millis(200)));
        assert_eq!(with("5S"), Some(Duration::from_secs(5)));
        assert_eq!(with("2M"), Some(Duration::from_secs(120)));
        assert_eq!(with("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(with("10u"), Some(Duration::from_micros(10)));
        for bad in ["", "m", "5", "5x", "123456789S", "-1S"] {
            assert_eq!(with(bad), None, "{bad}");
        }
    }
}
