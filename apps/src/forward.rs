//! Handing a request to another instance over HTTP, when several share a Redis, and passing its
//! answer back as it comes: an event stream stays a stream, byte for byte, and closing it closes
//! the forwarded one.
//!
//! This is the transport; [`crate::owner_routing`] decides when to use it (a request for a thing
//! that lives on another instance), and its docs say why the bidi server reaches other instances
//! differently. The other helpers here ask every instance at once: [`ask_others`] for a thing
//! Redis cannot place, [`gather`] for a list that merges every instance's.
//!
//! Written here rather than with a reverse-proxy crate because it is one request each way with
//! the body already bounded, and two things are ours: the client's own `Host`, token and `Origin`
//! travel unchanged (so the owner makes the same checks the first instance made), and a header
//! marks the request as forwarded so that it is never forwarded again.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use sse_core::edge::ApiError;

/// Marks a request one instance forwarded to another.
pub const FORWARDED: &str = "x-sse-apps-forwarded";

/// Largest request body forwarded (the servers' own body limit).
const MAX_BODY: usize = 2 << 20;

/// Headers that describe one hop's connection, never passed on (RFC 9110, section 7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// Whether another instance forwarded this request (so it must be answered here).
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

/// One client for every forward: no overall timeout (an event stream lasts as long as it
/// lasts), a short one to connect.
pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default()
    })
}

/// The answer when the owning instance cannot be reached.
pub fn unreachable(what: &str) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "instance_unreachable",
        format!("the instance that holds {what} cannot be reached; try again"),
    )
    .retry_after(1)
    .into_response()
}

/// Sends `request` to `instance` of `cluster` (503 if it has no live address), see [`forward`].
pub async fn to_instance(
    cluster: &sse_core::cluster::Cluster,
    instance: &str,
    what: &str,
    request: Request,
) -> Response {
    match cluster.address_of(instance).await {
        Some(base) => forward(&base, what, request).await,
        None => unreachable(what),
    }
}

/// Sends `request` to the instance at `base` (`http://HOST:PORT`) and returns its answer,
/// streamed.
pub async fn forward(base: &str, what: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = client().request(parts.method, format!("{base}{path}")).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.header(FORWARDED, "1").send().await {
        Ok(answer) => relay(answer, what),
        Err(error) => {
            // Without the URL, whose query may hold the caller's `?token=`.
            let error = error.without_url();
            tracing::warn!(%error, base, "cannot forward a request to the instance that owns it");
            unreachable(what)
        }
    }
}

/// Another instance's answer as ours, its body streamed as it comes.
fn relay(answer: reqwest::Response, what: &str) -> Response {
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    response.body(Body::from_stream(answer.bytes_stream())).unwrap_or_else(|_| unreachable(what))
}

/// Asks every other live instance of `cluster` in turn (same method, path, headers and body)
/// and returns the first answer that is not 404: for a thing that lives on one instance where
/// Redis cannot say which (a console's client handle, say). `None` when no instance has it, or
/// the request was itself forwarded.
pub async fn ask_others(
    cluster: &sse_core::cluster::Cluster,
    method: axum::http::Method,
    path: &str,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Option<Response> {
    if is_forwarded(headers) {
        return None;
    }
    for base in cluster.other_addresses().await {
        let mut outgoing = client().request(method.clone(), format!("{base}{path}"));
        for (name, value) in headers {
            if !hop_by_hop(name) {
                outgoing = outgoing.header(name, value);
            }
        }
        match outgoing.header(FORWARDED, "1").body(body.clone()).send().await {
            Ok(answer) if answer.status() == StatusCode::NOT_FOUND => {}
            Ok(answer) => return Some(relay(answer, path)),
            Err(error) => {
                let error = error.without_url();
                tracing::warn!(%error, base, path, "an instance could not be asked");
            }
        }
    }
    None
}

/// The entries under `key` that every other live instance of `cluster` lists at `path`
/// (`/exec/runs` and `runs`, say), asked with this request's credentials, for a list that merges
/// every instance's. Nothing when there is no cluster or the request was itself forwarded; an
/// instance that does not answer is left out and logged.
pub async fn gather(
    cluster: Option<&sse_core::cluster::Cluster>,
    headers: &HeaderMap,
    path: &str,
    key: &str,
) -> Vec<serde_json::Value> {
    let Some(cluster) = cluster else { return Vec::new() };
    if is_forwarded(headers) {
        return Vec::new();
    }
    let mut entries = Vec::new();
    for base in cluster.other_addresses().await {
        let mut request = client().get(format!("{base}{path}"));
        for name in [axum::http::header::AUTHORIZATION, axum::http::header::COOKIE] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        let request = request.header(FORWARDED, "1").timeout(Duration::from_secs(2));
        match request.send().await.and_then(reqwest::Response::error_for_status) {
            Ok(answer) => match answer.json::<serde_json::Value>().await {
                Ok(mut listed) => {
                    if let Some(serde_json::Value::Array(theirs)) =
                        listed.get_mut(key).map(serde_json::Value::take)
                    {
                        entries.extend(theirs);
                    }
                }
                Err(error) => {
                    let error = error.without_url();
                    tracing::warn!(%error, base, path, "an unreadable list");
                }
            },
            Err(error) => {
                let error = error.without_url();
                tracing::warn!(%error, base, path, "an instance did not list");
            }
        }
    }
    entries
}
