//! The built-in plugin types, one file each.

mod mock;
mod request_id;

use crate::PluginType;

/// Every built-in type, registered by [`crate::Registry::builtin`].
pub(crate) const TYPES: &[PluginType] = &[mock::TYPE, request_id::TYPE];
