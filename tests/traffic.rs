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

mod compression {
    use std::io::{Read, Write};

    use futures_util::StreamExt;

    use super::common::backend::{fnv, text_body};
    use super::common::{Backend, Pingap};

    fn config(backend: &Backend) -> String {
        format!(
            "[upstreams.echo]\naddrs = ['{}']\n\
             [locations.all]\nupstream = 'echo'\nplugins = ['squeeze']\n\
             [plugins.squeeze]\ntype = 'compression'\n\
             [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['all']\n",
            backend.addr
        )
    }

    fn decompress(encoding: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            "gzip" => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            "br" => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            "zstd" => out = zstd::decode_all(data).unwrap(),
            other => panic!("unexpected encoding {other}"),
        }
        out
    }

    async fn fetch(pingap: &Pingap, headers: &[(&str, &str)]) -> reqwest::Response {
        super::common::get(&pingap.url("main", "/text"), headers).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_decompress_to_the_original_for_each_algorithm() {
        let backend = Backend::start("b").await;
        let pingap = Pingap::start(&config(&backend));
        let original = text_body(100_000);
        for (accept, expected) in [
            ("gzip", "gzip"),
            ("br", "br"),
            ("zstd", "zstd"),
            ("gzip, br, zstd", "zstd"),
            ("gzip;q=1.0, br;q=0.5, zstd;q=0.2", "gzip"),
        ] {
            let response = fetch(
                &pingap,
                &[("accept-encoding", accept), ("x-echo-body-bytes", "100000")],
            )
            .await;
            assert_eq!(response.headers()["content-encoding"], expected, "{accept}");
            assert_eq!(response.headers()["vary"], "Accept-Encoding");
            assert!(response.headers().get("content-length").is_none());
            let body = response.bytes().await.unwrap();
            assert!(body.len() < original.len() / 10, "{accept}: {}", body.len());
            assert_eq!(decompress(expected, &body), original, "{accept}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_encoded_and_unwanted_bodies_are_untouched() {
        let backend = Backend::start("b").await;
        let pingap = Pingap::start(&config(&backend));
        let cases: [&[(&str, &str)]; 4] = [
            &[("accept-encoding", "gzip"), ("x-echo-body-bytes", "100")],
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-body-bytes", "5000"),
                ("x-echo-header", "Content-Encoding: br"),
            ],
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-body-bytes", "5000"),
                ("x-echo-content-type", "image/png"),
            ],
            &[("x-echo-body-bytes", "5000")],
        ];
        for headers in cases {
            let response = fetch(&pingap, headers).await;
            let encoding = response
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_string());
            let body = response.bytes().await.unwrap();
            let len: usize = headers
                .iter()
                .find(|(n, _)| *n == "x-echo-body-bytes")
                .unwrap()
                .1
                .parse()
                .unwrap();
            assert_ne!(encoding.as_deref(), Some("gzip"), "{headers:?}");
            assert_eq!(body.len(), len, "{headers:?}");
        }
    }

    /// Peak resident memory of a process, in bytes.
    fn peak_rss(pid: i32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// Hashes and counts what is written to it.
    struct Digest {
        hash: u64,
        len: usize,
    }

    impl Write for Digest {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            for byte in data {
                self.hash = (self.hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
            self.len += data.len();
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Bound on the proxy's peak RSS while it compresses a 50 MB stream (documented in the
    /// README): it holds a chunk and the compressor's window, never the body.
    const PEAK_RSS_BOUND: u64 = 64 * 1024 * 1024;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_50_mb_stream_compresses_in_bounded_memory() {
        const SIZE: usize = 50 * 1024 * 1024;
        let backend = Backend::start("b").await;
        let pingap = Pingap::start(&config(&backend));
        let response = fetch(
            &pingap,
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-stream-bytes", &SIZE.to_string()),
            ],
        )
        .await;
        assert_eq!(response.headers()["content-encoding"], "gzip");
        let mut decoder = flate2::write::GzDecoder::new(Digest {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        });
        let mut stream = response.bytes_stream();
        let mut compressed = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            compressed += chunk.len();
            decoder.write_all(&chunk).unwrap();
        }
        let digest = decoder.finish().unwrap();
        assert_eq!(digest.len, SIZE);
        assert_eq!(digest.hash, fnv(&text_body(SIZE)));
        assert!(compressed < SIZE / 20, "compressed to {compressed} bytes");
        let peak = peak_rss(pingap.pid());
        assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB", peak / 1024 / 1024);
        println!(
            "peak RSS after a 50 MB gzip stream: {} MiB",
            peak / 1024 / 1024
        );
    }
}

mod limits_and_rewrites {
    use std::time::{Duration, Instant};

    use super::common::backend::Echo;
    use super::common::{Backend, Pingap, client};

    async fn status(url: &str, user: &str) -> reqwest::Response {
        client()
            .get(url)
            .header("x-user", user)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limits_per_key_and_recover_after_refill() {
        let backend = Backend::start("b").await;
        let config = format!(
            "[upstreams.echo]\naddrs = ['{}']\n\
             [locations.api]\nupstream = 'echo'\nplugins = ['limit']\n\
             [plugins.limit]\ntype = 'rate_limit'\nrate = 1\nburst = 2\nkey = '$http_x_user'\n\
             [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
            backend.addr
        );
        let pingap = Pingap::start(&config);
        let url = pingap.url("main", "/");
        let first = status(&url, "alice").await;
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["ratelimit-limit"], "2");
        assert_eq!(first.headers()["ratelimit-remaining"], "1");
        assert_eq!(status(&url, "alice").await.status(), 200);
        let limited = status(&url, "alice").await;
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "1");
        assert_eq!(limited.headers()["ratelimit-remaining"], "0");
        // Bob has a bucket of his own.
        assert_eq!(status(&url, "bob").await.status(), 200);
        // One token a second (slow enough that the three requests above never see a refill
        // on a loaded machine): alice is allowed again within a second.
        let refused_at = Instant::now();
        loop {
            if status(&url, "alice").await.status() == 200 {
                break;
            }
            assert!(refused_at.elapsed() < Duration::from_secs(5), "no refill");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(backend.hits(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rewrite_rules_apply_in_order() {
        let backend = Backend::start("b").await;
        let config = format!(
            r#"[upstreams.echo]
addrs = ['{}']
[locations.all]
upstream = 'echo'
plugins = ['moves']
[plugins.moves]
type = 'rewrite'
rules = [
  {{ match = '^/old/(.*)$', replace = '/new/$1' }},
  {{ match = '^/new/(?<rest>.*)$', replace = '/v2/$rest', break = true }},
  {{ match = '^/v2/', replace = '/not-reached/' }},
  {{ match = '^/p/(.*)', replace = '/beta/$arg_lang/$1', headers = ['X-Beta'] }},
]
[servers.main]
addr = '127.0.0.1:0'
locations = ['all']
"#,
            backend.addr
        );
        let pingap = Pingap::start(&config);
        /// Request path, headers, and the path and query the backend should see.
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let cases: [Case; 3] = [
            ("/old/a/b?x=1", &[], "/v2/a/b", Some("x=1")),
            (
                "/p/page?lang=en",
                &[("x-beta", "on")],
                "/beta/en/page",
                Some("lang=en"),
            ),
            ("/p/page?lang=en", &[], "/p/page", Some("lang=en")),
        ];
        for (path, headers, expected, query) in cases {
            let mut request = client().get(pingap.url("main", path));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let echo: Echo = request.send().await.unwrap().json().await.unwrap();
            assert_eq!(echo.path, expected, "{path} {headers:?}");
            assert_eq!(echo.query.as_deref(), query, "{path}");
        }
    }
}
