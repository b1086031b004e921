//! The `pingap` command: parses the command line, loads and checks the configuration, and hands
//! over to [`pingap::process::run`].

/// jemalloc instead of the system allocator: a proxy allocates and frees small buffers on every
/// request, and glibc's malloc took about 16% of pingap's CPU under load (perf). Measured with
/// `benches/load.py` on the 2-core machine: glibc 37.5k req/s, jemalloc 41k, mimalloc 43k; idle
/// RSS 9.4, 10.4 and 23.6 MiB; with 1,000 idle connections 43, 49 and 62 MiB. jemalloc buys
/// most of the speed for little memory.
///
/// Its background threads are on (the `background_threads` feature): freed pages go back to the
/// system from a thread of jemalloc's own, over its 10 s decay, rather than only when a later
/// allocation happens to trigger a purge, so memory a burst took is returned after the burst
/// even when the proxy goes quiet. 10,000 idle keep-alive connections that arrived together:
/// 7.9 KiB per connection without them (the burst's freed pages stay), 6.4 KiB 10 s after.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pingap::config::Source;
use pingap::control;
use pingap::process::{self, RunFlags};
use pingap::proxy::explain::{self, Request};

mod commands;

/// A reverse proxy and API gateway built on Pingora.
#[derive(Parser, Debug)]
#[command(name = "pingap", version, about)]
struct Cli {
    /// Configuration file, a directory whose .toml files are merged, or
    /// `etcd://HOST:PORT[,HOST:PORT…]/PREFIX[?user=…&password=…&ca=…&cert=…&key=…]`. Without
    /// it pingap serves a welcome page on 127.0.0.1:6188 from its embedded default
    /// configuration.
    #[arg(
        short = 'c',
        long = "conf",
        env = "PINGAP_CONF",
        value_name = "PATH|URL",
        global = true
    )]
    conf: Option<String>,

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

    /// Apply the configuration when its files change (like `basic.auto_reload = true`).
    #[arg(long = "watch", env = "PINGAP_WATCH")]
    watch: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show which server and location would take a request, why the locations tried before it
    /// did not, the rewritten path, the upstream and the headers sent. Exit status: 0 when a
    /// location matches, 2 when none does, 1 on errors.
    ///
    /// Example: pingap explain -c pingap.toml POST 'http://api.example.com/v1/users?x=1' -H 'X-Env: canary'
    Explain {
        /// `[METHOD] URL`: the method (default GET) and an absolute URL, or a path with a Host
        /// header.
        #[arg(value_name = "[METHOD] URL", num_args = 1..=2, required = true)]
        request: Vec<String>,
        /// A request header, `'Name: value'`; may be repeated.
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// The server to ask, when the URL's port is not the one it listens on.
        #[arg(long)]
        server: Option<String>,
        /// The client address the request comes from.
        #[arg(long, default_value = "127.0.0.1")]
        client: IpAddr,
    },
    /// Check the configuration given with -c as a start would and show what applying it would
    /// change compared with the running one (the newest version in the history, or --against):
    /// entities added, removed and changed, and what each change does. Exit status: 0 without
    /// changes, 2 with changes, 1 on errors.
    Plan {
        /// Compare with this configuration file or directory instead of the history's newest
        /// version.
        #[arg(long, value_name = "PATH")]
        against: Option<PathBuf>,
    },
    /// List the versions of the configuration applied so far (newest last).
    History,
    /// Show what changed between versions A and B of the history (B: the newest).
    Diff {
        /// The older version.
        from: u64,
        /// The newer version (default: the newest).
        to: Option<u64>,
    },
    /// Write version N of the history back to the configuration's source. A pingap watching the
    /// source applies it at once; otherwise send it SIGHUP.
    Rollback {
        /// The version to restore.
        version: u64,
    },
    /// Replace the whole configuration of the source (-c, e.g. etcd://…) with FILE, a .toml file
    /// or directory, after checking it as a start would.
    Import {
        /// The configuration to import.
        file: PathBuf,
    },
    /// Print the whole configuration of the source (-c) as one TOML document.
    Export,
    /// Read a password (one line on standard input) and print its argon2 hash for
    /// `[admin] users = ["NAME:HASH"]`.
    HashPassword,
    /// Make a new random API token for the admin API: prints the token (give it to the client,
    /// it is not stored) and the line for `[admin] tokens`.
    NewToken {
        /// The token's name (shown as the author of the changes made with it).
        name: String,
    },
    /// Print the admin API's OpenAPI document.
    Openapi,
    /// Ask a running pingap whether it is up: GET the URL, exit 0 on a 2xx answer and 1 otherwise
    /// (a container's HEALTHCHECK; no curl needed). By default the admin API's `/health` on
    /// PINGAP_ADMIN_ADDR (an address such as 0.0.0.0 is asked on loopback), else on
    /// 127.0.0.1:9180; the admin API must be enabled for it.
    Health {
        /// The URL to ask instead (plain http), e.g. a server's `health_path`, which answers 503
        /// while pingap drains.
        #[arg(long, env = "PINGAP_HEALTH_URL", value_name = "URL")]
        url: Option<String>,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Asks another process: the configuration is not read.
    if let Some(Command::Health { url, timeout }) = &cli.command {
        return commands::health(url.as_deref(), Duration::from_secs(*timeout));
    }
    let source = match cli.conf.as_deref().map(Source::open) {
        None => Source::Embedded,
        Some(Ok(source)) => source,
        Some(Err(e)) => {
            eprintln!("pingap: {e}");
            return ExitCode::FAILURE;
        }
    };
    let registry = pingap::runtime::plugin_registry();

    let explain = match cli.command {
        Some(Command::Plan { against }) => return commands::plan(&source, &registry, against),
        Some(Command::History) => return commands::history(&source),
        Some(Command::Diff { from, to }) => return commands::diff(&source, from, to),
        Some(Command::Rollback { version }) => {
            return commands::rollback(&source, &registry, version);
        }
        Some(Command::Import { file }) => return commands::import(&source, &registry, file),
        Some(Command::Export) => return commands::export(&source),
        Some(Command::HashPassword) => return commands::hash_password(),
        Some(Command::NewToken { name }) => return commands::new_token(&name),
        Some(Command::Openapi) => return commands::openapi(),
        // Answered before the configuration was opened.
        Some(Command::Health { url, timeout }) => {
            return commands::health(url.as_deref(), Duration::from_secs(timeout));
        }
        Some(Command::Explain {
            request,
            headers,
            server,
            client,
        }) => Some((request, headers, server, client)),
        None => None,
    };

    let candidate = match control::read_and_check(&source, &registry, None) {
        Ok(candidate) => candidate,
        Err(errors) => {
            eprintln!("pingap: {source}: {errors}");
            return ExitCode::FAILURE;
        }
    };
    if let Some((request, headers, server, client)) = explain {
        return run_explain(candidate.compiled, request, headers, server, client);
    }
    let compiled = &candidate.compiled;

    if cli.test {
        for warning in &compiled.warnings {
            println!("warning: {warning}");
        }
        let certificates = compiled.runtime.certificates.set.describe();
        if !certificates.is_empty() {
            println!("certificates, by the name a client asks for (SNI):");
            for line in certificates {
                println!("  {line}");
            }
        }
        println!("configuration OK: {source}: {}", compiled.summary());
        return ExitCode::SUCCESS;
    }

    pingap::observe::logs::init(&compiled.plan.log_level, compiled.plan.log_format);
    for warning in &compiled.warnings {
        tracing::warn!("{warning}");
    }
    // One crypto provider for every TLS client and server in the process (rustls needs it
    // chosen when more than one could be).
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(plan) = &compiled.plan.tracing
        && let Err(e) = pingap::observe::trace::init(plan)
    {
        eprintln!("pingap: {e}");
        return ExitCode::FAILURE;
    }
    tracing::info!("configuration from {source}: {}", compiled.summary());
    let flags = RunFlags {
        daemon: cli.daemon,
        upgrade: cli.upgrade,
        watch: cli.watch,
    };
    match process::run(source, registry, candidate, flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pingap: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_explain(
    compiled: pingap::runtime::Compiled,
    request: Vec<String>,
    headers: Vec<String>,
    server: Option<String>,
    client: IpAddr,
) -> ExitCode {
    let (method, url) = match request.as_slice() {
        [url] => ("GET", url.as_str()),
        [method, url] => (method.as_str(), url.as_str()),
        _ => unreachable_args(),
    };
    let parsed = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("\"{method}\" is not a method"))
        .and_then(|method| {
            let headers = headers
                .iter()
                .map(|header| {
                    let (name, value) = header
                        .split_once(':')
                        .ok_or_else(|| format!("header \"{header}\" is not 'Name: value'"))?;
                    let name = http::HeaderName::try_from(name.trim())
                        .map_err(|_| format!("\"{}\" is not a header name", name.trim()))?;
                    let value = http::HeaderValue::from_str(value.trim())
                        .map_err(|_| format!("\"{}\" is not a header value", value.trim()))?;
                    Ok((name, value))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let request = Request {
                method,
                url: url.to_string(),
                headers,
                server,
                client,
            };
            let warnings = compiled.warnings.clone();
            explain::explain(compiled, &request).map(|explanation| (warnings, explanation))
        });
    match parsed {
        Ok((warnings, explanation)) => {
            for warning in &warnings {
                println!("warning: {warning}");
            }
            print!("{}", explanation.text);
            if explanation.matched {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("pingap explain: {e}");
            ExitCode::FAILURE
        }
    }
}

/// clap guarantees one or two request arguments.
fn unreachable_args() -> (&'static str, &'static str) {
    ("GET", "/")
}
