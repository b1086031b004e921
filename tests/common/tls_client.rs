//! A rustls client for looking at what an HTTPS listener presents: which certificate (and OCSP
//! staple) a handshake with a given SNI gets, with or without a client certificate. It accepts
//! any server certificate, so tests can compare the one presented with the one expected.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::pki::Leaf;

/// What the server presented in a handshake.
#[derive(Debug, Default, Clone)]
pub struct Presented {
    /// The leaf certificate (DER).
    pub leaf: Vec<u8>,
    /// The stapled OCSP response; empty when none.
    pub ocsp: Vec<u8>,
}

#[derive(Debug)]
struct Recorder {
    seen: Mutex<Presented>,
    provider: rustls::crypto::CryptoProvider,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Presented {
            leaf: end_entity.to_vec(),
            ocsp: ocsp_response.to_vec(),
        };
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How to connect.
#[derive(Default, Clone)]
pub struct Options<'a> {
    /// The SNI; `None` sends none.
    pub sni: Option<&'a str>,
    /// A client certificate to present when asked.
    pub client: Option<&'a Leaf>,
    /// ALPN protocols offered.
    pub alpn: Vec<Vec<u8>>,
}

/// Connects to `addr` over TLS; returns the stream and what the server presented, or why the
/// handshake failed.
pub async fn connect(
    addr: SocketAddr,
    options: Options<'_>,
) -> Result<(TlsStream<TcpStream>, Presented), String> {
    let recorder = Arc::new(Recorder {
        seen: Mutex::default(),
        provider: rustls::crypto::ring::default_provider(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(recorder.clone());
    let mut config = match options.client {
        Some(leaf) => {
            let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.clone();
    let name = match options.sni {
        Some(sni) => ServerName::try_from(sni.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let presented = recorder.seen.lock().unwrap().clone();
    Ok((stream, presented))
}

/// Sends a GET for `path` with `Host: host` on `stream` (HTTP/1.1, kept alive) and returns the
/// status and body, or why there was none (a TLS alert, the connection closed).
pub async fn get(
    stream: &mut TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response in time")
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed: {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        reply.extend_from_slice(&buf[..n]);
        if let Some(split) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a content-length response");
            if reply.len() >= split + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body =
                    String::from_utf8_lossy(&reply[split + 4..split + 4 + length]).to_string();
                return Ok((status, body));
            }
        }
    }
}
