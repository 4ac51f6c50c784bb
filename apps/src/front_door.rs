//! The service every request of a server passes first: a span for the request, the Host and
//! Origin checks, a 500 in the house error shape for a handler that panicked, the security headers
//! of HTML pages, the cap on event streams per client ([`StreamCap`]), and, in a cluster, the
//! instance's name on every answer (`X-Sse-Apps-Instance`).
//!
//! Written as one tower service by hand rather than as `from_fn` middlewares, and put around the
//! whole router rather than added with `Router::layer`, because of what each such layer costs
//! every request in axum 0.8: `Router::layer` wraps every route in one more boxed `Route`, which
//! axum clones for each call (an allocation) and whose future it boxes again (another, and a copy
//! of the future), and `from_fn` clones the service below it once more and boxes its future. A
//! round trip of the bidirectional server is two small requests, so that was measurable
//! (`docs/PERFORMANCE.md`). Here the checks run before the call, the router below is called in
//! place (its readiness is ours), and the one boxed future is the handler's own, instrumented and
//! guarded. The stream cap is here for the same reason: as a `from_fn` layer on the router it cost
//! every request (every trigger and every answer) those allocations, to count the few that open
//! a stream; here it costs a request one lookup of its peer address.
//!
//! It wraps only the handler's future, not response bodies: tower-http's `TraceLayer` and
//! `CatchPanicLayer` wrap every body, so they would run on every write of every event stream.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use sse_core::edge::ApiError;
use sse_core::edge::origin::HostPolicy;
use sse_core::edge::streams::StreamCap;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::http_metrics::HttpMetrics;

/// The header that names the instance that answered, in a cluster.
pub const INSTANCE_HEADER: HeaderName = HeaderName::from_static("x-sse-apps-instance");

/// Puts a [`FrontDoor`] before a service.
#[derive(Clone, Debug)]
pub struct FrontDoorLayer {
    hosts: HostPolicy,
    instance: Option<HeaderValue>,
    metrics: Option<HttpMetrics>,
    streams: Option<StreamCap>,
}

impl FrontDoorLayer {
    /// Checks Host and Origin against `hosts`.
    pub fn new(hosts: HostPolicy) -> FrontDoorLayer {
        FrontDoorLayer { hosts, instance: None, metrics: None, streams: None }
    }

    /// Counts every event stream against its client's cap.
    pub fn capping_streams(mut self, cap: StreamCap) -> FrontDoorLayer {
        self.streams = Some(cap);
        self
    }

    /// Counts and times every request in `metrics`.
    pub fn counting(mut self, metrics: HttpMetrics) -> FrontDoorLayer {
        self.metrics = Some(metrics);
        self
    }

    /// Names the instance on every answer (a name that is not a valid header value is left out).
    pub fn naming_instance(mut self, instance: &str) -> FrontDoorLayer {
        self.instance = HeaderValue::from_str(instance).ok();
        self
    }
}

impl<S> Layer<S> for FrontDoorLayer {
    type Service = FrontDoor<S>;

    fn layer(&self, inner: S) -> FrontDoor<S> {
        FrontDoor {
            inner,
            hosts: self.hosts.clone(),
            instance: self.instance.clone(),
            metrics: self.metrics.clone(),
            streams: self.streams.clone(),
        }
    }
}

/// See the module's doc.
#[derive(Clone, Debug)]
pub struct FrontDoor<S> {
    inner: S,
    hosts: HostPolicy,
    instance: Option<HeaderValue>,
    metrics: Option<HttpMetrics>,
    streams: Option<StreamCap>,
}

/// What a [`FrontDoor`] answers with.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for FrontDoor<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Answer {
        let span = request_span(&request);
        // The clock is read only when the answer is logged (debug) or counted.
        let counted = self.metrics.clone().map(|m| (m, HttpMetrics::labels_of(&request)));
        let started =
            (counted.is_some() || tracing::enabled!(tracing::Level::DEBUG)).then(Instant::now);
        let instance = self.instance.clone();
        if let Some(mut refused) = span.in_scope(|| self.hosts.refusal(&request)) {
            answered(&span, &refused, started, counted);
            name(&mut refused, instance);
            return Box::pin(std::future::ready(Ok(refused)));
        }
        // Named before the request is handed on; counted if its answer is a stream.
        let capped =
            self.streams.as_ref().and_then(|cap| Some((cap.clone(), cap.client_of(&request)?)));
        // Called in place: `poll_ready` above made the service below ready for this call.
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)));
        Box::pin(async move {
            let mut response = match called {
                Ok(future) => {
                    match AssertUnwindSafe(future).catch_unwind().instrument(span.clone()).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => panicked(&span),
                    }
                }
                Err(_) => panicked(&span),
            };
            if let Some((cap, client)) = capped {
                cap.count(client, &response);
            }
            answered(&span, &response, started, counted);
            name(&mut response, instance);
            guard_page(&mut response);
            Ok(response)
        })
    }
}

/// Names the instance on `response`, unless a handler already did (a forwarded answer keeps the
/// name of the instance that made it).
fn name(response: &mut Response, instance: Option<HeaderValue>) {
    if let Some(instance) = instance {
        response.headers_mut().entry(INSTANCE_HEADER).or_insert(instance);
    }
}

/// An HTML page may not be framed by another page (which could trick a click on the
/// dashboard's Terminate), tells no other site its address (a `?token=` link would be in the
/// `Referer`), is not kept in caches, and is never sniffed as anything else. Only pages: the
/// answers of the round trip's hot path are JSON and pass with one header lookup.
fn guard_page(response: &mut Response) {
    let is_page = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !is_page {
        return;
    }
    let headers = response.headers_mut();
    for (name, value) in [
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        // Every page's scripts are files of /static: no inline script runs, whatever text gets in.
        (
            CONTENT_SECURITY_POLICY,
            "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (REFERRER_POLICY, "no-referrer"),
        (CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Logs the status and time of an answer (at debug level), and counts it.
fn answered(
    span: &tracing::Span,
    response: &Response,
    started: Option<Instant>,
    counted: Option<(HttpMetrics, crate::http_metrics::RequestKind)>,
) {
    let Some(started) = started else { return };
    let elapsed = started.elapsed();
    if let Some((metrics, labels)) = counted {
        metrics.answered(labels, response.status().as_u16(), elapsed.as_secs_f64());
    }
    tracing::debug!(parent: span, status = response.status().as_u16(), ?elapsed, "answered");
}

/// The answer to a request whose handler panicked (a bug): a 500 without details, logged.
fn panicked(span: &tracing::Span) -> Response {
    tracing::error!(parent: span, "a handler panicked");
    let status = http::StatusCode::INTERNAL_SERVER_ERROR;
    ApiError::new(status, "internal_error", "the server hit a bug; it is logged").into_response()
}

/// The span of one request: method and path only. The query string stays out of logs because
/// it can carry the access token (`?token=`).
fn request_span(request: &Request) -> tracing::Span {
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
}
