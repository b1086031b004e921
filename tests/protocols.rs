//! Protocols through the binary: h2c on plain listeners, HTTP/2 and h2c to upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::backend::Echo;
use common::{Backend, Pingap, check_config, client, client_builder};

fn config(backend: &Backend, upstream_extra: &str, server_extra: &str) -> String {
    format!(
        "[upstreams.echo]\naddrs = ['{}']\n{upstream_extra}\n\
         [locations.all]\nupstream = 'echo'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['all']\n{server_extra}\n",
        backend.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_listeners_speak_http2_and_http1_on_one_port() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, "", "h2c = true"));
    let h2 = client_builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(pingap.url("main", "/x")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(echo.path, "/x");
    assert_eq!(
        echo.version, "HTTP/1.1",
        "HTTP/1.1 to the upstream by default"
    );

    let response = client().get(pingap.url("main", "/y")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_can_be_reached_over_h2c() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, "protocol = 'h2'", ""));
    for _ in 0..3 {
        let echo: Echo = client()
            .post(pingap.url("main", "/h2"))
            .body("over h2c")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo.version, "HTTP/2.0");
        assert_eq!(echo.body_len, 8);
    }
}

#[test]
fn protocol_keys_are_checked() {
    let (status, output) = check_config(
        "[upstreams.u]\naddrs = ['127.0.0.1:9']\nprotocol = 'h3'\n\
         [servers.s]\naddr = '127.0.0.1:0'\n",
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("upstreams.u.protocol: unknown variant `h3`"),
        "{output}"
    );
    let (status, output) = check_config("[servers.s]\naddr = '127.0.0.1:0'\nenable_h2 = false\n");
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("servers.s.enable_h2: is for TLS listeners"),
        "{output}"
    );
}
