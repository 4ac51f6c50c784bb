//! The models a sampling client can call: any OpenAI-compatible Chat Completions server (OpenAI
//! itself, llama.cpp, vLLM, Ollama) through `async-openai`, and Anthropic's Messages API.
//!
//! Both stream, so a person watching sees the tokens as they come. Anthropic has no official
//! Rust SDK; its API is one POST whose answer is an SSE stream, read here with sse-core's own
//! parser. Failures become an [`LlmError`] that names the cause and what to change (the key's
//! variable for a 401, the model for a 403 or 404), and the client turns it into a JSON-RPC
//! error for the server: never a panic, never the key.
//!
//! A 429, 408, 5xx or refused connection is tried again by [`super::retry`] alone. For OpenAI-compatible servers
//! that means replacing async-openai's HTTP service (its default one retries by itself) with
//! `SendOnce`, which also keeps the status and `Retry-After` that async-openai's errors drop.
//! Both providers are asked for token counts (OpenAI's only come when `stream_options` asks),
//! which the client's line per request shows.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, CreateChatCompletionRequestArgs, FinishReason, StopConfiguration,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sse_core::sync::lock;
use sse_core::wire::Parser;

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
                Ok(result) => return result,
                Err(retry) => retry,
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

/// A failure worth another try (rate limit, provider error), with the wait the provider asked
/// for.
struct Retry {
    after: Option<Duration>,
    /// The status answered; 0 when the connection was refused.
    status: u16,
    error: LlmError,
}

/// A request that reached no provider. A refused connection (a local model server restarting)
/// is worth another try, as a 503 would be; anything else is reported at once. Without its URL,
/// which may carry credentials in the base URL.
fn unreachable(error: reqwest::Error) -> Attempt {
    let connect = error.is_connect();
    let error = LlmError::Other(format!("cannot reach the provider: {}", error.without_url()));
    if connect { Err(Retry { after: None, status: 0, error }) } else { Ok(Err(error)) }
}

type Attempt = Result<Result<Completion, LlmError>, Retry>;

/// What a failed status means: try again, or an error that names its cause.
fn retry_or_fail(
    status: u16,
    after: Option<Duration>,
    vars: Vars,
    model: &str,
    body: &str,
) -> Attempt {
    let retry = |error| Err(Retry { after, status, error });
    match status {
        // The provider's own words are left out: OpenAI's quote part of the key.
        401 => Ok(Err(LlmError::KeyRefused(vars.key))),
        403 => Ok(Err(LlmError::Forbidden { key: vars.key, model: model.to_owned() })),
        404 => Ok(Err(LlmError::UnknownModel { model: model.to_owned(), base: vars.base })),
        429 => retry(LlmError::RateLimited),
        408 | 500..=599 => retry(LlmError::Provider(status)),
        _ => Ok(Err(LlmError::Other(format!(
            "the provider answered {status}: {}",
            body.chars().take(300).collect::<String>()
        )))),
    }
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
    let config = OpenAIConfig::new().with_api_base(base).with_api_key(key.unwrap_or(""));
    let answered = Answered::default();
    let client = async_openai::Client::build(http(), config)
        .with_http_service(SendOnce { answered: answered.clone() });
    let mut messages: Vec<ChatCompletionRequestMessage> = Vec::new();
    let build = |e: async_openai::error::OpenAIError| Ok(Err(LlmError::Other(e.to_string())));
    if let Some(system) = &prompt.system {
        match ChatCompletionRequestSystemMessageArgs::default().content(system.as_str()).build() {
            Ok(m) => messages.push(m.into()),
            Err(e) => return build(e),
        }
    }
    for (role, text) in &prompt.messages {
        let message: Result<ChatCompletionRequestMessage, _> = if role == "assistant" {
            ChatCompletionRequestAssistantMessageArgs::default()
                .content(text.as_str())
                .build()
                .map(Into::into)
        } else {
            ChatCompletionRequestUserMessageArgs::default()
                .content(text.as_str())
                .build()
                .map(Into::into)
        };
        match message {
            Ok(m) => messages.push(m),
            Err(e) => return build(e),
        }
    }
    let mut request = CreateChatCompletionRequestArgs::default();
    request.model(&prompt.model).messages(messages);
    // `max_tokens`, not `max_completion_tokens`: several compatible servers (llama.cpp) ignore
    // the newer field.
    #[allow(deprecated)]
    request.max_tokens(prompt.max_tokens);
    // The token counts come in one last chunk, and only when asked for.
    request.stream_options(ChatCompletionStreamOptions {
        include_usage: Some(true),
        ..Default::default()
    });
    if let Some(t) = prompt.temperature {
        request.temperature(t);
    }
    if !prompt.stop.is_empty() {
        request.stop(StopConfiguration::StringArray(prompt.stop.clone()));
    }
    let request = match request.build() {
        Ok(request) => request,
        Err(e) => return build(e),
    };
    let failed = |error| openai_error(error, lock(&answered).take(), &prompt.model);
    let call = async {
        let mut stream = match client.chat().create_stream(request).await {
            Ok(stream) => stream,
            Err(error) => return failed(error),
        };
        let (mut text, mut model, mut stop) = (String::new(), prompt.model.clone(), None);
        let mut usage = Usage::default();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    model = chunk.model;
                    if let Some(counted) = chunk.usage {
                        usage = Usage {
                            input: Some(counted.prompt_tokens),
                            output: Some(counted.completion_tokens),
                        };
                    }
                    for choice in chunk.choices {
                        if let Some(piece) = choice.delta.content {
                            on_token(&piece);
                            text.push_str(&piece);
                        }
                        if let Some(reason) = &choice.finish_reason {
                            stop = Some(openai_stop(reason).to_owned());
                        }
                    }
                }
                Err(error) => return failed(error),
            }
        }
        Ok(Ok(Completion { text, model, stop_reason: stop, usage }))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Ok(Err(LlmError::Timeout(timeout))),
    }
}

/// An async-openai error in the client's terms: by the status the provider answered with, when
/// it answered with a failure.
fn openai_error(
    error: OpenAIError,
    answered: Option<(u16, Option<Duration>)>,
    model: &str,
) -> Attempt {
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
            Ok(Err(LlmError::Other(format!("the provider's answer could not be read: {other}"))))
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
        return Ok(Err(LlmError::NoKey(ANTHROPIC_VARS.key)));
    };
    let mut body = json!({
        "model": prompt.model,
        "max_tokens": prompt.max_tokens,
        "messages": prompt.messages.iter().map(|(role, text)| json!({ "role": role, "content": text })).collect::<Vec<_>>(),
        "stream": true,
    });
    if let Some(system) = &prompt.system {
        body["system"] = json!(system);
    }
    if let Some(t) = prompt.temperature {
        body["temperature"] = json!(t);
    }
    if !prompt.stop.is_empty() {
        body["stop_sequences"] = json!(prompt.stop);
    }
    let call = async {
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
        let (mut text, mut model, mut stop) = (String::new(), prompt.model.clone(), None);
        let mut usage = Usage::default();
        let count = |data: &Value, pointer: &str| {
            data.pointer(pointer).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok())
        };
        let mut parser = Parser::new();
        let mut bytes = response.bytes_stream();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| {
                Ok(Err(LlmError::Other(format!("the stream broke: {}", e.without_url()))))
            })?;
            for event in parser.feed(&chunk) {
                let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                match event.event.as_str() {
                    "message_start" => {
                        if let Some(m) = data.pointer("/message/model").and_then(Value::as_str) {
                            model = m.to_owned();
                        }
                        usage.input = count(&data, "/message/usage/input_tokens");
                    }
                    "content_block_delta" => {
                        if let Some(piece) = data.pointer("/delta/text").and_then(Value::as_str) {
                            on_token(piece);
                            text.push_str(piece);
                        }
                    }
                    "message_delta" => {
                        if let Some(reason) =
                            data.pointer("/delta/stop_reason").and_then(Value::as_str)
                        {
                            stop = Some(anthropic_stop(reason));
                        }
                        // The running total of the tokens written so far.
                        if let Some(output) = count(&data, "/usage/output_tokens") {
                            usage.output = Some(output);
                        }
                    }
                    "error" => {
                        let message = data
                            .pointer("/error/message")
                            .and_then(Value::as_str)
                            .unwrap_or("error");
                        return Err(Ok(Err(LlmError::Other(format!(
                            "the provider failed mid-answer: {message}"
                        )))));
                    }
                    _ => {}
                }
            }
        }
        Ok(Completion { text, model, stop_reason: stop, usage })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(completion)) => Ok(Ok(completion)),
        Ok(Err(attempt)) => attempt,
        Err(_) => Ok(Err(LlmError::Timeout(timeout))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_tried_again_and_named_without_its_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://user:secret@{}/v1/messages", closed.local_addr().unwrap());
        drop(closed);
        let refused = http().post(url).send().await.unwrap_err();
        let Err(Retry { error, after: None, .. }) = unreachable(refused) else {
            panic!("a refused connection is tried again");
        };
        let said = error.to_string();
        assert!(
            said.starts_with("cannot reach the provider") && !said.contains("secret"),
            "{said}"
        );
    }
}
