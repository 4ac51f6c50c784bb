//! The one error shape every endpoint answers with.
//!
//! Error answers stay small (the message is clipped to [`MESSAGE_LIMIT`] bytes, whatever input it
//! echoes), so the whole answer arrives with its headers: a client that closes an error's body
//! unread, as Go's `net/http` callers often do, has then read everything and keeps its
//! connection, instead of making the server accept a new one for its next request.

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

/// The most bytes of a message an error answer carries; a longer one (an echoed path, name or a
/// client's error) is cut at a character boundary and ends in `…`.
pub const MESSAGE_LIMIT: usize = 256;

/// `message`, cut to at most [`MESSAGE_LIMIT`] bytes.
fn clipped(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MESSAGE_LIMIT {
        return message.into();
    }
    let mut end = MESSAGE_LIMIT - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end]).into()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": clipped(&self.message) } });
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

#[cfg(test)]
mod tests {
    use super::{MESSAGE_LIMIT, clipped};

    #[test]
    fn short_messages_pass_unchanged() {
        assert_eq!(clipped("no such endpoint: /x"), "no such endpoint: /x");
        let exact = "a".repeat(MESSAGE_LIMIT);
        assert_eq!(clipped(&exact), exact);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        // Multi-byte characters around the cut must not split.
        let long = "é".repeat(MESSAGE_LIMIT);
        let cut = clipped(&long);
        assert!(cut.len() <= MESSAGE_LIMIT, "{} bytes", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
