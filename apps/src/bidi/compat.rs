//! The Go original's wire format, on the core's sessions and correlator.
//!
//! Frames carry only `data:` lines the original client understands, plus `id:` lines and
//! keep-alive comments, which line-based clients such as the original's skip. The one exception
//! is `event: resync`, sent when a client missed requests (it came back too late, or fell more
//! than its buffer behind): a gap is never silent, even to a client that cannot act on it. The original has no
//! way to cancel a request, so nothing is sent when one is. Connections naming the same
//! `client_id` share one session (the original let a second connection take over and break the
//! first); requests sent while a client is briefly away wait for it to come back.
//!
//! Connecting takes a name, so a page on another origin may not (403 `origin_not_allowed`, the
//! [`SameSite`] check `/trigger` makes): a browser there would get the requests meant for the
//! client of that name. The Go programs, curl and the Rust client send neither `Origin` nor
//! `Sec-Fetch-Site` and connect as before.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sse_core::edge::origin::SameSite;
use sse_core::edge::{
    ApiError, HeaderText, JsonBody, NamedHeader, QueryParams, redact_secrets, refuse_reserved_keys,
};
use sse_core::session::Dialect;
use sse_core::session::{Session, TooManySessions};
use sse_core::stream::LastEventId;
use sse_core::wire::Event;
use sse_core::wire::jsonrpc::{Id, IdText, Request, Response as RpcResponse};

use super::BidiState;
use super::error::BidiError;

/// Requests framed as the original: `data: {"id":"…","method":"…","message":"…"}`.
#[derive(Debug, Clone, Copy)]
pub struct GoCompat;

impl Dialect for GoCompat {
    fn name(&self) -> &'static str {
        "go-compat"
    }

    fn request(&self, request: &Request) -> Event {
        let message = request.params.as_ref().and_then(|p| p.get("message"));
        let empty = Value::String(String::new());
        Event::new().json(&GoRequest {
            id: request.id.as_text(),
            method: &request.method,
            message: message.unwrap_or(&empty),
        })
    }

    fn cancelled(&self, _id: &Id, _reason: &str) -> Option<Event> {
        None
    }
}

/// A request as the original frames it, borrowed from the JSON-RPC request (it is serialized
/// once per request, on the round trip's hot path).
#[derive(Serialize)]
struct GoRequest<'a> {
    id: IdText<'a>,
    method: &'a str,
    message: &'a Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    client_id: Option<String>,
}

/// `GET /events?client_id=X`.
pub(super) async fn events(
    _: SameSite,
    State(state): State<BidiState>,
    QueryParams(query): QueryParams<EventsQuery>,
    LastEventId(last_event_id): LastEventId,
) -> Response {
    let name = query
        .client_id
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("client_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let (session, existed) = match compat_session(&state, &name).await {
        Ok(found) => found,
        Err(refused) => return ApiError::from(refused).into_response(),
    };
    // An id from before a server restart means nothing to a new session: start it clean, so this
    // stream carries only what the original's clients understand.
    let last_event_id = last_event_id.filter(|_| existed);
    let connection = session.connect(last_event_id.as_deref());
    let hello = Event::new().json(&json!({ "type": "client_id", "id": name })).encode();
    connection.into_response(vec![hello], &state.core.streams, &state.core.metrics)
}

/// The live compat session with this name (and `true`), or a new one (and `false`).
async fn compat_session(state: &BidiState, name: &str) -> Result<(Session, bool), TooManySessions> {
    match state.core.sessions.by_name(name) {
        Some(session) if session.dialect().name() == GoCompat.name() => Ok((session, true)),
        _ => Ok((state.core.sessions.create(Some(name), Arc::new(GoCompat)).await?, false)),
    }
}

/// The original's answer body.
#[derive(Debug, Deserialize)]
pub(super) struct CompatAnswer {
    id: String,
    result: Value,
}

/// The header that names the answering client.
pub(super) struct ClientIdHeader;

impl NamedHeader for ClientIdHeader {
    const NAME: HeaderName = HeaderName::from_static("client-id");
}

/// `POST /response` with `Client-ID: X`.
pub(super) async fn response(
    State(state): State<BidiState>,
    client_id: HeaderText<ClientIdHeader>,
    JsonBody(answer): JsonBody<CompatAnswer>,
) -> Result<Response, BidiError> {
    let client_id = client_id.into_inner().ok_or(BidiError::MissingClientId)?;
    let client_id = client_id.as_str();
    // The result is passed on to the caller as it came.
    refuse_reserved_keys(&answer.result)?;
    let session = match state.core.sessions.by_name(client_id) {
        Some(session) => session.id().clone(),
        None => {
            let remote = super::locate(&state, client_id).await;
            remote.map(|remote| remote.id).ok_or(BidiError::UnknownClient(client_id.to_owned()))?
        }
    };
    tracing::trace!(client_id, request = %answer.id, result = %redact_secrets(&answer.result.to_string()), "answer received");
    let answer = RpcResponse::result(Id::from_text(&answer.id), answer.result);
    state.core.correlator.answer(&session, answer).await?;
    // An empty 200, as the original answers: a Go client closes the body unread, and only an
    // empty one leaves its connection reusable (a body left unread makes it dial anew for every
    // answer, which costs the server an accept per round trip).
    Ok(StatusCode::OK.into_response())
}
