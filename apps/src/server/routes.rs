//! The routes and layers every server puts around its app: the app's own routes behind the
//! [`Guards`], `/healthz`, `/readyz`, `/metrics` and `/static` beside them, JSON 404/405, and the
//! [`FrontDoor`] around the whole.

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;
use sse_core::Core;
use sse_core::edge::auth::{Token, require_token};
use sse_core::edge::origin::HostPolicy;
use sse_core::edge::rate::{RateLimit, limit};
use sse_core::edge::streams::StreamCap;
use sse_core::edge::{method_not_allowed, not_found};
use tower::Layer;

use crate::front_door::{FrontDoor, FrontDoorLayer};

/// What `/metrics` serves: the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What guards an app's own routes (not `/healthz`, `/metrics` or `/static`).
#[derive(Clone, Debug, Default)]
pub struct Guards {
    /// The token the app's routes need.
    pub token: Token,
    /// A per-address rate limit, checked before the token so guesses are throttled too.
    pub rate: Option<RateLimit>,
    /// A cap on open event streams per address (the oldest closes past it); applied by the
    /// [`FrontDoor`], where it costs the requests that open no stream nothing.
    pub streams: Option<StreamCap>,
}

/// `app`'s routes behind `guards`, merged with `/healthz`, `/readyz`, `/metrics` and `/static`,
/// with JSON 404/405, behind the [`FrontDoor`] every server has: request tracing, Host/Origin
/// checks, panic catching, the stream cap, and in a cluster the instance's name on every answer.
pub fn guarded_with_shared_routes(
    app: Router,
    core: &Core,
    hosts: HostPolicy,
    guards: Guards,
) -> FrontDoor<Router> {
    let metrics = core.metrics.clone();
    let ready = core.ready.clone();
    crate::assets::register_check(&ready);
    let streams = guards.streams.clone();
    let app = guarded(app, guards)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || readyz(ready)))
        .route(
            "/metrics",
            get(move || async move { ([(CONTENT_TYPE, OPENMETRICS)], metrics.render()) }),
        )
        .nest_service("/static", axum::routing::any(crate::assets::serve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Around the whole router, once, not on every route (see `front_door`).
    let mut front_door = match core.cluster() {
        Some(cluster) => FrontDoorLayer::new(hosts).naming_instance(cluster.instance()),
        None => FrontDoorLayer::new(hosts),
    }
    .counting(crate::http_metrics::HttpMetrics::register(&core.metrics));
    if let Some(cap) = streams {
        front_door = front_door.capping_streams(cap);
    }
    front_door.layer(app)
}

/// `app` behind the guards that have something to check: each layer costs every request a boxed
/// future and a clone of the service below it, so one with nothing to check (an open server's
/// token) is left out rather than passed through.
fn guarded(mut app: Router, guards: Guards) -> Router {
    if guards.token.is_required() {
        app = app.layer(from_fn_with_state(guards.token, require_token));
    }
    if let Some(rate) = guards.rate {
        app = app.layer(from_fn_with_state(rate, limit));
    }
    app
}

/// `GET /readyz`: 200 when every dependency the apps use works (each check in
/// [`sse_core::ready`]), else 503 in the house error shape with the list of what does not.
async fn readyz(ready: sse_core::ready::Readiness) -> Response {
    let failing = ready.failing().await;
    if failing.is_empty() {
        return axum::Json(serde_json::json!({ "ready": true })).into_response();
    }
    let names: Vec<&str> = failing.iter().map(|f| f.name.as_str()).collect();
    let body = serde_json::json!({
        "error": { "code": "not_ready", "message": format!("not ready: {}", names.join(", ")) },
        "not_ready": failing,
    });
    (http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}
