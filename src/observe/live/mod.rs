//! What the admin API shows live: per-second statistics of every location and upstream
//! ([`stats`]), and the tail of access-log records ([`log_tail`]).
//!
//! Both are fed by the proxy when a request ends and cost it little: the statistics are atomics
//! in per-second windows (no lock, no allocation, no name lookup — the compiled configuration
//! holds each name's [`SeriesHandle`]); the tail builds a record only while someone follows it,
//! and sends it on a bounded broadcast that never blocks.

mod stats;
mod tail;
mod window;

pub use stats::{LiveStats, SeriesHandle, SeriesStats, StatsFrame, WindowStats, stats};
pub use tail::{CAPACITY as LOG_TAIL_CAPACITY, LogFilter, LogRecord, LogTail, log_tail};
