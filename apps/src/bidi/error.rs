//! Every way a bidi request is refused or fails, and, in one place, the status and code each one
//! answers with (the JSON shape is the core's [`ApiError`]).
//!
//! A trigger's request to a client can fail in each of the correlator's ways ([`RpcError`]); an
//! answer can be refused in each of its ways ([`AnswerError`], whose own status and code are
//! used). Handlers return a [`BidiError`] and pass failures on with `?`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sse_core::edge::ApiError;
use sse_core::rpc::{AnswerError, RpcError};

/// Why a bidi request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum BidiError {
    /// `/trigger` without `client_id` or `message`.
    #[error("need client_id and message parameters")]
    MissingParameters,
    /// `/response` without `Client-ID`.
    #[error("send the Client-ID header")]
    MissingClientId,
    /// No client of that name is connected to any instance.
    #[error("no client with id {0:?} is connected")]
    UnknownClient(String),
    /// The request to `client` failed.
    #[error("{}", asked_message(client, error))]
    Asked {
        /// The client asked.
        client: String,
        /// How the request failed.
        error: RpcError,
    },
    /// The answer cannot be delivered.
    #[error(transparent)]
    Answer(#[from] AnswerError),
    /// An answer the core's own checks already made (a reserved key, the session cap).
    #[error("{}", .0.message)]
    Core(ApiError),
}

/// What a failed request to a client says, by how it failed.
fn asked_message(client: &str, error: &RpcError) -> String {
    match error {
        RpcError::Timeout(after) => format!("client {client:?} did not answer within {after:?}"),
        RpcError::Remote(error) => format!("client {client:?} answered with an error: {error}"),
        RpcError::CircuitOpen(_) => {
            format!("client {client:?} has not answered its recent requests")
        }
        other => format!("client {client:?}: {other}"),
    }
}

impl From<ApiError> for BidiError {
    fn from(answer: ApiError) -> BidiError {
        BidiError::Core(answer)
    }
}

impl From<BidiError> for ApiError {
    fn from(error: BidiError) -> ApiError {
        let message = error.to_string();
        match error {
            BidiError::MissingParameters => ApiError::bad_request("missing_parameters", message),
            BidiError::MissingClientId => ApiError::bad_request("missing_client_id", message),
            BidiError::UnknownClient(_) => ApiError::not_found("unknown_client", message),
            BidiError::Asked { error: RpcError::Timeout(_), .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "client_timeout", message)
            }
            BidiError::Asked { error: RpcError::Remote(_), .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "client_error", message)
            }
            BidiError::Asked { error: RpcError::CircuitOpen(wait), .. } => {
                // Whole seconds, rounded up: a client that waits less finds it still open.
                let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "client_unresponsive", message)
                    .retry_after(seconds)
            }
            BidiError::Asked { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "client_gone", message)
            }
            BidiError::Answer(refused) => ApiError::new(refused.status(), refused.code(), message),
            BidiError::Core(answer) => answer,
        }
    }
}

impl IntoResponse for BidiError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
