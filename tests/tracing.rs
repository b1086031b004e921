//! OpenTelemetry traces through the binary, exported to a collector written in the test (the
//! OTLP trace service over gRPC, and OTLP/HTTP): a server span per request and a client span per
//! upstream attempt, the client's `traceparent` continued and a fresh one sent upstream, HTTP
//! semantic-convention attributes, failover attempts as separate spans, sampling, and the spans
//! still queued flushed on shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::backend::Echo;
use common::otlp::{Received, grpc_collector, http_collector};
use common::{Backend, Pingap, RefusingPort, client};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// Spans arrive within the SDK's batch delay, shortened by `OTEL_BSP_SCHEDULE_DELAY` (ms).
const EXPORT_WAIT: Duration = Duration::from_secs(10);
const QUICK_EXPORT: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "100")];

fn config(collector: std::net::SocketAddr, protocol: &str, extra: &str, upstream: &str) -> String {
    format!(
        "[tracing]\nenabled = true\nendpoint = 'http://{collector}'\nprotocol = '{protocol}'\n\
         service_name = 'edge-proxy'\n{extra}\n\
         [upstreams.api]\naddrs = [{upstream}]\n\
         [locations.api]\nupstream = 'api'\npath = '/api'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api']\n"
    )
}

/// The `traceparent` fields the backend received: trace id, span id, flags.
fn traceparent_of(echo: &Echo) -> (String, String, String) {
    let value = echo
        .header("traceparent")
        .expect("traceparent sent upstream");
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Sends `request` and reads the backend's echo.
async fn send_for_echo(request: reqwest::RequestBuilder) -> Echo {
    request.send().await.unwrap().json().await.unwrap()
}

fn by_kind(spans: &[Received], trace: &str, kind: i32) -> Vec<Received> {
    spans
        .iter()
        .filter(|s| s.trace_id() == trace && s.span.kind == kind)
        .cloned()
        .collect()
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continues_the_clients_trace_over_grpc() {
    let (collector, collected) = grpc_collector().await;
    let backend = Backend::start("b").await;
    let pingap = Pingap::start_with(
        &config(collector, "grpc", "", &format!("'{}'", backend.addr)),
        &[],
        QUICK_EXPORT,
    );

    // With the client's traceparent: the same trace, the client's span as parent.
    let echo: Echo = send_for_echo(
        client()
            .get(pingap.url("main", "/api/items?x=1"))
            .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
            .header("user-agent", "trace-test"),
    )
    .await;
    let (trace, upstream_span, flags) = traceparent_of(&echo);
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(upstream_span, CLIENT_SPAN);
    assert_eq!(flags, "01");

    // Without one: a new trace, sent upstream.
    let fresh: Echo =
        send_for_echo(client().post(pingap.url("main", "/api/new")).body("12345")).await;
    let (fresh_trace, fresh_span, _) = traceparent_of(&fresh);
    assert_ne!(fresh_trace, CLIENT_TRACE);

    let spans = collected.wait_for(4, EXPORT_WAIT).await;
    assert!(spans.iter().all(|s| s.service == "edge-proxy"));

    let servers = by_kind(&spans, CLIENT_TRACE, SERVER);
    let clients = by_kind(&spans, CLIENT_TRACE, CLIENT);
    assert_eq!((servers.len(), clients.len()), (1, 1), "{spans:#?}");
    let (server, attempt) = (&servers[0], &clients[0]);
    assert_eq!(server.parent_span_id(), CLIENT_SPAN);
    assert_eq!(attempt.parent_span_id(), server.span_id());
    assert_eq!(attempt.span_id(), upstream_span);
    assert_eq!(server.span.name, "GET api");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/api/items"),
        ("url.query", "x=1"),
        ("url.scheme", "http"),
        ("server.address", "127.0.0.1"),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
        ("user_agent.original", "trace-test"),
        ("client.address", "127.0.0.1"),
        ("pingap.location", "api"),
        ("pingap.upstream", "api"),
    ] {
        assert_eq!(
            server.attribute(key).as_deref(),
            Some(value),
            "{key} of {server:#?}"
        );
    }
    assert_eq!(
        server.attribute("server.port"),
        Some(pingap.addr("main").port().to_string())
    );
    assert_eq!(
        attempt.attribute("server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attempt.attribute("server.port"),
        Some(backend.addr.port().to_string())
    );
    assert_eq!(
        attempt.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    // The attempt lies within the request.
    assert!(server.span.start_time_unix_nano <= attempt.span.start_time_unix_nano);
    assert!(attempt.span.end_time_unix_nano <= server.span.end_time_unix_nano);

    let servers = by_kind(&spans, &fresh_trace, SERVER);
    let clients = by_kind(&spans, &fresh_trace, CLIENT);
    assert_eq!((servers.len(), clients.len()), (1, 1), "{spans:#?}");
    assert!(
        servers[0].span.parent_span_id.is_empty(),
        "a new trace has a root span"
    );
    assert_eq!(clients[0].span_id(), fresh_span);
    assert_eq!(
        servers[0].attribute("http.request.body.size").as_deref(),
        Some("5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_is_a_span_over_http() {
    let (collector, collected) = http_collector().await;
    let backend = Backend::start("b").await;
    let dead = RefusingPort::new();
    let pingap = Pingap::start_with(
        &config(
            collector,
            "http",
            "",
            &format!("'{}', '{}'", dead.addr, backend.addr),
        ),
        &[],
        QUICK_EXPORT,
    );
    // Round robin: one of the first two requests is sent to the refusing backend first.
    let mut traces = Vec::new();
    for _ in 0..2 {
        let echo: Echo = send_for_echo(client().get(pingap.url("main", "/api/x"))).await;
        traces.push(traceparent_of(&echo).0);
    }
    let spans = collected.wait_for(5, EXPORT_WAIT).await;
    let retried: Vec<&String> = traces
        .iter()
        .filter(|t| by_kind(&spans, t, CLIENT).len() == 2)
        .collect();
    assert_eq!(retried.len(), 1, "{spans:#?}");
    let server = &by_kind(&spans, retried[0], SERVER)[0];
    let mut attempts = by_kind(&spans, retried[0], CLIENT);
    attempts.sort_by_key(|s| s.span.start_time_unix_nano);
    assert!(
        attempts
            .iter()
            .all(|a| a.parent_span_id() == server.span_id())
    );
    assert_eq!(
        attempts[0].attribute("server.port"),
        Some(dead.addr.port().to_string())
    );
    assert_eq!(
        attempts[0].attribute("error.type").as_deref(),
        Some("ConnectRefused")
    );
    assert_eq!(attempts[0].span.status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(
        attempts[1].attribute("server.port"),
        Some(backend.addr.port().to_string())
    );
    assert_eq!(
        attempts[1]
            .attribute("http.response.status_code")
            .as_deref(),
        Some("200")
    );
    assert!(attempts[0].span.end_time_unix_nano <= attempts[1].span.start_time_unix_nano);
    assert_eq!(
        server.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_export_nothing_but_propagate() {
    let (collector, collected) = grpc_collector().await;
    let backend = Backend::start("b").await;
    let pingap = Pingap::start_with(
        &config(
            collector,
            "grpc",
            "sample_ratio = 0.0",
            &format!("'{}'", backend.addr),
        ),
        &[],
        QUICK_EXPORT,
    );
    let echo: Echo = send_for_echo(client().get(pingap.url("main", "/api/quiet"))).await;
    assert_eq!(traceparent_of(&echo).2, "00");
    // A client that samples is followed even at ratio 0.
    let echo: Echo = send_for_echo(
        client()
            .get(pingap.url("main", "/api/loud"))
            .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")),
    )
    .await;
    assert_eq!(traceparent_of(&echo).2, "01");
    let spans = collected.wait_for(2, EXPORT_WAIT).await;
    assert!(
        spans.iter().all(|s| s.trace_id() == CLIENT_TRACE),
        "{spans:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_spans_are_flushed_on_shutdown() {
    let (collector, collected) = grpc_collector().await;
    let backend = Backend::start("b").await;
    let mut pingap = Pingap::start(&config(
        collector,
        "grpc",
        "",
        &format!("'{}'", backend.addr),
    ));
    let response = client()
        .get(pingap.url("main", "/api/last"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stopped = Instant::now();
    pingap.signal(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::task::block_in_place(|| pingap.wait_exit(Duration::from_secs(10)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        pingap.output.text()
    );
    // The batch delay is 5 s: spans here before it passed were sent by the shutdown's flush.
    assert!(stopped.elapsed() < Duration::from_secs(4));
    assert_eq!(collected.spans().len(), 2, "{}", pingap.output.text());
}
