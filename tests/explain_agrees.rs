//! `pingap explain` against the live proxy: for a table of requests, what explain says the proxy
//! does (the location, the plugin's answer, the request sent upstream with its headers, the 404
//! of an unrouted request) is what the running binary does with the same request, from the same
//! client address, under the same config file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::backend::Echo;
use common::{Backend, Pingap, client, command, run_to_exit};

/// One config for every row: a prefix rewrite, a regex rewrite with host and path captures,
/// header rules with variables, a `request_id` plugin, plugins that answer themselves
/// (`basic_auth`, `ip_restriction`, `mock`), a location without an upstream, and trusted
/// proxies. Every location tells the backend (and the client) its name.
fn config(backend: &Backend) -> String {
    format!(
        r#"
[basic]
trusted_proxies = ["127.0.0.1"]

[upstreams.echo]
addrs = ["{addr}"]

[locations.api]
path = "/api"
rewrite = "/"
upstream = "echo"
headers_remove = ["X-Secret"]
headers_set = ["X-Location: $location", "X-Host: $host"]
headers_add = ["X-Added: $method $uri $arg_page", "X-Keep: added"]
response_headers_set = ["X-Served-By: $location"]

[locations.tenant]
host = '~^(?<tenant>[a-z]+)\.tenants\.test$'
path = '~^/users/(?<id>\d+)$'
rewrite = '^/users/(\d+)$ /v2/$tenant/users/$1'
upstream = "echo"
headers_set = ["X-Location: $location", "X-Tenant: $tenant", "X-Id: $id", "X-Client: $remote_addr"]
response_headers_set = ["X-Served-By: $location"]

[locations.traced]
path = "/traced"
plugins = ["rid"]
upstream = "echo"
headers_set = ["X-Location: $location", "X-Rid: $request_id"]
response_headers_set = ["X-Served-By: $location"]

[locations.staff]
path = "/staff"
plugins = ["staff"]
upstream = "echo"
headers_set = ["X-Location: $location"]
response_headers_set = ["X-Served-By: $location"]

[locations.office]
path = "/office"
plugins = ["no_test_net"]
upstream = "echo"
headers_set = ["X-Location: $location", "X-Who: $remote_addr"]
response_headers_set = ["X-Served-By: $location"]

[locations.health]
path = "=/health"
plugins = ["pong"]
response_headers_set = ["X-Served-By: $location"]

[locations.maintenance]
path = "/maintenance"
response_headers_set = ["X-Served-By: $location"]

[plugins.rid]
type = "request_id"

[plugins.staff]
type = "basic_auth"
users = ["alice:open-sesame"]
allow_plaintext = true
user_header = "X-User"
hide_credentials = true

[plugins.no_test_net]
type = "ip_restriction"
deny = ["203.0.113.0/24"]

[plugins.pong]
type = "mock"
body = "pong"

[servers.main]
addr = "127.0.0.1:0"
locations = ["api", "tenant", "traced", "staff", "office", "health", "maintenance"]
"#,
        addr = backend.addr
    )
}

/// What a row is meant to exercise; explain must say so, and the live proxy must agree.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Proxied through this location.
    Proxied(&'static str),
    /// Answered by pingap or a plugin of this location with this status, nothing proxied.
    Answered(u16, &'static str),
    /// No location matches: 404.
    Unrouted,
}

struct Row {
    what: &'static str,
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn row(
    what: &'static str,
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &[(&'static str, &str)],
    expect: Expect,
) -> Row {
    Row {
        what,
        method,
        host,
        path,
        headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        expect,
    }
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn table() -> Vec<Row> {
    let alice = basic("alice", "open-sesame");
    let wrong = basic("alice", "guess");
    vec![
        row(
            "prefix rewrite, header rules remove/set/add",
            "GET",
            "api.test",
            "/api/users?page=2",
            &[("X-Secret", "s3cret"), ("X-Keep", "client")],
            Expect::Proxied("api"),
        ),
        row(
            "prefix rewrite of the bare prefix",
            "POST",
            "API.test:8080",
            "/api?x=1",
            &[],
            Expect::Proxied("api"),
        ),
        row(
            "regex rewrite with host and path captures",
            "GET",
            "acme.tenants.test",
            "/users/42?tab=posts",
            &[],
            Expect::Proxied("tenant"),
        ),
        row(
            "regex rewrite, another tenant and method",
            "PUT",
            "beta.tenants.test",
            "/users/7",
            &[("X-Extra", "kept")],
            Expect::Proxied("tenant"),
        ),
        row(
            "request_id plugin changes the upstream request",
            "GET",
            "app.test",
            "/traced/a?b=c",
            &[],
            Expect::Proxied("traced"),
        ),
        row(
            "basic_auth lets alice through, sets X-User, hides credentials",
            "GET",
            "app.test",
            "/staff/report",
            &[("Authorization", &alice), ("X-User", "mallory")],
            Expect::Proxied("staff"),
        ),
        row(
            "basic_auth without credentials",
            "GET",
            "app.test",
            "/staff/report",
            &[],
            Expect::Answered(401, "staff"),
        ),
        row(
            "basic_auth with a wrong password",
            "DELETE",
            "app.test",
            "/staff/report",
            &[("Authorization", &wrong)],
            Expect::Answered(401, "staff"),
        ),
        row(
            "trusted proxy: X-Forwarded-For, X-Real-IP, kept X-Forwarded-Proto/-Host",
            "GET",
            "app.test",
            "/api/whoami",
            &[
                ("X-Forwarded-For", "198.51.100.9, 10.0.0.1"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "public.example"),
            ],
            Expect::Proxied("api"),
        ),
        row(
            "ip_restriction refuses the forwarded client",
            "GET",
            "app.test",
            "/office",
            &[("X-Forwarded-For", "203.0.113.7")],
            Expect::Answered(403, "office"),
        ),
        row(
            "ip_restriction admits another forwarded client",
            "GET",
            "app.test",
            "/office/desk",
            &[("X-Forwarded-For", "198.51.100.20")],
            Expect::Proxied("office"),
        ),
        row(
            "mock plugin answers",
            "GET",
            "app.test",
            "/health",
            &[],
            Expect::Answered(200, "health"),
        ),
        row(
            "location without an upstream",
            "GET",
            "app.test",
            "/maintenance/now",
            &[],
            Expect::Answered(503, "maintenance"),
        ),
        row(
            "unrouted path",
            "GET",
            "nowhere.test",
            "/nothing",
            &[],
            Expect::Unrouted,
        ),
        row(
            "unrouted: tenant path on a host that is no tenant",
            "GET",
            "other.test",
            "/users/42",
            &[],
            Expect::Unrouted,
        ),
    ]
}

/// Headers the client sends on every row (reqwest would add `accept: */*` itself; explain is
/// told it too).
const CLIENT_HEADERS: &[(&str, &str)] = &[("accept", "*/*"), ("user-agent", "explain-agrees")];

/// Headers whose value is per request: compared for presence only.
const PER_REQUEST: &[&str] = &["x-request-id", "x-rid"];

/// Headers the transport adds to (or keeps on) the request on the wire that explain does not
/// model.
const TRANSPORT: &[&str] = &["content-length", "connection", "transfer-encoding", "te"];

/// A header value as any HTTP recipient reads it: without the spaces and tabs around it (RFC
/// 9112 section 5.1: they are not part of the field value). explain prints the bytes pingap
/// writes, and a header rule whose last variable is empty (`$arg_page` without `page`) writes
/// `x-added: GET /api/whoami \r\n`; the backend, as every parser must, reads `GET /api/whoami`.
fn field_value(printed: &str) -> String {
    printed.trim_matches([' ', '\t']).to_string()
}

/// What explain printed, parsed.
#[derive(Debug, Default)]
struct Explained {
    code: Option<i32>,
    text: String,
    location: Option<String>,
    /// `METHOD PATH?QUERY` of the `sent` line.
    sent: Option<(String, String)>,
    /// The headers listed under `sent`, name to values in order.
    headers: BTreeMap<String, Vec<String>>,
    /// The status explain says the client gets when nothing is proxied.
    answer: Option<u16>,
}

fn explain(pingap: &Pingap, row: &Row) -> Explained {
    let mut explain = command();
    explain
        .arg("explain")
        .arg("-c")
        .arg(pingap.config_path())
        .arg(row.method)
        .arg(format!("http://{}{}", row.host, row.path))
        .args(["--server", "main", "--client", "127.0.0.1"]);
    for (name, value) in CLIENT_HEADERS {
        explain.arg("-H").arg(format!("{name}: {value}"));
    }
    for (name, value) in &row.headers {
        explain.arg("-H").arg(format!("{name}: {value}"));
    }
    let (status, text) = tokio::task::block_in_place(|| run_to_exit(explain));
    parse_explain(status.code(), text)
}

fn parse_explain(code: Option<i32>, text: String) -> Explained {
    let mut explained = Explained {
        code,
        ..Explained::default()
    };
    let mut in_sent = false;
    for line in text.lines() {
        if in_sent {
            if let Some(header) = line.strip_prefix("          ") {
                let (name, value) = header
                    .split_once(": ")
                    .or_else(|| header.strip_suffix(':').map(|name| (name, "")))
                    .unwrap_or_else(|| panic!("a header line {line:?} in:\n{text}"));
                explained
                    .headers
                    .entry(name.to_string())
                    .or_default()
                    .push(value.to_string());
                continue;
            }
            in_sent = false;
        }
        if let Some(name) = line.strip_prefix("location  ") {
            explained.location = Some(name.trim().to_string());
        } else if let Some(sent) = line.strip_prefix("sent      ") {
            let (method, target) = sent.split_once(' ').expect("sent METHOD TARGET");
            explained.sent = Some((method.to_string(), target.to_string()));
            in_sent = true;
        } else if let Some(result) = line
            .strip_prefix("result    a plugin answers ")
            .or_else(|| line.strip_prefix("result    pingap answers "))
        {
            explained.answer = result.get(..3).and_then(|s| s.parse().ok());
        } else if line.starts_with("result    no location matched: the request gets 404") {
            explained.answer = Some(404);
        } else if line
            .starts_with("upstream  (none: the plugins did not answer, so the request gets 503)")
        {
            explained.answer = Some(503);
        }
    }
    explained.text = text;
    explained
}

/// The live request's status, its `X-Served-By` response header and, when the backend answered,
/// what it received.
struct Live {
    status: u16,
    served_by: Option<String>,
    echo: Option<Echo>,
    body: String,
}

async fn live(pingap: &Pingap, row: &Row) -> Live {
    let mut request = client()
        .request(row.method.parse().unwrap(), pingap.url("main", row.path))
        .header("host", row.host);
    for (name, value) in CLIENT_HEADERS {
        request = request.header(*name, *value);
    }
    for (name, value) in &row.headers {
        request = request.header(*name, value.as_str());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let served_by = response
        .headers()
        .get("x-served-by")
        .map(|v| v.to_str().unwrap().to_string());
    let from_echo = response
        .headers()
        .get("server")
        .is_some_and(|v| v == "echo");
    let body = response.text().await.unwrap();
    let echo = from_echo.then(|| serde_json::from_str(&body).unwrap());
    Live {
        status,
        served_by,
        echo,
        body,
    }
}

/// Records a problem when `left != right`.
fn same<T: PartialEq + std::fmt::Debug>(problems: &mut Vec<String>, what: &str, left: T, right: T) {
    if left != right {
        problems.push(format!("{what}: {left:?} != {right:?}"));
    }
}

/// Checks explain against what the row means to exercise, so that the table cannot pass
/// vacuously (e.g. with every row unrouted).
fn check_expectation(row: &Row, explained: &Explained) -> Vec<String> {
    let mut problems = Vec::new();
    let p = &mut problems;
    let location = explained.location.as_deref();
    match row.expect {
        Expect::Proxied(expected) => {
            same(p, "explain exit code", explained.code, Some(0));
            same(p, "explain location", location, Some(expected));
            same(p, "explain has a sent line", explained.sent.is_some(), true);
            same(p, "explain answer", explained.answer, None);
        }
        Expect::Answered(status, expected) => {
            same(p, "explain exit code", explained.code, Some(0));
            same(p, "explain location", location, Some(expected));
            same(p, "explain answer", explained.answer, Some(status));
            same(
                p,
                "explain has a sent line",
                explained.sent.is_some(),
                false,
            );
        }
        Expect::Unrouted => {
            same(p, "explain exit code", explained.code, Some(2));
            same(p, "explain answer", explained.answer, Some(404));
            same(p, "explain location", location, None);
        }
    }
    problems
}

/// Checks that the live proxy did what explain said.
fn check_agreement(explained: &Explained, live: &Live, hits: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let p = &mut problems;
    let location = explained.location.as_deref();

    let Some((method, target)) = &explained.sent else {
        // Not proxied: the live client gets the status explain names, from the location it
        // names, and nothing reaches the backend.
        same(
            p,
            "live status vs explain",
            Some(live.status),
            explained.answer,
        );
        same(
            p,
            "live X-Served-By vs explain location",
            live.served_by.as_deref(),
            location,
        );
        same(p, "the backend answered", live.echo.is_some(), false);
        same(p, "backend hits", hits, 0);
        return problems;
    };

    same(p, "live status", live.status, 200);
    same(p, "backend hits", hits, 1);
    let Some(echo) = &live.echo else {
        p.push("the backend did not answer".to_string());
        return problems;
    };
    same(
        p,
        "live X-Served-By vs explain location",
        live.served_by.as_deref(),
        location,
    );
    same(
        p,
        "backend X-Location vs explain location",
        echo.header("x-location"),
        location,
    );
    same(p, "method received vs sent", &echo.method, method);
    let received = match &echo.query {
        Some(query) => format!("{}?{query}", echo.path),
        None => echo.path.clone(),
    };
    same(p, "path?query received vs sent", &received, target);

    for (name, values) in &explained.headers {
        let got = echo.headers.get(name);
        if PER_REQUEST.contains(&name.as_str()) {
            same(
                p,
                &format!("number of {name} values received vs sent (values are per request)"),
                got.map(Vec::len),
                Some(values.len()),
            );
        } else {
            let values: Vec<String> = values.iter().map(|v| field_value(v)).collect();
            same(
                p,
                &format!("header {name} received vs sent"),
                got,
                Some(&values),
            );
        }
    }
    for (name, values) in &echo.headers {
        if !(explained.headers.contains_key(name) || TRANSPORT.contains(&name.as_str())) {
            p.push(format!(
                "the backend received {name}: {values:?}, which explain does not list"
            ));
        }
    }
    // A per-request value is at least the same within each request.
    if explained.headers.contains_key("x-rid") {
        same(
            p,
            "explain: $request_id is the plugin's id",
            explained.headers.get("x-rid"),
            explained.headers.get("x-request-id"),
        );
        same(
            p,
            "live: $request_id is the plugin's id",
            echo.header("x-rid"),
            echo.header("x-request-id"),
        );
    }
    problems
}

/// Both outputs of a row, for a failure message.
fn both(row: &Row, explained: &Explained, live: &Live, hits: usize) -> String {
    format!(
        "--- explain {} http://{}{} {:?} (exit {:?}) ---\n{}--- live: status {}, \
         X-Served-By {:?}, backend hits {hits} ---\n{}",
        row.method,
        row.host,
        row.path,
        row.headers,
        explained.code,
        explained.text,
        live.status,
        live.served_by,
        match &live.echo {
            Some(echo) => serde_json::to_string_pretty(echo).unwrap(),
            None => live.body.clone(),
        }
    )
}

/// Runs every row through explain and the live proxy (one after the other, so that the
/// backend's hit count belongs to the row) and returns the rows that disagree, with both
/// outputs.
async fn disagreements(rows: &[Row]) -> Vec<String> {
    let backend = Backend::start("echo").await;
    let pingap = Pingap::start(&config(&backend));
    let mut failures = Vec::new();
    for row in rows {
        let explained = explain(&pingap, row);
        let before = backend.hits();
        let live = live(&pingap, row).await;
        let hits = backend.hits() - before;
        let mut problems = check_expectation(row, &explained);
        problems.extend(check_agreement(&explained, &live, hits));
        if !problems.is_empty() {
            failures.push(format!(
                "row {:?}:\n  {}\n{}",
                row.what,
                problems.join("\n  "),
                both(row, &explained, &live, hits)
            ));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_the_live_proxy_agree_on_every_row() {
    let rows = table();
    assert!(rows.len() >= 8);
    let failures = disagreements(&rows).await;
    assert!(
        failures.is_empty(),
        "{} of {} rows disagree:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

/// Headers the client repeats: explain's `-H` keeps every line as the proxy forwards them, and
/// every `X-Forwarded-For` line reaches the backend (joined, then the peer), the same lines the
/// client address was taken from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_the_live_proxy_agree_on_repeated_headers() {
    let rows = vec![
        row(
            "a repeated header",
            "GET",
            "app.test",
            "/api/twice",
            &[("X-Twice", "one"), ("X-Twice", "two")],
            Expect::Proxied("api"),
        ),
        row(
            "two X-Forwarded-For lines from a trusted proxy",
            "GET",
            "app.test",
            "/api/hops",
            &[
                ("X-Forwarded-For", "198.51.100.9"),
                ("X-Forwarded-For", "198.51.100.10"),
            ],
            Expect::Proxied("api"),
        ),
    ];
    let failures = disagreements(&rows).await;
    assert!(
        failures.is_empty(),
        "{} of {} rows disagree:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}
