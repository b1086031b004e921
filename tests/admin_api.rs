//! The admin API through the binary with a real HTTP client: signing in and out, refusals
//! (no credentials, wrong origin, wrong token, lockout), editing every kind of entity through the
//! apply path (validation errors with their keys, dry runs, stale writes, history, diff,
//! rollback), secrets kept out of answers and logs, live status and upstreams, explain, and the
//! health endpoints — also while the process drains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::admin::{self, Admin, PASSWORD};
use common::{Backend, Pingap, client};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(20);

/// A proxy for `backend` (server `web`, location `api`, upstream `backend`) with the admin API.
fn config(backend: &Backend, admin_settings: &str, server_settings: &str) -> String {
    format!(
        "[basic]\ngraceful_shutdown_timeout = \"20s\"\n\
         [upstreams.backend]\naddrs = [\"{}\"]\n\
         [locations.api]\nupstream = \"backend\"\npath = \"/api\"\n\
         [servers.web]\naddr = \"127.0.0.1:0\"\nlocations = [\"api\"]\n{server_settings}\n{}",
        backend.addr,
        admin::section(admin_settings)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_out_and_what_is_refused() {
    let backend = Backend::start("b").await;
    let (token, digest) = pingap::admin::auth::new_token();
    let pingap = Pingap::start(&config(
        &backend,
        &format!("tokens = [\"ci:{digest}\"]"),
        "",
    ));
    let base = admin::url(&pingap);
    let anonymous = Admin::anonymous(&base);

    // Nothing but the health endpoints and the login without credentials.
    let refused = anonymous.get("/api/status").await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert!(refused.json["error"].as_str().unwrap().contains("sign in"));
    assert_eq!(anonymous.get("/api/config/locations").await.status, 401);
    assert_eq!(anonymous.get("/health").await.status, 200);
    assert_eq!(anonymous.get("/ready").await.status, 200);

    let (wrong, _) = Admin::try_login(&base, "alice", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());

    let (answer, alice) = Admin::try_login(&base, "alice", PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let cookie = answer.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    let session = alice.get("/api/session").await.json;
    assert_eq!(session["user"], "alice");
    let now = pingap::admin::auth::unix_now();
    let expires_at = session["expires_at"].as_u64().unwrap_or(0);
    assert!(
        expires_at > now && expires_at <= now + 12 * 3600,
        "a session ends within its 12 h lifetime: {session}"
    );
    let status = alice.get("/api/status").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json["listeners"][0]["server"], "web");
    assert_eq!(status.json["draining"], false);

    // A change with the cookie needs the API's own Origin (CSRF).
    let body = json!({"upstream": "backend", "path": "/new"});
    for origin in [None, Some("http://evil.example")] {
        let answer = alice
            .sending_origin(origin)
            .put("/api/locations/new", body.clone(), &[])
            .await;
        assert_eq!(answer.status, 403, "origin {origin:?}: {}", answer.text);
    }
    assert_eq!(alice.get("/api/locations/new").await.status, 404);

    // A bearer token works without an Origin; a wrong one is refused.
    let ci = Admin::with_token(&base, &token);
    let created = ci.put("/api/locations/new", body.clone(), &[]).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let history = ci.get("/api/history").await;
    assert_eq!(history.json[0]["author"], "ci", "{}", history.text);
    assert_eq!(history.json[0]["trigger"], "api");
    let forged = Admin::with_token(&base, &format!("{token}x"));
    assert_eq!(forged.get("/api/status").await.status, 401);

    // Logging out ends the session on the server: the old cookie is refused.
    let out = alice.send("POST", "/api/logout", None, &[]).await;
    assert_eq!(out.status, 204);
    assert_eq!(alice.get("/api/status").await.status, 401);

    // Secrets never leave: not the hash, the password or the token, in answers or in the log.
    let config = ci.get("/api/config").await.text;
    let toml = ci
        .send(
            "GET",
            "/api/config",
            None,
            &[("accept", "application/toml")],
        )
        .await;
    assert!(toml.text.contains("users = [\"***\"]"), "{}", toml.text);
    for text in [&config, &toml.text, &pingap.output.text()] {
        assert!(!text.contains("$argon2"), "a password hash leaked");
        assert!(!text.contains(PASSWORD) && !text.contains(&token) && !text.contains(&digest));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_lock_an_address_out() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(
        &backend,
        "lockout_threshold = 3\nlockout_duration = \"10m\"",
        "",
    ));
    let base = admin::url(&pingap);
    for attempt in 0..3 {
        let (answer, _) = Admin::try_login(&base, "alice", "guess").await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.text);
    }
    // Even the right password is refused now, with a time to wait.
    let (locked, _) = Admin::try_login(&base, "alice", PASSWORD).await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    let wait: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 500 && wait <= 600, "{wait}");
    assert!(pingap.output.text().contains("locked out"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_admin_address_without_users_is_refused() {
    let (status, output) = common::check_config(
        "[servers.web]\naddr = \"127.0.0.1:0\"\n[admin]\nenabled = true\naddr = \"0.0.0.0:0\"\n",
    );
    assert!(!status.success());
    assert!(output.contains("admin.users"), "{output}");
    assert!(output.contains("not a loopback address"), "{output}");
    // A plain password works, with a warning.
    let (status, output) = common::check_config(
        "[servers.web]\naddr = \"127.0.0.1:0\"\n[admin]\nenabled = true\naddr = \"0.0.0.0:0\"\nuser = \"admin\"\npassword = \"plain\"\n",
    );
    assert!(status.success(), "{output}");
    assert!(output.contains("plain password"), "{output}");
}

/// `PINGAP_ADMIN_PASSWORD` alone gives a configuration without `[admin]` (like the embedded
/// default) an admin API with the user `admin`, as the README's first command uses it; the
/// password is not logged.
#[tokio::test(flavor = "multi_thread")]
async fn the_password_variable_alone_enables_the_admin_api() {
    let pingap = Pingap::start_with(
        "[servers.web]\naddr = \"127.0.0.1:0\"\n",
        &[],
        &[
            ("PINGAP_ADMIN_PASSWORD", PASSWORD),
            // The default address, 127.0.0.1:9180, would collide with parallel tests.
            ("PINGAP_ADMIN_ADDR", "127.0.0.1:0"),
        ],
    );
    let base = admin::url(&pingap);
    let admin = Admin::login(&base, "admin", PASSWORD).await;
    assert_eq!(admin.get("/api/session").await.json["user"], "admin");
    assert!(!pingap.output.text().contains(PASSWORD));
}

/// A request for `bytes` bytes that the backend holds after its first chunk until released; the
/// body length it got in the end.
fn hold(pingap: &Pingap, bytes: usize) -> tokio::task::JoinHandle<usize> {
    let url = pingap.url("web", "/api/hold");
    tokio::spawn(async move {
        client()
            .get(url)
            .header("x-echo-stream-bytes", bytes.to_string())
            .header("x-echo-hold", "1")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len()
    })
}

/// Requests `path` from the data listener; the status.
async fn status_of(pingap: &Pingap, path: &str) -> u16 {
    client()
        .get(pingap.url("web", path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn entities_change_through_the_apply_path() {
    let backend = Backend::start("b").await;
    let second = Backend::start("second").await;
    let pingap = Pingap::start(&config(&backend, "", ""));
    let base = admin::url(&pingap);
    let alice = Admin::login(&base, "alice", PASSWORD).await;
    assert_eq!(status_of(&pingap, "/v2/x").await, 404);
    let file_before = std::fs::read_to_string(pingap.config_path()).unwrap();

    // Every kind can be listed.
    for kind in [
        "servers",
        "locations",
        "upstreams",
        "plugins",
        "certificates",
    ] {
        let answer = alice.get(&format!("/api/config/{kind}")).await;
        assert_eq!(answer.status, 200, "{kind}: {}", answer.text);
    }
    assert_eq!(alice.get("/api/config/widgets").await.status, 404);

    // A change that would break the configuration is refused with each error and its key.
    let invalid = alice
        .put(
            "/api/locations/v2",
            json!({"upstream": "nope", "path": "/v2"}),
            &[],
        )
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.text);
    assert_eq!(invalid.json["errors"][0]["key"], "locations.v2.upstream");
    assert!(
        invalid.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let bad_type = alice
        .put("/api/upstreams/second", json!({"addrs": "not a list"}), &[])
        .await;
    assert_eq!(bad_type.status, 422, "{}", bad_type.text);

    // A dry run answers with the plan and changes nothing.
    let plan = alice
        .put(
            "/api/upstreams/second?dry_run=true",
            json!({"addrs": [second.addr.to_string()]}),
            &[],
        )
        .await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    assert_eq!(
        plan.json["changes"]["entries"][0]["entity"],
        "upstreams.second"
    );
    assert_eq!(plan.json["changes"]["entries"][0]["kind"], "added");
    assert_eq!(
        std::fs::read_to_string(pingap.config_path()).unwrap(),
        file_before
    );
    assert_eq!(alice.get("/api/upstreams/second").await.status, 404);

    // Create an upstream, a location using it, and add the location to the server.
    let created = alice
        .put(
            "/api/upstreams/second",
            json!({"addrs": [second.addr.to_string()]}),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["outcome"], "swapped");
    let location = alice
        .put(
            "/api/locations/v2",
            json!({"upstream": "second", "path": "/v2"}),
            &[],
        )
        .await;
    assert_eq!(location.status, 200, "{}", location.text);
    let server = alice.get("/api/servers/web").await;
    let etag = server.header("etag").unwrap().to_string();
    let mut web = server.json.clone();
    web["locations"] = json!(["api", "v2"]);
    let changed = alice
        .put("/api/servers/web", web.clone(), &[("if-match", &etag)])
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let version = changed.json["version"].as_u64().unwrap();
    assert_eq!(status_of(&pingap, "/v2/x").await, 200);
    assert!(second.wait_for_hits(1, DEADLINE).await);
    // The file holds the change, the rest of it as it was written.
    let file = std::fs::read_to_string(pingap.config_path()).unwrap();
    assert!(
        file.contains("[locations.v2]") && file.starts_with("[basic]\n"),
        "{file}"
    );

    // A write with the old ETag is stale.
    let stale = alice
        .put("/api/servers/web", web, &[("if-match", &etag)])
        .await;
    assert_eq!(stale.status, 412, "{}", stale.text);

    // Removing what is still used is refused; removing it from its user first works.
    let used = alice
        .send("DELETE", "/api/upstreams/second", None, &[])
        .await;
    assert_eq!(used.status, 422, "{}", used.text);
    assert!(used.text.contains("second"));
    assert_eq!(
        alice
            .send("DELETE", "/api/plugins/none", None, &[])
            .await
            .status,
        404
    );

    // The history has each change with its author; the diff shows what changed.
    let history = alice.get("/api/history").await;
    assert_eq!(history.json[0]["number"], version);
    assert_eq!(history.json[0]["author"], "alice");
    assert_eq!(history.json[0]["running"], true);
    let first = history.json.as_array().unwrap().last().unwrap()["number"]
        .as_u64()
        .unwrap();
    let diff = alice.get(&format!("/api/diff?from={first}")).await;
    assert_eq!(diff.status, 200, "{}", diff.text);
    let entities: Vec<&str> = diff.json["changes"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        entities,
        ["servers.web", "upstreams.second", "locations.v2"]
    );
    let detail = alice.get(&format!("/api/history/{first}")).await;
    assert!(
        detail.json["documents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("[locations.api]")
    );

    // Rolling back (plan first) restores the first version: /v2 is gone again.
    let preview = alice
        .send(
            "POST",
            &format!("/api/rollback/{first}?dry_run=true"),
            None,
            &[],
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert_eq!(status_of(&pingap, "/v2/x").await, 200);
    let rolled = alice
        .send("POST", &format!("/api/rollback/{first}"), None, &[])
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    assert_eq!(status_of(&pingap, "/v2/x").await, 404);
    let history = alice.get("/api/history").await;
    assert_eq!(history.json[0]["trigger"], "rollback");
    assert_eq!(history.json[0]["note"], format!("restores version {first}"));
    assert_eq!(
        alice
            .send("POST", "/api/rollback/999", None, &[])
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_read_masked_and_written_back_unchanged() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&format!(
        "{}\n[plugins.auth]\ntype = \"api_key\"\nkeys = [\"very-secret-key\"]\n",
        config(&backend, "", "")
    ));
    let base = admin::url(&pingap);
    let alice = Admin::login(&base, "alice", PASSWORD).await;
    let plugin = alice.get("/api/plugins/auth").await;
    assert_eq!(plugin.status, 200, "{}", plugin.text);
    assert_eq!(plugin.json["keys"], json!(["***"]));
    assert!(
        !alice
            .get("/api/config")
            .await
            .text
            .contains("very-secret-key")
    );

    // Saved back as read (with a new priority), the key is kept.
    let mut edited = plugin.json.clone();
    edited["priority"] = json!(5);
    let saved = alice.put("/api/plugins/auth", edited, &[]).await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    let file = std::fs::read_to_string(pingap.config_path()).unwrap();
    assert!(
        file.contains("very-secret-key") && file.contains("priority = 5"),
        "{file}"
    );
    // "***" where there is nothing to keep is an error, not a password of three stars.
    let orphan = alice
        .put(
            "/api/plugins/other",
            json!({"type": "api_key", "keys": "***"}),
            &[],
        )
        .await;
    assert_eq!(orphan.status, 422, "{}", orphan.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstreams_status_and_explain_reflect_the_live_process() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, "", ""));
    let base = admin::url(&pingap);
    let alice = Admin::login(&base, "alice", PASSWORD).await;

    // A request held by the backend is in flight to it.
    let held = hold(&pingap, 200000);
    assert!(backend.wait_for_hits(1, DEADLINE).await);
    let upstreams = alice.get("/api/upstreams").await;
    let member = &upstreams.json[0]["backends"][0];
    assert_eq!(member["addr"], backend.addr.to_string());
    assert_eq!(member["serving"], true);
    assert_eq!(member["circuit"], "closed");
    assert_eq!(member["in_flight"], 1, "{}", upstreams.text);
    assert_eq!(alice.get("/api/status").await.json["in_flight"], 1);
    backend.release();
    assert_eq!(held.await.unwrap(), 200000);
    assert!(
        common::eventually(DEADLINE, || true).await,
        "(the guard is dropped when the request ends)"
    );
    let upstreams = alice.get("/api/upstreams").await;
    assert_eq!(upstreams.json[0]["backends"][0]["in_flight"], 0);

    let explained = alice
        .get("/api/explain?url=http://example.com/api/users&method=POST&header=Authorization:%20Bearer%20t0ken")
        .await;
    assert_eq!(explained.status, 200, "{}", explained.text);
    assert_eq!(explained.json["location"], "api");
    assert_eq!(explained.json["sent"]["method"], "POST");
    assert!(!explained.text.contains("t0ken"), "{}", explained.text);
    let missed = alice.get("/api/explain?url=http://example.com/other").await;
    assert_eq!(missed.json["location"], serde_json::Value::Null);
    assert_eq!(missed.json["candidates"][0]["matched"], false);
    assert!(missed.json["answer"].as_str().unwrap().starts_with("404"));
    assert_eq!(alice.get("/api/explain?url=%%").await.status, 400);
}

/// Sends `head` on a new connection and returns the connection.
async fn open(addr: std::net::SocketAddr, head: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads from `stream` until `needle` has arrived; all that was read.
async fn read_until(stream: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_answer_503_while_draining() {
    let backend = Backend::start("b").await;
    let mut pingap = Pingap::start(
        &config(&backend, "", "health_path = \"/healthz\"")
            .replace("[basic]\n", "[basic]\nshutdown_delay = \"60s\"\n"),
    );
    let base = admin::url(&pingap);
    let anonymous = Admin::anonymous(&base);

    // The health path is answered by pingap itself, before routing (no location has it).
    assert_eq!(status_of(&pingap, "/healthz").await, 200);
    assert_eq!(backend.hits(), 0);

    // A request held by the backend keeps the process draining; on the admin listener, a
    // request not finished yet.
    let held = hold(&pingap, 1000);
    assert!(backend.wait_for_hits(1, DEADLINE).await);
    let admin_addr = base.trim_start_matches("http://").parse().unwrap();
    let mut ready = open(admin_addr, "GET /ready HTTP/1.1\r\nHost: x\r\n").await;
    // And a connection kept alive after a request, idle.
    let mut kept = open(admin_addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until(&mut kept, "ok\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // SIGTERM: during the shutdown delay the listeners still accept and the health endpoints
    // say the process is going away.
    pingap.signal(Signal::SIGTERM);
    let mut draining = false;
    for _ in 0..200 {
        if status_of(&pingap, "/healthz").await == 503 {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(draining, "the health path never answered 503");
    assert_eq!(anonymous.get("/ready").await.status, 503);
    assert_eq!(anonymous.get("/health").await.status, 200);
    assert!(!pingap.output.text().contains("no longer accepting"));

    // A second SIGTERM ends the delay: the listeners close, the requests in flight finish, and
    // the admin API still answers on the connections it had, the idle kept-alive one too.
    pingap.signal(Signal::SIGTERM);
    assert!(
        pingap
            .output
            .wait_for("no longer accepting", DEADLINE)
            .is_some()
    );
    ready.write_all(b"\r\n").await.unwrap();
    let answer = read_until(&mut ready, "draining").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    kept.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut kept, "draining").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    backend.release();
    assert_eq!(held.await.unwrap(), 1000);
    assert!(pingap.wait_exit(DEADLINE).is_some_and(|s| s.success()));
}

/// Reads Server-Sent Events from `response` until `done` says so for the events so far
/// (event name, data as JSON); panics after the deadline.
async fn read_events(
    response: reqwest::Response,
    mut done: impl FnMut(&[(String, serde_json::Value)]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                if !data.is_empty() {
                    events.push((name, serde_json::from_str(&data).unwrap()));
                    if done(&events) {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "the stream did not deliver in time: {events:?}"
    );
    events
}

/// Opens the SSE stream at `path` as `admin`.
async fn stream(admin: &Admin, path: &str) -> reqwest::Response {
    let response = common::client_builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .get(format!("{}{path}", admin.base))
        .header("authorization", format!("Bearer {}", admin_token(admin)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    response
}

fn admin_token(admin: &Admin) -> String {
    admin.token().expect("a token client").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn live_statistics_and_the_log_tail_stream_what_happens() {
    let backend = Backend::start("b").await;
    let (token, digest) = pingap::admin::auth::new_token();
    let pingap = Pingap::start(&config(
        &backend,
        &format!("tokens = [\"ci:{digest}\"]"),
        "",
    ));
    let base = admin::url(&pingap);
    let ci = Admin::with_token(&base, &token);

    // The log tail, filtered to server errors of location api.
    let bad_filter = ci.get("/api/logs/stream?status=6xx").await;
    assert_eq!(bad_filter.status, 400, "{}", bad_filter.text);
    let tail = stream(&ci, "/api/logs/stream?status=5xx&location=api").await;
    let stats = stream(&ci, "/api/stats/stream").await;

    // Traffic: 20 fine requests and 3 that the backend fails.
    for _ in 0..20 {
        assert_eq!(status_of(&pingap, "/api/ok?token=secret").await, 200);
    }
    let web = pingap.url("web", "/api/broken?token=secret");
    for _ in 0..3 {
        let status = client()
            .get(&web)
            .header("x-echo-status", "503")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 503);
    }

    let logs = read_events(tail, |events| events.len() >= 3).await;
    for (name, record) in &logs {
        assert_eq!(name, "log");
        assert_eq!(record["status"], 503);
        assert_eq!(record["location"], "api");
        assert_eq!(record["path"], "/api/broken", "no query string: {record}");
        assert_eq!(record["upstream"], "backend");
    }

    // Within the last minute the stream counts every request, with the 5xx share.
    let frames = read_events(stats, |events| {
        events.last().is_some_and(|(_, frame)| {
            frame["locations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "api" && s["last_minute"]["requests"] == 23)
        })
    })
    .await;
    let (name, frame) = frames.last().unwrap();
    assert_eq!(name, "stats");
    let api = frame["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "api")
        .unwrap();
    let ratio = api["last_minute"]["ratio_5xx"].as_f64().unwrap();
    assert!((ratio - 3.0 / 23.0).abs() < 1e-9, "{api}");
    assert!(api["last_minute"]["p99_ms"].as_f64().unwrap() > 0.0);
    let upstream = frame["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "backend")
        .unwrap();
    assert_eq!(upstream["last_minute"]["requests"], 23, "{upstream}");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_are_shown_and_edited_with_their_keys_masked() {
    let backend = Backend::start("b").await;
    let ca = common::pki::Ca::new("admin test CA");
    let leaf = ca.leaf(&["api.example.test"]);
    let pingap = Pingap::start(&config(&backend, "", ""));
    let base = admin::url(&pingap);
    let alice = Admin::login(&base, "alice", PASSWORD).await;
    assert_eq!(alice.get("/api/certificates").await.json, json!([]));

    // A certificate with inline PEM, added through the API.
    let created = alice
        .put(
            "/api/certificates/api",
            json!({"tls_cert": leaf.cert_pem, "tls_key": leaf.key_pem}),
            &[],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let shown = alice.get("/api/certificates").await;
    assert_eq!(shown.json[0]["name"], "api", "{}", shown.text);
    assert_eq!(shown.json[0]["domains"], json!(["api.example.test"]));
    assert!(shown.json[0]["not_after"].as_i64().unwrap() > 0);
    assert!(
        shown.json[0]["issuer"]
            .as_str()
            .unwrap()
            .contains("admin test CA")
    );

    // The private key never comes back; saved as read, it is kept.
    let read = alice.get("/api/certificates/api").await;
    assert_eq!(read.json["tls_key"], "***", "{}", read.text);
    assert!(!alice.get("/api/config").await.text.contains("PRIVATE KEY"));
    let mut edited = read.json.clone();
    edited["is_default"] = json!(true);
    let saved = alice.put("/api/certificates/api", edited, &[]).await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    let file = std::fs::read_to_string(pingap.config_path()).unwrap();
    assert!(file.contains("PRIVATE KEY") && file.contains("is_default = true"));

    // A key that does not belong to the certificate is refused with its key.
    let other = ca.leaf(&["other.example.test"]);
    let mismatched = alice
        .put(
            "/api/certificates/api",
            json!({"tls_cert": leaf.cert_pem, "tls_key": other.key_pem}),
            &[],
        )
        .await;
    assert_eq!(mismatched.status, 422, "{}", mismatched.text);
    assert!(
        mismatched.json["errors"][0]["key"]
            .as_str()
            .unwrap()
            .starts_with("certificates.api")
    );
}
