//! The one place where an error becomes a status code and a client-safe message.
//!
//! | error | status |
//! |---|---|
//! | no location matched | 404 |
//! | connection to the backend refused, unreachable, TLS failure | 502 |
//! | connecting to the backend timed out, or it was too slow to answer | 504 |
//! | no backend available | 503 |
//! | a plugin refused the request body (too large) | 413, or the plugin's status |
//! | a plugin failed | 500 |
//! | a malformed request | 400 |

use pingap_plugins::PluginError;
use pingora::{Error, ErrorSource, ErrorType};

/// A plugin error as a Pingora error: its status when it refused the request, 500 otherwise.
pub fn from_plugin(error: PluginError) -> Box<Error> {
    match error.status {
        Some(status) => Error::explain(
            ErrorType::HTTPStatus(status.as_u16()),
            error.message.to_string(),
        ),
        None => Error::because(ErrorType::InternalError, "plugin failed", error),
    }
}

/// The status for `error` (0 when the client is gone and nothing can be sent) and what to tell
/// the client; `upstream` names the upstream being proxied to, if any.
pub fn status_for(error: &Error, upstream: Option<&str>) -> (u16, String) {
    let upstream = upstream.map_or_else(String::new, |name| format!(" \"{name}\""));
    match error.etype() {
        ErrorType::HTTPStatus(code) => {
            let message = error
                .context
                .as_ref()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default();
            (*code, message)
        }
        ErrorType::ConnectTimedout => (504, format!("connecting to upstream{upstream} timed out")),
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::ConnectProxyFailure
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => (502, format!("could not connect to upstream{upstream}")),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if error.esource() == &ErrorSource::Upstream =>
        {
            (504, format!("upstream{upstream} timed out"))
        }
        ErrorType::InvalidHTTPHeader
            if error.esource() == &ErrorSource::Upstream
                && error.to_string().contains("header is too large") =>
        {
            (
                502,
                format!("the response header of upstream{upstream} is too large"),
            )
        }
        _ => match error.esource() {
            ErrorSource::Upstream => (502, format!("upstream{upstream} failed")),
            ErrorSource::Downstream => match error.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
                    (0, String::new())
                }
                ErrorType::ReadTimedout => {
                    (408, "the request was not received in time".to_string())
                }
                _ => (400, "malformed request".to_string()),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, "internal error".to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(etype: ErrorType) -> Box<Error> {
        let mut e = Error::new(etype);
        e.as_up();
        e
    }

    #[test]
    fn maps_upstream_failures() {
        assert_eq!(
            status_for(&up(ErrorType::ConnectRefused), Some("api")).0,
            502
        );
        assert_eq!(
            status_for(&up(ErrorType::ConnectRefused), Some("api")).1,
            "could not connect to upstream \"api\""
        );
        assert_eq!(status_for(&up(ErrorType::ConnectTimedout), None).0, 504);
        assert_eq!(status_for(&up(ErrorType::ReadTimedout), None).0, 504);
        assert_eq!(status_for(&up(ErrorType::ConnectionClosed), None).0, 502);
    }

    #[test]
    fn maps_explicit_statuses_and_downstream_errors() {
        let e = Error::explain(ErrorType::HTTPStatus(503), "no backend available");
        assert_eq!(
            status_for(&e, None),
            (503, "no backend available".to_string())
        );
        let mut gone = Error::new(ErrorType::ConnectionClosed);
        gone.as_down();
        assert_eq!(status_for(&gone, None).0, 0);
        let mut slow = Error::new(ErrorType::ReadTimedout);
        slow.as_down();
        assert_eq!(status_for(&slow, None).0, 408);
        assert_eq!(
            status_for(&Error::new(ErrorType::InternalError), None).0,
            500
        );
    }
}
