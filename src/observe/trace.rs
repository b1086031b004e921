//! OpenTelemetry traces (`[tracing]`): a server span per request and a client span per upstream
//! attempt, exported over OTLP (gRPC or HTTP/protobuf) in batches.
//!
//! The request path does little: when the request starts it reads the client's W3C
//! `traceparent` (continuing its trace and following its sampling decision) or starts a trace,
//! sampled with probability `sample_ratio`; each attempt gets a span id, sent upstream in
//! `traceparent`. The spans are built when the request ends, with the times recorded on the
//! way, and handed to the SDK's batch processor (a bounded queue and a thread of its own; spans
//! are dropped, never waited for, when the queue is full). The gRPC exporter runs on a tokio
//! runtime of its own, outside Pingora's. Spans still queued are flushed on shutdown.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};

use super::UpstreamAttempt;

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (default port 4317).
    #[default]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    Http,
}

/// `[tracing]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingPlan {
    /// The collector's URL.
    pub endpoint: String,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Fraction of new traces sampled, 0 to 1.
    pub sample_ratio: f64,
    /// gRPC or HTTP.
    pub protocol: Protocol,
}

impl TracingPlan {
    /// Checks the settings; `endpoint` may omit its scheme (`localhost:4317`).
    pub fn new(
        endpoint: &str,
        service_name: Option<&str>,
        sample_ratio: Option<f64>,
        protocol: Option<&str>,
    ) -> Result<TracingPlan, (&'static str, String)> {
        let protocol = match protocol.unwrap_or("grpc") {
            "grpc" => Protocol::Grpc,
            "http" | "http/protobuf" => Protocol::Http,
            other => {
                return Err((
                    "protocol",
                    format!("\"{other}\" is not a protocol; use grpc or http"),
                ));
            }
        };
        let sample_ratio = sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err((
                "sample_ratio",
                format!("{sample_ratio} is not between 0 and 1"),
            ));
        }
        let mut endpoint = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| ("endpoint", format!("\"{endpoint}\" is not a URL: {e}")))?;
        if uri.host().is_none() {
            return Err(("endpoint", format!("\"{endpoint}\" has no host")));
        }
        if protocol == Protocol::Http && matches!(uri.path(), "" | "/") {
            endpoint = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        }
        Ok(TracingPlan {
            endpoint,
            service_name: service_name.unwrap_or("pingap").to_string(),
            sample_ratio,
            protocol,
        })
    }
}

/// The process's span pipeline.
struct Pipeline {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    ids: RandomIdGenerator,
    /// New traces whose id's low 64 bits are below this are sampled.
    threshold: u64,
    /// Runs the gRPC exporter's connections (kept alive with the pipeline).
    _runtime: Option<tokio::runtime::Runtime>,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The exporter's runtime could not start.
    #[error("cannot start the trace exporter's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The exporter rejected its settings.
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Starts exporting spans as `plan` says; called once, before serving.
pub fn init(plan: &TracingPlan) -> Result<(), TraceError> {
    let (exporter, runtime) = match plan.protocol {
        Protocol::Grpc => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()?;
            let exporter = {
                let _entered = runtime.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(&plan.endpoint)
                    .with_timeout(Duration::from_secs(5))
                    .build()?
            };
            (exporter, Some(runtime))
        }
        Protocol::Http => {
            // A blocking HTTP client (running a thread of its own), used by the batch
            // processor's thread; `init` runs before Pingora's runtime exists.
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(&plan.endpoint)
                .with_timeout(Duration::from_secs(5))
                .build()?;
            (exporter, None)
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(PresetIds::default())
        .with_resource(
            Resource::builder()
                .with_service_name(plan.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("pingap");
    // The ratio of the id space below the threshold is the ratio sampled.
    let threshold = (plan.sample_ratio * u64::MAX as f64) as u64;
    let _ = PIPELINE.set(Pipeline {
        provider,
        tracer,
        ids: RandomIdGenerator::default(),
        threshold,
        _runtime: runtime,
    });
    tracing::info!(endpoint = %plan.endpoint, "exporting traces");
    Ok(())
}

/// Exports the spans still queued; called when the process ends.
pub fn shutdown() {
    if let Some(pipeline) = PIPELINE.get()
        && let Err(e) = pipeline.provider.shutdown()
    {
        tracing::warn!("traces not flushed: {e}");
    }
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    PIPELINE.get().is_some()
}

/// The trace a request belongs to.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    trace_id: TraceId,
    /// The request's server span.
    span_id: SpanId,
    /// The client's span, when it sent `traceparent`.
    parent: Option<SpanId>,
    sampled: bool,
    /// When the request started, on the wall clock and the monotonic one.
    started: (SystemTime, Instant),
}

impl RequestTrace {
    /// Continues the trace of the client's `traceparent` header, or starts one.
    pub fn start(traceparent: Option<&[u8]>, started: Instant) -> Option<RequestTrace> {
        let pipeline = PIPELINE.get()?;
        let parent = traceparent.and_then(parse_traceparent);
        let (trace_id, parent, sampled) = match parent {
            Some((trace_id, span_id, sampled)) => (trace_id, Some(span_id), sampled),
            None => {
                let trace_id = pipeline.ids.new_trace_id();
                let low = u128::from_be_bytes(trace_id.to_bytes()) as u64;
                (
                    trace_id,
                    None,
                    low < pipeline.threshold || pipeline.threshold == u64::MAX,
                )
            }
        };
        Some(RequestTrace {
            trace_id,
            span_id: pipeline.ids.new_span_id(),
            parent,
            sampled,
            started: (SystemTime::now() - started.elapsed(), started),
        })
    }

    /// Whether the request's spans are exported.
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// A span id for a new upstream attempt.
    pub fn new_span_id(&self) -> u64 {
        PIPELINE
            .get()
            .map_or(0, |p| u64::from_be_bytes(p.ids.new_span_id().to_bytes()))
    }

    /// The `traceparent` to send upstream for the attempt with span id `span_id`.
    pub fn traceparent(&self, span_id: u64) -> String {
        format!(
            "00-{}-{:016x}-{}",
            self.trace_id,
            span_id,
            if self.sampled { "01" } else { "00" }
        )
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.started.0 + at.saturating_duration_since(self.started.1)
    }

    fn context(&self, span_id: SpanId, remote: bool) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            span_id,
            if self.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            remote,
            TraceState::default(),
        ))
    }

    /// Exports the request's spans (if sampled): the server span with `attributes` and the
    /// `status` sent, and one client span per attempt.
    pub fn finish(
        &self,
        name: String,
        mut attributes: Vec<KeyValue>,
        status: u16,
        attempts: &[UpstreamAttempt],
        method: &str,
        ended: Instant,
    ) {
        let Some(pipeline) = PIPELINE.get().filter(|_| self.sampled) else {
            return;
        };
        let parent = match self.parent {
            Some(parent) => self.context(parent, true),
            None => Context::new(),
        };
        if status > 0 {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if status >= 500 || status == 0 {
            attributes.push(KeyValue::new("error.type", error_type(status)));
        }
        let builder = pipeline
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(self.started.0)
            .with_attributes(attributes);
        let mut server = with_ids(self.trace_id, self.span_id, || {
            builder.start_with_context(&pipeline.tracer, &parent)
        });
        if status >= 500 || status == 0 {
            server.set_status(Status::error(error_type(status)));
        }

        let in_server = self.context(self.span_id, false);
        for attempt in attempts {
            let mut attributes = vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("server.address", attempt.addr.ip().to_string()),
                KeyValue::new("server.port", i64::from(attempt.addr.port())),
                KeyValue::new("network.peer.address", attempt.addr.ip().to_string()),
            ];
            if let Some(status) = attempt.status {
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if let Some(failure) = attempt.failure {
                attributes.push(KeyValue::new("error.type", failure));
            }
            let builder = pipeline
                .tracer
                .span_builder(method.to_string())
                .with_kind(SpanKind::Client)
                .with_start_time(self.wall(attempt.started))
                .with_attributes(attributes);
            let mut client = with_ids(self.trace_id, SpanId::from(attempt.span_id), || {
                builder.start_with_context(&pipeline.tracer, &in_server)
            });
            if let Some(failure) = attempt.failure {
                client.set_status(Status::error(failure));
            } else if attempt.status.is_some_and(|s| s >= 500) {
                client.set_status(Status::error("upstream error"));
            }
            client.end_with_timestamp(self.wall(attempt.ended.unwrap_or(ended)));
        }
        server.end_with_timestamp(self.wall(ended));
    }
}

thread_local! {
    /// The ids the next span started on this thread gets (see [`PresetIds`]).
    static PRESET: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Runs `start` (which starts one span) with the span's ids chosen in advance: the span ids were
/// sent upstream in `traceparent` before the span could be built.
fn with_ids<T>(trace_id: TraceId, span_id: SpanId, start: impl FnOnce() -> T) -> T {
    PRESET.set(Some((trace_id, span_id)));
    let span = start();
    PRESET.set(None);
    span
}

/// The SDK's id generator, except for spans started through [`with_ids`].
#[derive(Debug, Default)]
struct PresetIds(RandomIdGenerator);

impl IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        PRESET
            .get()
            .map_or_else(|| self.0.new_trace_id(), |(trace_id, _)| trace_id)
    }

    fn new_span_id(&self) -> SpanId {
        PRESET
            .get()
            .map_or_else(|| self.0.new_span_id(), |(_, span_id)| span_id)
    }
}

fn error_type(status: u16) -> String {
    if status == 0 {
        "no response".to_string()
    } else {
        status.to_string()
    }
}

/// Parses a W3C `traceparent` (version 00 and later versions' first four fields):
/// the trace id, the parent span id and whether it is sampled.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2)
        || !lower_hex(trace, 32)
        || !lower_hex(span, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id, span_id, flags & 1 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_per_w3c() {
        let (trace, span, sampled) =
            parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert!(sampled);
        let (_, _, sampled) =
            parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!sampled);
        // A later version may add fields.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn plans_check_their_settings() {
        let plan = TracingPlan::new("localhost:4317", None, None, None).unwrap();
        assert_eq!(plan.endpoint, "http://localhost:4317");
        assert_eq!(plan.protocol, Protocol::Grpc);
        assert_eq!(plan.service_name, "pingap");
        let plan = TracingPlan::new(
            "http://127.0.0.1:4318",
            Some("edge"),
            Some(0.5),
            Some("http"),
        )
        .unwrap();
        assert_eq!(plan.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(
            TracingPlan::new("x:1", None, Some(1.5), None)
                .unwrap_err()
                .0,
            "sample_ratio"
        );
        assert_eq!(
            TracingPlan::new("x:1", None, None, Some("thrift"))
                .unwrap_err()
                .0,
            "protocol"
        );
    }
}
