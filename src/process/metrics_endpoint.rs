//! The `[metrics]` endpoint: a Pingora HTTP app on its own listener that reads the gauges of
//! the moment (requests in flight, the state of every backend of the live runtime, the expiry
//! of every certificate served) and hands them to
//! [`Metrics::render`](crate::observe::metrics::Metrics::render).

use std::sync::Arc;

use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::observe::metrics::{BackendSample, CertificateSample, ScrapeSamples, metrics};
use crate::proxy::InFlight;
use crate::runtime::RuntimeHandle;
use crate::upstream::health::{Circuit, now_ms};

/// The `[metrics]` endpoint.
pub struct MetricsEndpoint {
    /// The configuration whose backends are reported.
    pub runtime: Arc<RuntimeHandle>,
    /// The requests in flight (the count graceful shutdown waits on).
    pub in_flight: Arc<InFlight>,
    /// The path served (anything else is a 404).
    pub path: String,
}

impl MetricsEndpoint {
    /// The text exposition, with the gauges read now.
    fn render(&self) -> Vec<u8> {
        let runtime = self.runtime.load();
        let now = now_ms();
        let backends = runtime
            .upstreams
            .iter()
            .flat_map(|(name, pool)| {
                pool.members()
                    .backends()
                    .iter()
                    .map(|member| BackendSample {
                        upstream: name.as_str(),
                        backend: member.addr.to_string(),
                        up: member.health.serving(now),
                        circuit_state: match member.health.circuit() {
                            Circuit::Closed => 0,
                            Circuit::Open => 1,
                            Circuit::HalfOpen => 2,
                        },
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let certificates = runtime
            .certificates
            .store
            .served()
            .into_iter()
            .map(|served| CertificateSample {
                not_after: served.loaded.info.not_after,
                name: served.name,
                domains: served.domains,
            })
            .collect();
        metrics().render(&ScrapeSamples {
            in_flight: self.in_flight.count(),
            backends,
            certificates,
        })
    }
}

#[async_trait::async_trait]
impl ServeHttp for MetricsEndpoint {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = if session.req_header().uri.path() == self.path {
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.render(),
            )
        } else {
            (404, "text/plain", b"not found\n".to_vec())
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}
