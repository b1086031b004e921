//! The `cache` plugin end to end: hits and misses, expiry, Cache-Control, Vary, PURGE, HEAD,
//! size limits, and a stampede collapsed into one upstream request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, Pingap, client};

/// One location with a `cache` plugin configured by `settings`.
fn config(backend: &Backend, settings: &str) -> String {
    format!(
        "[upstreams.api]\naddrs = ['{}']\n\
         [plugins.cache]\ntype = 'cache'\n{settings}\n\
         [locations.api]\nupstream = 'api'\nplugins = ['cache']\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
        backend.addr
    )
}

/// Sends a request; returns its status, `X-Cache-Status` and body.
async fn fetch(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut request = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, response.text().await.unwrap())
}

/// GETs `url` every 20 ms until its `X-Cache-Status` satisfies `done` (for at most 5 s, the
/// bound on the one-second expiries these tests wait for); returns the last status.
async fn cache_status_until(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = fetch(client, "GET", url, headers).await.1;
        if done(&status) || std::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_gets_are_served_from_the_cache_and_head_uses_the_get_entry() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, "ttl = '1h'"));
    let client = client();
    let url = pingap.url("main", "/page?x=1");
    let (status, cache, first) = fetch(&client, "GET", &url, &[]).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    for _ in 0..9 {
        let (status, cache, body) = fetch(&client, "GET", &url, &[]).await;
        assert_eq!((status, cache.as_str()), (200, "HIT"));
        assert_eq!(body, first);
    }
    let (status, cache, body) = fetch(&client, "HEAD", &url, &[]).await;
    assert_eq!((status, cache.as_str(), body.as_str()), (200, "HIT", ""));
    assert_eq!(backend.hits(), 1);

    // Another query is another entry; a POST is never looked up.
    let (_, cache, _) = fetch(&client, "GET", &pingap.url("main", "/page?x=2"), &[]).await;
    assert_eq!(cache, "MISS");
    let (_, cache, _) = fetch(&client, "POST", &url, &[]).await;
    assert_eq!(cache, "BYPASS");
    assert_eq!(backend.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_expires_and_no_store_is_never_cached() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, ""));
    let client = client();
    let url = pingap.url("main", "/short");
    let short = [("x-echo-header", "cache-control: max-age=1")];
    assert_eq!(fetch(&client, "GET", &url, &short).await.1, "MISS");
    assert_eq!(fetch(&client, "GET", &url, &short).await.1, "HIT");
    // Once the second has passed, the entry is refetched.
    let after = cache_status_until(&client, &url, &short, |s| s != "HIT").await;
    assert_eq!(after, "EXPIRED");
    assert_eq!(backend.hits(), 2);

    let url = pingap.url("main", "/private");
    for header in [
        "cache-control: no-store",
        "cache-control: private, max-age=60",
    ] {
        for _ in 0..3 {
            let (status, cache, _) =
                fetch(&client, "GET", &url, &[("x-echo-header", header)]).await;
            assert_eq!((status, cache.as_str()), (200, "MISS"), "{header}");
        }
    }
    assert_eq!(backend.hits(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_one_entry_per_variant() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, ""));
    let client = client();
    let url = pingap.url("main", "/greeting");
    let ask = async |language: &str| {
        let headers = [
            ("x-echo-header", "vary: Accept-Language"),
            ("accept-language", language),
        ];
        let (_, cache, body) = fetch(&client, "GET", &url, &headers).await;
        let echo: common::backend::Echo = serde_json::from_str(&body).unwrap();
        assert_eq!(echo.header("accept-language"), Some(language));
        cache
    };
    assert_eq!(ask("en").await, "MISS");
    assert_eq!(ask("en").await, "HIT");
    assert_eq!(ask("fr").await, "MISS");
    assert_eq!(ask("fr").await, "HIT");
    assert_eq!(ask("en").await, "HIT");
    assert_eq!(backend.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_from_allowed_addresses_only() {
    let backend = Backend::start("b").await;
    let allowed = Pingap::start(&config(&backend, "purge_allow = ['127.0.0.0/8']"));
    let client = client();
    let url = allowed.url("main", "/doc");
    assert_eq!(fetch(&client, "GET", &url, &[]).await.1, "MISS");
    assert_eq!(fetch(&client, "GET", &url, &[]).await.1, "HIT");
    assert_eq!(fetch(&client, "PURGE", &url, &[]).await.0, 200);
    assert_eq!(fetch(&client, "GET", &url, &[]).await.1, "MISS");
    assert_eq!(backend.hits(), 2);

    let refused = Pingap::start(&config(&backend, "purge_allow = ['10.0.0.0/8']"));
    let url = refused.url("main", "/doc");
    fetch(&client, "GET", &url, &[]).await;
    assert_eq!(fetch(&client, "PURGE", &url, &[]).await.0, 403);
    assert_eq!(fetch(&client, "GET", &url, &[]).await.1, "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_send_one_request_upstream() {
    let backend = Backend::start("b").await;
    backend.set_delay_ms(300);
    let pingap = Pingap::start(&config(&backend, ""));
    let url = pingap.url("main", "/slow");
    let answers = futures_util::future::join_all((0..10).map(|_| {
        let url = url.clone();
        async move { fetch(&client(), "GET", &url, &[]).await }
    }))
    .await;
    assert!(answers.iter().all(|(status, _, _)| *status == 200));
    assert_eq!(backend.hits(), 1, "one request upstream for ten clients");
    let first = &answers[0].2;
    assert!(answers.iter().all(|(_, _, body)| body == first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_over_max_object_size_are_passed_on_uncached() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(
        &backend,
        "max_object_size = '64KiB'\nmax_size = '1MiB'",
    ));
    let client = client();
    let url = pingap.url("main", "/big");
    for _ in 0..2 {
        let (status, _, body) =
            fetch(&client, "GET", &url, &[("x-echo-body-bytes", "100000")]).await;
        assert_eq!((status, body.len()), (200, 100_000));
    }
    assert_eq!(backend.hits(), 2);
    let small = pingap.url("main", "/small");
    fetch(&client, "GET", &small, &[("x-echo-body-bytes", "1000")]).await;
    assert_eq!(
        fetch(&client, "GET", &small, &[("x-echo-body-bytes", "1000")])
            .await
            .1,
        "HIT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_from_the_old_entry_while_refreshing_it() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&config(&backend, "stale_while_revalidate = '30s'"));
    let client = client();
    let url = pingap.url("main", "/news");
    let short = [("x-echo-header", "cache-control: max-age=1")];
    assert_eq!(fetch(&client, "GET", &url, &short).await.1, "MISS");
    let after = cache_status_until(&client, &url, &short, |s| s != "HIT").await;
    assert_eq!(after, "STALE");
    assert!(
        backend.wait_for_hits(2, Duration::from_secs(5)).await,
        "refreshed in the background"
    );
    let refreshed = cache_status_until(&client, &url, &short, |s| s == "HIT").await;
    assert_eq!(refreshed, "HIT", "the refreshed entry is served");
}
