//! Where access-log lines go: a bounded channel per file (or standard output) and a writer
//! thread that owns the file, batches writes, rotates and reopens it.
//!
//! A request only formats its line and offers it to the channel; when the channel is full (the
//! disk cannot keep up) the line is dropped and counted in `pingap_access_log_dropped_total`,
//! never waited for. Lines are formatted into buffers the writer hands back once written
//! ([`Sink::buffer`]), so a busy log allocates nothing per line, and the writer takes them in
//! batches: after writing what it found it waits [`BATCH_WAIT`] before looking again, so under
//! load requests do not wake it for every line (on a busy core that wake-up cost a quarter of
//! the throughput). Servers logging to the same file share one sink, and a reload keeps the
//! sinks whose file and rotation are unchanged (the runtime carries them, see
//! `crate::runtime::carry`), so lines are never interleaved by two writers. `SIGUSR1` makes
//! every writer reopen its file ([`Sink::reopen`]), for external logrotate. A sink no runtime
//! holds any more ends its writer, which writes out what it holds first.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError, channel, sync_channel,
};
use std::time::{Duration, SystemTime};

use crossbeam_queue::ArrayQueue;
use prometheus::IntCounter;

use super::rotate::{self, Rotation};
use crate::observe::metrics::metrics;

/// Lines waiting for the writer, per file.
const CHANNEL_LINES: usize = 16 * 1024;
/// How often an idle writer looks at the clock (time rotation) and the reopen flag.
const TICK: Duration = Duration::from_millis(500);
/// How long a writer that found lines waits before taking the next batch: lines queue up
/// meanwhile (a few hundred under load) without waking it.
const BATCH_WAIT: Duration = Duration::from_millis(10);
/// Written line buffers kept for reuse, per file.
const SPARE_BUFFERS: usize = 2048;
/// A line buffer larger than this (an unusually long line) is not kept for reuse.
const SPARE_BUFFER_MAX: usize = 4096;
/// The capacity of a new line buffer: a combined line with a long user agent fits.
const LINE_CAPACITY: usize = 256;

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Standard output (`access_log = "stdout"`).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

impl Target {
    /// `"stdout"` or a path.
    pub fn parse(text: &str) -> Target {
        match text {
            "stdout" | "-" => Target::Stdout,
            path => Target::File(PathBuf::from(path)),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Stdout => "stdout".into(),
            Target::File(path) => path.display().to_string(),
        }
    }
}

enum Message {
    Line(String),
    Wake,
    /// Flush, then say so.
    Flush(SyncSender<()>),
}

/// The sending side of one log file.
pub struct Sink {
    target: Target,
    rotation: Rotation,
    tx: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
    dropped: IntCounter,
    /// Emptied line buffers the writer gave back.
    spare: Arc<ArrayQueue<String>>,
}

impl Sink {
    /// A new sink for `target`, with its writer thread. Fails if the file cannot be opened for
    /// appending.
    pub fn open(target: Target, rotation: Rotation) -> io::Result<Arc<Sink>> {
        let output = Output::open(&target)?;
        let (tx, rx) = sync_channel(CHANNEL_LINES);
        let reopen = Arc::new(AtomicBool::new(false));
        let spare = Arc::new(ArrayQueue::new(SPARE_BUFFERS));
        let dropped = metrics().access_log_dropped(&target.label());
        let finisher = if rotation.is_enabled() && (rotation.gzip || rotation.keep.is_some()) {
            Some(Finisher::start(&target, &rotation)?)
        } else {
            None
        };
        let writer = Writer {
            finisher,
            target: target.clone(),
            rotation: rotation.clone(),
            size: output.size(),
            output,
            rotate_at: rotation.period.map(|p| p.end(SystemTime::now())),
            reopen: reopen.clone(),
            failing: false,
            unflushed: 0,
            dropped: dropped.clone(),
            spare: spare.clone(),
        };
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(Arc::new(Sink {
            target,
            rotation,
            tx,
            reopen,
            dropped,
            spare,
        }))
    }

    /// Whether this sink writes to `target` with `rotation` (and so can serve a server that
    /// asks for them).
    pub fn serves(&self, target: &Target, rotation: &Rotation) -> bool {
        self.target == *target && self.rotation == *rotation
    }

    /// An empty buffer to format a line into: one the writer gave back, or a new one.
    pub fn buffer(&self) -> String {
        self.spare
            .pop()
            .unwrap_or_else(|| String::with_capacity(LINE_CAPACITY))
    }

    /// Offers a line to the writer; drops (and counts) it when the writer is behind.
    pub fn send(&self, line: String) {
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Makes the writer reopen its file (`SIGUSR1`, after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        let _ = self.tx.try_send(Message::Wake);
    }
}

/// Makes `sinks` write out the lines they hold, waiting up to `timeout` in all (at exit).
pub fn flush_all<'a>(sinks: impl IntoIterator<Item = &'a Arc<Sink>>, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    for sink in sinks {
        let (done_tx, done_rx) = sync_channel(1);
        let mut message = Message::Flush(done_tx);
        // Behind the lines already queued; a full queue drains within milliseconds.
        loop {
            match sink.tx.try_send(message) {
                Ok(()) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let _ = done_rx.recv_timeout(left);
                    break;
                }
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
    }
}

enum Output {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

impl Output {
    fn open(target: &Target) -> io::Result<Output> {
        Ok(match target {
            Target::Stdout => Output::Stdout(io::stdout()),
            Target::File(path) => Output::File(BufWriter::with_capacity(
                64 * 1024,
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
        })
    }

    fn size(&self) -> u64 {
        match self {
            Output::Stdout(_) => 0,
            Output::File(file) => file.get_ref().metadata().map_or(0, |m| m.len()),
        }
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().write_all(line),
            Output::File(file) => file.write_all(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().flush(),
            Output::File(file) => file.flush(),
        }
    }
}

/// The writer thread's state.
struct Writer {
    /// Compresses and prunes rotated files, in rotation order, off the writer thread.
    finisher: Option<Sender<PathBuf>>,
    target: Target,
    rotation: Rotation,
    output: Output,
    size: u64,
    rotate_at: Option<SystemTime>,
    reopen: Arc<AtomicBool>,
    /// Whether the last write failed (logged once per failure spell).
    failing: bool,
    /// Lines written into the buffer since the last successful flush.
    unflushed: u64,
    dropped: IntCounter,
    /// Where written line buffers go back for reuse.
    spare: Arc<ArrayQueue<String>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Message>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(message) => {
                    self.take(message);
                    // Take what else is queued before flushing: one write for many lines.
                    while let Ok(message) = rx.try_recv() {
                        self.take(message);
                    }
                    self.flush();
                    // Let the next lines gather (the next `recv` takes them at once): a writer
                    // blocked in `recv` is woken by every line sent to it, one wake-up (and
                    // write) per request under load.
                    std::thread::sleep(BATCH_WAIT);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            self.flush();
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen();
            }
            if self.rotate_at.is_some_and(|at| SystemTime::now() >= at) {
                self.rotate();
            }
        }
    }

    fn take(&mut self, message: Message) {
        let line = match message {
            Message::Line(line) => line,
            Message::Wake => return,
            Message::Flush(done) => {
                self.flush();
                let _ = done.try_send(());
                return;
            }
        };
        let len = line.len() as u64;
        if self.rotate_at.is_some_and(|at| SystemTime::now() >= at)
            || self
                .rotation
                .max_size
                .is_some_and(|max| self.size > 0 && self.size + len > max)
        {
            self.rotate();
        }
        self.size += len;
        self.unflushed += 1;
        if let Err(e) = self.output.write(line.as_bytes()) {
            self.failed(&e);
        }
        if line.capacity() <= SPARE_BUFFER_MAX {
            let mut line = line;
            line.clear();
            // A full queue of spares: this one is freed.
            let _ = self.spare.push(line);
        }
    }

    fn flush(&mut self) {
        match self.output.flush() {
            Ok(()) => {
                self.unflushed = 0;
                self.failing = false;
            }
            Err(e) => self.failed(&e),
        }
    }

    /// After a failed write: the buffered lines are counted as dropped and discarded (a full
    /// disk must not keep them forever), and the file is opened afresh.
    fn failed(&mut self, e: &io::Error) {
        self.dropped.inc_by(self.unflushed);
        self.unflushed = 0;
        if !self.failing {
            tracing::error!(log = %self.target.label(), "cannot write the access log: {e}");
            self.failing = true;
        }
        match Output::open(&self.target) {
            Ok(output) => {
                self.output = output;
                self.size = self.output.size();
            }
            Err(e) => tracing::debug!("cannot reopen the access log: {e}"),
        }
    }

    /// Reopens the file by its name (after an external tool moved it).
    fn reopen(&mut self) {
        if self.open_again() {
            tracing::info!(log = %self.target.label(), "access log reopened");
        }
    }

    fn open_again(&mut self) -> bool {
        self.flush();
        match Output::open(&self.target) {
            Ok(output) => {
                self.output = output;
                self.size = self.output.size();
                true
            }
            Err(e) => {
                tracing::error!(log = %self.target.label(), "cannot reopen the access log: {e}");
                false
            }
        }
    }

    /// Moves the current file aside, opens a new one, and compresses and prunes in the
    /// background.
    fn rotate(&mut self) {
        let Target::File(path) = &self.target else {
            return;
        };
        let path = path.clone();
        self.flush();
        let now = SystemTime::now();
        // A file rotated for its period is named after the period it holds.
        let suffix = match (self.rotation.period, self.rotate_at) {
            (Some(period), Some(at)) if now >= at => period.suffix(at - Duration::from_millis(1)),
            _ => chrono::DateTime::<chrono::Local>::from(now)
                .format("%Y%m%d-%H%M%S%.3f")
                .to_string(),
        };
        self.rotate_at = self.rotation.period.map(|p| p.end(now));
        let moved = match rotate::move_aside(&path, &suffix) {
            Ok(moved) => moved,
            Err(e) => {
                tracing::error!(log = %path.display(), "cannot rotate the access log: {e}");
                return;
            }
        };
        self.open_again();
        tracing::debug!(log = %path.display(), to = %moved.display(), "access log rotated");
        if let Some(finisher) = &self.finisher
            && finisher.send(moved).is_err()
        {
            tracing::error!(log = %path.display(), "rotated access logs are no longer compressed or pruned");
        }
    }
}

/// The thread that compresses and prunes rotated files of one log.
struct Finisher;

impl Finisher {
    fn start(target: &Target, rotation: &Rotation) -> io::Result<Sender<PathBuf>> {
        let Target::File(path) = target.clone() else {
            return Err(io::Error::other("standard output is not rotated"));
        };
        let (gzip, keep) = (rotation.gzip, rotation.keep);
        let (tx, rx) = channel::<PathBuf>();
        std::thread::Builder::new()
            .name("access-log-rotate".into())
            .spawn(move || {
                for moved in rx {
                    finish_rotation(&path, &moved, gzip, keep);
                }
            })?;
        Ok(tx)
    }
}

fn finish_rotation(path: &Path, moved: &Path, gzip: bool, keep: Option<usize>) {
    if gzip && let Err(e) = rotate::gzip(moved) {
        tracing::error!(log = %moved.display(), "cannot compress the rotated access log: {e}");
    }
    if let Some(keep) = keep
        && let Err(e) = rotate::prune(path, keep)
    {
        tracing::error!(log = %path.display(), "cannot delete old access logs: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_lines_are_in_the_file_and_their_buffers_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let sink = Sink::open(Target::File(path.clone()), Rotation::default()).unwrap();
        // A buffer of a capacity no new one has, to recognise it when it comes back.
        let mut line = String::with_capacity(1000);
        line.push_str("GET / 200\n");
        sink.send(line);
        let mut second = sink.buffer();
        second.push_str("GET /b 404\n");
        sink.send(second);
        flush_all([&sink], Duration::from_secs(10));

        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "GET / 200\nGET /b 404\n"
        );
        let recycled: Vec<String> = (0..2).map(|_| sink.buffer()).collect();
        assert!(recycled.iter().all(String::is_empty));
        assert!(
            recycled.iter().any(|b| b.capacity() == 1000),
            "the written buffer was not handed back: {:?}",
            recycled.iter().map(String::capacity).collect::<Vec<_>>()
        );
    }
}
