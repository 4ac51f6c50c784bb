//! `sse_http_requests_total{route,method,status}` and `sse_http_request_duration_seconds{route}`:
//! every request the front door answers, counted by where it went and how it ended, and timed to
//! its response head (an event stream's head, not its life).
//!
//! Labels come from fixed sets, so nobody can grow the series without bound by asking for made-up
//! paths: the route is the path's first segment when it is one the apps serve (`chat`, `exec`,
//! `rpc`…), else `other`; the method is one of the usual ones or `other`; the status is the code.
//! A request costs a clock read and a counter and histogram update; an event on a stream costs
//! nothing.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sse_core::metrics::Metrics;

type RequestLabels = [(&'static str, &'static str); 3];
type RouteLabel = [(&'static str, &'static str); 1];

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

/// The series, registered with a server's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram, fn() -> Histogram>,
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
        HttpMetrics { requests, durations }
    }

    /// The labels of a request: its route and method (taken before the request is handed on).
    pub fn labels_of(request: &http::Request<axum::body::Body>) -> (&'static str, &'static str) {
        (route(request.uri().path()), method_label(request.method()))
    }

    /// Counts one answered request.
    pub fn answered(
        &self,
        (route, method): (&'static str, &'static str),
        status: u16,
        seconds: f64,
    ) {
        let labels = [("route", route), ("method", method), ("status", status_label(status))];
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&[("route", route)]).observe(seconds);
    }
}

fn route(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    if first.is_empty() {
        return "index";
    }
    ROUTES.iter().find(|known| **known == first).copied().unwrap_or("other")
}

fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::HEAD => "HEAD",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PUT => "PUT",
        _ => "other",
    }
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

/// The code as a label: every code these servers send by name, any other by its class.
fn status_label(status: u16) -> &'static str {
    if let Some((_, label)) = STATUSES.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(route("/chat/rooms/x/events"), "chat");
        assert_eq!(route("/"), "index");
        assert_eq!(route("/made-up-by-a-scanner/x"), "other");
        assert_eq!(method_label(&http::Method::from_bytes(b"BREW").unwrap_or_default()), "other");
        assert_eq!(
            (status_label(404), status_label(418), status_label(599)),
            ("404", "4xx", "5xx")
        );
    }
}
