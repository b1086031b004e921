//! HTTPS listeners: the certificate is served, HTTP/2 and HTTP/1.1 are negotiated by ALPN, and a
//! bad certificate or key is a config error naming the server and file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::backend::Echo;
use common::{Backend, Pingap, check_config, client_builder};

fn certs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/certs")
}

fn https_config(backend: &Backend, cert: &Path, key: &Path) -> String {
    format!(
        "[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.secure]\naddr = '127.0.0.1:0'\nlocations = ['api']\ntls_cert = '{}'\ntls_key = '{}'\n",
        backend.addr,
        cert.display(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_h2_and_http1() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&https_config(
        &backend,
        &certs().join("example.crt"),
        &certs().join("example.key"),
    ));
    let addr = pingap.addr("secure");
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(certs().join("example-ca.crt")).unwrap())
            .unwrap();
    for http2 in [true, false] {
        let builder = client_builder()
            .add_root_certificate(ca.clone())
            .resolve("api.example.com", addr);
        let client = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        }
        .build()
        .unwrap();
        let response = client
            .get(format!(
                "https://api.example.com:{}/secure?x=1",
                addr.port()
            ))
            .send()
            .await
            .unwrap();
        let expected = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(response.version(), expected);
        assert_eq!(response.status(), 200);
        let echo: Echo = response.json().await.unwrap();
        assert_eq!(echo.path, "/secure");
        assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_config_errors() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = dir.path().join("missing.key");

    let (status, output) = check_config(&https_config(&backend, &garbage, &missing));
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains(&format!(
            "servers.secure.tls_key: cannot read {}",
            missing.display()
        )),
        "{output}"
    );

    let (status, output) = check_config(&https_config(
        &backend,
        &garbage,
        &certs().join("example.key"),
    ));
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("servers.secure.tls_cert: no certificate found"),
        "{output}"
    );

    // A key that does not belong to the certificate.
    let other_key = dir.path().join("other.key");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
        ])
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(status.success());
    let (status, output) = check_config(&https_config(
        &backend,
        &certs().join("example.crt"),
        &other_key,
    ));
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("servers.secure.tls_cert: unusable certificate or key"),
        "{output}"
    );
}
