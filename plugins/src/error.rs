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

/// A plugin failed while handling a request. The proxy answers such a request with a 500 and
/// logs the error; it is never a client's fault (those are [`crate::Flow::Respond`]).
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`: {message}")]
pub struct PluginError {
    /// The name of the plugin instance that failed (filled in by the chain).
    pub plugin: String,
    /// What went wrong.
    pub message: Cow<'static, str>,
}

impl PluginError {
    /// An error with a message; the chain fills in the plugin's name.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        PluginError {
            plugin: String::new(),
            message: message.into(),
        }
    }
}
