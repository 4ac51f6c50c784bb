//! Counters, gauges and histograms for everything the core does, rendered as Prometheus text.
//!
//! One [`Metrics`] value is created per server and handed to the hub, the sessions and the
//! correlator; cloning it shares the same series. Each server has its own registry (no global
//! recorder), so tests can run many servers in one process and read each one's figures.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

type Labeled<M> = Family<[(&'static str, &'static str); 1], M>;

/// The core's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Behind a lock so apps can add their own series after the core made its own.
    registry: Mutex<Registry>,
    streams_open: Gauge,
    streams_opened: Counter,
    streams_direct: Gauge,
    bytes_sent: Counter,
    events_published: Counter,
    resyncs: Labeled<Counter>,
    sessions_active: Gauge,
    sessions_expired: Counter,
    sessions_refused: Counter,
    rpc_pending: Gauge,
    rpc_outcomes: Labeled<Counter>,
    /// `rpc_outcomes`' `answered` series, looked up once: it counts every round trip, and a
    /// family lookup hashes the labels and takes a lock each time.
    rpc_answered: Counter,
    rpc_answers_rejected: Labeled<Counter>,
    rpc_round_trip: Histogram,
    rpc_circuits_open: Gauge,
    connections_accepted: Counter,
    connections_pending: Gauge,
    connections_evicted: Labeled<Counter>,
}

impl Inner {
    /// Lists every series of the core in `registry`, with its help text.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "streams_open",
            "SSE responses currently open",
            self.streams_open.clone(),
        );
        registry.register("streams_opened", "SSE responses opened", self.streams_opened.clone());
        registry.register(
            "streams_direct",
            "SSE responses whose socket a topic's sweeper writes to directly",
            self.streams_direct.clone(),
        );
        registry.register("bytes_sent", "Bytes written to SSE streams", self.bytes_sent.clone());
        registry.register(
            "events_published",
            "Events published to topics and sessions",
            self.events_published.clone(),
        );
        registry.register("resyncs", "resync events sent, by reason", self.resyncs.clone());
        registry.register("sessions_active", "Sessions in memory", self.sessions_active.clone());
        registry.register("sessions_expired", "Sessions expired", self.sessions_expired.clone());
        registry.register(
            "sessions_refused",
            "Sessions not made because as many as allowed were live",
            self.sessions_refused.clone(),
        );
        registry.register("rpc_pending", "Requests awaiting an answer", self.rpc_pending.clone());
        registry.register("rpc_requests", "Requests by outcome", self.rpc_outcomes.clone());
        registry.register(
            "rpc_answers_rejected",
            "Answers rejected, by reason",
            self.rpc_answers_rejected.clone(),
        );
        registry.register(
            "rpc_round_trip_seconds",
            "Time from sending a request to its answer",
            self.rpc_round_trip.clone(),
        );
        registry.register(
            "rpc_circuits_open",
            "Sessions whose circuit is open (recent requests all timed out)",
            self.rpc_circuits_open.clone(),
        );
        registry.register(
            "connections_accepted",
            "TCP connections accepted (a client that reuses its connections adds few)",
            self.connections_accepted.clone(),
        );
        registry.register(
            "connections_pending",
            "Connections accepted that have not sent a request yet",
            self.connections_pending.clone(),
        );
        registry.register(
            "connections_evicted",
            "Connections closed before any request to make room for new ones, by the cap reached \
             (per_address or total)",
            self.connections_evicted.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every series at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sse");
        let rpc_outcomes: Labeled<Counter> = Labeled::default();
        let rpc_answered = rpc_outcomes.get_or_create(&[("outcome", "answered")]).clone();
        let inner = Inner {
            streams_open: Gauge::default(),
            streams_opened: Counter::default(),
            streams_direct: Gauge::default(),
            bytes_sent: Counter::default(),
            events_published: Counter::default(),
            resyncs: Labeled::default(),
            sessions_active: Gauge::default(),
            sessions_expired: Counter::default(),
            sessions_refused: Counter::default(),
            rpc_pending: Gauge::default(),
            rpc_outcomes,
            rpc_answered,
            rpc_answers_rejected: Labeled::default(),
            rpc_round_trip: Histogram::new(exponential_buckets(0.000_1, 2.0, 20)),
            rpc_circuits_open: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_pending: Gauge::default(),
            connections_evicted: Labeled::default(),
            registry: Mutex::default(),
        };
        inner.register(&mut registry);
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        registry.register(
            "build",
            "The build serving: its version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics { inner: Arc::new(Inner { registry: Mutex::new(registry), ..inner }) }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let registry = self.inner.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = encode(&mut out, &registry);
        out
    }

    /// Adds an app's own series (named without the `sse_` prefix, which is added) to what
    /// `/metrics` serves.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let mut registry = self.inner.registry.lock().unwrap_or_else(PoisonError::into_inner);
        registry.register(name, help, metric);
    }

    pub(crate) fn stream_opened(&self) {
        self.inner.streams_open.inc();
        self.inner.streams_opened.inc();
    }

    pub(crate) fn stream_closed(&self) {
        self.inner.streams_open.dec();
    }

    pub(crate) fn direct_stream_opened(&self) {
        self.inner.streams_direct.inc();
    }

    pub(crate) fn direct_stream_closed(&self) {
        self.inner.streams_direct.dec();
    }

    pub(crate) fn bytes_sent(&self, n: usize) {
        self.inner.bytes_sent.inc_by(n as u64);
    }

    pub(crate) fn event_published(&self) {
        self.inner.events_published.inc();
    }

    pub(crate) fn resync(&self, reason: &'static str) {
        self.inner.resyncs.get_or_create(&[("reason", reason)]).inc();
    }

    pub(crate) fn session_created(&self) {
        self.inner.sessions_active.inc();
    }

    pub(crate) fn session_refused(&self) {
        self.inner.sessions_refused.inc();
    }

    pub(crate) fn session_expired(&self) {
        self.inner.sessions_active.dec();
        self.inner.sessions_expired.inc();
    }

    pub(crate) fn rpc_sent(&self) {
        self.inner.rpc_pending.inc();
    }

    pub(crate) fn rpc_finished(&self, outcome: &'static str, seconds: f64) {
        self.inner.rpc_pending.dec();
        if outcome == "answered" {
            self.inner.rpc_answered.inc();
        } else {
            self.inner.rpc_outcomes.get_or_create(&[("outcome", outcome)]).inc();
        }
        if outcome == "answered" || outcome == "error" {
            self.inner.rpc_round_trip.observe(seconds);
        }
    }

    pub(crate) fn answer_rejected(&self, reason: &'static str) {
        self.inner.rpc_answers_rejected.get_or_create(&[("reason", reason)]).inc();
    }

    pub(crate) fn connection_accepted(&self) {
        self.inner.connections_accepted.inc();
    }

    pub(crate) fn connection_pending(&self) {
        self.inner.connections_pending.inc();
    }

    pub(crate) fn connection_no_longer_pending(&self) {
        self.inner.connections_pending.dec();
    }

    pub(crate) fn connection_evicted(&self, cap: &'static str) {
        self.inner.connections_evicted.get_or_create(&[("cap", cap)]).inc();
    }

    pub(crate) fn circuits_open(&self, open: usize) {
        self.inner.rpc_circuits_open.set(i64::try_from(open).unwrap_or(i64::MAX));
    }
}
