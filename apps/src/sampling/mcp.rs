//! The small part of the Model Context Protocol this app needs, written by hand (rmcp 3 has
//! dropped the SSE transport and deprecated the sampling types): protocol versions of both eras,
//! how MCP frames messages on a stream, what a client declared it can do, and the shape of
//! `sampling/createMessage`.

use serde_json::{Value, json};
use sse_core::session::Dialect;
use sse_core::wire::Event;
use sse_core::wire::jsonrpc::{Id, Notification, Request};

/// The newest revision of the handshake era (`initialize`, sessions, server-initiated requests).
pub const LATEST: &str = "2025-11-25";
/// Every handshake-era revision, accepted in `initialize` (and in `MCP-Protocol-Version`).
pub const SUPPORTED: [&str; 4] = [LATEST, "2025-06-18", "2025-03-26", "2024-11-05"];
/// The modern (stateless) revision: no `initialize`, every request carries its version, client
/// info and capabilities in `_meta`, and the server asks the client things by MRTR.
pub const MODERN: &str = "2026-07-28";
/// Every revision this server speaks, newest first: what `server/discover` advertises and what
/// an `UnsupportedProtocolVersion` error names.
pub const ALL_VERSIONS: [&str; 5] = [MODERN, LATEST, "2025-06-18", "2025-03-26", "2024-11-05"];
/// The revision assumed when a Streamable HTTP client sends no `MCP-Protocol-Version` header.
pub const ASSUMED_WITHOUT_HEADER: &str = "2025-03-26";

/// The version to answer a client that asked for `requested`: the same when supported, else
/// the latest (the client then decides whether it can continue).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested.and_then(|r| SUPPORTED.into_iter().find(|s| *s == r)).unwrap_or(LATEST)
}

/// MCP's framing on an SSE stream: every message is one `message` event whose data is the
/// JSON-RPC message; a cancelled request is announced with `notifications/cancelled`.
#[derive(Clone, Copy, Debug, Default)]
pub struct McpEvents;

impl Dialect for McpEvents {
    fn name(&self) -> &'static str {
        "mcp"
    }

    fn request(&self, request: &Request) -> Event {
        message(&json!(request))
    }

    fn cancelled(&self, id: &Id, reason: &str) -> Option<Event> {
        let params = json!({ "requestId": id, "reason": reason });
        Some(message(&json!(Notification::new("notifications/cancelled", Some(params)))))
    }
}

/// One JSON-RPC message as an SSE `message` event.
pub fn message(value: &Value) -> Event {
    Event::new().event("message").data(value.to_string())
}

/// A JSON-RPC result for request `id`.
pub fn result(id: &Id, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error for request `id` (or `null` when the request could not be read).
pub fn error(id: Option<&Id>, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// JSON-RPC error codes.
pub mod codes {
    /// The JSON text does not parse.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The user rejected a sampling request (MCP's convention).
    pub const USER_REJECTED: i64 = -1;
    /// The server cannot take the request now (JSON-RPC's range for servers' own errors); the
    /// HTTP answer says when to retry.
    pub const UNAVAILABLE: i64 = -32000;
    /// 2026-07-28: the HTTP headers do not match the body, or a required one is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the request's protocol version is not one this server speaks.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// Whether `capabilities` (a client's) declare sampling.
pub fn declares_sampling(capabilities: &Value) -> bool {
    capabilities.get("sampling").is_some_and(Value::is_object)
}

/// Whether `capabilities` declare form-mode elicitation: `elicitation: {form: {}}`, or an
/// `elicitation` object naming no mode at all (which means form, as before modes existed).
pub fn declares_form_elicitation(capabilities: &Value) -> bool {
    let Some(elicitation) = capabilities.get("elicitation").and_then(Value::as_object) else {
        return false;
    };
    elicitation.get("form").is_some_and(Value::is_object)
        || (!elicitation.contains_key("form") && !elicitation.contains_key("url"))
}

/// Why a `sampling/createMessage` params object is not one.
pub fn check_create_message(params: &Value) -> Result<(), String> {
    let messages =
        params.get("messages").and_then(Value::as_array).ok_or("messages must be an array")?;
    if messages.is_empty() {
        return Err("messages must not be empty".to_owned());
    }
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(format!("messages[{i}].role must be \"user\" or \"assistant\""));
        }
        let content = message.get("content").ok_or(format!("messages[{i}] needs content"))?;
        let blocks: Vec<&Value> = match content {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") if block.get("text").is_some_and(Value::is_string) => {}
                Some("image" | "audio")
                    if block.get("data").is_some_and(Value::is_string)
                        && block.get("mimeType").is_some_and(Value::is_string) => {}
                _ => {
                    return Err(format!(
                        "messages[{i}].content must be text {{type,text}}, image or audio {{type,data,mimeType}}"
                    ));
                }
            }
        }
    }
    match params.get("maxTokens").and_then(Value::as_u64) {
        Some(n) if n > 0 => {}
        _ => return Err("maxTokens must be a positive integer".to_owned()),
    }
    if let Some(t) = params.get("temperature")
        && !t.is_number()
    {
        return Err("temperature must be a number".to_owned());
    }
    Ok(())
}
