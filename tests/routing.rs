//! Routing through the binary: host kinds, path kinds, methods, header and query conditions,
//! priority, regex rewrites with captures, variables, and `pingap explain`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::backend::Echo;
use common::{Backend, Pingap, check_config, client, command, run_to_exit, send};

/// Every location proxies to `backend` and tells it its own name in `X-Location`.
fn config(backend: &Backend) -> String {
    let tag = "headers_set = ['X-Location: $location']";
    format!(
        r#"
[upstreams.echo]
addrs = ["{addr}"]

[locations.exact_host]
host = "Exact.Example.com"
upstream = "echo"
{tag}

[locations.wildcard]
host = "*.example.com"
upstream = "echo"
{tag}

[locations.tenant]
host = '~^(?<tenant>[a-z]+)\.tenants\.test$'
path = '~^/users/(?<id>\d+)$'
upstream = "echo"
rewrite = '^/users/(\d+)$ /v2/$tenant/users/$1'
headers_set = ["X-Location: $location", "X-Tenant: $tenant", "X-Id: $id"]

[locations.exact_path]
host = "paths.test"
path = "=/health"
upstream = "echo"
{tag}

[locations.regex_path]
host = "paths.test"
path = '~^/items/\d+$'
upstream = "echo"
{tag}

[locations.prefix]
host = "paths.test"
path = "/items"
upstream = "echo"
{tag}

[locations.writes]
host = "methods.test"
methods = ["POST", "PUT"]
upstream = "echo"
{tag}

[locations.canary]
host = "cond.test"
headers = ["X-Env: canary"]
upstream = "echo"
{tag}

[locations.beta]
host = "cond.test"
query = ["beta"]
upstream = "echo"
{tag}

[locations.versioned]
host = "cond.test"
headers = ['X-Ver: ~^2\.']
query = ["lang=en"]
upstream = "echo"
{tag}

[locations.stable]
host = "cond.test"
upstream = "echo"
{tag}

[locations.computed_first]
host = "prio.test"
path = "=/x"
upstream = "echo"
{tag}

[locations.explicit_first]
host = "prio.test"
priority = 10
upstream = "echo"
{tag}

[locations.vars]
host = "vars.test"
upstream = "echo"
headers_set = ["X-Location: $location", "X-Info: $scheme $method $uri $arg_q $cookie_c $http_x_in $remote_addr $host"]
response_headers_set = ["X-Served-By: $location"]

[servers.main]
addr = "127.0.0.1:0"
locations = ["exact_host", "wildcard", "tenant", "exact_path", "regex_path", "prefix", "writes",
             "canary", "beta", "versioned", "stable", "computed_first", "explicit_first", "vars"]
"#,
        addr = backend.addr
    )
}

/// Sends a request and returns the location that served it (`None` for a 404).
async fn served_by(
    pingap: &Pingap,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<String> {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    let response = send(method, &pingap.url("main", path), &all).await;
    if response.status() == 404 {
        return None;
    }
    assert_eq!(response.status(), 200, "{method} {host}{path}");
    let echo: Echo = response.json().await.unwrap();
    echo.header("x-location").map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_documented_location() {
    let backend = Backend::start("echo").await;
    let pingap = Pingap::start(&config(&backend));
    /// Method, host, path, headers, and the location expected (`None`: 404).
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
    );
    let cases: &[Case] = &[
        // Hosts: exact (case and port ignored) beats wildcard; the apex is not a subdomain.
        ("GET", "exact.example.com", "/", &[], Some("exact_host")),
        (
            "GET",
            "EXACT.example.com:8443",
            "/",
            &[],
            Some("exact_host"),
        ),
        ("GET", "shop.example.com", "/", &[], Some("wildcard")),
        ("GET", "a.b.example.com", "/", &[], Some("wildcard")),
        ("GET", "example.com", "/", &[], None),
        ("GET", "acme.tenants.test", "/users/42", &[], Some("tenant")),
        ("GET", "acme.tenants.test", "/users/x", &[], None),
        ("GET", "unknown.test", "/", &[], None),
        // Paths: exact, then regex, then prefix.
        ("GET", "paths.test", "/health", &[], Some("exact_path")),
        ("GET", "paths.test", "/health/deep", &[], None),
        ("GET", "paths.test", "/items/12", &[], Some("regex_path")),
        ("GET", "paths.test", "/items/12/parts", &[], Some("prefix")),
        ("GET", "paths.test", "/items", &[], Some("prefix")),
        // Methods: no match is a 404, not a 405.
        ("POST", "methods.test", "/", &[], Some("writes")),
        ("PUT", "methods.test", "/", &[], Some("writes")),
        ("GET", "methods.test", "/", &[], None),
        // Header and query conditions, all of which must hold.
        (
            "GET",
            "cond.test",
            "/",
            &[("x-env", "canary")],
            Some("canary"),
        ),
        ("GET", "cond.test", "/?beta", &[], Some("beta")),
        (
            "GET",
            "cond.test",
            "/?lang=en",
            &[("x-ver", "2.4")],
            Some("versioned"),
        ),
        (
            "GET",
            "cond.test",
            "/?lang=fr",
            &[("x-ver", "2.4")],
            Some("stable"),
        ),
        (
            "GET",
            "cond.test",
            "/?lang=en",
            &[("x-ver", "12.0")],
            Some("stable"),
        ),
        (
            "GET",
            "cond.test",
            "/",
            &[("x-env", "stable")],
            Some("stable"),
        ),
        // An explicit priority beats the computed order (exact path first).
        ("GET", "prio.test", "/x", &[], Some("explicit_first")),
    ];
    for (method, host, path, headers, expected) in cases {
        let got = served_by(&pingap, method, host, path, headers).await;
        assert_eq!(
            got.as_deref(),
            *expected,
            "{method} {host}{path} {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_rewrites_use_host_and_path_captures() {
    let backend = Backend::start("echo").await;
    let pingap = Pingap::start(&config(&backend));
    let echo: Echo = client()
        .get(pingap.url("main", "/users/42?tab=posts"))
        .header("host", "acme.tenants.test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo.path, "/v2/acme/users/42");
    assert_eq!(echo.query.as_deref(), Some("tab=posts"));
    assert_eq!(echo.header("x-tenant"), Some("acme"));
    assert_eq!(echo.header("x-id"), Some("42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_fill_header_values() {
    let backend = Backend::start("echo").await;
    let pingap = Pingap::start(&config(&backend));
    let response = client()
        .post(pingap.url("main", "/page?q=find%20me"))
        .header("host", "vars.test")
        .header("cookie", "a=1; c=crumb")
        .header("x-in", "from-client")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-served-by"], "vars");
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(
        echo.header("x-info"),
        Some("http POST /page find me crumb from-client 127.0.0.1 vars.test")
    );
}

#[test]
fn check_warns_about_locations_that_can_never_match() {
    let (status, output) = check_config(
        "[upstreams.u]\naddrs = ['127.0.0.1:9']\n\
         [locations.all]\nupstream = 'u'\nhost = 'a.test'\n\
         [locations.never]\nupstream = 'u'\nhost = 'a.test'\npath = '/api'\npriority = -1\n\
         [servers.s]\naddr = '127.0.0.1:0'\nlocations = ['all', 'never']\n",
    );
    assert!(status.success(), "{output}");
    assert!(
        output.contains(
            "warning: locations.never can never match on servers.s: locations.all is tried first"
        ),
        "{output}"
    );
}

fn explain(config: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pingap.toml");
    std::fs::write(&path, config).unwrap();
    let mut explain = command();
    explain.arg("explain").arg("-c").arg(&path).args(args);
    let (status, output) = run_to_exit(explain);
    (status.code(), output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_route_and_why_others_did_not_match() {
    let backend = Backend::start("echo").await;
    let config = config(&backend);
    let (code, output) = explain(
        &config,
        &[
            "POST",
            "http://acme.tenants.test/users/7?x=1",
            "-H",
            "X-Extra: yes",
            "--server",
            "main",
        ],
    );
    assert_eq!(code, Some(0), "{output}");
    for expected in [
        "request   POST http://acme.tenants.test/users/7?x=1",
        "server    main (http://127.0.0.1:0)",
        "1. wildcard        no: host does not match *.example.com",
        "2. tenant          MATCH",
        "location  tenant",
        "rewrite   /users/7?x=1 -> /v2/acme/users/7?x=1",
        &format!("upstream  echo: {}", backend.addr),
        "sent      POST /v2/acme/users/7?x=1",
        "x-tenant: acme",
        "x-id: 7",
        "x-extra: yes",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }

    let (code, output) = explain(
        &config,
        &[
            "http://cond.test/?lang=en",
            "--server",
            "main",
            "-H",
            "X-Ver: 1.0",
        ],
    );
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("no: header x-env is missing"), "{output}");
    assert!(
        output.contains("no: query parameter beta is missing"),
        "{output}"
    );
    assert!(
        output.contains("no: header x-ver does not match ~^2\\."),
        "{output}"
    );
    assert!(output.contains("location  stable"), "{output}");

    let (code, output) = explain(
        &config,
        &["http://paths.test/health/deep", "--server", "main"],
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("no: path does not match =/health"),
        "{output}"
    );
    assert!(
        output.contains("no: path does not match /items"),
        "{output}"
    );
    assert!(
        output.contains("host does not match exact.example.com"),
        "{output}"
    );
    assert!(
        output.contains("result    no location matched: the request gets 404"),
        "{output}"
    );
}
