//! Watching a configuration file or directory: a change is applied once the writes have
//! settled (debounced), whatever way the editor saved it.
//!
//! For a file, its directory is watched and events are filtered to the file's name: editors and
//! `pingap rollback` save by writing a new file and renaming it over the old one, which a watch
//! on the file itself would lose after the first save. For a directory, events of its `.toml`
//! files count.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::config::Source;

/// How long the files must be quiet before the change is applied.
const SETTLE: Duration = Duration::from_millis(200);

/// Which changed paths count.
type Filter = Box<dyn Fn(&Path) -> bool + Send>;

/// A running watch; dropping it stops watching.
pub struct FileWatch {
    _debouncer: Debouncer<notify::RecommendedWatcher>,
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
        let mut debouncer =
            new_debouncer(SETTLE, move |result: DebounceEventResult| match result {
                Ok(events) => {
                    if events.iter().any(|event| wanted(&event.path)) {
                        on_change();
                    }
                }
                Err(e) => tracing::warn!("configuration watch: {e}"),
            })?;
        debouncer
            .watcher()
            .watch(&watched, RecursiveMode::NonRecursive)?;
        Ok(Some(FileWatch {
            _debouncer: debouncer,
        }))
    }
}
