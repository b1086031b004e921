//! `pingap::config::etcd::EtcdSource` against a real, private etcd (Debian's etcd-server): reads
//! and writes of snapshots, compare-and-swap conflicts, watches through compaction and outages,
//! and the history area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/etcd.rs"]
mod etcd_server;

use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use etcd_server::{EtcdServer, Tls};
use pingap::config::Snapshot;
use pingap::config::etcd::{EtcdError, EtcdOptions, EtcdSource, WatchEvent, split_entities};

/// How long a watch event may take to arrive.
const EVENT_DEADLINE: Duration = Duration::from_secs(15);

const CONFIG: &str = r#"
[basic]
name = "edge"

[upstreams.app]
addrs = ["127.0.0.1:8080"]

[locations.api]
path = "/api"
upstream = "app"

[servers.web]
addr = "127.0.0.1:6188"
locations = ["api"]
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn connect(server: &EtcdServer, prefix: &str) -> EtcdSource {
    let options = EtcdOptions::parse(
        &format!("{}?timeout=3s&connect_timeout=2s", server.url(prefix)),
        &no_env,
    )
    .unwrap();
    EtcdSource::connect(options).unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
}

/// A raw etcd client on a runtime of the test's own, for what the source does not do.
struct Raw {
    runtime: tokio::runtime::Runtime,
    client: etcd_client::Client,
}

impl Raw {
    fn new(server: &EtcdServer) -> Raw {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(etcd_client::Client::connect([server.endpoint()], None))
            .unwrap();
        Raw { runtime, client }
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        let response = self
            .runtime
            .block_on(self.client.put(key, value, None))
            .unwrap();
        response.header().unwrap().revision()
    }

    fn compact(&mut self, revision: i64) {
        self.runtime
            .block_on(self.client.compact(revision, None))
            .unwrap();
    }
}

/// Watches from `after` and returns the events as they come.
fn watch(source: &EtcdSource, after: i64) -> (pingap::config::etcd::WatchGuard, Events) {
    let (sender, receiver) = channel();
    let sender = std::sync::Mutex::new(sender);
    let guard = source.watch(
        after,
        Box::new(move |event| {
            let _ = sender.lock().unwrap().send(event);
        }),
    );
    (guard, Events(receiver))
}

struct Events(Receiver<WatchEvent>);

impl Events {
    /// The next event that `wanted` accepts (others are skipped), within the deadline.
    fn wait(&self, what: &str, wanted: impl Fn(&WatchEvent) -> bool) -> WatchEvent {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no {what} within {EVENT_DEADLINE:?}"));
            match self.0.recv_timeout(left) {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => continue,
                Err(_) => panic!("no {what} within {EVENT_DEADLINE:?}"),
            }
        }
    }

    /// Every event that arrives within `quiet`.
    fn drain(&self, quiet: Duration) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        while let Ok(event) = self.0.recv_timeout(quiet) {
            events.push(event);
        }
        events
    }
}

fn changed_at_least(revision: i64) -> impl Fn(&WatchEvent) -> bool {
    move |event| matches!(event, WatchEvent::Changed { revision: r } if *r >= revision)
}

#[test]
fn an_imported_snapshot_reads_back_as_one_document_per_entity() {
    let server = EtcdServer::start();
    let source = connect(&server, "/pingap");
    assert_eq!(source.to_string(), server.url("/pingap"));

    let imported = Snapshot::single("pingap.toml", CONFIG);
    let written = source.write(&imported, None).unwrap();
    // History and other `_` keys are not configuration.
    source.history_put(1, "an old version").unwrap();
    let mut raw = Raw::new(&server);
    raw.put("/pingap/_acme/account", "{}");
    raw.put("/pingapx/basic", "name = \"another prefix\"");

    let (snapshot, revision) = source.read().unwrap();
    assert!(revision > written, "{revision} > {written}");
    let names: Vec<&str> = snapshot.documents().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["basic", "locations/api", "servers/web", "upstreams/app"]
    );
    assert_eq!(
        snapshot.document("servers/web"),
        Some("[servers.web]\naddr = \"127.0.0.1:6188\"\nlocations = [\"api\"]\n")
    );
    assert_eq!(
        split_entities(&snapshot).unwrap(),
        split_entities(&imported).unwrap()
    );
    // The same configuration as the file.
    let from_etcd = snapshot.load(&no_env).unwrap();
    let from_file = imported.load(&no_env).unwrap();
    assert_eq!(
        format!("{:?}", from_etcd.config),
        format!("{:?}", from_file.config)
    );

    // Writing what was read changes nothing, and the revisions say so.
    let before = source.mod_revisions().unwrap();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["basic", "locations/api", "servers/web", "upstreams/app"]
    );
    source.write(&snapshot, Some(revision)).unwrap();
    assert_eq!(source.mod_revisions().unwrap(), before);

    // A write replaces: what the snapshot lacks is deleted.
    let smaller = Snapshot::single("basic", "[basic]\nname = \"small\"\n");
    source.write(&smaller, None).unwrap();
    let (snapshot, _) = source.read().unwrap();
    assert_eq!(snapshot, smaller);
    assert_eq!(source.history_list().unwrap(), [1]);
}

#[test]
fn values_that_are_not_toml_or_keys_outside_the_layout_are_named() {
    let server = EtcdServer::start();
    let source = connect(&server, "/p");
    let mut raw = Raw::new(&server);

    raw.put("/p/servers/web", "addr = \"127.0.0.1:1\"\nlocations = [");
    let (snapshot, _) = source.read().unwrap();
    let error = snapshot.load(&no_env).err().unwrap().to_string();
    assert!(
        error.contains("servers/web:3") && error.contains("invalid TOML"),
        "{error}"
    );

    raw.put("/p/servers/a/b", "");
    match source.read() {
        Err(EtcdError::Invalid { key, message }) => {
            assert_eq!(key, "/p/servers/a/b");
            assert!(message.contains("not a configuration key"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // put_entity refuses what cannot be read back.
    for (table, name, body) in [
        ("servers", Some("web"), "addr = "),
        ("nope", None, "x = 1"),
        ("servers", None, "x = 1"),
        ("servers", Some("a/b"), "x = 1"),
    ] {
        let result = source.put_entity(table, name, Some(body), None);
        assert!(
            matches!(result, Err(EtcdError::Invalid { .. })),
            "{table} {name:?}: {result:?}"
        );
    }
}

#[test]
fn put_entity_compares_mod_revisions() {
    let server = EtcdServer::start();
    let source = connect(&server, "/pingap");

    let created = source
        .put_entity(
            "servers",
            Some("web"),
            Some("addr = \"127.0.0.1:80\""),
            Some(0),
        )
        .unwrap();
    assert_eq!(source.mod_revisions().unwrap()["servers/web"], created);

    // Must not exist yet, but does.
    match source.put_entity("servers", Some("web"), Some("addr = \"x\""), Some(0)) {
        Err(EtcdError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (key.as_str(), expected, actual),
                ("/pingap/servers/web", 0, created)
            );
        }
        other => panic!("{other:?}"),
    }

    let updated = source
        .put_entity(
            "servers",
            Some("web"),
            Some("addr = \"127.0.0.1:81\""),
            Some(created),
        )
        .unwrap();
    assert!(updated > created);

    // A stale revision.
    let stale = source.put_entity("servers", Some("web"), None, Some(created));
    let message = stale.as_ref().err().map(ToString::to_string);
    assert!(
        matches!(stale, Err(EtcdError::Conflict { expected, actual, .. }) if expected == created && actual == updated),
        "{message:?}"
    );
    assert_eq!(
        message.unwrap(),
        format!(
            "etcd key /pingap/servers/web changed since it was read (expected mod_revision \
             {created}, it is {updated}): read it again and retry"
        )
    );

    // The right revision deletes; unconditional puts and single tables work too.
    source
        .put_entity("servers", Some("web"), None, Some(updated))
        .unwrap();
    source
        .put_entity("basic", None, Some("name = \"x\""), None)
        .unwrap();
    let revisions = source.mod_revisions().unwrap();
    assert_eq!(revisions.keys().collect::<Vec<_>>(), ["basic"]);
    // Deleting what is gone, expecting it to be there, is a conflict with actual 0.
    match source.put_entity("servers", Some("web"), None, Some(updated)) {
        Err(EtcdError::Conflict { actual: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn write_with_a_stale_revision_is_a_conflict() {
    let server = EtcdServer::start();
    let source = connect(&server, "/pingap");
    let first = source
        .write(&Snapshot::single("pingap.toml", CONFIG), None)
        .unwrap();

    // Only history changes after `first`: not a conflict.
    source.history_put(7, "v7").unwrap();
    let (snapshot, _) = source.read().unwrap();
    let second = source.write(&snapshot, Some(first)).unwrap();

    // An entity changed after it was read.
    let changed = source
        .put_entity(
            "upstreams",
            Some("app"),
            Some("addrs = [\"127.0.0.1:9\"]"),
            None,
        )
        .unwrap();
    match source.write(&snapshot, Some(second)) {
        Err(EtcdError::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!(
            (key.as_str(), expected, actual),
            ("/pingap/upstreams/app", second, changed)
        ),
        other => panic!("{other:?}"),
    }

    // An entity deleted after it was read.
    let (snapshot, read_at) = source.read().unwrap();
    source
        .put_entity("locations", Some("api"), None, None)
        .unwrap();
    match source.write(&snapshot, Some(read_at)) {
        Err(EtcdError::Conflict { key, actual: 0, .. }) => {
            assert_eq!(key, "/pingap/locations/api")
        }
        other => panic!("{other:?}"),
    }

    // An entity created after it was read.
    let (snapshot, read_at) = source.read().unwrap();
    let created = source
        .put_entity("plugins", Some("new"), Some("category = \"x\""), Some(0))
        .unwrap();
    match source.write(&snapshot, Some(read_at)) {
        Err(EtcdError::Conflict { key, actual, .. }) => {
            assert_eq!((key.as_str(), actual), ("/pingap/plugins/new", created))
        }
        other => panic!("{other:?}"),
    }

    // Up to date: it goes through, and the store holds exactly the snapshot.
    let (_, now) = source.read().unwrap();
    source.write(&snapshot, Some(now)).unwrap();
    assert_eq!(source.read().unwrap().0, snapshot);
}

#[test]
fn a_watch_reports_configuration_changes_only() {
    let server = EtcdServer::start();
    let source = connect(&server, "/pingap");
    let (_, start) = source.read().unwrap();
    let (guard, events) = watch(&source, start);

    let revision = source
        .put_entity("basic", None, Some("name = \"one\""), None)
        .unwrap();
    assert_eq!(
        events.wait("a change", changed_at_least(revision)),
        WatchEvent::Changed { revision }
    );

    // `_history/` keys are not configuration: nothing is reported for them.
    source.history_put(1, "v1").unwrap();
    source.history_delete(1).unwrap();
    let mut raw = Raw::new(&server);
    raw.put("/pingap/_acme/x", "y");
    assert_eq!(events.drain(Duration::from_millis(500)), []);

    // A whole write is one change.
    let written = source
        .write(&Snapshot::single("pingap.toml", CONFIG), None)
        .unwrap();
    assert_eq!(
        events.wait("the write", |_| true),
        WatchEvent::Changed { revision: written }
    );
    assert_eq!(events.drain(Duration::from_millis(300)), []);

    // Once the guard is dropped, nothing more.
    drop(guard);
    source
        .put_entity("basic", None, Some("name = \"two\""), None)
        .unwrap();
    assert_eq!(events.drain(Duration::from_millis(500)), []);
}

#[test]
fn a_watch_from_a_compacted_revision_reports_it_and_goes_on() {
    let server = EtcdServer::start();
    let source = connect(&server, "/pingap");
    let (_, old) = source.read().unwrap();
    let mut last = 0;
    for n in 0..5 {
        last = source
            .put_entity("basic", None, Some(&format!("name = \"v{n}\"")), None)
            .unwrap();
    }
    let mut raw = Raw::new(&server);
    raw.compact(last);

    let (_guard, events) = watch(&source, old);
    match events.wait("the compaction", |event| {
        matches!(event, WatchEvent::Compacted { .. })
    }) {
        WatchEvent::Compacted { compact_revision } => assert_eq!(compact_revision, last),
        other => panic!("{other:?}"),
    }
    // The caller re-reads now; the watch goes on from there.
    let (snapshot, _) = source.read().unwrap();
    assert_eq!(snapshot.document("basic"), Some("[basic]\nname = \"v4\"\n"));
    let revision = source
        .put_entity("basic", None, Some("name = \"after\""), None)
        .unwrap();
    events.wait("a change after the compaction", changed_at_least(revision));
    // The compaction is reported once.
    assert!(
        !events
            .drain(Duration::from_millis(500))
            .iter()
            .any(|event| matches!(event, WatchEvent::Compacted { .. }))
    );
}

#[test]
fn a_watch_reports_an_outage_and_the_changes_made_during_it() {
    let mut server = EtcdServer::start();
    let source = connect(&server, "/pingap");
    let (_, start) = source.read().unwrap();
    let (_guard, events) = watch(&source, start);
    let revision = source
        .put_entity("basic", None, Some("name = \"before\""), None)
        .unwrap();
    events.wait("a change", changed_at_least(revision));

    server.kill();
    match events.wait("Unreachable", |event| {
        matches!(event, WatchEvent::Unreachable(_))
    }) {
        WatchEvent::Unreachable(reason) => {
            assert!(reason.contains(&server.endpoint()), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Operations fail, naming the endpoint, within their timeout.
    let began = Instant::now();
    match source.read() {
        Err(EtcdError::Unreachable { endpoints, .. }) => {
            assert_eq!(endpoints, server.endpoint())
        }
        other => panic!("{other:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    server.restart();
    events.wait("Reachable", |event| *event == WatchEvent::Reachable);
    let revision = source
        .put_entity("basic", None, Some("name = \"after\""), None)
        .unwrap();
    events.wait("a change after the outage", changed_at_least(revision));

    // A change made while the watch is cut off is reported once it is back.
    server.kill();
    events.wait("Unreachable again", |event| {
        matches!(event, WatchEvent::Unreachable(_))
    });
    server.restart();
    let mut raw = Raw::new(&server);
    let during = raw.put("/pingap/servers/web", "addr = \"127.0.0.1:1\"");
    events.wait("the change made meanwhile", changed_at_least(during));
}

#[test]
fn connecting_where_nothing_listens_fails_within_the_connect_timeout() {
    let port = etcd_server::free_port();
    let options = EtcdOptions::parse(
        &format!("etcd://127.0.0.1:{port}/pingap?connect_timeout=1s"),
        &no_env,
    )
    .unwrap();
    let began = Instant::now();
    match EtcdSource::connect(options) {
        Err(error @ EtcdError::Unreachable { .. }) => {
            let message = error.to_string();
            assert!(message.contains("Connection refused"), "{message}");
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_millis(2500),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn sync_calls_work_from_inside_another_runtime() {
    let server = EtcdServer::start();
    let url = server.url("/pingap");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let source = EtcdSource::connect(EtcdOptions::parse(&url, &no_env).unwrap()).unwrap();
        source
            .put_entity("basic", None, Some("name = \"x\""), None)
            .unwrap();
        assert_eq!(source.read().unwrap().0.len(), 1);
        // Dropping the last clone inside a runtime must not panic or block.
        drop(source);
    });
}

#[test]
fn history_numbers_are_never_overwritten() {
    let server = EtcdServer::start();
    let source = connect(&server, "/pingap");
    assert_eq!(source.history_list().unwrap(), Vec::<u64>::new());
    for (number, value) in [(2, "two"), (10, "ten"), (1, "one")] {
        source.history_put(number, value).unwrap();
    }
    assert_eq!(source.history_list().unwrap(), [1, 2, 10]);
    assert_eq!(source.history_get(10).unwrap().as_deref(), Some("ten"));
    assert_eq!(source.history_get(3).unwrap(), None);
    match source.history_put(2, "again") {
        Err(EtcdError::Conflict {
            key, expected: 0, ..
        }) => {
            assert_eq!(key, "/pingap/_history/000000000002")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(source.history_get(2).unwrap().as_deref(), Some("two"));
    source.history_delete(2).unwrap();
    source.history_delete(2).unwrap();
    assert_eq!(source.history_list().unwrap(), [1, 10]);
    // History is not configuration.
    assert!(source.read().unwrap().0.is_empty());
    assert!(source.mod_revisions().unwrap().is_empty());
}

#[test]
fn the_watch_callback_may_use_the_source() {
    let server = EtcdServer::start();
    let source = connect(&server, "/pingap");
    let (_, start) = source.read().unwrap();
    let (sender, receiver) = channel();
    let sender = std::sync::Mutex::new(sender);
    let reader = source.clone();
    let _guard = source.watch(
        start,
        Box::new(move |event| {
            if let WatchEvent::Changed { .. } = event {
                // A synchronous call back into the source, from the watch's own runtime.
                let _ = sender
                    .lock()
                    .unwrap()
                    .send(reader.read().map(|(s, r)| (s.len(), r)));
            }
        }),
    );
    let revision = source
        .put_entity("basic", None, Some("name = \"x\""), None)
        .unwrap();
    let (documents, read_at) = receiver.recv_timeout(EVENT_DEADLINE).unwrap().unwrap();
    assert_eq!(documents, 1);
    assert!(read_at >= revision);
}

#[test]
fn users_and_passwords_authenticate() {
    let server = EtcdServer::start();
    let mut raw = Raw::new(&server);
    raw.runtime.block_on(async {
        raw.client
            .user_add("root", "root-secret", None)
            .await
            .unwrap();
        raw.client.user_grant_role("root", "root").await.unwrap();
        raw.client.auth_enable().await.unwrap();
    });
    let url = |password: &str| {
        format!(
            "{}?user=root&password={password}&connect_timeout=2s",
            server.url("/pingap")
        )
    };
    let source = EtcdSource::connect(EtcdOptions::parse(&url("root-secret"), &no_env).unwrap())
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    source
        .put_entity("basic", None, Some("name = \"x\""), None)
        .unwrap();
    assert_eq!(source.read().unwrap().0.len(), 1);
    let (_, start) = source.read().unwrap();
    let (_guard, events) = watch(&source, start);
    let revision = source
        .put_entity("basic", None, Some("name = \"y\""), None)
        .unwrap();
    events.wait(
        "a change seen by an authenticated watch",
        changed_at_least(revision),
    );

    match EtcdSource::connect(EtcdOptions::parse(&url("wrong"), &no_env).unwrap()) {
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("authentication failed"), "{message}");
            assert!(!message.contains("wrong"), "{message}");
        }
        Ok(source) => panic!("connected with a wrong password: {source}"),
    }
}

#[test]
fn tls_with_a_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "etcd test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: &[&str], file: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let cert_path = dir.path().join(format!("{file}.pem"));
        let key_path = dir.path().join(format!("{file}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let (server_cert, server_key) = leaf(&["127.0.0.1", "localhost"], "server");
    let (client_cert, client_key) = leaf(&["pingap"], "client");
    let server = EtcdServer::start_tls(Tls {
        ca: ca_path.clone(),
        cert: server_cert,
        key: server_key,
    });

    let url = format!(
        "{}?ca={}&cert={}&key={}&connect_timeout=3s",
        server.url("/pingap"),
        ca_path.display(),
        client_cert.display(),
        client_key.display()
    );
    let source = EtcdSource::connect(EtcdOptions::parse(&url, &no_env).unwrap())
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let revision = source
        .put_entity("basic", None, Some("name = \"tls\""), None)
        .unwrap();
    assert_eq!(source.mod_revisions().unwrap()["basic"], revision);

    // Without a client certificate etcd refuses the handshake.
    let url = format!(
        "{}?ca={}&connect_timeout=2s",
        server.url("/pingap"),
        ca_path.display()
    );
    assert!(EtcdSource::connect(EtcdOptions::parse(&url, &no_env).unwrap()).is_err());
    // A CA file that is not there is named.
    let url = format!("{}?ca=/nonexistent/ca.pem", server.url("/pingap"));
    match EtcdSource::connect(EtcdOptions::parse(&url, &no_env).unwrap()) {
        Err(EtcdError::InvalidUrl(message)) => {
            assert!(message.contains("/nonexistent/ca.pem"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
