//! The Pingora `ProxyHttp` implementation: each phase of a request calls the router, the
//! location's plugins, the upstream pool and the header rules of the runtime snapshot the request
//! started with.
//!
//! | Pingora phase | what pingap does |
//! |---|---|
//! | `new_ctx` | counts the request in flight |
//! | `early_request_filter` | loads the snapshot, routes, starts the gRPC-web bridge ([`grpc_web`]) for `grpc_web` locations; answers pending ACME http-01 tokens on plain servers |
//! | `request_filter` | answers unrouted requests (404), runs the request phase of the plugins, rewrites the path |
//! | `request_body_filter` | request-body plugins (size limits) |
//! | `upstream_peer` | picks a healthy backend of the location's upstream, not one that already failed this request |
//! | `fail_to_connect`, `error_while_proxy` | record the failure and decide on a retry ([`failover`]) |
//! | `upstream_response_filter` | records the answer; a 502/503 may be retried ([`failover`]) |
//! | `upstream_request_filter` | `X-Forwarded-*`, request header rules, upstream-request plugins |
//! | `request_cache_filter`, `cache_key_callback`, `response_cache_filter`, `cache_vary_filter`, `is_purge`, `should_serve_stale` | the location's response cache ([`crate::cache`]) |
//! | `response_filter` | `X-Cache-Status`, response header rules, response-header plugins |
//! | `response_body_filter` | response-body plugins |
//! | `fail_to_proxy` | maps the error to a status and an error page ([`errors`]) |
//! | `logging` | logging plugins |

pub mod ctx;
pub mod errors;
pub mod explain;
pub mod failover;
pub mod grpc;
pub mod grpc_web;
pub mod in_flight;
pub mod reply;
pub mod request;
pub(crate) mod respond;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::cache::CachePolicy;
use crate::observe::access_log::{ConnectionSerial, Entry};
use crate::observe::metrics::ServerMetrics;
use crate::observe::trace::RequestTrace;
use crate::runtime::RuntimeHandle;
use ctx::RequestCtx;
pub use in_flight::{InFlight, InFlightGuard};
use reply::Reply;
use request::{path_and_query, request_uri};

/// The proxy logic of one server (listener).
pub struct Proxy {
    server: String,
    metrics: ServerMetrics,
    tls: bool,
    runtime: Arc<RuntimeHandle>,
    in_flight: Arc<InFlight>,
}

impl Proxy {
    /// The proxy for server `server`, serving from the snapshots of `runtime`.
    pub fn new(
        server: impl Into<String>,
        tls: bool,
        runtime: Arc<RuntimeHandle>,
        in_flight: Arc<InFlight>,
    ) -> Self {
        let server = server.into();
        Proxy {
            metrics: crate::observe::metrics::metrics().server(&server),
            server,
            tls,
            runtime,
            in_flight,
        }
    }

    /// Loads the snapshot, routes the request ([`request::route`]) and notes what the access
    /// log and traces need of the connection. Returns the reply to send instead of proxying, if
    /// any.
    fn route(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Option<Reply>> {
        let runtime = self.runtime.load();
        let server = runtime.server(&self.server);
        if server
            .and_then(|server| server.access_log.as_ref())
            .is_some_and(|log| log.uses_connection())
            && ctx.connection.is_none()
            && session.as_http1().is_some()
        {
            // The first request on this HTTP/1.x connection (later ones are counted in
            // `on_connection_reuse`).
            ctx.connection = Some(ConnectionSerial {
                serial: NEXT_CONNECTION_SERIAL.fetch_add(1, Ordering::Relaxed),
                requests: 1,
            });
        }
        if crate::observe::trace::enabled() {
            let traceparent = session.get_header("traceparent").map(|v| v.as_bytes());
            ctx.trace = RequestTrace::start(traceparent, ctx.started);
        }
        // Pingora keeps an idle keep-alive connection forever unless told otherwise; give
        // those without a timeout of their own (and not closing) `basic.keepalive_timeout`.
        if session.get_keepalive() == Some(0) {
            session.set_keepalive(Some(runtime.keepalive_timeout_secs));
        }
        if self.tls {
            ctx.plugin.client_cert = session
                .digest()
                .and_then(|digest| digest.ssl_digest.as_deref())
                .and_then(crate::tls::client_auth::client_cert_of);
        }
        let connection = request::Connection {
            server: &self.server,
            peer: session.client_addr().and_then(|a| a.as_inet()).copied(),
            local: session.server_addr().and_then(|a| a.as_inet()).copied(),
            tls: self.tls,
            tls12: negotiated_tls12(session),
        };
        request::route(runtime, session.req_header_mut(), &connection, ctx)
    }
}

impl Proxy {
    /// Exports the request's spans, with the attributes of the OpenTelemetry HTTP semantic
    /// conventions.
    fn trace(&self, session: &Session, trace: &RequestTrace, ctx: &RequestCtx, status: u16) {
        use opentelemetry::KeyValue;
        let req = session.req_header();
        let uri = request_uri(req, ctx);
        let (path, query) = uri
            .split_once('?')
            .map_or((uri, None), |(p, q)| (p, Some(q)));
        let method = req.method.as_str();
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.scheme", if self.tls { "https" } else { "http" }),
            KeyValue::new("url.path", path.to_string()),
            KeyValue::new("server.address", ctx.plugin.host.clone()),
            KeyValue::new(
                "network.protocol.version",
                if req.version == http::Version::HTTP_2 {
                    "2"
                } else {
                    "1.1"
                },
            ),
            KeyValue::new("http.request.body.size", session.body_bytes_read() as i64),
            KeyValue::new("http.response.body.size", session.body_bytes_sent() as i64),
            KeyValue::new("pingap.server", self.server.clone()),
        ];
        if let Some(query) = query {
            attributes.push(KeyValue::new("url.query", query.to_string()));
        }
        if let Some(port) = ctx.plugin.server_addr.map(|a| a.port()) {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(client) = ctx.plugin.client_ip {
            attributes.push(KeyValue::new("client.address", client.to_string()));
        }
        if let Some(peer) = ctx.plugin.remote_addr {
            attributes.push(KeyValue::new("network.peer.address", peer.ip().to_string()));
            attributes.push(KeyValue::new("network.peer.port", i64::from(peer.port())));
        }
        if let Some(agent) = req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            attributes.push(KeyValue::new("user_agent.original", agent.to_string()));
        }
        let name = match &ctx.location {
            Some(location) => {
                attributes.push(KeyValue::new("pingap.location", location.name.to_string()));
                if let Some(pool) = &location.upstream {
                    attributes.push(KeyValue::new("pingap.upstream", pool.name().to_string()));
                }
                format!("{method} {}", location.name)
            }
            None => method.to_string(),
        };
        trace.finish(
            name,
            attributes,
            status,
            ctx.attempts.list(),
            method,
            Instant::now(),
        );
    }

    /// Writes the request's line to the server's access log, if it has one.
    fn access_log(&self, session: &Session, error: Option<&Error>, ctx: &RequestCtx, status: u16) {
        let Some(runtime) = &ctx.runtime else {
            return;
        };
        let Some(log) = runtime
            .server(&self.server)
            .and_then(|server| server.access_log.as_ref())
        else {
            return;
        };
        let ended = Instant::now();
        let req = session.req_header();
        let mut vars = ctx.plugin.variables(req, request_uri(req, ctx));
        if let Some(location) = &ctx.location {
            vars.location = &location.name;
            vars.captures = &ctx.captures;
        }
        let entry = Entry {
            vars,
            upstream_uri: path_and_query(req),
            time: SystemTime::now(),
            ended,
            duration: ended.duration_since(ctx.started),
            status,
            response: session.response_written(),
            body_bytes_sent: session.body_bytes_sent(),
            body_bytes_read: session.body_bytes_read(),
            upstream_name: ctx
                .location
                .as_ref()
                .and_then(|l| l.upstream.as_ref())
                .map(|pool| pool.name()),
            attempts: ctx.attempts.list(),
            server: &self.server,
            connection: ctx.connection,
            tls: session
                .digest()
                .and_then(|digest| digest.ssl_digest.as_deref()),
            cache_status: ctx.cache_status,
            error,
        };
        log.log(&entry);
    }
}

/// The serial number of the next client connection whose requests are logged with
/// `$connection`.
static NEXT_CONNECTION_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Whether the connection negotiated TLS 1.2. Clients without TLS 1.3 cipher suites are refused
/// during the handshake ([`crate::tls::ListenerTls`]); this catches those that offered them but
/// not the version.
fn negotiated_tls12(session: &Session) -> bool {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some_and(|tls| tls.version == "TLSv1_2" || tls.version == "TLSv1.2")
}

/// The answer to an ACME http-01 validation request for a pending token: its key
/// authorization as text ([`crate::tls::acme::challenges`]).
fn acme_http01_answer(req: &RequestHeader) -> Option<Reply> {
    let key_authorization = crate::tls::acme::challenges().http01(req.uri.path())?;
    let mut response = pingap_plugins::Response::new(StatusCode::OK);
    response.headers.push((
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    ));
    response.body = Some(Bytes::from(key_authorization));
    Some(Reply::Plugin(response))
}

/// The response cache of the request's location.
fn cache_of(ctx: &RequestCtx) -> Option<&Arc<CachePolicy>> {
    ctx.location.as_ref().and_then(|l| l.cache.as_ref())
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.in_flight.enter())
    }

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        previous: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Ok(previous) = previous.downcast::<ConnectionSerial>() {
            ctx.connection = Some(ConnectionSerial {
                serial: previous.serial,
                requests: previous.requests + 1,
            });
        }
    }

    fn persist_connection_context(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        ctx.connection
            .map(|connection| Box::new(connection) as Box<dyn std::any::Any + Send + Sync>)
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.early_reply = self.route(session, ctx)?;
        // A pending ACME http-01 token is answered before routing, on every plain server.
        if !self.tls
            && let Some(answer) = acme_http01_answer(session.req_header())
        {
            ctx.location = None;
            ctx.grpc_web = None;
            ctx.early_reply = Some(answer);
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(reply) = ctx.early_reply.take() {
            respond::send(session, ctx, reply).await?;
            return Ok(true);
        }
        let Some(location) = ctx.location.clone() else {
            return Ok(false);
        };

        if let Some(reply) = request::request_plugins(session.req_header_mut(), ctx).await {
            if let Reply::Plugin(response) = &reply
                && response.status.as_u16() >= 400
            {
                crate::observe::metrics::metrics()
                    .rejection(&location.name, response.status.as_u16());
            }
            respond::send(session, ctx, reply).await?;
            return Ok(true);
        }
        request::rewrite(session.req_header_mut(), ctx)?;

        if location.upstream.is_none() {
            respond::send(
                session,
                ctx,
                Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this location has no upstream",
                ),
            )
            .await?;
            return Ok(true);
        }
        // The request goes upstream: answer `Expect: 100-continue` here, so that the client
        // sends its body at once whatever the backend does (`Expect` is not forwarded).
        if request::expects_continue(session.req_header()) {
            session.write_continue_response().await?;
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(bridge) = &mut ctx.grpc_web {
            bridge.request_body(body, end_of_stream)?;
        }
        match &ctx.location {
            Some(location) => location
                .chain
                .request_body(body, end_of_stream, &mut ctx.plugin)
                .map_err(errors::from_plugin),
            None => Ok(()),
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // A backend answered 502/503 and the request is retried: that attempt is over.
        ctx.attempts.end_current(None);
        let pool = ctx
            .location
            .as_ref()
            .and_then(|location| location.upstream.as_ref())
            .ok_or_else(|| {
                Error::explain(ErrorType::HTTPStatus(503), "this location has no upstream")
            })?;
        let selected = pool
            .select(session.req_header(), ctx.plugin.client_ip, |addr| {
                ctx.attempts.excludes(addr)
            })
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::HTTPStatus(503),
                    format!("no healthy backend in upstream \"{}\"", pool.name()),
                )
            })?;
        let mut peer = pool.peer(&selected.backend);
        if let Some(idle) = ctx.location.as_ref().and_then(|l| l.websocket_idle_timeout)
            && session.is_upgrade_req()
        {
            peer.options.read_timeout = Some(idle);
            session.set_read_timeout(Some(idle));
        }
        if let Some(deadline) = grpc::timeout(session.req_header()) {
            let read = peer
                .options
                .read_timeout
                .map_or(deadline, |t| t.min(deadline));
            peer.options.read_timeout = Some(read);
        }
        if let Some(addr) = selected.backend.addr.as_inet() {
            ctx.attempts.start(*addr, 0);
        }
        // Kept until the request ends (least connections counts it in flight till then); a
        // retry replaces it.
        ctx.backend = Some(selected);
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(attempt) = ctx.attempts.current() {
            attempt.connected = Some(Instant::now());
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        request::upstream_request(upstream_request, session.req_header(), ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.attempts.end_current(Some(e.etype().as_str()));
        match ctx.location.as_ref().and_then(|l| l.upstream.as_ref()) {
            Some(pool) => {
                failover::connect_failed(pool, ctx.backend.as_ref(), &mut ctx.attempts, e)
            }
            None => e,
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.attempts.end_current(Some(e.etype().as_str()));
        let e = e.more_context(format!("Peer: {peer}"));
        match ctx.location.as_ref().and_then(|l| l.upstream.as_ref()) {
            Some(pool) => failover::proxy_failed(
                pool,
                ctx.backend.as_ref(),
                &mut ctx.attempts,
                session,
                e,
                client_reused,
            ),
            None => e,
        }
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let pool = ctx.location.as_ref().and_then(|l| l.upstream.clone());
        if let Some(attempt) = ctx.attempts.current() {
            let now = Instant::now();
            attempt.answered = Some(now);
            attempt.status = Some(upstream_response.status.as_u16());
            if let Some(pool) = &pool {
                pool.response_time()
                    .observe(now.duration_since(attempt.started).as_secs_f64());
            }
        }
        match ctx.location.as_ref().and_then(|l| l.upstream.as_ref()) {
            Some(pool) => failover::answered(
                pool,
                ctx.backend.as_ref(),
                &mut ctx.attempts,
                session,
                upstream_response.status.as_u16(),
            ),
            None => Ok(()),
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(cache) = cache_of(ctx)
            && CachePolicy::applies_to(session.req_header())
        {
            cache.enable(&mut session.cache);
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        ctx.cache_looked_up = true;
        match cache_of(ctx) {
            Some(cache) => Ok(cache.key(session.req_header(), &ctx.plugin.host)),
            None => Error::e_explain(ErrorType::InternalError, "no cache on this location"),
        }
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(match cache_of(ctx) {
            Some(cache) => cache.cacheable(session.req_header(), resp),
            None => RespCacheable::Uncacheable(NoCacheReason::NeverEnabled),
        })
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        crate::cache::variance(meta, req)
    }

    fn is_purge(&self, session: &Session, ctx: &RequestCtx) -> bool {
        cache_of(ctx).is_some() && CachePolicy::is_purge(session.req_header())
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        match error {
            None => cache_of(ctx).is_some_and(|c| c.serves_stale_while_revalidating()),
            Some(e) => e.esource() == &pingora::ErrorSource::Upstream,
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(bridge) = &mut ctx.grpc_web {
            bridge.response_header(upstream_response)?;
        }
        if cache_of(ctx).is_some() {
            let status = crate::cache::status(session.cache.phase(), ctx.cache_looked_up);
            upstream_response.insert_header("x-cache-status", status)?;
            ctx.cache_status = Some(status);
            if let Some(location) = &ctx.location {
                location.metrics.cache(status);
            }
        }
        respond::finish_response_header(session.req_header(), upstream_response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(location) = &ctx.location {
            location
                .chain
                .response_body(body, end_of_stream, &mut ctx.plugin)
                .map_err(errors::from_plugin)?;
        }
        if let Some(bridge) = &mut ctx.grpc_web {
            bridge.response_body(body, end_of_stream);
        }
        Ok(None)
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Bytes>> {
        Ok(ctx
            .grpc_web
            .as_mut()
            .and_then(|bridge| bridge.trailers(trailers)))
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let upstream = ctx
            .location
            .as_ref()
            .and_then(|l| l.upstream.as_ref())
            .map(|p| p.name());
        let (code, message) = errors::status_for(e, upstream);
        if code > 0 && session.response_written().is_none() {
            // The connection is not reused after a failure: say so, so that clients do not
            // send their next request on it.
            session.set_keepalive(None);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Err(write_error) =
                respond::send(session, ctx, Reply::error(status, message)).await
            {
                tracing::debug!("could not send the error response: {write_error}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map_or(0, |resp| resp.status.as_u16());
        self.access_log(session, e, ctx, status);
        if let Some(trace) = ctx.trace.as_ref().filter(|t| t.sampled()) {
            self.trace(session, trace, ctx, status);
        }
        self.metrics
            .finished(status, session.body_bytes_read(), session.body_bytes_sent());
        if let Some(location) = &ctx.location {
            location
                .metrics
                .finished(&session.req_header().method, status, ctx.started.elapsed());
            location.chain.logging(&mut ctx.plugin);
        }
    }
}
