//! etcd as the configuration source, through the binary, against a real private etcd: import and
//! export, serving from `-c etcd://…`, applying watched changes (one entity written on its own, a
//! whole import), rejecting a bad one, the history under `PREFIX/_history/`, staying up while etcd
//! is away, and refusing to start when etcd does not answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/etcd.rs"]
mod etcd_server;

use std::time::{Duration, Instant};

use common::backend::Echo;
use common::{Backend, Pingap, command, run_to_exit};
use etcd_server::EtcdServer;
use pingap::config::etcd::{EtcdOptions, EtcdSource};

fn config(backend: &Backend) -> String {
    format!(
        "[basic]\nauto_reload = true\n\
         [metrics]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
        backend.addr
    )
}

fn import(url: &str, text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("import.toml");
    std::fs::write(&file, text).unwrap();
    let mut import = command();
    import.arg("import").arg("-c").arg(url).arg(&file);
    let (status, output) = run_to_exit(import);
    (status.success(), output)
}

async fn backend_of(url: &str) -> Option<String> {
    let response = common::client().get(url).send().await.ok()?;
    let echo: Echo = response.json().await.ok()?;
    Some(echo.backend)
}

async fn serves(url: &str, backend: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if backend_of(url).await.as_deref() == Some(backend) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingap_serves_and_follows_a_configuration_in_etcd() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut etcd = EtcdServer::start();
    let url = etcd.url("/edge");

    let (ok, output) = import(&url, &config(&a));
    assert!(ok, "{output}");
    assert!(output.contains("Imported"), "{output}");
    let mut invalid = command();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[locations.x]\nupstream = 'nope'\n",
    )
    .unwrap();
    invalid
        .arg("import")
        .arg("-c")
        .arg(&url)
        .arg(dir.path().join("bad.toml"));
    let (status, output) = run_to_exit(invalid);
    assert!(!status.success());
    assert!(output.contains("no upstream named \"nope\""), "{output}");

    let mut start = command();
    start.arg("-c").arg(&url);
    let mut pingap = Pingap::launch(start, tempfile::tempdir().unwrap());
    pingap.wait_started();
    let metrics = pingap.metrics_url();
    let main = pingap.url("main", "/");
    assert_eq!(backend_of(&main).await.as_deref(), Some("a"));
    assert_eq!(
        common::metric(&metrics, "pingap_config_source_up").await,
        Some(1.0)
    );

    // One entity written on its own, as an operator would with etcdctl.
    let operator = EtcdSource::connect(EtcdOptions::parse(&url, &|_| None).unwrap()).unwrap();
    operator
        .put_entity(
            "upstreams",
            Some("api"),
            Some(&format!("addrs = ['{}']\n", b.addr)),
            None,
        )
        .unwrap();
    assert!(serves(&main, "b").await, "{}", pingap.output.text());

    // A change that does not check is rejected, naming the key, and the running one stays.
    operator
        .put_entity("locations", Some("api"), Some("upstream = 'gone'\n"), None)
        .unwrap();
    let rejected = tokio::task::block_in_place(|| {
        pingap
            .output
            .wait_for("(etcd watch) rejected", Duration::from_secs(15))
    })
    .unwrap_or_else(|| panic!("{}", pingap.output.text()));
    assert!(rejected.contains("keeping the running one"), "{rejected}");
    let reason = pingap
        .output
        .wait_for("no upstream named \"gone\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", pingap.output.text()));
    assert!(reason.contains("locations/api"), "{reason}");
    assert_eq!(backend_of(&main).await.as_deref(), Some("b"));

    // Export gives the whole configuration back as one document.
    let mut export = command();
    export.arg("export").arg("-c").arg(&url);
    let (status, exported) = run_to_exit(export);
    assert!(status.success(), "{exported}");
    assert!(exported.contains("upstream = 'gone'"), "{exported}");
    assert!(exported.contains(&b.addr.to_string()), "{exported}");

    // etcd goes away: the configuration stays and the metric says so.
    etcd.kill();
    assert!(
        tokio::task::block_in_place(|| pingap.output.wait_for(
            "is unreachable, keeping the running configuration",
            Duration::from_secs(20)
        ))
        .is_some(),
        "{}",
        pingap.output.text()
    );
    assert_eq!(
        common::metric(&metrics, "pingap_config_source_up").await,
        Some(0.0)
    );
    assert_eq!(backend_of(&main).await.as_deref(), Some("b"));

    // It comes back; a change made then is applied.
    etcd.restart();
    assert!(
        tokio::task::block_in_place(|| pingap
            .output
            .wait_for("answers again", Duration::from_secs(30)))
        .is_some(),
        "{}",
        pingap.output.text()
    );
    assert_eq!(
        common::metric(&metrics, "pingap_config_source_up").await,
        Some(1.0)
    );
    let (ok, output) = import(&url, &config(&a));
    assert!(ok, "{output}");
    assert!(serves(&main, "a").await, "{}", pingap.output.text());

    // The history is kept in etcd.
    let mut history = command();
    history.arg("history").arg("-c").arg(&url);
    let (status, listing) = run_to_exit(history);
    assert!(status.success(), "{listing}");
    let versions: Vec<&str> = listing.lines().skip(1).collect();
    assert_eq!(versions.len(), 3, "{listing}");
    assert!(versions[0].contains("start"), "{listing}");
    assert!(versions[1].contains("etcd watch"), "{listing}");
    assert!(
        versions[2].contains("same configuration as version 1"),
        "{listing}"
    );
    let mut diff = command();
    diff.arg("diff").arg("-c").arg(&url).arg("1").arg("2");
    let (status, changes) = run_to_exit(diff);
    assert!(status.success(), "{changes}");
    assert!(changes.contains("~ upstreams.api (changed)"), "{changes}");
}

#[test]
fn an_unreachable_etcd_at_start_ends_it_with_the_reason() {
    let port = etcd_server::free_port();
    let mut start = command();
    start
        .arg("-c")
        .arg(format!("etcd://127.0.0.1:{port}/edge?connect_timeout=1s"));
    let began = Instant::now();
    let (status, output) = run_to_exit(start);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&format!("127.0.0.1:{port}")), "{output}");
    assert!(output.contains("unreachable"), "{output}");
    assert!(began.elapsed() < Duration::from_secs(10));
}
