//! The configuration API: reading the running configuration and its entities (secrets masked),
//! and changing them through the lifecycle's apply path — every write is checked as a start
//! would check it (422 with each error and its key), guarded by `If-Match` (412 when stale),
//! previewed with `?dry_run=true`, written to the source, applied, and recorded in the history
//! with the user who made it. Plans, the history, diffs and rollbacks are here too.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::AdminState;
use super::auth::Identity;
use super::documents::{self, EditError, Kind};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use crate::config::Snapshot;
use crate::control::secrets::{mask_document, mask_json, restore_document, restore_json};
use crate::control::{Applied, Changes, Outcome, Record, Version};

/// The media type of TOML bodies.
pub const TOML: &str = "application/toml";

/// `?dry_run=true`: answer with the plan instead of applying.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    /// Check the change and answer with its plan; change nothing.
    pub dry_run: Option<bool>,
}

/// One document of the configuration (a file, or an etcd key), secrets masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    /// Its name (a file name, or an etcd key below the prefix).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The running configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigView {
    /// Its version in the history, when kept.
    pub version: Option<u64>,
    /// Its digest (also the `ETag`).
    pub digest: String,
    /// Where it is kept.
    pub source: String,
    /// Its documents as written, secrets masked.
    pub documents: Vec<DocumentView>,
    /// Its settings (every document merged), secrets masked.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// An entity with its `ETag`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityItem {
    /// Its name.
    pub name: String,
    /// Its `ETag`, for `If-Match`.
    pub etag: String,
    /// Its settings as written, secrets masked.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// What a change would do (a dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// Whether applying it needs a graceful upgrade of the process, and why.
    pub upgrade: Vec<String>,
    /// What changes.
    pub changes: Changes,
    /// The plan as `pingap plan` prints it.
    pub text: String,
}

impl From<Changes> for PlanView {
    fn from(changes: Changes) -> PlanView {
        PlanView {
            upgrade: changes.upgrade_reasons(),
            text: changes.render(),
            changes,
        }
    }
}

/// The answer to a change: what it did, or with `dry_run` what it would do.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum WriteAnswer {
    /// Applied.
    Applied(WriteResult),
    /// A dry run's plan.
    Planned(PlanView),
}

/// What a change did.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteResult {
    /// `swapped` (serving new requests), `unchanged`, or `upgrading` (a new process takes over).
    pub outcome: String,
    /// The runtime generation now serving, when swapped.
    pub generation: Option<u64>,
    /// The version recorded in the history.
    pub version: Option<u64>,
    /// What changed.
    pub changes: Changes,
    /// The entity's new `ETag` (entity writes).
    pub etag: Option<String>,
}

impl WriteResult {
    fn new(applied: Applied, etag: Option<String>) -> WriteResult {
        let (outcome, generation) = match applied.outcome {
            Outcome::Unchanged => ("unchanged", None),
            Outcome::Swapped { generation } => ("swapped", Some(generation)),
            Outcome::Upgrading => ("upgrading", None),
        };
        WriteResult {
            outcome: outcome.to_string(),
            generation,
            version: applied.version,
            changes: applied.changes,
            etag,
        }
    }
}

/// A version of the history, without its documents.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    /// Its number.
    pub number: u64,
    /// When it was applied (RFC 3339).
    pub time: String,
    /// What applied it (`start`, `sighup`, `file watch`, `api`, `rollback`, …).
    pub trigger: String,
    /// Who.
    pub author: Option<String>,
    /// Why, when there is more to say.
    pub note: Option<String>,
    /// Its digest.
    pub digest: String,
    /// Whether it is the running configuration.
    pub running: bool,
}

/// A version of the history with its documents (secrets masked).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetail {
    /// The version.
    #[serde(flatten)]
    pub summary: VersionSummary,
    /// Its documents.
    pub documents: Vec<DocumentView>,
}

/// `?from=&to=` of a diff.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The version compared from.
    pub from: u64,
    /// The version compared to (default: the running configuration).
    pub to: Option<u64>,
}

fn masked_documents(snapshot: &Snapshot) -> Vec<DocumentView> {
    snapshot
        .documents()
        .map(|(name, text)| DocumentView {
            name: name.to_string(),
            text: mask_document(text),
        })
        .collect()
}

fn wants_toml(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(TOML) || accept.contains("text/toml"))
}

fn is_toml(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with(TOML) || ct.starts_with("text/toml") || ct.starts_with("text/plain")
        })
}

fn toml_response(etag: Option<&str>, text: String) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        text,
    )
        .into_response();
    set_etag(&mut response, etag);
    response
}

fn set_etag(response: &mut Response, etag: Option<&str>) {
    if let Some(value) = etag.and_then(|e| http::HeaderValue::from_str(e).ok()) {
        response.headers_mut().insert(header::ETAG, value);
    }
}

/// The `ETag` of a whole configuration.
fn config_etag(snapshot: &Snapshot) -> String {
    format!("\"{}\"", snapshot.digest())
}

/// The `ETag` of an entity: a digest of its settings as written.
fn entity_etag(table: &toml::Table) -> String {
    let digest = Sha256::digest(table.to_string().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn entity_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).unwrap_or(serde_json::Value::Null)
}

fn masked_json(table: &toml::Table) -> serde_json::Value {
    let mut value = entity_json(table);
    mask_json(&mut value);
    value
}

fn parse_kind(kind: &str) -> Result<Kind, ApiError> {
    Kind::parse(kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "no such kind \"{kind}\": expected servers, locations, upstreams, plugins or certificates"
        ))
    })
}

/// Names an entity may have through the API: what every source can store.
fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.contains('/')
        && !name.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "\"{}\" is not a valid name: 1 to 128 characters, no '/' or control characters",
            name.escape_debug()
        )))
    }
}

fn edit_error(error: EditError) -> ApiError {
    match error {
        EditError::Missing(_) => ApiError::not_found(error.to_string()),
        EditError::Invalid(_) => ApiError::bad_request(error.to_string()),
        EditError::Unparsable(..) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
    }
}

/// Checks `If-Match` / `If-None-Match` against the entity's current state.
fn precondition(headers: &HeaderMap, current: Option<&toml::Table>) -> Result<(), ApiError> {
    let stale = |message: String| ApiError::new(StatusCode::PRECONDITION_FAILED, message);
    if let Some(expected) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        match current {
            None => {
                return Err(stale(
                    "If-Match was given but the entity does not exist (any more)".into(),
                ));
            }
            Some(_) if expected.trim() == "*" => {}
            Some(table) => {
                let etag = entity_etag(table);
                if !expected.split(',').any(|e| e.trim() == etag) {
                    return Err(stale(format!(
                        "the entity was changed since it was read (its ETag is now {etag}); read it again"
                    )));
                }
            }
        }
    }
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "*")
        && current.is_some()
    {
        return Err(stale(
            "If-None-Match: * was given but the entity exists".into(),
        ));
    }
    Ok(())
}

/// The entity body of a PUT: a JSON object, or a TOML table (`Content-Type: application/toml`).
fn entity_body(headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Value, ApiError> {
    let value = if is_toml(headers) {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| ApiError::bad_request(format!("the body is not TOML: {e}")))?;
        entity_json(&table)
    } else {
        serde_json::from_slice::<serde_json::Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body must be an object of the entity's settings",
        ));
    }
    Ok(value)
}

fn json_to_table(value: serde_json::Value) -> Result<toml::Table, ApiError> {
    serde_json::from_value::<toml::Table>(value)
        .map_err(|e| ApiError::bad_request(format!("the settings cannot be written as TOML: {e}")))
}

/// Refuses a change of `[admin]` through the API: a mistake there would lock everyone out of
/// the API that could undo it. `[admin]` is changed in the source itself.
fn keeps_admin(running: &Snapshot, edited: &Snapshot) -> Result<(), ApiError> {
    let admin = |snapshot: &Snapshot| documents::merged(snapshot).get("admin").cloned();
    if admin(running) == admin(edited) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "[admin] cannot be changed through the admin API (a mistake would lock everyone out); change it in the configuration's source",
        ))
    }
}

/// What the history records of a change made by `identity`.
fn by(identity: &Identity, note: String) -> Record {
    Record::new("api")
        .by(Some(identity.name.clone()))
        .noting(note)
}

/// Runs blocking control-plane work (reading and writing the source, compiling) off the async
/// workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the change failed: {e}"),
        )
    })?
}

/// The running configuration.
#[utoipa::path(get, path = "/api/config", tag = "configuration",
    responses(
        (status = 200, description = "The running configuration, secrets masked; `Accept: application/toml` gives its text", body = ConfigView,
            headers(("ETag" = String, description = "The configuration's digest"))),
        (status = 401, body = ErrorBody)))]
pub async fn get_config(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let (snapshot, version) = state.controller.running();
    let etag = config_etag(&snapshot);
    if wants_toml(&headers) {
        return toml_response(Some(&etag), mask_document(&snapshot.to_text()));
    }
    let mut config = serde_json::to_value(documents::merged(&snapshot)).unwrap_or_default();
    mask_json(&mut config);
    let view = ConfigView {
        version,
        digest: snapshot.digest(),
        source: state.controller.source().to_string(),
        documents: masked_documents(&snapshot),
        config,
    };
    let mut response = axum::Json(view).into_response();
    set_etag(&mut response, Some(&etag));
    response
}

/// Replaces the whole configuration with a TOML text (the raw editor).
#[utoipa::path(put, path = "/api/config", tag = "configuration", params(WriteQuery),
    request_body(content = String, content_type = "text/plain", description = "The whole configuration as TOML (`application/toml` is accepted too); `\"***\"` keeps the running value of a secret"),
    responses(
        (status = 200, description = "Applied (or, with dry_run, the plan)", body = WriteAnswer),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_config(
    State(state): State<AdminState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let etcd = state.controller.source().etcd().is_some();
    let edit = move |running: &Snapshot| -> Result<Snapshot, ApiError> {
        if let Some(expected) = &if_match {
            let etag = config_etag(running);
            if expected.trim() != "*" && !expected.split(',').any(|e| e.trim() == etag) {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    format!(
                        "the configuration was changed since it was read (its ETag is now {etag}); read it again"
                    ),
                ));
            }
        }
        if running.len() > 1 && !etcd {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "the configuration is a directory of several files: edit its entities instead",
            ));
        }
        let text =
            restore_document(&text, &documents::merged(running)).map_err(ApiError::bad_request)?;
        let name = running
            .documents()
            .next()
            .map_or("pingap.toml".to_string(), |(name, _)| name.to_string());
        Ok(Snapshot::single(
            if etcd {
                "config.toml".to_string()
            } else {
                name
            },
            text,
        ))
    };
    write(
        state,
        by(&identity, "replace the configuration".into()),
        query,
        edit,
        |_| None,
    )
    .await
}

/// Checks a change, then applies it (or answers with the plan for a dry run).
async fn write(
    state: AdminState,
    record: Record,
    query: WriteQuery,
    edit: impl FnOnce(&Snapshot) -> Result<Snapshot, ApiError> + Send + 'static,
    etag_after: impl FnOnce(&Snapshot) -> Option<String> + Send + 'static,
) -> Result<Response, ApiError> {
    let controller = state.controller.clone();
    let edit = move |running: &Snapshot| -> Result<Snapshot, ApiError> {
        let edited = edit(running)?;
        keeps_admin(running, &edited)?;
        Ok(edited)
    };
    if query.dry_run.unwrap_or(false) {
        let plan = blocking(move || {
            let (running, _) = controller.running();
            let snapshot = edit(&running)?;
            controller.plan(snapshot).map_err(|e| ApiError::invalid(&e))
        })
        .await?;
        return Ok(axum::Json(WriteAnswer::Planned(PlanView::from(plan))).into_response());
    }
    let (applied, etag) = blocking(move || {
        let applied = controller.apply_edit(record, edit)?;
        let etag = etag_after(&controller.running().0);
        Ok((applied, etag))
    })
    .await?;
    let mut response = axum::Json(WriteAnswer::Applied(WriteResult::new(
        applied,
        etag.clone(),
    )))
    .into_response();
    set_etag(&mut response, etag.as_deref());
    Ok(response)
}

/// Every entity of a kind.
#[utoipa::path(get, path = "/api/config/{kind}", tag = "configuration",
    params(("kind" = Kind, Path, description = "The kind of entity")),
    responses((status = 200, body = [EntityItem]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_entities(
    State(state): State<AdminState>,
    ApiPath(kind): ApiPath<String>,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let (snapshot, _) = state.controller.running();
    let items: Vec<EntityItem> = documents::entities(&snapshot, kind)
        .iter()
        .map(|(name, table)| EntityItem {
            name: name.clone(),
            etag: entity_etag(table),
            value: masked_json(table),
        })
        .collect();
    Ok(axum::Json(items).into_response())
}

/// One entity.
#[utoipa::path(get, path = "/api/{kind}/{name}", tag = "configuration",
    params(("kind" = Kind, Path, description = "The kind of entity"), ("name" = String, Path, description = "Its name")),
    responses(
        (status = 200, description = "Its settings as written, secrets masked (`Accept: application/toml` for TOML)", body = Object,
            headers(("ETag" = String, description = "For If-Match"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_entity(
    State(state): State<AdminState>,
    ApiPath((kind, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let (snapshot, _) = state.controller.running();
    let table = documents::entity(&snapshot, kind, &name)
        .ok_or_else(|| ApiError::not_found(format!("there is no {}.{name}", kind.section())))?;
    let etag = entity_etag(&table);
    if wants_toml(&headers) {
        return Ok(toml_response(
            Some(&etag),
            mask_document(&table.to_string()),
        ));
    }
    let mut response = axum::Json(masked_json(&table)).into_response();
    set_etag(&mut response, Some(&etag));
    Ok(response)
}

/// Creates or replaces an entity.
#[utoipa::path(put, path = "/api/{kind}/{name}", tag = "configuration",
    params(("kind" = Kind, Path, description = "The kind of entity"), ("name" = String, Path, description = "Its name"), WriteQuery,
        ("If-Match" = Option<String>, Header, description = "The ETag read; 412 when the entity changed since"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only")),
    request_body(content = Object, description = "The entity's settings (JSON, or TOML with Content-Type application/toml); `\"***\"` keeps a secret's current value"),
    responses(
        (status = 200, description = "Applied (or, with dry_run, the plan)", body = WriteAnswer),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, description = "The configuration would be invalid", body = ErrorBody)))]
pub async fn put_entity(
    State(state): State<AdminState>,
    Extension(identity): Extension<Identity>,
    ApiPath((kind, name)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    check_name(&name)?;
    let mut value = entity_body(&headers, &body)?;
    let own_document = state.controller.source().etcd().is_some();
    let entity_name = name.clone();
    let edit = move |running: &Snapshot| -> Result<Snapshot, ApiError> {
        let current = documents::entity(running, kind, &entity_name);
        precondition(&headers, current.as_ref())?;
        let key = format!("{}.{entity_name}", kind.section());
        restore_json(&mut value, current.as_ref().map(entity_json).as_ref(), &key).map_err(
            |e| {
                ApiError::invalid(&crate::config::ConfigErrors(vec![
                    crate::config::ConfigError::new(key.clone(), e),
                ]))
            },
        )?;
        let table = json_to_table(value)?;
        documents::put(running, kind, &entity_name, table, own_document).map_err(edit_error)
    };
    let etag_name = name.clone();
    let etag_after = move |snapshot: &Snapshot| {
        documents::entity(snapshot, kind, &etag_name).map(|t| entity_etag(&t))
    };
    write(
        state,
        by(&identity, format!("PUT {}.{name}", kind.section())),
        query,
        edit,
        etag_after,
    )
    .await
}

/// Removes an entity.
#[utoipa::path(delete, path = "/api/{kind}/{name}", tag = "configuration",
    params(("kind" = Kind, Path, description = "The kind of entity"), ("name" = String, Path, description = "Its name"), WriteQuery,
        ("If-Match" = Option<String>, Header, description = "The ETag read; 412 when the entity changed since")),
    responses(
        (status = 200, description = "Applied (or, with dry_run, the plan)", body = WriteAnswer),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, description = "Something still uses it", body = ErrorBody)))]
pub async fn delete_entity(
    State(state): State<AdminState>,
    Extension(identity): Extension<Identity>,
    ApiPath((kind, name)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<WriteQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let entity_name = name.clone();
    let edit = move |running: &Snapshot| -> Result<Snapshot, ApiError> {
        let current = documents::entity(running, kind, &entity_name);
        if current.is_none() {
            return Err(ApiError::not_found(format!(
                "there is no {}.{entity_name}",
                kind.section()
            )));
        }
        precondition(&headers, current.as_ref())?;
        documents::remove(running, kind, &entity_name).map_err(edit_error)
    };
    write(
        state,
        by(&identity, format!("DELETE {}.{name}", kind.section())),
        query,
        edit,
        |_| None,
    )
    .await
}

/// What a whole configuration (TOML) would change, without applying it.
#[utoipa::path(post, path = "/api/plan", tag = "configuration",
    request_body(content = String, content_type = "text/plain", description = "A whole configuration as TOML (`application/toml` is accepted too); `\"***\"` stands for the running value of a secret"),
    responses((status = 200, body = PlanView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn plan(State(state): State<AdminState>, body: Bytes) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let controller = state.controller.clone();
    let changes = blocking(move || {
        let (running, _) = controller.running();
        let text =
            restore_document(&text, &documents::merged(&running)).map_err(ApiError::bad_request)?;
        controller
            .plan(Snapshot::single("pingap.toml", text))
            .map_err(|e| ApiError::invalid(&e))
    })
    .await?;
    Ok(axum::Json(PlanView::from(changes)).into_response())
}

fn summary(version: &Version, running: Option<u64>) -> VersionSummary {
    VersionSummary {
        number: version.number,
        time: version.time.clone(),
        trigger: version.trigger.clone(),
        author: version.author.clone(),
        note: version.note.clone(),
        digest: version.digest.clone(),
        running: running == Some(version.number),
    }
}

fn history(state: &AdminState) -> Result<&crate::control::History, ApiError> {
    state
        .controller
        .history()
        .ok_or_else(|| ApiError::not_found("this configuration keeps no history (it is embedded)"))
}

/// The versions of the configuration, newest first.
#[utoipa::path(get, path = "/api/history", tag = "history",
    responses((status = 200, body = [VersionSummary]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_history(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let running = state.controller.running().1;
    let list = blocking(move || Ok(history(&state)?.list()?)).await?;
    let mut summaries: Vec<VersionSummary> = list.iter().map(|v| summary(v, running)).collect();
    summaries.sort_by_key(|v| std::cmp::Reverse(v.number));
    Ok(axum::Json(summaries).into_response())
}

/// One version with its documents (secrets masked).
#[utoipa::path(get, path = "/api/history/{version}", tag = "history",
    params(("version" = u64, Path, description = "The version number")),
    responses((status = 200, body = VersionDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_version(
    State(state): State<AdminState>,
    ApiPath(number): ApiPath<u64>,
) -> Result<Response, ApiError> {
    let running = state.controller.running().1;
    let version = blocking(move || Ok(history(&state)?.get(number)?)).await?;
    Ok(axum::Json(VersionDetail {
        summary: summary(&version, running),
        documents: masked_documents(&version.snapshot),
    })
    .into_response())
}

/// What changed from one version to another (or to the running configuration).
#[utoipa::path(get, path = "/api/diff", tag = "history", params(DiffQuery),
    responses((status = 200, body = PlanView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<AdminState>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Response, ApiError> {
    let changes = blocking(move || {
        let history = history(&state)?;
        let from = history.get(query.from)?.snapshot;
        let to = match query.to {
            Some(number) => history.get(number)?.snapshot,
            None => state.controller.running().0,
        };
        let config = |snapshot: &Snapshot, number: String| {
            crate::control::as_written(snapshot).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("version {number} cannot be read: {e}"),
                )
            })
        };
        let before = config(&from, query.from.to_string())?;
        let after = config(&to, query.to.map_or("running".into(), |n| n.to_string()))?;
        Ok(Changes::between(Some(&before), &after, &[], &[]))
    })
    .await?;
    Ok(axum::Json(PlanView::from(changes)).into_response())
}

/// Applies a version of the history again (or, with dry_run, answers with its plan).
#[utoipa::path(post, path = "/api/rollback/{version}", tag = "history",
    params(("version" = u64, Path, description = "The version to restore"), WriteQuery),
    responses((status = 200, description = "Applied (or, with dry_run, the plan)", body = WriteAnswer),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AdminState>,
    Extension(identity): Extension<Identity>,
    ApiPath(number): ApiPath<u64>,
    ApiQuery(query): ApiQuery<WriteQuery>,
) -> Result<Response, ApiError> {
    let version = {
        let state = state.clone();
        blocking(move || Ok(history(&state)?.get(number)?)).await?
    };
    let edit = move |_: &Snapshot| Ok(version.snapshot);
    let record = Record::new("rollback")
        .by(Some(identity.name))
        .noting(format!("restores version {number}"));
    write(state, record, query, edit, |_| None).await
}
