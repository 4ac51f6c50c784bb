//! LLM sampling over MCP: this server offers tools that need a language model, and asks its
//! connected clients to run the model (`sampling/createMessage`), down their stream; the clients
//! answer by POST. Requests can also be sent to a chosen client by hand (`POST
//! /sampling/requests`) and followed on `GET /sampling/events`.
//!
//! | part | job |
//! |---|---|
//! | [`mcp`] | protocol versions of both eras, MCP's framing on a stream, the `createMessage` shape |
//! | [`streamable`] | the Streamable HTTP transport at `/sampling/mcp`, handshake era (2025-03-26 to 2025-11-25) |
//! | [`modern`] | the modern era (2026-07-28) on the same URL: stateless, decided per request |
//! | [`mrtr`] | modern tool calls by multi round-trip requests: `InputRequiredResult`, then the retry |
//! | [`request_state`] | the sealed `requestState` a retry brings back, good on any instance with the key |
//! | [`legacy`] | the HTTP+SSE transport of 2024-11-05 at `/sampling/sse` |
//! | [`tools`] | `summarize` (which may ask the user for a length), `classify_sentiment`, `explain_code` |
//! | [`requests`] | sampling requests sent by hand, their states, the events stream |
//! | [`rounds`] | what the console shows of tool calls: each question, its answer, its time, its instances |
//! | `owner` | with several instances: which one holds a session ([`crate::owner_routing`]) |
//! | [`changes`] | what the console sees change: this instance's topic, or one every instance shares |
//!
//! Two ways to ask the client. In the handshake era both transports sit on sse-core: an MCP
//! session is a core [`Session`] (its id is the `MCP-Session-Id`, its stream replays after
//! `Last-Event-ID`), and every request to a client (`sampling/createMessage`,
//! `elicitation/create`) goes through the core's correlator, whose answers arrive as the
//! client's POSTed responses. In the modern era nothing is held: the server answers the tool call
//! with the questions, and the client calls again with the answers ([`mrtr`]).

mod changes;
pub mod client;
pub mod legacy;
pub mod mcp;
pub mod modern;
pub mod mrtr;
mod owner;
pub mod request_state;
pub mod requests;
pub mod rounds;
pub mod streamable;
pub mod tools;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};
use sse_core::Core;
use sse_core::rpc::RpcError;
use sse_core::session::{Session, SessionId};
use sse_core::sync::lock;
use sse_core::wire::jsonrpc::{Id, Message, Request};
use tokio::task::AbortHandle;

use crate::shared::clock::unix_millis;
use mcp::codes;

/// Settings of the sampling app.
#[derive(Clone, Debug)]
pub struct SamplingConfig {
    /// How long a sampling request waits for its answer: long enough for a person to read,
    /// edit and approve (SDKs' 60 s defaults are known to cut human approvals short). Also how
    /// long a modern call's `requestState` stays good between its rounds.
    pub deadline: Duration,
    /// The key sealing modern calls' `requestState`: derived from the server's token, so that
    /// every instance given the same token opens it; random (this process only) by default.
    pub state_key: request_state::StateKey,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig::sharing(None)
    }
}

impl SamplingConfig {
    /// The defaults, with the `requestState` key derived from `secret` (the server's token) when
    /// there is one, so that every instance given the same token serves each other's retries;
    /// a random key otherwise.
    pub fn sharing(secret: Option<&str>) -> SamplingConfig {
        SamplingConfig {
            deadline: Duration::from_secs(300),
            state_key: secret
                .map_or_else(request_state::StateKey::random, request_state::StateKey::derived),
        }
    }
}

/// A connected MCP client, as `initialize` described it.
#[derive(Clone, Debug, Serialize)]
pub struct ClientInfo {
    /// What the console and `POST /sampling/requests` call it: a random handle, because the
    /// session id is the session's only credential and is never shown.
    pub handle: String,
    /// Its session id (`MCP-Session-Id`).
    #[serde(skip)]
    pub session: String,
    /// `clientInfo.name`.
    pub name: String,
    /// `clientInfo.version`.
    pub version: String,
    /// The negotiated protocol revision.
    pub protocol: String,
    /// The capabilities it declared.
    pub capabilities: Value,
    /// `streamable` or `sse`.
    pub transport: &'static str,
    /// Ms since the epoch.
    pub connected_at: u64,
}

impl ClientInfo {
    /// Whether it declared the `sampling` capability (only such clients are asked).
    pub fn samples(&self) -> bool {
        mcp::declares_sampling(&self.capabilities)
    }
}

#[derive(Clone, Debug)]
struct SamplingState {
    core: Core,
    config: SamplingConfig,
    clients: Arc<Mutex<BTreeMap<String, Arc<ClientInfo>>>>,
    requests: Arc<Mutex<VecDeque<Arc<requests::SamplingRequest>>>>,
    events: changes::Changes,
    /// Client requests being worked on, by (session, request id), so the client can cancel
    /// them with `notifications/cancelled`.
    running: Arc<Mutex<RunningTasks>>,
    /// The rounds of recent tool calls, for the console.
    rounds: Arc<rounds::Rounds>,
    /// This instance's name on the console: the cluster's name for it, else a random one.
    instance: Arc<str>,
}

/// The sampling routes, mounted at `/sampling`.
pub fn router(core: Core, config: SamplingConfig) -> Router {
    let state = SamplingState {
        events: changes::Changes::new(&core),
        core: core.clone(),
        config,
        clients: Arc::default(),
        requests: Arc::default(),
        running: Arc::default(),
        rounds: Arc::default(),
        instance: match core.cluster() {
            Some(cluster) => cluster.instance().into(),
            None => uuid::Uuid::new_v4().simple().to_string()[..8].into(),
        },
    };
    let forget = state.clone();
    core.sessions.on_expire(move |id| forget.client_left(id));
    // MCP requires Origin to be checked on every connection, GETs included (a GET here opens or
    // attaches to a session): cross-site requests are refused whatever the method.
    let mcp = Router::new()
        .route(
            "/sampling/mcp",
            get(streamable::open).post(streamable::post).delete(streamable::delete),
        )
        .route("/sampling/sse", get(legacy::open))
        .route("/sampling/messages", axum::routing::post(legacy::post))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::owner_routing::route::<SamplingState>,
        ))
        // Runs before the line above: a 2026-07-28 request names no session to forward to.
        .route_layer(axum::middleware::from_fn(modern::drop_session_headers))
        .route_layer(axum::middleware::from_fn(sse_core::edge::origin::refuse_cross_site));
    Router::new()
        .route("/sampling", get(console))
        .route("/sampling/", get(console))
        .merge(mcp)
        .route("/sampling/clients", get(requests::clients))
        .route("/sampling/requests", get(requests::list).post(requests::send))
        .route("/sampling/requests/{id}", get(requests::one))
        .route("/sampling/rounds", get(requests::rounds))
        .route("/sampling/events", get(requests::events))
        .with_state(state)
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "sampling.html")]
struct ConsolePage {
    deadline_s: u64,
}

/// `GET /sampling`: the console.
async fn console(axum::extract::State(state): axum::extract::State<SamplingState>) -> ConsolePage {
    ConsolePage { deadline_s: state.config.deadline.as_secs() }
}

/// The answers running, by session and request id (its JSON text), each with the number of its
/// task (so that a finished task never removes a newer one's entry with the same id) and how to
/// stop it.
#[derive(Debug, Default)]
struct RunningTasks {
    by_request: HashMap<(String, String), (u64, AbortHandle)>,
    started: u64,
}

impl RunningTasks {
    /// Runs `work` on a task of its own, listed under `key` until it ends or is aborted
    /// (whatever ends it, its entry goes with it).
    fn spawn(
        tasks: &Arc<Mutex<RunningTasks>>,
        key: (String, String),
        work: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let mut running = lock(tasks);
        running.started += 1;
        let number = running.started;
        let leave = Running { tasks: tasks.clone(), key: key.clone(), number };
        let task = tokio::spawn(async move {
            let _leave = leave;
            work.await;
        });
        running.by_request.insert(key, (number, task.abort_handle()));
        task
    }
}

/// A running answer's entry in [`RunningTasks`], removed when its task ends or is aborted,
/// unless a newer request with the same id has taken the entry over.
struct Running {
    tasks: Arc<Mutex<RunningTasks>>,
    key: (String, String),
    number: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut tasks = lock(&self.tasks);
        if tasks.by_request.get(&self.key).is_some_and(|(number, _)| *number == self.number) {
            tasks.by_request.remove(&self.key);
        }
    }
}

impl SamplingState {
    /// Runs the answer to client request `id` of `session` on its own task, which the client
    /// can cancel; `deliver` gets the response.
    fn spawn_answer(
        &self,
        session: Session,
        request: Request,
        reply: Arc<dyn Fn(Value) + Send + Sync>,
        deliver: impl FnOnce(Value) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        // The id's JSON text: `5` and `"5"` are two requests.
        let key = (session.id().as_str().to_owned(), json!(request.id).to_string());
        let state = self.clone();
        RunningTasks::spawn(&self.running, key, async move {
            let response = state.answer(&session, request, &*reply).await;
            deliver(response);
        })
    }

    /// `notifications/cancelled` from a client: stops the named request's work (which cancels
    /// the sampling request it waits for, and tells the client with the model).
    fn cancel(&self, session: &Session, params: &Value) {
        let Some(id) = params.get("requestId") else { return };
        let id = id.to_string();
        let key = (session.id().as_str().to_owned(), id);
        if let Some((_, task)) = lock(&self.running).by_request.remove(&key) {
            task.abort();
        }
    }

    /// Registers a client that has just initialized.
    fn client_joined(&self, client: ClientInfo) {
        let shown = json!(client);
        lock(&self.clients).insert(client.session.clone(), Arc::new(client));
        self.publish("client_connected", &shown);
    }

    /// Forgets a client whose session ended.
    fn client_left(&self, id: &SessionId) {
        if let Some(client) = lock(&self.clients).remove(id.as_str()) {
            self.publish(
                "client_disconnected",
                &json!({ "handle": client.handle, "name": client.name }),
            );
        }
    }

    /// The client of session `id` (shared: a tool call looks it up twice).
    fn client(&self, id: &SessionId) -> Option<Arc<ClientInfo>> {
        lock(&self.clients).get(id.as_str()).cloned()
    }

    /// A tool call's round or outcome ([`rounds`]): kept for the snapshot, and published.
    fn record_round(&self, name: &'static str, data: Value) {
        self.publish(name, &data);
        self.rounds.keep(name, data);
    }

    /// A state change for `GET /sampling/events` viewers (of every instance, with several).
    fn publish(&self, name: &str, data: &Value) {
        self.events.publish(name, data);
    }

    /// Answers one client message on `session`. Requests get their response (and, for a tool
    /// call, progress notifications) through `reply`; responses go to the correlator; the
    /// returned value is the response to a request, `None` for anything else.
    async fn handle(
        &self,
        session: &Session,
        message: Message,
        reply: &(dyn Fn(Value) + Send + Sync),
    ) -> Result<Option<Value>, sse_core::rpc::AnswerError> {
        match message {
            Message::Response(response) => {
                let id = response.id.clone();
                self.core.correlator.answer_here(session.id(), response)?;
                self.answered_by(session.id(), &id).await;
                Ok(None)
            }
            Message::Notification(note) => {
                if note.method == "notifications/cancelled" {
                    self.cancel(session, &note.params.clone().unwrap_or_default());
                }
                if note.method == "notifications/progress" {
                    self.progress(session.id(), &note.params.unwrap_or_default());
                }
                Ok(None)
            }
            Message::Request(request) => Ok(Some(self.answer(session, request, reply).await)),
        }
    }

    async fn answer(
        &self,
        session: &Session,
        request: Request,
        reply: &(dyn Fn(Value) + Send + Sync),
    ) -> Value {
        let id = request.id.clone();
        match request.method.as_str() {
            "ping" => mcp::result(&id, json!({})),
            "initialize" => mcp::error(Some(&id), codes::INVALID_REQUEST, "already initialized"),
            "tools/list" => mcp::result(&id, tools::list()),
            "tools/call" => {
                self.call_tool(session, &id, request.params.unwrap_or_default(), reply).await
            }
            other => {
                mcp::error(Some(&id), codes::METHOD_NOT_FOUND, &format!("unknown method {other:?}"))
            }
        }
    }

    /// Runs a tool: asks the calling client's model, with progress notifications while waiting
    /// when the call carries a progress token; `summarize` without a length first asks the user
    /// for one, of clients that declared form elicitation.
    async fn call_tool(
        &self,
        session: &Session,
        id: &Id,
        params: Value,
        reply: &(dyn Fn(Value) + Send + Sync),
    ) -> Value {
        let call = rounds::CallId {
            call: uuid::Uuid::new_v4().simple().to_string(),
            tool: rounds::shorten(params.get("name").and_then(Value::as_str).unwrap_or_default()),
            era: "handshake",
            client: rounds::shorten(
                &self.client(session.id()).map_or_else(|| "unknown".to_owned(), |c| c.name.clone()),
            ),
        };
        let response = self.run_tool(session, id, &call, params, reply).await;
        if let Some(result) = response.get("result") {
            self.record_round("tool_finished", rounds::finished(&call, result));
        }
        response
    }

    /// [`Self::call_tool`]'s work.
    async fn run_tool(
        &self,
        session: &Session,
        id: &Id,
        call: &rounds::CallId,
        params: Value,
        reply: &(dyn Fn(Value) + Send + Sync),
    ) -> Value {
        let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
        let mut arguments = params.get("arguments").cloned().unwrap_or(json!({}));
        if let Err(message) = tools::sampling_params(name, &arguments) {
            return mcp::error(Some(id), codes::INVALID_PARAMS, &message);
        }
        let Some(client) = self.client(session.id()).filter(|client| client.samples()) else {
            return tool_error(
                id,
                "this client did not declare the sampling capability, so it cannot run the model",
            );
        };
        let token = params.pointer("/_meta/progressToken").cloned();
        let mut round = (call, 1);
        if tools::wants_length(name, &arguments)
            && mcp::declares_form_elicitation(&client.capabilities)
        {
            let asked = self.ask_length(session, &client, token.as_ref(), reply, round);
            round.1 += 1;
            match asked.await {
                Ok(length) => arguments = tools::with_length(&arguments, &length),
                Err(message) => return tool_error(id, &message),
            }
        }
        let sampling = match tools::sampling_params(name, &arguments) {
            Ok(sampling) => sampling,
            Err(message) => return mcp::error(Some(id), codes::INVALID_PARAMS, &message),
        };
        let sample = "sampling/createMessage";
        let answered = self.ask_client(session, sample, sampling, token.as_ref(), reply, round);
        match answered.await {
            Ok(answer) => match tools::result_text(&answer.result) {
                Some(text) => mcp::result(
                    id,
                    json!({
                        "content": [{ "type": "text", "text": text }],
                        "structuredContent": { "model": answer.result.get("model"), "stopReason": answer.result.get("stopReason") },
                        "isError": false
                    }),
                ),
                None => tool_error(id, "the client's answer had no text"),
            },
            Err(RpcError::Remote(error)) if error.code == codes::USER_REJECTED => tool_error(
                id,
                &format!("the user rejected the sampling request: {}", error.message),
            ),
            Err(error) => tool_error(id, &format!("sampling failed: {error}")),
        }
    }

    /// Asks the user for a summary length (`elicitation/create`, form mode): the length chosen,
    /// the default one when they decline, or why the call must end (cancelled, failed).
    async fn ask_length(
        &self,
        session: &Session,
        client: &ClientInfo,
        token: Option<&Value>,
        reply: &(dyn Fn(Value) + Send + Sync),
        round: (&rounds::CallId, u32),
    ) -> Result<String, String> {
        let mut question = tools::length_question();
        // `mode` came with 2025-11-25; earlier clients know only forms, without the field.
        if client.protocol != mcp::LATEST
            && let Some(fields) = question.as_object_mut()
        {
            fields.remove("mode");
        }
        let method = "elicitation/create";
        let answer = self.ask_client(session, method, question, token, reply, round).await;
        let answer = answer.map_err(|error| format!("asking for the length failed: {error}"))?;
        match tools::length_answer(&answer.result) {
            tools::LengthAnswer::Chosen(length) => Ok(length),
            tools::LengthAnswer::Declined => Ok(tools::DEFAULT_LENGTH.to_owned()),
            tools::LengthAnswer::Cancelled => {
                Err("the user cancelled the question about the summary's length".to_owned())
            }
            tools::LengthAnswer::Invalid(why) => {
                Err(format!("the answer about the summary's length was not usable: {why}"))
            }
        }
    }

    /// Sends `method` to the client and waits for its answer, sending progress notifications
    /// meanwhile when the call carries a progress `token`. The request travels with the call it
    /// belongs to: on the call's own response stream (Streamable HTTP), or on the session's
    /// stream (the 2024-11-05 transport). The answer comes back by POST either way, to the
    /// correlator. The console sees the round asked, then answered.
    async fn ask_client(
        &self,
        session: &Session,
        method: &str,
        params: Value,
        token: Option<&Value>,
        reply: &(dyn Fn(Value) + Send + Sync),
        (call, n): (&rounds::CallId, u32),
    ) -> Result<sse_core::rpc::Answered, RpcError> {
        let asked = rounds::asked(call, n, vec![method.to_owned()], &self.instance);
        self.record_round("tool_round", json!(asked));
        let started = std::time::Instant::now();
        let answered = self.wait_for(session, method, params, token, reply).await;
        let answer = match &answered {
            Ok(answer) => rounds::summary(method, &answer.result),
            Err(error) => format!("error: {error}"),
        };
        let answered_round = asked.answered(answer, started.elapsed(), &self.instance);
        self.record_round("tool_round", json!(answered_round));
        answered
    }

    /// Sends `method` down the call's stream and waits for the answer, with progress notes.
    async fn wait_for(
        &self,
        session: &Session,
        method: &str,
        params: Value,
        token: Option<&Value>,
        reply: &(dyn Fn(Value) + Send + Sync),
    ) -> Result<sse_core::rpc::Answered, RpcError> {
        let deliver = |request: &sse_core::wire::jsonrpc::Request| {
            reply(json!(request));
            true
        };
        let ask = self.core.correlator.request_via(
            session,
            method,
            Some(params),
            self.config.deadline,
            deliver,
        );
        // Without a progress token there is nothing to tick for: no timer at all.
        let Some(token) = token else { return ask.await };
        tokio::pin!(ask);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut progress = 0u64;
        loop {
            tokio::select! {
                answered = &mut ask => return answered,
                _ = tick.tick() => {
                    let note = json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": {
                        "progressToken": token, "progress": progress,
                        "message": "waiting for the client" } });
                    reply(note);
                    progress += 1;
                }
            }
        }
    }
}

/// A tool result that reports a failure (MCP's convention: an error result, not a JSON-RPC
/// error, so the model calling the tool can see what went wrong).
fn tool_error(id: &Id, message: &str) -> Value {
    mcp::result(id, json!({ "content": [{ "type": "text", "text": message }], "isError": true }))
}

/// The `initialize` result.
fn initialize_result(protocol: &str) -> Value {
    json!({
        "protocolVersion": protocol,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "sse-apps", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Tools that ask your client's model (sampling) to summarize, classify sentiment and explain code."
    })
}

/// The client's description from `initialize` params.
fn client_info(
    session: &Session,
    params: &Value,
    protocol: &str,
    transport: &'static str,
) -> ClientInfo {
    let text = |pointer: &str| {
        params.pointer(pointer).and_then(Value::as_str).unwrap_or("unknown").to_owned()
    };
    ClientInfo {
        handle: uuid::Uuid::new_v4().simple().to_string(),
        session: session.id().as_str().to_owned(),
        name: text("/clientInfo/name"),
        version: text("/clientInfo/version"),
        protocol: protocol.to_owned(),
        capabilities: params.get("capabilities").cloned().unwrap_or(json!({})),
        transport,
        connected_at: unix_millis(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn start(
        tasks: &Arc<Mutex<RunningTasks>>,
        key: &(String, String),
        work: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        RunningTasks::spawn(tasks, key.clone(), work)
    }

    #[tokio::test]
    async fn a_running_answer_leaves_the_list_when_it_ends_or_is_aborted() {
        let tasks = Arc::new(Mutex::new(RunningTasks::default()));
        let key = ("session".to_owned(), "5".to_owned());
        let finished = start(&tasks, &key, async {});
        finished.await.unwrap();
        assert!(lock(&tasks).by_request.is_empty(), "an answer that ended");

        let aborted = start(&tasks, &key, std::future::pending());
        aborted.abort();
        assert!(aborted.await.unwrap_err().is_cancelled());
        assert!(lock(&tasks).by_request.is_empty(), "an answer whose caller went away");

        // A request reusing the id takes the entry over; the older one ending leaves it alone.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let older = start(&tasks, &key, async {
            let _ = released.await;
        });
        let newer = start(&tasks, &key, std::future::pending());
        release.send(()).unwrap();
        older.await.unwrap();
        assert_eq!(lock(&tasks).by_request.get(&key).map(|(number, _)| *number), Some(4));
        newer.abort();
        assert!(newer.await.unwrap_err().is_cancelled());
        assert!(lock(&tasks).by_request.is_empty());
    }
}
