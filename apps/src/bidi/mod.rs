//! The bidirectional server: requests go down an SSE stream, answers come back by POST.
//!
//! Two wire formats over the same core (same sessions, same correlator):
//!
//! * the Go original's ([`compat`]): `GET /events?client_id=X` whose first frame is
//!   `{"type":"client_id","id":"X"}` and whose requests are `{"id","method","message"}`;
//!   answers `POST /response` with `Client-ID: X` and `{"id","result"}`;
//! * the core's native one (`sse_core::rpc::http`): `GET /rpc/events`, JSON-RPC in
//!   `event: request`, answers `POST /rpc/responses` with `Session-Id`.
//!
//! `GET|POST /trigger?client_id=X&message=M` sends an `analyze` request to client X over
//! whichever format it connected with and answers `{"id","result"}` (404 unknown client, 504 no
//! answer in time, 502 the client answered with an error, 503 it went away).
//!
//! Unlike the original, answers are matched by request id: concurrent triggers to one client each
//! get their own answer, and an answer with an unknown id is refused (404) instead of being handed
//! to whichever trigger waits next.

pub mod client;
pub mod compat;
pub mod error;

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sse_core::Core;
use sse_core::cluster::RemoteSession;
use sse_core::edge::QueryParams;
use sse_core::edge::origin::SameSite;
use sse_core::wire::jsonrpc::IdText;

use error::BidiError;

/// Settings of the bidirectional server.
#[derive(Clone, Copy, Debug)]
pub struct BidiConfig {
    /// How long `/trigger` waits for the client's answer.
    pub timeout: Duration,
}

impl Default for BidiConfig {
    fn default() -> Self {
        BidiConfig { timeout: Duration::from_secs(30) }
    }
}

#[derive(Clone, Debug)]
struct BidiState {
    core: Core,
    config: BidiConfig,
}

/// The routes (status page, both wire formats, `/trigger`). Mounted at `/bidi`, and at the root
/// when run alone as `bidi-server`, where the Go original had them.
pub fn router(core: Core, config: BidiConfig) -> Router {
    let state = BidiState { core: core.clone(), config };
    Router::new()
        .route("/", get(page))
        .route("/events", get(compat::events))
        .route("/response", axum::routing::post(compat::response))
        .route("/trigger", get(trigger).post(trigger))
        .with_state(state)
        .merge(sse_core::rpc::http::routes(core))
}

/// Mounts [`router`] under `/bidi`.
pub fn mounted(core: Core, config: BidiConfig) -> Router {
    // Nesting maps the page to `/bidi`; `/bidi/` is the same page.
    let state = BidiState { core: core.clone(), config };
    Router::new().route("/bidi/", get(page).with_state(state)).nest("/bidi", router(core, config))
}

/// One connected client, as the status page lists it.
#[derive(Debug)]
struct ClientRow {
    name: String,
    protocol: &'static str,
    connections: usize,
    /// `Some(seconds)` while its circuit is open.
    circuit_open: Option<u64>,
}

#[derive(Template, WebTemplate)]
#[template(path = "bidi.html")]
struct StatusPage {
    clients: Vec<ClientRow>,
    pending: usize,
}

/// The status page: the endpoints, and the clients connected now with their circuit state.
async fn page(State(state): State<BidiState>) -> StatusPage {
    let mut clients: Vec<ClientRow> = state
        .core
        .sessions
        .list()
        .into_iter()
        .map(|session| ClientRow {
            name: session.name().unwrap_or("(unnamed)").to_owned(),
            protocol: session.dialect().name(),
            connections: session.connections(),
            circuit_open: state
                .core
                .correlator
                .circuit_open_for(session.id())
                .map(|d| d.as_secs() + 1),
        })
        .collect();
    clients.sort_by(|a, b| a.name.cmp(&b.name));
    StatusPage { clients, pending: state.core.correlator.pending_count() }
}

/// `/trigger`'s answer, serialized from borrowed parts (no JSON tree per round trip).
#[derive(Serialize)]
struct TriggerAnswer<'a> {
    id: IdText<'a>,
    result: &'a serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct TriggerQuery {
    client_id: Option<String>,
    message: Option<String>,
}

/// The client named `name` on another instance of the cluster, if this one is in a cluster.
async fn locate(state: &BidiState, name: &str) -> Option<RemoteSession> {
    state.core.cluster()?.locate_name(name).await
}

async fn trigger(
    _: SameSite,
    State(state): State<BidiState>,
    QueryParams(query): QueryParams<TriggerQuery>,
) -> Result<Response, BidiError> {
    let (Some(client_id), Some(message)) =
        (query.client_id.filter(|c| !c.is_empty()), query.message.filter(|m| !m.is_empty()))
    else {
        return Err(BidiError::MissingParameters);
    };
    let params = json!({ "message": message });
    let timeout = state.config.timeout;
    let correlator = &state.core.correlator;
    // Connected here, or (in a cluster) to another instance, which the request then travels to.
    let asked = match state.core.sessions.by_name(&client_id) {
        Some(session) => correlator.request(&session, "analyze", Some(params), timeout).await,
        None => match locate(&state, &client_id).await {
            Some(remote) => {
                correlator.request_remote(&remote, "analyze", Some(params), timeout).await
            }
            None => return Err(BidiError::UnknownClient(client_id)),
        },
    };
    let answer = asked.map_err(|error| BidiError::Asked { client: client_id, error })?;
    Ok(axum::Json(TriggerAnswer { id: answer.id.as_text(), result: &answer.result })
        .into_response())
}
