//! The models a sampling client can call: any OpenAI-compatible Chat Completions server (OpenAI
//! itself, llama.cpp, vLLM, Ollama) through `async-openai`, and Anthropic's Messages API.
//!
//! Both stream, so a person watching sees the tokens as they come. Anthropic has no official
//! Rust SDK; its API is one POST whose answer is an SSE stream, read here with sse-core's own
//! parser. The two share one request builder (`request_body`: the same fields, and a short list
//! of where they differ) and one stream loop (`read_stream`, filling an `Answer`); what is each
//! provider's own is how it is sent and how one item of its stream is read.
//!
//! Failures become an [`LlmError`] that names the cause and what to change (the key's variable
//! for a 401, the model for a 403 or 404), and the client turns it into a JSON-RPC error for the
//! server: never a panic, never the key. A 429, 408, 5xx or refused connection is tried again by
//! [`super::retry`] alone. For OpenAI-compatible servers that means replacing async-openai's HTTP
//! service (its default one retries by itself) with `SendOnce`, which also keeps the status and
//! `Retry-After` that async-openai's errors drop. Both providers are asked for token counts
//! (OpenAI's only come when `stream_options` asks), which the client's line per request shows.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    CreateChatCompletionRequest, CreateChatCompletionStreamResponse, FinishReason,
};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use sse_core::sync::lock;
use sse_core::wire::{MessageEvent, Parser};

use super::retry::{self, Next};

/// What to ask a model (taken from a `sampling/createMessage` request).
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// The system prompt, if any.
    pub system: Option<String>,
    /// (role, text) in order; role is `user` or `assistant`.
    pub messages: Vec<(String, String)>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// The model to use.
    pub model: String,
}

/// What came back, in MCP's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The text.
    pub text: String,
    /// The model that produced it.
    pub model: String,
    /// `endTurn`, `maxTokens`, `stopSequence`, `toolUse`, or the provider's own word.
    pub stop_reason: Option<String>,
    /// The tokens the provider counted, when it said.
    pub usage: Usage,
}

impl Completion {
    /// The model, the tokens and the stop reason in words, e.g. `gpt-4o-mini, 123 in / 45 out
    /// tokens, stop: endTurn` (no stop reason when the provider gave none): how the client shows
    /// a completion, both to the person approving it and in its line per request.
    pub fn summary(&self) -> String {
        let tokens = match (self.usage.input, self.usage.output) {
            (None, None) => "tokens not reported".to_owned(),
            (input, output) => {
                let count = |n: Option<u32>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
                format!("{} in / {} out tokens", count(input), count(output))
            }
        };
        match &self.stop_reason {
            Some(stop) => format!("{}, {tokens}, stop: {stop}", self.model),
            None => format!("{}, {tokens}", self.model),
        }
    }
}

/// Tokens read and written by one call, as the provider counted them (a compatible server may
/// not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub input: Option<u32>,
    /// Completion tokens.
    pub output: Option<u32>,
}

/// Why a model call failed. Each says what to change, naming the variable or flag to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LlmError {
    /// No API key is configured.
    #[error("no API key: set {0}")]
    NoKey(&'static str),
    /// 401: the provider does not accept the key.
    #[error("the provider refused the API key (401): check {0}")]
    KeyRefused(&'static str),
    /// 403: the key is valid but may not do this.
    #[error(
        "the provider refused this request to model {model} (403): check that the key in {key} \
         may use it"
    )]
    Forbidden {
        /// The key's variable.
        key: &'static str,
        /// The model asked for.
        model: String,
    },
    /// 404: no such model (or no API at that base URL).
    #[error(
        "the provider does not know model {model} (404): choose another with --model or \
         --models, or check {base} is the API's base URL"
    )]
    UnknownModel {
        /// The model asked for.
        model: String,
        /// The base URL's variable.
        base: &'static str,
    },
    /// 429, still after the client's retries.
    #[error("the provider is rate limiting this key (429); try again later")]
    RateLimited,
    /// A 5xx (or 408), still after the client's retries.
    #[error("the provider failed ({0}); try again later")]
    Provider(u16),
    /// The provider's `Retry-After` asked for a longer wait than the client makes.
    #[error("the provider answered {status} and asks to wait {} s; try again later", wait.as_secs())]
    WaitTooLong {
        /// The status that came with it.
        status: u16,
        /// The wait asked for.
        wait: Duration,
    },
    /// No answer in time.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// Anything else (a bad request, an unreadable answer).
    #[error("{0}")]
    Other(String),
}

/// A provider and its credentials. Its `Debug` leaves the key out.
#[derive(Clone)]
pub enum Provider {
    /// OpenAI-compatible Chat Completions (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
    OpenAi {
        /// The API base, e.g. `https://api.openai.com/v1` or `http://localhost:8080/v1`.
        base: String,
        /// The key (may be empty for local servers that need none).
        key: Option<String>,
    },
    /// Anthropic Messages (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`).
    Anthropic {
        /// The API base, e.g. `https://api.anthropic.com`.
        base: String,
        /// The key.
        key: Option<String>,
    },
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, base, key) = match self {
            Provider::OpenAi { base, key } => ("OpenAi", base, key),
            Provider::Anthropic { base, key } => ("Anthropic", base, key),
        };
        let key = if key.is_some() { "<redacted>" } else { "none" };
        f.debug_struct(name).field("base", base).field("key", &key).finish()
    }
}

/// Where a provider's settings come from, so an error can name the one to fix.
#[derive(Clone, Copy, Debug)]
struct Vars {
    key: &'static str,
    base: &'static str,
}

const OPENAI_VARS: Vars = Vars { key: "OPENAI_API_KEY", base: "OPENAI_BASE_URL" };
const ANTHROPIC_VARS: Vars = Vars { key: "ANTHROPIC_API_KEY", base: "ANTHROPIC_BASE_URL" };

impl Provider {
    /// The model used when `--model` is not given: each provider's small, fast current model
    /// (Anthropic's alias follows the newest Haiku 4.5 snapshot).
    pub fn default_model(&self) -> &'static str {
        match self {
            Provider::OpenAi { .. } => "gpt-4o-mini",
            Provider::Anthropic { .. } => "claude-haiku-4-5",
        }
    }

    /// Calls the model (each attempt within `timeout`), handing each piece of text to
    /// `on_token` as it streams in. A 429, 408, 5xx or refused connection is tried again as
    /// [`super::retry`] says (at most [`retry::RETRIES`] more times, after the provider's
    /// `Retry-After` when it gives one); this is the only retry layer, async-openai's own is off.
    pub async fn complete(
        &self,
        prompt: &Prompt,
        timeout: Duration,
        on_token: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = match self {
                Provider::OpenAi { base, key } => {
                    openai(base, key.as_deref(), prompt, timeout, on_token).await
                }
                Provider::Anthropic { base, key } => {
                    anthropic(base, key.as_deref(), prompt, timeout, on_token).await
                }
            };
            let Retry { after, status, error } = match call {
                Ok(completion) => return Ok(completion),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Retry(retry)) => retry,
            };
            match retry::next(attempt, after) {
                Next::Wait(wait) => {
                    tracing::warn!(%error, ?wait, attempt, "model call failed; trying again");
                    tokio::time::sleep(wait).await;
                }
                Next::GiveUp => return Err(error),
                Next::TooLong(wait) => return Err(LlmError::WaitTooLong { status, wait }),
            }
        }
    }
}

/// How one attempt failed.
enum Failure {
    /// Worth another try (rate limit, provider error, refused connection).
    Retry(Retry),
    /// Reported at once.
    Final(LlmError),
}

impl From<LlmError> for Failure {
    fn from(error: LlmError) -> Failure {
        Failure::Final(error)
    }
}

/// A failure worth another try, with the wait the provider asked for.
struct Retry {
    after: Option<Duration>,
    /// The status answered; 0 when the connection was refused.
    status: u16,
    error: LlmError,
}

/// One call to a provider: the completion, or how it failed.
type Attempt = Result<Completion, Failure>;

/// A request that reached no provider. A refused connection (a local model server restarting)
/// is worth another try, as a 503 would be; anything else is reported at once. Without its URL,
/// which may carry credentials in the base URL.
fn unreachable(error: reqwest::Error) -> Failure {
    let connect = error.is_connect();
    let error = LlmError::Other(format!("cannot reach the provider: {}", error.without_url()));
    if connect { Failure::Retry(Retry { after: None, status: 0, error }) } else { error.into() }
}

/// What a failed status means: try again, or an error that names its cause.
fn retry_or_fail(
    status: u16,
    after: Option<Duration>,
    vars: Vars,
    model: &str,
    body: &str,
) -> Failure {
    let retry = |error| Failure::Retry(Retry { after, status, error });
    match status {
        // The provider's own words are left out: OpenAI's quote part of the key.
        401 => LlmError::KeyRefused(vars.key).into(),
        403 => LlmError::Forbidden { key: vars.key, model: model.to_owned() }.into(),
        404 => LlmError::UnknownModel { model: model.to_owned(), base: vars.base }.into(),
        429 => retry(LlmError::RateLimited),
        408 | 500..=599 => retry(LlmError::Provider(status)),
        _ => LlmError::Other(format!(
            "the provider answered {status}: {}",
            body.chars().take(300).collect::<String>()
        ))
        .into(),
    }
}

/// The two APIs, for what their requests and answers do differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

/// The one request builder: the body both APIs read, from a prompt. They share `model`,
/// `max_tokens` (not OpenAI's newer `max_completion_tokens`, which several compatible servers
/// such as llama.cpp ignore), `messages`, `temperature` and `stream`; they differ in where the
/// system prompt goes (OpenAI: a first `system` message; Anthropic: `system`), what the stop
/// sequences are called (`stop`, `stop_sequences`), the roles (OpenAI's messages are `user`
/// unless `assistant`), and OpenAI's token counts, which come in a last chunk only when
/// `stream_options` asks.
fn request_body(api: Api, prompt: &Prompt) -> Value {
    let mut messages = Vec::new();
    if let (Api::OpenAi, Some(system)) = (api, &prompt.system) {
        messages.push(json!({ "role": "system", "content": system }));
    }
    for (role, text) in &prompt.messages {
        let role = match api {
            Api::OpenAi if role != "assistant" => "user",
            _ => role.as_str(),
        };
        messages.push(json!({ "role": role, "content": text }));
    }
    let mut body = json!({
        "model": prompt.model,
        "max_tokens": prompt.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if let Some(t) = prompt.temperature {
        body["temperature"] = json!(t);
    }
    let stop = match api {
        Api::OpenAi => {
            body["stream_options"] = json!({ "include_usage": true });
            "stop"
        }
        Api::Anthropic => {
            if let Some(system) = &prompt.system {
                body["system"] = json!(system);
            }
            "stop_sequences"
        }
    };
    if !prompt.stop.is_empty() {
        body[stop] = json!(prompt.stop);
    }
    body
}

/// What a streamed answer has said so far: every provider's reader feeds one, and it hands each
/// piece of text on as it comes.
struct Answer<'a> {
    text: String,
    model: String,
    stop: Option<String>,
    usage: Usage,
    on_token: &'a mut (dyn FnMut(&str) + Send),
}

impl<'a> Answer<'a> {
    /// Nothing yet; the model is the one asked for until the provider names its own.
    fn new(model: &str, on_token: &'a mut (dyn FnMut(&str) + Send)) -> Answer<'a> {
        let (text, model, stop, usage) = (String::new(), model.to_owned(), None, Usage::default());
        Answer { text, model, stop, usage, on_token }
    }

    /// A piece of the text, shown as it comes.
    fn piece(&mut self, piece: &str) {
        (self.on_token)(piece);
        self.text.push_str(piece);
    }

    fn completion(self) -> Completion {
        let Answer { text, model, stop, usage, .. } = self;
        Completion { text, model, stop_reason: stop, usage }
    }
}

/// The one stream loop: every item of a provider's stream read into `answer` by that provider's
/// `read`, until the stream ends or an item is a failure.
async fn read_stream<T>(
    items: impl Stream<Item = T>,
    answer: &mut Answer<'_>,
    mut read: impl FnMut(T, &mut Answer<'_>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut items = std::pin::pin!(items);
    while let Some(item) = items.next().await {
        read(item, answer)?;
    }
    Ok(())
}

/// `call`, unless it takes longer than `timeout`.
async fn within(timeout: Duration, call: impl Future<Output = Attempt>) -> Attempt {
    tokio::time::timeout(timeout, call).await.unwrap_or(Err(LlmError::Timeout(timeout).into()))
}

/// The HTTP client for every model call: one for the process, so its connections (and TLS
/// sessions) are reused and the system's root certificates are loaded once.
fn http() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new).clone()
}

/// MCP's stop reason for an OpenAI finish reason.
fn openai_stop(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "endTurn",
        FinishReason::Length => "maxTokens",
        FinishReason::ToolCalls | FinishReason::FunctionCall => "toolUse",
        FinishReason::ContentFilter => "contentFilter",
    }
}

/// MCP's stop reason for an Anthropic stop reason (both directions are one table).
pub fn anthropic_stop(reason: &str) -> String {
    match reason {
        "end_turn" => "endTurn",
        "max_tokens" => "maxTokens",
        "stop_sequence" => "stopSequence",
        "tool_use" => "toolUse",
        other => other,
    }
    .to_owned()
}

/// The status and `Retry-After` of the provider's last answer, which async-openai's errors do
/// not carry (and a non-JSON error body loses even the status).
type Answered = Arc<Mutex<Option<(u16, Option<Duration>)>>>;

/// async-openai's HTTP service for one call: sends each request once, through the process's
/// client, and notes how the provider answered. Installing any service replaces async-openai's
/// default one, whose retry layer would otherwise try every 429 and 5xx three more times under
/// ours (see [`super::retry`]).
#[derive(Clone, Debug)]
struct SendOnce {
    answered: Answered,
}

impl tower::Service<HttpRequestFactory> for SendOnce {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future =
        Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let answered = self.answered.clone();
        Box::pin(async move {
            let request = request.build().await?;
            let response = http().execute(request).await.map_err(OpenAIError::Reqwest)?;
            let after = retry::retry_after(response.headers());
            *lock(&answered) = Some((response.status().as_u16(), after));
            Ok(response)
        })
    }
}

async fn openai(
    base: &str,
    key: Option<&str>,
    prompt: &Prompt,
    timeout: Duration,
    on_token: &mut (dyn FnMut(&str) + Send),
) -> Attempt {
    let request: CreateChatCompletionRequest =
        serde_json::from_value(request_body(Api::OpenAi, prompt))
            .map_err(|e| LlmError::Other(format!("cannot build the request: {e}")))?;
    let config = OpenAIConfig::new().with_api_base(base).with_api_key(key.unwrap_or(""));
    let answered = Answered::default();
    let client = async_openai::Client::build(http(), config)
        .with_http_service(SendOnce { answered: answered.clone() });
    let failed = |error| openai_error(error, lock(&answered).take(), &prompt.model);
    within(timeout, async {
        let chunks = client.chat().create_stream(request).await.map_err(failed)?;
        let mut answer = Answer::new(&prompt.model, on_token);
        read_stream(chunks, &mut answer, |chunk, answer| {
            read_openai(chunk.map_err(failed)?, answer);
            Ok(())
        })
        .await?;
        Ok(answer.completion())
    })
    .await
}

/// One chunk of an OpenAI-compatible stream.
fn read_openai(chunk: CreateChatCompletionStreamResponse, answer: &mut Answer<'_>) {
    answer.model = chunk.model;
    if let Some(counted) = chunk.usage {
        answer.usage =
            Usage { input: Some(counted.prompt_tokens), output: Some(counted.completion_tokens) };
    }
    for choice in chunk.choices {
        if let Some(piece) = choice.delta.content {
            answer.piece(&piece);
        }
        if let Some(reason) = &choice.finish_reason {
            answer.stop = Some(openai_stop(reason).to_owned());
        }
    }
}

/// An async-openai error in the client's terms: by the status the provider answered with, when
/// it answered with a failure.
fn openai_error(
    error: OpenAIError,
    answered: Option<(u16, Option<Duration>)>,
    model: &str,
) -> Failure {
    if let Some((status, after)) = answered.filter(|(status, _)| !(200..300).contains(status)) {
        let message = match &error {
            OpenAIError::ApiError(response) => response.api_error.message.as_str(),
            _ => "",
        };
        return retry_or_fail(status, after, OPENAI_VARS, model, message);
    }
    match error {
        OpenAIError::Reqwest(error) => unreachable(error),
        other => {
            LlmError::Other(format!("the provider's answer could not be read: {other}")).into()
        }
    }
}

async fn anthropic(
    base: &str,
    key: Option<&str>,
    prompt: &Prompt,
    timeout: Duration,
    on_token: &mut (dyn FnMut(&str) + Send),
) -> Attempt {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(LlmError::NoKey(ANTHROPIC_VARS.key).into());
    };
    let body = request_body(Api::Anthropic, prompt);
    within(timeout, async {
        let response = http()
            .post(format!("{}/v1/messages", base.trim_end_matches('/')))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        if status != 200 {
            let after = retry::retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            return Err(retry_or_fail(status, after, ANTHROPIC_VARS, &prompt.model, &text));
        }
        // Its SSE answer, read with sse-core's parser: the events of each chunk as they come.
        let mut parser = Parser::new();
        let events = response.bytes_stream().flat_map(move |chunk| {
            let events: Vec<Result<MessageEvent, Failure>> = match chunk {
                Ok(chunk) => parser.feed(&chunk).into_iter().map(Ok).collect(),
                Err(e) => {
                    vec![Err(
                        LlmError::Other(format!("the stream broke: {}", e.without_url())).into()
                    )]
                }
            };
            futures_util::stream::iter(events)
        });
        let mut answer = Answer::new(&prompt.model, on_token);
        read_stream(events, &mut answer, |event, answer| read_anthropic(&event?, answer)).await?;
        Ok(answer.completion())
    })
    .await
}

/// One event of an Anthropic stream; an `error` event ends the answer.
fn read_anthropic(event: &MessageEvent, answer: &mut Answer<'_>) -> Result<(), Failure> {
    let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
    let count = |pointer: &str| {
        data.pointer(pointer).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok())
    };
    match event.event.as_str() {
        "message_start" => {
            if let Some(model) = data.pointer("/message/model").and_then(Value::as_str) {
                answer.model = model.to_owned();
            }
            answer.usage.input = count("/message/usage/input_tokens");
        }
        "content_block_delta" => {
            if let Some(piece) = data.pointer("/delta/text").and_then(Value::as_str) {
                answer.piece(piece);
            }
        }
        "message_delta" => {
            if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                answer.stop = Some(anthropic_stop(reason));
            }
            // The running total of the tokens written so far.
            if let Some(output) = count("/usage/output_tokens") {
                answer.usage.output = Some(output);
            }
        }
        "error" => {
            let message = data.pointer("/error/message").and_then(Value::as_str).unwrap_or("error");
            let error = format!("the provider failed mid-answer: {message}");
            return Err(LlmError::Other(error).into());
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_tried_again_and_named_without_its_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://user:secret@{}/v1/messages", closed.local_addr().unwrap());
        drop(closed);
        let refused = http().post(url).send().await.unwrap_err();
        let Failure::Retry(Retry { error, after: None, .. }) = unreachable(refused) else {
            panic!("a refused connection is tried again");
        };
        let said = error.to_string();
        assert!(
            said.starts_with("cannot reach the provider") && !said.contains("secret"),
            "{said}"
        );
    }

    fn prompt() -> Prompt {
        Prompt {
            system: Some("Be brief.".to_owned()),
            messages: vec![
                ("user".to_owned(), "Hi".to_owned()),
                ("assistant".to_owned(), "Hello".to_owned()),
                ("tool".to_owned(), "odd".to_owned()),
            ],
            max_tokens: 42,
            temperature: Some(0.5),
            stop: vec!["END".to_owned()],
            model: "m".to_owned(),
        }
    }

    #[test]
    fn the_openai_request_is_what_async_openai_sends_unchanged() {
        let body = request_body(Api::OpenAi, &prompt());
        let typed: CreateChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), body, "nothing lost or added");
        assert_eq!(
            body["messages"],
            json!([
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "Hi" },
                { "role": "assistant", "content": "Hello" },
                { "role": "user", "content": "odd" },
            ])
        );
        assert_eq!((&body["max_tokens"], &body["stop"]), (&json!(42), &json!(["END"])));
        assert_eq!(body["stream_options"], json!({ "include_usage": true }));
        assert_eq!(body.get("system"), None);
    }

    #[test]
    fn the_anthropic_request_has_its_system_field_and_stop_sequences() {
        let body = request_body(Api::Anthropic, &prompt());
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["messages"][2], json!({ "role": "tool", "content": "odd" }));
        assert_eq!((body.get("stop"), body.get("stream_options")), (None, None));
        let bare = Prompt { system: None, temperature: None, stop: Vec::new(), ..prompt() };
        let body = request_body(Api::Anthropic, &bare);
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["max_tokens", "messages", "model", "stream"]);
    }
}
