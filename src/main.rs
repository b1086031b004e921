//! The `pingap` command: parses the command line, loads and checks the configuration, and hands
//! over to [`pingap::process::run`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pingap::config::Source;
use pingap::process::{self, RunFlags};
use pingap::runtime::compile;
use pingap_plugins::Registry;
use tracing_subscriber::EnvFilter;

/// A reverse proxy and API gateway built on Pingora.
#[derive(Parser, Debug)]
#[command(name = "pingap", version, about)]
struct Cli {
    /// Configuration file, or a directory whose .toml files are merged. Without it pingap serves
    /// a welcome page on 127.0.0.1:6188 from its embedded default configuration.
    #[arg(short = 'c', long = "conf", env = "PINGAP_CONF", value_name = "PATH")]
    conf: Option<PathBuf>,

    /// Check the configuration (everything a start would check) and exit: 0 if it is valid, 1
    /// with every error otherwise.
    #[arg(short = 't', long = "test")]
    test: bool,

    /// Run in the background (writes basic.pid_file).
    #[arg(short = 'd', long = "daemon", env = "PINGAP_DAEMON")]
    daemon: bool,

    /// Take the listening sockets over from a running pingap (graceful upgrade): start this, then
    /// send SIGQUIT to the old process within 5 seconds.
    #[arg(short = 'u', long = "upgrade", env = "PINGAP_UPGRADE")]
    upgrade: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let source = cli.conf.map_or(Source::Embedded, Source::Path);
    let registry = Registry::builtin();

    let compiled = source
        .load()
        .and_then(|loaded| compile(&loaded, &registry, None));
    let compiled = match compiled {
        Ok(compiled) => compiled,
        Err(errors) => {
            eprintln!("pingap: {source}: {errors}");
            return ExitCode::FAILURE;
        }
    };

    if cli.test {
        for warning in &compiled.warnings {
            println!("warning: {warning}");
        }
        println!("configuration OK: {source}: {}", compiled.summary());
        return ExitCode::SUCCESS;
    }

    init_logging(&compiled.plan.log_level);
    for warning in &compiled.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!("configuration from {source}: {}", compiled.summary());
    let flags = RunFlags {
        daemon: cli.daemon,
        upgrade: cli.upgrade,
    };
    match process::run(source, registry, compiled, flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pingap: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG`, when set, overrides `basic.log_level`.
fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
