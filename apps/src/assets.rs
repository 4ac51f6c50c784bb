//! `/static`: the pages' scripts and styles, compiled into the binary.
//!
//! An installed binary must not depend on the checkout it was built from, so `static/` is
//! embedded at compile time (`rust-embed`; in debug builds too, so tests serve what ships). Each
//! file is served with its media type, an `ETag` (from the SHA-256 the embedding computed) and
//! `Cache-Control: no-cache`: the names carry no version, so a browser asks again each time and
//! gets `304 Not Modified` while the file is unchanged, and a new binary's files are never
//! shadowed by stale copies.
//!
//! `SSE_APPS_STATIC_DIR` serves a directory instead (read on every request), so someone editing
//! the scripts sees each change at a reload without rebuilding.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use sse_core::edge::ApiError;
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// The files of `static/`, as they were when the binary was built.
#[derive(RustEmbed)]
#[folder = "../static"]
struct Embedded;

/// The developer's override: a directory to serve instead of the embedded files.
fn override_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("SSE_APPS_STATIC_DIR").map(std::path::PathBuf::from)
}

/// Serves `GET`/`HEAD /static/{path}` (the request's path is already stripped of `/static`).
pub async fn serve(request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut refused = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "static files are only read (GET or HEAD)",
        )
        .into_response();
        refused.headers_mut().insert(ALLOW, HeaderValue::from_static("GET,HEAD"));
        return refused;
    }
    if let Some(dir) = override_dir() {
        return from_dir(dir, request).await;
    }
    let path = request.uri().path().trim_start_matches('/');
    let Some(file) = Embedded::get(path) else { return missing() };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let fresh = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if request.method() == Method::HEAD {
        let mut head = Response::new(Body::empty());
        head.headers_mut().insert(axum::http::header::CONTENT_LENGTH, file.data.len().into());
        head
    } else {
        Response::new(Body::from(file.data))
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, etag);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(media) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(CONTENT_TYPE, media);
    }
    response
}

/// `/readyz`'s `static_files`, where a directory is served instead of the embedded files: it
/// must still be readable (the embedded ones always are).
pub fn register_check(ready: &sse_core::ready::Readiness) {
    if let Some(dir) = override_dir() {
        ready.register("static_files", move || {
            let dir = dir.clone();
            async move {
                std::fs::read_dir(&dir).map(drop).map_err(|e| format!("{}: {e}", dir.display()))
            }
        });
    }
}

/// Every embedded file's path, for the tests and the start-up check.
pub fn names() -> impl Iterator<Item = std::borrow::Cow<'static, str>> {
    Embedded::iter()
}

async fn from_dir(dir: std::path::PathBuf, request: Request) -> Response {
    match ServeDir::new(dir).oneshot(request).await {
        Ok(response) if response.status() == StatusCode::NOT_FOUND => missing(),
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

fn missing() -> Response {
    ApiError::not_found("not_found", "no such file").into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
