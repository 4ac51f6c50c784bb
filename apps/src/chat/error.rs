//! Every way a chat request is refused or fails, and, in one place, the status and code each one
//! answers with (the JSON shape is the core's [`ApiError`]).
//!
//! Handlers return a [`ChatError`] and pass failures on with `?`: a store failure converts by
//! itself ([`StoreError`] never reaches the client: it is logged, and the client gets 503 and a
//! `Retry-After`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sse_core::edge::ApiError;

use super::names::{MAX_MESSAGE_CHARS, MAX_NICK_CHARS, MAX_ROOM_CHARS};
use super::store::StoreError;

/// Why a chat request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Not a room name.
    #[error("a room name is 1 to {MAX_ROOM_CHARS} of a-z, 0-9, '-' and '_'")]
    InvalidRoom,
    /// Not a nickname.
    #[error("a nickname is 1 to {MAX_NICK_CHARS} letters, digits, spaces, '-', '_' or '.'")]
    InvalidNick,
    /// Nothing but spaces.
    #[error("the message is empty")]
    EmptyMessage,
    /// Over [`MAX_MESSAGE_CHARS`].
    #[error("a message is at most {MAX_MESSAGE_CHARS} characters")]
    MessageTooLong,
    /// Control characters other than line breaks and tabs.
    #[error("the message contains control characters")]
    ControlCharacters,
    /// Not an idempotency key.
    #[error("client_msg_id is 1 to 64 printable ASCII characters")]
    InvalidClientMsgId,
    /// A history page size out of range.
    #[error("limit is 1 to {0}")]
    InvalidLimit(usize),
    /// A room never created.
    #[error("there is no room {0:?}; join it to create it")]
    UnknownRoom(String),
    /// No member token.
    #[error("join the room first and send its token")]
    MissingMemberToken,
    /// A token that holds no nickname in the room.
    #[error("this token holds no nickname in this room")]
    InvalidMemberToken,
    /// Someone online holds the nickname.
    #[error("{nick:?} is online in {room:?}")]
    NickTaken {
        /// The nickname asked for.
        nick: String,
        /// The room.
        room: String,
    },
    /// The history cannot be read or written.
    #[error("the message store is unavailable")]
    Storage(#[from] StoreError),
    /// An answer the core's own checks already made (the post rate limit's 429).
    #[error("{}", .0.message)]
    Core(ApiError),
}

impl ChatError {
    /// The status and the stable code it answers with.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ChatError::InvalidRoom => (StatusCode::BAD_REQUEST, "invalid_room"),
            ChatError::InvalidNick => (StatusCode::BAD_REQUEST, "invalid_nick"),
            ChatError::EmptyMessage => (StatusCode::BAD_REQUEST, "empty_message"),
            ChatError::MessageTooLong => (StatusCode::BAD_REQUEST, "message_too_long"),
            ChatError::ControlCharacters => (StatusCode::BAD_REQUEST, "control_characters"),
            ChatError::InvalidClientMsgId => (StatusCode::BAD_REQUEST, "invalid_client_msg_id"),
            ChatError::InvalidLimit(_) => (StatusCode::BAD_REQUEST, "invalid_limit"),
            ChatError::UnknownRoom(_) => (StatusCode::NOT_FOUND, "unknown_room"),
            ChatError::MissingMemberToken => (StatusCode::UNAUTHORIZED, "missing_member_token"),
            ChatError::InvalidMemberToken => (StatusCode::UNAUTHORIZED, "invalid_member_token"),
            ChatError::NickTaken { .. } => (StatusCode::CONFLICT, "nick_taken"),
            ChatError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            ChatError::Core(answer) => (answer.status, answer.code),
        }
    }
}

impl From<ApiError> for ChatError {
    fn from(answer: ApiError) -> ChatError {
        ChatError::Core(answer)
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> ApiError {
        let (status, code) = error.status_and_code();
        match error {
            ChatError::Core(answer) => answer,
            ChatError::Storage(cause) => {
                tracing::error!(error = %cause, "chat storage failed");
                // A busy or restarting store is usually back within a second.
                ApiError::new(status, code, "the message store is unavailable").retry_after(1)
            }
            other => ApiError::new(status, code, other.to_string()),
        }
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
