//! Hostile requests, sent as raw bytes over TCP to the real binary: what pingap routes, guards and
//! forwards is one normalised request target (README, *Security model*).
//!
//! Every case is checked twice: what the client sees (the status, and for a plugin's refusal the
//! location that refused, from `X-Served-By`) and what the backends received (nothing at all for
//! a refusal; the exact path, query, `Host` and `X-Real-IP` for a proxied request, matched to the
//! request by a per-request `X-Case` marker). Three backends count what reaches them: the echo
//! backend behind the open locations, a second echo backend behind every guarded location (which
//! must never see a request), and a raw recorder that keeps the request line and headers exactly
//! as pingap wrote them (to see the origin-form target of an absolute-form request).
//!
//! Each test function starts one proxy and runs its cases in order on fresh connections; the
//! problems of all its cases are collected and reported together, each naming its case and the
//! bytes sent. Ports are ephemeral, everything is loopback, every read has a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::backend::Echo;
use common::{Backend, Pingap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long one exchange (connect, write, read the whole response) may take.
const IO_DEADLINE: Duration = Duration::from_secs(15);

/// The largest response or request head read.
const MAX_READ: usize = 1 << 20;

/// `[basic] trusted_proxies` holds the test client (127.0.0.1). Locations, in routing order:
/// `internal` (host `internal.example`, denied to everyone) and `rawhost` (host `raw.example`,
/// to the raw recorder); `admin` (`/admin`, denied to everyone), `only10` (`/only10`, only
/// 10.0.0.1 admitted), `files` (`/files`, prefix rewrite to `/files/$arg_name`) and `open`
/// (`/`). Guarded locations proxy to the `guarded` backend, the others to `echo`. Every location
/// names itself in `X-Served-By`.
fn config(echo: SocketAddr, guarded: SocketAddr, raw: SocketAddr) -> String {
    let served_by = "response_headers_set = [\"X-Served-By: $location\"]";
    format!(
        r#"
[basic]
trusted_proxies = ["127.0.0.1"]

[upstreams.echo]
addrs = ["{echo}"]

[upstreams.guarded]
addrs = ["{guarded}"]

[upstreams.raw]
addrs = ["{raw}"]

[plugins.nobody]
type = "ip_restriction"
deny = ["0.0.0.0/0", "::/0"]

[plugins.only10]
type = "ip_restriction"
allow = ["10.0.0.1"]

[locations.admin]
path = "/admin"
plugins = ["nobody"]
upstream = "guarded"
{served_by}

[locations.internal]
host = "internal.example"
plugins = ["nobody"]
upstream = "guarded"
{served_by}

[locations.rawhost]
host = "raw.example"
upstream = "raw"
{served_by}

[locations.only10]
path = "/only10"
plugins = ["only10"]
upstream = "echo"
{served_by}

[locations.files]
path = "/files"
rewrite = "/files/$arg_name"
upstream = "echo"
{served_by}

[locations.open]
path = "/"
upstream = "echo"
{served_by}

[servers.main]
addr = "127.0.0.1:0"
locations = ["admin", "internal", "rawhost", "only10", "files", "open"]
"#
    )
}

/// A backend that records the head (request line and headers) of each request exactly as it
/// arrived, and answers `200 raw` with `Connection: close`.
struct RawBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&heads);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let head = tokio::time::timeout(IO_DEADLINE, read_head(&mut stream)).await;
                    let Ok(Some(head)) = head else { return };
                    recorded.lock().unwrap().push(head);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Length: 3\r\n\
                              Connection: close\r\n\r\nraw",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawBackend { addr, heads, task }
    }

    fn count(&self) -> usize {
        self.heads.lock().unwrap().len()
    }

    fn last(&self) -> Option<String> {
        self.heads.lock().unwrap().last().cloned()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads up to the end of a request head; `None` if the connection ends first.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || head.len() > MAX_READ {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(String::from_utf8_lossy(&head[..end]).into_owned())
}

/// A response as the client read it.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Header names lower-cased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The status and the start of the body, for problem reports.
    fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        format!(
            "{} (server {:?}, x-served-by {:?}) {body:?}",
            self.status,
            self.header("server"),
            self.header("x-served-by")
        )
    }
}

/// Parses `buf` as a response if it holds a whole one (`eof`: the server closed the connection,
/// so a body without framing ends here).
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if (100..200).contains(&status) {
        // An interim response: what follows it is the real one.
        return parse_response(rest, eof);
    } else if status == 204 || status == 304 {
        Some(Vec::new())
    } else if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad content-length {length:?}"))?;
        (rest.len() >= length).then(|| rest[..length].to_vec())
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        eof.then(|| rest.to_vec())
    };
    Ok(body.map(|body| Response {
        status,
        headers,
        body,
    }))
}

/// The body of a complete chunked encoding, `None` while it is incomplete.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(data.windows(2).any(|w| w == b"\r\n").then_some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Writes `request` on a fresh connection to `addr` and reads one whole response, all within
/// [`IO_DEADLINE`].
async fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Response, String> {
    let work = async {
        let mut socket = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        socket
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(response) = parse_response(&buf, false)? {
                return Ok(response);
            }
            if buf.len() > MAX_READ {
                return Err(format!("response over {MAX_READ} bytes"));
            }
            let n = socket.read(&mut chunk).await.map_err(|e| {
                format!(
                    "read after {} bytes: {e}: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                )
            })?;
            if n == 0 {
                return parse_response(&buf, true)?.ok_or_else(|| {
                    format!(
                        "connection closed without a whole response: {:?}",
                        String::from_utf8_lossy(&buf)
                    )
                });
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(IO_DEADLINE, work)
        .await
        .map_err(|_| format!("no whole response within {IO_DEADLINE:?}"))?
}

/// How many requests each backend received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Seen {
    echo: usize,
    guarded: usize,
    raw: usize,
}

/// One request to send: the request line, header lines and body, written as given, with an
/// `X-Case` marker and `Connection: close` added after the given headers.
struct Request<'a> {
    line: &'a str,
    headers: &'a [&'a str],
    body: &'a [u8],
}

/// A request without body.
fn req<'a>(line: &'a str, headers: &'a [&'a str]) -> Request<'a> {
    Request {
        line,
        headers,
        body: b"",
    }
}

/// What one case produced.
struct Sent {
    marker: String,
    response: Response,
    /// What each backend received while the case ran.
    delta: Seen,
}

/// One proxy with its backends, and the problems found so far.
struct Lab {
    pingap: Pingap,
    echo: Backend,
    guarded: Backend,
    raw: RawBackend,
    next: usize,
    /// Requests expected at the echo backend so far.
    echo_expected: usize,
    problems: Vec<String>,
}

impl Lab {
    async fn start() -> Lab {
        let echo = Backend::start("echo").await;
        let guarded = Backend::start("guarded").await;
        let raw = RawBackend::start().await;
        let config = config(echo.addr, guarded.addr, raw.addr);
        // Waiting for the start blocks this worker; the backends run on the other.
        let pingap = tokio::task::block_in_place(|| Pingap::start(&config));
        Lab {
            pingap,
            echo,
            guarded,
            raw,
            next: 0,
            echo_expected: 0,
            problems: Vec::new(),
        }
    }

    fn seen(&self) -> Seen {
        Seen {
            echo: self.echo.hits(),
            guarded: self.guarded.hits(),
            raw: self.raw.count(),
        }
    }

    fn problem(&mut self, case: &str, request: &str, what: String) {
        self.problems
            .push(format!("[{case}] sent {request:?}\n    {what}"));
    }

    /// Sends `request` as raw bytes; `None` (and a problem) when no whole response came back.
    async fn send(&mut self, case: &str, request: &Request<'_>) -> Option<(String, Sent)> {
        self.next += 1;
        let marker = format!("hostile-{}", self.next);
        let mut bytes = format!("{}\r\n", request.line);
        for header in request.headers {
            bytes.push_str(header);
            bytes.push_str("\r\n");
        }
        bytes.push_str(&format!("X-Case: {marker}\r\nConnection: close\r\n\r\n"));
        let mut bytes = bytes.into_bytes();
        bytes.extend_from_slice(request.body);
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        let before = self.seen();
        match exchange(self.pingap.addr("main"), &bytes).await {
            Ok(response) => {
                let after = self.seen();
                let delta = Seen {
                    echo: after.echo - before.echo,
                    guarded: after.guarded - before.guarded,
                    raw: after.raw - before.raw,
                };
                Some((
                    shown,
                    Sent {
                        marker,
                        response,
                        delta,
                    },
                ))
            }
            Err(e) => {
                self.problem(case, &shown, format!("no response: {e}"));
                None
            }
        }
    }

    /// pingap answers `status` itself and no backend receives anything.
    async fn refused(&mut self, case: &str, request: Request<'_>, status: u16) -> Option<Response> {
        let (shown, sent) = self.send(case, &request).await?;
        if sent.response.status != status {
            let got = sent.response.summary();
            self.problem(case, &shown, format!("expected {status}, got {got}"));
        }
        if sent.delta != Seen::default() {
            self.echo_expected += sent.delta.echo;
            let what = format!(
                "nothing may reach a backend, but it received {:?}",
                sent.delta
            );
            self.problem(case, &shown, what);
        }
        Some(sent.response)
    }

    /// The `ip_restriction` of `location` refuses it with 403; no backend receives anything.
    async fn guarded(&mut self, case: &str, request: Request<'_>, location: &str) {
        let Some(response) = self.refused(case, request, 403).await else {
            return;
        };
        // A wrong status is already reported.
        if response.status == 403 && response.header("x-served-by") != Some(location) {
            let got = response.summary();
            self.problems.push(format!(
                "[{case}] the 403 must come from the guard of location {location}, got {got}"
            ));
        }
    }

    /// Proxied through `location` to the echo backend, which received it (and only it).
    async fn proxied(&mut self, case: &str, request: Request<'_>, location: &str) -> Option<Echo> {
        let (shown, sent) = self.send(case, &request).await?;
        // A missing or extra request is reported here, not again in the totals.
        self.echo_expected += sent.delta.echo;
        let response = &sent.response;
        let from_echo = response.header("server") == Some("echo");
        if response.status != 200 || !from_echo || response.header("x-served-by") != Some(location)
        {
            let what = format!(
                "expected 200 from the echo backend via location {location}, got {}",
                response.summary()
            );
            self.problem(case, &shown, what);
        }
        let expected = Seen {
            echo: 1,
            ..Seen::default()
        };
        if sent.delta != expected {
            let what = format!(
                "the backends received {:?}, expected {expected:?}",
                sent.delta
            );
            self.problem(case, &shown, what);
        }
        if !from_echo {
            return None;
        }
        let echo: Echo = match serde_json::from_slice(&response.body) {
            Ok(echo) => echo,
            Err(e) => {
                self.problem(case, &shown, format!("unreadable echo: {e}"));
                return None;
            }
        };
        if echo.header("x-case") != Some(sent.marker.as_str()) {
            let what = format!(
                "the echo is of another request: x-case {:?}, sent {}",
                echo.header("x-case"),
                sent.marker
            );
            self.problem(case, &shown, what);
            return None;
        }
        Some(echo)
    }

    /// Proxied through `location` to the raw recorder; returns the head it received.
    async fn proxied_raw(
        &mut self,
        case: &str,
        request: Request<'_>,
        location: &str,
    ) -> Option<String> {
        let (shown, sent) = self.send(case, &request).await?;
        let response = &sent.response;
        if response.status != 200
            || response.header("server") != Some("raw")
            || response.header("x-served-by") != Some(location)
        {
            let what = format!(
                "expected 200 from the raw backend via location {location}, got {}",
                response.summary()
            );
            self.problem(case, &shown, what);
        }
        let expected = Seen {
            raw: 1,
            ..Seen::default()
        };
        if sent.delta != expected {
            self.echo_expected += sent.delta.echo;
            let what = format!(
                "the backends received {:?}, expected {expected:?}",
                sent.delta
            );
            self.problem(case, &shown, what);
            return None;
        }
        let head = self.raw.last()?;
        if !head.contains(&sent.marker) {
            self.problem(
                case,
                &shown,
                format!("the recorded head is of another request: {head:?}"),
            );
            return None;
        }
        Some(head)
    }

    /// Records a problem unless `got == want`.
    fn same<T: PartialEq + std::fmt::Debug>(&mut self, case: &str, what: &str, got: T, want: T) {
        if got != want {
            self.problems.push(format!(
                "[{case}] {what}: the backend received {got:?}, expected {want:?}"
            ));
        }
    }

    /// Checks the totals once more (nothing reached the guarded backend, the echo backend saw
    /// exactly the proxied cases), then fails with every problem found.
    fn finish(mut self) {
        let seen = self.seen();
        if seen.guarded != 0 {
            self.problems.push(format!(
                "[totals] the guarded backend received {} request(s); it must receive none",
                seen.guarded
            ));
        }
        if seen.echo != self.echo_expected {
            self.problems.push(format!(
                "[totals] the echo backend received {} request(s), expected {}",
                seen.echo, self.echo_expected
            ));
        }
        assert!(
            self.problems.is_empty(),
            "{} problem(s):\n{}",
            self.problems.len(),
            self.problems.join("\n")
        );
    }
}

const PUBLIC: &str = "Host: public.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_guards_see_the_normalised_path() {
    let mut lab = Lab::start().await;

    // The guard works at all.
    lab.guarded(
        "plain /admin",
        req("GET /admin HTTP/1.1", &[PUBLIC]),
        "admin",
    )
    .await;
    for (case, target) in [
        ("unreserved escape /%61dmin", "/%61dmin"),
        ("double slash //admin", "//admin"),
        ("dot segment /./admin", "/./admin"),
        ("dot-dot /x/../admin", "/x/../admin"),
        ("encoded dot /%2e/admin", "/%2e/admin"),
        ("escape inside /ad%6din/", "/ad%6din/"),
    ] {
        let line = format!("GET {target} HTTP/1.1");
        lab.guarded(case, req(&line, &[PUBLIC]), "admin").await;
    }
    lab.guarded(
        "absolute-form http://public.example//admin",
        req("GET http://public.example//admin HTTP/1.1", &[PUBLIC]),
        "admin",
    )
    .await;

    // %2F is not a separator: /%2fadmin is not /admin, it goes to `open` as /%2Fadmin.
    let case = "encoded slash /%2fadmin";
    if let Some(echo) = lab
        .proxied(case, req("GET /%2fadmin HTTP/1.1", &[PUBLIC]), "open")
        .await
    {
        lab.same(case, "path", echo.path.as_str(), "/%2Fadmin");
    }

    lab.refused(
        "target neither origin- nor absolute-form: GET admin",
        req("GET admin HTTP/1.1", &[PUBLIC]),
        400,
    )
    .await;
    lab.refused(
        "path climbing above /: /re/../../admin",
        req("GET /re/../../admin HTTP/1.1", &[PUBLIC]),
        400,
    )
    .await;

    // An ordinary path that is not in normal form reaches the backend normalised.
    let case = "unnormalised path /a//b/./c/%7Euser";
    if let Some(echo) = lab
        .proxied(
            case,
            req("GET /a//b/./c/%7Euser?k=v HTTP/1.1", &[PUBLIC]),
            "open",
        )
        .await
    {
        lab.same(case, "path", echo.path.as_str(), "/a/b/c/~user");
        lab.same(case, "query", echo.query.as_deref(), Some("k=v"));
    }

    lab.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_are_read_strictly_and_absolute_form_authority_wins() {
    let mut lab = Lab::start().await;

    // The host guard works at all, and the host is compared in its normal form.
    lab.guarded(
        "plain Host: internal.example",
        req("GET / HTTP/1.1", &["Host: internal.example"]),
        "internal",
    )
    .await;
    lab.guarded(
        "Host: Internal.Example.:8080 (case, trailing dot, port)",
        req("GET / HTTP/1.1", &["Host: Internal.Example.:8080"]),
        "internal",
    )
    .await;

    lab.refused(
        "Host with two ports internal.example:80:80",
        req("GET / HTTP/1.1", &["Host: internal.example:80:80"]),
        400,
    )
    .await;

    lab.guarded(
        "absolute-form http://internal.example/ without Host",
        req("GET http://internal.example/ HTTP/1.1", &[]),
        "internal",
    )
    .await;
    // An absolute-form target whose authority differs from the Host header is refused (Pingora's
    // parser does so before pingap sees it): neither name reaches a location.
    for (case, line, host) in [
        (
            "absolute-form http://internal.example/ with Host: public.example",
            "GET http://internal.example/ HTTP/1.1",
            PUBLIC,
        ),
        (
            "absolute-form http://other.example/x with Host: internal.example",
            "GET http://other.example/x HTTP/1.1",
            "Host: internal.example",
        ),
        (
            "absolute-form http://raw.example//y?q=1 with Host: internal.example",
            "GET http://raw.example//y?q=1 HTTP/1.1",
            "Host: internal.example",
        ),
    ] {
        lab.refused(case, req(line, &[host]), 400).await;
    }

    // The raw recorder shows the request line exactly as pingap wrote it: origin-form, with
    // the authority as the only Host.
    for (case, headers) in [
        (
            "absolute-form http://raw.example//y?q=1 without Host",
            &[][..],
        ),
        (
            "absolute-form http://raw.example//y?q=1 with the same Host",
            &["Host: raw.example"][..],
        ),
    ] {
        let request = req("GET http://raw.example//y?q=1 HTTP/1.1", headers);
        if let Some(head) = lab.proxied_raw(case, request, "rawhost").await {
            let request_line = head.lines().next().unwrap_or_default().to_string();
            lab.same(
                case,
                "request line",
                request_line.as_str(),
                "GET /y?q=1 HTTP/1.1",
            );
            let hosts: Vec<String> = head
                .lines()
                .skip(1)
                .filter_map(|line| line.split_once(':'))
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
                .map(|(_, value)| value.trim().to_string())
                .collect();
            lab.same(case, "Host headers", hosts, vec!["raw.example".to_string()]);
        }
    }

    lab.refused("HTTP/1.1 without Host", req("GET / HTTP/1.1", &[]), 400)
        .await;
    lab.refused(
        "two Host headers",
        req(
            "GET / HTTP/1.1",
            &["Host: public.example", "Host: internal.example"],
        ),
        400,
    )
    .await;

    let case = "HTTP/1.0 without Host";
    if let Some(echo) = lab
        .proxied(case, req("GET /ten HTTP/1.0", &[]), "open")
        .await
    {
        lab.same(case, "path", echo.path.as_str(), "/ten");
    }

    lab.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_walk_stops_at_the_client_or_an_unparseable_hop() {
    let mut lab = Lab::start().await;

    // Without X-Forwarded-For the client is the peer; the 10.0.0.1-only guard works at all.
    let case = "no X-Forwarded-For";
    if let Some(echo) = lab
        .proxied(case, req("GET /whoami HTTP/1.1", &[PUBLIC]), "open")
        .await
    {
        lab.same(
            case,
            "X-Real-IP",
            echo.header("x-real-ip"),
            Some("127.0.0.1"),
        );
    }
    let case = "X-Forwarded-For: 10.0.0.1 (a real client 10.0.0.1 is admitted)";
    if let Some(echo) = lab
        .proxied(
            case,
            req(
                "GET /only10 HTTP/1.1",
                &[PUBLIC, "X-Forwarded-For: 10.0.0.1"],
            ),
            "only10",
        )
        .await
    {
        lab.same(
            case,
            "X-Real-IP",
            echo.header("x-real-ip"),
            Some("10.0.0.1"),
        );
    }

    for (xff, client) in [
        ("10.0.0.1, 203.0.113.9:4444", "203.0.113.9"),
        ("10.0.0.1, [2001:db8::1]:4444", "2001:db8::1"),
        ("10.0.0.1, unknown", "127.0.0.1"),
        ("10.0.0.1, 203.0.113.9%eth0", "127.0.0.1"),
        ("10.0.0.1, 010.000.000.001", "127.0.0.1"),
    ] {
        let header = format!("X-Forwarded-For: {xff}");
        let case = format!("X-Forwarded-For: {xff} to /whoami");
        if let Some(echo) = lab
            .proxied(
                &case,
                req("GET /whoami HTTP/1.1", &[PUBLIC, &header]),
                "open",
            )
            .await
        {
            lab.same(&case, "X-Real-IP", echo.header("x-real-ip"), Some(client));
        }
        let case = format!("X-Forwarded-For: {xff} to /only10 (allow 10.0.0.1 only)");
        lab.guarded(
            &case,
            req("GET /only10 HTTP/1.1", &[PUBLIC, &header]),
            "only10",
        )
        .await;
    }

    lab.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_variables_are_encoded_for_the_path() {
    let mut lab = Lab::start().await;

    let case = "plain value name=report.pdf";
    if let Some(echo) = lab
        .proxied(
            case,
            req("GET /files?name=report.pdf HTTP/1.1", &[PUBLIC]),
            "files",
        )
        .await
    {
        lab.same(case, "path", echo.path.as_str(), "/files/report.pdf");
    }

    let case = "traversal name=..%2f..%2fadmin";
    if let Some(echo) = lab
        .proxied(
            case,
            req("GET /files?name=..%2f..%2fadmin HTTP/1.1", &[PUBLIC]),
            "files",
        )
        .await
    {
        lab.same(case, "path", echo.path.as_str(), "/files/..%2F..%2Fadmin");
    }

    let case = "query injection name=x%3Fadmin%3Dtrue";
    if let Some(echo) = lab
        .proxied(
            case,
            req("GET /files?name=x%3Fadmin%3Dtrue HTTP/1.1", &[PUBLIC]),
            "files",
        )
        .await
    {
        lab.same(case, "path", echo.path.as_str(), "/files/x%3Fadmin=true");
        let query = echo.query.clone().unwrap_or_default();
        let keys: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key))
            .collect();
        lab.same(case, "query keys (no injected admin)", keys, vec!["name"]);
    }

    let case = "CR/LF name=a%0d%0ab";
    if let Some(echo) = lab
        .proxied(
            case,
            req("GET /files?name=a%0d%0ab HTTP/1.1", &[PUBLIC]),
            "files",
        )
        .await
    {
        lab.same(case, "path", echo.path.as_str(), "/files/a%0D%0Ab");
    }

    lab.refused(
        "dot segment name=..",
        req("GET /files?name=.. HTTP/1.1", &[PUBLIC]),
        400,
    )
    .await;

    lab.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_before_anything_is_sent() {
    let mut lab = Lab::start().await;

    // A body framed once reaches the backend intact.
    let case = "POST with Content-Length: 5";
    if let Some(echo) = lab
        .proxied(
            case,
            Request {
                line: "POST /upload HTTP/1.1",
                headers: &[PUBLIC, "Content-Length: 5"],
                body: b"hello",
            },
            "open",
        )
        .await
    {
        lab.same(case, "body length", echo.body_len, 5);
    }

    lab.refused(
        "Content-Length with Transfer-Encoding",
        Request {
            line: "POST /upload HTTP/1.1",
            headers: &[PUBLIC, "Content-Length: 5", "Transfer-Encoding: chunked"],
            body: b"0\r\n\r\n",
        },
        400,
    )
    .await;
    lab.refused(
        "Content-Length: 5, 5",
        Request {
            line: "POST /upload HTTP/1.1",
            headers: &[PUBLIC, "Content-Length: 5, 5"],
            body: b"hello",
        },
        400,
    )
    .await;
    lab.refused(
        "two Content-Length headers",
        Request {
            line: "POST /upload HTTP/1.1",
            headers: &[PUBLIC, "Content-Length: 5", "Content-Length: 5"],
            body: b"hello",
        },
        400,
    )
    .await;
    lab.refused(
        "Transfer-Encoding: gzip, chunked",
        Request {
            line: "POST /upload HTTP/1.1",
            headers: &[PUBLIC, "Transfer-Encoding: gzip, chunked"],
            body: b"0\r\n\r\n",
        },
        501,
    )
    .await;
    lab.refused(
        "lower-case method get",
        req("get / HTTP/1.1", &[PUBLIC]),
        400,
    )
    .await;

    lab.finish();
}
