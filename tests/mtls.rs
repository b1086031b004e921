//! Mutual TLS: clients asked for certificates (`client_ca`, `client_auth`), the verified subject
//! in `$ssl_client_*` for header rules and the access log, a policy changed by a reload, and
//! client certificates presented to backends that require them (`client_cert`/`client_key`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::backend::Echo;
use common::pki::{Ca, Leaf};
use common::tls_client::{Options, connect, get};
use common::{Backend, Pingap};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// An HTTPS server `s` whose requests carry the client certificate's subject and status.
fn config(backend: &Backend, dir: &Path, server: &Leaf, client_ca: &str, extra: &str) -> String {
    format!(
        "[upstreams.api]\naddrs = ['{backend}']\n\
         [locations.api]\nupstream = 'api'\n\
         headers_set = ['X-Client-DN: $ssl_client_s_dn', 'X-Client-Verify: $ssl_client_verify', \
         'X-Client-Issuer: $ssl_client_i_dn']\n\
         [servers.s]\naddr = '127.0.0.1:0'\nlocations = ['api']\n\
         tls_cert = '{cert}'\ntls_key = '{key}'\nclient_ca = '{ca}'\n\
         access_log = '{log}'\naccess_log_format = '$status $ssl_client_verify \"$ssl_client_s_dn\" $ssl_client_serial'\n{extra}",
        backend = backend.addr,
        cert = write(dir, "server.crt", &server.cert_pem),
        key = write(dir, "server.key", &server.key_pem),
        ca = write(dir, "client-ca.crt", client_ca),
        log = dir.join("access.log").display(),
    )
}

/// A request over a fresh connection presenting `client`; the backend's echo, or why it failed.
async fn request(addr: std::net::SocketAddr, client: Option<&Leaf>) -> Result<Echo, String> {
    let (mut stream, _) = connect(
        addr,
        Options {
            sni: Some("secure.test"),
            client,
            ..Options::default()
        },
    )
    .await?;
    let (status, body) = get(&mut stream, "secure.test", "/who").await?;
    assert_eq!(status, 200, "{body}");
    Ok(serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_are_verified_and_their_subject_forwarded() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    let alice = client_ca.client("alice");
    let pingap = Pingap::start(&config(
        &backend,
        dir.path(),
        &server_ca.leaf(&["secure.test"]),
        &client_ca.pem,
        "",
    ));
    let addr = pingap.addr("s");

    let echo = request(addr, Some(&alice)).await.unwrap();
    assert_eq!(echo.header("x-client-verify"), Some("SUCCESS"));
    assert_eq!(echo.header("x-client-dn"), Some("CN=alice,O=pingap tests"));
    assert_eq!(echo.header("x-client-issuer"), Some("CN=client CA"));

    // Without a certificate, or with one of another CA: refused in the handshake.
    assert!(request(addr, None).await.is_err());
    assert!(
        request(addr, Some(&stranger_ca.client("mallory")))
            .await
            .is_err()
    );
    assert_eq!(backend.hits(), 1);

    // openssl's client too.
    let key = write(dir.path(), "alice.key", &alice.key_pem);
    let cert = write(dir.path(), "alice.crt", &alice.cert_pem);
    let output = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "secure.test",
        ])
        .args(["-cert", &cert, "-key", &key, "-quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                b"GET /openssl HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n",
            )?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    assert!(text.contains("CN=alice,O=pingap tests"), "{text}");

    // The access log has the subject and the serial.
    let log = dir.path().join("access.log");
    let lines = tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().count() >= 2 || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let first = lines.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("200 SUCCESS \"CN=alice,O=pingap tests\" "),
        "{lines}"
    );
    let (_, parsed) = x509_parser::parse_x509_certificate(&alice.der).unwrap();
    let serial = parsed.raw_serial_as_string().replace(':', "");
    assert!(first.ends_with(&serial), "{first} / {serial}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_and_a_reloaded_policy() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let server = Ca::new("server CA").leaf(&["secure.test"]);
    let first_ca = Ca::new("first client CA");
    let second_ca = Ca::new("second client CA");
    let (alice, bob) = (first_ca.client("alice"), second_ca.client("bob"));
    let mut pingap = Pingap::start(&config(
        &backend,
        dir.path(),
        &server,
        &first_ca.pem,
        "client_auth = 'optional'\n",
    ));
    let addr = pingap.addr("s");

    let anonymous = request(addr, None).await.unwrap();
    assert_eq!(anonymous.header("x-client-verify"), Some("NONE"));
    assert_eq!(anonymous.header("x-client-dn"), Some(""));
    let echo = request(addr, Some(&alice)).await.unwrap();
    assert_eq!(echo.header("x-client-verify"), Some("SUCCESS"));
    // A certificate the CA did not sign is refused even when certificates are optional.
    assert!(request(addr, Some(&bob)).await.is_err());

    // Trust the second CA only, and require certificates: a reload, no restart.
    std::fs::write(
        pingap.config_path(),
        config(&backend, dir.path(), &server, &second_ca.pem, ""),
    )
    .unwrap();
    pingap.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while request(addr, Some(&bob)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            pingap.output.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        request(addr, Some(&bob))
            .await
            .unwrap()
            .header("x-client-dn"),
        Some("CN=bob,O=pingap tests")
    );
    assert!(request(addr, Some(&alice)).await.is_err());
    assert!(request(addr, None).await.is_err());
    pingap.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(pingap.wait_exit(Duration::from_secs(20)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_presented_to_backends_that_require_them() {
    let dir = tempfile::tempdir().unwrap();
    let backend_ca = Ca::new("backend CA");
    let client_ca = Ca::new("proxy client CA");
    let acceptor = backend_ca
        .leaf(&["backend.test"])
        .acceptor_requiring(&client_ca.pem);
    let backend = Backend::start_on("mtls", "127.0.0.1:0".parse().unwrap(), Some(acceptor)).await;
    let proxy_cert = client_ca.client("pingap");
    let upstream = |extra: &str| {
        format!(
            "[upstreams.api]\naddrs = ['{}']\ntls = true\nsni = 'backend.test'\nca_file = '{}'\n{extra}\
             [locations.api]\nupstream = 'api'\n\
             [servers.s]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
            backend.addr,
            write(dir.path(), "backend-ca.crt", &backend_ca.pem),
        )
    };
    let with_cert = Pingap::start(&upstream(&format!(
        "client_cert = '{}'\nclient_key = '{}'\n",
        write(dir.path(), "proxy.crt", &proxy_cert.cert_pem),
        write(dir.path(), "proxy.key", &proxy_cert.key_pem)
    )));
    let response = common::get(&with_cert.url("s", "/through"), &[]).await;
    assert_eq!(response.status(), 200);
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.path, "/through");
    assert_eq!(backend.hits(), 1);

    // Without the client certificate the backend refuses the connection.
    let without = Pingap::start(&upstream(""));
    let response = common::get(&without.url("s", "/through"), &[]).await;
    assert_eq!(response.status(), 502);
    assert_eq!(backend.hits(), 1);

    // A key that is not the certificate's is a configuration error.
    let (status, output) = common::check_config(&upstream(&format!(
        "client_cert = '{}'\nclient_key = '{}'\n",
        dir.path().join("proxy.crt").display(),
        write(dir.path(), "other.key", &client_ca.client("other").key_pem)
    )));
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("upstreams.api.client_cert: unusable certificate or key"),
        "{output}"
    );
}
