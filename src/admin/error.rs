//! The admin API's error answers: a status and a JSON body `{"error": "…", "errors": [{key,
//! message}]}`, where `errors` lists what is wrong with a configuration, key by key.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::ConfigErrors;
use crate::control::{ApplyError, HistoryError};

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// For an invalid configuration: each error with the key it is about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One error of a configuration.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// The dotted key, e.g. `locations.api.upstream` (empty for a whole document).
    pub key: String,
    /// Why it is wrong (with the file and line when known).
    pub message: String,
}

/// An error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
    /// Extra headers (e.g. `Retry-After`).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: message.into(),
                errors: Vec::new(),
            },
            headers: Vec::new(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 422 with the errors of a configuration.
    pub fn invalid(errors: &ConfigErrors) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                error: format!(
                    "the configuration would have {} error{}; nothing was changed",
                    errors.0.len(),
                    if errors.0.len() == 1 { "" } else { "s" }
                ),
                errors: errors
                    .0
                    .iter()
                    .map(|e| FieldError {
                        key: e.key.clone(),
                        message: e.to_string(),
                    })
                    .collect(),
            },
            headers: Vec::new(),
        }
    }

    /// With an extra header.
    pub fn with_header(mut self, name: http::HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl From<ApplyError> for ApiError {
    fn from(error: ApplyError) -> ApiError {
        match &error {
            ApplyError::Invalid(errors) => ApiError::invalid(errors),
            ApplyError::History(HistoryError::NoSuchVersion(_)) => {
                ApiError::not_found(error.to_string())
            }
            ApplyError::Upgrading | ApplyError::SourceChanged(_) => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            ApplyError::Write(_) | ApplyError::History(_) | ApplyError::Upgrade { .. } => {
                tracing::error!("admin API: {error}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
            }
        }
    }
}

impl From<HistoryError> for ApiError {
    fn from(error: HistoryError) -> ApiError {
        match error {
            HistoryError::NoSuchVersion(_) => ApiError::not_found(error.to_string()),
            _ => {
                tracing::error!("admin API: {error}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}
