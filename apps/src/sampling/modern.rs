//! The modern era (2026-07-28) on `/sampling/mcp`, beside the handshake era on the same URL.
//!
//! **Which era a request belongs to** is decided per request, as the spec's versioning page has a
//! dual-era server do: a request carrying the modern per-request `_meta`
//! (`io.modelcontextprotocol/protocolVersion`) is served statelessly, and so is one whose
//! `MCP-Protocol-Version` header names a version that is not a handshake-era one (an unknown
//! version then gets `-32022` naming the versions this server speaks, rather than a handshake
//! error). Everything else (`initialize`, and whatever carries its session) is the handshake
//! era, in [`super::streamable`], unchanged.
//!
//! **A modern request** is one POST with one JSON-RPC request, answered with JSON: no session is
//! created, looked up or echoed (an `MCP-Session-Id` or `Last-Event-ID` it carries is ignored), and
//! `GET` or `DELETE` with a modern version header get `405`. Each request is checked in this order,
//! the first failure answering with `400` (`404` for an unknown method):
//!
//! 1. a version header naming no version this server knows: `-32022` (`UnsupportedProtocolVersion`,
//!    `data: {supported, requested}`);
//! 2. `params._meta` must be an object with the protocol version and the client's capabilities:
//!    `-32602`;
//! 3. `MCP-Protocol-Version`, `Mcp-Method` and, for `tools/call`, `Mcp-Name` (Base64 sentinel
//!    decoded) must be present once each and match the body: `-32020` (`HeaderMismatch`);
//! 4. the `_meta` version must be a modern one: `-32022`.
//!
//! Then `server/discover`, `tools/list` and `tools/call` ([`super::mrtr`]) are answered; every
//! result carries `resultType` and the server's identity in `_meta`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sse_core::wire::jsonrpc::{Id, Message, Request};

use super::SamplingState;
use super::mcp::{self, codes};
use super::mrtr::{Call, CallError};
use super::request_state::principal;
use super::streamable::VERSION_HEADER;

/// The `_meta` key of the protocol version.
pub const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key of the client's capabilities.
pub const CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` key of the client's identity.
const CLIENT_INFO_META: &str = "io.modelcontextprotocol/clientInfo";
/// The `_meta` key of the server's identity, on results.
const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";
/// The header mirroring the method.
const METHOD_HEADER: &str = "mcp-method";
/// The header mirroring a `tools/call`'s tool name.
const NAME_HEADER: &str = "mcp-name";

/// Whether the request's `MCP-Protocol-Version` header puts it in the modern era: it names a
/// version that is not a handshake-era one.
pub fn modern_header(headers: &HeaderMap) -> bool {
    headers.get(VERSION_HEADER).is_some_and(|v| !mcp::SUPPORTED.contains(&v.to_str().unwrap_or("")))
}

/// Whether a POST with this body and these headers is a modern request.
pub fn is_modern(headers: &HeaderMap, body: &[u8]) -> bool {
    if modern_header(headers) {
        return true;
    }
    // A handshake-era message is parsed once, by its own path: only a body that mentions the
    // key is parsed here. Only a single request can carry `_meta`; a batch is handshake-era.
    if memchr::memmem::find(body, VERSION_META.as_bytes()).is_none() {
        return false;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return false };
    value.pointer("/params/_meta").and_then(|meta| meta.get(VERSION_META)).is_some()
}

/// Middleware: a modern request's `MCP-Session-Id` and `Last-Event-ID` are dropped before
/// anything can look them up (with several instances, the session directory): the revision has
/// no sessions and its streams do not resume, so the spec has such headers ignored.
pub async fn drop_session_headers(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if modern_header(request.headers()) {
        request.headers_mut().remove(super::streamable::SESSION_HEADER);
        request.headers_mut().remove("last-event-id");
    }
    next.run(request).await
}

/// `GET` or `DELETE` in the modern era: there is no stream to open and no session to end.
pub fn method_not_allowed() -> Response {
    let body = mcp::error(
        None,
        codes::INVALID_REQUEST,
        "Method Not Allowed: 2026-07-28 has no GET stream and no sessions; POST each request",
    );
    let mut response = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// A modern POST (its body already checked for type and size).
pub(super) async fn post(state: SamplingState, headers: HeaderMap, body: &[u8]) -> Response {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return refuse(codes::INVALID_REQUEST, "2026-07-28 has no batches: one request per POST");
    }
    let message = match Message::parse(body) {
        Ok(message) => message,
        Err(error) => {
            let code = match error {
                sse_core::wire::jsonrpc::EnvelopeError::Json(_) => codes::PARSE_ERROR,
                _ => codes::INVALID_REQUEST,
            };
            return refuse(code, &error.to_string());
        }
    };
    match message {
        // The core protocol defines no client notifications on this transport: taken, dropped.
        Message::Notification(_) => StatusCode::ACCEPTED.into_response(),
        Message::Response(_) => refuse(
            codes::INVALID_REQUEST,
            "2026-07-28 clients send no responses: answer input requests by retrying the call",
        ),
        Message::Request(request) => match answer(&state, &headers, &request) {
            Ok(result) => {
                axum::Json(mcp::result(&request.id, with_server_info(result))).into_response()
            }
            Err(error) => failed(&request.id, error),
        },
    }
}

/// The result of a modern request, or the error to answer it with.
fn answer(
    state: &SamplingState,
    headers: &HeaderMap,
    request: &Request,
) -> Result<Value, CallError> {
    if let Some(version) = headers.get(VERSION_HEADER) {
        let version = version.to_str().unwrap_or_default();
        if !mcp::ALL_VERSIONS.contains(&version) {
            return Err(unsupported(version));
        }
    }
    let params = request.params.clone().unwrap_or_default();
    let meta = params.get("_meta").and_then(Value::as_object).ok_or_else(|| {
        invalid_params(format!(
            "params._meta must be an object with {VERSION_META:?} and {CAPABILITIES_META:?}"
        ))
    })?;
    let (Some(version), Some(capabilities)) = (meta.get(VERSION_META), meta.get(CAPABILITIES_META))
    else {
        return Err(invalid_params(format!(
            "params._meta must carry {VERSION_META:?} and {CAPABILITIES_META:?}"
        )));
    };
    check_headers(headers, request, version)?;
    if version.as_str() != Some(mcp::MODERN) {
        let requested = version.as_str().map_or_else(|| version.to_string(), str::to_owned);
        return Err(unsupported(&requested));
    }
    if !capabilities.is_object() {
        return Err(invalid_params(format!("{CAPABILITIES_META:?} must be an object")));
    }
    match request.method.as_str() {
        "server/discover" => Ok(discover()),
        "tools/list" => {
            let mut list = super::tools::list();
            list["resultType"] = json!("complete");
            // Cacheable results say for how long; the list is fixed, but a new build may change it.
            list["ttlMs"] = json!(0);
            list["cacheScope"] = json!("private");
            Ok(list)
        }
        "tools/call" => {
            let client = meta.get(CLIENT_INFO_META).and_then(|info| info.get("name"));
            let log = |name: &'static str, data: Value| state.record_round(name, data);
            let call = Call {
                key: &state.config.state_key,
                ttl: state.config.deadline,
                principal: principal(headers),
                capabilities,
                client: client.and_then(Value::as_str).unwrap_or("unknown").to_owned(),
                instance: &state.instance,
                log: &log,
            };
            call.run(&params)
        }
        other => Err(CallError {
            code: codes::METHOD_NOT_FOUND,
            message: format!("unknown method {other:?}"),
            data: None,
        }),
    }
}

/// Step 3: the mirrored headers, present once and equal to the body.
fn check_headers(headers: &HeaderMap, request: &Request, version: &Value) -> Result<(), CallError> {
    let one = |name: &str| -> Result<Option<&str>, CallError> {
        let mut values = headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(mismatch(format!("the {name} header is given more than once")));
        }
        Ok(first.and_then(|v| v.to_str().ok()))
    };
    if one(VERSION_HEADER)? != version.as_str() || version.as_str().is_none() {
        return Err(mismatch(format!(
            "the {VERSION_HEADER} header must equal {VERSION_META:?} in _meta"
        )));
    }
    if one(METHOD_HEADER)? != Some(request.method.as_str()) {
        return Err(mismatch(format!("the {METHOD_HEADER} header must equal the method")));
    }
    let name = one(NAME_HEADER)?;
    if request.method == "tools/call"
        && let Some(tool) =
            request.params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str)
        && name.and_then(decode_header_value).as_deref() != Some(tool)
    {
        return Err(mismatch(format!("the {NAME_HEADER} header must equal the tool's name")));
    }
    Ok(())
}

/// A header value, decoded from the spec's `=?base64?…?=` sentinel when it has it (`None` when
/// the sentinel holds no valid Base64 or UTF-8, so a corrupt header never matches).
fn decode_header_value(value: &str) -> Option<String> {
    let Some(encoded) = value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) else {
        return Some(value.to_owned());
    };
    String::from_utf8(STANDARD.decode(encoded).ok()?).ok()
}

/// The `server/discover` result.
fn discover() -> Value {
    let init = super::initialize_result(mcp::MODERN);
    json!({
        "resultType": "complete",
        "supportedVersions": mcp::ALL_VERSIONS,
        "capabilities": init["capabilities"],
        "instructions": init["instructions"],
        "ttlMs": 0,
        "cacheScope": "private",
    })
}

fn with_server_info(mut result: Value) -> Value {
    let info = json!({ "name": "sse-apps", "version": env!("CARGO_PKG_VERSION") });
    result["_meta"] = json!({ SERVER_INFO_META: info });
    result
}

fn unsupported(requested: &str) -> CallError {
    CallError {
        code: codes::UNSUPPORTED_PROTOCOL_VERSION,
        message: "Unsupported protocol version".to_owned(),
        data: Some(json!({ "supported": mcp::ALL_VERSIONS, "requested": requested })),
    }
}

fn invalid_params(message: String) -> CallError {
    CallError { code: codes::INVALID_PARAMS, message, data: None }
}

fn mismatch(message: String) -> CallError {
    CallError {
        code: codes::HEADER_MISMATCH,
        message: format!("Header mismatch: {message}"),
        data: None,
    }
}

/// A JSON-RPC error answer, with the status the spec gives its code.
fn failed(id: &Id, error: CallError) -> Response {
    let status = match error.code {
        codes::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut body = mcp::error(Some(id), error.code, &error.message);
    if let Some(data) = error.data {
        body["error"]["data"] = data;
    }
    (status, axum::Json(body)).into_response()
}

/// A refusal before the request's id is known.
fn refuse(code: i64, message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(mcp::error(None, code, message))).into_response()
}
