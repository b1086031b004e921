//! OCSP stapling end to end: `openssl ocsp` answers on an ephemeral loopback port, pingap
//! fetches, checks and staples in the background, and `openssl s_client -status` sees the staple.
//!
//! `openssl ocsp -port` listens on every interface, so the responder here is a small HTTP front
//! on 127.0.0.1 that hands each request to `openssl ocsp -reqin … -respout …` (the same OCSP
//! responder code) and returns its answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, Pingap};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `openssl req` with a new P-256 key in `NAME.key` for `subject`, and `more` arguments (a
/// request, or a self-signed certificate).
fn new_key_and_request(dir: &Path, name: &str, subject: &str, more: &[&str]) {
    let key = format!("{name}.key");
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        subject,
    ];
    args.extend_from_slice(more);
    openssl(dir, &args);
}

/// A CA and the certificates it issues, made with the openssl command line, with the index an
/// `openssl ocsp` responder reads.
struct Pki {
    dir: tempfile::TempDir,
    index: Vec<String>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        for (name, subject) in [
            ("ca", "/CN=OCSP test CA"),
            ("impostor", "/CN=OCSP impostor"),
        ] {
            new_key_and_request(
                dir.path(),
                name,
                subject,
                &[
                    "-x509",
                    "-out",
                    &format!("{name}.crt"),
                    "-days",
                    "30",
                    "-addext",
                    "basicConstraints=critical,CA:true",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                ],
            );
        }
        Pki {
            dir,
            index: Vec::new(),
        }
    }

    /// Issues `NAME.chain` (leaf then CA) and `NAME.key` for `NAME`, with `serial`, naming
    /// `responder` in its authorityInfoAccess when given; `revoked` marks it in the index.
    fn issue(&mut self, name: &str, serial: u32, responder: Option<&str>, revoked: bool) {
        let dir = self.dir.path();
        let mut ext = format!("[leaf]\nsubjectAltName=DNS:{name}\nbasicConstraints=CA:false\n");
        if let Some(url) = responder {
            ext.push_str(&format!("authorityInfoAccess=OCSP;URI:{url}\n"));
        }
        std::fs::write(dir.join(format!("{name}.cnf")), ext).unwrap();
        new_key_and_request(
            dir,
            name,
            &format!("/CN={name}"),
            &["-new", "-out", &format!("{name}.csr")],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &format!("0x{serial:04X}"),
                "-days",
                "90",
                "-extfile",
                &format!("{name}.cnf"),
                "-extensions",
                "leaf",
                "-out",
                &format!("{name}.crt"),
            ],
        );
        let chain = std::fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap()
            + &std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        std::fs::write(dir.join(format!("{name}.chain")), chain).unwrap();
        let expiry = "361231235959Z";
        let line = if revoked {
            format!("R\t{expiry}\t260101000000Z\t{serial:04X}\tunknown\t/CN={name}")
        } else {
            format!("V\t{expiry}\t\t{serial:04X}\tunknown\t/CN={name}")
        };
        self.index.push(line);
        std::fs::write(dir.join("index.txt"), self.index.join("\n") + "\n").unwrap();
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// The loopback front of `openssl ocsp`: `/good` answers signed by the CA, `/impostor` signed
/// by another CA. Counts the requests of each path.
struct Responder {
    addr: SocketAddr,
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl Responder {
    async fn start(dir: PathBuf) -> Responder {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = requests.clone();
        tokio::spawn(async move {
            let mut serial = 0u64;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let dir = dir.clone();
                let counted = counted.clone();
                serial += 1;
                let connection = serial;
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let dir = dir.clone();
                            let counted = counted.clone();
                            async move {
                                let path = request.uri().path().to_string();
                                *counted.lock().unwrap().entry(path.clone()).or_default() += 1;
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let signer = if path == "/impostor" {
                                    "impostor"
                                } else {
                                    "ca"
                                };
                                let request_file = format!("req-{connection}.der");
                                let response_file = format!("resp-{connection}.der");
                                std::fs::write(dir.join(&request_file), &body).unwrap();
                                let dir2 = dir.clone();
                                let (req, resp) = (request_file.clone(), response_file.clone());
                                tokio::task::spawn_blocking(move || {
                                    openssl(
                                        &dir2,
                                        &[
                                            "ocsp",
                                            "-index",
                                            "index.txt",
                                            "-CA",
                                            "ca.crt",
                                            "-rsigner",
                                            &format!("{signer}.crt"),
                                            "-rkey",
                                            &format!("{signer}.key"),
                                            "-reqin",
                                            &req,
                                            "-respout",
                                            &resp,
                                            "-ndays",
                                            "1",
                                        ],
                                    )
                                })
                                .await
                                .unwrap();
                                let answer = std::fs::read(dir.join(&response_file)).unwrap();
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/ocsp-response")
                                        .body(Full::new(bytes::Bytes::from(answer)))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Responder { addr, requests }
    }

    fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// `openssl s_client -status` for `name` at `addr`: its output.
fn s_client_status(addr: SocketAddr, name: &str) -> String {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
            "-status",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_ocsp_responses_are_stapled_and_others_never() {
    let backend = Backend::start("b").await;
    let mut pki = Pki::new();
    let responder = Responder::start(pki.dir.path().to_path_buf()).await;
    let url = |path: &str| format!("http://{}{path}", responder.addr);
    pki.issue("good.test", 0x1001, Some(&url("/good")), false);
    pki.issue("revoked.test", 0x1002, Some(&url("/good")), true);
    pki.issue("forged.test", 0x1003, Some(&url("/impostor")), false);
    pki.issue("plain.test", 0x1004, None, false);
    let mut config = format!(
        "[upstreams.api]\naddrs = ['{}']\n[locations.api]\nupstream = 'api'\n\
         [servers.s]\naddr = '127.0.0.1:0'\nlocations = ['api']\ntls = true\n",
        backend.addr
    );
    for name in ["good", "revoked", "forged", "plain"] {
        config.push_str(&format!(
            "[certificates.{name}]\ntls_cert = '{}'\ntls_key = '{}'\n",
            pki.path(&format!("{name}.test.chain")).display(),
            pki.path(&format!("{name}.test.key")).display()
        ));
    }
    let pingap = Pingap::start(&config);
    let addr = pingap.addr("s");

    let wait = |needle: &str| {
        pingap
            .output
            .wait_for(needle, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no \"{needle}\" in:\n{}", pingap.output.text()))
    };
    tokio::task::block_in_place(|| {
        wait("OCSP response stapled to certificate good ");
        wait("OCSP response for certificate revoked not stapled (the certificate is revoked)");
        wait(
            "OCSP response for certificate forged not stapled (the responder's certificate is not signed by the issuer)",
        );
    });

    let good = s_client_status(addr, "good.test");
    assert!(good.contains("OCSP Response Status: successful"), "{good}");
    assert!(good.contains("Cert Status: good"), "{good}");
    assert!(
        good.contains("CN = good.test") || good.contains("CN=good.test"),
        "{good}"
    );
    for name in ["revoked.test", "forged.test", "plain.test"] {
        let output = s_client_status(addr, name);
        assert!(
            output.contains("OCSP response: no response sent"),
            "{name}: {output}"
        );
    }
    // A certificate without a responder is served without a staple, and nothing is said.
    let text = pingap.output.text();
    assert!(
        !text
            .lines()
            .any(|line| line.contains("OCSP") && line.contains("certificate plain")),
        "{text}"
    );
    assert!(responder.count("/good") >= 2);
    assert!(responder.count("/impostor") >= 1);
    assert_eq!(
        responder.requests.lock().unwrap().keys().len(),
        2,
        "only the responders named were asked"
    );
}
