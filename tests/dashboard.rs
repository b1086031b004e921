//! The web dashboard through the binary: the embedded files as the admin listener serves them
//! (content types, compression, caching, client-side routes, security headers), the OpenAPI
//! document the dashboard's typed client is generated from kept current, and the dashboard itself
//! in Debian's chromium, driven by Playwright (`web/e2e/dashboard.mjs`) against pingap with two
//! real backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::admin::{self, PASSWORD};
use common::{Pingap, client};

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// A backend that answers every request with 200 and the body `name`.
async fn named_backend(name: &'static str) -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |_request| async move {
                    Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                        hyper::body::Bytes::from_static(name.as_bytes()),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Pingap with the admin API, server `web` routing everything through location `api` to
/// upstream `blue`; upstream `green` is defined and unused.
async fn start() -> Pingap {
    let blue = named_backend("blue").await;
    let green = named_backend("green").await;
    Pingap::start(&format!(
        "[upstreams.blue]\naddrs = [\"{blue}\"]\n\
         [upstreams.green]\naddrs = [\"{green}\"]\n\
         [locations.api]\nupstream = \"blue\"\n\
         [servers.web]\naddr = \"127.0.0.1:0\"\nlocations = [\"api\"]\n{}",
        admin::section("")
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_the_embedded_dashboard() {
    let pingap = start().await;
    let base = admin::url(&pingap);
    let client = client();
    let get = |path: &str, accept_encoding: &str| {
        client
            .get(format!("{base}{path}"))
            .header("accept-encoding", accept_encoding)
            .send()
    };

    let index = get("/", "identity").await.unwrap();
    assert_eq!(index.status(), 200);
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(header(&index, "content-type").starts_with("text/html"));
    assert_eq!(header(&index, "cache-control"), "no-cache");
    assert!(header(&index, "content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(header(&index, "x-content-type-options"), "nosniff");
    let html = index.text().await.unwrap();
    assert!(html.contains("<div id=\"root\">"), "{html}");

    // The entry script the page names: hashed, cached for good, gzip'd when accepted.
    let script = html
        .split("src=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|src| src.starts_with("/assets/") && src.ends_with(".js"))
        .expect("index.html names its script under /assets/");
    let plain = get(script, "identity").await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(header(&plain, "content-type"), "text/javascript");
    assert_eq!(
        header(&plain, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let plain_body = plain.bytes().await.unwrap();
    let compressed = get(script, "br, gzip;q=0.8").await.unwrap();
    assert_eq!(header(&compressed, "content-encoding"), "gzip");
    assert_eq!(header(&compressed, "vary"), "Accept-Encoding");
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed.bytes().await.unwrap()[..]),
        &mut unpacked,
    )
    .unwrap();
    assert_eq!(unpacked, plain_body);

    // A client-side route gets the page; a missing asset and an unknown API path do not.
    let route = get("/history", "identity").await.unwrap();
    assert_eq!(route.status(), 200);
    assert_eq!(route.text().await.unwrap(), html);
    assert_eq!(get("/assets/gone-1234.js", "").await.unwrap().status(), 404);
    let api = get("/api/nothing-here", "").await.unwrap();
    assert_eq!(api.status(), 404);
    assert!(header(&api, "content-type").starts_with("application/json"));
    let post = client.post(format!("{base}/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

/// The dashboard's API client is generated from `web/openapi.json`; it must be the document the
/// binary serves, or the client and the API have drifted apart.
#[test]
fn the_dashboard_client_is_generated_from_the_current_api() {
    let output = Command::new(common::binary())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success());
    let served: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let committed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(web_dir().join("openapi.json")).unwrap()).unwrap();
    assert!(
        served == committed,
        "web/openapi.json is not the API's document: run `pingap openapi > web/openapi.json` and \
         `npm run gen:api` in web/, then rebuild the dashboard"
    );
}

/// The dashboard in a real browser: `web/e2e/dashboard.mjs` signs in, watches live traffic,
/// edits the location's upstream through a form with the plan shown first and sees the traffic
/// follow, sees a bad change refused on its field, rolls back from History, filters the log
/// tail, checks every page with axe and saves a screenshot of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let web = web_dir();
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "the browser test needs the dashboard's npm packages: run `npm ci` in web/"
    );
    let pingap = start().await;
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(web.join("e2e/dashboard.mjs"))
        .current_dir(&web)
        .env("ADMIN_URL", admin::url(&pingap))
        .env("PROXY_URL", pingap.url("web", ""))
        .env("ADMIN_USER", "alice")
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("LOCATION", "api")
        .env("FROM_UPSTREAM", "blue")
        .env("TO_UPSTREAM", "green")
        .env("SCREENSHOT_DIR", &screenshots)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(240), command.output())
        .await
        .expect("the browser test finishes within 4 minutes")
        .expect("node runs (Node.js 20 or newer)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{report}\npingap's output:\n{}",
        pingap.output.text()
    );
    for page in ["overview", "upstreams", "configuration", "history", "logs"] {
        let png = screenshots.join(format!("{page}.png"));
        assert!(png.is_file(), "no screenshot {}\n{report}", png.display());
    }
}
