//! Where the configuration comes from: the file or directory given with `-c`, or the default
//! compiled into the binary.

use std::path::{Path, PathBuf};

use super::ConfigErrors;
use super::load::{Loaded, load_path, load_text, process_env};

/// The embedded default configuration (`configs/default.toml`): a welcome page on
/// `127.0.0.1:6188`.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.toml");

/// A source of configuration, read again on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// [`DEFAULT_CONFIG`].
    Embedded,
    /// A `.toml` file or a directory of them.
    Path(PathBuf),
}

impl Source {
    /// Reads the configuration, interpolating the process environment.
    pub fn load(&self) -> Result<Loaded, ConfigErrors> {
        match self {
            Source::Embedded => load_text(
                Path::new("<embedded default>"),
                DEFAULT_CONFIG,
                &process_env,
            ),
            Source::Path(path) => load_path(path, &process_env),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Embedded => f.write_str("the embedded default configuration"),
            Source::Path(path) => write!(f, "{}", path.display()),
        }
    }
}
