//! Rotation of access-log files: by time (`daily`, `hourly`) and/or size (`100MB`), keeping the
//! newest `access_log_keep` rotated files, optionally gzipped.
//!
//! A rotated file is named after the log and the period it holds (`access.log.20261122`,
//! `access.log.20261122-13`) or, when rotated by size, the moment it was closed
//! (`access.log.20261122-135501.042`); a `.N` suffix avoids clobbering an existing name.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Duration as ChronoDuration, Local, Timelike};

/// A time period files are rotated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// At every full hour.
    Hourly,
    /// At midnight (local time).
    Daily,
}

impl Period {
    /// The start of the period that contains `time`.
    fn start(self, time: DateTime<Local>) -> DateTime<Local> {
        let hour = match self {
            Period::Hourly => time.hour(),
            Period::Daily => 0,
        };
        time.with_hour(hour)
            .and_then(|t| t.with_minute(0))
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(time)
    }

    /// When the period that contains `time` ends.
    pub fn end(self, time: SystemTime) -> SystemTime {
        let start = self.start(time.into());
        let length = match self {
            Period::Hourly => ChronoDuration::hours(1),
            Period::Daily => ChronoDuration::days(1),
        };
        // Half a period past the nominal end, then back to its start: right across a
        // daylight-saving change, when a day is 23 or 25 hours long.
        let next = self.start(start + length + length / 2);
        next.into()
    }

    /// The suffix of a file that holds the period containing `time`.
    pub fn suffix(self, time: SystemTime) -> String {
        let start = self.start(time.into());
        match self {
            Period::Hourly => start.format("%Y%m%d-%H").to_string(),
            Period::Daily => start.format("%Y%m%d").to_string(),
        }
    }
}

/// How a log file is rotated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when a period ends.
    pub period: Option<Period>,
    /// Rotate before the file would exceed this many bytes.
    pub max_size: Option<u64>,
    /// Rotated files kept (older ones are deleted); all when `None`.
    pub keep: Option<usize>,
    /// Compress rotated files with gzip.
    pub gzip: bool,
}

impl Rotation {
    /// Parses `access_log_rotate`: `daily`, `hourly`, a size such as `100MB`, or a period and a
    /// size separated by a comma or space (`"daily, 1GB"`).
    pub fn parse_schedule(text: &str) -> Result<(Option<Period>, Option<u64>), String> {
        let mut period = None;
        let mut size = None;
        for word in text.split([',', ' ']).filter(|w| !w.is_empty()) {
            match word {
                "daily" | "hourly" if period.is_some() => {
                    return Err(format!("\"{text}\" names two periods"));
                }
                "daily" => period = Some(Period::Daily),
                "hourly" => period = Some(Period::Hourly),
                size_text => {
                    let bytes = size_text
                        .parse::<bytesize::ByteSize>()
                        .map_err(|_| {
                            format!(
                                "\"{size_text}\" is neither daily, hourly nor a size like 100MB"
                            )
                        })?
                        .as_u64();
                    if bytes == 0 || size.is_some() {
                        return Err(format!("\"{text}\" needs one size above zero"));
                    }
                    size = Some(bytes);
                }
            }
        }
        if period.is_none() && size.is_none() {
            return Err("an empty rotation; use daily, hourly or a size like 100MB".into());
        }
        Ok((period, size))
    }

    /// Whether the file is rotated at all.
    pub fn is_enabled(&self) -> bool {
        self.period.is_some() || self.max_size.is_some()
    }
}

/// Moves `path` aside under a free name with `suffix`; returns the new name.
pub fn move_aside(path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let base = format!("{}.{suffix}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() || PathBuf::from(format!("{}.gz", candidate.display())).exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    fs::rename(path, &candidate)?;
    Ok(candidate)
}

/// Compresses `file` into `file.gz` and removes it. The `.gz` keeps the file's modification
/// time (as gzip(1) does): [`prune`] orders files by it, and a file compressed now is not newer
/// than the files rotated after it and still waiting for compression.
pub fn gzip(file: &Path) -> io::Result<PathBuf> {
    let gz = PathBuf::from(format!("{}.gz", file.display()));
    let mut input = fs::File::open(file)?;
    let modified = input.metadata()?.modified()?;
    let output = fs::File::create(&gz)?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
    io::copy(&mut input, &mut encoder)?;
    let output = encoder.finish()?;
    output.set_modified(modified)?;
    output.sync_all()?;
    fs::remove_file(file)?;
    Ok(gz)
}

/// Deletes the oldest rotated files of `path` beyond the newest `keep`.
pub fn prune(path: &Path, keep: usize) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let prefix = format!("{name}.");
    let mut rotated = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        if file_name
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix) && n.len() > prefix.len())
        {
            let modified = entry.metadata()?.modified()?;
            let name = file_name.to_string_lossy();
            let stem = name.strip_suffix(".gz").unwrap_or(&name).to_string();
            rotated.push((modified, stem, entry.path()));
        }
    }
    // Newest first: by time (of the last write; compression keeps it), then by name without
    // `.gz` (names carry the period or the moment of rotation, and `.N` when that name was
    // taken, which sorts after the name without it).
    rotated.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    for (_, _, old) in rotated.into_iter().skip(keep) {
        fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_with_time(path: &Path, text: &str, modified: SystemTime) {
        fs::write(path, text).unwrap();
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }

    #[test]
    fn compression_keeps_the_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("access.log.1");
        let then = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        write_with_time(&file, "line\n", then);
        let gz = gzip(&file).unwrap();
        assert_eq!(fs::metadata(gz).unwrap().modified().unwrap(), then);
        assert!(!file.exists());
    }

    #[test]
    fn pruning_keeps_the_newest_by_time_then_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let t = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        // Rotated in this order; the second took the first's name plus `.1`, within the same
        // clock tick, and is not compressed yet; the first was compressed later.
        write_with_time(&dir.path().join("access.log.20261122-1.000.gz"), "", t(10));
        write_with_time(&dir.path().join("access.log.20261122-2.000.gz"), "", t(20));
        write_with_time(&dir.path().join("access.log.20261122-2.000.1"), "", t(20));
        write_with_time(&dir.path().join("access.log.20261122-3.000"), "", t(30));
        write_with_time(&log, "", t(40));
        prune(&log, 2).unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "access.log",
                "access.log.20261122-2.000.1",
                "access.log.20261122-3.000"
            ]
        );
    }

    #[test]
    fn schedules_parse() {
        assert_eq!(
            Rotation::parse_schedule("daily").unwrap(),
            (Some(Period::Daily), None)
        );
        assert_eq!(
            Rotation::parse_schedule("hourly, 100MB").unwrap(),
            (Some(Period::Hourly), Some(100_000_000))
        );
        assert_eq!(
            Rotation::parse_schedule("1KiB").unwrap(),
            (None, Some(1024))
        );
        for bad in ["", "weekly", "daily hourly", "0MB", "1MB 2MB"] {
            assert!(Rotation::parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_end_at_the_next_boundary() {
        let now = SystemTime::now();
        for period in [Period::Hourly, Period::Daily] {
            let end = period.end(now);
            assert!(end > now);
            assert_ne!(period.suffix(end), period.suffix(now));
            let just_before = end - std::time::Duration::from_millis(1);
            assert_eq!(period.suffix(just_before), period.suffix(now));
        }
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        std::fs::write(&log, "current").unwrap();
        for suffix in ["20260101", "20260102", "20260103"] {
            let file = dir.path().join(format!("access.log.{suffix}"));
            std::fs::write(&file, suffix).unwrap();
            // Distinct modification times, oldest first.
            let time = SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(suffix.parse::<u64>().unwrap());
            std::fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        prune(&log, 2).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["access.log", "access.log.20260102", "access.log.20260103"]
        );
    }
}
