//! The native session endpoints: a JSON-RPC request stream and the POST that answers it.
//!
//! * `GET /rpc/events[?client_id=NAME][&session_id=ID]` opens (or, with the id of a live session,
//!   resumes) a session. The first frame is `event: session` with `{"session_id","client_id"}`;
//!   requests follow as `event: request`, cancellations as `event: notification`, each with an
//!   id, so `Last-Event-ID` resumes exactly. A session is resumed by its id only: a name is not a
//!   secret, so it only labels a new session (which takes the name over). Because opening it
//!   takes a name from whoever held it, a browser page on another origin may not open it
//!   (403 `origin_not_allowed`, as [`SameSite`] decides): otherwise any site could open
//!   `new EventSource(".../rpc/events?client_id=worker")` and take the worker's requests.
//!   Programs send neither `Origin` nor `Sec-Fetch-Site` and are not affected.
//! * `POST /rpc/responses` with header `Session-Id: ID` and a JSON-RPC response as body: 202 when
//!   delivered; 404, 403, 409 or 410 as the correlator decides (in a cluster, the correlator of
//!   the instance whose caller waits; 503 if it cannot be reached); 400 for a body that is not a
//!   response.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Core;
use crate::edge::origin::SameSite;
use crate::edge::{ApiError, HeaderText, JsonBody, NamedHeader, QueryParams, redact_secrets};
use crate::session::JsonRpcEvents;
use crate::session::SessionId;
use crate::stream::LastEventId;
use crate::wire::Event;
use crate::wire::jsonrpc::Message;

/// The header that names the answering session.
pub const SESSION_HEADER: &str = "session-id";

/// The routes, ready to merge into an app's router.
pub fn routes(core: Core) -> Router {
    Router::new()
        .route("/rpc/events", get(open_session))
        .route("/rpc/responses", post(post_response))
        .with_state(core)
}

#[derive(Debug, Deserialize)]
struct OpenQuery {
    client_id: Option<String>,
    session_id: Option<String>,
}

async fn open_session(
    _: SameSite,
    State(core): State<Core>,
    QueryParams(query): QueryParams<OpenQuery>,
    LastEventId(last_event_id): LastEventId,
) -> Response {
    let existing =
        query.session_id.as_deref().and_then(|id| core.sessions.get(&SessionId::from(id)));
    let resumed = existing.is_some();
    let session = match existing {
        Some(session) => session,
        None => {
            let name = query.client_id.as_deref().filter(|n| !n.is_empty());
            match core.sessions.create(name, Arc::new(JsonRpcEvents)).await {
                Ok(session) => session,
                Err(refused) => return ApiError::from(refused).into_response(),
            }
        }
    };
    // An id from another session's stream means nothing here.
    let last_event_id = if resumed { last_event_id } else { None };
    let connection = session.connect(last_event_id.as_deref());
    let hello = Event::new()
        .event("session")
        .retry(Duration::from_secs(1))
        .json(&json!({ "session_id": session.id().as_str(), "client_id": session.name() }))
        .encode();
    connection.into_response(vec![hello], &core.streams, &core.metrics)
}

/// The `Session-Id` header of an answer.
struct SessionIdHeader;

impl NamedHeader for SessionIdHeader {
    const NAME: HeaderName = HeaderName::from_static(SESSION_HEADER);
}

async fn post_response(
    State(core): State<Core>,
    session: HeaderText<SessionIdHeader>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let session = session
        .into_inner()
        .ok_or_else(|| ApiError::bad_request("missing_session", "send the Session-Id header"))?;
    let session = session.as_str();
    if tracing::enabled!(tracing::Level::TRACE) {
        tracing::trace!(session = ?SessionId::from(session), body = %redact_secrets(&body.to_string()), "answer received");
    }
    let response = match Message::from_value(body) {
        Ok(Message::Response(response)) => response,
        Ok(_) => {
            return Err(ApiError::bad_request(
                "not_a_response",
                "the body must be a JSON-RPC response (with \"result\" or \"error\")",
            ));
        }
        Err(error) => return Err(error.into()),
    };
    core.correlator.answer(&SessionId::from(session), response).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "accepted": true }))).into_response())
}
