//! Watching a configuration file or directory: a change is applied once the writes have
//! settled, whatever way the editor saved it.
//!
//! For a file, its directory is watched and events are filtered to the file's name: editors and
//! `pingap rollback` save by writing a new file and renaming it over the old one, which a watch
//! on the file itself would lose after the first save. For a directory, events of its `.toml`
//! files count. Only events that change a file count (created, written, renamed, removed): the
//! kernel also reports opens and reads, and the apply reads the file, so counting those would
//! make every apply trigger the next.
//!
//! The certificate, key and CA files a configuration names are watched the same way
//! ([`FileWatch::files`]), by their directories, and count as changed when their contents do:
//! that sees a file replaced by a rename or through a symlink swap (as Kubernetes updates
//! mounted secrets), and ignores the other files of those directories.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::Source;

/// How long the files must be quiet before the change is applied.
const SETTLE: Duration = Duration::from_millis(200);
/// The longest a stream of writes delays the apply.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Which changed paths count.
type Filter = Box<dyn Fn(&Path) -> bool + Send>;

/// A running watch; dropping it stops watching (and its thread).
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

impl FileWatch {
    /// Watches `source`, calling `on_change` (on the watch's own thread) after each settled
    /// change. `None` for a source that is not on disk.
    pub fn start(
        source: &Source,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<Option<FileWatch>, notify::Error> {
        let Source::Path(path) = source else {
            return Ok(None);
        };
        let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        let (watched, wanted): (PathBuf, Filter) = if path.is_dir() {
            (
                path.clone(),
                Box::new(|changed: &Path| changed.extension().is_some_and(|ext| ext == "toml")),
            )
        } else {
            let name = path.file_name().map(|name| name.to_os_string());
            let dir = path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            (
                dir,
                Box::new(move |changed: &Path| changed.file_name() == name.as_deref()),
            )
        };
        let (events, received) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |result: notify::Result<Event>| match result {
                Ok(event)
                    if changes_content(&event.kind) && event.paths.iter().any(|p| wanted(p)) =>
                {
                    let _ = events.send(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("configuration watch: {e}"),
            })?;
        watcher.watch(&watched, RecursiveMode::NonRecursive)?;
        std::thread::Builder::new()
            .name("config watch".to_string())
            .spawn(move || settle_and_apply(&received, &mut || on_change()))
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(Some(FileWatch { _watcher: watcher }))
    }
}

impl FileWatch {
    /// Watches `files`, calling `on_change` (on the watch's own thread) once their contents
    /// changed and the writes have settled.
    pub fn files(
        files: Vec<PathBuf>,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<FileWatch, notify::Error> {
        let files: Vec<PathBuf> = files
            .into_iter()
            .map(|path| std::path::absolute(&path).unwrap_or(path))
            .collect();
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .map(|path| {
                path.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let (events, received) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |result: notify::Result<Event>| match result {
                Ok(event) if changes_content(&event.kind) => {
                    let _ = events.send(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("certificate file watch: {e}"),
            })?;
        for dir in &dirs {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        let mut last = contents_digest(&files);
        std::thread::Builder::new()
            .name("certificate watch".to_string())
            .spawn(move || {
                settle_and_apply(&received, &mut || {
                    let now = contents_digest(&files);
                    if now != last {
                        last = now;
                        on_change();
                    }
                })
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(FileWatch { _watcher: watcher })
    }
}

/// A digest of the contents of `files` (a missing file counts as empty).
fn contents_digest(files: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for file in files {
        let contents = std::fs::read(file).unwrap_or_default();
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    hasher.finalize().into()
}

/// Whether an event can mean new content: not an open, a read, or a close after reading.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Calls `on_change` once the events have stopped for [`SETTLE`] (or [`MAX_DELAY`] after the
/// first), until the watcher, and with it the sender, is gone.
fn settle_and_apply(received: &mpsc::Receiver<()>, on_change: &mut dyn FnMut()) {
    while received.recv().is_ok() {
        let first = Instant::now();
        loop {
            let left = MAX_DELAY.saturating_sub(first.elapsed());
            match received.recv_timeout(SETTLE.min(left)) {
                Ok(()) if !left.is_zero() => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                _ => break,
            }
        }
        on_change();
    }
}
