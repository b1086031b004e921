//! Errors of building a plugin from its settings and of running it on a request.

use std::borrow::Cow;

/// Why a plugin could not be built from its `[plugins.NAME]` table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The `type` names no registered plugin type.
    #[error("unknown plugin type `{kind}` (known types: {known})")]
    UnknownType {
        /// The type that was asked for.
        kind: String,
        /// The registered types, comma separated.
        known: String,
    },
    /// A setting is missing, unknown or has a bad value.
    #[error("{message}")]
    Invalid {
        /// The offending key inside the plugin's table (dotted for nested keys), when known.
        key: Option<String>,
        /// What is wrong with it.
        message: String,
    },
}

impl BuildError {
    /// A bad value at `key`.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError::Invalid {
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// The key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            BuildError::UnknownType { .. } => Some("type"),
            BuildError::Invalid { key, .. } => key.as_deref(),
        }
    }
}

/// A plugin stopped a request outside the request phase, where it cannot answer with a
/// [`crate::Flow::Respond`]: with a status for the client (a body that is too large: 413), or
/// without one when the plugin itself failed (the proxy answers 500 and logs it).
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`: {message}")]
pub struct PluginError {
    /// The name of the plugin instance that failed (filled in by the chain).
    pub plugin: String,
    /// What went wrong; shown to the client only with a `status`.
    pub message: Cow<'static, str>,
    /// The status to answer with, when the client is at fault.
    pub status: Option<http::StatusCode>,
}

impl PluginError {
    /// A failure of the plugin; the chain fills in the plugin's name.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        PluginError {
            plugin: String::new(),
            message: message.into(),
            status: None,
        }
    }

    /// A refusal with a status and a client-safe message.
    pub fn refuse(status: http::StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        PluginError {
            status: Some(status),
            ..PluginError::new(message)
        }
    }
}
