//! The plugins through the binary: each plugin's allow path reaches the backend (with what the
//! plugin changed), its deny path gets the documented answer and never reaches the backend; the
//! order across plugins; CORS headers on refusals; plugins on WebSocket upgrades; plugin state
//! across reloads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::backend::Echo;
use common::websocket::WsBackend;
use common::{Backend, Pingap, client, get};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header, encode};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret-that-is-long-enough-32b";

/// A config with upstream `echo` at `addr`, the given tables, and server `main` serving
/// `locations`.
fn config(addr: impl std::fmt::Display, tables: &str, locations: &[&str]) -> String {
    let list: Vec<String> = locations.iter().map(|l| format!("'{l}'")).collect();
    format!(
        "[upstreams.echo]\naddrs = ['{addr}']\n{tables}\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = [{}]\n",
        list.join(", ")
    )
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn valid_token(sub: &str) -> String {
    token(json!({"sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 300}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_admits_valid_tokens_and_refuses_others() {
    let backend = Backend::start("b").await;
    let tables = format!(
        "[locations.api]\nupstream = 'echo'\nplugins = ['auth']\n\
         [plugins.auth]\ntype = 'jwt'\nsecret = '{SECRET}'\nclaims_to_headers = {{ sub = 'X-User' }}\nhide_credentials = true\n"
    );
    let pingap = Pingap::start(&config(backend.addr, &tables, &["api"]));
    let url = pingap.url("main", "/");

    let bearer = format!("Bearer {}", valid_token("alice"));
    let response = get(&url, &[("authorization", &bearer), ("x-user", "mallory")]).await;
    assert_eq!(response.status(), 200);
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.header("x-user"), Some("alice"));
    assert_eq!(
        echo.header("authorization"),
        None,
        "the token is not forwarded"
    );

    let response = get(&url, &[]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"pingap\""
    );
    let expired = format!("Bearer {}", token(json!({"sub": "a", "exp": 1})));
    for bad in [expired.as_str(), "Bearer not.a.token", "Basic YTpi"] {
        let response = get(&url, &[("authorization", bad)]).await;
        assert_eq!(response.status(), 401, "{bad}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"pingap\", error=\"invalid_token\"",
            "{bad}"
        );
        assert!(
            !response.text().await.unwrap().contains("expired"),
            "no reason leaks"
        );
    }
    assert_eq!(
        backend.hits(),
        1,
        "refused requests never reach the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_basic_auth() {
    let backend = Backend::start("b").await;
    let hash = bcrypt::hash("open sesame", 4).unwrap();
    let tables = format!(
        "[locations.keys]\nupstream = 'echo'\npath = '/keys'\nplugins = ['keys']\n\
         [locations.basic]\nupstream = 'echo'\npath = '/basic'\nplugins = ['basic']\n\
         [plugins.keys]\ntype = 'api_key'\nkeys = ['${{API_KEY}}']\nquery = 'key'\nhide_credentials = true\n\
         [plugins.basic]\ntype = 'basic_auth'\nusers = ['ali:{hash}']\nuser_header = 'X-User'\nrealm = 'staff'\n"
    );
    let pingap = Pingap::start_with(
        &config(backend.addr, &tables, &["keys", "basic"]),
        &[],
        &[("API_KEY", "k-123")],
    );

    let response = get(&pingap.url("main", "/keys"), &[("x-api-key", "k-123")]).await;
    assert_eq!(response.status(), 200);
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.header("x-api-key"), None, "hidden");
    let response = get(&pingap.url("main", "/keys?key=k-123&page=2"), &[]).await;
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.query.as_deref(), Some("page=2"));
    for headers in [&[("x-api-key", "wrong")][..], &[]] {
        let response = get(&pingap.url("main", "/keys"), headers).await;
        assert_eq!(response.status(), 401);
    }

    let response = client()
        .get(pingap.url("main", "/basic"))
        .basic_auth("ali", Some("open sesame"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.header("x-user"), Some("ali"));
    for (user, password) in [("ali", "wrong"), ("bob", "open sesame")] {
        let response = client()
            .get(pingap.url("main", "/basic"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"staff\", charset=\"UTF-8\""
        );
    }
    assert_eq!(backend.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_referer_and_user_agent_restrictions() {
    let backend = Backend::start("b").await;
    let tables = "[basic]\ntrusted_proxies = ['127.0.0.1']\n\
         [locations.ip]\nupstream = 'echo'\npath = '/ip'\nplugins = ['office']\n\
         [locations.ref]\nupstream = 'echo'\npath = '/ref'\nplugins = ['ref']\n\
         [locations.ua]\nupstream = 'echo'\npath = '/ua'\nplugins = ['ua']\n\
         [plugins.office]\ntype = 'ip_restriction'\nallow = ['203.0.113.0/24']\ndeny = ['203.0.113.66']\n\
         [plugins.ref]\ntype = 'referer'\nallow = ['*.example.com']\nallow_empty = false\n\
         [plugins.ua]\ntype = 'user_agent'\ndeny = ['(?i)bot']\n";
    let pingap = Pingap::start(&config(backend.addr, tables, &["ip", "ref", "ua"]));
    /// Path, request headers, expected status.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case] = &[
        ("/ip", &[("x-forwarded-for", "203.0.113.5")], 200),
        ("/ip", &[("x-forwarded-for", "203.0.113.66")], 403),
        ("/ip", &[("x-forwarded-for", "198.51.100.1")], 403),
        ("/ip", &[], 403),
        ("/ref", &[("referer", "https://shop.example.com/cart")], 200),
        ("/ref", &[("referer", "https://example.com/")], 403),
        ("/ref", &[], 403),
        ("/ua", &[("user-agent", "Mozilla/5.0")], 200),
        ("/ua", &[("user-agent", "FooBot/1.0")], 403),
    ];
    for (path, headers, status) in cases {
        let response = get(&pingap.url("main", path), headers).await;
        assert_eq!(response.status(), *status, "{path} {headers:?}");
    }
    assert_eq!(backend.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_csrf_redirects_mocks_and_security_headers() {
    let backend = Backend::start("b").await;
    let tables = "[locations.ids]\nupstream = 'echo'\npath = '/ids'\nplugins = ['rid']\n\
         response_headers_set = ['X-Seen-Id: $request_id']\n\
         [locations.form]\nupstream = 'echo'\npath = '/form'\nplugins = ['csrf']\n\
         [locations.moved]\nupstream = 'echo'\npath = '/moved'\nplugins = ['https']\n\
         [locations.stub]\nupstream = 'echo'\npath = '/stub'\nplugins = ['ping', 'secure']\n\
         [plugins.rid]\ntype = 'request_id'\n\
         [plugins.csrf]\ntype = 'csrf'\n\
         [plugins.https]\ntype = 'redirect'\nhttp_to_https = true\nstatus = 308\n\
         [plugins.ping]\ntype = 'mock'\npath = '/stub/ping'\nbody = 'pong'\n\
         [plugins.secure]\ntype = 'headers'\n";
    let pingap = Pingap::start(&config(
        backend.addr,
        tables,
        &["ids", "form", "moved", "stub"],
    ));

    let response = get(&pingap.url("main", "/ids"), &[]).await;
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        response.headers()["x-seen-id"],
        id.as_str(),
        "$request_id in a header rule"
    );
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.header("x-request-id"), Some(id.as_str()));

    let response = get(&pingap.url("main", "/form"), &[]).await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("csrf_token=")
        .to_string();
    let post = |header: Option<&str>| {
        let mut request = client()
            .post(pingap.url("main", "/form"))
            .header("cookie", format!("csrf_token={token}"));
        if let Some(header) = header {
            request = request.header("x-csrf-token", header);
        }
        request.send()
    };
    assert_eq!(post(Some(&token)).await.unwrap().status(), 200);
    assert_eq!(post(Some("forged")).await.unwrap().status(), 403);
    assert_eq!(post(None).await.unwrap().status(), 403);

    let no_redirects = common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(pingap.url("main", "/moved/x?y=1"))
        .header("host", "www.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://www.example.com/moved/x?y=1"
    );

    let response = get(&pingap.url("main", "/stub/ping"), &[]).await;
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert_eq!(response.text().await.unwrap(), "pong");
    let response = get(&pingap.url("main", "/stub/other"), &[]).await;
    assert_eq!(
        response.headers()["x-frame-options"],
        "DENY",
        "on proxied responses too"
    );
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.path, "/stub/other");
    // GET /ids, GET /form, the accepted POST and GET /stub/other; nothing refused got through.
    assert_eq!(backend.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_and_decorates_refusals() {
    let backend = Backend::start("b").await;
    let tables = format!(
        "[locations.api]\nupstream = 'echo'\nplugins = ['auth', 'cors']\n\
         [plugins.auth]\ntype = 'jwt'\nsecret = '{SECRET}'\n\
         [plugins.cors]\ntype = 'cors'\nallow_origins = ['https://app.example.com']\nallow_credentials = true\n"
    );
    let pingap = Pingap::start(&config(backend.addr, &tables, &["api"]));
    let url = pingap.url("main", "/data");
    let response = client()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        response.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert_eq!(
        backend.hits(),
        0,
        "the preflight never reaches the upstream (nor needs a token)"
    );

    // The token check refuses, and the refusal still carries CORS headers so the page can read it.
    let response = get(&url, &[("origin", "https://app.example.com")]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        response.headers()["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(response.headers()["vary"], "Origin");

    let bearer = format!("Bearer {}", valid_token("a"));
    let response = get(
        &url,
        &[
            ("origin", "https://evil.example"),
            ("authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_restriction_runs_before_jwt_before_rate_limit() {
    let backend = Backend::start("b").await;
    // Listed in the opposite order: priorities decide.
    let tables = format!(
        "[basic]\ntrusted_proxies = ['127.0.0.1']\n\
         [locations.api]\nupstream = 'echo'\nplugins = ['limit', 'auth', 'office']\n\
         [plugins.office]\ntype = 'ip_restriction'\ndeny = ['198.51.100.0/24']\n\
         [plugins.auth]\ntype = 'jwt'\nsecret = '{SECRET}'\n\
         [plugins.limit]\ntype = 'rate_limit'\nrate = '1/h'\nburst = 1\n"
    );
    let pingap = Pingap::start(&config(backend.addr, &tables, &["api"]));
    let url = pingap.url("main", "/");
    let bearer = format!("Bearer {}", valid_token("a"));
    // A denied address without a token: the address check answers first.
    assert_eq!(
        get(&url, &[("x-forwarded-for", "198.51.100.9")])
            .await
            .status(),
        403
    );
    // Unauthenticated requests are refused by jwt and never spend the rate limit.
    for _ in 0..3 {
        assert_eq!(get(&url, &[]).await.status(), 401);
    }
    let response = get(&url, &[("authorization", &bearer)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    let response = get(&url, &[("authorization", &bearer)]).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(backend.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_caps_requests_in_flight() {
    let backend = Backend::start("b").await;
    let tables = "[locations.api]\nupstream = 'echo'\nplugins = ['one_at_a_time']\n\
         [plugins.one_at_a_time]\ntype = 'concurrency'\nmax = 1\nkey = 'everyone'\n";
    let pingap = Pingap::start(&config(backend.addr, tables, &["api"]));
    let url = pingap.url("main", "/");
    let slow = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, &[("x-echo-delay-ms", "1500")]).await.status() })
    };
    assert!(backend.wait_for_hits(1, Duration::from_secs(10)).await);
    assert_eq!(get(&url, &[]).await.status(), 429);
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(get(&url, &[]).await.status(), 200, "the slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_on_websocket_upgrades() {
    let ws = WsBackend::start().await;
    let tables = format!(
        "[locations.ws]\nupstream = 'echo'\nplugins = ['auth', 'rid']\n\
         [plugins.auth]\ntype = 'jwt'\nsecret = '{SECRET}'\nquery = 'token'\n\
         [plugins.rid]\ntype = 'request_id'\n"
    );
    let pingap = Pingap::start(&config(ws.addr, &tables, &["ws"]));
    let addr = pingap.addr("main");

    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/chat")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(
        ws.handshakes().is_empty(),
        "the refused upgrade never reached the backend"
    );

    let url = format!("ws://{addr}/chat?token={}", valid_token("a"));
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    socket
        .send(Message::text("hello through pingap"))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("hello through pingap"));
    socket.close(None).await.unwrap();
    let handshake = &ws.handshakes()[0];
    assert!(
        handshake.contains_key("x-request-id"),
        "the request_id plugin ran on the upgrade"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_state_survives_reloads_that_do_not_change_it() {
    let backend = Backend::start("b").await;
    let tables = |burst: u32, extra: &str| {
        format!(
            "[locations.api]\nupstream = 'echo'\nplugins = ['limit']\n{extra}\n\
             [plugins.limit]\ntype = 'rate_limit'\nrate = '1/h'\nburst = {burst}\n"
        )
    };
    let pingap = Pingap::start(&config(backend.addr, &tables(1, ""), &["api"]));
    let url = pingap.url("main", "/");
    assert_eq!(get(&url, &[]).await.status(), 200);
    assert_eq!(get(&url, &[]).await.status(), 429);

    // A reload that changes something else keeps the instance and its counters.
    let unrelated = tables(1, "response_headers_set = ['X-Reloaded: yes']");
    std::fs::write(
        pingap.config_path(),
        config(backend.addr, &unrelated, &["api"]),
    )
    .unwrap();
    pingap.signal(Signal::SIGHUP);
    assert!(
        pingap
            .output
            .wait_for("generation=2", Duration::from_secs(10))
            .is_some(),
        "{}",
        pingap.output.text()
    );
    let response = get(&url, &[]).await;
    assert_eq!(response.headers()["x-reloaded"], "yes");
    assert_eq!(response.status(), 429, "the bucket is still empty");

    // Changing the plugin's settings builds a new instance with fresh state.
    std::fs::write(
        pingap.config_path(),
        config(backend.addr, &tables(2, ""), &["api"]),
    )
    .unwrap();
    pingap.signal(Signal::SIGHUP);
    assert!(
        pingap
            .output
            .wait_for("generation=3", Duration::from_secs(10))
            .is_some(),
        "{}",
        pingap.output.text()
    );
    assert_eq!(get(&url, &[]).await.status(), 200);
}
