//! `sse_http_requests_total{route,method,status}` and `sse_http_request_duration_seconds{route}`:
//! every request the front door answers, counted by where it went and how it ended, and timed to
//! its response head (an event stream's head, not its life).
//!
//! Labels come from fixed sets, so nobody can grow the series without bound by asking for made-up
//! paths: the route is the path's first segment when it is one the apps serve (`chat`, `exec`,
//! `rpc`…), else `other`; the method is one of the usual ones or `other`; the status is the code.
//! A request costs a clock read and a counter and histogram update; an event on a stream costs
//! nothing.
//!
//! Each series is looked up in its family once, the first time its labels come, and its handle
//! kept in a slot of its own: a family finds a series by hashing its labels (six strings, with
//! SipHash, under a lock), which cost about 800 instructions a request, more than the rest of the
//! front door. Labels from fixed sets make the slots a small table indexed by position.

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sse_core::metrics::Metrics;

type RequestLabels = [(&'static str, &'static str); 3];
type RouteLabel = [(&'static str, &'static str); 1];

/// The route label of `/`.
const INDEX: &str = "index";
/// The label of whatever is not in its fixed set.
const OTHER: &str = "other";

/// The first path segments the apps serve; anything else is `other`.
const ROUTES: [&str; 18] = [
    "basic",
    "bidi",
    "chat",
    "dashboard",
    "events",
    "exec",
    "favicon.ico",
    "healthz",
    "metrics",
    "mcp",
    "readyz",
    "response",
    "rpc",
    "sampling",
    "sse",
    "static",
    "trigger",
    "messages",
];

/// Route labels by position: `index`, each of [`ROUTES`], `other`.
const ROUTE_COUNT: usize = ROUTES.len() + 2;
/// The methods counted by name; any other is `other`.
const METHODS: [&str; 6] = ["GET", "POST", "HEAD", "DELETE", "OPTIONS", "PUT"];
/// Method labels by position: each of [`METHODS`], `other`.
const METHOD_COUNT: usize = METHODS.len() + 1;
/// The classes of the codes not in [`STATUSES`].
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Status labels by position: each of [`STATUSES`], then each of [`STATUS_CLASSES`].
const STATUS_COUNT: usize = STATUSES.len() + STATUS_CLASSES.len();

/// The series, registered with a server's metrics. Cheap to clone (one shared table).
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    inner: Arc<Series>,
}

#[derive(Debug)]
struct Series {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// A handle of `requests` per route, method and status, by position, once looked up.
    counters: Box<[OnceLock<Counter>]>,
    /// A handle of `durations` per route, by position, once looked up.
    histograms: Box<[OnceLock<Histogram>]>,
}

/// The labels of a request, as positions in their fixed sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestKind {
    route: usize,
    method: usize,
}

impl HttpMetrics {
    /// Registers the series with `metrics`.
    pub fn register(metrics: &Metrics) -> HttpMetrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let buckets: fn() -> Histogram = || Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let durations = Family::new_with_constructor(buckets);
        metrics.register(
            "http_requests",
            "HTTP requests answered, by route (first path segment), method and status",
            requests.clone(),
        );
        metrics.register(
            "http_request_duration_seconds",
            "Time from a request to its response head, by route",
            durations.clone(),
        );
        let counters = (0..ROUTE_COUNT * METHOD_COUNT * STATUS_COUNT).map(|_| OnceLock::new());
        let histograms = (0..ROUTE_COUNT).map(|_| OnceLock::new());
        let inner = Series {
            requests,
            durations,
            counters: counters.collect(),
            histograms: histograms.collect(),
        };
        HttpMetrics { inner: Arc::new(inner) }
    }

    /// The labels of a request: its route and method (taken before the request is handed on).
    pub fn labels_of(request: &http::Request<axum::body::Body>) -> RequestKind {
        RequestKind { route: route(request.uri().path()), method: method(request.method()) }
    }

    /// Counts one answered request.
    pub fn answered(&self, kind: RequestKind, status: u16, seconds: f64) {
        let series = &*self.inner;
        let status = status_position(status);
        let route = route_label(kind.route);
        let slot = (kind.route * METHOD_COUNT + kind.method) * STATUS_COUNT + status;
        if let Some(counter) = series.counters.get(slot) {
            let first_time = || {
                let method = method_label(kind.method);
                let labels =
                    [("route", route), ("method", method), ("status", status_label(status))];
                series.requests.get_or_create(&labels).clone()
            };
            counter.get_or_init(first_time).inc();
        }
        if let Some(histogram) = series.histograms.get(kind.route) {
            let first_time = || series.durations.get_or_create(&[("route", route)]).clone();
            histogram.get_or_init(first_time).observe(seconds);
        }
    }
}

/// The position of a path's route label: its first segment's among [`ROUTES`], after `index`.
fn route(path: &str) -> usize {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    if first.is_empty() {
        return 0;
    }
    ROUTES.iter().position(|known| *known == first).map_or(ROUTE_COUNT - 1, |at| at + 1)
}

fn route_label(position: usize) -> &'static str {
    match position {
        0 => INDEX,
        at => ROUTES.get(at - 1).copied().unwrap_or(OTHER),
    }
}

/// The position of a method's label.
fn method(method: &http::Method) -> usize {
    METHODS.iter().position(|known| *known == method.as_str()).unwrap_or(METHOD_COUNT - 1)
}

fn method_label(position: usize) -> &'static str {
    METHODS.get(position).copied().unwrap_or(OTHER)
}

/// The codes these servers send, each its own label.
const STATUSES: [(u16, &str); 23] = [
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (204, "204"),
    (303, "303"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (406, "406"),
    (408, "408"),
    (409, "409"),
    (410, "410"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// The position of a code's label: every code these servers send by name, any other by its
/// class.
fn status_position(status: u16) -> usize {
    if let Some(at) = STATUSES.iter().position(|(code, _)| *code == status) {
        return at;
    }
    let class = match status / 100 {
        class @ 1..=4 => usize::from(class),
        _ => 5,
    };
    STATUSES.len() + class - 1
}

fn status_label(position: usize) -> &'static str {
    match STATUSES.get(position) {
        Some((_, label)) => label,
        None => STATUS_CLASSES.get(position - STATUSES.len()).copied().unwrap_or("5xx"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(route_label(route("/chat/rooms/x/events")), "chat");
        assert_eq!(route_label(route("/")), "index");
        assert_eq!(route_label(route("/made-up-by-a-scanner/x")), "other");
        let brew = http::Method::from_bytes(b"BREW").unwrap_or_default();
        assert_eq!(method_label(method(&brew)), "other");
        assert_eq!(method_label(method(&http::Method::PUT)), "PUT");
        let label = |status| status_label(status_position(status));
        assert_eq!((label(404), label(418), label(599)), ("404", "4xx", "5xx"));
        assert_eq!((label(101), label(299), label(0), label(999)), ("1xx", "2xx", "5xx", "5xx"));
    }

    #[test]
    fn every_answer_is_counted_in_its_series_each_time() {
        let metrics = Metrics::new();
        let http = HttpMetrics::register(&metrics);
        let request = |method, path| {
            let request = http::Request::builder().method(method).uri(path);
            HttpMetrics::labels_of(&request.body(axum::body::Body::empty()).expect("a request"))
        };
        for _ in 0..3 {
            http.answered(request("GET", "/trigger?client_id=a"), 200, 0.001);
        }
        http.answered(request("POST", "/response"), 404, 0.001);
        http.answered(request("BREW", "/pot"), 418, 0.001);
        let text = metrics.render();
        for series in [
            r#"sse_http_requests_total{route="trigger",method="GET",status="200"} 3"#,
            r#"sse_http_requests_total{route="response",method="POST",status="404"} 1"#,
            r#"sse_http_requests_total{route="other",method="other",status="4xx"} 1"#,
            r#"sse_http_request_duration_seconds_count{route="trigger"} 3"#,
        ] {
            assert!(text.contains(series), "{series} in:\n{text}");
        }
    }
}
