//! The proxy's work on a request that needs no connection: routing it into its context, the
//! request phase of its plugins, rewriting its path, and preparing the request sent upstream.
//! The Pingora phases ([`super::Proxy`]) and `pingap explain` ([`super::explain`]) both call
//! these, so explain shows exactly what the proxy does.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use pingap_plugins::Flow;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use super::grpc;
use super::grpc_web::Bridge as GrpcWebBridge;
use super::reply::Reply;
use crate::router::path_normalize::normalize_path;
use crate::runtime::plan::{Arrival, Decision};
use crate::runtime::{Location, Runtime};
use pingap_plugins::vars::Vars;

/// How a request reached the proxy, besides its header.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The server (listener).
    pub server: &'a str,
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// The local address.
    pub local: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether it negotiated TLS 1.2.
    pub tls12: bool,
}

/// Routes `req` with `runtime` ([`Runtime::plan`]) and fills `ctx` from the plan; for a location
/// with `grpc_web`, starts the bridge of a gRPC-web call (which rewrites `req` into a gRPC
/// request). Returns pingap's own answer when the request is not to be proxied.
pub fn route(
    runtime: Arc<Runtime>,
    req: &mut RequestHeader,
    connection: &Connection<'_>,
    ctx: &mut RequestCtx,
) -> Result<Option<Reply>> {
    let plan = runtime.plan(
        req,
        &Arrival {
            server: connection.server,
            peer: connection.peer,
            tls12: connection.tls12,
        },
    );
    if let Some(normalized) = plan.normalized {
        req.set_uri(normalized.path_and_query);
        if let Some(host) = normalized.host {
            req.insert_header(http::header::HOST, host)?;
        }
    }
    ctx.plugin.host = plan.host;
    ctx.plugin.client_ip = plan.client_ip;
    ctx.peer_trusted = plan.peer_trusted;
    ctx.plugin.remote_addr = connection.peer;
    ctx.plugin.server_addr = connection.local;
    ctx.plugin.tls = connection.tls;
    ctx.runtime = Some(runtime);
    let routed = match plan.decision {
        Decision::Refuse { status, message } => return Ok(Some(Reply::error(status, message))),
        Decision::Location(routed) => routed,
    };
    ctx.plugin.location = routed.location.name.clone();
    ctx.matched_len = routed.matched_len;
    ctx.captures = routed.captures;
    if routed.location.grpc_web
        && let Some(kind) = grpc::web_kind(req)
    {
        ctx.grpc_web = Some(GrpcWebBridge::start(kind, req)?);
    }
    ctx.location = Some(routed.location);
    Ok(None)
}

/// Runs the request phase of the location's plugins. Returns the answer of the plugin that
/// answered (or of pingap, when one failed); `None` lets the request go on.
pub async fn request_plugins(req: &mut RequestHeader, ctx: &mut RequestCtx) -> Option<Reply> {
    let location = ctx.location.clone()?;
    if location.chain.is_empty() {
        return None;
    }
    match location.chain.request(req, &mut ctx.plugin).await {
        Ok(Flow::Continue) => None,
        Ok(Flow::Respond(response)) => Some(Reply::Plugin(response)),
        Err(e) => {
            tracing::error!(location = %location.name, "{e}");
            Some(Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "a plugin failed",
            ))
        }
    }
}

/// Applies the location's path rewrite to `req`, keeping the path as received in the context,
/// and checks the path to be forwarded (after the rewrite and any rewriting plugin): it is
/// normalised again, and one that climbs above `/`, holds a dot segment (which could only come
/// from a variable's value) or bytes a path may not hold is refused with 400.
pub fn rewrite(req: &mut RequestHeader, ctx: &mut RequestCtx) -> Result<()> {
    // The path as received is kept only when something changes it (no copy per request).
    let mut original = None;
    if let Some(location) = ctx.location.clone()
        && let Some(rewrite) = &location.rewrite
        && let Some(rewritten) = rewrite.apply(
            req.uri.path(),
            ctx.matched_len,
            req.uri.query(),
            &variables(req, ctx, &location),
        )
    {
        original = Some(path_and_query(req).to_string());
        set_uri(req, &rewritten)?;
    }
    let path = req.uri.path();
    let refuse = |why: String| {
        Error::e_explain(
            ErrorType::HTTPStatus(400),
            format!("the path to forward is refused: {why}"),
        )
    };
    match normalize_path(path) {
        Err(e) => return refuse(e.to_string()),
        Ok(Cow::Borrowed(_)) => {}
        Ok(Cow::Owned(normal)) => {
            if has_dot_segment(path) {
                return refuse(format!("\"{path}\" has a dot segment"));
            }
            let with_query = match req.uri.query() {
                Some(query) => format!("{normal}?{query}"),
                None => normal,
            };
            original.get_or_insert_with(|| path_and_query(req).to_string());
            set_uri(req, &with_query)?;
        }
    }
    if let Some(original) = original
        && original != path_and_query(req)
    {
        ctx.original_uri = Some(original);
    }
    Ok(())
}

/// Whether `path` has a `.` or `..` segment, plain or percent-encoded.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

/// Prepares the request sent upstream (`upstream`, Pingora's copy of `req` as it stands after
/// the rewrite): `X-Forwarded-*`, the gRPC-web bridge, `traceparent`, the location's request
/// header rules, then the upstream-request phase of its plugins.
pub fn upstream_request(
    upstream: &mut RequestHeader,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    crate::headers::forwarded::add_forwarded_headers(
        upstream,
        ctx.plugin.remote_addr.map(|a| a.ip()),
        ctx.plugin.client_ip,
        ctx.peer_trusted,
        ctx.plugin.tls,
        &ctx.plugin.host,
    );
    if let Some(bridge) = &ctx.grpc_web {
        bridge.upstream_request(upstream);
    }
    // pingap answered `Expect: 100-continue` itself (an HTTP/1.1 hop-by-hop expectation).
    upstream.remove_header(&http::header::EXPECT);
    if let (Some(trace), Some(attempt)) = (&ctx.trace, ctx.attempts.last()) {
        upstream.insert_header("traceparent", trace.traceparent(attempt.span_id))?;
    }
    let Some(location) = ctx.location.clone() else {
        return Ok(());
    };
    if !location.request_headers.is_empty() {
        let cx = variables(req, ctx, &location);
        location.request_headers.apply(upstream, &cx);
    }
    location
        .chain
        .upstream_request(upstream, &mut ctx.plugin)
        .map_err(super::errors::from_plugin)
}

/// Whether the client waits for `100 Continue` before sending its body (HTTP/1.1).
pub fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Replaces the request's path and query.
fn set_uri(req: &mut RequestHeader, path_and_query: &str) -> Result<()> {
    let uri = path_and_query.parse::<http::Uri>().map_err(|e| {
        Error::because(
            ErrorType::HTTPStatus(400),
            "the rewritten path is not a valid URI",
            e,
        )
    })?;
    req.set_uri(uri);
    Ok(())
}

/// The path and query as sent (after any rewrite).
pub fn path_and_query(req: &RequestHeader) -> &str {
    req.uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// The path and query as received (before any rewrite).
pub fn request_uri<'a>(req: &'a RequestHeader, ctx: &'a RequestCtx) -> &'a str {
    ctx.original_uri
        .as_deref()
        .unwrap_or_else(|| path_and_query(req))
}

/// The variables of a request for templates.
pub fn variables<'a>(
    req: &'a RequestHeader,
    ctx: &'a RequestCtx,
    location: &'a Location,
) -> Vars<'a> {
    let request_uri = request_uri(req, ctx);
    Vars {
        location: &location.name,
        captures: &ctx.captures,
        ..ctx.plugin.variables(req, request_uri)
    }
}
