//! How a session's client wants requests and cancellations framed on its stream.
//!
//! Every session is created with a [`Dialect`]: the correlator and the cluster hand it a request
//! or a cancellation and send whatever event it makes. [`JsonRpcEvents`] is the native one; the
//! apps add theirs (the Go-compatible format of the learning programs, MCP's).

use serde_json::json;

use crate::wire::Event;
use crate::wire::jsonrpc::{Id, Notification, Request};

/// How a session's client wants requests and cancellations framed on its stream.
pub trait Dialect: Send + Sync + 'static {
    /// A short name for the framing, so an app can tell its sessions apart.
    fn name(&self) -> &'static str;
    /// The event that carries `request`.
    fn request(&self, request: &Request) -> Event;
    /// The event that tells the client `id` was cancelled, or `None` if its protocol has no way
    /// to say so.
    fn cancelled(&self, id: &Id, reason: &str) -> Option<Event>;
}

/// The native framing: `event: request` with a JSON-RPC request as data, and `event:
/// notification` with a `notifications/cancelled` notification.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRpcEvents;

/// The method of the notification sent when a request is cancelled.
pub const CANCELLED: &str = "notifications/cancelled";

impl Dialect for JsonRpcEvents {
    fn name(&self) -> &'static str {
        "jsonrpc"
    }

    fn request(&self, request: &Request) -> Event {
        Event::new().event("request").json(request)
    }

    fn cancelled(&self, id: &Id, reason: &str) -> Option<Event> {
        let note = Notification::new(CANCELLED, Some(json!({ "requestId": id, "reason": reason })));
        Some(Event::new().event("notification").json(&note))
    }
}
