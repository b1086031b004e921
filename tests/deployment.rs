//! Deployment through the binary and the files in docker/: `pingap health` (the image's
//! HEALTHCHECK) against a running pingap, the systemd unit (`systemd-analyze verify`), and the
//! Grafana dashboard: every metric and label its queries use is in pingap's `/metrics` output,
//! and every query parses (`promtool check rules`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use common::{Backend, Pingap, command, get, run_to_exit};
use nix::sys::signal::Signal;

fn docker_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docker")
        .join(name)
}

/// Runs `pingap health` with `args` and `env`.
fn health(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut health = command();
    health.arg("health").args(args).envs(env.iter().copied());
    run_to_exit(health)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_asks_the_admin_api_where_pingap_admin_addr_says() {
    let pingap = Pingap::start(
        "[admin]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [plugins.hello]\ntype = 'mock'\nbody = 'hello'\n[locations.hello]\nplugins = ['hello']\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['hello']\n",
    );
    let url = pingap.announced_url("admin API on ");
    let port = url.rsplit(':').next().unwrap();

    let addr = format!("127.0.0.1:{port}");
    let (status, output) = health(&[], &[("PINGAP_ADMIN_ADDR", &addr)]);
    assert!(status.success(), "{output}");
    assert!(
        output.contains(&format!("http://{addr}/health: 200 OK")),
        "{output}"
    );

    // An address that listens everywhere is asked on loopback.
    let (status, output) = health(&[], &[("PINGAP_ADMIN_ADDR", &format!("0.0.0.0:{port}"))]);
    assert!(status.success(), "{output}");
    assert!(
        output.contains(&format!("http://{addr}/health")),
        "{output}"
    );

    // PINGAP_HEALTH_URL is the --url flag's variable.
    let (status, output) = health(&[], &[("PINGAP_HEALTH_URL", &format!("{url}/ready"))]);
    assert!(status.success(), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_on_an_error_status_a_refused_connection_or_silence() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&format!(
        "[basic]\nshutdown_delay = '60s'\n\
         [upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\nhealth_path = '/healthz'\n",
        backend.addr
    ));
    let url = pingap.url("main", "/healthz");
    let (status, output) = health(&["--url", &url], &[]);
    assert!(status.success(), "{output}");

    // Draining: the health path answers 503, and the check fails.
    pingap.signal(Signal::SIGTERM);
    assert!(
        common::eventually(Duration::from_secs(10), || {
            tokio::task::block_in_place(|| !health(&["--url", &url], &[]).0.success())
        })
        .await
    );
    let (_, output) = health(&["--url", &url], &[]);
    assert!(output.contains("503 Service Unavailable"), "{output}");
    assert_eq!(get(&url, &[]).await.status(), 503);

    let refusing = common::RefusingPort::new();
    let (status, output) = health(&["--url", &format!("http://{}/", refusing.addr)], &[]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("Connection refused"), "{output}");

    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let (status, output) = health(&["--url", &silent_url, "--timeout", "1"], &[]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("no answer within 1s"), "{output}");

    let (status, output) = health(&["--url", "https://127.0.0.1:1/"], &[]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("only http://"), "{output}");
}

/// Runs `program` with `args`; its status and output.
fn run(program: &str, args: &[&Path]) -> (ExitStatus, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, text)
}

#[test]
fn the_systemd_unit_verifies() {
    // `verify` checks that the commands exist: the unit is checked with this build's binary in
    // place of /usr/local/bin/pingap, and nothing else changed.
    let unit = std::fs::read_to_string(docker_file("pingap.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/pingap "), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pingap.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/pingap", common::binary()),
    )
    .unwrap();
    let (status, output) = run("systemd-analyze", &[Path::new("verify"), &path]);
    // It exits 0 on unknown keys and bad values too, and says so.
    assert!(status.success() && output.trim().is_empty(), "{output}");
}

/// What the Grafana dashboard asks Prometheus: every PromQL expression, and the metrics its
/// template variables read (`label_values(METRIC, LABEL)`).
struct Dashboard {
    expressions: Vec<String>,
    variable_metrics: Vec<String>,
}

impl Dashboard {
    fn read() -> Dashboard {
        let path = docker_file("grafana/dashboards/pingap.json");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut dashboard = Dashboard {
            expressions: Vec::new(),
            variable_metrics: Vec::new(),
        };
        dashboard.collect(&json);
        assert!(dashboard.expressions.len() > 20, "panels with queries");
        dashboard
    }

    fn collect(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => {
                            self.expressions.push(grafana_variables(expr));
                        }
                        ("definition", serde_json::Value::String(query)) => {
                            let inner = query
                                .strip_prefix("label_values(")
                                .and_then(|rest| rest.split(',').next())
                                .unwrap_or_else(|| panic!("unexpected variable query {query}"));
                            self.variable_metrics.push(inner.trim().to_string());
                        }
                        _ => self.collect(value),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| self.collect(item)),
            _ => {}
        }
    }
}

/// `expr` with Grafana's variables replaced by values Prometheus accepts.
fn grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
}

/// The metric names in `expr`: pingap's own and the process metrics it exports.
fn metric_names(expr: &str) -> BTreeSet<String> {
    regex::Regex::new(r"\b(?:pingap|process)_[a-z0-9_]+\b")
        .unwrap()
        .find_iter(expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The labels `expr` groups or filters by: `by (…)`, `without (…)` and `{label=…}` matchers.
/// `on (…)` joins on Prometheus's target labels, which pingap does not export.
fn label_names(expr: &str) -> BTreeSet<String> {
    let grouping = regex::Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").unwrap();
    let matchers = regex::Regex::new(r"\{([^}]*)\}").unwrap();
    let matcher = regex::Regex::new(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)").unwrap();
    let mut labels = BTreeSet::new();
    for captures in grouping.captures_iter(expr) {
        labels.extend(
            captures[1]
                .split(',')
                .map(|label| label.trim().to_string())
                .filter(|label| !label.is_empty()),
        );
    }
    for captures in matchers.captures_iter(expr) {
        labels.extend(
            matcher
                .captures_iter(&captures[1])
                .map(|m| m[1].to_string()),
        );
    }
    labels
}

/// The metrics of a `/metrics` page, each with the labels its series carry.
fn exported(text: &str) -> HashMap<String, BTreeSet<String>> {
    let mut metrics: HashMap<String, BTreeSet<String>> = HashMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty()) else {
            continue;
        };
        let labels = metrics.entry(name.to_string()).or_default();
        if let Some(inner) = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
        {
            labels.extend(
                inner
                    .0
                    .split(',')
                    .filter_map(|pair| pair.split_once('=').map(|(l, _)| l.to_string())),
            );
        }
    }
    metrics
}

/// Scrapes `url` until every metric of `wanted` is in the output (requests are counted just
/// after their responses); returns the last scrape.
async fn scrape_until(url: &str, wanted: &BTreeSet<String>) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = get(url, &[]).await.text().await.unwrap();
        let metrics = exported(&text);
        if wanted.iter().all(|name| metrics.contains_key(name))
            || std::time::Instant::now() > deadline
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let dashboard = Dashboard::read();

    // A pingap that has served, refused, failed, reloaded and holds a certificate, so that
    // every series the dashboard can show exists.
    let backend = Backend::start("b").await;
    let dead = common::RefusingPort::new();
    let leaf = common::pki::Ca::new("dashboard test CA").leaf(&["localhost"]);
    let pingap = Pingap::start(&format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [upstreams.api]\naddrs = ['{}']\n[upstreams.dead]\naddrs = ['{}']\n\
         [plugins.deny]\ntype = 'ip_restriction'\ndeny = ['0.0.0.0/0']\n\
         [locations.api]\nupstream = 'api'\npath = '/api'\n\
         [locations.dead]\nupstream = 'dead'\npath = '/dead'\n\
         [locations.denied]\nupstream = 'api'\npath = '/denied'\nplugins = ['deny']\n\
         [certificates.site]\ntls_cert = '''{}'''\ntls_key = '''{}'''\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api', 'dead', 'denied']\n\
         [servers.secure]\naddr = '127.0.0.1:0'\ntls = true\nlocations = ['api']\n",
        backend.addr, dead.addr, leaf.cert_pem, leaf.key_pem
    ));
    for (path, status) in [("/api", 200), ("/dead", 502), ("/denied", 403)] {
        let response = common::client()
            .post(pingap.url("main", path))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    pingap.signal(Signal::SIGHUP);
    assert!(
        tokio::task::block_in_place(|| pingap
            .output
            .wait_for("configuration applied", Duration::from_secs(20)))
        .is_some(),
        "{}",
        pingap.output.text()
    );

    let wanted: BTreeSet<String> = dashboard
        .expressions
        .iter()
        .flat_map(|expr| metric_names(expr))
        .chain(dashboard.variable_metrics.iter().cloned())
        .collect();
    let text = scrape_until(&pingap.metrics_url(), &wanted).await;
    let metrics = exported(&text);
    let missing: Vec<_> = wanted
        .iter()
        .filter(|name| !metrics.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");

    // Labels: each expression's, among its metrics' labels (or added by Prometheus).
    for expr in &dashboard.expressions {
        let available: BTreeSet<&str> = metric_names(expr)
            .iter()
            .flat_map(|name| metrics[name].iter().map(String::as_str))
            .chain(["instance", "job"])
            .collect();
        let unknown: Vec<_> = label_names(expr)
            .into_iter()
            .filter(|label| !available.contains(label.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{expr}: no label {unknown:?} in\n{text}"
        );
    }

    // Every expression parses: promtool checks them as recording rules.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("dashboard.rules.yml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, expr) in dashboard.expressions.iter().enumerate() {
        text.push_str(&format!(
            "      - record: dashboard:expr_{index}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    std::fs::write(&rules, text).unwrap();
    let (status, output) = run(
        "promtool",
        &[Path::new("check"), Path::new("rules"), &rules],
    );
    assert!(status.success(), "{output}");
}

#[test]
fn the_images_and_the_compose_stacks_configurations_check() {
    let image = std::fs::read_to_string(docker_file("pingap.toml")).unwrap();
    let (status, output) = common::check_config(&image);
    assert!(status.success(), "{output}");

    // The stack's backends are compose services; here their names do not resolve.
    let mut stack = std::fs::read_to_string(docker_file("compose.toml")).unwrap();
    for backend in ["whoami1", "whoami2", "whoami3"] {
        assert!(stack.contains(&format!("\"{backend}:80\"")), "{stack}");
        stack = stack.replace(&format!("\"{backend}:80\""), "\"127.0.0.1:80\"");
    }
    let (status, output) = common::check_config(&stack);
    assert!(status.success(), "{output}");
}
