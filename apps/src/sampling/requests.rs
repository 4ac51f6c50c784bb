//! Sampling requests sent by hand (`POST /sampling/requests`) to a chosen client, their states,
//! and the stream of client and request changes (`GET /sampling/events`).
//!
//! A request is `sent` until the client answers (`done`, with the result), refuses (`rejected`:
//! its user said no, JSON-RPC error -1), fails (`failed`), or the deadline passes (`timed_out`).
//! Its deadline is long (5 min by default) because a person may be reading and editing.
//!
//! With several instances (`--redis`) a client, and the requests sent to it, live on the instance
//! the client reached. The lists merge every instance's, a request for a client (or about a
//! request) this instance does not have is asked of the others, and the changes reach every
//! console ([`super::changes`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sse_core::edge::{ApiError, JsonBody, PathParams, refuse_reserved_keys};
use sse_core::rpc::RpcError;
use sse_core::session::{Session, SessionId};
use sse_core::stream::LiveResponse;
use sse_core::wire::Event;
use sse_core::wire::jsonrpc::Id;
use tokio::sync::Notify;

use super::mcp::{self, codes};
use super::{ClientInfo, SamplingState};
use crate::forward;
use crate::shared::clock::unix_millis;
use sse_core::sync::lock;

/// Requests kept for the list.
const KEPT: usize = 200;

/// One request sent by hand.
#[derive(Debug)]
pub struct SamplingRequest {
    /// Its id.
    pub id: String,
    /// The client's handle (as `/sampling/clients` shows it).
    pub client: String,
    /// The client's session, whose progress notifications may move this request.
    session: String,
    /// The `createMessage` params sent.
    pub params: Value,
    /// Ms since the epoch.
    pub sent_at: u64,
    /// When it stops waiting.
    pub deadline_at: u64,
    /// What the client last reported (`awaiting_approval`, `generating`), before the outcome.
    stage: Mutex<Option<&'static str>>,
    outcome: Mutex<Option<Value>>,
    /// The JSON-RPC id the client was asked with, once it was sent.
    asked: Mutex<Option<Id>>,
    /// Told once `outcome` is set.
    recorded: Notify,
}

/// How long a client's answer waits for its request's outcome to be recorded (a moment, in
/// practice: the waiting task is woken by the answer itself).
const RECORDING: Duration = Duration::from_secs(5);

impl SamplingRequest {
    /// Returns once the outcome is recorded (or after [`RECORDING`], not to hold an answer
    /// for ever should the waiting task be gone).
    async fn outcome_recorded(&self) {
        let recorded = async {
            loop {
                let told = self.recorded.notified();
                tokio::pin!(told);
                told.as_mut().enable();
                if lock(&self.outcome).is_some() {
                    return;
                }
                told.await;
            }
        };
        let _ = tokio::time::timeout(RECORDING, recorded).await;
    }

    /// Its state as JSON.
    pub fn to_json(&self) -> Value {
        let outcome = lock(&self.outcome).clone();
        let stage = lock(&self.stage).unwrap_or("sent");
        let mut value = json!({
            "id": self.id, "client": self.client, "params": self.params,
            "sent_at": self.sent_at, "deadline_at": self.deadline_at, "state": stage,
        });
        if let (Some(outcome), Some(map)) = (outcome, value.as_object_mut())
            && let Some(fields) = outcome.as_object()
        {
            map.extend(fields.clone());
        }
        value
    }
}

/// `GET /sampling/clients`: every instance's.
pub(super) async fn clients(State(state): State<SamplingState>, headers: HeaderMap) -> Response {
    let clients = all_clients(&state, &headers).await;
    axum::Json(json!({ "clients": clients })).into_response()
}

/// This instance's clients, then every other instance's.
async fn all_clients(state: &SamplingState, headers: &HeaderMap) -> Vec<Value> {
    let mut clients: Vec<Value> = lock(&state.clients)
        .values()
        .map(|c| {
            let mut value = json!(c);
            value["sampling"] = json!(c.samples());
            value
        })
        .collect();
    let cluster = state.core.cluster();
    clients.extend(forward::gather(cluster, headers, "/sampling/clients", "clients").await);
    clients
}

/// Every instance's requests, newest first.
async fn all_requests(state: &SamplingState, headers: &HeaderMap) -> Vec<Value> {
    let mut requests: Vec<Value> = lock(&state.requests).iter().map(|r| r.to_json()).collect();
    let cluster = state.core.cluster();
    requests.extend(forward::gather(cluster, headers, "/sampling/requests", "requests").await);
    requests.sort_by_key(|request| std::cmp::Reverse(request["sent_at"].as_u64().unwrap_or(0)));
    requests
}

/// `POST /sampling/requests`: `{"client":"<session id or name>", …createMessage params}`.
/// The request is sent on its own task; the answer is its id, to follow on the events stream.
pub(super) async fn send(
    State(state): State<SamplingState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let as_sent = bytes::Bytes::from(body.to_string());
    let (client, params) = read_send_body(body)?;
    let Some(session) = find_session(&state, &client) else {
        // Perhaps the client reached another instance: the one that has it sends the request.
        if let Some(cluster) = state.core.cluster() {
            let path = "/sampling/requests";
            let elsewhere = forward::ask_others(cluster, Method::POST, path, &headers, as_sent);
            if let Some(answer) = elsewhere.await {
                return Ok(answer);
            }
        }
        return Err(ApiError::not_found(
            "unknown_client",
            format!("no connected client is {client:?}"),
        ));
    };
    let info = sampling_client(&state, &session)?;
    let request = state.record(&info, params);
    tokio::spawn(run(state, request.clone(), session));
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": request.id }))).into_response())
}

/// The client named in a `POST /sampling/requests` body, and the `createMessage` params (the
/// rest of the body, passed on to the client as they came), or why they are not usable.
fn read_send_body(mut body: Value) -> Result<(String, Value), ApiError> {
    refuse_reserved_keys(&body)?;
    let invalid = |code: &'static str, message: String| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    };
    let Some(map) = body.as_object_mut() else {
        return Err(ApiError::bad_request("invalid_body", "send a JSON object"));
    };
    let client = match map.remove("client") {
        Some(Value::String(client)) if !client.is_empty() => client,
        _ => {
            return Err(invalid(
                "missing_client",
                "name the client: its session id or its name".to_owned(),
            ));
        }
    };
    mcp::check_create_message(&body).map_err(|m| invalid("invalid_params", m))?;
    Ok((client, body))
}

/// The session of the client this instance knows as `client`: by handle, else by the name its
/// `initialize` gave (the newest such client).
fn find_session(state: &SamplingState, client: &str) -> Option<Session> {
    let found = {
        let clients = lock(&state.clients);
        let by_handle = clients.values().find(|c| c.handle == client);
        let by_name =
            || clients.values().filter(|c| c.name == client).max_by_key(|c| c.connected_at);
        by_handle.or_else(by_name).map(|c| c.session.clone())
    };
    found.and_then(|id| state.core.sessions.get(&SessionId::from(id.as_str())))
}

/// The client of `session`, if it may be sent a sampling request: initialized, and declaring
/// sampling.
fn sampling_client(state: &SamplingState, session: &Session) -> Result<Arc<ClientInfo>, ApiError> {
    let info = state.client(session.id()).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_initialized",
            "that client has not finished initialize",
        )
    })?;
    if !info.samples() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_sampling",
            "that client did not declare the sampling capability",
        ));
    }
    Ok(info)
}

/// Sends `request` down `session`'s stream, waits for its outcome and records it.
async fn run(state: SamplingState, request: Arc<SamplingRequest>, session: Session) {
    // The request's id is its progress token: a client that reports progress
    // ("awaiting approval", "generating") moves the request's state.
    let mut params = request.params.clone();
    params["_meta"] = json!({ "progressToken": request.id });
    // Down the session's stream, as `Correlator::request` sends, noting the id it goes with
    // so that the client's answer can wait for the outcome below to be recorded.
    let deliver = |asked: &sse_core::wire::jsonrpc::Request| {
        *lock(&request.asked) = Some(asked.id.clone());
        session.send(session.dialect().request(asked)).is_ok()
    };
    let answered = state
        .core
        .correlator
        .request_via(
            &session,
            "sampling/createMessage",
            Some(params),
            state.config.deadline,
            deliver,
        )
        .await;
    let finished_at = unix_millis();
    let mut outcome = outcome_of(answered);
    outcome["finished_at"] = json!(finished_at);
    outcome["duration_ms"] = json!(finished_at.saturating_sub(request.sent_at));
    *lock(&request.outcome) = Some(outcome);
    state.publish("request_finished", &request.to_json());
    request.recorded.notify_waiters();
}

/// How a request ended, as its `state` and the fields that go with it.
fn outcome_of(answered: Result<sse_core::rpc::Answered, RpcError>) -> Value {
    match answered {
        Ok(answer) => json!({ "state": "done", "result": answer.result }),
        Err(RpcError::Remote(error)) if error.code == codes::USER_REJECTED => {
            json!({ "state": "rejected", "error": { "code": error.code, "message": error.message } })
        }
        Err(RpcError::Timeout(_)) => json!({ "state": "timed_out" }),
        Err(RpcError::Remote(error)) => {
            json!({ "state": "failed", "error": { "code": error.code, "message": error.message } })
        }
        Err(other) => json!({ "state": "failed", "error": { "message": other.to_string() } }),
    }
}

impl SamplingState {
    /// A new request to `client` with `params`, kept for the list and announced to consoles.
    fn record(&self, client: &ClientInfo, params: Value) -> Arc<SamplingRequest> {
        let sent_at = unix_millis();
        let request = Arc::new(SamplingRequest {
            id: uuid::Uuid::new_v4().simple().to_string(),
            client: client.handle.clone(),
            session: client.session.clone(),
            params,
            sent_at,
            deadline_at: sent_at + self.config.deadline.as_millis() as u64,
            stage: Mutex::new(None),
            outcome: Mutex::new(None),
            asked: Mutex::new(None),
            recorded: Notify::new(),
        });
        {
            let mut requests = lock(&self.requests);
            requests.push_front(request.clone());
            requests.truncate(KEPT);
        }
        self.publish("request_sent", &request.to_json());
        request
    }

    /// After the client `from` answered request `id`: if that was a request sent by hand, waits
    /// until its outcome is recorded, so that whoever was told the answer was taken (the
    /// client's 202) finds it in the list and has had its `request_finished` event.
    pub(super) async fn answered_by(&self, from: &SessionId, id: &Id) {
        let request = lock(&self.requests)
            .iter()
            .find(|r| r.session == from.as_str() && lock(&r.asked).as_ref() == Some(id))
            .cloned();
        if let Some(request) = request {
            request.outcome_recorded().await;
        }
    }

    /// A client's `notifications/progress` for a request sent by hand: its message names the
    /// stage (`awaiting approval`, `generating`).
    pub(super) fn progress(&self, from: &SessionId, params: &Value) {
        let Some(token) = params.get("progressToken").and_then(Value::as_str) else { return };
        let stage = match params.get("message").and_then(Value::as_str) {
            Some(m) if m.contains("approval") => "awaiting_approval",
            Some(m) if m.contains("generat") => "generating",
            _ => return,
        };
        // Only the client that was asked may move its request.
        let request = lock(&self.requests)
            .iter()
            .find(|r| r.id == token && r.session == from.as_str())
            .cloned();
        if let Some(request) = request
            && lock(&request.outcome).is_none()
        {
            *lock(&request.stage) = Some(stage);
            self.publish("request_progress", &request.to_json());
        }
    }
}

/// `GET /sampling/requests/{id}`: from this instance, or from the one that sent it.
pub(super) async fn one(
    State(state): State<SamplingState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let here = lock(&state.requests).iter().find(|r| r.id == id).map(|r| r.to_json());
    if let Some(request) = here {
        return Ok(axum::Json(request).into_response());
    }
    if let Some(cluster) = state.core.cluster() {
        let path = format!("/sampling/requests/{id}");
        let elsewhere =
            forward::ask_others(cluster, Method::GET, &path, &headers, Default::default());
        if let Some(answer) = elsewhere.await {
            return Ok(answer);
        }
    }
    Err(ApiError::not_found("unknown_request", format!("no request has id {id:?}")))
}

/// `GET /sampling/requests`: the last 200 of each instance, newest first.
pub(super) async fn list(State(state): State<SamplingState>, headers: HeaderMap) -> Response {
    let requests = all_requests(&state, &headers).await;
    axum::Json(json!({ "requests": requests })).into_response()
}

/// `GET /sampling/rounds`: the rounds and outcomes of recent tool calls ([`super::rounds`]),
/// this instance's then every other's.
pub(super) async fn rounds(State(state): State<SamplingState>, headers: HeaderMap) -> Response {
    axum::Json(json!({ "rounds": all_rounds(&state, &headers).await })).into_response()
}

async fn all_rounds(state: &SamplingState, headers: &HeaderMap) -> Vec<Value> {
    let mut rounds = state.rounds.list();
    let cluster = state.core.cluster();
    rounds.extend(forward::gather(cluster, headers, "/sampling/rounds", "rounds").await);
    rounds
}

/// `GET /sampling/events`: a `snapshot` (clients, requests, tool calls' rounds), then every
/// change.
pub(super) async fn events(State(state): State<SamplingState>, headers: HeaderMap) -> Response {
    // Subscribed before the snapshot is read: a change in between is sent twice rather than
    // lost, and every event carries the whole client or request, so a repeat is harmless.
    let live = state.events.subscribe();
    let clients = all_clients(&state, &headers).await;
    let requests = all_requests(&state, &headers).await;
    let rounds = all_rounds(&state, &headers).await;
    let snapshot = Event::new()
        .event("snapshot")
        .data(json!({ "clients": clients, "requests": requests, "rounds": rounds }).to_string());
    LiveResponse::new(live)
        .prelude(vec![snapshot.encode()])
        .into_response(&state.core.streams, &state.core.metrics)
}
