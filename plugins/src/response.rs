//! A response a plugin gives instead of proxying the request.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

/// A response produced by a plugin in the request phase.
///
/// With a body, the body is sent as it is. Without one, the proxy renders its standard error page
/// for the status (HTML or JSON, as the client accepts), with [`Response::message`] as the detail,
/// so that refusals from every plugin look alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// Extra response headers, in order. `Content-Length` is set by the proxy.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body; `None` means "render the standard error page".
    pub body: Option<Bytes>,
    /// A short, client-safe explanation used by the standard error page.
    pub message: Option<Cow<'static, str>>,
}

impl Response {
    /// A response with this status, no extra headers and the standard page as its body.
    pub fn new(status: StatusCode) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: None,
            message: None,
        }
    }

    /// A refusal with this status and a client-safe explanation for the standard error page.
    pub fn refuse(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Response {
            message: Some(message.into()),
            ..Response::new(status)
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets a body with its content type.
    pub fn body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.headers.push((
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        ));
        self.body = Some(body.into());
        self
    }
}
