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

/// Whether a TLS handshake with `addr` succeeds for a client limited to `versions`; returns the
/// version negotiated.
async fn handshake(
    addr: std::net::SocketAddr,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Option<rustls::ProtocolVersion> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(certs().join("example-ca.crt")).unwrap();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("api.example.com").unwrap();
    let stream = connector.connect(name, stream).await.ok()?;
    stream.get_ref().1.protocol_version()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_version_refuses_older_clients() {
    use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
    use rustls::version::{TLS12, TLS13};
    let backend = Backend::start("b").await;
    let config = https_config(
        &backend,
        &certs().join("example.crt"),
        &certs().join("example.key"),
    );
    let default = Pingap::start(&config);
    let addr = default.addr("secure");
    assert_eq!(handshake(addr, &[&TLS12]).await, Some(TLSv1_2));
    assert_eq!(handshake(addr, &[&TLS13]).await, Some(TLSv1_3));
    assert_eq!(handshake(addr, &[&TLS12, &TLS13]).await, Some(TLSv1_3));

    let strict = Pingap::start(&format!("{config}tls_min_version = '1.3'\n"));
    let addr = strict.addr("secure");
    assert_eq!(handshake(addr, &[&TLS13]).await, Some(TLSv1_3));
    // A TLS 1.2 client without TLS 1.3 cipher suites (OpenSSL's) is refused in the handshake.
    let openssl = |version: &str| {
        let output = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), version])
            .args(["-servername", "api.example.com"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(openssl("-tls1_3").contains("TLSv1.3"), "TLS 1.3 accepted");
    let refused = openssl("-tls1_2");
    assert!(
        refused.contains("no peer certificate available") && !refused.contains("BEGIN CERTIFICATE"),
        "{refused}"
    );
    // rustls offers TLS 1.3 suites even when limited to 1.2: its requests are refused.
    assert_eq!(handshake(addr, &[&TLS12]).await, Some(TLSv1_2));
    let tls12_client = client_builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(certs().join("example-ca.crt")).unwrap())
                .unwrap(),
        )
        .resolve("api.example.com", addr)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let response = tls12_client
        .get(format!("https://api.example.com:{}/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(backend.hits(), 0);

    let (status, output) = check_config(&format!("{config}tls_min_version = '1.1'\n"));
    assert!(!status.success());
    assert!(
        output.contains("servers.secure.tls_min_version: \"1.1\" is not a TLS version"),
        "{output}"
    );
}
