//! The one error shape every endpoint answers with.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::json;

/// An error answer: status, a stable machine-readable code, a human message, and for 429/503 a
/// `Retry-After` in seconds. Its `IntoResponse` never includes internal details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code such as `unknown_client`.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Seconds after which a retry may succeed.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// 400 Bad Request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 Not Found.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// Adds a `Retry-After` hint.
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The fallback for paths no route matches.
pub async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no such endpoint: {}", uri.path()))
}

/// The fallback for a known path asked with the wrong method.
pub async fn method_not_allowed(method: http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}

/// A body that is not one JSON-RPC message: `400 invalid_jsonrpc`, saying why.
impl From<crate::wire::jsonrpc::EnvelopeError> for ApiError {
    fn from(error: crate::wire::jsonrpc::EnvelopeError) -> ApiError {
        ApiError::bad_request("invalid_jsonrpc", error.to_string())
    }
}
