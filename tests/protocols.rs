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

/// With work stealing off (the default), each worker thread keeps its own HTTP/2 upstream
/// connections: the requests of one h2c client connection (on one thread) share one, and
/// client connections, which pingora places on the two threads at random, are served over at
/// least one per thread. The chance that 24 client connections all land on one thread is 2^-23.
/// (A request may arrive before the previous one on its thread has released its upstream
/// connection, and then opens another; the upper bound allows for that.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_thread_keeps_its_own_http2_upstream_connection() {
    use std::collections::BTreeSet;
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&format!(
        "[basic]\nthreads = 2\n{}",
        config(&backend, "protocol = 'h2'", "h2c = true")
    ));
    async fn upstream_connection(client: &reqwest::Client, url: String) -> String {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let from = response.headers()["x-echo-from"]
            .to_str()
            .unwrap()
            .to_string();
        let echo: Echo = response.json().await.unwrap();
        assert_eq!(echo.version, "HTTP/2.0");
        from
    }
    // HTTP/2 to pingap too: every request on one client connection.
    let one_client = client_builder().http2_prior_knowledge().build().unwrap();
    let mut one_connection = BTreeSet::new();
    for _ in 0..5 {
        one_connection.insert(upstream_connection(&one_client, pingap.url("main", "/one")).await);
    }
    assert_eq!(
        one_connection.len(),
        1,
        "one client connection's requests shared one upstream connection: {one_connection:?}"
    );
    let mut all = one_connection;
    for _ in 0..24 {
        // A new client each time: a new client connection, placed on either thread.
        all.insert(upstream_connection(&client(), pingap.url("main", "/many")).await);
    }
    assert!(
        all.len() >= 2,
        "each of the two threads opened an upstream connection of its own: {all:?}"
    );
    assert!(
        all.len() <= 6,
        "each thread reused its upstream connections: {all:?}"
    );
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

mod streaming {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;

    use super::common::backend::{Echo, FNV_START, fnv_update, text_body};
    use super::common::{Backend, Pingap, client};
    use super::config;

    const CHUNK: usize = 64 * 1024;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_reach_the_client_before_the_backend_finishes() {
        let backend = Backend::start("b").await;
        let pingap = Pingap::start(&config(&backend, "", ""));
        let response = client()
            .get(pingap.url("main", "/events"))
            .header("x-echo-stream-bytes", (2 * CHUNK).to_string())
            .header("x-echo-content-type", "text/event-stream")
            .header("x-echo-hold", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = response.bytes_stream();
        // The backend holds its second chunk until released: the first must already be here.
        let mut first = 0;
        while first < CHUNK {
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("the first chunk arrives while the backend holds the rest")
                .unwrap()
                .unwrap();
            first += chunk.len();
        }
        assert_eq!(first, CHUNK);
        backend.release();
        let mut rest = 0;
        while let Some(chunk) = stream.next().await {
            rest += chunk.unwrap().len();
        }
        assert_eq!(rest, CHUNK);
    }

    /// Peak resident memory of a process, in bytes.
    fn peak_rss(pid: i32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }

    /// Bound on the proxy's peak RSS after streaming 200 MB each way (documented in the README).
    const PEAK_RSS_BOUND: u64 = 64 * 1024 * 1024;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hundred_megabytes_each_way_in_bounded_memory() {
        const SIZE: usize = 200 * 1024 * 1024;
        let backend = Backend::start("b").await;
        let pingap = Pingap::start(&config(&backend, "", ""));

        // Upload: a body generated as it is sent.
        let chunk = Bytes::from(text_body(CHUNK));
        let chunks = futures_util::stream::iter(
            (0..SIZE / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        );
        let echo: Echo = client()
            .put(pingap.url("main", "/upload"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected =
            (0..SIZE / CHUNK).fold(FNV_START, |hash, _| fnv_update(hash, &text_body(CHUNK)));
        assert_eq!(echo.body_len, SIZE);
        assert_eq!(echo.body_fnv, expected);

        // Download: a streamed body without a length.
        let response = client()
            .get(pingap.url("main", "/download"))
            .header("x-echo-stream-bytes", SIZE.to_string())
            .send()
            .await
            .unwrap();
        let (mut len, mut hash) = (0, FNV_START);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            len += chunk.len();
            hash = fnv_update(hash, &chunk);
        }
        assert_eq!(len, SIZE);
        assert_eq!(hash, expected);

        let peak = peak_rss(pingap.pid());
        println!(
            "peak RSS after 200 MB up and down: {} MiB",
            peak / 1024 / 1024
        );
        assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB", peak / 1024 / 1024);
    }
}

mod websocket {
    use std::time::{Duration, Instant};

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::common::Pingap;
    use super::common::websocket::WsBackend;

    fn config(ws: &WsBackend, location_extra: &str) -> String {
        format!(
            "[upstreams.echo]\naddrs = ['{}']\n\
             [locations.ws]\nupstream = 'echo'\n{location_extra}\n\
             [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['ws']\n",
            ws.addr
        )
    }

    async fn next(
        socket: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer within 10 s")
            .and_then(Result::ok)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_binary_a_mebibyte_and_close_frames_pass_through() {
        let ws = WsBackend::start().await;
        let pingap = Pingap::start(&config(&ws, ""));
        let url = format!("ws://{}/chat", pingap.addr("main"));
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for message in [
            Message::text("hello"),
            Message::binary(vec![0u8, 1, 2, 255]),
            Message::binary(big),
        ] {
            socket.send(message.clone()).await.unwrap();
            assert_eq!(next(&mut socket).await, Some(message));
        }
        socket
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "bye".into(),
            })))
            .await
            .unwrap();
        match next(&mut socket).await {
            Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected the backend's close frame, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_websocket_is_closed_after_websocket_idle_timeout() {
        let ws = WsBackend::start().await;
        let pingap = Pingap::start(&config(&ws, "websocket_idle_timeout = '300ms'"));
        let url = format!("ws://{}/chat", pingap.addr("main"));
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        // Activity keeps it open past the timeout.
        let mut last_activity = Instant::now();
        for i in 0..4 {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            socket.send(Message::text("ping")).await.unwrap();
            assert_eq!(
                next(&mut socket).await,
                Some(Message::text("ping")),
                "round {i} at {:?}",
                last_activity.elapsed()
            );
            last_activity = Instant::now();
        }
        let ended = next(&mut socket).await;
        let idle = last_activity.elapsed();
        assert!(matches!(ended, None | Some(Message::Close(_))), "{ended:?}");
        assert!(
            idle >= Duration::from_millis(250) && idle < Duration::from_secs(5),
            "closed after {idle:?} of silence"
        );
    }
}
