//! Traffic plugins through the binary: request size limits (plugin and location key).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, Pingap, client, raw_exchange};

fn config(backend: &Backend) -> String {
    format!(
        "[upstreams.echo]\naddrs = ['{}']\n\
         [locations.plugin]\nupstream = 'echo'\npath = '/plugin'\nplugins = ['small']\n\
         [locations.key]\nupstream = 'echo'\npath = '/key'\nclient_max_body_size = '1KiB'\n\
         [plugins.small]\ntype = 'request_size'\nmax_size = 1000\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['plugin', 'key']\n",
        backend.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_lengths_over_the_limit_get_413_before_anything_is_sent() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend));
    for (path, limit) in [("/plugin", 1000), ("/key", 1024)] {
        let at_limit = client()
            .post(pingap.url("main", path))
            .body(vec![b'x'; limit])
            .send()
            .await
            .unwrap();
        assert_eq!(at_limit.status(), 200, "{path}");
        let over = client()
            .post(pingap.url("main", path))
            .header("accept", "application/json")
            .body(vec![b'x'; limit + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(over.status(), 413, "{path}");
        let body: serde_json::Value = over.json().await.unwrap();
        assert_eq!(
            body["message"],
            format!("the request body is larger than {limit} bytes")
        );
    }
    assert_eq!(
        backend.hits(),
        2,
        "only the bodies within the limit reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_cut_at_the_limit() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend));
    let mut request =
        b"POST /plugin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..5 {
        request.extend_from_slice(b"190\r\n");
        request.extend_from_slice(&[b'y'; 400]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = raw_exchange(pingap.addr("main"), &request).await;
    assert_eq!(status, 413);
    assert!(
        backend.received_bytes() <= 1000,
        "the backend received {} bytes",
        backend.received_bytes()
    );
}
