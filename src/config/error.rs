//! Configuration errors: each names the file, the key (`table.name.key`) and the reason, with a
//! line number where one is known.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in, when it is about one.
    pub file: Option<Arc<Path>>,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The dotted key, e.g. `locations.api_v1.rewrite`; empty for errors about a whole file.
    pub key: String,
    /// Why it is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` with no known place.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in a configuration; a configuration with any is never used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(
            f,
            "{count} error{} in the configuration:",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Where one table of the configuration (`basic`, `locations.api`, ...) was defined.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The file that defines it.
    pub file: Arc<Path>,
    /// The line of its header (or first key).
    pub line: usize,
    /// The line of each of its top-level keys.
    pub key_lines: HashMap<String, usize>,
}

/// The origin of every table, so that later stages can point at the file and line of a key.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    tables: HashMap<String, Origin>,
}

impl Origins {
    pub(crate) fn insert(&mut self, table: String, origin: Origin) {
        self.tables.insert(table, origin);
    }

    /// The origin of `table` (e.g. `"locations.api"`).
    pub fn get(&self, table: &str) -> Option<&Origin> {
        self.tables.get(table)
    }

    /// An error about `table.key`, placed at the key's line, or at the table's when the key is
    /// absent or nested (`key` may be `"addrs[1]"` or `"jwt.secret"`).
    pub fn error(&self, table: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let full_key = if key.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{key}")
        };
        let Some(origin) = self.tables.get(table) else {
            return ConfigError::new(full_key, message);
        };
        let top_key = key.split(['.', '[']).next().unwrap_or(key);
        ConfigError {
            file: Some(origin.file.clone()),
            line: Some(
                origin
                    .key_lines
                    .get(top_key)
                    .copied()
                    .unwrap_or(origin.line),
            ),
            key: full_key,
            message: message.into(),
        }
    }

    /// Resolves a path written in `table` against the directory of the file that defines it;
    /// absolute paths are returned as they are.
    pub fn resolve(&self, table: &str, path: &Path) -> PathBuf {
        match self.tables.get(table).and_then(|o| o.file.parent()) {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_the_key_line() {
        let mut origins = Origins::default();
        origins.insert(
            "locations.api".into(),
            Origin {
                file: Arc::from(Path::new("/etc/pingap/a.toml")),
                line: 10,
                key_lines: HashMap::from([("upstream".to_string(), 12)]),
            },
        );
        let error = origins.error("locations.api", "upstream", "no such upstream");
        assert_eq!(
            error.to_string(),
            "/etc/pingap/a.toml:12: locations.api.upstream: no such upstream"
        );
        let error = origins.error("locations.api", "plugins[2]", "x");
        assert_eq!(error.line, Some(10));
        assert_eq!(error.key, "locations.api.plugins[2]");
        let error = origins.error("locations.other", "path", "x");
        assert_eq!(error.to_string(), "locations.other.path: x");
        assert_eq!(
            origins.resolve("locations.api", Path::new("certs/a.pem")),
            Path::new("/etc/pingap/certs/a.pem")
        );
        assert_eq!(
            origins.resolve("locations.api", Path::new("/abs.pem")),
            Path::new("/abs.pem")
        );
    }

    #[test]
    fn lists_every_error() {
        let errors = ConfigErrors(vec![
            ConfigError::new("servers.a.addr", "bad"),
            ConfigError::new("servers.b.addr", "worse"),
        ]);
        assert_eq!(
            errors.to_string(),
            "2 errors in the configuration:\n  servers.a.addr: bad\n  servers.b.addr: worse"
        );
    }
}
