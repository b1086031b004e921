//! `Vary: Accept-Encoding` through the `compression` plugin, end to end: the `200` of a
//! compressible resource carries it (compressed or not), and so do its `304` (conditional
//! request) and `206` (Range request), exactly once, also when the backend lists it already or
//! varies on something else; a resource that is never compressed never gets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use common::{Pingap, client};

/// Length of every resource the backend serves (above the plugin's 1 KiB `min_length`).
const LENGTH: usize = 4096;
/// The backend's entity tag for every resource.
const ETAG: &str = "\"v1\"";

/// A backend that serves `/{kind}` like an origin with validators and ranges: `If-None-Match`
/// matching [`ETAG`] (weakly) is answered `304`, `Range: bytes=A-B` is answered `206`, anything
/// else `200`. `/html` is text; `/origin` adds `Vary: Origin`; `/listed` sends
/// `Vary: accept-encoding` itself; `/png` is an image.
async fn origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|req| async move { Ok::<_, Infallible>(answer(&req)) });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn answer(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let kind = req.uri().path().trim_start_matches('/');
    let content_type = if kind == "png" {
        "image/png"
    } else {
        "text/html; charset=utf-8"
    };
    let mut response = Response::builder()
        .header("etag", ETAG)
        .header("cache-control", "max-age=60");
    match kind {
        "origin" => response = response.header("vary", "Origin"),
        "listed" => response = response.header("vary", "accept-encoding"),
        _ => {}
    }
    let body: Vec<u8> = b"<p>pingap</p>\n"
        .iter()
        .copied()
        .cycle()
        .take(LENGTH)
        .collect();
    let matches = header("if-none-match").is_some_and(|tags| {
        tags.split(',')
            .any(|tag| tag.trim().trim_start_matches("W/") == ETAG)
    });
    if matches {
        return response.status(304).body(Full::default()).unwrap();
    }
    let range = header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    if let Some((first, last)) = range {
        return response
            .status(206)
            .header("content-type", content_type)
            .header("content-range", format!("bytes {first}-{last}/{LENGTH}"))
            .body(Full::new(Bytes::copy_from_slice(&body[first..=last])))
            .unwrap();
    }
    response
        .status(200)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn config(backend: SocketAddr) -> String {
    format!(
        "[upstreams.origin]\naddrs = ['{backend}']\n\
         [plugins.squeeze]\ntype = 'compression'\n\
         [locations.all]\nupstream = 'origin'\nplugins = ['squeeze']\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['all']\n"
    )
}

/// GETs `path` with `headers`; returns the status, the `Vary` values split into tokens, and the
/// `Content-Encoding`.
async fn fetch(
    pingap: &Pingap,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<String>, Option<String>) {
    let mut request = client().get(pingap.url("main", path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let vary = response
        .headers()
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|token| token.trim().to_string())
        .filter(|token| !token.is_empty())
        .collect();
    let encoding = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    response.bytes().await.unwrap();
    (status, vary, encoding)
}

/// How many of `vary` name Accept-Encoding (in any case).
fn accept_encoding(vary: &[String]) -> usize {
    vary.iter()
        .filter(|token| token.eq_ignore_ascii_case("accept-encoding"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_accept_encoding_is_on_200_304_and_206_exactly_once() {
    let backend = origin().await;
    let pingap = Pingap::start(&config(backend));
    for path in ["/html", "/origin", "/listed"] {
        for accept in [&[("accept-encoding", "gzip")][..], &[]] {
            let with = |extra: (&'static str, &'static str)| {
                let mut headers = accept.to_vec();
                headers.push(extra);
                headers
            };
            let requests = [
                (200, accept.to_vec()),
                (304, with(("if-none-match", ETAG))),
                (304, with(("if-none-match", "W/\"v1\""))),
                (206, with(("range", "bytes=0-99"))),
            ];
            for (expected, headers) in requests {
                let (status, vary, encoding) = fetch(&pingap, path, &headers).await;
                assert_eq!(status, expected, "{path} {headers:?}");
                assert_eq!(
                    accept_encoding(&vary),
                    1,
                    "{path} {headers:?}: Vary {vary:?}"
                );
                if path == "/origin" {
                    assert!(vary.iter().any(|t| t == "Origin"), "{path}: {vary:?}");
                }
                let compressed = status == 200 && !accept.is_empty();
                assert_eq!(
                    encoding.as_deref(),
                    compressed.then_some("gzip"),
                    "{path} {headers:?}"
                );
            }
        }
    }
    // A type that is never compressed varies on nothing, whatever the answer.
    for headers in [
        vec![("accept-encoding", "gzip")],
        vec![("accept-encoding", "gzip"), ("range", "bytes=0-99")],
    ] {
        let (status, vary, encoding) = fetch(&pingap, "/png", &headers).await;
        assert!(matches!(status, 200 | 206), "{headers:?}");
        assert_eq!(accept_encoding(&vary), 0, "{headers:?}: {vary:?}");
        assert_eq!(encoding, None);
    }
}
