//! gRPC through the binary with a real client and server (tonic's health service): unary calls,
//! statuses in trailers, server streaming, plugins on calls, and pingap's own errors as gRPC
//! statuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Pingap, RefusingPort};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

const SERVICE: &str = "pingap.Echo";

/// A gRPC health server on an ephemeral loopback port, reporting `SERVICE` as serving.
async fn grpc_backend() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (addr, reporter)
}

fn config(upstream: SocketAddr, plugins: &str, tables: &str) -> String {
    format!(
        "[upstreams.grpc]\naddrs = ['{upstream}']\nprotocol = 'h2'\n\
         [locations.health]\nupstream = 'grpc'\npath = '/grpc.health.v1.Health/'\nplugins = [{plugins}]\n\
         {tables}\n[servers.main]\naddr = '127.0.0.1:0'\nh2c = true\nlocations = ['health']\n"
    )
}

async fn client(pingap: &Pingap) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", pingap.addr("main")))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_and_statuses_pass_through() {
    let (backend, _reporter) = grpc_backend().await;
    let pingap = Pingap::start(&config(backend, "", ""));
    let mut client = client(&pingap).await;
    let response = client.check(check(SERVICE)).await.unwrap();
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
    // An error status from the server arrives in the trailers, intact.
    let status = client.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// The next message of a stream, within a deadline.
async fn next(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> tonic_health::pb::HealthCheckResponse {
    tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_arrive_as_they_are_sent() {
    let (backend, reporter) = grpc_backend().await;
    let pingap = Pingap::start(&config(backend, "", ""));
    let mut client = client(&pingap).await;
    let mut watch = client.watch(check(SERVICE)).await.unwrap().into_inner();
    let first = next(&mut watch).await;
    assert_eq!(first.status, ServingStatus::Serving as i32);
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    let second = next(&mut watch).await;
    assert_eq!(second.status, ServingStatus::NotServing as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_on_calls_and_refusals_are_grpc_statuses() {
    let (backend, _reporter) = grpc_backend().await;
    let secret = "grpc-test-secret-that-is-long-enough";
    let tables = format!("[plugins.auth]\ntype = 'jwt'\nsecret = '{secret}'\n");
    let pingap = Pingap::start(&config(backend, "'auth'", &tables));
    let mut client = client(&pingap).await;
    let status = client.check(check(SERVICE)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"exp": jsonwebtoken::get_current_timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut request = tonic::Request::new(check(SERVICE));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let response = client.check(request).await.unwrap();
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_unavailable_not_an_html_page() {
    let dead = RefusingPort::new();
    let pingap = Pingap::start(&config(dead.addr, "", ""));
    let mut client = client(&pingap).await;
    let status = client.check(check(SERVICE)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "could not connect to upstream \"grpc\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_a_deadline_for_the_upstream() {
    let slow = common::Backend::start("slow").await;
    slow.set_delay_ms(3_000);
    let pingap = Pingap::start(&config(slow.addr, "", ""));
    let client = common::client_builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let response = client
        .post(format!(
            "http://{}/grpc.health.v1.Health/Check",
            pingap.addr("main")
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    assert!(
        elapsed < Duration::from_millis(2_500),
        "answered at the deadline, not after the upstream: {elapsed:?}"
    );
    assert_eq!(slow.hits(), 1);
}

/// A gRPC-web call of Health/Check for `service`, as a browser would send it; returns the
/// status, the content type and the (decoded) body.
async fn grpc_web_check(pingap: &Pingap, service: &str, text: bool) -> (u16, String, Vec<u8>) {
    use base64::Engine;
    // HealthCheckRequest { service } in one message frame.
    let mut message = vec![0x0a, service.len() as u8];
    message.extend_from_slice(service.as_bytes());
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let (content_type, body) = if text {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
        ("application/grpc-web-text", encoded.into_bytes())
    } else {
        ("application/grpc-web+proto", body)
    };
    let client = common::client_builder().http1_only().build().unwrap();
    let url = format!("http://{}/grpc.health.v1.Health/Check", pingap.addr("main"));
    let response = client
        .post(&url)
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let status = response.status().as_u16();
    let answered_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = response.bytes().await.unwrap().to_vec();
    let bytes = if text {
        base64::engine::general_purpose::STANDARD
            .decode(&bytes)
            .unwrap()
    } else {
        bytes
    };
    (status, answered_type, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_binary_and_text_calls_are_bridged_to_grpc() {
    let (upstream, reporter) = grpc_backend().await;
    // `grpc_web = true` lands in the location's table.
    let pingap = Pingap::start(&config(upstream, "", "grpc_web = true"));
    reporter
        .set_service_status("pingap.Down", tonic_health::ServingStatus::NotServing)
        .await;
    for (text, content_type) in [
        (false, "application/grpc-web+proto"),
        (true, "application/grpc-web-text+proto"),
    ] {
        let (status, answered_type, bytes) = grpc_web_check(&pingap, SERVICE, text).await;
        assert_eq!((status, answered_type.as_str()), (200, content_type));
        // A message frame: HealthCheckResponse { status = SERVING (1) } ...
        assert_eq!(&bytes[..7], &[0, 0, 0, 0, 2, 0x08, 0x01], "{bytes:?}");
        // ... then the trailers frame, with grpc-status 0.
        assert_eq!(bytes[7], 0x80);
        let trailers = String::from_utf8_lossy(&bytes[12..]).to_lowercase();
        assert!(trailers.contains("grpc-status:0"), "{trailers}");

        let (_, _, bytes) = grpc_web_check(&pingap, "pingap.Down", text).await;
        assert_eq!(&bytes[..7], &[0, 0, 0, 0, 2, 0x08, 0x02], "NOT_SERVING");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_streams_interleave_through_the_proxy() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    // gRPC server reflection is a bidirectional stream: each request gets its answer on the
    // same call.
    let (_, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let pingap = Pingap::start(&format!(
        "[upstreams.grpc]\naddrs = ['{upstream}']\nprotocol = 'h2'\n\
         [locations.reflection]\nupstream = 'grpc'\npath = '/grpc.reflection.v1.ServerReflection/'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nh2c = true\nlocations = ['reflection']\n"
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", pingap.addr("main")))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (requests, queue) = tokio::sync::mpsc::channel::<ServerReflectionRequest>(1);
    let outgoing = futures_util::stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|request| (request, queue))
    });
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(outgoing)
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        requests
            .send(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            })
            .await
            .unwrap();
        // The answer arrives while the call stays open for the next request.
        let answer = tokio::time::timeout(Duration::from_secs(10), answers.message())
            .await
            .expect("an answer within 10 s")
            .unwrap()
            .expect("a message");
        match answer.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => assert!(
                list.service
                    .iter()
                    .any(|s| s.name == "grpc.health.v1.Health"),
                "{list:?}"
            ),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    drop(requests);
    let end = tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("the call ends within 10 s");
    assert!(matches!(end, Ok(None)), "{end:?}");
}
