//! The certificate store: certificates chosen by SNI (exact, wildcard, the server's own, the
//! default), refused handshakes, `pingap -t`'s list, and hot reload of certificate files and
//! configuration without touching established connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::pki::{Ca, Leaf};
use common::tls_client::{Options, Presented, connect, get};
use common::{Backend, Pingap, check_config, eventually};

/// Writes `leaf` as `NAME.crt` and `NAME.key` in `dir`; returns the TOML lines naming them.
fn write_leaf(dir: &Path, name: &str, leaf: &Leaf) -> String {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    format!(
        "tls_cert = '{}'\ntls_key = '{}'\n",
        cert.display(),
        key.display()
    )
}

fn routes(backend: &Backend) -> String {
    format!(
        "[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n",
        backend.addr
    )
}

/// Starts pingap with `[certificates.NAME]` serving `leaf` (files in `dir`) and an HTTPS server
/// `s` (`tls = true`, then `server_extra`) in front of `backend`.
fn start_with(
    backend: &Backend,
    dir: &Path,
    name: &str,
    leaf: &Leaf,
    server_extra: &str,
) -> Pingap {
    Pingap::start(&format!(
        "{}[certificates.{name}]\n{}[servers.s]\naddr = '127.0.0.1:0'\nlocations = ['api']\ntls = true\n{server_extra}",
        routes(backend),
        write_leaf(dir, name, leaf)
    ))
}

/// Waits for a log line with `needle`; panics with the output when none comes.
fn logged(pingap: &Pingap, needle: &str) {
    let line =
        tokio::task::block_in_place(|| pingap.output.wait_for(needle, Duration::from_secs(20)));
    assert!(
        line.is_some(),
        "no \"{needle}\" in:\n{}",
        pingap.output.text()
    );
}

/// What a handshake with `sni` gets: the leaf presented, or the error.
async fn presented(addr: std::net::SocketAddr, sni: Option<&str>) -> Result<Presented, String> {
    connect(
        addr,
        Options {
            sni,
            ..Options::default()
        },
    )
    .await
    .map(|(_, presented)| presented)
}

async fn leaf_for(addr: std::net::SocketAddr, sni: Option<&str>) -> Vec<u8> {
    match presented(addr, sni).await {
        Ok(presented) => presented.leaf,
        Err(e) => panic!("handshake for {sni:?} failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_exact_then_wildcard_then_own_then_default() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("sni test CA");
    let api = ca.leaf(&["api.example.com"]);
    let wild = ca.leaf(&["*.example.com"]);
    let fallback = ca.leaf(&["fallback.test"]);
    let own = ca.leaf(&["own.test"]);
    let alias = ca.leaf(&["shop.example.com", "shop.example.org"]);
    let config = format!(
        "{routes}\
         [certificates.api]\n{api}\
         [certificates.wild]\n{wild}\
         [certificates.fallback]\nis_default = true\n{fallback}\
         [certificates.alias]\ndomains = ['shop.example.org']\n{alias}\
         [servers.own]\naddr = '127.0.0.1:0'\nlocations = ['api']\n{own}\
         [servers.store]\naddr = '127.0.0.1:0'\nlocations = ['api']\ntls = true\n",
        routes = routes(&backend),
        api = write_leaf(dir.path(), "api", &api),
        wild = write_leaf(dir.path(), "wild", &wild),
        fallback = write_leaf(dir.path(), "fallback", &fallback),
        alias = write_leaf(dir.path(), "alias", &alias),
        own = write_leaf(dir.path(), "own", &own),
    );
    let pingap = Pingap::start(&config);

    let own_addr = pingap.addr("own");
    assert_eq!(leaf_for(own_addr, Some("api.example.com")).await, api.der);
    assert_eq!(leaf_for(own_addr, Some("API.Example.COM")).await, api.der);
    assert_eq!(leaf_for(own_addr, Some("www.example.com")).await, wild.der);
    // A wildcard covers one label.
    assert_eq!(leaf_for(own_addr, Some("a.b.example.com")).await, own.der);
    assert_eq!(leaf_for(own_addr, Some("other.test")).await, own.der);
    assert_eq!(leaf_for(own_addr, None).await, own.der);
    // `domains` replaces the certificate's own names: shop.example.com is the wildcard's.
    assert_eq!(
        leaf_for(own_addr, Some("shop.example.org")).await,
        alias.der
    );
    assert_eq!(leaf_for(own_addr, Some("shop.example.com")).await, wild.der);

    let store_addr = pingap.addr("store");
    assert_eq!(leaf_for(store_addr, Some("api.example.com")).await, api.der);
    assert_eq!(leaf_for(store_addr, Some("other.test")).await, fallback.der);
    assert_eq!(leaf_for(store_addr, None).await, fallback.der);

    // Requests are served over the chosen certificate.
    let (mut stream, _) = connect(
        store_addr,
        Options {
            sni: Some("api.example.com"),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let (status, body) = get(&mut stream, "api.example.com", "/hello").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_no_certificate_matches_is_refused_and_logged() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("refusal CA");
    let api = ca.leaf(&["api.example.com"]);
    let pingap = start_with(&backend, dir.path(), "api", &api, "");
    let addr = pingap.addr("s");
    assert_eq!(leaf_for(addr, Some("api.example.com")).await, api.der);
    let refused = presented(addr, Some("unknown.example.net")).await;
    assert!(refused.is_err(), "{refused:?}");
    logged(
        &pingap,
        "TLS handshake refused: no certificate for \"unknown.example.net\"",
    );
    assert!(presented(addr, None).await.is_err());
    assert_eq!(backend.hits(), 0);
}

#[test]
fn check_lists_which_certificate_each_domain_gets() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listing CA");
    let config = format!(
        "[upstreams.api]\naddrs = ['127.0.0.1:1']\n[locations.api]\nupstream = 'api'\n\
         [certificates.api]\n{}[certificates.wild]\nis_default = true\n{}\
         [servers.own]\naddr = '127.0.0.1:0'\nlocations = ['api']\n{}\
         [servers.store]\naddr = '127.0.0.1:0'\nlocations = ['api']\ntls = true\n",
        write_leaf(
            dir.path(),
            "api",
            &ca.leaf(&["api.example.com", "www.example.com"])
        ),
        write_leaf(dir.path(), "wild", &ca.leaf(&["*.example.com"])),
        write_leaf(dir.path(), "own", &ca.leaf(&["own.test"])),
    );
    let (status, output) = check_config(&config);
    assert!(status.success(), "{output}");
    for line in [
        "api.example.com -> certificates.api",
        "www.example.com -> certificates.api",
        "*.example.com -> certificates.wild",
        "servers.own: other names and clients without SNI -> its own tls_cert",
        "servers.store: other names and clients without SNI -> certificates.wild (is_default)",
    ] {
        assert!(output.contains(line), "{line}\n{output}");
    }
}

#[test]
fn certificate_mistakes_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mistakes CA");
    let a = write_leaf(dir.path(), "a", &ca.leaf(&["a.test"]));
    let b = write_leaf(dir.path(), "b", &ca.leaf(&["b.test"]));
    let server = "[upstreams.api]\naddrs = ['127.0.0.1:1']\n[locations.api]\nupstream = 'api'\n\
                  [servers.s]\naddr = '127.0.0.1:0'\nlocations = ['api']\n";
    for (extra, expected) in [
        (
            format!(
                "tls = true\n[certificates.a]\nis_default = true\n{a}[certificates.b]\nis_default = true\n{b}"
            ),
            "certificates.b.is_default: certificates.a is the default already",
        ),
        (
            "tls = true\n[certificates.shop]\nacme = 'lets_encrypt'\n".to_string(),
            "certificates.shop.domains: must be set with acme",
        ),
        (
            "tls = true\n".to_string(),
            "servers.s.tls: there is no certificate to serve",
        ),
        (
            format!("tls = true\n[certificates.a]\ndomains = ['*']\n{a}"),
            "certificates.a.domains[0]: \"*\" is not a domain",
        ),
        (
            "client_ca = 'ca.pem'\n".to_string(),
            "servers.s.client_ca: is for TLS listeners",
        ),
        (
            format!("{a}client_auth = 'optional'\n"),
            "servers.s.client_auth: needs client_ca",
        ),
        (
            format!("{a}tls = false\n"),
            "servers.s.tls: is false but tls_cert is set",
        ),
        (
            "tls = true\n[certificates.x]\ntls_cert = 'missing.crt'\ntls_key = 'missing.key'\n"
                .to_string(),
            "certificates.x.tls_cert: cannot read",
        ),
    ] {
        let (status, output) = check_config(&format!("{server}{extra}"));
        assert_eq!(status.code(), Some(1), "{extra}\n{output}");
        assert!(output.contains(expected), "{expected}\n{output}");
    }
}

/// Polls until a handshake for `sni` gets `expected` (the certificates are swapped by a watch
/// or a reload that runs on its own).
async fn until_served(addr: std::net::SocketAddr, sni: &str, expected: &Leaf) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if presented(addr, Some(sni)).await.map(|p| p.leaf).ok() == Some(expected.der.clone()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_certificate_files_are_swapped_without_touching_open_connections() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("reload CA");
    let first = ca.leaf(&["site.example.com"]);
    let pingap = start_with(&backend, dir.path(), "site", &first, "");
    let addr = pingap.addr("s");
    let sni = Options {
        sni: Some("site.example.com"),
        ..Options::default()
    };
    let (mut long_lived, before) = connect(addr, sni.clone()).await.unwrap();
    assert_eq!(before.leaf, first.der);
    assert_eq!(
        get(&mut long_lived, "site.example.com", "/1")
            .await
            .unwrap()
            .0,
        200
    );

    // Renewed in place.
    let second = ca.leaf(&["site.example.com"]);
    write_leaf(dir.path(), "site", &second);
    assert!(until_served(addr, "site.example.com", &second).await);
    logged(&pingap, "(certificate file)");
    // The connection opened before the swap goes on with its certificate.
    assert_eq!(
        get(&mut long_lived, "site.example.com", "/2")
            .await
            .unwrap()
            .0,
        200
    );

    // A broken certificate keeps the one served, and says why by name.
    let broken = "certificates.site.tls_cert: no certificate found";
    std::fs::write(dir.path().join("site.crt"), "not a certificate").unwrap();
    assert!(
        eventually(Duration::from_secs(20), || pingap.output.count(broken) > 0).await,
        "{}",
        pingap.output.text()
    );
    assert!(
        pingap
            .output
            .text()
            .contains("rejected, keeping the running one")
    );
    assert_eq!(leaf_for(addr, Some("site.example.com")).await, second.der);

    // A key of another certificate too.
    let mismatch = "certificates.site.tls_cert: unusable certificate or key";
    let mismatches = pingap.output.count(mismatch);
    let stranger = ca.leaf(&["site.example.com"]);
    std::fs::write(dir.path().join("site.key"), &stranger.key_pem).unwrap();
    std::fs::write(dir.path().join("site.crt"), &second.cert_pem).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || pingap.output.count(mismatch)
            > mismatches)
        .await,
        "{}",
        pingap.output.text()
    );
    assert_eq!(leaf_for(addr, Some("site.example.com")).await, second.der);
    assert_eq!(
        get(&mut long_lived, "site.example.com", "/3")
            .await
            .unwrap()
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_certificates_for_new_handshakes_only() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("config reload CA");
    let old = ca.leaf(&["app.example.com"]);
    let new = ca.leaf(&["app.example.com"]);
    let config = |files: &str| {
        format!(
            "{}[certificates.app]\n{files}[servers.s]\naddr = '127.0.0.1:0'\nlocations = ['api']\ntls = true\n",
            routes(&backend)
        )
    };
    let mut pingap = Pingap::start(&config(&write_leaf(dir.path(), "old", &old)));
    let addr = pingap.addr("s");
    let (mut long_lived, before) = connect(
        addr,
        Options {
            sni: Some("app.example.com"),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(before.leaf, old.der);

    std::fs::write(
        pingap.config_path(),
        config(&write_leaf(dir.path(), "new", &new)),
    )
    .unwrap();
    pingap.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(until_served(addr, "app.example.com", &new).await);
    assert_eq!(
        get(&mut long_lived, "app.example.com", "/")
            .await
            .unwrap()
            .0,
        200
    );
    pingap.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(pingap.wait_exit(Duration::from_secs(20)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_exported_per_domain_and_warned_two_weeks_ahead() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("expiry CA");
    let soon = ca.leaf_expiring(&["soon.example.com", "soon.example.org"], 10);
    let later = ca.leaf_expiring(&["later.example.com"], 60);
    let pingap = Pingap::start(&format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n{}\
         [certificates.soon]\n{}[certificates.later]\n{}\
         [servers.s]\naddr = '127.0.0.1:0'\nlocations = ['api']\ntls = true\n",
        routes(&backend),
        write_leaf(dir.path(), "soon", &soon),
        write_leaf(dir.path(), "later", &later),
    ));
    let not_after = |leaf: &Leaf| {
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).unwrap();
        cert.validity().not_after.timestamp() as f64
    };
    let url = pingap.metrics_url();
    for (name, domain, leaf) in [
        ("soon", "soon.example.com", &soon),
        ("soon", "soon.example.org", &soon),
        ("later", "later.example.com", &later),
    ] {
        let series = format!(
            "pingap_certificate_expiry_timestamp_seconds{{domain=\"{domain}\",name=\"{name}\"}}"
        );
        assert_eq!(
            common::metric(&url, &series).await,
            Some(not_after(leaf)),
            "{series}"
        );
    }
    logged(&pingap, "certificate soon expires in");
    assert!(!pingap.output.text().contains("certificate later expires"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_validation_handshakes_get_only_a_challenge_certificate() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("alpn CA");
    let site = ca.leaf(&["site.example.com"]);
    let pingap = start_with(&backend, dir.path(), "site", &site, "enable_h2 = false\n");
    let addr = pingap.addr("s");
    let offer = |alpn: &[&[u8]]| Options {
        sni: Some("site.example.com"),
        alpn: alpn.iter().map(|p| p.to_vec()).collect(),
        ..Options::default()
    };
    // Browsers get HTTP/1.1 on a listener without HTTP/2.
    let (stream, presented) = connect(addr, offer(&[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(presented.leaf, site.der);
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // An ACME validator (acme-tls/1 only) never gets the site's certificate: there is no
    // challenge pending.
    assert!(connect(addr, offer(&[b"acme-tls/1"])).await.is_err());
    logged(
        &pingap,
        "an acme-tls/1 validation for site.example.com with no challenge pending",
    );
}
