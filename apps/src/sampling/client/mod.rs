//! `sse-apps sampling-client`: an MCP client that declares `sampling` and answers every
//! `sampling/createMessage` a server sends it by calling a real model.
//!
//! It connects over Streamable HTTP (or the 2024-11-05 HTTP+SSE transport with `--transport
//! sse`), keeps the server's stream open with sse-core's reconnecting [`EventSource`] (resuming
//! with `Last-Event-ID`, and initializing again when the server has forgotten the session), and
//! answers each request on its own task by POST. With `--approve ask` (the default when stdin is
//! a terminal) a person sees each request and may approve, edit or reject it, watches the tokens
//! stream in, and approves, edits or rejects the completion before it is sent: MCP's two
//! human-in-the-loop checkpoints. A rejection is JSON-RPC error -1. `--approve auto` answers
//! without asking. Keys are read from the environment ([`provider`]) and never printed or
//! logged.
//!
//! `sampling-client call TOOL` turns it around ([`call`]): the client calls a tool itself, in
//! MCP 2026-07-28, and answers the server's input requests round by round.
//!
//! Every request ends in one line on stdout ([`outcome`]): answered with its model, tokens and
//! time, or rejected, failed, cancelled or abandoned with the reason. A failed model call is
//! tried again by one layer only, [`retry`], which obeys the provider's `Retry-After`.

pub mod approval;
pub mod call;
pub mod llm;
pub mod outcome;
pub mod provider;
pub mod retry;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use sse_core::client::{ClientError, EventSource, SseItem};
use sse_core::sync::lock;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::mcp;
use approval::Approve;
use llm::{Prompt, Provider};
use outcome::{Checkpoint, Outcome};

/// Which transport to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    Streamable,
    /// HTTP+SSE (MCP 2024-11-05).
    Sse,
}

/// Everything the client needs. Its `Debug` leaves the token out.
#[derive(Clone)]
pub struct ClientConfig {
    /// The MCP endpoint: `…/sampling/mcp` (streamable) or `…/sampling/sse`.
    pub server: String,
    /// The transport.
    pub transport: Transport,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// The model provider.
    pub provider: Provider,
    /// Models this client may use, matched against the request's hints.
    pub models: Vec<String>,
    /// The model when no hint matches.
    pub default_model: String,
    /// Ask a person, or answer automatically.
    pub approve: Approve,
    /// Most requests answered a minute from this server.
    pub per_minute: u32,
    /// How long one model call may take.
    pub call_timeout: std::time::Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("transport", &self.transport)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("provider", &self.provider)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

/// Why a session ended: reconnect after a pause, or stop.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("{0}")]
    Retry(String),
}

/// Runs until `shutdown`, reconnecting (and initializing again) whenever the session is lost.
pub async fn run(config: ClientConfig, shutdown: CancellationToken) {
    let config = Arc::new(config);
    let limiter = Arc::new(RateLimiter::direct(Quota::per_minute(
        NonZeroU32::new(config.per_minute.max(1)).unwrap_or(NonZeroU32::MIN),
    )));
    let mut pause = std::time::Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        let session = Session::new(config.clone(), limiter.clone());
        match session.run(&shutdown).await {
            Ok(()) => return,
            Err(SessionEnd::Retry(why)) => {
                eprintln!("sampling-client: {why}; connecting again in {pause:?}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

/// One MCP session with the server.
struct Session {
    config: Arc<ClientConfig>,
    http: reqwest::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// Where answers go, and the session id to send with them (Streamable HTTP).
    post_to: Mutex<(String, Option<String>)>,
    /// The protocol revision the server chose in `initialize`.
    protocol: Mutex<String>,
    /// Requests being answered, by their id's JSON, with when each arrived.
    in_flight: Mutex<HashMap<String, (AbortHandle, Instant)>>,
}

fn initialize_request() -> Value {
    json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": mcp::LATEST,
        "capabilities": { "sampling": {} },
        "clientInfo": { "name": "sse-apps-sampling-client", "version": env!("CARGO_PKG_VERSION") }
    } })
}

impl Session {
    fn new(config: Arc<ClientConfig>, limiter: Arc<DefaultDirectRateLimiter>) -> Arc<Session> {
        Arc::new(Session {
            http: reqwest::Client::new(),
            post_to: Mutex::new((config.server.clone(), None)),
            protocol: Mutex::new(mcp::LATEST.to_owned()),
            config,
            limiter,
            in_flight: Mutex::default(),
        })
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// POSTs one message to the server (where the transport says).
    async fn post(&self, message: &Value) -> Result<reqwest::Response, SessionEnd> {
        let (url, session) = lock(&self.post_to).clone();
        let mut request = self
            .authorized(self.http.post(&url))
            .header("accept", "application/json, text/event-stream")
            .json(message);
        if let Some(session) = session {
            let protocol = lock(&self.protocol).clone();
            request =
                request.header("mcp-session-id", session).header("mcp-protocol-version", protocol);
        }
        // Errors without their URL: a legacy URL carries the session id.
        let response = request.send().await.map_err(|e| {
            SessionEnd::Retry(format!("cannot reach the server: {}", e.without_url()))
        })?;
        if response.status() == 404 {
            return Err(SessionEnd::Retry("the server has forgotten the session".to_owned()));
        }
        if response.status() == 401 {
            return Err(SessionEnd::Retry(
                "the server refused the token (401); pass --token".to_owned(),
            ));
        }
        Ok(response)
    }

    async fn run(self: Arc<Self>, shutdown: &CancellationToken) -> Result<(), SessionEnd> {
        let ended = self.clone().serve(shutdown).await;
        // Requests of a session that has ended can no longer be answered.
        for (key, (task, since)) in lock(&self.in_flight).drain() {
            task.abort();
            let id = serde_json::from_str(&key).unwrap_or(Value::String(key));
            println!("{}", outcome::line("abandoned", &id, "the session ended", since.elapsed()));
        }
        ended
    }

    async fn serve(self: Arc<Self>, shutdown: &CancellationToken) -> Result<(), SessionEnd> {
        let mut source = match self.config.transport {
            Transport::Streamable => self.open_streamable().await?,
            Transport::Sse => self.open_legacy().await?,
        };
        println!(
            "sampling-client: connected to {} ({:?}); answering sampling requests",
            self.config.server, self.config.transport
        );
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                item = source.next() => item,
            };
            match item {
                None => return Err(SessionEnd::Retry("the stream closed".to_owned())),
                Some(Ok(SseItem::Open)) => {}
                Some(Ok(SseItem::Event(event))) => {
                    if event.event == "endpoint" {
                        // Only a new session announces an endpoint: ours is gone.
                        return Err(SessionEnd::Retry(
                            "the server started a new session".to_owned(),
                        ));
                    }
                    match serde_json::from_str::<Value>(&event.data) {
                        Ok(message) => self.clone().dispatch(message).await?,
                        Err(error) => tracing::warn!(%error, "a message that is not JSON; ignored"),
                    }
                }
                Some(Err(ClientError::Status(status))) if status == 404 => {
                    return Err(SessionEnd::Retry(
                        "the server has forgotten the session".to_owned(),
                    ));
                }
                Some(Err(error)) if !error.is_retryable() => {
                    return Err(SessionEnd::Retry(error.to_string()));
                }
                Some(Err(error)) => tracing::warn!(%error, "stream lost; resuming"),
            }
        }
    }

    /// Streamable HTTP: initialize by POST, then open the session's stream.
    async fn open_streamable(&self) -> Result<EventSource, SessionEnd> {
        let response = self.post(&initialize_request()).await?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                SessionEnd::Retry(format!(
                    "initialize answered {} without a session id",
                    response.status()
                ))
            })?;
        let body: Value = response.json().await.unwrap_or_default();
        self.negotiated(&body)?;
        lock(&self.post_to).1 = Some(session.clone());
        self.post(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await?;
        let mut source = EventSource::new(self.http.clone(), self.config.server.clone())
            .header(HeaderName::from_static("mcp-session-id"), value(&session)?)
            .header(
                HeaderName::from_static("mcp-protocol-version"),
                value(&lock(&self.protocol).clone())?,
            );
        if let Some(token) = &self.config.token {
            source = source.header(http::header::AUTHORIZATION, value(&format!("Bearer {token}"))?);
        }
        Ok(source)
    }

    /// Records the revision the server chose; one this client does not speak ends the session.
    fn negotiated(&self, initialize: &Value) -> Result<(), SessionEnd> {
        let chosen = initialize
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(mcp::LATEST);
        if !mcp::SUPPORTED.contains(&chosen) {
            return Err(SessionEnd::Retry(format!(
                "the server chose protocol {chosen:?}, which this client does not speak"
            )));
        }
        *lock(&self.protocol) = chosen.to_owned();
        Ok(())
    }

    /// HTTP+SSE: open the stream, read the `endpoint`, initialize through it.
    async fn open_legacy(&self) -> Result<EventSource, SessionEnd> {
        let mut source = EventSource::new(self.http.clone(), self.config.server.clone());
        if let Some(token) = &self.config.token {
            source = source.header(http::header::AUTHORIZATION, value(&format!("Bearer {token}"))?);
        }
        let endpoint = loop {
            match source.next().await {
                Some(Ok(SseItem::Event(event))) if event.event == "endpoint" => break event.data,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(SessionEnd::Retry(error.to_string())),
                None => {
                    return Err(SessionEnd::Retry(
                        "the stream closed before its endpoint".to_owned(),
                    ));
                }
            }
        };
        let base = reqwest::Url::parse(&self.config.server)
            .map_err(|e| SessionEnd::Retry(e.to_string()))?;
        let url = base.join(&endpoint).map_err(|e| SessionEnd::Retry(e.to_string()))?;
        lock(&self.post_to).0 = url.to_string();
        // A reconnect must name the session, or the server would start a new one.
        if let Some((_, id)) = url.query_pairs().find(|(k, _)| k == "sessionId") {
            source.set_url(format!("{}?sessionId={id}", self.config.server));
        }
        self.post(&initialize_request()).await?;
        Ok(source)
    }

    /// Acts on one message from the server.
    async fn dispatch(self: Arc<Self>, message: Value) -> Result<(), SessionEnd> {
        let method = message.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        let id = message.get("id").cloned();
        match (method.as_str(), id) {
            // The answer to our initialize (on the legacy transport it comes down the stream).
            ("", Some(_))
                if message.get("result").is_some_and(|r| r.get("protocolVersion").is_some()) =>
            {
                self.negotiated(&message)?;
                self.post(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
                    .await?;
            }
            ("ping", Some(id)) => {
                self.post(&json!({ "jsonrpc": "2.0", "id": id, "result": {} })).await?;
            }
            ("sampling/createMessage", Some(id)) => {
                let key = id.to_string();
                let params = message.get("params").cloned().unwrap_or_default();
                let session = self.clone();
                let done = key.clone();
                let since = Instant::now();
                // Registered before the task can finish, and removed once its outcome is known.
                let mut in_flight = lock(&self.in_flight);
                let task = tokio::spawn(async move {
                    let outcome = session.sample(&params).await;
                    // Decided: no longer cancelled or abandoned, so its line is this one alone.
                    lock(&session.in_flight).remove(&done);
                    let mut line = outcome.line(&id, since.elapsed());
                    if let Err(error) = session.post(&outcome.answer(&id)).await {
                        line.push_str(&format!("; the answer could not be sent: {error}"));
                    }
                    println!("{line}");
                });
                in_flight.insert(key, (task.abort_handle(), since));
            }
            ("notifications/cancelled", _) => {
                let id = message.pointer("/params/requestId").cloned().unwrap_or_default();
                if let Some((task, since)) = lock(&self.in_flight).remove(&id.to_string()) {
                    task.abort();
                    let what = "the server cancelled it";
                    println!("{}", outcome::line("cancelled", &id, what, since.elapsed()));
                }
            }
            (other, Some(id)) if !other.is_empty() => {
                let error = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": mcp::codes::METHOD_NOT_FOUND, "message": format!("this client does not handle {other}") } });
                self.post(&error).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Answers one `sampling/createMessage` sent down the stream, reporting its stages to the
    /// server when the request carries a progress token.
    async fn sample(&self, params: &Value) -> Outcome {
        let token = params.pointer("/_meta/progressToken").cloned();
        let token = token.as_ref();
        let stage = |progress: u64, message: &'static str| {
            Box::pin(self.progress(token, progress, message)) as BoxFuture<'_, ()>
        };
        answer_sampling(&self.config, &self.limiter, params, &stage).await
    }
}

/// Answers one `sampling/createMessage`, whichever way it came (down the stream, or as a
/// 2026-07-28 input request): checks, approval, the model, approval. `stage` hears of the
/// stages a person may be waiting on (`awaiting approval`, `generating`).
pub(crate) async fn answer_sampling<'a>(
    config: &ClientConfig,
    limiter: &DefaultDirectRateLimiter,
    params: &Value,
    stage: &'a (dyn Fn(u64, &'static str) -> BoxFuture<'a, ()> + Send + Sync + 'a),
) -> Outcome {
    if limiter.check().is_err() {
        let message = format!(
            "rate limited: this client answers at most {} requests a minute",
            config.per_minute
        );
        return Outcome::Failed { code: -32000, message };
    }
    let invalid = |message| Outcome::Failed { code: mcp::codes::INVALID_PARAMS, message };
    if let Err(message) = mcp::check_create_message(params) {
        return invalid(message);
    }
    let prompt = match prompt_from(params, config) {
        Ok(prompt) => prompt,
        Err(message) => return invalid(message),
    };
    if matches!(config.approve, Approve::Ask(_)) {
        stage(0, "awaiting approval").await;
    }
    let Some(prompt) = config.approve.request(prompt).await else {
        return Outcome::Rejected(Checkpoint::Request);
    };
    stage(1, "generating").await;
    let mut show = config.approve.token_printer();
    let completion = match config.provider.complete(&prompt, config.call_timeout, &mut show).await {
        Ok(completion) => completion,
        Err(error) => {
            let message = format!("the model call to {} failed: {error}", prompt.model);
            return Outcome::Failed { code: -32603, message };
        }
    };
    match config.approve.completion(completion).await {
        Some(completion) => Outcome::Answered(completion),
        None => Outcome::Rejected(Checkpoint::Completion),
    }
}

impl Session {
    /// Tells the server how a request it marked with a progress token is doing.
    async fn progress(&self, token: Option<&Value>, progress: u64, message: &str) {
        if let Some(token) = token {
            let note = json!({ "jsonrpc": "2.0", "method": "notifications/progress",
                "params": { "progressToken": token, "progress": progress, "message": message } });
            if let Err(error) = self.post(&note).await {
                tracing::warn!(%error, "could not report progress");
            }
        }
    }
}

fn value(text: &str) -> Result<HeaderValue, SessionEnd> {
    HeaderValue::from_str(text)
        .map_err(|_| SessionEnd::Retry("a header value is not valid".to_owned()))
}

/// The model to use: the first configured model that a hint names (hints are substrings, as the
/// spec has them: "sonnet" matches "claude-sonnet-4"), else the default.
pub fn choose_model(params: &Value, models: &[String], default: &str) -> String {
    let hints = params.pointer("/modelPreferences/hints").and_then(Value::as_array);
    hints
        .into_iter()
        .flatten()
        .filter_map(|h| h.get("name").and_then(Value::as_str))
        .find_map(|hint| models.iter().find(|m| m.contains(hint) || hint.contains(m.as_str())))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// The prompt a request asks for (text only: this client sends no images or audio).
fn prompt_from(params: &Value, config: &ClientConfig) -> Result<Prompt, String> {
    let mut messages = Vec::new();
    for message in params.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user").to_owned();
        let content = message.get("content").cloned().unwrap_or_default();
        let blocks: Vec<Value> = match content {
            Value::Array(items) => items,
            other => vec![other],
        };
        let mut text = String::new();
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""))
                }
                Some(other) => return Err(format!("this client answers text only, not {other}")),
                None => return Err("content without a type".to_owned()),
            }
        }
        messages.push((role, text));
    }
    Ok(Prompt {
        system: params.get("systemPrompt").and_then(Value::as_str).map(str::to_owned),
        messages,
        max_tokens: params
            .get("maxTokens")
            .and_then(Value::as_u64)
            .unwrap_or(256)
            .min(u64::from(u32::MAX)) as u32,
        temperature: params.get("temperature").and_then(Value::as_f64).map(|t| t as f32),
        stop: params
            .get("stopSequences")
            .and_then(Value::as_array)
            .map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        model: choose_model(params, &config.models, &config.default_model),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_pick_a_configured_model_else_the_default() {
        let models = vec!["claude-haiku-4-5".to_owned(), "gpt-4o-mini".to_owned()];
        let asked = json!({ "modelPreferences": { "hints": [{ "name": "sonnet" }, { "name": "gpt-4o-mini" }] } });
        assert_eq!(choose_model(&asked, &models, "local"), "gpt-4o-mini");
        assert_eq!(choose_model(&json!({}), &models, "local"), "local");
        assert_eq!(llm::anthropic_stop("max_tokens"), "maxTokens");
        assert_eq!(llm::anthropic_stop("end_turn"), "endTurn");
    }
}
