//! pingap's own log (not the access log): `tracing` events written to standard error, as text or
//! one JSON object per line (`basic.log_format`), filtered by `basic.log_level` — a level or
//! per-module directives such as `"info,pingap::upstream=debug,pingora_core=warn"`. Pingora logs
//! through the `log` crate; its records are bridged into the same output.
//!
//! `RUST_LOG`, when set to a valid filter, overrides `basic.log_level`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `basic.log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-22T13:55:36.123Z  INFO pingap::process: message key=value`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","target":"pingap::process","fields":{"message":"…"}}`
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("\"{other}\" is not a log format; use text or json")),
        }
    }
}

/// Installs the process's log subscriber (once, at start) and the bridge from Pingora's `log`
/// records to it.
pub fn init(filter: &str, format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::new(filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(false)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("pingap: cannot install the logger: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert!(
            LogFormat::parse("xml")
                .unwrap_err()
                .contains("text or json")
        );
    }
}
