//! The HTTP edge: everything between the socket and an app's handler.
//!
//! * [`connections`]: the accept loop over hyper (`TCP_NODELAY`, a deadline for request heads,
//!   accept errors survived, TLS, graceful shutdown, and sockets offered to event streams that
//!   can take them over);
//! * [`pending`]: a budget for connections that have sent no request yet, the oldest closed to
//!   make room;
//! * [`body_deadline`]: a deadline for a request's whole body (408 past it);
//! * [`ApiError`]: every error is JSON `{"error":{"code","message"}}` with the right status,
//!   and [`not_found`]/[`method_not_allowed`] keep even routing misses in that shape;
//! * [`JsonBody`]: a JSON extractor whose rejections (wrong content type 415, malformed 400,
//!   too large 413) are [`ApiError`]s too, and [`QueryParams`] and [`PathParams`], the same for
//!   query strings and path segments;
//! * [`numbers`]: whole numbers past any range, saturated so that range checks answer them;
//! * [`auth`]: the shared token (bearer header, cookie, or a `?token=` link that sets the cookie),
//!   compared in constant time;
//! * [`origin`]: Host checks against DNS rebinding and Origin checks against CSRF;
//! * [`forwarded`]: the client's address, read from `Forwarded`/`X-Forwarded-For` only when the
//!   peer is a proxy we were told to trust;
//! * [`rate`]: a per-client rate limit answering 429 with `Retry-After`;
//! * [`streams`]: a cap on open event streams per client address, closing the oldest;
//! * [`takeover`] (skip on a first read): handing a plain HTTP/1 connection's socket from hyper
//!   to an event stream once its head is out, so the topic's sweeper writes to it directly;
//! * [`HeaderText`]: one request header's text, without copying the others;
//! * [`redact_secrets`]: what message tracing uses so secrets never reach a log.

pub mod auth;
pub mod body_deadline;
pub mod connections;
mod error;
pub mod forwarded;
mod header;
mod idle;
mod json;
pub mod numbers;
pub mod origin;
pub mod pending;
pub mod rate;
mod redact;
pub mod streams;
pub mod takeover;

pub use error::{ApiError, method_not_allowed, not_found};
pub use header::{HeaderText, NamedHeader, header_text};
pub use json::{
    JsonBody, PathParams, QueryParams, bytes_rejection, media_type, refuse_reserved_keys,
};
pub use redact::redact_secrets;
