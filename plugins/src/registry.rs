//! The registry of plugin types: from a `type` string to a constructor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{BuildError, Instance, Plugin, Settings};

/// What a plugin may need to know to build itself besides its settings.
#[derive(Clone, Default)]
pub struct BuildEnv {
    /// The directory relative file paths in the settings are relative to (the directory of the
    /// config file that defines the plugin).
    pub base_dir: PathBuf,
    /// The instance's name (the `NAME` of `[plugins.NAME]`).
    pub name: String,
    /// The instance of the same name in the running configuration, when a reload rebuilds it
    /// with other settings: a plugin whose state should outlive the change (a cache's contents)
    /// takes it from there.
    pub previous: Option<Arc<Instance>>,
}

impl std::fmt::Debug for BuildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildEnv")
            .field("base_dir", &self.base_dir)
            .field("name", &self.name)
            .field("previous", &self.previous.as_ref().map(|i| i.name()))
            .finish()
    }
}

impl BuildEnv {
    /// Resolves a path from the settings.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_relative() {
            self.base_dir.join(path)
        } else {
            path.to_path_buf()
        }
    }
}

/// Builds a plugin instance from its settings, validating every key.
pub type BuildFn = fn(&Settings, &BuildEnv) -> Result<Arc<dyn Plugin>, BuildError>;

/// A kind of plugin that can be configured as `[plugins.NAME] type = "..."`.
#[derive(Clone, Copy)]
pub struct PluginType {
    /// The value of `type`.
    pub name: &'static str,
    /// The priority of its instances unless `priority` is set; higher runs first.
    pub default_priority: i32,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Builds an instance from its settings, validating every key.
    pub build: BuildFn,
}

/// The known plugin types.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<&'static str, PluginType>,
}

impl Registry {
    /// A registry with no types.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// A registry with every built-in plugin type.
    pub fn builtin() -> Self {
        let mut registry = Registry::empty();
        for plugin_type in crate::builtin::TYPES {
            registry.register(*plugin_type);
        }
        registry
    }

    /// Adds a type, replacing one of the same name.
    pub fn register(&mut self, plugin_type: PluginType) {
        self.types.insert(plugin_type.name, plugin_type);
    }

    /// The registered types, by name.
    pub fn types(&self) -> impl Iterator<Item = &PluginType> {
        self.types.values()
    }

    /// Builds the instance `name` of type `kind`.
    pub fn build(
        &self,
        name: &str,
        kind: &str,
        priority: Option<i32>,
        settings: &Settings,
        context: &BuildEnv,
    ) -> Result<Instance, BuildError> {
        let plugin_type = self
            .types
            .get(kind)
            .ok_or_else(|| BuildError::UnknownType {
                kind: kind.to_string(),
                known: self.types.keys().copied().collect::<Vec<_>>().join(", "),
            })?;
        let plugin = (plugin_type.build)(settings, context)?;
        Ok(Instance::new(
            name,
            plugin_type.name,
            priority.unwrap_or(plugin_type.default_priority),
            plugin,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_list_the_known_ones() {
        let err = Registry::builtin()
            .build(
                "x",
                "no_such_plugin",
                None,
                &Settings::new(),
                &BuildEnv::default(),
            )
            .unwrap_err();
        assert_eq!(err.key(), Some("type"));
        let text = err.to_string();
        assert!(
            text.contains("unknown plugin type `no_such_plugin`"),
            "{text}"
        );
        assert!(text.contains("request_id"), "{text}");
    }

    #[test]
    fn priority_defaults_per_type_and_can_be_overridden() {
        let registry = Registry::builtin();
        let default = registry
            .build(
                "id",
                "request_id",
                None,
                &Settings::new(),
                &BuildEnv::default(),
            )
            .unwrap();
        let request_id = registry.types().find(|t| t.name == "request_id").unwrap();
        assert_eq!(default.priority(), request_id.default_priority);
        let custom = registry
            .build(
                "id",
                "request_id",
                Some(-5),
                &Settings::new(),
                &BuildEnv::default(),
            )
            .unwrap();
        assert_eq!(custom.priority(), -5);
        assert_eq!(custom.kind(), "request_id");
    }
}
