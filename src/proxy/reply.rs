//! What pingap answers itself instead of proxying: an error page or a plugin's response. Decided
//! while routing or by the request phase of the plugins, written by [`super::respond`].

use std::borrow::Cow;

use http::StatusCode;
use pingap_plugins::Response;

/// A response to send instead of proxying.
pub enum Reply {
    /// The standard error page for a status, with a client-safe explanation.
    Error {
        /// The status.
        status: StatusCode,
        /// The explanation.
        message: Cow<'static, str>,
    },
    /// A plugin's response.
    Plugin(Response),
}

impl Reply {
    /// The standard error page.
    pub fn error(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error {
            status,
            message: message.into(),
        }
    }
}
