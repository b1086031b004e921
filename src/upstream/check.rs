//! Active health checks: what `health_check` asks for, and one probe of one backend.
//!
//! `tcp://` passes when a connection is accepted. `http://HOST/PATH` and `https://…` send
//! `GET PATH` with `Host: HOST` to each backend's own address and pass on an expected status.
//! Settings come from keys (`health_check_interval` …) or from the URL's query (`interval`,
//! `timeout`, `status`, `healthy_threshold`, `unhealthy_threshold`), not both. HTTPS checks do
//! not verify the backend's certificate (requests do, per `verify_cert`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::schema::Upstream;
use crate::config::values::ConfigDuration;

/// Default `health_check_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default `health_check_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `healthy_threshold`.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default `unhealthy_threshold`.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// The longest status line read from a backend.
const MAX_STATUS_LINE: usize = 1024;

/// What a check sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connect only.
    Tcp,
    /// An HTTP GET.
    Http {
        /// Over TLS.
        tls: bool,
        /// The `Host` header (and SNI).
        host: String,
        /// Path and query sent.
        target: String,
    },
}

/// A compiled `health_check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is sent.
    pub probe: Probe,
    /// Time between checks.
    pub interval: Duration,
    /// Time allowed for one check.
    pub timeout: Duration,
    /// Passes in a row to come back.
    pub healthy_threshold: u32,
    /// Failures in a row to go out.
    pub unhealthy_threshold: u32,
    /// Accepted statuses, as inclusive ranges.
    pub statuses: Vec<(u16, u16)>,
}

/// A config error: the key and why.
type KeyError = (String, String);

impl HealthCheck {
    /// Compiles `spec.health_check` with its settings.
    pub fn compile(url: &str, spec: &Upstream) -> Result<HealthCheck, Vec<KeyError>> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| errors.push((key.to_string(), message));
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority_and_path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = match authority_and_path.find('/') {
            Some(slash) => authority_and_path.split_at(slash),
            None => (authority_and_path, "/"),
        };
        let mut params = QueryParams::default();
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "interval" | "timeout" | "status" | "healthy_threshold" | "unhealthy_threshold" => {
                    params.0.push((name.to_string(), value.to_string()))
                }
                _ => kept.push(pair),
            }
        }
        let target = if kept.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        let probe = match scheme {
            "tcp" => Probe::Tcp,
            "http" | "https" if !host.is_empty() => Probe::Http {
                tls: scheme == "https",
                host: host.to_string(),
                target,
            },
            "http" | "https" => {
                error("health_check", format!("\"{url}\" has no host"));
                Probe::Tcp
            }
            _ => {
                error(
                    "health_check",
                    format!("\"{url}\" is not an http://, https:// or tcp:// URL"),
                );
                Probe::Tcp
            }
        };

        let mut setting = |key: &str, param: &str, from_key: Option<String>| -> Option<String> {
            match (from_key, params.take(param)) {
                (Some(_), Some(_)) => {
                    error(
                        key,
                        format!("is also given as ?{param}= in health_check; keep one"),
                    );
                    None
                }
                (Some(value), None) => Some(value),
                (None, Some(value)) => Some(value),
                (None, None) => None,
            }
        };
        let show = |d: &Option<ConfigDuration>| d.map(|d| format!("{}ms", d.get().as_millis()));
        let interval = setting(
            "health_check_interval",
            "interval",
            show(&spec.health_check_interval),
        );
        let timeout = setting(
            "health_check_timeout",
            "timeout",
            show(&spec.health_check_timeout),
        );
        let status = setting(
            "health_check_status",
            "status",
            spec.health_check_status.clone(),
        );
        let healthy = setting(
            "healthy_threshold",
            "healthy_threshold",
            spec.healthy_threshold.map(|n| n.to_string()),
        );
        let unhealthy = setting(
            "unhealthy_threshold",
            "unhealthy_threshold",
            spec.unhealthy_threshold.map(|n| n.to_string()),
        );

        let mut check = HealthCheck {
            probe,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            statuses: vec![(200, 299)],
        };
        let duration = |text: &str| {
            ConfigDuration::parse(text).map(|d| d.get()).and_then(|d| {
                if d.is_zero() {
                    Err("must be more than 0".to_string())
                } else {
                    Ok(d)
                }
            })
        };
        let threshold = |text: &str| match text.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("\"{text}\" is not a whole number above 0")),
        };
        parse_into(
            &mut errors,
            "health_check_interval",
            interval,
            duration,
            &mut check.interval,
        );
        parse_into(
            &mut errors,
            "health_check_timeout",
            timeout,
            duration,
            &mut check.timeout,
        );
        parse_into(
            &mut errors,
            "health_check_status",
            status,
            parse_statuses,
            &mut check.statuses,
        );
        parse_into(
            &mut errors,
            "healthy_threshold",
            healthy,
            threshold,
            &mut check.healthy_threshold,
        );
        parse_into(
            &mut errors,
            "unhealthy_threshold",
            unhealthy,
            threshold,
            &mut check.unhealthy_threshold,
        );
        if errors.is_empty() {
            Ok(check)
        } else {
            Err(errors)
        }
    }

    /// Checks `addr` once. `Ok` carries what passed, `Err` why it failed.
    pub async fn run(&self, addr: SocketAddr) -> Result<String, String> {
        match tokio::time::timeout(self.timeout, self.exchange(addr)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn exchange(&self, addr: SocketAddr) -> Result<String, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (tls, host, target) = match &self.probe {
            Probe::Tcp => return Ok("connected".to_string()),
            Probe::Http { tls, host, target } => (*tls, host, target),
        };
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pingap-health-check\r\nConnection: close\r\n\r\n"
        );
        let status = if tls {
            let name = host.split(':').next().unwrap_or(host).to_string();
            let server_name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| format!("invalid TLS name: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(unverified_tls());
            let stream = connector
                .connect(server_name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            status_of(stream, &request).await?
        } else {
            status_of(stream, &request).await?
        };
        if self
            .statuses
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
        {
            Ok(format!("status {status}"))
        } else {
            Err(format!("unexpected status {status}"))
        }
    }
}

/// Parses `text`, when given, into `target`; a failure is recorded under `key`.
fn parse_into<T>(
    errors: &mut Vec<KeyError>,
    key: &str,
    text: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
    target: &mut T,
) {
    if let Some(text) = text {
        match parse(&text) {
            Ok(value) => *target = value,
            Err(e) => errors.push((key.to_string(), e)),
        }
    }
}

#[derive(Default)]
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn take(&mut self, name: &str) -> Option<String> {
        let index = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(index).1)
    }
}

/// Parses `"200"`, `"200-399"`, `"2xx"` or a comma-separated list of those.
pub fn parse_statuses(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let invalid = || format!("\"{text}\" is not a status list like \"200-399\" or \"200,204\"");
    let status = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .ok_or_else(invalid)
    };
    text.split(',')
        .map(|part| {
            let part = part.trim();
            if let Some(class) = part.strip_suffix("xx") {
                let first = status(&format!("{class}00"))?;
                Ok((first, first + 99))
            } else if let Some((low, high)) = part.split_once('-') {
                let (low, high) = (status(low)?, status(high)?);
                if low > high {
                    return Err(invalid());
                }
                Ok((low, high))
            } else {
                let one = status(part)?;
                Ok((one, one))
            }
        })
        .collect()
}

/// Sends `request` and reads the status code of the answer.
async fn status_of<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> Result<u16, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        if buf.len() > MAX_STATUS_LINE {
            return Err("status line too long".to_string());
        }
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err("connection closed before a status line".to_string());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|s| s.parse::<u16>().ok()),
    ) {
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err("not an HTTP/1.x answer".to_string()),
    }
}

/// A TLS client that accepts any certificate: checks ask whether a backend answers, not who it
/// is.
fn unverified_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_no_client_auth()
                });
            Arc::new(match config {
                Ok(config) => config,
                // The ring provider supports the default versions; keep a usable fallback.
                Err(_) => rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            })
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Upstream {
        Upstream::default()
    }

    #[test]
    fn urls_keys_and_query_parameters() {
        let check = HealthCheck::compile(
            "http://api.internal/healthz?interval=1s&status=200-399&healthy_threshold=1&v=2",
            &spec(),
        )
        .unwrap();
        assert_eq!(
            check.probe,
            Probe::Http {
                tls: false,
                host: "api.internal".into(),
                target: "/healthz?v=2".into()
            }
        );
        assert_eq!(check.interval, Duration::from_secs(1));
        assert_eq!(check.timeout, DEFAULT_TIMEOUT);
        assert_eq!(check.statuses, [(200, 399)]);
        assert_eq!(check.healthy_threshold, 1);
        assert_eq!(check.unhealthy_threshold, DEFAULT_UNHEALTHY_THRESHOLD);

        let mut keyed = spec();
        keyed.health_check_timeout = Some(ConfigDuration(Duration::from_millis(300)));
        keyed.unhealthy_threshold = Some(5);
        let check = HealthCheck::compile("tcp://", &keyed).unwrap();
        assert_eq!(check.probe, Probe::Tcp);
        assert_eq!(check.timeout, Duration::from_millis(300));
        assert_eq!(check.unhealthy_threshold, 5);
    }

    #[test]
    fn mistakes_are_named_by_key() {
        let mut keyed = spec();
        keyed.health_check_interval = Some(ConfigDuration(Duration::from_secs(1)));
        let errors = HealthCheck::compile(
            "http://h/?interval=2s&status=abc&unhealthy_threshold=0",
            &keyed,
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "health_check_interval",
                "health_check_status",
                "unhealthy_threshold"
            ]
        );
        assert!(HealthCheck::compile("ftp://x/", &spec()).is_err());
        assert!(HealthCheck::compile("http:///x", &spec()).is_err());
    }

    #[test]
    fn status_lists() {
        assert_eq!(
            parse_statuses("2xx, 301,400-404").unwrap(),
            [(200, 299), (301, 301), (400, 404)]
        );
        assert!(parse_statuses("299-200").is_err());
        assert!(parse_statuses("700").is_err());
    }
}
