//! Access logs through the binary: every variable of a custom format for one known request,
//! the `combined` and `json` formats (JSON lines parse, values escaped), an unknown variable as a
//! config error, rotation by size with gzip and `access_log_keep`, reopening on SIGUSR1 after a
//! rename, and lines dropped (and counted) when the file cannot be written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Backend, Pingap, RefusingPort, check_config, client, client_builder, eventually};

/// Every variable, as `name=value` fields separated by tabs (a tab inside a value is escaped).
const EVERY_VARIABLE: &[&str] = &[
    "remote_addr",
    "client_ip",
    "realip_remote_addr",
    "remote_port",
    "remote_user",
    "request_id",
    "time_local",
    "time_iso8601",
    "msec",
    "request",
    "request_method",
    "scheme",
    "host",
    "request_uri",
    "uri",
    "args",
    "upstream_uri",
    "server_protocol",
    "status",
    "body_bytes_sent",
    "bytes_sent",
    "request_length",
    "request_time",
    "http_x_custom",
    "http_user_agent",
    "sent_http_content_type",
    "sent_http_x_request_id",
    "sent_http_x_cache_status",
    "cookie_session",
    "arg_q",
    "upstream_name",
    "upstream_addr",
    "upstream_status",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_response_time",
    "location",
    "server_name",
    "server_addr",
    "server_port",
    "connection",
    "connection_requests",
    "tls_protocol",
    "tls_cipher",
    "cache_status",
    "error",
    "pid",
];

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/certs")
}

/// Reads `path` until it has `count` lines (the writer thread writes shortly after the
/// response), or panics with what it has after 10 s.
async fn lines(path: &Path, count: usize) -> Vec<String> {
    let mut text = String::new();
    let done = eventually(Duration::from_secs(10), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().count() >= count
    })
    .await;
    assert!(done, "{} has not {count} lines:\n{text}", path.display());
    text.lines().map(str::to_string).collect()
}

fn fields(line: &str) -> HashMap<String, String> {
    line.split('\t')
        .map(|field| {
            let (name, value) = field.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_variable_for_one_known_request() {
    let backend = Backend::start("b").await;
    let dead = RefusingPort::new();
    let format = EVERY_VARIABLE
        .iter()
        .map(|name| format!("{name}=${name}"))
        .collect::<Vec<_>>()
        .join("\t");
    let config = format!(
        "[upstreams.api]\naddrs = ['{}']\n\
         [upstreams.dead]\naddrs = ['{}']\n\
         [plugins.rid]\ntype = 'request_id'\n\
         [plugins.cache]\ntype = 'cache'\n\
         [locations.api]\nupstream = 'api'\npath = '/api'\nrewrite = '^/api/(.*)$ /v2/$1'\n\
         plugins = ['rid', 'cache']\n\
         [locations.dead]\nupstream = 'dead'\npath = '/dead'\n\
         [servers.secure]\naddr = '127.0.0.1:0'\nlocations = ['api', 'dead']\n\
         tls_cert = '{}'\ntls_key = '{}'\naccess_log = 'access.log'\n\
         access_log_format = '''{format}'''\n",
        backend.addr,
        dead.addr,
        certs().join("example.crt").display(),
        certs().join("example.key").display(),
    );
    let pingap = Pingap::start(&config);
    let addr = pingap.addr("secure");
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(certs().join("example-ca.crt")).unwrap())
            .unwrap();
    let client = client_builder()
        .add_root_certificate(ca)
        .resolve("api.example.com", addr)
        .http1_only()
        .build()
        .unwrap();
    let before = now_secs();
    let mut answers = Vec::new();
    for path in ["/api/items?q=42&x=%20y", "/dead/x"] {
        let response = client
            .post(format!("https://api.example.com:{}{path}", addr.port()))
            .header("X-Custom", "custom \"quoted\" value")
            .header("User-Agent", "pingap-test/1.0")
            .header("Cookie", "session=abc123; other=1")
            .basic_auth("alice", Some("secret"))
            .body("hello")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        answers.push((status, headers, body));
    }
    let after = now_secs();
    let logged = lines(&pingap.dir().join("access.log"), 2).await;
    let (first, second) = (fields(&logged[0]), fields(&logged[1]));
    assert_eq!(first.len(), EVERY_VARIABLE.len(), "{first:?}");

    let (status, headers, body) = &answers[0];
    assert_eq!(*status, 200);
    let header = |name: &str| headers[name].to_str().unwrap().to_string();
    let expected: &[(&str, String)] = &[
        ("remote_addr", "127.0.0.1".into()),
        ("client_ip", "127.0.0.1".into()),
        ("realip_remote_addr", "127.0.0.1".into()),
        ("remote_user", "alice".into()),
        ("request_id", header("x-request-id")),
        ("request", "POST /api/items?q=42&x=%20y HTTP/1.1".into()),
        ("request_method", "POST".into()),
        ("scheme", "https".into()),
        ("host", "api.example.com".into()),
        ("request_uri", "/api/items?q=42&x=%20y".into()),
        ("uri", "/api/items".into()),
        ("args", "q=42&x=%20y".into()),
        ("upstream_uri", "/v2/items?q=42&x=%20y".into()),
        ("server_protocol", "HTTP/1.1".into()),
        ("status", "200".into()),
        ("body_bytes_sent", body.len().to_string()),
        ("http_x_custom", "custom \\x22quoted\\x22 value".into()),
        ("http_user_agent", "pingap-test/1.0".into()),
        ("sent_http_content_type", header("content-type")),
        ("sent_http_x_request_id", header("x-request-id")),
        ("sent_http_x_cache_status", header("x-cache-status")),
        ("cache_status", header("x-cache-status")),
        ("cookie_session", "abc123".into()),
        ("arg_q", "42".into()),
        ("upstream_name", "api".into()),
        ("upstream_addr", backend.addr.to_string()),
        ("upstream_status", "200".into()),
        ("location", "api".into()),
        ("server_name", "secure".into()),
        ("server_addr", "127.0.0.1".into()),
        ("server_port", addr.port().to_string()),
        ("connection_requests", "1".into()),
        ("tls_protocol", "TLSv1_3".into()),
        ("error", "-".into()),
        ("pid", pingap.pid().to_string()),
    ];
    for (name, value) in expected {
        assert_eq!(&first[*name], value, "${name} in {logged:?}");
    }
    // The backend saw the request the log describes.
    assert_eq!(backend.received_bytes(), 5);
    let number = |fields: &HashMap<String, String>, name: &str| -> f64 {
        fields[name]
            .parse()
            .unwrap_or_else(|_| panic!("${name} = {}", fields[name]))
    };
    assert!(number(&first, "remote_port") > 0.0);
    let msec = number(&first, "msec");
    assert!(
        before - 0.001 <= msec && msec <= after + 0.001,
        "{msec} not in {before}..{after}"
    );
    let request_time = number(&first, "request_time");
    assert!(request_time <= after - before + 0.001);
    let (connect, header_time, response_time) = (
        number(&first, "upstream_connect_time"),
        number(&first, "upstream_header_time"),
        number(&first, "upstream_response_time"),
    );
    assert!(
        connect <= header_time && header_time <= response_time && response_time <= request_time
    );
    // Header and body: more than the body alone; the request line, headers and 5 body bytes.
    assert!(number(&first, "bytes_sent") > number(&first, "body_bytes_sent") + 50.0);
    assert!(number(&first, "request_length") > 100.0);
    assert!(
        first["tls_cipher"].starts_with("TLS13_"),
        "{}",
        first["tls_cipher"]
    );
    let local = &first["time_local"];
    assert!(
        chrono_like(local, "dd/Mon/yyyy:hh:mm:ss +zzzz"),
        "$time_local = {local}"
    );
    let iso = &first["time_iso8601"];
    assert!(
        chrono_like(iso, "yyyy-mm-ddThh:mm:ss+zz:zz"),
        "$time_iso8601 = {iso}"
    );

    // The second request, on the same connection, to an upstream that refuses connections.
    assert_eq!(answers[1].0, 502);
    assert_eq!(second["status"], "502");
    assert_eq!(second["connection"], first["connection"]);
    assert_eq!(second["connection_requests"], "2");
    assert_eq!(second["upstream_name"], "dead");
    assert_eq!(second["upstream_addr"], dead.addr.to_string());
    assert_eq!(second["upstream_status"], "-");
    assert_eq!(second["upstream_header_time"], "-");
    assert_eq!(second["request_id"], "-");
    assert_eq!(second["upstream_uri"], "/dead/x");
    assert!(
        second["error"].contains("ConnectRefused"),
        "{}",
        second["error"]
    );
}

/// `dd/Mon/yyyy` shapes: letters in `shape` stand for any alphanumeric character.
fn chrono_like(value: &str, shape: &str) -> bool {
    value.len() == shape.len()
        && value.chars().zip(shape.chars()).all(|(v, s)| {
            if s.is_ascii_alphabetic() && s != 'T' {
                v.is_ascii_alphanumeric()
            } else {
                v == s || (s == '+' && v == '-')
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_and_json_formats() {
    let backend = Backend::start("b").await;
    let config = format!(
        "[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.plain]\naddr = '127.0.0.1:0'\nlocations = ['api']\naccess_log = 'combined.log'\n\
         [servers.json]\naddr = '127.0.0.1:0'\nlocations = ['api']\naccess_log = 'json.log'\n\
         access_log_format = 'json'\n",
        backend.addr
    );
    let pingap = Pingap::start(&config);
    let agent = "agent \"with\" quotes \\ and ünïcode\ttab";
    for server in ["plain", "json"] {
        let response = client()
            .get(pingap.url(server, "/hello?a=1"))
            .header("User-Agent", agent)
            .header("Referer", "http://example.com/from")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let combined = lines(&pingap.dir().join("combined.log"), 1).await;
    let line = &combined[0];
    assert!(line.starts_with("127.0.0.1 - - ["), "combined line: {line}");
    let expected_tail = "] \"GET /hello?a=1 HTTP/1.1\" 200 ";
    assert!(line.contains(expected_tail), "combined line: {line}");
    assert!(
        line.ends_with(
            " \"http://example.com/from\" \"agent \\x22with\\x22 quotes \\x5C and \\xC3\\xBCn\\xC3\\xAFcode\\x09tab\""
        ),
        "combined line: {line}"
    );

    let json = lines(&pingap.dir().join("json.log"), 1).await;
    let value: serde_json::Value = serde_json::from_str(&json[0]).expect("a JSON line");
    assert_eq!(value["user_agent"], agent);
    assert_eq!(value["status"], 200);
    assert_eq!(value["method"], "GET");
    assert_eq!(value["uri"], "/hello?a=1");
    assert_eq!(value["server"], "json");
    assert_eq!(value["upstream_addr"], backend.addr.to_string());
    assert_eq!(value["referer"], "http://example.com/from");
    assert!(value["request_time"].is_f64() || value["request_time"].is_u64());
    assert!(value["request_id"].is_null());
}

#[test]
fn bad_access_log_settings_are_config_errors() {
    let base = "[upstreams.api]\naddrs = ['127.0.0.1:1']\n[locations.api]\nupstream = 'api'\n\
                [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n";
    let cases = [
        (
            "access_log = 'a.log'\naccess_log_format = '$remote_addr $nope'\n",
            "servers.main.access_log_format: unknown variable $nope",
        ),
        (
            "access_log = 'a.log'\naccess_log_format = 'no variables'\n",
            "servers.main.access_log_format: \"no variables\" is neither combined, common nor json",
        ),
        (
            "access_log = 'a.log'\naccess_log_rotate = 'weekly'\n",
            "servers.main.access_log_rotate: \"weekly\" is neither daily, hourly nor a size",
        ),
        (
            "access_log = 'stdout'\naccess_log_rotate = 'daily'\n",
            "servers.main.access_log_rotate: standard output cannot be rotated",
        ),
        (
            "access_log = 'a.log'\naccess_log_keep = 3\n",
            "servers.main.access_log_keep: has no effect without access_log_rotate",
        ),
        (
            "access_log_format = 'json'\n",
            "servers.main.access_log_format: has no effect without access_log",
        ),
        (
            "access_log = '/nonexistent-dir/a.log'\n",
            "servers.main.access_log: cannot open /nonexistent-dir/a.log",
        ),
    ];
    for (keys, message) in cases {
        let (status, output) = check_config(&format!("{base}{keys}"));
        assert!(!status.success(), "{keys} was accepted");
        assert!(output.contains(message), "{keys}: {output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_by_size_gzips_and_keeps_the_newest() {
    let backend = Backend::start("b").await;
    let config = format!(
        "[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\naccess_log = 'logs/access.log'\n\
         access_log_format = '$request_uri $status'\naccess_log_rotate = '200B'\n\
         access_log_keep = 2\naccess_log_gzip = true\n",
        backend.addr
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("pingap.toml"), &config).unwrap();
    let pingap = Pingap::start_path(&dir.path().join("pingap.toml"));
    let logs = dir.path().join("logs");
    // Each line is "/line-NN 200\n", 13 bytes: a file holds 15 lines; 50 lines make three
    // rotated files (the oldest deleted) and the current one.
    let client = client();
    for n in 0..50 {
        let response = client
            .get(pingap.url("main", &format!("/line-{n:02}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let mut rotated: Vec<PathBuf> = Vec::new();
    let settled = eventually(Duration::from_secs(10), || {
        let current = std::fs::read_to_string(logs.join("access.log")).unwrap_or_default();
        rotated = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "access.log")
            .collect();
        current.contains("/line-49 200")
            && rotated.len() == 2
            && rotated
                .iter()
                .all(|p| p.extension().is_some_and(|e| e == "gz"))
    })
    .await;
    assert!(settled, "rotated files: {rotated:?}");
    let mut files: Vec<String> = rotated
        .iter()
        .map(|file| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            assert!(
                text.len() <= 200,
                "{} holds {} bytes",
                file.display(),
                text.len()
            );
            assert!(text.ends_with('\n'));
            text
        })
        .collect();
    files.sort();
    files.push(std::fs::read_to_string(logs.join("access.log")).unwrap());
    // The newest lines are all there, in order, none twice; the oldest file was deleted.
    let numbers: Vec<u32> = files
        .concat()
        .lines()
        .map(|l| l.trim_start_matches("/line-")[..2].parse().unwrap())
        .collect();
    assert_eq!(numbers, (15..50).collect::<Vec<_>>());
    drop(pingap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_after_a_rename() {
    let backend = Backend::start("b").await;
    let config = format!(
        "[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\naccess_log = 'access.log'\n\
         access_log_format = '$request_uri'\n",
        backend.addr
    );
    let pingap = Pingap::start(&config);
    let log = pingap.dir().join("access.log");
    let moved = pingap.dir().join("access.log.1");
    client()
        .get(pingap.url("main", "/before"))
        .send()
        .await
        .unwrap();
    lines(&log, 1).await;
    std::fs::rename(&log, &moved).unwrap();
    // Until told, the writer keeps writing to the renamed file (as logrotate expects).
    client()
        .get(pingap.url("main", "/renamed"))
        .send()
        .await
        .unwrap();
    assert_eq!(lines(&moved, 2).await, ["/before", "/renamed"]);
    pingap.signal(nix::sys::signal::Signal::SIGUSR1);
    let reopened = tokio::task::block_in_place(|| {
        pingap
            .output
            .wait_for("access log reopened", Duration::from_secs(10))
    });
    assert!(reopened.is_some(), "{}", pingap.output.text());
    client()
        .get(pingap.url("main", "/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(lines(&log, 1).await, ["/after"]);
    assert_eq!(std::fs::read_to_string(&moved).unwrap().lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_that_cannot_be_written_are_dropped_and_counted() {
    if !Path::new("/dev/full").exists() {
        panic!("this test needs /dev/full");
    }
    let backend = Backend::start("b").await;
    let config = format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\naccess_log = '/dev/full'\n",
        backend.addr
    );
    let pingap = Pingap::start(&config);
    let client = client();
    for _ in 0..20 {
        let response = client.get(pingap.url("main", "/x")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let url = pingap.metrics_url();
    let expected = "pingap_access_log_dropped_total{log=\"/dev/full\"} 20";
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        text = client.get(&url).send().await.unwrap().text().await.unwrap();
        if text.lines().any(|l| l == expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counted = text.lines().any(|l| l == expected);
    assert!(counted, "{expected} not in:\n{text}");
    assert!(pingap.output.text().contains("cannot write the access log"));
}
