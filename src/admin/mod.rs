//! The admin API: an axum application served on its own listener (`[admin]`), through which
//! operators and the dashboard read the running configuration and change it safely — every
//! change goes through the control plane's apply path ([`crate::control::Controller`]), so it is
//! checked, previewed, applied atomically, recorded with its author and reversible — and watch the
//! process live.
//!
//! * [`bridge`]: serving the router from a Pingora service (bound, upgraded and shut down with
//!   the process, TLS by Pingora);
//! * [`auth`] and [`session_api`]: users, sessions, tokens, CSRF and lockout;
//! * [`config_api`] with [`documents`]: the configuration, its entities, plans, history, diffs and
//!   rollbacks;
//! * [`ops`]: status, upstreams, certificates, explain and the health endpoints; [`streams`]: live statistics
//!   and the log tail as Server-Sent Events;
//! * [`dashboard`]: the embedded web dashboard, at every path outside `/api/`;
//! * [`error`]: error answers; [`openapi`]: the OpenAPI document generated from the handlers.
//!
//! Layering: `process` starts it; it calls `control`, `proxy` (explain), `runtime`, `upstream` and
//! `observe`, never the other way round.

pub mod auth;
pub mod bridge;
pub mod config_api;
pub mod dashboard;
pub mod documents;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod session_api;
pub mod streams;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::control::Controller;
use crate::proxy::InFlight;
use crate::runtime::AdminPlan;
use auth::Auth;

/// What every handler shares.
#[derive(Clone)]
pub struct AdminState {
    /// The control plane: the running configuration, the apply path, the history.
    pub controller: Arc<Controller>,
    /// Users, sessions and tokens.
    pub auth: Arc<Auth>,
    /// Requests in flight on the data listeners.
    pub in_flight: Arc<InFlight>,
    /// When the process started.
    pub started: Instant,
    /// Worker threads per server.
    pub threads: usize,
}

impl AdminState {
    /// The state of an admin API configured by `plan`.
    pub fn new(
        plan: &AdminPlan,
        controller: Arc<Controller>,
        in_flight: Arc<InFlight>,
        threads: usize,
    ) -> AdminState {
        AdminState {
            controller,
            auth: Arc::new(Auth::new(plan)),
            in_flight,
            started: Instant::now(),
            threads,
        }
    }
}

/// The API's routes with their OpenAPI description: (public, authenticated).
fn routes() -> (OpenApiRouter<AdminState>, OpenApiRouter<AdminState>) {
    let public = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(session_api::login));
    let authenticated = OpenApiRouter::new()
        .routes(routes!(session_api::logout))
        .routes(routes!(session_api::session))
        .routes(routes!(config_api::get_config, config_api::put_config))
        .routes(routes!(config_api::plan))
        .routes(routes!(config_api::list_history))
        .routes(routes!(config_api::get_version))
        .routes(routes!(config_api::diff))
        .routes(routes!(config_api::rollback))
        .routes(routes!(ops::status))
        .routes(routes!(ops::upstreams))
        .routes(routes!(ops::certificates))
        .routes(routes!(ops::explain))
        .routes(routes!(streams::stats_stream))
        .routes(routes!(streams::logs_stream))
        .routes(routes!(config_api::list_entities))
        .routes(routes!(
            config_api::get_entity,
            config_api::put_entity,
            config_api::delete_entity
        ));
    (public, authenticated)
}

/// The OpenAPI document of the API.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (public, authenticated) = routes();
    public.merge(authenticated).into_openapi()
}

/// The admin API's router.
pub fn router(state: AdminState) -> Router {
    let (public, authenticated) = routes();
    let authenticated = authenticated.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        session_api::authenticate,
    ));
    let (router, document) = public.merge(authenticated).split_for_parts();
    let document = Arc::new(document);
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                if uri.path() == "/api" || uri.path().starts_with("/api/") {
                    error::ApiError::not_found("no such endpoint; see /api/openapi.json")
                        .into_response()
                } else {
                    dashboard::serve(method, uri, headers).await
                }
            },
        )
        .with_state(state)
}
