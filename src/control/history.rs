//! The history of applied configurations: every configuration the process applied, as a
//! numbered version with its time, trigger, author, digest and full text.
//!
//! For a file or directory source the versions are files `NNNNNNNNNNNN.json` in a directory
//! beside the configuration (`basic.history_dir`, default `<config>.history/`), readable by their
//! owner only (a configuration may hold secrets); for etcd they are keys under
//! `PREFIX/_history/`. A version number is taken by creating its file or key only if it does not
//! exist, so two processes (an old and a new one during an upgrade) never overwrite each other.
//! The newest `basic.history_keep` versions are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::etcd::{EtcdError, EtcdSource};
use crate::config::{Snapshot, open_private};

/// One applied configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// Its number: 1 for the first configuration recorded, then one more each time.
    pub number: u64,
    /// When it was applied (RFC 3339, UTC).
    pub time: String,
    /// What applied it: `start`, `sighup`, `file watch`, `etcd watch`, `api`, `rollback`,
    /// `automatic rollback`.
    pub trigger: String,
    /// Who, when known (the admin API's user, the command line's `$USER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Why, when there is more to say (the version a rollback restored, the error rates that
    /// caused an automatic one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// [`Snapshot::digest`] of the configuration.
    pub digest: String,
    /// The configuration's documents.
    pub snapshot: Snapshot,
}

/// What applied a configuration, and who.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// See [`Version::trigger`].
    pub trigger: String,
    /// See [`Version::author`].
    pub author: Option<String>,
    /// See [`Version::note`].
    pub note: Option<String>,
}

impl Record {
    /// A record of `trigger` with no author or note.
    pub fn new(trigger: impl Into<String>) -> Record {
        Record {
            trigger: trigger.into(),
            ..Record::default()
        }
    }

    /// The same, by `author`.
    pub fn by(mut self, author: Option<String>) -> Record {
        self.author = author;
        self
    }

    /// The same, with `note`.
    pub fn noting(mut self, note: impl Into<String>) -> Record {
        self.note = Some(note.into());
        self
    }
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file could not be read or written.
    #[error("history {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored version is not what pingap writes.
    #[error("history version {number} in {place} is unreadable: {message}")]
    Corrupt {
        /// The version.
        number: u64,
        /// Where it is.
        place: String,
        /// Why.
        message: String,
    },
    /// The store refused (etcd).
    #[error("history in {place}: {message}")]
    Store {
        /// Where.
        place: String,
        /// Why.
        message: String,
    },
    /// No such version.
    #[error("there is no version {0} in the history (see `pingap history`)")]
    NoSuchVersion(u64),
}

/// Where versions are kept.
pub trait VersionStore: Send + Sync {
    /// The version numbers kept, ascending.
    fn numbers(&self) -> Result<Vec<u64>, HistoryError>;
    /// Version `number`'s serialized form, if it is kept.
    fn get(&self, number: u64) -> Result<Option<String>, HistoryError>;
    /// Stores version `number`; `Ok(false)` when that number is taken already.
    fn create(&self, number: u64, value: &str) -> Result<bool, HistoryError>;
    /// Forgets version `number`.
    fn delete(&self, number: u64) -> Result<(), HistoryError>;
    /// Where the versions are, for messages.
    fn place(&self) -> String;
}

/// The history of one source.
pub struct History {
    store: Box<dyn VersionStore>,
    keep: usize,
    /// The digest of each version read or written so far (versions never change), so finding
    /// a configuration among them does not read them all again on every apply.
    digests: std::sync::Mutex<std::collections::HashMap<u64, String>>,
}

impl History {
    /// A history kept in `store`, pruned to the newest `keep` versions.
    pub fn new(store: Box<dyn VersionStore>, keep: usize) -> History {
        History {
            store,
            keep: keep.max(1),
            digests: Default::default(),
        }
    }

    /// A history kept in the directory `dir` (created when the first version is recorded).
    pub fn in_dir(dir: PathBuf, keep: usize) -> History {
        History::new(Box::new(DirStore { dir }), keep)
    }

    /// A history kept under the `_history/` keys of an etcd prefix.
    pub fn in_etcd(etcd: EtcdSource, keep: usize) -> History {
        History::new(Box::new(EtcdStore { etcd }), keep)
    }

    /// Where the versions are, for messages.
    pub fn place(&self) -> String {
        self.store.place()
    }

    /// Changes how many versions are kept (from the next record on).
    pub fn set_keep(&mut self, keep: usize) {
        self.keep = keep.max(1);
    }

    /// Every version kept, oldest first.
    pub fn list(&self) -> Result<Vec<Version>, HistoryError> {
        let mut versions = Vec::new();
        for number in self.store.numbers()? {
            // A version pruned by another process between the listing and the read is gone.
            if let Some(version) = self.read(number)? {
                versions.push(version);
            }
        }
        Ok(versions)
    }

    /// Version `number`.
    pub fn get(&self, number: u64) -> Result<Version, HistoryError> {
        self.read(number)?
            .ok_or(HistoryError::NoSuchVersion(number))
    }

    /// The newest version, if any.
    pub fn latest(&self) -> Result<Option<Version>, HistoryError> {
        for number in self.store.numbers()?.into_iter().rev() {
            if let Some(version) = self.read(number)? {
                return Ok(Some(version));
            }
        }
        Ok(None)
    }

    /// The newest version older than the newest one whose configuration has `digest`.
    pub fn find_digest(&self, digest: &str) -> Result<Option<u64>, HistoryError> {
        let numbers = self.store.numbers()?;
        let older = numbers.len().saturating_sub(1);
        for number in numbers[..older].iter().rev() {
            if self.digest_of(*number)?.is_some_and(|d| d == digest) {
                return Ok(Some(*number));
            }
        }
        Ok(None)
    }

    /// The digest of version `number`, read once.
    fn digest_of(&self, number: u64) -> Result<Option<String>, HistoryError> {
        if let Some(digest) = self.cached(number) {
            return Ok(Some(digest));
        }
        Ok(self.read(number)?.map(|version| version.digest))
    }

    fn cached(&self, number: u64) -> Option<String> {
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&number)
            .cloned()
    }

    fn remember(&self, number: u64, digest: &str) {
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(number, digest.to_string());
    }

    /// Records `snapshot` as applied by `record`, unless it is the newest version already
    /// (then that version is returned). Older versions beyond the number kept are removed.
    pub fn record(&self, snapshot: &Snapshot, record: Record) -> Result<Version, HistoryError> {
        let digest = snapshot.digest();
        let newest = self.store.numbers()?.last().copied();
        if let Some(newest) = newest
            && self.digest_of(newest)?.is_some_and(|d| d == digest)
        {
            return self.get(newest);
        }
        let mut number = newest.map_or(1, |n| n + 1);
        let mut version = Version {
            number,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            trigger: record.trigger,
            author: record.author,
            note: record.note,
            digest,
            snapshot: snapshot.clone(),
        };
        loop {
            version.number = number;
            let value =
                serde_json::to_string_pretty(&version).map_err(|e| HistoryError::Corrupt {
                    number,
                    place: self.place(),
                    message: e.to_string(),
                })?;
            if self.store.create(number, &value)? {
                self.remember(number, &version.digest);
                break;
            }
            // Another process took this number.
            number += 1;
        }
        self.prune()?;
        Ok(version)
    }

    fn prune(&self) -> Result<(), HistoryError> {
        let numbers = self.store.numbers()?;
        let excess = numbers.len().saturating_sub(self.keep);
        for number in &numbers[..excess] {
            self.store.delete(*number)?;
            self.digests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(number);
        }
        Ok(())
    }

    fn read(&self, number: u64) -> Result<Option<Version>, HistoryError> {
        let Some(value) = self.store.get(number)? else {
            return Ok(None);
        };
        let version: Version = serde_json::from_str(&value).map_err(|e| HistoryError::Corrupt {
            number,
            place: self.place(),
            message: e.to_string(),
        })?;
        self.remember(number, &version.digest);
        Ok(Some(version))
    }
}

/// Versions as files of a directory.
struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    fn file(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:012}.json"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
        move |source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl VersionStore for DirStore {
    fn numbers(&self) -> Result<Vec<u64>, HistoryError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Self::io(&self.dir))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if stem.len() == 12
                && let Ok(number) = stem.parse::<u64>()
            {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn get(&self, number: u64) -> Result<Option<String>, HistoryError> {
        let path = self.file(number);
        match std::fs::read_to_string(&path) {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    fn create(&self, number: u64, value: &str) -> Result<bool, HistoryError> {
        use std::io::Write;
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(Self::io(&self.dir))?;
        // Written in full under a temporary name, then linked to its number: the link fails if
        // the number is taken, and a reader never sees half a version.
        let temporary = self
            .dir
            .join(format!(".{number:012}.{}.tmp", std::process::id()));
        let mut file = open_private(&temporary).map_err(Self::io(&temporary))?;
        let written = file
            .write_all(value.as_bytes())
            .and_then(|()| file.sync_all());
        drop(file);
        let target = self.file(number);
        let linked = written.and_then(|()| std::fs::hard_link(&temporary, &target));
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Self::io(&target)(e)),
        }
    }

    fn delete(&self, number: u64) -> Result<(), HistoryError> {
        let path = self.file(number);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    fn place(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Versions as keys under `PREFIX/_history/`.
struct EtcdStore {
    etcd: EtcdSource,
}

impl EtcdStore {
    fn error(&self, e: EtcdError) -> HistoryError {
        HistoryError::Store {
            place: self.place(),
            message: e.to_string(),
        }
    }
}

impl VersionStore for EtcdStore {
    fn numbers(&self) -> Result<Vec<u64>, HistoryError> {
        self.etcd.history_list().map_err(|e| self.error(e))
    }

    fn get(&self, number: u64) -> Result<Option<String>, HistoryError> {
        self.etcd.history_get(number).map_err(|e| self.error(e))
    }

    fn create(&self, number: u64, value: &str) -> Result<bool, HistoryError> {
        match self.etcd.history_put(number, value) {
            Ok(()) => Ok(true),
            Err(EtcdError::Conflict { .. }) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    fn delete(&self, number: u64) -> Result<(), HistoryError> {
        self.etcd.history_delete(number).map_err(|e| self.error(e))
    }

    fn place(&self) -> String {
        format!("{}/_history", self.etcd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str) -> Snapshot {
        Snapshot::single("pingap.toml", text)
    }

    #[test]
    fn versions_are_numbered_kept_and_pruned() -> Result<(), HistoryError> {
        let dir = tempfile::tempdir().map_err(|source| HistoryError::Io {
            path: PathBuf::new(),
            source,
        })?;
        let history = History::in_dir(dir.path().join("h"), 3);
        assert!(history.latest()?.is_none());
        for (i, text) in ["a", "b", "b", "c", "d"].iter().enumerate() {
            history.record(&snapshot(text), Record::new(format!("t{i}")))?;
        }
        let versions = history.list()?;
        // "b" twice in a row is one version; the oldest ("a") is pruned.
        let numbers: Vec<u64> = versions.iter().map(|v| v.number).collect();
        assert_eq!(numbers, [2, 3, 4]);
        assert_eq!(versions[0].snapshot, snapshot("b"));
        assert_eq!(versions[2].trigger, "t4");
        assert!(matches!(
            history.get(1),
            Err(HistoryError::NoSuchVersion(1))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("h/000000000004.json"))
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        Ok(())
    }

    #[test]
    fn a_taken_number_is_skipped() -> Result<(), HistoryError> {
        let dir = tempfile::tempdir().map_err(|source| HistoryError::Io {
            path: PathBuf::new(),
            source,
        })?;
        let store = DirStore {
            dir: dir.path().to_path_buf(),
        };
        assert!(store.create(1, "x")?);
        assert!(!store.create(1, "y")?);
        assert_eq!(store.get(1)?.as_deref(), Some("x"));
        Ok(())
    }
}
