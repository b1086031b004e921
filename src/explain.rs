//! `pingap explain`: which server and location would take a request, why every location tried
//! before it did not, and what would be sent upstream. It runs the same router, rewrite and
//! header code as the proxy, on the compiled configuration, without sending anything.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, HeaderValue, Method, Uri};
use pingora::http::RequestHeader;

use crate::headers::forwarded::add_forwarded_headers;
use crate::router::host::normalize_host;
use crate::runtime::{Compiled, ListenerPlan, Location};
use crate::vars::VarContext;

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
}

/// Explains how `compiled` would route `request`.
pub fn explain(compiled: &Compiled, request: &Request) -> Result<Explanation, String> {
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
        req.insert_header(name.clone(), value.clone())
            .map_err(|e| format!("invalid header {name}: {e}"))?;
    }
    let raw_host = req
        .headers
        .get(http::header::HOST)
        .map(|h| h.as_bytes().to_vec())
        .unwrap_or_default();
    let mut buf = [0u8; 256];
    let host = normalize_host(&raw_host, &mut buf)
        .unwrap_or_default()
        .to_string();

    let (listener, note) = choose_server(
        &compiled.plan.listeners,
        request.server.as_deref(),
        port,
        tls,
    )?;
    let runtime = &compiled.runtime;
    let server = runtime
        .server(&listener.server)
        .ok_or_else(|| format!("servers.{} has no routes", listener.server))?;

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

    let attempts = server.router.explain(&host, &req);
    let width = attempts
        .iter()
        .map(|a| a.target.name.len())
        .max()
        .unwrap_or(0);
    let mut matched: Option<(&Location, usize)> = None;
    let (tried, elsewhere): (Vec<_>, Vec<_>) = attempts.iter().partition(|a| a.tried);
    let _ = writeln!(out, "locations tried, in order:");
    if tried.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (index, attempt) in tried.iter().enumerate() {
        let name = &attempt.target.name;
        match &attempt.outcome {
            Ok(len) => {
                let _ = writeln!(out, "  {:>2}. {name:width$}  MATCH", index + 1);
                matched = Some((attempt.target, *len));
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

    let Some((location, matched_len)) = matched else {
        let _ = writeln!(out, "result    no location matched: the request gets 404");
        return Ok(Explanation {
            text: out,
            matched: false,
        });
    };
    let captures = match server.router.route(&host, &req) {
        Some(found) if location.needs_captures => found.captures(&host, req.uri.path()),
        _ => Vec::new(),
    };
    let client = SocketAddr::new(request.client, 50000);
    let request_uri = path_and_query.to_string();
    let cx = VarContext {
        req: &req,
        request_uri: &request_uri,
        host: &host,
        tls: listener.tls.is_some(),
        client_ip: Some(runtime.trusted_proxies.client_ip(request.client, &req)),
        remote_addr: Some(client),
        server_addr: Some(listener.addr),
        request_id: None,
        location: &location.name,
        captures: &captures,
    };

    let _ = writeln!(out, "location  {}", location.name);
    if location.chain.is_empty() {
        let _ = writeln!(out, "plugins   (none)");
    } else {
        let plugins: Vec<String> = location
            .chain
            .instances()
            .map(|i| format!("{} ({}, priority {})", i.name(), i.kind(), i.priority()))
            .collect();
        let _ = writeln!(out, "plugins   {}", plugins.join(", "));
        let _ = writeln!(
            out,
            "          (run first, in this order; they may answer the request themselves)"
        );
    }
    let upstream_uri = match &location.rewrite {
        Some(rewrite) => match rewrite.apply(req.uri.path(), matched_len, req.uri.query(), &cx) {
            Some(rewritten) => {
                let _ = writeln!(out, "rewrite   {request_uri} -> {rewritten}");
                rewritten
            }
            None => {
                let _ = writeln!(
                    out,
                    "rewrite   (its regex does not match: {request_uri} is sent as it is)"
                );
                request_uri.clone()
            }
        },
        None => {
            let _ = writeln!(out, "rewrite   (none: {request_uri} is sent as it is)");
            request_uri.clone()
        }
    };
    match &location.upstream {
        Some(pool) => {
            let _ = writeln!(
                out,
                "upstream  {}: {}",
                pool.name(),
                pool.backends().join(", ")
            );
        }
        None => {
            let _ = writeln!(
                out,
                "upstream  (none: unless a plugin answers, the request gets 503)"
            );
        }
    }

    let mut upstream = req.clone();
    add_forwarded_headers(
        &mut upstream,
        Some(request.client),
        cx.client_ip,
        runtime.trusted_proxies.contains(request.client),
        listener.tls.is_some(),
        &host,
    );
    location.request_headers.apply(&mut upstream, &cx);
    let _ = writeln!(out, "sent      {} {upstream_uri}", request.method);
    let mut names: Vec<&HeaderName> = upstream.headers.keys().collect();
    names.sort_by_key(|n| n.as_str());
    for name in names {
        for value in upstream.headers.get_all(name) {
            let _ = writeln!(
                out,
                "          {name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            );
        }
    }
    Ok(Explanation {
        text: out,
        matched: true,
    })
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
