//! ACME against a real directory: Debian's pebble on loopback, validating through pingap's own
//! listeners (http-01 on the plain server, tls-alpn-01 on the TLS server). Certificates are
//! issued, stored in the configuration's storage, served, renewed when a third of their
//! lifetime remains, and ordered again after the directory was down, with back-off in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/etcd.rs"]
mod etcd_server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pebble::{self, Options, Pebble};
use common::{Pingap, RefusingPort};
use nix::sys::signal::Signal;

/// How long an order may take, from the trigger to the stored certificate.
const ORDER_DEADLINE: Duration = Duration::from_secs(60);

/// A plain server and a TLS server serving `[certificates]`, with a default certificate of a
/// test CA (for `fallback.test`) until ACME has issued one.
fn plain_config() -> String {
    static FALLBACK: std::sync::OnceLock<common::pki::Pki> = std::sync::OnceLock::new();
    let fallback = FALLBACK.get_or_init(|| common::pki::Pki::new(&["fallback.test"]));
    format!(
        "[servers.web]\naddr = '127.0.0.1:0'\n[servers.secure]\naddr = '127.0.0.1:0'\ntls = true\n\
         [certificates.fallback]\ntls_cert = \"\"\"{}\"\"\"\ntls_key = \"\"\"{}\"\"\"\nis_default = true\n",
        fallback.cert_pem, fallback.key_pem
    )
}

/// The chain the `secure` server presents for `name`, verified against `root` (PEM).
async fn served(pingap: &Pingap, name: &str, root: &str) -> Result<Vec<Vec<u8>>, String> {
    pebble::served_chain(pingap.addr("secure"), name, root)
        .await
        .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
}

/// The DER of each certificate of a PEM chain.
fn ders(chain_pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// `[certificates.site]` ordering `domains` from `pebble`.
fn acme_table(pebble: &Pebble, domains: &[&str], extra: &str) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("'{d}'")).collect();
    format!(
        "[certificates.site]\ndomains = [{}]\nacme = '{}'\nacme_ca_file = '{}'\n\
         acme_email = 'ops@example.com'\n{extra}",
        domains.join(", "),
        pebble.directory_url(),
        pebble.ca_file().display()
    )
}

/// The chain stored for certificate `name` beside the configuration, once it has one.
async fn stored_chain(config: &Path, name: &str, deadline: Duration) -> Option<String> {
    stored_chain_other_than(config, name, "", deadline).await
}

/// The chain stored for certificate `name`, once it has one other than `old`.
async fn stored_chain_other_than(
    config: &Path,
    name: &str,
    old: &str,
    deadline: Duration,
) -> Option<String> {
    let path = acme_dir(config).join(format!("certificates/{name}.json"));
    let until = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < until {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(record) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(chain) = record["issued"]["chain_pem"].as_str()
            && chain != old
        {
            return Some(chain.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Pebble validating http-01 through the `web` server of `pingap` (tls-alpn-01 goes to a port
/// that refuses), issuing certificates valid for `validity_secs`.
fn pebble_for_http01(pingap: &Pingap, validity_secs: Option<u64>) -> (Pebble, RefusingPort) {
    let tls_port = RefusingPort::new();
    let pebble = Pebble::start(Options {
        http_port: pingap.addr("web").port(),
        tls_port: tls_port.addr.port(),
        validity_secs,
    });
    (pebble, tls_port)
}

fn acme_dir(config: &Path) -> PathBuf {
    PathBuf::from(format!("{}.acme", config.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_added_by_a_reload_and_stores_it_privately() {
    let pingap = Pingap::start(&plain_config());
    let (pebble, _tls_port) = pebble_for_http01(&pingap, None);
    let config = pingap.config_path();
    std::fs::write(
        &config,
        plain_config() + &acme_table(&pebble, &["acme.test", "www.acme.test"], ""),
    )
    .unwrap();
    pingap.signal(Signal::SIGHUP);

    let chain = stored_chain(&config, "site", ORDER_DEADLINE)
        .await
        .unwrap_or_else(|| panic!("no certificate stored:\n{}", pingap.output.text()));
    let root = pebble.issuing_root().await;
    for name in ["acme.test", "www.acme.test"] {
        pebble::verify_chain(&chain, &root, name).unwrap();
        // Served from the store in the step that stored it: no reload, no restart.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match served(&pingap, name, &root).await {
                Ok(served) => {
                    assert_eq!(served, ders(&chain));
                    break;
                }
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "{name} is not served: {e}\n{}",
                    pingap.output.text()
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(pebble::verify_chain(&chain, &root, "other.test").is_err());
    // A token that is not pending is routed like any other request (no location: 404).
    let (status, _) = common::get_json(
        &pingap.url("web", "/.well-known/acme-challenge/not-pending"),
        &[],
    )
    .await;
    assert_eq!(status, 404);
    let text = pingap.output.text();
    assert!(text.contains("certificate issued"), "{text}");
    assert!(text.contains("created an ACME account"), "{text}");
    assert!(
        !text.contains("PRIVATE KEY"),
        "a key reached the log:\n{text}"
    );

    // Accounts and certificates are the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = acme_dir(&config);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("certificates/site.json")), 0o600);
    let accounts: Vec<_> = std::fs::read_dir(dir.join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&accounts[0]), 0o600);
}

/// Waits until the series `name` at the metrics endpoint `url` has `value` (a count is made
/// when the look at the certificate is over, just after what it logs and stores).
async fn wait_metric(url: &str, name: &str, value: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = common::metric(url, name).await;
        if now == Some(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is {now:?}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The metric line `pingap_acme_orders_total{certificate="site",outcome="OUTCOME"}`.
fn orders(outcome: &str) -> String {
    format!("pingap_acme_orders_total{{certificate=\"site\",outcome=\"{outcome}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_down_is_retried_with_backoff_until_the_order_completes() {
    let tls_port = RefusingPort::new();
    let mut pebble = Pebble::prepare(Options {
        http_port: 0,
        tls_port: 0,
        validity_secs: None,
    });
    let config = format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n{}{}",
        plain_config(),
        acme_table(&pebble, &["down.acme.test"], "acme_retry_delay = '1s'\n")
    );
    let pingap = Pingap::start(&config);
    let metrics = pingap.metrics_url();

    // Refused connections: the waits after them double (1 s, 2 s, 4 s), never a loop.
    for (failures, wait) in [(1, 1), (2, 2), (3, 4)] {
        let line = pingap
            .output
            .wait_for_all(
                &["ACME order failed", &format!("failures={failures} ")],
                Duration::from_secs(20),
            )
            .unwrap_or_else(|| panic!("no failure {failures}:\n{}", pingap.output.text()));
        assert!(line.contains(&format!("retry_in_secs={wait}")), "{line}");
    }
    wait_metric(&metrics, &orders("failed"), 3.0).await;
    let record =
        std::fs::read_to_string(acme_dir(&pingap.config_path()).join("certificates/site.json"))
            .unwrap();
    assert!(record.contains("\"count\": 3"), "{record}");

    pebble.start_prepared(Options {
        http_port: pingap.addr("web").port(),
        tls_port: tls_port.addr.port(),
        validity_secs: None,
    });
    let chain = stored_chain(&pingap.config_path(), "site", ORDER_DEADLINE)
        .await
        .unwrap_or_else(|| panic!("no certificate stored:\n{}", pingap.output.text()));
    pebble::verify_chain(&chain, &pebble.issuing_root().await, "down.acme.test").unwrap();
    wait_metric(&metrics, &orders("issued"), 1.0).await;
    let failed = common::metric(&metrics, &orders("failed")).await.unwrap();
    assert!((3.0..=4.0).contains(&failed), "{failed} failures");
    let record =
        std::fs::read_to_string(acme_dir(&pingap.config_path()).join("certificates/site.json"))
            .unwrap();
    assert!(record.contains("\"failure\": null"), "{record}");
}

#[test]
fn etcd_keeps_records_beside_the_configuration_and_one_order_lock_at_a_time() {
    use pingap::config::etcd::{EtcdOptions, EtcdSource};
    use pingap::tls::acme::Storage;
    use pingap::tls::acme::storage::{CertificateRecord, Failure};
    let server = etcd_server::EtcdServer::start();
    let connect = || {
        let options = EtcdOptions::parse(&server.url("/edge"), &|_| None).unwrap();
        Storage::Etcd(EtcdSource::connect(options).unwrap())
    };
    let (one, two) = (connect(), connect());
    let record = CertificateRecord {
        issued: None,
        failure: Some(Failure {
            at: 7,
            count: 1,
            error: "refused".into(),
            directory: "https://ca.example/dir".into(),
            domains: vec!["a.example.com".into()],
        }),
    };
    one.put_certificate("site", &record).unwrap();
    assert_eq!(two.certificate("site").unwrap(), Some(record));
    assert_eq!(two.certificate("other").unwrap(), None);

    let held = one
        .try_lock("site", "one")
        .unwrap()
        .expect("the lock is free");
    assert!(two.try_lock("site", "two").unwrap().is_none());
    held.publish("challenges/tok", "answer").unwrap();
    assert_eq!(
        two.published("challenges/").unwrap(),
        [("tok".to_string(), "answer".to_string())]
    );
    // Released with the lock (its lease is revoked): the lock and what was published.
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let taken = loop {
        if let Some(lock) = two.try_lock("site", "two").unwrap() {
            break lock;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never released"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(two.published("challenges/").unwrap().is_empty());
    assert!(one.try_lock("site", "one").unwrap().is_none());
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_etcd_answer_the_challenges_another_one_published() {
    use pingap::config::etcd::{EtcdOptions, EtcdSource};
    use pingap::tls::acme::challenges::{Pending, PendingKind};
    use pingap::tls::acme::{Renewer, Storage, challenges};
    let server = etcd_server::EtcdServer::start();
    let connect = || {
        let options = EtcdOptions::parse(&server.url("/edge"), &|_| None).unwrap();
        Storage::Etcd(EtcdSource::connect(options).unwrap())
    };
    let (ordering, here) = tokio::task::block_in_place(|| (connect(), connect()));
    let renewer = Renewer::new(here, pingap::tls::CertificateStore::new());
    assert!(renewer.shares_challenges());
    let pending = Pending {
        kind: PendingKind::Http01,
        domain: "shared.acme.test".into(),
        token: "shared-token".into(),
        key_authorization: "shared-token.thumbprint".into(),
    };
    let path = "/.well-known/acme-challenge/shared-token";
    let lock = tokio::task::block_in_place(|| {
        let lock = ordering.try_lock("site", "other").unwrap().unwrap();
        lock.publish(
            "challenges/shared-token",
            &serde_json::to_string(&pending).unwrap(),
        )
        .unwrap();
        lock
    });
    assert_eq!(challenges().http01(path), None);
    renewer.mirror_published().await;
    assert_eq!(
        challenges().http01(path).as_deref(),
        Some("shared-token.thumbprint")
    );
    // The order is over: the lock and what it published are gone, and so is the answer.
    drop(lock);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while challenges().http01(path).is_some() {
        assert!(std::time::Instant::now() < deadline, "still answered");
        renewer.mirror_published().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts pingap on the configuration at the etcd URL `url`.
fn start_on_etcd(url: &str) -> Pingap {
    let mut start = common::command();
    start.arg("-c").arg(url);
    let mut pingap = Pingap::launch(start, tempfile::tempdir().unwrap());
    pingap.wait_started();
    pingap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_etcd_order_once_and_share_the_certificate() {
    use pingap::config::etcd::{EtcdOptions, EtcdSource};
    let server = etcd_server::EtcdServer::start();
    let url = server.url("/edge");
    let operator = tokio::task::block_in_place(|| {
        let operator = EtcdSource::connect(EtcdOptions::parse(&url, &|_| None).unwrap()).unwrap();
        let fallback = common::pki::Pki::new(&["fallback.test"]);
        let fallback = format!(
            "tls_cert = \"\"\"{}\"\"\"\ntls_key = \"\"\"{}\"\"\"\nis_default = true\n",
            fallback.cert_pem, fallback.key_pem
        );
        for (table, name, body) in [
            ("basic", None, "auto_reload = true\n"),
            ("metrics", None, "enabled = true\naddr = '127.0.0.1:0'\n"),
            ("servers", Some("web"), "addr = '127.0.0.1:0'\n"),
            (
                "servers",
                Some("secure"),
                "addr = '127.0.0.1:0'\ntls = true\n",
            ),
            ("certificates", Some("fallback"), fallback.as_str()),
        ] {
            operator.put_entity(table, name, Some(body), None).unwrap();
        }
        operator
    });
    let (a, b) = (start_on_etcd(&url), start_on_etcd(&url));
    // Pebble validates through the first instance only: when the second one orders, the first
    // answers the challenges it published.
    let (pebble, _tls_port) = pebble_for_http01(&a, None);
    let table = acme_table(&pebble, &["shared.acme.test"], "");
    let body = table.split_once('\n').unwrap().1.to_string();
    tokio::task::block_in_place(|| {
        operator
            .put_entity("certificates", Some("site"), Some(&body), None)
            .unwrap()
    });

    let deadline = std::time::Instant::now() + ORDER_DEADLINE;
    let chain = loop {
        let record =
            tokio::task::block_in_place(|| operator.data_get("_acme/certificates/site").unwrap());
        if let Some(record) = record {
            let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
            if let Some(chain) = record["issued"]["chain_pem"].as_str() {
                break chain.to_string();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing issued:\n{}\n{}",
            a.output.text(),
            b.output.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let root = pebble.issuing_root().await;
    pebble::verify_chain(&chain, &root, "shared.acme.test").unwrap();
    // Both serve it: the one that ordered at once, the other from the storage.
    wait_served(&a, "shared.acme.test", &root, &chain).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while served(&b, "shared.acme.test", &root).await.ok() != Some(ders(&chain)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the second instance does not serve it:\n{}",
            b.output.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = async |pingap: &Pingap, outcome: &str| {
        common::metric(&pingap.metrics_url(), &orders(outcome))
            .await
            .unwrap_or(0.0)
    };
    assert_eq!(
        count(&a, "issued").await + count(&b, "issued").await,
        1.0,
        "one order between them"
    );
    assert_eq!(count(&a, "failed").await + count(&b, "failed").await, 0.0);
    let ordered_by = if count(&a, "issued").await == 1.0 {
        "a"
    } else {
        "b"
    };
    eprintln!("instance {ordered_by} ordered");
    // One account between them too.
    let accounts = tokio::task::block_in_place(|| operator.data_list("_acme/accounts/").unwrap());
    assert_eq!(accounts.len(), 1);
}

/// Waits until the `secure` server presents `chain_pem` for `name`; panics after 5 s.
async fn wait_served(pingap: &Pingap, name: &str, root: &str, chain_pem: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let served = served(pingap, name, root).await;
        if served
            .as_ref()
            .is_ok_and(|served| *served == ders(chain_pem))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is not served ({served:?}):\n{}",
            pingap.output.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_is_answered_by_the_tls_server_and_the_certificate_served() {
    let pingap = Pingap::start(&plain_config());
    let http_port = RefusingPort::new();
    let pebble = Pebble::start(Options {
        http_port: http_port.addr.port(),
        tls_port: pingap.addr("secure").port(),
        validity_secs: None,
    });
    std::fs::write(
        pingap.config_path(),
        plain_config()
            + &acme_table(
                &pebble,
                &["alpn.acme.test"],
                "acme_challenge = 'tls-alpn-01'\n",
            ),
    )
    .unwrap();
    pingap.signal(Signal::SIGHUP);
    let chain = stored_chain(&pingap.config_path(), "site", ORDER_DEADLINE)
        .await
        .unwrap_or_else(|| panic!("no certificate stored:\n{}", pingap.output.text()));
    let root = pebble.issuing_root().await;
    pebble::verify_chain(&chain, &root, "alpn.acme.test").unwrap();
    wait_served(&pingap, "alpn.acme.test", &root, &chain).await;
    // Ordinary clients still negotiate h2 and http/1.1.
    for protocol in [&b"h2"[..], b"http/1.1"] {
        let (stream, _) = connect_alpn(&pingap, "alpn.acme.test", &[protocol])
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(protocol));
    }
    // The validation certificate went with the order: an acme-tls/1 handshake is refused.
    let refused = connect_alpn(&pingap, "alpn.acme.test", &[b"acme-tls/1"]).await;
    assert!(refused.is_err(), "an acme-tls/1 handshake after the order");
}

/// A TLS handshake with the `secure` server for `sni`, offering `alpn`.
async fn connect_alpn(
    pingap: &Pingap,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<
    (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        common::tls_client::Presented,
    ),
    String,
> {
    common::tls_client::connect(
        pingap.addr("secure"),
        common::tls_client::Options {
            sni: Some(sni),
            client: None,
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
        },
    )
    .await
}

/// Waits for a log line containing every one of `needles`; panics with the output after
/// `timeout`.
async fn wait_line(pingap: &Pingap, needles: &[&str], timeout: Duration) -> String {
    tokio::task::block_in_place(|| pingap.output.wait_for_all(needles, timeout))
        .unwrap_or_else(|| panic!("no line with {needles:?}:\n{}", pingap.output.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_at_a_third_of_the_lifetime_reaches_the_sni_store_after_the_directory_was_down() {
    const VALIDITY: u64 = 30;
    let pingap = Pingap::start(&format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n{}",
        plain_config()
    ));
    let metrics = pingap.metrics_url();
    let (mut pebble, _tls_port) = pebble_for_http01(&pingap, Some(VALIDITY));
    let config = format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n{}{}",
        plain_config(),
        acme_table(&pebble, &["renew.acme.test"], "acme_retry_delay = '1s'\n")
    );
    std::fs::write(pingap.config_path(), config).unwrap();
    pingap.signal(Signal::SIGHUP);
    let first = stored_chain(&pingap.config_path(), "site", ORDER_DEADLINE)
        .await
        .unwrap_or_else(|| panic!("no certificate stored:\n{}", pingap.output.text()));
    let first_root = pebble.issuing_root().await;
    wait_served(&pingap, "renew.acme.test", &first_root, &first).await;
    let issued_at = std::time::Instant::now();

    // The directory goes away before the renewal is due (two thirds of 30 s, about 20 s).
    pebble.stop();
    let failed = wait_line(
        &pingap,
        &["ACME order failed", "failures=2 "],
        Duration::from_secs(2 * VALIDITY),
    )
    .await;
    assert!(failed.contains("retry_in_secs=2"), "{failed}");
    let renewal_started = issued_at.elapsed();
    assert!(
        renewal_started > Duration::from_secs(VALIDITY / 2),
        "renewal started after {renewal_started:?}, too early for a third of {VALIDITY} s left"
    );
    wait_metric(&metrics, &orders("failed"), 2.0).await;
    // Meanwhile the certificate it has stays served.
    wait_served(&pingap, "renew.acme.test", &first_root, &first).await;

    // Back (as a fresh pebble, which has forgotten the account): the next try renews, and the
    // renewed certificate is what handshakes get, without a reload.
    pebble.restart();
    let root = pebble.issuing_root().await;
    wait_line(&pingap, &["certificate renewed"], Duration::from_secs(30)).await;
    let renewed = stored_chain_other_than(
        &pingap.config_path(),
        "site",
        &first,
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|| panic!("the renewal is not stored:\n{}", pingap.output.text()));
    pebble::verify_chain(&renewed, &root, "renew.acme.test").unwrap();
    wait_served(&pingap, "renew.acme.test", &root, &renewed).await;
    assert_eq!(
        common::metric(&metrics, &orders("renewed")).await,
        Some(1.0)
    );
    assert_eq!(common::metric(&metrics, &orders("issued")).await, Some(1.0));
    let failures = common::metric(&metrics, &orders("failed")).await.unwrap();
    assert!((2.0..=3.0).contains(&failures), "{failures} failures");
    let text = pingap.output.text();
    assert!(
        text.contains("no longer knows the stored ACME account"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_stored_certificate_and_orders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("pingap.toml");
    let base = format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n{}",
        plain_config()
    );
    std::fs::write(&config_path, &base).unwrap();
    let first = Pingap::start_path(&config_path);
    let (pebble, _tls_port) = pebble_for_http01(&first, None);
    std::fs::write(
        &config_path,
        base + &acme_table(&pebble, &["kept.acme.test"], ""),
    )
    .unwrap();
    first.signal(Signal::SIGHUP);
    let chain = stored_chain(&config_path, "site", ORDER_DEADLINE)
        .await
        .unwrap_or_else(|| panic!("no certificate stored:\n{}", first.output.text()));
    drop(first);

    let second = Pingap::start_path(&config_path);
    let root = pebble.issuing_root().await;
    wait_line(
        &second,
        &["serving the ACME certificate", "kept.acme.test"],
        Duration::from_secs(10),
    )
    .await;
    wait_served(&second, "kept.acme.test", &root, &chain).await;
    let metrics = second.metrics_url();
    for outcome in ["issued", "renewed", "failed"] {
        assert_eq!(common::metric(&metrics, &orders(outcome)).await, None);
    }
    let text = second.output.text();
    assert!(!text.contains("ordering a certificate"), "{text}");
    assert_eq!(
        std::fs::read_dir(acme_dir(&config_path).join("accounts"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_after_a_graceful_upgrade_waits_until_the_old_process_stops_accepting() {
    let pingap = Pingap::start(&plain_config());
    let (pebble, _tls_port) = pebble_for_http01(&pingap, None);
    // [metrics] is applied by a graceful upgrade: the new process orders, and for 5 s after
    // the handover the old one (which knows nothing of the order) accepts on the same sockets.
    std::fs::write(
        pingap.config_path(),
        format!(
            "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n{}{}",
            plain_config(),
            acme_table(&pebble, &["upgrade.acme.test"], "")
        ),
    )
    .unwrap();
    pingap.signal(Signal::SIGHUP);
    let chain = stored_chain(&pingap.config_path(), "site", ORDER_DEADLINE)
        .await
        .unwrap_or_else(|| panic!("no certificate stored:\n{}", pingap.output.text()));
    pebble::verify_chain(&chain, &pebble.issuing_root().await, "upgrade.acme.test").unwrap();
    let text = pingap.output.text();
    assert!(text.contains("graceful upgrade"), "{text}");
    assert!(!text.contains("ACME order failed"), "{text}");
}
