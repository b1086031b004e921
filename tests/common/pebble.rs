//! A private ACME directory for the tests: Debian's `pebble` with `pebble-challtestsrv` as its
//! DNS server (every name resolves to 127.0.0.1), on loopback ports, killed when dropped.
//!
//! Pebble's own HTTPS certificate is made here ([`Pebble::ca_pem`] is the CA to trust for the
//! directory, pingap's `acme_ca_file`); the root that signs what pebble issues changes with
//! every start and is fetched from its management port ([`Pebble::issuing_root`]). Pebble
//! validates http-01 on `http_port` and tls-alpn-01 on `tls_port`: the ports pingap listens on.
//! `PEBBLE_VA_NOSLEEP=1` makes validation immediate.
//!
//! Ports are found by binding port 0 and releasing it, except the directory's, which is named
//! before pebble runs (pingap may be configured with it while pebble is down) and so is taken
//! below the kernel's ephemeral range ([`reserved_port`]); if pebble or the DNS server cannot
//! bind one (another process took it meanwhile), they are started again on new ports.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ports::reserved_port;

/// Debian's pebble.
pub const PEBBLE: &str = "/usr/bin/pebble";
/// Debian's pebble-challtestsrv.
pub const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
/// How long pebble may take to listen.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// How pebble is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The port pebble sends http-01 validation requests to.
    pub http_port: u16,
    /// The port pebble makes tls-alpn-01 validation handshakes on.
    pub tls_port: u16,
    /// The lifetime of the certificates it issues (pebble's default is about five years).
    pub validity_secs: Option<u64>,
}

/// A running (or stopped, to be started again) pebble.
pub struct Pebble {
    options: Options,
    pebble: Option<Child>,
    dns: Option<Child>,
    dir: tempfile::TempDir,
    acme_port: u16,
    management_port: u16,
    dns_port: u16,
    /// The CA of pebble's HTTPS certificate (PEM).
    pub ca_pem: String,
}

impl Pebble {
    /// Starts pebble and its DNS server; panics with their logs if they do not start.
    pub fn start(options: Options) -> Pebble {
        let mut pebble = Pebble::prepare(options);
        for _ in 0..5 {
            if pebble.launch_dns() && pebble.launch() {
                return pebble;
            }
            pebble.stop_all();
            pebble.acme_port = reserved_port();
            pebble.management_port = free_port();
            pebble.dns_port = free_dual_port();
        }
        panic!("pebble did not start on any ports tried:\n{}", pebble.log());
    }

    /// A pebble whose directory URL and CA are known but that does not run yet (a pingap
    /// configured before pebble runs sees it down); [`Pebble::start_prepared`] starts it on
    /// that URL.
    pub fn prepare(options: Options) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = https_certificate(&dir);
        Pebble {
            options,
            pebble: None,
            dns: None,
            dir,
            acme_port: reserved_port(),
            management_port: free_port(),
            dns_port: free_dual_port(),
            ca_pem,
        }
    }

    /// Starts a prepared pebble, validating on the ports of `options`, with its directory on
    /// the port chosen by [`Pebble::prepare`]; panics with its log if it does not start.
    pub fn start_prepared(&mut self, options: Options) {
        self.options = options;
        for _ in 0..5 {
            if self.launch_dns() && self.launch() {
                return;
            }
            self.stop_all();
            self.management_port = free_port();
            self.dns_port = free_dual_port();
        }
        panic!(
            "pebble did not start on port {}:\n{}",
            self.acme_port,
            self.log()
        );
    }

    /// The directory URL.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The CA of pebble's HTTPS certificate, as a file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("pebble-ca.pem")
    }

    /// Stops pebble (the DNS server keeps running), for [`Pebble::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts pebble again on the same ports (with a new issuing root, as pebble always does);
    /// panics with its log if it does not start.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if self.launch() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("pebble did not restart:\n{}", self.log());
    }

    /// The root certificate (PEM) that signs what pebble issues now.
    pub async fn issuing_root(&self) -> String {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management_port);
        let client = super::client_builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {url}");
        response.text().await.unwrap()
    }

    /// What pebble and its DNS server logged so far.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- pebble ---\n{}\n--- pebble-challtestsrv ---\n{}",
            read("pebble.log"),
            read("dns.log")
        )
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .unwrap()
    }

    fn stop_all(&mut self) {
        self.stop();
        if let Some(mut child) = self.dns.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the DNS server; false if it exits at once (a port was taken).
    fn launch_dns(&mut self) -> bool {
        let log = self.log_file("dns.log");
        let dns = format!("127.0.0.1:{}", self.dns_port);
        let management = format!("127.0.0.1:{}", free_port());
        let child = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &dns])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &management])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHALLTESTSRV}: {e}"));
        self.dns = Some(child);
        // It listens on TCP and UDP; the TCP side answering means it is up.
        self.wait_listening(self.dns_port, |pebble| pebble.dns.as_mut())
    }

    /// Starts pebble; false if it exits or does not listen in time.
    fn launch(&mut self) -> bool {
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", self.acme_port),
                "managementListenAddress": format!("127.0.0.1:{}", self.management_port),
                "certificate": self.dir.path().join("pebble-cert.pem"),
                "privateKey": self.dir.path().join("pebble-key.pem"),
                "httpPort": self.options.http_port,
                "tlsPort": self.options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": self.options.validity_secs.unwrap_or(0),
            }
        });
        let config_path = self.dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = self.log_file("pebble.log");
        let child = Command::new(PEBBLE)
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .arg("-strict=false")
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PEBBLE}: {e}"));
        self.pebble = Some(child);
        self.wait_listening(self.acme_port, |pebble| pebble.pebble.as_mut())
            && self.wait_listening(self.management_port, |pebble| pebble.pebble.as_mut())
    }

    /// Waits until `port` accepts connections while the child `child` picks runs.
    fn wait_listening(
        &mut self,
        port: u16,
        child: impl Fn(&mut Pebble) -> Option<&mut Child>,
    ) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            let running =
                child(self).is_some_and(|child| child.try_wait().ok().flatten().is_none());
            if !running {
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop_all();
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// Makes a CA and a certificate for 127.0.0.1 and localhost signed by it for pebble's HTTPS,
/// written into `dir`; returns the CA (PEM), also written as `pebble-ca.pem`.
fn https_certificate(dir: &tempfile::TempDir) -> String {
    let pki = super::pki::Pki::new(&["127.0.0.1", "localhost"]);
    std::fs::write(dir.path().join("pebble-cert.pem"), &pki.cert_pem).unwrap();
    std::fs::write(dir.path().join("pebble-key.pem"), &pki.key_pem).unwrap();
    std::fs::write(dir.path().join("pebble-ca.pem"), &pki.ca_pem).unwrap();
    pki.ca_pem
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both TCP and UDP right now (a DNS server takes both).
fn free_dual_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The chain (leaf first) a TLS server at `addr` presents for `server_name`, verified against
/// `root_pem`; the handshake fails if it does not verify.
pub async fn served_chain(
    addr: SocketAddr,
    server_name: &str,
    root_pem: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "the handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, connection) = tls.get_ref();
    Ok(connection
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect())
}

/// Checks that `chain_pem` (leaf first) is a chain for `server_name` up to `root_pem`, now.
pub fn verify_chain(chain_pem: &str, root_pem: &str, server_name: &str) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let (leaf, intermediates) = chain.split_first().ok_or("an empty chain")?;
    verifier
        .verify_server_cert(
            leaf,
            intermediates,
            &ServerName::try_from(server_name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}
