//! HTTP/1.1 proxying through the real binary: bodies and methods arrive intact, rewrites and
//! header rules apply, round robin spreads load, and failures get the documented status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::backend::{Echo, fnv};
use common::{Backend, Pingap, RefusingPort, client, client_builder, get_json, raw_exchange};

/// A config with one server `main` on an ephemeral port whose location `api` (path `/`, plus
/// `extra` keys) proxies to `addrs`.
fn single(addrs: &[String], extra: &str, upstream_extra: &str) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "[upstreams.api]\naddrs = [{}]\n{upstream_extra}\n\
         [locations.api]\nupstream = 'api'\n{extra}\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
        addrs.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_and_bodies_reach_the_backend_intact() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&single(&[backend.addr.to_string()], "", ""));
    let client = client();
    let mut big = vec![0u8; 1 << 20];
    for (i, byte) in big.iter_mut().enumerate() {
        *byte = (i * 31 % 251) as u8;
    }
    let bodies: [&[u8]; 3] = [b"", b"x", &big];
    for method in ["GET", "POST", "PUT", "DELETE"] {
        for body in bodies {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = client
                .request(method.clone(), pingap.url("main", "/upload?kind=fixed"))
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let echo: Echo = response.json().await.unwrap();
            assert_eq!(echo.method, method.as_str());
            assert_eq!(echo.path, "/upload");
            assert_eq!(echo.query.as_deref(), Some("kind=fixed"));
            assert_eq!(echo.body_len, body.len(), "{method} {} bytes", body.len());
            assert_eq!(echo.body_fnv, fnv(body));
        }
        // A chunked body of unknown length, framed by hand (HTTP clients send none on GET).
        let chunks: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 1000]).collect();
        let mut request = format!(
            "{method} /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        for chunk in &chunks {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let (status, body) = raw_exchange(pingap.addr("main"), &request).await;
        assert_eq!(status, 200, "{method}");
        let echo: Echo = serde_json::from_slice(&body).unwrap();
        let expected = chunks.concat();
        assert_eq!(echo.method, method);
        assert_eq!(
            echo.header("transfer-encoding"),
            Some("chunked"),
            "{method}"
        );
        assert_eq!(echo.body_len, expected.len(), "{method}");
        assert_eq!(echo.body_fnv, fnv(&expected), "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_host_are_sent_upstream() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&single(&[backend.addr.to_string()], "", ""));
    let echo: Echo = client()
        .get(pingap.url("main", "/"))
        .header("host", "app.example.com:8080")
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo.header("host"), Some("app.example.com:8080"));
    assert_eq!(
        echo.header("x-forwarded-for"),
        Some("198.51.100.7, 127.0.0.1")
    );
    assert_eq!(
        echo.header("x-real-ip"),
        Some("127.0.0.1"),
        "the untrusted XFF is not believed"
    );
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.header("x-forwarded-host"), Some("app.example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_rewrite_replaces_the_matched_prefix() {
    let backend = Backend::start("b").await;
    let config = format!(
        "[upstreams.api]\naddrs = ['{}']\n\
         [locations.api_v1]\nupstream = 'api'\npath = '/api/v1'\nrewrite = '/'\n\
         [locations.legacy]\nupstream = 'api'\npath = '/old/'\nrewrite = '/new/'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api_v1', 'legacy']\n",
        backend.addr
    );
    let pingap = Pingap::start(&config);
    let client = client();
    for (path, upstream_path, query) in [
        ("/api/v1/users?page=2", "/users", Some("page=2")),
        ("/api/v1", "/", None),
        ("/old/a/b", "/new/a/b", None),
    ] {
        let echo: Echo = client
            .get(pingap.url("main", path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo.path, upstream_path, "{path}");
        assert_eq!(echo.query.as_deref(), query, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_header_rules_apply() {
    let backend = Backend::start("b").await;
    let extra = "headers_add = ['X-Added: one', 'X-Added: $host']\n\
                 headers_set = ['X-Client: $remote_addr', 'User-Agent: pingap-test']\n\
                 headers_remove = ['X-Secret']\n\
                 response_headers_add = ['X-Served-By: pingap']\n\
                 response_headers_set = ['Content-Type: application/vnd.test+json']\n\
                 response_headers_remove = ['Server']";
    let pingap = Pingap::start(&single(&[backend.addr.to_string()], extra, ""));
    let response = client()
        .get(pingap.url("main", "/"))
        .header("host", "rules.example.com")
        .header("x-secret", "hunter2")
        .header("x-added", "zero")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-served-by"], "pingap");
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.test+json"
    );
    assert!(
        response.headers().get("server").is_none(),
        "{:?}",
        response.headers()
    );
    let echo: Echo = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(
        echo.headers["x-added"],
        ["zero", "one", "rules.example.com"]
    );
    assert_eq!(echo.header("x-client"), Some("127.0.0.1"));
    assert_eq!(echo.header("user-agent"), Some("pingap-test"));
    assert!(!echo.headers.contains_key("x-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    let backends = [
        Backend::start("one").await,
        Backend::start("two").await,
        Backend::start("three").await,
    ];
    let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let pingap = Pingap::start(&single(&addrs, "", "algorithm = 'round_robin'"));
    let client = client();
    for _ in 0..300 {
        let response = client.get(pingap.url("main", "/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    for backend in &backends {
        let hits = backend.hits();
        assert!(
            (99..=101).contains(&hits),
            "hits per backend: {:?}",
            backends.iter().map(Backend::hits).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_requests_get_a_404_page() {
    let backend = Backend::start("b").await;
    let config = format!(
        "[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\npath = '/api'\nhost = 'api.example.com'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n",
        backend.addr
    );
    let pingap = Pingap::start(&config);
    let client = client();
    let response = client
        .get(pingap.url("main", "/elsewhere"))
        .header("host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(
        page.contains("404 Not Found") && page.contains("no route matched"),
        "{page}"
    );

    let (status, body) = get_json(
        &pingap.url("main", "/api"),
        &[("host", "other.example.com")],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], 404);
    assert_eq!(body["message"], "no route matched this request");
    assert_eq!(backend.hits(), 0);

    // HEAD gets the status and headers without a body.
    let response = client
        .head(pingap.url("main", "/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_gets_a_502() {
    let dead = RefusingPort::new();
    let pingap = Pingap::start(&single(&[dead.addr.to_string()], "", ""));
    let (status, body) = get_json(&pingap.url("main", "/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(body["message"], "could not connect to upstream \"api\"");
    // The connection is closed after a failure, and the client is told so.
    let response = common::get(&pingap.url("main", "/"), &[]).await;
    assert_eq!(response.headers()["connection"], "close");
    let (status, _) = raw_exchange(pingap.addr("main"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 502, "answered, then closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_gets_a_504() {
    let backend = Backend::start("slow").await;
    let pingap = Pingap::start(&single(
        &[backend.addr.to_string()],
        "",
        "read_timeout = '200ms'",
    ));
    let (status, body) = get_json(&pingap.url("main", "/"), &[("x-echo-delay-ms", "3000")]).await;
    assert_eq!(status, 504);
    assert_eq!(body["message"], "upstream \"api\" timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_statuses_pass_through() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&single(&[backend.addr.to_string()], "", ""));
    let response = client()
        .get(pingap.url("main", "/"))
        .header("x-echo-status", "503")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let echo: Echo = response.json().await.unwrap();
    assert_eq!(
        echo.backend, "b",
        "the backend's own answer, not an error page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_route_independently() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let config = format!(
        "[upstreams.blue]\naddrs = ['{}']\n[upstreams.green]\naddrs = ['{}']\n\
         [locations.blue]\nupstream = 'blue'\npath = '/'\n\
         [locations.green]\nupstream = 'green'\npath = '/green'\n\
         [servers.one]\naddr = '127.0.0.1:0'\nlocations = ['blue']\n\
         [servers.two]\naddr = '127.0.0.1:0'\nlocations = ['green']\n",
        blue.addr, green.addr
    );
    let pingap = Pingap::start(&config);
    let client = client();
    let echo: Echo = client
        .get(pingap.url("one", "/green"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo.backend, "blue", "server one has no green location");
    let echo: Echo = client
        .get(pingap.url("two", "/green/x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo.backend, "green");
    let response = client.get(pingap.url("two", "/")).send().await.unwrap();
    assert_eq!(response.status(), 404, "server two has nothing at /");
    assert_eq!(blue.hits(), 1);
    assert_eq!(green.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_400_and_the_proxy_keeps_serving() {
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&single(&[backend.addr.to_string()], "", ""));
    let (status, _) = raw_exchange(
        pingap.addr("main"),
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let response = client().get(pingap.url("main", "/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        backend.hits(),
        1,
        "the bad request never reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_template_shapes_html_error_pages() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oops.html"),
        "<main data-status=\"{{status}}\">{{reason}}: {{message}}</main>",
    )
    .unwrap();
    let config = format!(
        "[basic]\nerror_template = '{}'\n{}",
        dir.path().join("oops.html").display(),
        single(&[backend.addr.to_string()], "path = '/api'", "")
    );
    let pingap = Pingap::start(&config);
    let response = client()
        .get(pingap.url("main", "/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.text().await.unwrap(),
        "<main data-status=\"404\">Not Found: no route matched this request</main>"
    );
    // JSON clients still get JSON.
    let (status, body) = get_json(&pingap.url("main", "/nowhere"), &[]).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Not Found")));
}

mod balancing {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::common::backend::Echo;
    use super::common::{Backend, Pingap, client, get};
    use super::single;

    async fn backend_of(pingap: &Pingap, headers: &[(&str, &str)]) -> String {
        let echo: Echo = get(&pingap.url("main", "/"), headers)
            .await
            .json()
            .await
            .unwrap();
        echo.backend
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn least_connections_avoids_the_busy_backend() {
        let (one, two) = (Backend::start("one").await, Backend::start("two").await);
        let addrs = [one.addr.to_string(), two.addr.to_string()];
        let pingap = Pingap::start(&single(&addrs, "", "algorithm = 'least_connections'"));
        // Occupy whichever backend takes the first (slow) request.
        let url = pingap.url("main", "/");
        let slow = tokio::spawn(async move {
            client()
                .get(url)
                .header("x-echo-delay-ms", "2000")
                .send()
                .await
                .unwrap()
        });
        let busy = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if one.hits() + two.hits() == 1 {
                    return if one.hits() == 1 { "one" } else { "two" };
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        for _ in 0..10 {
            assert_ne!(
                backend_of(&pingap, &[]).await,
                busy,
                "the busy backend is avoided"
            );
        }
        assert_eq!(slow.await.unwrap().status(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consistent_hash_sticks_keys_to_backends() {
        let backends = [
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        ];
        let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
        let pingap = Pingap::start(&single(
            &addrs,
            "",
            "algorithm = 'consistent_hash'\nhash_key = 'header:X-User'",
        ));
        let mut owners = HashMap::new();
        for user in 0..60 {
            let user = format!("user-{user}");
            let owner = backend_of(&pingap, &[("x-user", &user)]).await;
            for _ in 0..3 {
                assert_eq!(
                    backend_of(&pingap, &[("x-user", &user)]).await,
                    owner,
                    "{user}"
                );
            }
            owners.insert(user, owner);
        }
        let used: std::collections::HashSet<_> = owners.values().collect();
        assert_eq!(used.len(), 3, "keys spread over every backend: {owners:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ip_hash_keys_on_the_client_behind_trusted_proxies() {
        let backends = [
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        ];
        let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
        let config = format!(
            "[basic]\ntrusted_proxies = ['127.0.0.1']\n{}",
            single(&addrs, "", "algorithm = 'ip_hash'")
        );
        let pingap = Pingap::start(&config);
        let mut owners = std::collections::HashSet::new();
        for client_ip in 1..=40 {
            let forwarded = format!("198.51.100.{client_ip}");
            let owner = backend_of(&pingap, &[("x-forwarded-for", &forwarded)]).await;
            assert_eq!(
                backend_of(&pingap, &[("x-forwarded-for", &forwarded)]).await,
                owner
            );
            owners.insert(owner);
        }
        assert_eq!(owners.len(), 3, "forty clients spread over every backend");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_after_keepalive_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start("b").await;
    let config = format!(
        "[basic]\nkeepalive_timeout = '1s'\n{}",
        single(&[backend.addr.to_string()], "", "")
    );
    let pingap = Pingap::start(&config);
    let mut socket = tokio::net::TcpStream::connect(pingap.addr("main"))
        .await
        .unwrap();
    socket
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let read = socket.read(&mut buf).await.unwrap();
    assert!(buf[..read].starts_with(b"HTTP/1.1 200"));
    let answered = std::time::Instant::now();
    // Drain the rest of the answer, then wait for the server to close the idle connection.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                return answered.elapsed();
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert!(
        closed >= std::time::Duration::from_millis(900),
        "closed after {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_pingap_and_not_forwarded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start("b").await;
    let pingap = Pingap::start(&single(&[backend.addr.to_string()], "", ""));
    let mut stream = tokio::net::TcpStream::connect(pingap.addr("main"))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    // The client waits for `100 Continue` before it sends the body.
    let mut interim = Vec::new();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            interim.push(byte[0]);
        }
    })
    .await;
    assert!(waited.is_ok(), "no interim response");
    let interim = String::from_utf8_lossy(&interim).to_string();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    stream.write_all(b"hello").await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).to_string();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let echo: Echo = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(echo.body_len, 5);
    assert_eq!(echo.header("expect"), None, "Expect is not forwarded");
}

/// A client that goes away while its request (without a body) waits for a slow upstream: pingap
/// gives the upstream request up and closes that connection, instead of holding it until the
/// upstream answers or its read timeout (30 s here) ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_ends_its_upstream_request() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that reads a request head and never answers, then reports when the proxy
    // closes that connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<()>();
    let backend = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        // The first connection that carries a request head (a connection closed before one,
        // such as a check, is passed over).
        let mut upstream = 'accept: loop {
            let (mut upstream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = upstream.read(&mut buf).await.unwrap_or(0);
                if read == 0 {
                    continue 'accept;
                }
                head.extend_from_slice(&buf[..read]);
            }
            break upstream;
        };
        head_tx.send(()).unwrap();
        // Whatever else arrives, until the proxy closes the connection.
        while upstream.read(&mut buf).await.unwrap_or(0) > 0 {}
        Instant::now()
    });
    let pingap = Pingap::start(&single(
        &[backend_addr.to_string()],
        "",
        "read_timeout = '30s'",
    ));
    let mut client = tokio::net::TcpStream::connect(pingap.addr("main"))
        .await
        .unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), head_rx)
        .await
        .expect("the request reached the backend within 10 s")
        .unwrap();
    drop(client);
    let left = Instant::now();
    let upstream_closed = tokio::time::timeout(Duration::from_secs(10), backend)
        .await
        .expect("pingap closed the upstream connection within 10 s of the client leaving")
        .unwrap();
    assert!(upstream_closed >= left);
}

/// What [`counting_backend`] reports: per connection (numbered in accept order), each request for
/// a path starting with `/reuse` (`None`) and the moment the proxy closed it (`Some`).
type ConnectionEvent = (usize, Option<std::time::Instant>);

/// A raw HTTP/1.1 backend that answers every request head with `200 ok`, keeps its connections
/// open and reports what happens on them.
async fn counting_backend() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<ConnectionEvent>,
) {
    counting_backend_answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await
}

/// [`counting_backend`], answering every request head with `answer`, in one write.
async fn counting_backend_answering(
    answer: &'static [u8],
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<ConnectionEvent>,
) {
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel::<ConnectionEvent>();
    tokio::spawn(async move {
        for connection in 0.. {
            let (mut upstream, _) = listener.accept().await.unwrap();
            let events = events_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                loop {
                    let read = upstream.read(&mut buf).await.unwrap_or(0);
                    if read == 0 {
                        let _ = events.send((connection, Some(Instant::now())));
                        return;
                    }
                    head.extend_from_slice(&buf[..read]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        // Only the test's requests count (not a health check, if any).
                        if head.starts_with(b"GET /reuse") {
                            let _ = events.send((connection, None));
                        }
                        head.drain(..end + 4);
                        upstream.write_all(answer).await.unwrap();
                    }
                }
            });
        }
    });
    (addr, events)
}

/// The connections on which the requests reported so far were served. Closes reported so far
/// are passed over (and so no longer there for [`closed_at`]).
fn served_on(events: &mut tokio::sync::mpsc::UnboundedReceiver<ConnectionEvent>) -> Vec<usize> {
    let mut served = Vec::new();
    while let Ok((connection, closed)) = events.try_recv() {
        if closed.is_none() {
            served.push(connection);
        }
    }
    served
}

/// When the backend saw the proxy close `connection`, waiting at most 10 s.
async fn closed_at(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<ConnectionEvent>,
    connection: usize,
) -> std::time::Instant {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let (closed, Some(at)) = events.recv().await.unwrap()
                && closed == connection
            {
                break at;
            }
        }
    })
    .await
    .expect("pingap closed the upstream connection within 10 s")
}

async fn get_ok(client: &reqwest::Client, url: String) {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

/// Idle upstream connections are kept for reuse and closed once their `idle_timeout` has passed
/// (pingap's idle pool, see vendor/pingora-core/PATCHED.md), with work stealing off (the
/// default: a pool per worker thread) and on (one pool for all threads). With work stealing off
/// there is one thread: the client may open a second connection for a request (it does not wait
/// for the first to be back in its pool), and that must find the same thread's pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_then_closed_after_their_idle_timeout() {
    for basic in [
        "[basic]\nthreads = 1\n",
        "[basic]\nthreads = 2\nwork_stealing = true\n",
    ] {
        reused_then_closed_after_idle_timeout(basic).await;
    }
}

async fn reused_then_closed_after_idle_timeout(basic: &str) {
    use std::time::{Duration, Instant};
    let (backend_addr, mut events) = counting_backend().await;
    let pingap = Pingap::start(&format!(
        "{basic}{}",
        single(&[backend_addr.to_string()], "", "idle_timeout = '1s'")
    ));
    let client = client();
    for _ in 0..3 {
        get_ok(&client, pingap.url("main", "/reuse")).await;
    }
    let last_response = Instant::now();
    let served = served_on(&mut events);
    assert_eq!(
        served.len(),
        3,
        "the backend served the three requests ({basic})"
    );
    assert!(
        served.iter().all(|&connection| connection == served[0]),
        "the three requests shared one upstream connection ({basic}): {served:?}"
    );
    let closed = closed_at(&mut events, served[0]).await;
    assert!(
        closed.duration_since(last_response) >= Duration::from_millis(900),
        "the idle connection was kept until its idle timeout, not closed after {:?} ({basic})",
        closed.duration_since(last_response)
    );
}

/// With work stealing off (the default), each worker thread reuses only the upstream
/// connections it released (their I/O is driven by that thread's scheduler), as nginx workers
/// do: client connections, which pingora places on a thread at random, are served over one
/// upstream connection per thread. The chance that 24 client connections all land on one of the
/// two threads is 2^-23. A thread releases its upstream connection before it can take the next
/// request, so each thread opens one; the bound of 6 only leaves room for the unforeseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_work_stealing_each_thread_keeps_its_own_upstream_connections() {
    let (backend_addr, mut events) = counting_backend().await;
    let pingap = Pingap::start(&format!(
        "[basic]\nthreads = 2\nwork_stealing = false\n{}",
        single(&[backend_addr.to_string()], "", "")
    ));
    for _ in 0..24 {
        // A new client each time: a new client connection, placed on either thread.
        get_ok(&client(), pingap.url("main", "/reuse")).await;
    }
    let served = served_on(&mut events);
    assert_eq!(served.len(), 24, "the backend served every request");
    let connections: std::collections::BTreeSet<_> = served.iter().collect();
    assert!(
        connections.len() >= 2,
        "each thread opened an upstream connection of its own: {served:?}"
    );
    assert!(
        connections.len() <= 6,
        "each thread reused its upstream connection: {served:?}"
    );
}

/// A backend that sends more than its `Content-Length` (here a second response, in the same
/// write as the first): the client gets just the declared body, and the connection, whose next
/// bytes were never asked for, is not reused, so those bytes are never taken for the answer to
/// the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_past_an_upstream_responses_length_never_answer_another_request() {
    let (backend_addr, mut events) = counting_backend_answering(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
          HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled",
    )
    .await;
    // One thread: the second request would find the first one's connection, were it pooled.
    let pingap = Pingap::start(&format!(
        "[basic]\nthreads = 1\n{}",
        single(&[backend_addr.to_string()], "", "")
    ));
    let client = client();
    for _ in 0..3 {
        get_ok(&client, pingap.url("main", "/reuse")).await;
    }
    let served = served_on(&mut events);
    assert_eq!(
        served,
        [0, 1, 2],
        "each request had a fresh upstream connection"
    );
}

/// With the idle pool full, a connection released for another upstream takes the place of the
/// one idle longest, which is closed, and is itself reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_upstream_pool_gives_way_to_the_latest_connection() {
    use std::time::{Duration, Instant};
    let (first_addr, mut first) = counting_backend().await;
    let (second_addr, mut second) = counting_backend().await;
    let pingap = Pingap::start(&format!(
        "[basic]\nthreads = 1\nupstream_keepalive_pool_size = 1\n\
         [upstreams.first]\naddrs = ['{first_addr}']\n\
         [upstreams.second]\naddrs = ['{second_addr}']\n\
         [locations.first]\npath = '/reuse/first'\nupstream = 'first'\n\
         [locations.second]\npath = '/reuse/second'\nupstream = 'second'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['first', 'second']\n"
    ));
    let client = client();
    get_ok(&client, pingap.url("main", "/reuse/first")).await;
    let first_served = served_on(&mut first);
    assert_eq!(first_served.len(), 1);
    get_ok(&client, pingap.url("main", "/reuse/second")).await;
    let released = Instant::now();
    let evicted = closed_at(&mut first, first_served[0]).await;
    assert!(
        evicted.duration_since(released) < Duration::from_secs(5),
        "the first upstream's idle connection was closed to make room, well before its 60 s \
         idle timeout"
    );
    get_ok(&client, pingap.url("main", "/reuse/second")).await;
    let second_served = served_on(&mut second);
    assert_eq!(
        second_served.len(),
        2,
        "the second upstream served both of its requests"
    );
    assert_eq!(
        second_served[0], second_served[1],
        "the second upstream's connection was kept in the full pool and reused"
    );
}

/// With work stealing off (the default), an HTTP/2 connection's requests run on the connection's
/// thread, so they reuse that thread's upstream connection: 24 requests over one h2c connection
/// are served over one upstream connection. (Were each request placed on a thread at random, as
/// pingora does, the two threads would each open one; the chance that all 24 land on one is
/// 2^-23.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connections_requests_stay_on_its_thread() {
    let (backend_addr, mut events) = counting_backend().await;
    let pingap = Pingap::start(&format!(
        "[basic]\nthreads = 2\n{}h2c = true\n",
        single(&[backend_addr.to_string()], "", "")
    ));
    let h2 = client_builder().http2_prior_knowledge().build().unwrap();
    for _ in 0..24 {
        get_ok(&h2, pingap.url("main", "/reuse")).await;
    }
    let served = served_on(&mut events);
    assert_eq!(served.len(), 24, "the backend served every request");
    assert!(
        served.iter().all(|&connection| connection == served[0]),
        "the requests of one HTTP/2 connection shared one upstream connection: {served:?}"
    );
}
