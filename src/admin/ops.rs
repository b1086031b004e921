//! Live operations: the process's status, every backend's health, the routing explanation of a
//! request, and the health endpoints load balancers poll.

use std::net::IpAddr;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AdminState;
use super::bridge::Connection;
use super::error::{ApiError, ErrorBody};
use crate::proxy::explain::{self, Report};
use crate::upstream::health::{Circuit, now_ms};

/// A listener of the process.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListenerView {
    /// The server's name.
    pub server: String,
    /// Where it listens.
    pub addr: String,
    /// Whether it serves HTTPS.
    pub tls: bool,
}

/// The running configuration, in short.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigStatus {
    /// Its version in the history.
    pub version: Option<u64>,
    /// Its digest.
    pub digest: String,
    /// Where it is kept.
    pub source: String,
    /// The runtime generation serving requests (one more at every swap).
    pub generation: u64,
}

/// The process's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// pingap's version.
    pub version: String,
    /// The process id.
    pub pid: u32,
    /// Seconds since the process started.
    pub uptime_seconds: u64,
    /// When it started (unix seconds).
    pub started_at: u64,
    /// The running configuration.
    pub config: ConfigStatus,
    /// The listeners.
    pub listeners: Vec<ListenerView>,
    /// Worker threads per server.
    pub threads: usize,
    /// Requests in flight.
    pub in_flight: usize,
    /// Whether the process is shutting down.
    pub draining: bool,
}

/// The process's status.
#[utoipa::path(get, path = "/api/status", tag = "operations",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
pub async fn status(
    State(state): State<AdminState>,
    Extension(connection): Extension<Connection>,
) -> Response {
    let (snapshot, version) = state.controller.running();
    let uptime = state.started.elapsed();
    axum::Json(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        uptime_seconds: uptime.as_secs(),
        started_at: super::auth::unix_now().saturating_sub(uptime.as_secs()),
        config: ConfigStatus {
            version,
            digest: snapshot.digest(),
            source: state.controller.source().to_string(),
            generation: state.controller.runtime().load().generation,
        },
        listeners: state
            .controller
            .listeners()
            .iter()
            .map(|l| ListenerView {
                server: l.server.clone(),
                addr: l.addr.to_string(),
                tls: l.tls.is_some(),
            })
            .collect(),
        threads: state.threads,
        in_flight: state.in_flight.count(),
        draining: connection.draining() || state.in_flight.draining(),
    })
    .into_response()
}

/// One backend of an upstream.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackendView {
    /// Its address.
    pub addr: String,
    /// Its weight.
    pub weight: usize,
    /// Whether ordinary requests go to it now (up by check, not ejected, circuit closed).
    pub serving: bool,
    /// Whether the active check finds it up.
    pub checked_up: bool,
    /// Whether passive health has ejected it for a while.
    pub ejected: bool,
    /// The circuit breaker: `closed`, `open` or `half_open`.
    pub circuit: String,
    /// Requests sent to it and not finished.
    pub in_flight: u32,
    /// The last active check, when one ran.
    pub last_check: Option<CheckView>,
}

/// An active check's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckView {
    /// When it ended (unix milliseconds).
    pub at_ms: u64,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub reason: String,
}

/// An upstream and its backends.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpstreamView {
    /// Its name.
    pub name: String,
    /// Whether it is actively checked.
    pub health_check: bool,
    /// Its backends.
    pub backends: Vec<BackendView>,
}

/// Every upstream with the live state of its backends.
#[utoipa::path(get, path = "/api/upstreams", tag = "operations",
    responses((status = 200, body = [UpstreamView]), (status = 401, body = ErrorBody)))]
pub async fn upstreams(State(state): State<AdminState>) -> Response {
    let runtime = state.controller.runtime().load();
    let now = now_ms();
    let views: Vec<UpstreamView> = runtime
        .upstreams
        .iter()
        .map(|(name, pool)| UpstreamView {
            name: name.clone(),
            health_check: pool.health_check().is_some(),
            backends: pool
                .members()
                .backends()
                .iter()
                .map(|member| {
                    let health = &member.health;
                    BackendView {
                        addr: member.addr.to_string(),
                        weight: member.weight,
                        serving: health.serving(now),
                        checked_up: health.checked_up(),
                        ejected: health.ejected(now),
                        circuit: match health.circuit() {
                            Circuit::Closed => "closed",
                            Circuit::Open => "open",
                            Circuit::HalfOpen => "half_open",
                        }
                        .to_string(),
                        in_flight: health.in_flight(),
                        last_check: health.last_check().map(|check| CheckView {
                            at_ms: check.at_ms,
                            passed: check.passed,
                            reason: check.reason,
                        }),
                    }
                })
                .collect(),
        })
        .collect();
    axum::Json(views).into_response()
}

/// Every certificate served: domains, issuer, validity, where it comes from, its OCSP staple and
/// its ACME status.
#[utoipa::path(get, path = "/api/certificates", tag = "operations",
    responses((status = 200, body = [crate::tls::CertificateSummary]), (status = 401, body = ErrorBody)))]
pub async fn certificates(State(state): State<AdminState>) -> Response {
    let runtime = state.controller.runtime().load();
    axum::Json(runtime.certificates.store.summaries()).into_response()
}

/// `GET /api/explain?url=…&method=…&header=Name:%20value&server=…&client=…`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    /// An absolute URL (`http://host:port/path?query`), or a path with a `Host` header.
    pub url: String,
    /// The method (default GET).
    pub method: Option<String>,
    /// Request headers as `Name: value` (repeat the parameter for more).
    #[serde(default)]
    pub header: Vec<String>,
    /// The server to ask, when the URL's port does not say.
    pub server: Option<String>,
    /// The client address (default 127.0.0.1).
    pub client: Option<String>,
}

/// Header names whose values the explanation does not show.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

/// Which location would serve a request and why the others would not, with what would be sent
/// upstream (credential headers masked). Plugins run on a fresh copy of the running
/// configuration, so nothing the live one counts (rate limits, caches) is touched.
#[utoipa::path(get, path = "/api/explain", tag = "operations", params(ExplainQuery),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn explain(
    State(state): State<AdminState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let query: ExplainQuery = serde_html_form::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let method = query
        .method
        .as_deref()
        .unwrap_or("GET")
        .parse::<http::Method>()
        .map_err(|_| ApiError::bad_request("invalid method"))?;
    let mut headers = Vec::new();
    for header in &query.header {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            ApiError::bad_request(format!("header \"{header}\" is not \"Name: value\""))
        })?;
        let name = http::HeaderName::try_from(name.trim()).map_err(|_| {
            ApiError::bad_request(format!("invalid header name \"{}\"", name.trim()))
        })?;
        let value = http::HeaderValue::try_from(value.trim())
            .map_err(|_| ApiError::bad_request(format!("invalid value for header {name}")))?;
        headers.push((name, value));
    }
    let client: IpAddr = match query.client.as_deref() {
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid client address \"{text}\"")))?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let request = explain::Request {
        method,
        url: query.url.clone(),
        headers,
        server: query.server.clone(),
        client,
    };
    let controller = state.controller.clone();
    let report = tokio::task::spawn_blocking(move || {
        let (snapshot, _) = controller.running();
        let candidate = crate::control::check(snapshot, controller.registry(), None)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
        let mut compiled = candidate.compiled;
        // The listeners as bound, with their real ports.
        compiled.plan.listeners = controller.listeners().to_vec();
        explain::explain(compiled, &request)
            .map(|explanation| explanation.report)
            .map_err(ApiError::bad_request)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let mut report = report;
    if let Some(sent) = &mut report.sent {
        for (name, value) in &mut sent.headers {
            if SECRET_HEADERS.contains(&name.as_str()) {
                *value = crate::control::secrets::MASK.to_string();
            }
        }
    }
    Ok(axum::Json(report).into_response())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, description = "The process is alive", body = String, content_type = "text/plain")))]
pub async fn health() -> Response {
    ([(http::header::CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

/// Readiness: the configuration is loaded and the listeners bound; 503 while draining.
#[utoipa::path(get, path = "/ready", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready for traffic", body = String, content_type = "text/plain"),
        (status = 503, description = "Shutting down (draining)", body = String, content_type = "text/plain")))]
pub async fn ready(
    State(state): State<AdminState>,
    Extension(connection): Extension<Connection>,
) -> Response {
    if connection.draining() || state.in_flight.draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::CONTENT_TYPE, "text/plain")],
            "draining\n",
        )
            .into_response()
    } else {
        ([(http::header::CONTENT_TYPE, "text/plain")], "ready\n").into_response()
    }
}
