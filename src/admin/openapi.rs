//! The OpenAPI document's frame: title, version, tags and the two ways to authenticate. The
//! paths and schemas come from the handlers' `#[utoipa::path]` annotations and types.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, SecurityRequirement, Tag};

/// The frame the routes are added to.
pub fn base() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("pingap admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Read and change the running configuration through pingap's apply path (checked, previewed with dry_run, recorded, reversible), and watch the process live. Authenticate with a session cookie from POST /api/login (changes must then send the admin API's own Origin) or with Authorization: Bearer <token>.",
                ))
                .build(),
        )
        .security(Some([
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("session", Vec::<String>::new()),
        ]))
        .tags(Some(
            [
                ("session", "Signing in and out"),
                ("configuration", "The running configuration and its entities"),
                ("history", "Versions, diffs and rollbacks"),
                ("operations", "The live process"),
                ("health", "Health endpoints for load balancers (no authentication)"),
            ]
            .map(|(name, description)| {
                let mut tag = Tag::new(name);
                tag.description = Some(description.to_string());
                tag
            }),
        ))
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    // Named in path parameters, which do not register their schemas themselves.
    components.schemas.insert(
        "Kind".to_string(),
        <super::documents::Kind as utoipa::PartialSchema>::schema(),
    );
    // The data of the streams' events (sent as JSON text), for clients generated from the
    // document.
    let mut streamed = Vec::new();
    <crate::observe::live::StatsFrame as utoipa::ToSchema>::schemas(&mut streamed);
    <crate::observe::live::LogRecord as utoipa::ToSchema>::schemas(&mut streamed);
    <super::streams::Dropped as utoipa::ToSchema>::schemas(&mut streamed);
    for (name, schema) in [
        (
            "StatsFrame",
            <crate::observe::live::StatsFrame as utoipa::PartialSchema>::schema(),
        ),
        (
            "LogRecord",
            <crate::observe::live::LogRecord as utoipa::PartialSchema>::schema(),
        ),
        (
            "Dropped",
            <super::streams::Dropped as utoipa::PartialSchema>::schema(),
        ),
    ] {
        streamed.push((name.to_string(), schema));
    }
    components.schemas.extend(streamed);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
            super::auth::SESSION_COOKIE,
        ))),
    );
    document
}
