//! MCP's Streamable HTTP transport at `/sampling/mcp`, handshake era (2025-03-26 to 2025-11-25).
//! Requests of the modern era (2026-07-28) on the same URL go to [`super::modern`] first.
//!
//! * `POST` carries one client message. `initialize` creates the session and answers with its id
//!   in `MCP-Session-Id`; every later message must carry that header (400 without, 404 for a
//!   session that has ended) and may carry `MCP-Protocol-Version` (400 when unsupported).
//!   Responses and notifications get `202`; a request gets its JSON-RPC response as JSON, except
//!   `tools/call`, which answers with an SSE stream: progress notifications while the client's
//!   model works, then the result. A caller that goes away cancels the sampling request.
//! * `GET` opens the session's stream, where the server's requests (`sampling/createMessage`)
//!   arrive; after a drop it resumes from `Last-Event-ID`. The session lives while a stream is
//!   open, and for 30 s after the last one closes.
//! * `DELETE` ends the session.

use std::sync::Arc;
use std::task::Poll;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sse_core::session::{Session, SessionId};
use sse_core::stream::{LastEventId, sse_response};
use sse_core::wire::jsonrpc::Message;
use tokio::sync::mpsc;

use super::mcp::{self, McpEvents, codes};
use super::modern;
use super::{SamplingState, client_info, initialize_result};
use sse_core::session::TooManySessions;
use sse_core::wire::jsonrpc::Id;

/// The session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// A transport-level refusal, answered with a JSON-RPC error body as the spec's examples have.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = mcp::error(None, codes::INVALID_REQUEST, &self.message);
        (self.status, axum::Json(body)).into_response()
    }
}

fn refuse(status: StatusCode, message: &str) -> Refusal {
    Refusal { status, message: message.to_owned() }
}

/// The answer to an `initialize` when the server holds as many sessions as it may: 503 with
/// `Retry-After`, and the JSON-RPC error for the request.
fn too_many_sessions(id: &Id, refused: TooManySessions) -> Response {
    let body = mcp::error(Some(id), codes::UNAVAILABLE, &refused.to_string());
    let retry_after = refused.retry_after.as_secs().max(1);
    let headers = [(axum::http::header::RETRY_AFTER, retry_after.to_string())];
    (StatusCode::SERVICE_UNAVAILABLE, headers, axum::Json(body)).into_response()
}

/// The session a request names, or the refusal.
fn session_of(state: &SamplingState, headers: &HeaderMap) -> Result<Session, Refusal> {
    let id = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            refuse(StatusCode::BAD_REQUEST, "Bad Request: MCP-Session-Id header is required")
        })?;
    state.core.sessions.get(&SessionId::from(id)).ok_or_else(|| {
        refuse(StatusCode::NOT_FOUND, "Session not found: it ended; initialize a new one")
    })
}

/// The session a request names, at a protocol version this server speaks.
fn checked_session(state: &SamplingState, headers: &HeaderMap) -> Result<Session, Refusal> {
    let session = session_of(state, headers)?;
    check_version(headers)?;
    Ok(session)
}

fn check_version(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get(VERSION_HEADER).map(|v| v.to_str().unwrap_or("")) {
        Some(version) if !mcp::SUPPORTED.contains(&version) => Err(refuse(
            StatusCode::BAD_REQUEST,
            &format!("Bad Request: unsupported MCP-Protocol-Version {version:?}"),
        )),
        _ => Ok(()),
    }
}

/// A POST's body, or the refusal: a message is JSON (415 otherwise, with a JSON-RPC error body
/// as every refusal here), within the size limit (413), and in time (408).
fn message_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Refusal> {
    if sse_core::edge::media_type(headers) != "application/json" {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type: send the message with Content-Type: application/json",
        ));
    }
    body.map_err(|rejection| {
        let error = sse_core::edge::bytes_rejection(&rejection);
        refuse(error.status, &error.message)
    })
}

/// `POST /sampling/mcp`.
pub(super) async fn post(
    State(state): State<SamplingState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match message_body(&headers, body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    if modern::is_modern(&headers, &body) {
        return modern::post(state, headers, &body).await;
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return batch(state, headers, &body).await;
    }
    let message = match Message::parse(&body) {
        Ok(message) => message,
        Err(error) => {
            let code = if matches!(error, sse_core::wire::jsonrpc::EnvelopeError::Json(_)) {
                codes::PARSE_ERROR
            } else {
                codes::INVALID_REQUEST
            };
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(mcp::error(None, code, &error.to_string())),
            )
                .into_response();
        }
    };
    if let Message::Request(request) = &message
        && request.method == "initialize"
    {
        let params = request.params.clone().unwrap_or_default();
        let protocol = mcp::negotiate(params.get("protocolVersion").and_then(Value::as_str));
        let name = params.pointer("/clientInfo/name").and_then(Value::as_str);
        let session = match state.core.sessions.create(name, Arc::new(McpEvents)).await {
            Ok(session) => session,
            Err(refused) => return too_many_sessions(&request.id, refused),
        };
        state.client_joined(client_info(&session, &params, protocol, "streamable"));
        let mut response =
            axum::Json(mcp::result(&request.id, initialize_result(protocol))).into_response();
        if let Ok(id) = HeaderValue::from_str(session.id().as_str()) {
            response.headers_mut().insert(SESSION_HEADER, id);
        }
        return response;
    }
    let session = match checked_session(&state, &headers) {
        Ok(session) => session,
        Err(refusal) => return refusal.into_response(),
    };
    // A client that only POSTs keeps its session while it is active.
    session.touch();
    match message {
        Message::Request(request) if request.method == "tools/call" => {
            tool_stream(state, session, request).await
        }
        message => {
            let ignore = |_: Value| {};
            match state.handle(&session, message, &ignore).await {
                Ok(Some(response)) => axum::Json(response).into_response(),
                Ok(None) => StatusCode::ACCEPTED.into_response(),
                Err(refused) => {
                    // A JSON-RPC error body; never 404, which in MCP means "session ended".
                    let status = match refused.status() {
                        StatusCode::NOT_FOUND => StatusCode::BAD_REQUEST,
                        other => other,
                    };
                    let mut body = mcp::error(None, codes::INVALID_REQUEST, &refused.to_string());
                    body["error"]["data"] = json!({ "reason": refused.code() });
                    (status, axum::Json(body)).into_response()
                }
            }
        }
    }
}

/// A JSON-RPC batch (revision 2025-03-26 allowed them; later ones do not, and this server
/// accepts them from anyone): every message handled in order, the responses to its requests
/// returned as one JSON array, or 202 when it held no request. `initialize` may not be batched.
/// A tool call's sampling request goes down the session's stream here, since a batch answers
/// with plain JSON.
async fn batch(state: SamplingState, headers: HeaderMap, body: &[u8]) -> Response {
    let items: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(items)) if !items.is_empty() => items,
        Ok(_) => {
            let error =
                mcp::error(None, codes::INVALID_REQUEST, "a batch must be a non-empty array");
            return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
        }
        Err(error) => {
            let error = mcp::error(None, codes::PARSE_ERROR, &format!("invalid JSON: {error}"));
            return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
        }
    };
    let session = match checked_session(&state, &headers) {
        Ok(session) => session,
        Err(refusal) => return refusal.into_response(),
    };
    session.touch();
    let down_the_stream = {
        let session = session.clone();
        move |value: Value| {
            let _ = session.send(mcp::message(&value));
        }
    };
    let mut responses = Vec::new();
    for item in items {
        match Message::from_value(item) {
            Err(error) => {
                responses.push(mcp::error(None, codes::INVALID_REQUEST, &error.to_string()))
            }
            Ok(Message::Request(request)) if request.method == "initialize" => {
                responses.push(mcp::error(
                    Some(&request.id),
                    codes::INVALID_REQUEST,
                    "initialize may not be batched",
                ));
            }
            Ok(message) => match state.handle(&session, message, &down_the_stream).await {
                Ok(Some(response)) => responses.push(response),
                Ok(None) => {}
                Err(refused) => {
                    let mut error = mcp::error(None, codes::INVALID_REQUEST, &refused.to_string());
                    error["error"]["data"] = json!({ "reason": refused.code() });
                    responses.push(error);
                }
            },
        }
    }
    if responses.is_empty() {
        StatusCode::ACCEPTED.into_response()
    } else {
        axum::Json(Value::Array(responses)).into_response()
    }
}

/// A tool call answered as an SSE stream: progress notifications, then the response. The tool
/// runs on its own task, which stops (cancelling its sampling request) when the stream is
/// dropped because the caller went away.
///
/// Two waits save the caller's socket a write each, which on loopback is most of what a call
/// costs: the response waits (briefly) for the tool's first message, so that the head and that
/// message leave together, and the stream ends with the response, so that the last chunk leaves
/// with it.
async fn tool_stream(
    state: SamplingState,
    session: Session,
    request: sse_core::wire::jsonrpc::Request,
) -> Response {
    let call = json!(request.id);
    let (sender, mut receiver) = mpsc::unbounded_channel::<Value>();
    let streams = state.core.streams.clone();
    let metrics = state.core.metrics.clone();
    // The session lives as long as the call, stream or no stream.
    let hold = session.hold();
    let progress = sender.clone();
    let reply: Arc<dyn Fn(Value) + Send + Sync> = Arc::new(move |note: Value| {
        let _ = progress.send(note);
    });
    let answered = sender.clone();
    let work = state.spawn_answer(session, request, reply, move |response| {
        let _ = answered.send(response);
    });
    // A caller that goes away stops the work (and so cancels its sampling request).
    tokio::spawn(async move {
        let _hold = hold;
        let abort = work.abort_handle();
        tokio::select! {
            _ = work => {}
            () = sender.closed() => abort.abort(),
        }
    });
    let mut first = tokio::time::timeout(FIRST_MESSAGE_WAIT, receiver.recv()).await.ok().flatten();
    let mut ended = false;
    let frames = futures_util::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        let message = match first.take() {
            Some(message) => Some(message),
            None => std::task::ready!(receiver.poll_recv(cx)),
        };
        ended = message.as_ref().is_none_or(|message| is_response_to(message, &call));
        Poll::Ready(message.map(|message| mcp::message(&message).encode().into_bytes()))
    });
    sse_response(Box::pin(frames), &streams, &metrics)
}

/// How long a tool call's response waits for its first message before its head goes alone.
const FIRST_MESSAGE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether `message` is the response to the request whose id is `call` (the stream's last
/// message).
fn is_response_to(message: &Value, call: &Value) -> bool {
    message.get("method").is_none()
        && (message.get("result").is_some() || message.get("error").is_some())
        && message.get("id") == Some(call)
}

/// `GET /sampling/mcp`: the session's stream of server requests, resumable.
pub(super) async fn open(
    State(state): State<SamplingState>,
    headers: HeaderMap,
    LastEventId(last_event_id): LastEventId,
) -> Response {
    if modern::modern_header(&headers) {
        return modern::method_not_allowed();
    }
    let session = match checked_session(&state, &headers) {
        Ok(session) => session,
        Err(refusal) => return refusal.into_response(),
    };
    let connection = session.connect(last_event_id.as_deref());
    connection.into_response(Vec::new(), &state.core.streams, &state.core.metrics)
}

/// `DELETE /sampling/mcp`: ends the session.
pub(super) async fn delete(State(state): State<SamplingState>, headers: HeaderMap) -> Response {
    if modern::modern_header(&headers) {
        return modern::method_not_allowed();
    }
    match session_of(&state, &headers) {
        Ok(session) => {
            state.core.sessions.close(session.id());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}
