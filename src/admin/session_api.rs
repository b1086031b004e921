//! Signing in and out, and the layer that authenticates every other API request (a session
//! cookie with the CSRF `Origin` check, or a bearer token).

use axum::Extension;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AdminState;
use super::auth::{Identity, LoginError, SESSION_COOKIE, Via, unix_now};
use super::bridge::Connection;
use super::error::{ApiError, ErrorBody};

/// `POST /api/login`
#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

/// Who is signed in.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The user (or token) name.
    pub user: String,
    /// `session` or `token`.
    pub via: String,
    /// When the session ends at the latest (unix seconds; sessions only).
    pub expires_at: Option<u64>,
    /// Seconds without a request after which the session ends.
    pub idle_timeout_seconds: u64,
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The admin API's own origin as the request reached it: `scheme://host[:port]`.
fn own_origin(headers: &HeaderMap, tls: bool) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("{}://{host}", if tls { "https" } else { "http" }))
}

/// Whether the request's `Origin` is the admin API's own; `required` refuses a request without.
fn origin_allowed(headers: &HeaderMap, tls: bool, required: bool) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => !required,
        Some(origin) => {
            own_origin(headers, tls).is_some_and(|own| own.eq_ignore_ascii_case(origin))
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
        .with_header(header::WWW_AUTHENTICATE, "Bearer".to_string())
        .into_response()
}

/// Authenticates a request to the API: a bearer token, or a session cookie (with a matching
/// `Origin` on state-changing requests). The identity is added to the request.
pub async fn authenticate(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    let tls = request
        .extensions()
        .get::<Connection>()
        .is_some_and(|c| c.tls);
    let headers = request.headers();
    let identity = if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let token = authorization
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token.and_then(|token| state.auth.token(token)) {
            Some(name) => Identity {
                name,
                via: Via::Token,
                expires_at: None,
            },
            None => return unauthorized("invalid API token (send Authorization: Bearer <token>)"),
        }
    } else if let Some(id) = cookie(headers, SESSION_COOKIE) {
        let Some(identity) = state.auth.session(id) else {
            return unauthorized("the session has ended; sign in again");
        };
        if !is_safe(request.method()) && !origin_allowed(headers, tls, true) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "a change made with a session cookie must come from the admin API's own origin (Origin header)",
            )
            .into_response();
        }
        identity
    } else {
        return unauthorized("sign in (POST /api/login) or send Authorization: Bearer <token>");
    };
    request.extensions_mut().insert(identity);
    next.run(request).await
}

fn session_cookie(value: &str, max_age: Option<u64>, tls: bool) -> String {
    let mut cookie = format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={max_age}"));
    }
    if tls {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Signs in: checks the password and opens a session (an `HttpOnly`, `SameSite=Strict` cookie).
/// Failures are answered slowly, and an address that fails too often is locked out for a while.
#[utoipa::path(post, path = "/api/login", tag = "session", request_body = Login, security(()),
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionView,
            headers(("Set-Cookie" = String, description = "The session cookie"))),
        (status = 400, body = ErrorBody), (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 403, description = "Cross-origin", body = ErrorBody),
        (status = 429, description = "Locked out after repeated failures", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn login(
    State(state): State<AdminState>,
    Extension(connection): Extension<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !origin_allowed(&headers, connection.tls, false) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin sign-in refused",
        ));
    }
    let login: Login = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"user\": …, \"password\": …}}: {e}"))
    })?;
    match state
        .auth
        .login(connection.client, &login.user, &login.password)
        .await
    {
        Ok(session) => {
            let lifetime = session.expires_at.saturating_sub(unix_now());
            let cookie = session_cookie(&session.id, Some(lifetime), connection.tls);
            let view = SessionView {
                user: session.user,
                via: "session".to_string(),
                expires_at: Some(session.expires_at),
                idle_timeout_seconds: state.auth.idle_timeout().as_secs(),
            };
            Ok(([(header::SET_COOKIE, cookie)], axum::Json(view)).into_response())
        }
        Err(error @ LoginError::Wrong) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, error.to_string()))
        }
        Err(error @ LoginError::LockedOut(wait)) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            error.to_string(),
        )
        .with_header(header::RETRY_AFTER, wait.as_secs().max(1).to_string())),
    }
}

/// Signs out: the session ends on the server and the cookie is cleared.
#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses((status = 204, description = "Signed out"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AdminState>,
    Extension(connection): Extension<Connection>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.auth.logout(id);
    }
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            session_cookie("", Some(0), connection.tls),
        )],
    )
        .into_response()
}

/// Who the request is signed in as.
#[utoipa::path(get, path = "/api/session", tag = "session",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
pub async fn session(
    State(state): State<AdminState>,
    Extension(identity): Extension<Identity>,
) -> Response {
    axum::Json(SessionView {
        user: identity.name,
        via: match identity.via {
            Via::Session => "session",
            Via::Token => "token",
        }
        .to_string(),
        expires_at: identity.expires_at,
        idle_timeout_seconds: state.auth.idle_timeout().as_secs(),
    })
    .into_response()
}
