//! Where the configuration comes from: the file or directory given with `-c`, an etcd prefix
//! (`-c etcd://…`), or the default compiled into the binary. A source is read into a
//! [`Snapshot`] on every apply, and written back from one by a rollback or an import.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::etcd::{EtcdOptions, EtcdSource};

use super::load::{Loaded, config_files, process_env};
use super::snapshot::Snapshot;
use super::{ConfigError, ConfigErrors};

/// The embedded default configuration (`configs/default.toml`): a welcome page on
/// `127.0.0.1:6188`.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.toml");

/// The name the embedded default configuration has in errors and snapshots.
const EMBEDDED_NAME: &str = "<embedded default>";

/// A source of configuration, read again on every apply.
#[derive(Debug, Clone)]
pub enum Source {
    /// [`DEFAULT_CONFIG`].
    Embedded,
    /// A `.toml` file or a directory of them.
    Path(PathBuf),
    /// Keys under an etcd prefix, one per entity.
    Etcd {
        /// The connection.
        etcd: EtcdSource,
        /// The store revision of the last read (a watch goes on from it).
        read_revision: Arc<AtomicI64>,
    },
}

/// Why a configuration could not be written to its source.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The source cannot be written to.
    #[error("{0} cannot be written to")]
    ReadOnly(String),
    /// A document names a file outside the source.
    #[error("\"{0}\" is not a file of this source")]
    Foreign(String),
    /// etcd refused or could not be reached.
    #[error("{0}")]
    Etcd(#[from] super::etcd::EtcdError),
    /// The file system refused.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Source {
    /// The source `-c` names: `etcd://…` connects to etcd (and fails when it does not answer),
    /// anything else is a file or directory.
    pub fn open(arg: &str) -> Result<Source, super::etcd::EtcdError> {
        if arg.starts_with("etcd://") {
            let options = EtcdOptions::parse(arg, &process_env)?;
            Ok(Source::Etcd {
                etcd: EtcdSource::connect(options)?,
                read_revision: Arc::new(AtomicI64::new(0)),
            })
        } else {
            Ok(Source::Path(PathBuf::from(arg)))
        }
    }

    /// Reads the documents of the configuration.
    pub fn read(&self) -> Result<Snapshot, ConfigErrors> {
        match self {
            Source::Embedded => Ok(Snapshot::single(EMBEDDED_NAME, DEFAULT_CONFIG)),
            Source::Path(path) => read_path(path),
            Source::Etcd {
                etcd,
                read_revision,
            } => {
                let (snapshot, revision) = etcd.read().map_err(|e| {
                    ConfigErrors(vec![ConfigError {
                        file: None,
                        line: None,
                        key: String::new(),
                        message: e.to_string(),
                    }])
                })?;
                read_revision.store(revision, Ordering::Relaxed);
                Ok(snapshot)
            }
        }
    }

    /// The etcd connection, for an etcd source.
    pub fn etcd(&self) -> Option<&EtcdSource> {
        match self {
            Source::Etcd { etcd, .. } => Some(etcd),
            _ => None,
        }
    }

    /// The store revision of the last read, for an etcd source.
    pub fn read_revision(&self) -> i64 {
        match self {
            Source::Etcd { read_revision, .. } => read_revision.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Reads the configuration, interpolating the process environment.
    pub fn load(&self) -> Result<Loaded, ConfigErrors> {
        self.read()?.load(&process_env)
    }

    /// Replaces the configuration with `snapshot`: each file is replaced atomically (written
    /// beside it and renamed over it, keeping its permissions); in a directory, `.toml` files
    /// the snapshot does not have are removed.
    pub fn write(&self, snapshot: &Snapshot) -> Result<(), WriteError> {
        match self {
            Source::Embedded => Err(WriteError::ReadOnly(self.to_string())),
            Source::Etcd { etcd, .. } => {
                etcd.write(snapshot, None)?;
                Ok(())
            }
            Source::Path(path) if path.is_dir() => {
                for (name, _) in snapshot.documents() {
                    if Path::new(name).parent() != Some(path.as_path()) {
                        return Err(WriteError::Foreign(name.to_string()));
                    }
                }
                for (name, text) in snapshot.documents() {
                    write_atomically(Path::new(name), text)?;
                }
                let current = config_files(path).unwrap_or_default();
                for file in current {
                    let name = file.display().to_string();
                    if snapshot.document(&name).is_none() {
                        std::fs::remove_file(&file)
                            .map_err(|source| WriteError::Io { path: file, source })?;
                    }
                }
                Ok(())
            }
            Source::Path(path) => {
                let name = path.display().to_string();
                match snapshot.documents().collect::<Vec<_>>().as_slice() {
                    [(document, text)] if *document == name => write_atomically(path, text),
                    _ => Err(WriteError::Foreign(
                        snapshot
                            .documents()
                            .map(|(name, _)| name)
                            .collect::<Vec<_>>()
                            .join(", "),
                    )),
                }
            }
        }
    }

    /// The directory the history of this source is kept in by default: `<config>.history`
    /// beside the file or directory; none for the embedded default.
    pub fn default_history_dir(&self) -> Option<PathBuf> {
        self.beside(".history")
    }

    /// The directory ACME accounts and certificates are kept in by default: `<config>.acme`
    /// beside the file or directory; none for the embedded default or etcd (which keeps them
    /// under `PREFIX/_acme/`).
    pub fn default_acme_dir(&self) -> Option<PathBuf> {
        self.beside(".acme")
    }

    /// The path of the file or directory with `suffix` appended.
    fn beside(&self, suffix: &str) -> Option<PathBuf> {
        match self {
            Source::Embedded | Source::Etcd { .. } => None,
            Source::Path(path) => {
                let mut dir = path.as_os_str().to_owned();
                // `conf/` and `conf` are the same directory.
                while dir.to_string_lossy().ends_with('/') && dir.len() > 1 {
                    let trimmed = dir.to_string_lossy().trim_end_matches('/').to_string();
                    dir = trimmed.into();
                }
                dir.push(suffix);
                Some(PathBuf::from(dir))
            }
        }
    }
}

/// Reads the file, or the `.toml` files of the directory.
fn read_path(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let files = config_files(path).map_err(|e| ConfigErrors(vec![e]))?;
    let mut documents = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => documents.push((file.display().to_string(), text)),
            Err(e) => errors.push(ConfigError {
                file: Some(Arc::from(file.as_path())),
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(Snapshot::from_documents(documents))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`, so a reader (or
/// a watcher) never sees half a file. The permissions of the file it replaces are kept; a new
/// file is readable by its owner only.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let permissions = std::fs::metadata(path).ok().map(|meta| meta.permissions());
    let result = (|| {
        let mut file = open_private(&temporary)?;
        file.write_all(text.as_bytes())?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)?;
        }
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(io)
}

/// Creates (or truncates) `path` readable and writable by its owner only.
pub fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Embedded => f.write_str("the embedded default configuration"),
            Source::Path(path) => write!(f, "{}", path.display()),
            Source::Etcd { etcd, .. } => write!(f, "{etcd}"),
        }
    }
}
