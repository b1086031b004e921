//! The `pingap` subcommands besides running the proxy: those of the configuration lifecycle
//! (`plan`, `history`, `diff`, `rollback`, `import`, `export`), each a thin layer over
//! [`pingap::control`], which the running process and the admin API use too; the admin API's
//! helpers (`hash-password`, `new-token`, `openapi`); and `health`, which asks a running pingap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pingap::config::Source;
use pingap::control::{self, Changes, History};
use pingap_plugins::Registry;

/// Exit status of a plan with changes (like `terraform plan -detailed-exitcode`).
const CHANGES: u8 = 2;

/// `pingap plan`: what applying the source would change.
pub fn plan(source: &Source, registry: &Registry, against: Option<PathBuf>) -> ExitCode {
    let candidate = match control::read_and_check(source, registry, None) {
        Ok(candidate) => candidate,
        Err(errors) => return fail(format!("{source}: {errors}")),
    };
    let running = match against {
        Some(path) => {
            let against = Source::Path(path);
            match control::read_and_check(&against, registry, None) {
                Ok(running) => {
                    println!("Comparing {source} with {against}.");
                    Some((running.config, running.compiled.warnings))
                }
                Err(errors) => return fail(format!("{against}: {errors}")),
            }
        }
        None => match control::history_for(source).map(|h| latest(&h)) {
            Some(Ok(Some((version, loaded)))) => {
                println!(
                    "Comparing {source} with the running configuration (version {}, applied {} by {}).",
                    version.number, version.time, version.trigger
                );
                Some(loaded)
            }
            Some(Ok(None)) | None => {
                println!(
                    "No configuration was applied from {source} yet (its history is empty): everything is new."
                );
                None
            }
            Some(Err(e)) => return fail(e),
        },
    };
    let changes = match &running {
        Some((config, warnings)) => Changes::between(
            Some(config),
            &candidate.config,
            warnings,
            &candidate.compiled.warnings,
        ),
        None => Changes::between(None, &candidate.config, &[], &candidate.compiled.warnings),
    };
    print!("{}", changes.render());
    if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHANGES)
    }
}

/// A configuration read from a version, with the warnings it compiles with.
type Checked = (pingap::config::schema::Config, Vec<String>);

/// The configuration of `version`, as written (`${ENV}` not expanded). One that no longer
/// compiles (a file it names is gone) is compared as read, without warnings.
fn checked(version: &control::Version) -> Result<Checked, String> {
    let context = |e| format!("version {} of the history: {e}", version.number);
    let config = control::as_written(&version.snapshot).map_err(context)?;
    let registry = pingap::runtime::plugin_registry();
    let warnings = version
        .snapshot
        .load(&pingap::config::load::process_env)
        .ok()
        .and_then(|loaded| pingap::runtime::compile(&loaded, &registry, None).ok())
        .map(|compiled| compiled.warnings)
        .unwrap_or_default();
    Ok((config, warnings))
}

/// The newest version of `history` and its configuration.
fn latest(history: &History) -> Result<Option<(control::Version, Checked)>, String> {
    let Some(version) = history.latest().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let checked = checked(&version)?;
    Ok(Some((version, checked)))
}

/// `pingap history`: the versions applied so far.
pub fn history(source: &Source) -> ExitCode {
    let Some(history) = control::history_for(source) else {
        return fail(format!("{source} keeps no history"));
    };
    let versions = match history.list() {
        Ok(versions) => versions,
        Err(e) => return fail(e),
    };
    if versions.is_empty() {
        println!("No version in {} yet.", history.place());
        return ExitCode::SUCCESS;
    }
    println!(
        "{:>7}  {:<24}  {:<18}  {:<12}  {:<14}  NOTE",
        "VERSION", "TIME", "TRIGGER", "AUTHOR", "DIGEST"
    );
    for version in versions {
        println!(
            "{:>7}  {:<24}  {:<18}  {:<12}  {:<14}  {}",
            version.number,
            version.time,
            version.trigger,
            version.author.as_deref().unwrap_or("-"),
            version.digest.get(..14).unwrap_or(&version.digest),
            version.note.as_deref().unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

/// `pingap diff A [B]`: the changes between two versions.
pub fn diff(source: &Source, from: u64, to: Option<u64>) -> ExitCode {
    let Some(history) = control::history_for(source) else {
        return fail(format!("{source} keeps no history"));
    };
    let to = match to {
        Some(to) => Ok(to),
        None => history.latest().map_err(|e| e.to_string()).and_then(|v| {
            v.map(|v| v.number)
                .ok_or_else(|| "the history is empty".to_string())
        }),
    };
    let load = |number: u64| -> Result<Checked, String> {
        checked(&history.get(number).map_err(|e| e.to_string())?)
    };
    let result = to.and_then(|to| Ok((to, load(from)?, load(to)?)));
    match result {
        Ok((to, (before, before_warnings), (after, after_warnings))) => {
            println!("Changes from version {from} to version {to}:");
            let changes =
                Changes::between(Some(&before), &after, &before_warnings, &after_warnings);
            print!("{}", changes.render());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `pingap rollback N`: writes version N back to the source.
pub fn rollback(source: &Source, registry: &Registry, number: u64) -> ExitCode {
    let Some(history) = control::history_for(source) else {
        return fail(format!("{source} keeps no history"));
    };
    let version = match history.get(number) {
        Ok(version) => version,
        Err(e) => return fail(e),
    };
    // Written only if it is still a valid configuration (a file it names may be gone).
    if let Err(errors) = control::check(version.snapshot.clone(), registry, None) {
        return fail(format!("version {number} is no longer valid: {errors}"));
    }
    if let Err(e) = source.write(&version.snapshot) {
        return fail(e);
    }
    println!(
        "Wrote version {number} ({}) to {source}. A pingap watching it applies it now; otherwise send it SIGHUP.",
        version.time
    );
    ExitCode::SUCCESS
}

/// `pingap import FILE`: replaces the source's configuration with FILE's.
pub fn import(source: &Source, registry: &Registry, file: PathBuf) -> ExitCode {
    let from = Source::Path(file);
    let candidate = match control::read_and_check(&from, registry, None) {
        Ok(candidate) => candidate,
        Err(errors) => return fail(format!("{from}: {errors}")),
    };
    if let Err(e) = source.write(&candidate.snapshot) {
        return fail(e);
    }
    println!(
        "Imported {from} into {source}: {}.",
        candidate.compiled.summary()
    );
    ExitCode::SUCCESS
}

/// `pingap export`: the source's configuration as one TOML document.
pub fn export(source: &Source) -> ExitCode {
    match source.read() {
        Ok(snapshot) => {
            print!("{}", snapshot.to_text());
            ExitCode::SUCCESS
        }
        Err(errors) => fail(format!("{source}: {errors}")),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("pingap: {message}");
    ExitCode::FAILURE
}

/// `pingap hash-password`: the argon2 hash of the password read from standard input.
pub fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("pingap: cannot read the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!(
            "pingap: give the password on standard input, e.g. `pingap hash-password < file`"
        );
        return ExitCode::FAILURE;
    }
    match pingap::admin::auth::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pingap: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pingap new-token NAME`: a random token and its `[admin] tokens` entry.
pub fn new_token(name: &str) -> ExitCode {
    let (token, digest) = pingap::admin::auth::new_token();
    println!("token (give it to the client; pingap keeps only its digest): {token}");
    println!("[admin] tokens entry: \"{name}:{digest}\"");
    ExitCode::SUCCESS
}

/// `pingap openapi`: the admin API's OpenAPI document.
pub fn openapi() -> ExitCode {
    match pingap::admin::openapi_document().to_pretty_json() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pingap: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pingap health [--url URL]`: GETs `url` (default [`default_health_url`]); exit 0 on a 2xx
/// answer, 1 on any other answer, a refused connection or no answer within `timeout`.
pub fn health(url: Option<&str>, timeout: Duration) -> ExitCode {
    let url = match url {
        Some(url) => url.to_string(),
        None => match default_health_url() {
            Ok(url) => url,
            Err(e) => return fail(format!("health: {e}")),
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("health: {e}")),
    };
    match runtime.block_on(async { tokio::time::timeout(timeout, probe(&url)).await }) {
        Ok(Ok(status)) if status.is_success() => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => fail(format!("health: {url}: {status}")),
        Ok(Err(e)) => fail(format!("health: {url}: {e}")),
        Err(_) => fail(format!(
            "health: {url}: no answer within {}s",
            timeout.as_secs_f64()
        )),
    }
}

/// The admin API's `/health` on `PINGAP_ADMIN_ADDR` (or the admin API's default address); an
/// unspecified address (`0.0.0.0`, `[::]`) is asked on loopback.
fn default_health_url() -> Result<String, String> {
    use pingap::runtime::compile::{ADMIN_ADDR_ENV, DEFAULT_ADMIN_ADDR};
    let text = std::env::var(ADMIN_ADDR_ENV)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_ADDR.to_string());
    let addr = pingap::config::validate::parse_listen_addr(&text)
        .map_err(|e| format!("{ADMIN_ADDR_ENV}: {e}"))?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!(
        "http://{}/health",
        SocketAddr::new(ip, addr.port())
    ))
}

/// One GET of `url` (plain HTTP/1.1); its status.
async fn probe(url: &str) -> Result<http::StatusCode, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs can be asked".to_string());
    }
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, authority.port_u16().unwrap_or(80)))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "pingap-health")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status())
}
