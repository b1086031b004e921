//! The built-in plugin types, one file each.

mod api_key;
mod basic_auth;
mod compression;
mod concurrency;
mod cors;
mod csrf;
mod headers;
mod ip_restriction;
mod jwt;
mod mock;
mod rate_limit;
mod redirect;
mod referer;
mod request_id;
mod request_size;
mod rewrite;
mod user_agent;

use crate::PluginType;

/// Every built-in type, registered by [`crate::Registry::builtin`].
pub(crate) const TYPES: &[PluginType] = &[
    api_key::TYPE,
    basic_auth::TYPE,
    compression::TYPE,
    concurrency::TYPE,
    cors::TYPE,
    csrf::TYPE,
    headers::TYPE,
    ip_restriction::TYPE,
    jwt::TYPE,
    mock::TYPE,
    rate_limit::TYPE,
    redirect::TYPE,
    referer::TYPE,
    request_id::TYPE,
    request_size::TYPE,
    rewrite::TYPE,
    user_agent::TYPE,
];

#[cfg(test)]
pub(crate) mod testing {
    //! Building plugins from TOML text in unit tests.

    use std::sync::Arc;

    use crate::registry::BuildFn;
    use crate::{BuildEnv, BuildError, Plugin, Settings};

    /// Parses settings text.
    pub(crate) fn settings(text: &str) -> Settings {
        text.parse().unwrap()
    }

    /// Builds a plugin that must build.
    pub(crate) fn built(build: BuildFn, text: &str) -> Arc<dyn Plugin> {
        build(&settings(text), &BuildEnv::default()).unwrap()
    }

    /// The error of settings that must not build.
    pub(crate) fn build_error(build: BuildFn, text: &str) -> BuildError {
        build(&settings(text), &BuildEnv::default()).err().unwrap()
    }
}
