//! A JSON body extractor whose every rejection is an [`ApiError`], and its query-string twin.
//!
//! Both parse the common case themselves and leave only failures to axum. axum's `Json` and
//! `Query` run every parse through `serde_path_to_error`, which tracks the path to each field so
//! that an error can name it; on a body that parses, that bookkeeping is pure cost (a third of
//! the instructions of a small POST's handling, measured with callgrind). So a body is first
//! parsed plainly, and only one that fails is parsed again by axum, for its error message.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::ApiError;
use super::body_deadline::is_body_timeout;
use crate::wire::jsonrpc::EnvelopeError;
use crate::wire::reserved::reserved_key;

/// Like `axum::Json`, but a missing `Content-Type: application/json` is 415, a body over the
/// router's limit is 413, and malformed or mistyped JSON is 400, each as a JSON error.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_plain_json(req.headers()) {
            // Parameters, `+json` types, a missing or wrong type: axum decides, as it always did.
            return match axum::Json::<T>::from_request(req, state).await {
                Ok(axum::Json(value)) => Ok(JsonBody(value)),
                Err(rejection) => Err(json_rejection(rejection)),
            };
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| json_rejection(JsonRejection::from(rejection)))?;
        if let Ok(value) = serde_json::from_slice(&body) {
            return Ok(JsonBody(value));
        }
        match axum::Json::<T>::from_bytes(&body) {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Refuses, with 400 `reserved_key`, a peer's JSON holding an object key that serde_json reads
/// as an instruction ([`crate::wire::reserved`]). For JSON that is kept and passed on, which
/// would otherwise reach the next Rust reader as something else.
pub fn refuse_reserved_keys(value: &serde_json::Value) -> Result<(), ApiError> {
    match reserved_key(value) {
        None => Ok(()),
        // Worded as the JSON-RPC refusal of the same key, so both say the same thing.
        Some(key) => Err(ApiError::bad_request(
            "reserved_key",
            EnvelopeError::ReservedKey(key.to_owned()).to_string(),
        )),
    }
}

/// `Content-Type: application/json` exactly, which axum's `Json` accepts too.
fn is_plain_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"))
}

/// The request's media type (its `Content-Type` without parameters such as `charset`),
/// lowercased, or `""` without one. Media types are case-insensitive (RFC 9110, 8.3.1).
pub fn media_type(headers: &HeaderMap) -> String {
    let value = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Maps axum's JSON rejections onto our error shape.
pub(crate) fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "malformed_json",
            format!("body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::bad_request(
            "invalid_body",
            format!("body has the wrong shape: {}", e.body_text()),
        ),
        JsonRejection::BytesRejection(e) => bytes_rejection(&e),
        other => ApiError::new(other.status(), "bad_body", other.body_text()),
    }
}

/// Maps a failure to read the body onto our error shape: too large (413), too slow (408, see
/// [`super::body_deadline`]), or cut off (400).
pub fn bytes_rejection(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is too large",
        );
    }
    if is_body_timeout(rejection) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        );
    }
    ApiError::new(rejection.status(), "bad_body", rejection.body_text())
}

/// Like `axum::extract::Query`, but a malformed query string is a 400 JSON error.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if let Ok(value) = serde_urlencoded::from_str(query) {
            return Ok(QueryParams(value));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(ApiError::bad_request("invalid_query", rejection.body_text())),
        }
    }
}

/// Like `axum::extract::Path`, but a segment that cannot be read (not UTF-8 once decoded, or not
/// of the wanted type) is a 400 JSON error rather than axum's plain-text one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for PathParams<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParams(value)),
            Err(rejection) => {
                Err(ApiError::new(rejection.status(), "invalid_path", rejection.body_text()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Answer {
        id: String,
        result: Vec<u32>,
    }

    async fn body_of(content_type: Option<&str>, body: &str) -> Result<Answer, ApiError> {
        let mut request = http::Request::post("/");
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        JsonBody::<Answer>::from_request(request, &()).await.map(|JsonBody(answer)| answer)
    }

    async fn query_of(query: &str) -> Result<Answer, ApiError> {
        use axum::extract::FromRequestParts;
        let request = http::Request::get(format!("/?{query}")).body(()).unwrap();
        let (mut parts, ()) = request.into_parts();
        QueryParams::<Answer>::from_request_parts(&mut parts, &()).await.map(|QueryParams(a)| a)
    }

    #[tokio::test]
    async fn a_path_segment_that_is_not_utf_8_is_a_json_400() {
        async fn room(PathParams(room): PathParams<String>) -> String {
            room
        }
        let app = axum::Router::new().route("/rooms/{room}", axum::routing::get(room));
        let call = |uri: &'static str| {
            let app = app.clone();
            async move {
                let request = http::Request::get(uri).body(Body::empty()).unwrap();
                let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
                (status, serde_json::from_slice::<serde_json::Value>(&body).ok())
            }
        };
        let (status, error) = call("/rooms/%ff%fe").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error.unwrap()["error"]["code"], "invalid_path");
        let (status, _) = call("/rooms/caf%C3%A9").await;
        assert_eq!(status, StatusCode::OK, "UTF-8 once decoded is fine");
    }

    #[test]
    fn media_types_are_read_without_parameters_in_any_case() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            media_type(&headers)
        };
        assert_eq!(with("Application/JSON; charset=utf-8"), "application/json");
        assert_eq!(with(" text/x-toml "), "text/x-toml");
        assert_eq!(media_type(&HeaderMap::new()), "");
    }

    #[tokio::test]
    async fn a_body_that_parses_is_the_same_by_either_path() {
        let wanted = Answer { id: "7".to_owned(), result: vec![1, 2] };
        let body = r#"{"id":"7","result":[1,2]}"#;
        assert_eq!(body_of(Some("application/json"), body).await.unwrap(), wanted);
        assert_eq!(body_of(Some("Application/JSON"), body).await.unwrap(), wanted);
        // Not the exact type: axum's own path, which accepts parameters and `+json`.
        assert_eq!(body_of(Some("application/json; charset=utf-8"), body).await.unwrap(), wanted);
        assert_eq!(body_of(Some("application/vnd.api+json"), body).await.unwrap(), wanted);
    }

    #[tokio::test]
    async fn a_body_that_fails_gets_axums_error_with_the_path_to_the_bad_field() {
        let wrong = body_of(Some("application/json"), r#"{"id":"7","result":[1,"two"]}"#).await;
        let wrong = wrong.unwrap_err();
        assert_eq!((wrong.status, wrong.code), (StatusCode::BAD_REQUEST, "invalid_body"));
        assert!(wrong.message.contains("result[1]"), "{}", wrong.message);

        let malformed = body_of(Some("application/json"), r#"{"id":"7","#).await.unwrap_err();
        assert_eq!((malformed.status, malformed.code), (StatusCode::BAD_REQUEST, "malformed_json"));

        let trailing = body_of(Some("application/json"), r#"{"id":"7","result":[]} x"#).await;
        assert_eq!(trailing.unwrap_err().code, "malformed_json");

        let untyped = body_of(None, r#"{"id":"7","result":[]}"#).await.unwrap_err();
        assert_eq!(
            (untyped.status, untyped.code),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
    }

    #[tokio::test]
    async fn a_query_parses_plainly_and_a_bad_one_gets_axums_message() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Trigger {
            client_id: Option<String>,
            n: Option<u32>,
        }
        async fn trigger_of(query: &str) -> Result<Trigger, ApiError> {
            use axum::extract::FromRequestParts;
            let request = http::Request::get(format!("/?{query}")).body(()).unwrap();
            let (mut parts, ()) = request.into_parts();
            QueryParams::<Trigger>::from_request_parts(&mut parts, &())
                .await
                .map(|QueryParams(t)| t)
        }
        let parsed = trigger_of("client_id=a%20b&n=3").await.unwrap();
        assert_eq!(parsed, Trigger { client_id: Some("a b".to_owned()), n: Some(3) });
        let bad = trigger_of("n=three").await.unwrap_err();
        assert_eq!((bad.status, bad.code), (StatusCode::BAD_REQUEST, "invalid_query"));
        assert!(bad.message.contains("n"), "{}", bad.message);
        // A required field that is missing.
        assert_eq!(query_of("id=7").await.unwrap_err().code, "invalid_query");
    }
}
