//! Responses pingap writes itself: error pages and plugin replies. They go through the same
//! response steps as proxied responses (the location's response header rules, then the
//! response phases of the plugins that ran), so for example CORS headers reach a 401.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use pingora::Result;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::reply::Reply;
use super::request::variables;
use crate::runtime::error_page::ErrorPages;

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
    let grpc = super::grpc::is_grpc(session.req_header());
    // The status, extra headers and body to send for an error page.
    let page = |status: StatusCode, message: &str, mut headers: Vec<_>| {
        if grpc {
            headers.extend(super::grpc::error_headers(status, message));
            return (StatusCode::OK, headers, Bytes::new());
        }
        let page = pages.render(status, message, accept.as_deref());
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static(page.content_type),
        ));
        (status, headers, page.body)
    };
    let (status, headers, body) = match reply {
        Reply::Error { status, message } => page(status, &message, Vec::new()),
        Reply::Plugin(response) => match response.body {
            Some(body) => (response.status, response.headers, body),
            None => {
                let message = response
                    .message
                    .as_deref()
                    .or(response.status.canonical_reason())
                    .unwrap_or_default();
                page(response.status, message, response.headers)
            }
        },
    };

    let mut resp = ResponseHeader::build(status, Some(headers.len() + 1))?;
    for (name, value) in headers {
        resp.append_header(name, value)?;
    }
    if !grpc {
        resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    }
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
        let cx = variables(req, ctx, &location);
        location.response_headers.apply(resp, &cx);
    }
    location
        .chain
        .response_headers(resp, &mut ctx.plugin)
        .map_err(super::errors::from_plugin)
}
