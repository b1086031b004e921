//! The admin API against its own OpenAPI document, checked by a third party: schemathesis
//! (from PyPI; `.ci/run` installs it) generates requests for every operation from the document
//! served by a running pingap and checks that no answer is a 5xx and that every answer — status,
//! content type, headers, body — is what the document says. Also: the document describes every
//! route, and a route it describes answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::admin::{self, Admin};
use common::{Backend, Pingap};

/// The schemathesis command: `$SCHEMATHESIS`, or `schemathesis` on the `PATH`.
fn schemathesis() -> Command {
    let program = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_string());
    Command::new(program)
}

fn config(backend: &Backend, digest: &str) -> String {
    format!(
        "[upstreams.backend]\naddrs = [\"{}\"]\n\
         [locations.api]\nupstream = \"backend\"\npath = \"/api\"\n\
         [servers.web]\naddr = \"127.0.0.1:0\"\nlocations = [\"api\"]\n\
         [plugins.limit]\ntype = \"rate_limit\"\nrate = 100\n{}",
        backend.addr,
        admin::section(&format!("tokens = [\"fuzz:{digest}\"]"))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let backend = Backend::start("b").await;
    let (token, digest) = pingap::admin::auth::new_token();
    let pingap = Pingap::start(&config(&backend, &digest));
    let base = admin::url(&pingap);
    let schema = format!("{base}/api/openapi.json");
    // Its caches go to the test's directory, not the checkout.
    let workdir = pingap.dir().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        schemathesis()
            .current_dir(workdir)
            .args(["run", &schema])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
            ])
            // One worker: hypothesis's source inspection is not thread-safe on every CPython
            // (3.11.7 raised "AST constructor recursion depth mismatch" with two).
            .args(["--max-time", "40", "--workers", "1", "--no-color"])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!("cannot run schemathesis ({e}); install it with `pip install schemathesis` (.ci/run does) or set SCHEMATHESIS")
    });
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    // pingap is still up.
    let status = Admin::anonymous(&base).get("/health").await;
    assert_eq!(status.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_describes_the_api() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, &"0".repeat(64)));
    let base = admin::url(&pingap);
    let document = Admin::anonymous(&base).get("/api/openapi.json").await;
    assert_eq!(document.status, 200);
    let json = document.json;
    assert_eq!(json["openapi"], "3.1.0");
    let paths: Vec<&str> = json["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/api/login",
        "/api/config",
        "/api/config/{kind}",
        "/api/{kind}/{name}",
        "/api/plan",
        "/api/history",
        "/api/history/{version}",
        "/api/diff",
        "/api/rollback/{version}",
        "/api/status",
        "/api/upstreams",
        "/api/explain",
        "/health",
        "/ready",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    assert!(json["components"]["securitySchemes"]["bearer"].is_object());
    // The command line prints the same document.
    let printed = common::command().arg("openapi").output().unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed["paths"], json["paths"]);
}
