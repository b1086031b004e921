//! Responses pingap writes itself: error pages and plugin replies. They go through the same
//! response steps as proxied responses (the location's response header rules, then the
//! response phases of the plugins that ran), so for example CORS headers reach a 401.

use std::borrow::Cow;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use pingap_plugins::Response;
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::error_page::ErrorPages;
use super::var_context;

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

/// Writes `reply` to the client.
pub async fn send(session: &mut Session, ctx: &mut RequestCtx, reply: Reply) -> Result<()> {
    let accept = session
        .req_header()
        .headers
        .get(header::ACCEPT)
        .map(|v| v.as_bytes().to_vec());
    let default_pages;
    let pages = match &ctx.runtime {
        Some(runtime) => &runtime.error_pages,
        None => {
            default_pages = ErrorPages::default();
            &default_pages
        }
    };
    let (status, headers, body, content_type) = match reply {
        Reply::Error { status, message } => {
            let page = pages.render(status, &message, accept.as_deref());
            (status, Vec::new(), page.body, Some(page.content_type))
        }
        Reply::Plugin(response) => match response.body {
            Some(body) => (response.status, response.headers, body, None),
            None => {
                let message = response
                    .message
                    .as_deref()
                    .or(response.status.canonical_reason())
                    .unwrap_or_default();
                let page = pages.render(response.status, message, accept.as_deref());
                (
                    response.status,
                    response.headers,
                    page.body,
                    Some(page.content_type),
                )
            }
        },
    };

    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (name, value) in headers {
        resp.append_header(name, value)?;
    }
    if let Some(content_type) = content_type {
        resp.insert_header(header::CONTENT_TYPE, content_type)?;
    }
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    finish_response_header(session.req_header(), &mut resp, ctx)?;

    let send_body = session.req_header().method != Method::HEAD && !body.is_empty();
    session
        .write_response_header(Box::new(resp), !send_body)
        .await?;
    if send_body {
        let mut chunk = Some(body);
        if let Some(location) = &ctx.location {
            location
                .chain
                .response_body(&mut chunk, true, &mut ctx.plugin)
                .map_err(super::errors::from_plugin)?;
        }
        session
            .write_response_body(Some(chunk.unwrap_or_else(Bytes::new)), true)
            .await?;
    }
    Ok(())
}

/// The last changes to a response header before it is sent: the location's response header
/// rules, then the response-header phase of its plugins.
pub fn finish_response_header(
    req: &RequestHeader,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let Some(location) = ctx.location.clone() else {
        return Ok(());
    };
    if !location.response_headers.is_empty() {
        let cx = var_context(req, ctx, &location);
        location.response_headers.apply(resp, &cx);
    }
    location
        .chain
        .response_headers(resp, &mut ctx.plugin)
        .map_err(super::errors::from_plugin)
}
