//! The Prometheus endpoint through the binary: counters and histograms match the requests sent
//! (answered, refused by a plugin, failed upstream, unrouted), backend and reload gauges, and the
//! output passes `promtool check metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, Pingap, RefusingPort, client};

fn config(backend: &Backend, dead: &RefusingPort) -> String {
    format!(
        "[metrics]\nenabled = true\naddr = '127.0.0.1:0'\n\
         [upstreams.api]\naddrs = ['{}']\n\
         [upstreams.dead]\naddrs = ['{}']\n\
         [plugins.deny]\ntype = 'ip_restriction'\ndeny = ['0.0.0.0/0']\n\
         [locations.api]\nupstream = 'api'\npath = '/api'\n\
         [locations.denied]\nupstream = 'api'\npath = '/denied'\nplugins = ['deny']\n\
         [locations.dead]\nupstream = 'dead'\npath = '/dead'\n\
         [servers.main]\naddr = '127.0.0.1:0'\nlocations = ['api', 'denied', 'dead']\n",
        backend.addr, dead.addr
    )
}

/// Scrapes until every one of `lines` is in the output (logging runs just after a response is
/// sent, so the last requests may take a moment to be counted); returns the last scrape.
async fn scrape_until(url: &str, lines: &[String]) -> String {
    let client = client();
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        text = client.get(url).send().await.unwrap().text().await.unwrap();
        if lines.iter().all(|line| text.lines().any(|l| l == line)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing: Vec<_> = lines
        .iter()
        .filter(|line| !text.lines().any(|l| l == *line))
        .collect();
    panic!("missing {missing:?} in\n{text}");
}

/// The value of the sample named exactly `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_requests_and_promtool_accepts_the_output() {
    let backend = Backend::start("b").await;
    let dead = RefusingPort::new();
    let pingap = Pingap::start(&config(&backend, &dead));
    let url = pingap.metrics_url();
    let client = client();
    let base = format!("http://{}", pingap.addr("main"));
    for _ in 0..5 {
        assert_eq!(
            client
                .get(format!("{base}/api"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            client
                .get(format!("{base}/denied"))
                .send()
                .await
                .unwrap()
                .status(),
            403
        );
    }
    assert_eq!(
        client
            .post(format!("{base}/dead"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    assert_eq!(
        client
            .get(format!("{base}/nothing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let upload = client
        .post(format!("{base}/api"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);

    let expected: Vec<String> = [
        r#"pingap_requests_total{location="api",method="GET",status="2xx"} 5"#,
        r#"pingap_requests_total{location="api",method="POST",status="2xx"} 1"#,
        r#"pingap_body_bytes_total{direction="in",server="main"} 1000"#,
        r#"pingap_requests_total{location="denied",method="GET",status="4xx"} 2"#,
        r#"pingap_requests_total{location="dead",method="POST",status="5xx"} 1"#,
        r#"pingap_server_requests_total{server="main",status="2xx"} 6"#,
        r#"pingap_server_requests_total{server="main",status="4xx"} 3"#,
        r#"pingap_server_requests_total{server="main",status="5xx"} 1"#,
        r#"pingap_plugin_rejections_total{location="denied",status="403"} 2"#,
        r#"pingap_request_duration_seconds_count{location="api"} 6"#,
        r#"pingap_upstream_response_seconds_count{upstream="api"} 6"#,
        "pingap_config_generation 1",
        "pingap_requests_in_flight 0",
        "pingap_log_tail_dropped_total 0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!(
            r#"pingap_backend_up{{backend="{}",upstream="api"}} 1"#,
            backend.addr
        ),
        format!(
            r#"pingap_backend_circuit_state{{backend="{}",upstream="api"}} 0"#,
            backend.addr
        ),
    ])
    .collect();
    let text = scrape_until(&url, &expected).await;
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("pingap_build_info{version=\""), "{text}");
    assert!(!text.contains("/nothing"), "no raw paths in labels");
    assert!(
        value(
            &text,
            r#"pingap_body_bytes_total{direction="out",server="main"}"#
        ) > 0.0
    );

    // Three more client connections, held open, are counted as active.
    let active = value(&text, r#"pingap_connections_active{server="main"}"#);
    let mut held = Vec::new();
    for _ in 0..3 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(pingap.addr("main"))
            .await
            .unwrap();
        socket
            .write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        assert!(socket.read(&mut buf).await.unwrap() > 0);
        held.push(socket);
    }
    scrape_until(
        &url,
        &[format!(
            r#"pingap_connections_active{{server="main"}} {}"#,
            active + 3.0
        )],
    )
    .await;
    drop(held);

    // promtool, Prometheus's own checker, accepts the exposition.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Reloads are counted and the generation follows.
    pingap.signal(nix::sys::signal::Signal::SIGHUP);
    scrape_until(
        &url,
        &[
            r#"pingap_config_reloads_total{result="ok"} 1"#.to_string(),
            "pingap_config_generation 2".to_string(),
        ],
    )
    .await;
    std::fs::write(pingap.config_path(), "[servers.main\n").unwrap();
    pingap.signal(nix::sys::signal::Signal::SIGHUP);
    scrape_until(
        &url,
        &[r#"pingap_config_reloads_total{result="failed"} 1"#.to_string()],
    )
    .await;
    let other = client
        .get(url.replace("/metrics", "/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
