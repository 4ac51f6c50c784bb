//! Why a request got no result ([`RpcError`], for its caller) and why a POSTed answer was
//! refused ([`AnswerError`], for its sender), and each as the HTTP error a handler returns, so
//! handlers pass them on with `?` and every app answers the same failure the same way.

use std::time::Duration;

use crate::edge::ApiError;
use crate::wire::jsonrpc::ErrorObject;

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No answer before the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The session expired or was closed while the request waited.
    #[error("the session closed before answering")]
    SessionClosed,
    /// The client answered with a JSON-RPC error.
    #[error("the client answered with an error: {0}")]
    Remote(ErrorObject),
    /// The session's circuit is open: its recent requests all timed out.
    #[error("the session's recent requests all timed out; retry in {0:?}")]
    CircuitOpen(Duration),
}

/// Why a POSTed answer was refused. Each maps to its own HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// No request with this id is known.
    #[error("no request with this id is waiting")]
    Unknown,
    /// The request was sent to a different session.
    #[error("this request was sent to another session")]
    WrongSession,
    /// The request already has its answer (the first one wins).
    #[error("this request was already answered")]
    Duplicate,
    /// The request timed out or its caller gave up before this answer came.
    #[error("this request is no longer waiting (deadline passed or cancelled)")]
    Late,
    /// The request's caller waits on another instance, which cannot be reached now.
    #[error("the instance waiting for this answer cannot be reached now; send it again")]
    Unreachable,
}

impl AnswerError {
    /// The HTTP status for this refusal.
    pub fn status(self) -> ::http::StatusCode {
        match self {
            AnswerError::Unknown => ::http::StatusCode::NOT_FOUND,
            AnswerError::WrongSession => ::http::StatusCode::FORBIDDEN,
            AnswerError::Duplicate => ::http::StatusCode::CONFLICT,
            AnswerError::Late => ::http::StatusCode::GONE,
            AnswerError::Unreachable => ::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            AnswerError::Unknown => "unknown_request",
            AnswerError::WrongSession => "wrong_session",
            AnswerError::Duplicate => "already_answered",
            AnswerError::Late => "request_expired",
            AnswerError::Unreachable => "instance_unreachable",
        }
    }
}

impl From<AnswerError> for ApiError {
    fn from(refused: AnswerError) -> ApiError {
        ApiError::new(refused.status(), refused.code(), refused.to_string())
    }
}

/// What the caller of a request (an app's handler asking a client) answers its own caller: the
/// client is the one that failed, so gateway statuses, and a circuit open says when to retry.
impl From<RpcError> for ApiError {
    fn from(error: RpcError) -> ApiError {
        use ::http::StatusCode;
        match error {
            RpcError::Timeout(after) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "client_timeout",
                format!("the client did not answer within {after:?}"),
            ),
            RpcError::Remote(error) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "client_error",
                format!("the client answered with an error: {error}"),
            ),
            RpcError::CircuitOpen(wait) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "client_unresponsive",
                "the client has not answered its recent requests",
            )
            .retry_after((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)),
            error @ RpcError::SessionClosed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "client_gone", error.to_string())
            }
        }
    }
}
