//! MCP's HTTP+SSE transport of 2024-11-05 at `/sampling/sse`: the plain SSE + POST pattern.
//!
//! `GET /sampling/sse` opens a session; its first event, `endpoint`, names the URL to POST to
//! (`/sampling/messages?sessionId=<id>`). Every client message is POSTed there and answered
//! `202 Accepted`; the server's responses, notifications and requests all come down the stream as
//! `message` events.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sse_core::edge::{ApiError, QueryParams};
use sse_core::session::SessionId;
use sse_core::stream::LastEventId;
use sse_core::wire::Event;
use sse_core::wire::jsonrpc::Message;

use super::mcp::{self, McpEvents};
use super::{SamplingState, client_info, initialize_result};

#[derive(Debug, Deserialize)]
pub(super) struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

/// `GET /sampling/sse`: a new session (or, with `?sessionId=` of a live one and
/// `Last-Event-ID`, the same session resumed).
pub(super) async fn open(
    State(state): State<SamplingState>,
    QueryParams(query): QueryParams<SessionQuery>,
    LastEventId(last_event_id): LastEventId,
) -> Response {
    let existing =
        query.session_id.as_deref().and_then(|id| state.core.sessions.get(&SessionId::from(id)));
    let resumed = existing.is_some();
    let session = match existing {
        Some(session) => session,
        None => match state.core.sessions.create(None, Arc::new(McpEvents)).await {
            Ok(session) => session,
            Err(refused) => return ApiError::from(refused).into_response(),
        },
    };
    let endpoint = Event::new()
        .event("endpoint")
        .data(format!("/sampling/messages?sessionId={}", session.id().as_str()))
        .encode();
    let connection = session.connect(if resumed { last_event_id.as_deref() } else { None });
    let prelude = if resumed { Vec::new() } else { vec![endpoint] };
    connection.into_response(prelude, &state.core.streams, &state.core.metrics)
}

/// `POST /sampling/messages?sessionId=…`: one client message; 202, with the answer on the stream.
pub(super) async fn post(
    State(state): State<SamplingState>,
    QueryParams(query): QueryParams<SessionQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if sse_core::edge::media_type(&headers) != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the message with Content-Type: application/json",
        ));
    }
    let body = body.map_err(|rejection| sse_core::edge::bytes_rejection(&rejection))?;
    let id = query.session_id.ok_or_else(|| {
        ApiError::bad_request("missing_session", "add ?sessionId= from the endpoint event")
    })?;
    let session = state.core.sessions.get(&SessionId::from(id.as_str())).ok_or_else(|| {
        ApiError::not_found("unknown_session", "no such session; open /sampling/sse again")
    })?;
    let message = Message::parse(&body)?;
    let send = {
        let session = session.clone();
        move |value: Value| {
            let _ = session.send(mcp::message(&value));
        }
    };
    if let Message::Request(request) = &message
        && request.method == "initialize"
    {
        let params = request.params.clone().unwrap_or_default();
        let protocol = mcp::negotiate(params.get("protocolVersion").and_then(Value::as_str));
        state.client_joined(client_info(&session, &params, protocol, "sse"));
        send(mcp::result(&request.id, initialize_result(protocol)));
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let task_state = state.clone();
    // Requests are answered on their own task (a tool call waits for a model), so the POST
    // returns at once, as this transport has it.
    if let Message::Request(request) = message {
        let send: Arc<dyn Fn(Value) + Send + Sync> = Arc::new(send);
        let respond = send.clone();
        drop(task_state.spawn_answer(session, request, send, move |response| respond(response)));
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    state.handle(&session, message, &send).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
