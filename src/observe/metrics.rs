//! Prometheus metrics: what pingap counts, and the `[metrics]` endpoint that serves them.
//!
//! Label values are bounded: server, location and upstream names from the configuration,
//! backend addresses, methods folded to eight values and statuses to their class — never raw
//! paths or hosts. The per-request counters are resolved once per location and server when the
//! configuration is compiled, so a request only adds to atomics (no label lookup, no lock).
//!
//! A location's counters (`pingap_requests_total`, `pingap_request_duration_seconds`,
//! `pingap_cache_requests_total`) are plain atomics in one block per location name, which the
//! registry reads at scrape time through a collector of their own: a location costs about half a
//! kilobyte instead of 47 Prometheus handles, each with its own label vector, so configurations
//! with many thousands of locations compile fast and small. The output is the same as the
//! Prometheus vectors would give: every series of a compiled location, counted or not.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `pingap_requests_total` | location, method, status | requests answered, by status class |
//! | `pingap_server_requests_total` | server, status | the same by server (unrouted requests too) |
//! | `pingap_request_duration_seconds` | location | time from the request header to the end of the response |
//! | `pingap_upstream_response_seconds` | upstream | time from choosing a backend to its response header |
//! | `pingap_requests_in_flight` | | requests being served |
//! | `pingap_connections_active`, `pingap_connections_total` | server | client connections open now, and accepted |
//! | `pingap_body_bytes_total` | server, direction | body bytes received (`in`) and sent (`out`) |
//! | `pingap_plugin_rejections_total` | location, status | requests a plugin answered itself (4xx/5xx) |
//! | `pingap_cache_requests_total` | location, status | `X-Cache-Status` of requests to cached locations |
//! | `pingap_backend_up` | upstream, backend | 1 when the backend gets requests (checks, passive health, circuit) |
//! | `pingap_backend_circuit_state` | upstream, backend | 0 closed, 1 open, 2 half-open |
//! | `pingap_certificate_expiry_timestamp_seconds` | name, domain | when each served certificate expires (Unix seconds), per domain it is served for |
//! | `pingap_access_log_dropped_total` | log | access-log lines dropped (writer behind or failing) |
//! | `pingap_log_tail_dropped_total` | | records the live log tail's slow followers missed |
//! | `pingap_acme_orders_total` | certificate, outcome | ACME orders: `issued` (a first certificate), `renewed`, `failed` |
//! | `pingap_config_reloads_total` | result | reloads, `ok` or `failed` |
//! | `pingap_config_rollbacks_total` | | configurations the rollback window took back |
//! | `pingap_config_source_up` | | 1 while the configuration source (etcd) answers, 0 while it does not |
//! | `pingap_config_generation` | | generation of the running configuration |
//! | `pingap_config_last_reload_timestamp_seconds` | | when it was installed |
//! | `pingap_uptime_seconds` | | since the process started |
//! | `pingap_build_info` | version | always 1 |
//! | `process_*` | | CPU seconds, resident memory, open fds, threads, start time |
//!
//! Series live as long as what they are labelled with: after each reload [`Metrics::retain`]
//! drops the series of locations, upstreams, backends and servers the running configuration no
//! longer has (the process hands their names down in a [`LiveNames`]), so renaming things over
//! many reloads does not grow the output. Series of names that are still there are untouched:
//! their counts continue.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::Method;
use prometheus::core::{Collector, Desc, MetricVec, MetricVecBuilder};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets of the duration histograms, in seconds: sub-millisecond up to a minute.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// The methods counted by name; others count as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];
/// Status classes.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// `X-Cache-Status` values.
const CACHE_STATUSES: [&str; 6] = ["HIT", "MISS", "EXPIRED", "STALE", "REVALIDATED", "BYPASS"];

/// Series a location has: requests by method and class, its duration histogram, cache statuses.
const SERIES_PER_LOCATION: usize = METHODS.len() * CLASSES.len() + 1 + CACHE_STATUSES.len();

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    locations: LocationTable,
    server_requests: IntCounterVec,
    upstream: HistogramVec,
    in_flight: IntGauge,
    connections: IntGaugeVec,
    connections_total: IntCounterVec,
    body_bytes: IntCounterVec,
    rejections: IntCounterVec,
    backend_up: IntGaugeVec,
    circuit: IntGaugeVec,
    certificate_expiry: IntGaugeVec,
    reloads: IntCounterVec,
    rollbacks: IntCounter,
    source_up: IntGauge,
    generation: IntGauge,
    last_reload: Gauge,
    uptime: Gauge,
    access_log_dropped: IntCounterVec,
    log_tail_dropped: IntCounter,
    acme_orders: IntCounterVec,
}

/// The process's metrics, registered on first use.
///
/// A process global on purpose: the series count what the process has done since it started
/// (requests, reloads, uptime), not anything of one configuration, so they outlive every
/// runtime; and Prometheus' registry and the pre-resolved counters held by each compiled
/// location must be the same objects across reloads for the counts to continue.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Builds a metric and registers it; the names and labels are constants, so this cannot fail
/// except by a programming error, which the unit tests catch.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    match metric.and_then(|m| registry.register(Box::new(m.clone())).map(|()| m)) {
        Ok(metric) => metric,
        Err(e) => panic!("metric definition: {e}"),
    }
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let hist =
            |name: &str, help: &str| HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
        let locations = LocationTable::default();
        let metrics = Metrics {
            started: Instant::now(),
            locations: locations.clone(),
            server_requests: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "pingap_server_requests_total",
                        "Requests answered, by server and status class",
                    ),
                    &["server", "status"],
                ),
            ),
            upstream: registered(
                r,
                HistogramVec::new(
                    hist(
                        "pingap_upstream_response_seconds",
                        "Time from choosing a backend to its response header",
                    ),
                    &["upstream"],
                ),
            ),
            in_flight: registered(
                r,
                IntGauge::new("pingap_requests_in_flight", "Requests being served"),
            ),
            connections: registered(
                r,
                IntGaugeVec::new(
                    Opts::new("pingap_connections_active", "Client connections open now"),
                    &["server"],
                ),
            ),
            connections_total: registered(
                r,
                IntCounterVec::new(
                    Opts::new("pingap_connections_total", "Client connections accepted"),
                    &["server"],
                ),
            ),
            body_bytes: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "pingap_body_bytes_total",
                        "Body bytes received from clients (in) and sent to them (out)",
                    ),
                    &["server", "direction"],
                ),
            ),
            rejections: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "pingap_plugin_rejections_total",
                        "Requests a plugin answered itself",
                    ),
                    &["location", "status"],
                ),
            ),
            backend_up: registered(
                r,
                IntGaugeVec::new(
                    Opts::new("pingap_backend_up", "1 when the backend gets requests"),
                    &["upstream", "backend"],
                ),
            ),
            circuit: registered(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "pingap_backend_circuit_state",
                        "Circuit breaker: 0 closed, 1 open, 2 half-open",
                    ),
                    &["upstream", "backend"],
                ),
            ),
            certificate_expiry: registered(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "pingap_certificate_expiry_timestamp_seconds",
                        "When the certificate served for the domain expires (Unix seconds)",
                    ),
                    &["name", "domain"],
                ),
            ),
            reloads: registered(
                r,
                IntCounterVec::new(
                    Opts::new("pingap_config_reloads_total", "Configuration reloads"),
                    &["result"],
                ),
            ),
            rollbacks: registered(
                r,
                IntCounter::new(
                    "pingap_config_rollbacks_total",
                    "Configurations taken back by the rollback window",
                ),
            ),
            source_up: registered(
                r,
                IntGauge::new(
                    "pingap_config_source_up",
                    "1 while the configuration source answers",
                ),
            ),
            generation: registered(
                r,
                IntGauge::new(
                    "pingap_config_generation",
                    "Generation of the running configuration",
                ),
            ),
            last_reload: registered(
                r,
                Gauge::new(
                    "pingap_config_last_reload_timestamp_seconds",
                    "When the running configuration was installed",
                ),
            ),
            uptime: registered(
                r,
                Gauge::new("pingap_uptime_seconds", "Seconds since the process started"),
            ),
            access_log_dropped: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "pingap_access_log_dropped_total",
                        "Access-log lines dropped because the writer was behind or failing",
                    ),
                    &["log"],
                ),
            ),
            log_tail_dropped: registered(
                r,
                IntCounter::new(
                    "pingap_log_tail_dropped_total",
                    "Access-log records the live log tail's slow followers missed",
                ),
            ),
            acme_orders: registered(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "pingap_acme_orders_total",
                        "ACME orders, by certificate and outcome (issued, renewed, failed)",
                    ),
                    &["certificate", "outcome"],
                ),
            ),
            registry: registry.clone(),
        };
        let build = registered(
            r,
            IntGaugeVec::new(
                Opts::new("pingap_build_info", "The running build"),
                &["version"],
            ),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registered(r, LocationCollector::new(locations));
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = metrics.registry.register(Box::new(process));
        }
        metrics
    }

    /// The counters of one location: those of the name's earlier configurations, so its counts
    /// continue, or fresh ones (exported from now on) for a name not seen since the last
    /// [`Metrics::retain`].
    pub fn location(&self, name: &str) -> LocationMetrics {
        let mut table = self.locations.lock();
        if let Some((name, counters)) = table.get_key_value(name) {
            return LocationMetrics {
                name: name.clone(),
                counters: counters.clone(),
            };
        }
        let name: Arc<str> = Arc::from(name);
        let counters = Arc::new(LocationCounters::default());
        table.insert(name.clone(), counters.clone());
        LocationMetrics { name, counters }
    }

    /// The counters of one server.
    pub fn server(&self, name: &str) -> ServerMetrics {
        ServerMetrics {
            requests: CLASSES.map(|class| self.server_requests.with_label_values(&[name, class])),
            bytes_in: self.body_bytes.with_label_values(&[name, "in"]),
            bytes_out: self.body_bytes.with_label_values(&[name, "out"]),
            connections: self.connections.with_label_values(&[name]),
            connections_total: self.connections_total.with_label_values(&[name]),
        }
    }

    /// The response-time histogram of one upstream.
    pub fn upstream(&self, name: &str) -> Histogram {
        self.upstream.with_label_values(&[name])
    }

    /// The dropped-lines counter of one access log (a path or `stdout`).
    pub fn access_log_dropped(&self, log: &str) -> IntCounter {
        self.access_log_dropped.with_label_values(&[log])
    }

    /// The counter of records the live log tail's slow followers missed.
    pub fn log_tail_dropped(&self) -> IntCounter {
        self.log_tail_dropped.clone()
    }

    /// Counts a request a plugin answered with `status` (a rare path: resolved per call).
    pub fn rejection(&self, location: &str, status: u16) {
        self.rejections
            .with_label_values(&[location, &status.to_string()])
            .inc();
    }

    /// Records a reload attempt.
    pub fn reloaded(&self, generation: Option<u64>) {
        match generation {
            Some(generation) => {
                self.reloads.with_label_values(&["ok"]).inc();
                self.installed(generation);
            }
            None => self.reloads.with_label_values(&["failed"]).inc(),
        }
    }

    /// Counts an ACME order of `certificate` and its outcome (`issued`, `renewed`, `failed`).
    pub fn acme_order(&self, certificate: &str, outcome: &str) {
        self.acme_orders
            .with_label_values(&[certificate, outcome])
            .inc();
    }

    /// Counts a configuration the rollback window took back.
    pub fn rolled_back(&self) {
        self.rollbacks.inc();
    }

    /// Records whether the configuration source answers.
    pub fn source_up(&self, up: bool) {
        self.source_up.set(i64::from(up));
    }

    /// Records that configuration `generation` runs from now.
    pub fn installed(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.last_reload.set(now.as_secs_f64());
    }

    /// The text exposition of every metric, with the gauges read at scrape time set from
    /// `samples` (the process reads them from the live runtime and hands them down).
    pub fn render(&self, samples: &ScrapeSamples<'_>) -> Vec<u8> {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        self.in_flight
            .set(i64::try_from(samples.in_flight).unwrap_or(i64::MAX));
        self.backend_up.reset();
        self.circuit.reset();
        for backend in &samples.backends {
            let labels = [backend.upstream, backend.backend.as_str()];
            self.backend_up
                .with_label_values(&labels)
                .set(i64::from(backend.up));
            self.circuit
                .with_label_values(&labels)
                .set(i64::from(backend.circuit_state));
        }
        self.certificate_expiry.reset();
        for certificate in &samples.certificates {
            for domain in &certificate.domains {
                self.certificate_expiry
                    .with_label_values(&[certificate.name.as_str(), domain.as_str()])
                    .set(certificate.not_after);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("could not encode the metrics: {e}");
        }
        out
    }

    /// Drops every series labelled with a location, upstream, backend or server that is not in
    /// `live` (the names of the configuration that runs now); returns how many were dropped.
    ///
    /// The series of live names are kept as they are, so their counts continue. A request still
    /// running on an older configuration may hold the counters of a dropped location: they just
    /// stop being exported, and a location added again later is compiled with fresh ones. The
    /// per-server counters are resolved once, when the listeners start; that is safe because a
    /// reload never removes a server (a listener change is refused).
    pub fn retain(&self, live: &LiveNames) -> usize {
        let location = live_label("location", &live.locations);
        let upstream = live_label("upstream", &live.upstreams);
        let server = live_label("server", &live.servers);
        let backend =
            |labels: &HashMap<&str, &str>| match (labels.get("upstream"), labels.get("backend")) {
                (Some(upstream), Some(backend)) => live
                    .backends
                    .contains(&((*upstream).to_string(), (*backend).to_string())),
                _ => true,
            };
        let before = {
            let mut table = self.locations.lock();
            let before = table.len();
            table.retain(|name, _| live.locations.contains(name.as_ref()));
            before - table.len()
        };
        before * SERIES_PER_LOCATION
            + prune(&self.rejections, &location)
            + prune(&self.upstream, &upstream)
            + prune(&self.backend_up, &backend)
            + prune(&self.circuit, &backend)
            + prune(&self.server_requests, &server)
            + prune(&self.connections, &server)
            + prune(&self.connections_total, &server)
            + prune(&self.body_bytes, &server)
    }
}

/// The names of what the running configuration has, for [`Metrics::retain`].
#[derive(Debug, Default, Clone)]
pub struct LiveNames {
    /// Servers.
    pub servers: HashSet<String>,
    /// Locations (those some server routes to).
    pub locations: HashSet<String>,
    /// Upstreams.
    pub upstreams: HashSet<String>,
    /// Backends, as (upstream, address) as in `pingap_backend_up`.
    pub backends: HashSet<(String, String)>,
}

/// Whether a series' `label` (when it has one) is one of `names`.
fn live_label<'a>(
    label: &'static str,
    names: &'a HashSet<String>,
) -> impl Fn(&HashMap<&str, &str>) -> bool + 'a {
    move |labels| labels.get(label).is_none_or(|value| names.contains(*value))
}

/// Removes the series of `vec` whose labels `keep` refuses; returns how many.
fn prune<T: MetricVecBuilder>(
    vec: &MetricVec<T>,
    keep: &dyn Fn(&HashMap<&str, &str>) -> bool,
) -> usize {
    let mut removed = 0;
    for family in vec.collect() {
        for series in family.get_metric() {
            let labels: HashMap<&str, &str> = series
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            if !keep(&labels) && vec.remove(&labels).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// The pre-resolved counters of one location.
pub struct LocationMetrics {
    name: Arc<str>,
    counters: Arc<LocationCounters>,
}

impl LocationMetrics {
    /// Counts a finished request.
    pub fn finished(&self, method: &Method, status: u16, elapsed: Duration) {
        if let Some(class) = class(status) {
            self.counters.requests[method_index(method)][class].fetch_add(1, Ordering::Relaxed);
        }
        self.counters.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts an `X-Cache-Status`.
    pub fn cache(&self, status: &str) {
        if let Some(index) = CACHE_STATUSES.iter().position(|s| *s == status) {
            self.counters.cache[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The location's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The requests it has answered since the process started, and how many of them with a
    /// 5xx status (the location's counters outlive configurations that keep its name).
    pub fn totals(&self) -> RequestTotals {
        let mut totals = RequestTotals::default();
        for by_class in &self.counters.requests {
            for (class, counter) in by_class.iter().enumerate() {
                let count = counter.load(Ordering::Relaxed);
                totals.requests += count;
                if class == 4 {
                    totals.server_errors += count;
                }
            }
        }
        totals
    }
}

/// The counters of every location compiled since the last [`Metrics::retain`], by name; shared
/// by [`Metrics`], which hands them to locations, and the [`LocationCollector`] that exports them.
#[derive(Clone, Default)]
struct LocationTable(Arc<Mutex<HashMap<Arc<str>, Arc<LocationCounters>>>>);

impl LocationTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<LocationCounters>>> {
        // The map is consistent whatever a panicking holder was doing: keep using it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The counts of one location, as plain atomics.
#[derive(Default)]
struct LocationCounters {
    /// By method, then status class.
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    duration: HistogramCounts,
    /// By `X-Cache-Status`.
    cache: [AtomicU64; CACHE_STATUSES.len()],
}

/// A histogram over [`BUCKETS`]: the observations of each bucket (not cumulative), the last slot
/// for those above every bound, and the sum of the observed values.
#[derive(Default)]
struct HistogramCounts {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// The bits of an `f64`.
    sum: AtomicU64,
}

impl HistogramCounts {
    fn observe(&self, value: f64) {
        let bucket = BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Relaxed is enough: a scrape reads a sum that may miss the latest observations.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// The exported form: cumulative counts per bound; the count is that of every bucket, so it
    /// agrees with them even while requests are being counted.
    fn proto(&self) -> proto::Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len());
        for (count, bound) in self.buckets.iter().zip(BUCKETS) {
            cumulative += count.load(Ordering::Relaxed);
            let mut bucket = proto::Bucket::default();
            bucket.set_cumulative_count(cumulative);
            bucket.set_upper_bound(*bound);
            buckets.push(bucket);
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let mut histogram = proto::Histogram::default();
        histogram.set_sample_count(cumulative);
        histogram.set_sample_sum(f64::from_bits(self.sum.load(Ordering::Relaxed)));
        histogram.set_bucket(buckets);
        histogram
    }
}

/// Exports the [`LocationTable`] at scrape time as the families the Prometheus vectors would
/// give: the same names, help, labels (sorted by name) and values.
#[derive(Clone)]
struct LocationCollector {
    table: LocationTable,
    requests: Desc,
    duration: Desc,
    cache: Desc,
}

impl LocationCollector {
    fn new(table: LocationTable) -> prometheus::Result<LocationCollector> {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.to_string(),
                help.to_string(),
                labels.iter().map(|l| (*l).to_string()).collect(),
                HashMap::new(),
            )
        };
        Ok(LocationCollector {
            table,
            requests: desc(
                "pingap_requests_total",
                "Requests answered, by location, method and status class",
                &["location", "method", "status"],
            )?,
            duration: desc(
                "pingap_request_duration_seconds",
                "Time from the request header to the end of the response",
                &["location"],
            )?,
            cache: desc(
                "pingap_cache_requests_total",
                "Requests to cached locations, by X-Cache-Status",
                &["location", "status"],
            )?,
        })
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

fn family(desc: &Desc, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

impl Collector for LocationCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.requests, &self.duration, &self.cache]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = self.table.lock();
        let mut requests = Vec::with_capacity(table.len() * METHODS.len() * CLASSES.len());
        let mut durations = Vec::with_capacity(table.len());
        let mut cache = Vec::with_capacity(table.len() * CACHE_STATUSES.len());
        let counter = |labels: Vec<LabelPair>, value: &AtomicU64| {
            let mut counter = proto::Counter::default();
            // As IntCounter exports it.
            counter.set_value(value.load(Ordering::Relaxed) as f64);
            let mut metric = proto::Metric::from_label(labels);
            metric.set_counter(counter);
            metric
        };
        for (name, counters) in table.iter() {
            for (method, by_class) in METHODS.iter().zip(&counters.requests) {
                for (class, value) in CLASSES.iter().zip(by_class) {
                    let labels = vec![
                        label("location", name),
                        label("method", method),
                        label("status", class),
                    ];
                    requests.push(counter(labels, value));
                }
            }
            let mut duration = proto::Metric::from_label(vec![label("location", name)]);
            duration.set_histogram(counters.duration.proto());
            durations.push(duration);
            for (status, value) in CACHE_STATUSES.iter().zip(&counters.cache) {
                let labels = vec![label("location", name), label("status", status)];
                cache.push(counter(labels, value));
            }
        }
        vec![
            family(&self.requests, MetricType::COUNTER, requests),
            family(&self.duration, MetricType::HISTOGRAM, durations),
            family(&self.cache, MetricType::COUNTER, cache),
        ]
    }
}

/// Requests answered by a location, read from its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTotals {
    /// All requests.
    pub requests: u64,
    /// Requests answered with a 5xx status.
    pub server_errors: u64,
}

/// The pre-resolved counters of one server.
#[derive(Clone)]
pub struct ServerMetrics {
    requests: [IntCounter; 5],
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    connections: IntGauge,
    connections_total: IntCounter,
}

impl ServerMetrics {
    /// Counts a finished request with its body bytes received and sent.
    pub fn finished(&self, status: u16, bytes_in: usize, bytes_out: usize) {
        if let Some(class) = class(status) {
            self.requests[class].inc();
        }
        self.bytes_in.inc_by(bytes_in as u64);
        self.bytes_out.inc_by(bytes_out as u64);
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection(&self) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections.inc();
        ConnectionGuard(self.connections.clone())
    }
}

/// Keeps a client connection counted in `pingap_connections_active`.
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn class(status: u16) -> Option<usize> {
    match status {
        100..=599 => Some(usize::from(status / 100 - 1)),
        _ => None,
    }
}

fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

/// The gauges read at scrape time, handed to [`Metrics::render`].
#[derive(Debug, Default)]
pub struct ScrapeSamples<'a> {
    /// Requests being served.
    pub in_flight: usize,
    /// Every backend of every upstream.
    pub backends: Vec<BackendSample<'a>>,
    /// Every certificate served.
    pub certificates: Vec<CertificateSample>,
}

/// A certificate served, at scrape time.
#[derive(Debug)]
pub struct CertificateSample {
    /// Its name (`[certificates.NAME]`, or the server's for its own).
    pub name: String,
    /// The domains it is served for.
    pub domains: Vec<String>,
    /// When it expires (Unix seconds).
    pub not_after: i64,
}

/// The state of one backend at scrape time.
#[derive(Debug)]
pub struct BackendSample<'a> {
    /// Its upstream's name.
    pub upstream: &'a str,
    /// Its address.
    pub backend: String,
    /// Whether it gets requests (`pingap_backend_up`).
    pub up: bool,
    /// Its circuit breaker: 0 closed, 1 open, 2 half-open (`pingap_backend_circuit_state`).
    pub circuit_state: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_classes_fold() {
        let metrics = metrics();
        let location = metrics.location("api");
        location.finished(&Method::GET, 204, Duration::from_micros(300));
        location.finished(&Method::from_bytes(b"PURGE").unwrap(), 503, Duration::ZERO);
        metrics.server("main").finished(404, 0, 10);
        assert_eq!(class(99), None);
        assert_eq!(class(599), Some(4));
        let text = String::from_utf8(metrics.render(&ScrapeSamples::default())).unwrap();
        assert!(
            text.contains(r#"pingap_requests_total{location="api",method="GET",status="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pingap_requests_total{location="api",method="OTHER",status="5xx"} 1"#)
        );
        assert!(text.contains(r#"pingap_server_requests_total{server="main",status="4xx"} 1"#));
        assert!(
            text.contains(
                r#"pingap_request_duration_seconds_bucket{location="api",le="0.0005"} 2"#
            )
        );
        assert!(text.contains("pingap_build_info{version="));
    }

    #[test]
    fn location_series_are_exported_as_prometheus_vectors_would_export_them() {
        let metrics = Metrics::new();
        let reference = Registry::new();
        let requests = registered(
            &reference,
            IntCounterVec::new(
                Opts::new(
                    "pingap_requests_total",
                    "Requests answered, by location, method and status class",
                ),
                &["location", "method", "status"],
            ),
        );
        let duration = registered(
            &reference,
            HistogramVec::new(
                HistogramOpts::new(
                    "pingap_request_duration_seconds",
                    "Time from the request header to the end of the response",
                )
                .buckets(BUCKETS.to_vec()),
                &["location"],
            ),
        );
        let cache = registered(
            &reference,
            IntCounterVec::new(
                Opts::new(
                    "pingap_cache_requests_total",
                    "Requests to cached locations, by X-Cache-Status",
                ),
                &["location", "status"],
            ),
        );
        let requests_seen = [
            ("GET", 200, 0.0003),
            ("POST", 503, 0.07),
            ("PURGE", 101, 100.0),
            ("DELETE", 404, 0.0001),
            ("DELETE", 1000, 0.25),
        ];
        for name in ["a", "b-1", "c.x"] {
            let location = metrics.location(name);
            for method in METHODS {
                for class in CLASSES {
                    requests.with_label_values(&[name, method, class]);
                }
            }
            duration.with_label_values(&[name]);
            for status in CACHE_STATUSES {
                cache.with_label_values(&[name, status]);
            }
            if name == "c.x" {
                continue;
            }
            for (method, status, seconds) in requests_seen {
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                location.finished(&method, status, Duration::from_secs_f64(seconds));
                if let Some(class) = class(status) {
                    requests
                        .with_label_values(&[name, METHODS[method_index(&method)], CLASSES[class]])
                        .inc();
                }
                duration.with_label_values(&[name]).observe(seconds);
            }
            location.cache("HIT");
            location.cache("unknown");
            cache.with_label_values(&[name, "HIT"]).inc();
        }
        let ours = String::from_utf8(metrics.render(&ScrapeSamples::default())).unwrap();
        let mut theirs = Vec::new();
        TextEncoder::new()
            .encode(&reference.gather(), &mut theirs)
            .unwrap();
        let families = [
            "pingap_requests_total",
            "pingap_request_duration_seconds",
            "pingap_cache_requests_total",
        ];
        let of_locations = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|line| families.iter().any(|family| line.contains(family)))
                .map(str::to_string)
                .collect()
        };
        let theirs = of_locations(&String::from_utf8(theirs).unwrap());
        assert_eq!(theirs.len(), 3 * (40 + 21 + 6) + 3 * 2);
        assert_eq!(of_locations(&ours), theirs);
        assert_eq!(
            metrics.location("a").totals(),
            RequestTotals {
                requests: 4,
                server_errors: 1
            }
        );
    }

    #[test]
    fn retain_drops_the_series_of_removed_names_and_keeps_the_others_counting() {
        // A registry of its own: the process global is shared with the other tests.
        let metrics = Metrics::new();
        let (gone, kept) = (metrics.location("gone"), metrics.location("kept"));
        for location in [&gone, &kept] {
            location.finished(&Method::GET, 200, Duration::ZERO);
            location.cache("HIT");
        }
        metrics.rejection("gone", 403);
        metrics.rejection("kept", 429);
        metrics.upstream("u_gone").observe(0.1);
        metrics.upstream("u_kept").observe(0.1);
        metrics.server("main").finished(200, 1, 1);
        metrics.server("old").finished(200, 1, 1);
        let samples = |upstream: &'static str| ScrapeSamples {
            in_flight: 0,
            backends: vec![BackendSample {
                upstream,
                backend: "127.0.0.1:1".to_string(),
                up: true,
                circuit_state: 0,
            }],
            certificates: Vec::new(),
        };
        let before = String::from_utf8(metrics.render(&samples("u_gone"))).unwrap();
        assert!(before.contains(r#"location="gone""#) && before.contains(r#"server="old""#));

        let live = LiveNames {
            servers: HashSet::from(["main".to_string()]),
            locations: HashSet::from(["kept".to_string()]),
            upstreams: HashSet::from(["u_kept".to_string()]),
            backends: HashSet::from([("u_kept".to_string(), "127.0.0.1:1".to_string())]),
        };
        assert!(metrics.retain(&live) > 0);
        assert_eq!(metrics.retain(&live), 0, "nothing left to drop");
        // A handle held by a request of the old configuration still works, unexported.
        gone.finished(&Method::GET, 200, Duration::ZERO);
        kept.finished(&Method::GET, 200, Duration::ZERO);
        let after = String::from_utf8(metrics.render(&samples("u_kept"))).unwrap();
        for removed in [r#""gone""#, r#""u_gone""#, r#""old""#] {
            assert!(!after.contains(removed), "{removed} in\n{after}");
        }
        for line in [
            r#"pingap_requests_total{location="kept",method="GET",status="2xx"} 2"#,
            r#"pingap_cache_requests_total{location="kept",status="HIT"} 1"#,
            r#"pingap_plugin_rejections_total{location="kept",status="429"} 1"#,
            r#"pingap_upstream_response_seconds_count{upstream="u_kept"} 1"#,
            r#"pingap_server_requests_total{server="main",status="2xx"} 1"#,
            r#"pingap_backend_up{backend="127.0.0.1:1",upstream="u_kept"} 1"#,
        ] {
            assert!(after.lines().any(|l| l == line), "no {line} in\n{after}");
        }

        // A location added again is exported again, from zero.
        metrics
            .location("gone")
            .finished(&Method::GET, 200, Duration::ZERO);
        let again = String::from_utf8(metrics.render(&samples("u_kept"))).unwrap();
        assert!(
            again
                .lines()
                .any(|l| l
                    == r#"pingap_requests_total{location="gone",method="GET",status="2xx"} 1"#),
            "{again}"
        );
    }
}
