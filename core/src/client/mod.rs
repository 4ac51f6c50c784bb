//! The Rust side of the pattern: a reconnecting SSE reader and a responder that answers the
//! server's requests.
//!
//! * [`EventSource`] behaves like the browser's: it reconnects after a dropped stream, waits what
//!   the server asked with `retry:` (with exponential backoff and jitter when reconnects keep
//!   failing, and `Retry-After` on 429/503), resumes with `Last-Event-ID`, stops on 204, and fails
//!   on a 4xx or a response that is not `text/event-stream`.
//! * [`Responder`] joins a server's native session stream, runs a handler for each request
//!   concurrently, POSTs every answer (an error answer if the handler fails; silence is never an
//!   answer), retries POSTs on network errors and 5xx, and stops a handler the server cancelled.
//!
//! Why not `reqwest-eventsource`: it stops for good on any non-200 (a 503 during a deploy ends the
//! client), it cannot honour `Retry-After`, and its parser departs from the spec (see
//! [`Parser`](crate::wire::Parser)). Reconnection policy is the point of this crate, so it is here.

mod backoff;
mod event_source;
mod post;
mod responder;
mod retry_after;

pub use backoff::Backoff;
pub use event_source::{ClientError, EventSource, SseItem};
pub use post::{PostOutcome, post_json_with_retry};
pub use responder::{Handler, Responder};
pub use retry_after::{parse_retry_after, retry_after};
