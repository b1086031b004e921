//! The built-in plugin types, one file each.

mod concurrency;
mod jwt;
mod mock;
mod rate_limit;
mod request_id;

use crate::PluginType;

/// Every built-in type, registered by [`crate::Registry::builtin`].
pub(crate) const TYPES: &[PluginType] = &[
    concurrency::TYPE,
    jwt::TYPE,
    mock::TYPE,
    rate_limit::TYPE,
    request_id::TYPE,
];
