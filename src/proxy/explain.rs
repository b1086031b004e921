//! `pingap explain`: which server and location would take a request, why every location tried
//! before it did not, what the plugins make of it, and what would be sent upstream. It runs the
//! proxy's own steps ([`super::request`]: routing, the request phase of the plugins, the rewrite,
//! the upstream request with its forwarded headers, header rules, upstream-request plugins and
//! protocol bridge) on the compiled configuration, without sending anything.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use pingora::http::RequestHeader;

use super::InFlight;
use super::ctx::RequestCtx;
use super::reply::Reply;
use super::request::{self, Connection};
use crate::router::Attempt;
use crate::runtime::{Compiled, ListenerPlan, Location};

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// An absolute URL (`http://host:port/path?query`) or a path (then give a `Host` header).
    pub url: String,
    /// Extra request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The server to ask, when the URL's port does not say.
    pub server: Option<String>,
    /// The client address.
    pub client: IpAddr,
}

/// The explanation, and whether a location matched.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The report, for a terminal.
    pub text: String,
    /// Whether some location takes the request.
    pub matched: bool,
    /// The same, as data (the admin API's answer).
    pub report: Report,
}

/// What the proxy would do with a request, as data.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Report {
    /// The server (listener) that would take it.
    pub server: String,
    /// Why that server, when it had to be guessed.
    pub server_note: Option<String>,
    /// The request's host as routed (lower-cased, no port).
    pub host: String,
    /// Every location, in the order tried, with why it did or did not match.
    pub candidates: Vec<CandidateReport>,
    /// The location that takes it.
    pub location: Option<String>,
    /// What pingap or a plugin answers instead of proxying (`404 Not Found: …`).
    pub answer: Option<String>,
    /// The plugins that run, in order.
    pub plugins: Vec<String>,
    /// The path rewrite, when one applies (`/old -> /new`).
    pub rewrite: Option<String>,
    /// The upstream and its backends.
    pub upstream: Option<String>,
    /// The request as it would be sent upstream.
    pub sent: Option<SentRequest>,
}

/// One location considered.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CandidateReport {
    /// Its name.
    pub location: String,
    /// Whether it was tried (false: its hosts cannot match the request's host).
    pub tried: bool,
    /// Whether it matched.
    pub matched: bool,
    /// Why it did not.
    pub reason: Option<String>,
}

/// A request as it would be sent upstream.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SentRequest {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The headers (name, value), sorted by name.
    pub headers: Vec<(String, String)>,
}

/// How long the request phase of the plugins may take in an explanation (a `mock` plugin with
/// a delay, a JWKS fetch).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Explains what the proxy would do with `request` under `compiled`: the same routing, plugins,
/// rewrite and upstream request preparation as the proxy ([`super::request`]), without sending
/// anything upstream.
pub fn explain(compiled: Compiled, request: &Request) -> Result<Explanation, String> {
    let uri: Uri = request
        .url
        .parse()
        .map_err(|e| format!("invalid URL \"{}\": {e}", request.url))?;
    let tls = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut req = RequestHeader::build(request.method.clone(), path_and_query.as_bytes(), None)
        .map_err(|e| format!("invalid request: {e}"))?;
    if let Some(authority) = uri.authority() {
        req.insert_header(http::header::HOST, authority.as_str())
            .map_err(|e| format!("invalid host: {e}"))?;
    }
    for (name, value) in &request.headers {
        // Repeated headers are kept, as a client sends them; `-H Host:` replaces the URL's.
        let added = if name == http::header::HOST {
            req.insert_header(name.clone(), value.clone())
        } else {
            req.append_header(name.clone(), value.clone()).map(|_| ())
        };
        added.map_err(|e| format!("invalid header {name}: {e}"))?;
    }

    let Compiled { runtime, plan, .. } = compiled;
    let (listener, note) = choose_server(&plan.listeners, request.server.as_deref(), port, tls)?;
    let runtime = Arc::new(runtime);
    let in_flight = Arc::new(InFlight::default());
    let mut ctx = RequestCtx::new(in_flight.enter());
    let connection = Connection {
        server: &listener.server,
        peer: Some(SocketAddr::new(request.client, 50000)),
        local: Some(listener.addr),
        tls: listener.tls.is_some(),
        tls12: false,
    };
    let received = req.clone();
    let refused = request::route(runtime.clone(), &mut req, &connection, &mut ctx)
        .map_err(|e| format!("cannot route the request: {e}"))?;
    let host = ctx.plugin.host.clone();
    let mut report = Report {
        server: listener.server.clone(),
        server_note: (!note.is_empty()).then(|| note.trim().to_string()),
        host: host.clone(),
        ..Report::default()
    };

    let mut out = String::new();
    let scheme = if listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let _ = writeln!(out, "request   {} {}", request.method, request.url);
    let _ = writeln!(
        out,
        "server    {} ({scheme}://{}){note}",
        listener.server, listener.addr
    );
    let _ = writeln!(
        out,
        "host      {}",
        if host.is_empty() { "(none)" } else { &host }
    );
    let _ = writeln!(out);
    if let Some(server) = runtime.server(&listener.server) {
        let attempts = server.router.explain(&host, &received);
        write_candidates(&mut out, &attempts);
        report.candidates = attempts
            .iter()
            .map(|attempt| CandidateReport {
                location: attempt.target.name.to_string(),
                tried: attempt.tried,
                matched: attempt.outcome.is_ok(),
                reason: attempt.outcome.as_ref().err().map(|miss| miss.to_string()),
            })
            .collect();
    }

    let location = match (refused, &ctx.location) {
        (None, Some(location)) => location.clone(),
        (Some(Reply::Error { status, .. }), _) if status == StatusCode::NOT_FOUND => {
            let _ = writeln!(out, "result    no location matched: the request gets 404");
            report.answer = Some("404 Not Found: no location matched".to_string());
            return Ok(Explanation {
                text: out,
                matched: false,
                report,
            });
        }
        (reply, _) => {
            let answer = describe(reply.as_ref());
            let _ = writeln!(out, "result    pingap answers {answer}");
            report.answer = Some(answer);
            return Ok(Explanation {
                text: out,
                matched: false,
                report,
            });
        }
    };
    let _ = writeln!(out, "location  {}", location.name);
    report.location = Some(location.name.to_string());
    if ctx.grpc_web.is_some() {
        let _ = writeln!(
            out,
            "bridge    gRPC-web call, sent upstream as gRPC (answers turned back into gRPC-web)"
        );
    }
    if location.chain.is_empty() {
        let _ = writeln!(out, "plugins   (none)");
    } else {
        let plugins: Vec<String> = location
            .chain
            .instances()
            .map(|i| format!("{} ({}, priority {})", i.name(), i.kind(), i.priority()))
            .collect();
        let _ = writeln!(out, "plugins   {}", plugins.join(", "));
        report.plugins = plugins;
        let _ = writeln!(
            out,
            "          (run first, in this order; they may answer the request themselves)"
        );
        let answer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot run the plugins: {e}"))?
            .block_on(async {
                tokio::time::timeout(PLUGIN_TIMEOUT, request::request_plugins(&mut req, &mut ctx))
                    .await
            })
            .map_err(|_| {
                format!(
                    "the request phase of the plugins took longer than {PLUGIN_TIMEOUT:?} \
                     (a delay, or a plugin waiting on the network)"
                )
            })?;
        if let Some(reply) = answer {
            let answer = describe(Some(&reply));
            let _ = writeln!(out, "result    a plugin answers {answer}");
            report.answer = Some(answer);
            return Ok(Explanation {
                text: out,
                matched: true,
                report,
            });
        }
    }

    let request_uri = request::path_and_query(&req).to_string();
    request::rewrite(&mut req, &mut ctx).map_err(|e| format!("cannot rewrite: {e}"))?;
    match (&ctx.original_uri, &location.rewrite) {
        (Some(original), _) => {
            let rewrite = format!("{original} -> {}", request::path_and_query(&req));
            let _ = writeln!(out, "rewrite   {rewrite}");
            report.rewrite = Some(rewrite);
        }
        (None, Some(_)) => {
            let _ = writeln!(
                out,
                "rewrite   (its regex does not match: {request_uri} is sent as it is)"
            );
        }
        (None, None) => {
            let _ = writeln!(out, "rewrite   (none: {request_uri} is sent as it is)");
        }
    }
    let Some(pool) = &location.upstream else {
        let _ = writeln!(
            out,
            "upstream  (none: the plugins did not answer, so the request gets 503)"
        );
        report.answer = Some("503 Service Unavailable: no upstream, and no plugin answered".into());
        return Ok(Explanation {
            text: out,
            matched: true,
            report,
        });
    };
    let upstream_text = format!("{}: {}", pool.name(), pool.backends().join(", "));
    let _ = writeln!(out, "upstream  {upstream_text}");
    report.upstream = Some(upstream_text);

    // Pingora sends a copy of the request as it stands after the request phase.
    let mut upstream = req.clone();
    request::upstream_request(&mut upstream, &req, &mut ctx)
        .map_err(|e| format!("cannot prepare the upstream request: {e}"))?;
    let _ = writeln!(
        out,
        "sent      {} {}",
        upstream.method,
        request::path_and_query(&upstream)
    );
    let mut names: Vec<&HeaderName> = upstream.headers.keys().collect();
    names.sort_by_key(|n| n.as_str());
    let mut headers = Vec::new();
    for name in names {
        for value in upstream.headers.get_all(name) {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let _ = writeln!(out, "          {name}: {value}");
            headers.push((name.to_string(), value));
        }
    }
    report.sent = Some(SentRequest {
        method: upstream.method.to_string(),
        path: request::path_and_query(&upstream).to_string(),
        headers,
    });
    Ok(Explanation {
        text: out,
        matched: true,
        report,
    })
}

/// The locations tried, in order, with why each did not match; then those that were no
/// candidate for the host.
fn write_candidates(out: &mut String, attempts: &[Attempt<'_, Arc<Location>>]) {
    let width = attempts
        .iter()
        .map(|a| a.target.name.len())
        .max()
        .unwrap_or(0);
    let (tried, elsewhere): (Vec<_>, Vec<_>) = attempts.iter().partition(|a| a.tried);
    let _ = writeln!(out, "locations tried, in order:");
    if tried.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (index, attempt) in tried.iter().enumerate() {
        let name = &attempt.target.name;
        match &attempt.outcome {
            Ok(_) => {
                let _ = writeln!(out, "  {:>2}. {name:width$}  MATCH", index + 1);
            }
            Err(miss) => {
                let _ = writeln!(out, "  {:>2}. {name:width$}  no: {miss}", index + 1);
            }
        }
    }
    if !elsewhere.is_empty() {
        let _ = writeln!(out, "not candidates for this host:");
        for attempt in &elsewhere {
            if let Err(miss) = &attempt.outcome {
                let _ = writeln!(out, "      {:width$}  {miss}", attempt.target.name);
            }
        }
    }
    let _ = writeln!(out);
}

/// A reply in words: `401 Unauthorized`, with pingap's explanation when it has one.
fn describe(reply: Option<&Reply>) -> String {
    match reply {
        Some(Reply::Error { status, message }) => format!("{status}: {message}"),
        Some(Reply::Plugin(response)) => match &response.message {
            Some(message) => format!("{}: {message}", response.status),
            None => response.status.to_string(),
        },
        None => "nothing".to_string(),
    }
}

/// The listener the request would reach, and a note when it had to be guessed.
fn choose_server<'p>(
    listeners: &'p [ListenerPlan],
    wanted: Option<&str>,
    port: u16,
    tls: bool,
) -> Result<(&'p ListenerPlan, String), String> {
    let list = || {
        listeners
            .iter()
            .map(|l| {
                format!(
                    "{} ({}{})",
                    l.server,
                    l.addr,
                    if l.tls.is_some() { ", https" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(wanted) = wanted {
        return listeners
            .iter()
            .find(|l| l.server == wanted)
            .map(|l| (l, String::new()))
            .ok_or_else(|| format!("no server named \"{wanted}\" (servers: {})", list()));
    }
    if let Some(listener) = listeners
        .iter()
        .find(|l| l.addr.port() == port && l.tls.is_some() == tls)
    {
        return Ok((listener, String::new()));
    }
    match listeners {
        [only] => Ok((
            only,
            format!(" [no server listens on port {port}; the only one is shown]"),
        )),
        _ => Err(format!(
            "no server listens on port {port} ({}); choose one with --server NAME (servers: {})",
            if tls { "https" } else { "http" },
            list()
        )),
    }
}
