//! The models a sampling client can call: any OpenAI-compatible Chat Completions server (OpenAI
//! itself, llama.cpp, vLLM, Ollama) through `async-openai`, and Anthropic's Messages API.
//!
//! Both stream, so a person watching sees the tokens as they come. Anthropic has no official
//! Rust SDK; its API is one POST whose answer is an SSE stream, read here with sse-core's own
//! parser. Failures become an [`LlmError`] that says what to do (set a key, wait, retry), and
//! the client turns it into a JSON-RPC error for the server: never a panic, never the key.

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequestArgs, FinishReason, StopConfiguration,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sse_core::wire::Parser;

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
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LlmError {
    /// No API key is configured.
    #[error("no API key: set {0}")]
    NoKey(&'static str),
    /// The provider refused the key.
    #[error("the provider refused the API key (401/403); check {0}")]
    BadKey(&'static str),
    /// Rate limited, even after waiting.
    #[error("the provider is rate limiting this key (429); try again later")]
    RateLimited,
    /// The provider failed.
    #[error("the provider failed ({0}); try again later")]
    Provider(u16),
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

/// Retries after a 429 or a 5xx.
const RETRIES: u32 = 2;

impl Provider {
    /// Calls the model (each attempt within `timeout`), handing each piece of text to
    /// `on_token` as it streams in. A 429 or 5xx is retried (async-openai also backs off on its
    /// own for OpenAI-compatible servers, inside the same timeout) (after `Retry-After`, or 1 s, then 2 s) before it is reported.
    pub async fn complete(
        &self,
        prompt: &Prompt,
        timeout: Duration,
        on_token: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        let mut attempt = 0;
        loop {
            let call = match self {
                Provider::OpenAi { base, key } => {
                    openai(base, key.as_deref(), prompt, timeout, on_token).await
                }
                Provider::Anthropic { base, key } => {
                    anthropic(base, key.as_deref(), prompt, timeout, on_token).await
                }
            };
            match call {
                Err(Retry { after, error }) if attempt < RETRIES => {
                    attempt += 1;
                    let wait = after.unwrap_or(Duration::from_secs(u64::from(attempt)));
                    tracing::warn!(%error, ?wait, "model call failed; retrying");
                    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                }
                Err(Retry { error, .. }) => return Err(error),
                Ok(result) => return result,
            }
        }
    }
}

/// A failure worth retrying (rate limit, provider error), with the wait the provider asked for.
struct Retry {
    after: Option<Duration>,
    error: LlmError,
}

type Attempt = Result<Result<Completion, LlmError>, Retry>;

fn retry_or_fail(
    status: u16,
    after: Option<Duration>,
    key_var: &'static str,
    body: &str,
) -> Attempt {
    match status {
        401 | 403 => Ok(Err(LlmError::BadKey(key_var))),
        429 => Err(Retry { after, error: LlmError::RateLimited }),
        500..=599 => Err(Retry { after, error: LlmError::Provider(status) }),
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

async fn openai(
    base: &str,
    key: Option<&str>,
    prompt: &Prompt,
    timeout: Duration,
    on_token: &mut (dyn FnMut(&str) + Send),
) -> Attempt {
    let config = OpenAIConfig::new().with_api_base(base).with_api_key(key.unwrap_or(""));
    let client = async_openai::Client::with_config(config).with_http_client(http());
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
    let call = async {
        let mut stream = match client.chat().create_stream(request).await {
            Ok(stream) => stream,
            Err(error) => return Some(openai_error(error)),
        };
        let (mut text, mut model, mut stop) = (String::new(), prompt.model.clone(), None);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    model = chunk.model;
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
                Err(error) => return Some(openai_error(error)),
            }
        }
        Some(Ok(Ok(Completion { text, model, stop_reason: stop })))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Some(result)) => result,
        Ok(None) => Ok(Err(LlmError::Other("no answer".to_owned()))),
        Err(_) => Ok(Err(LlmError::Timeout(timeout))),
    }
}

fn openai_error(error: OpenAIError) -> Attempt {
    match error {
        // async-openai reads every non-2xx answer into an ApiError with its status.
        OpenAIError::ApiError(response) => retry_or_fail(
            response.status_code.as_u16(),
            None,
            "OPENAI_API_KEY",
            &response.api_error.message,
        ),
        OpenAIError::Reqwest(error) => match error.status() {
            Some(status) => retry_or_fail(status.as_u16(), None, "OPENAI_API_KEY", ""),
            // Without its URL, which may carry credentials in OPENAI_BASE_URL.
            None => Ok(Err(LlmError::Other(format!(
                "cannot reach the provider: {}",
                error.without_url()
            )))),
        },
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
        return Ok(Err(LlmError::NoKey("ANTHROPIC_API_KEY")));
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
            .map_err(|e| {
                Ok::<_, Retry>(Err(LlmError::Other(format!(
                    "cannot reach the provider: {}",
                    e.without_url()
                ))))
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            let after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map(Duration::from_secs);
            let text = response.text().await.unwrap_or_default();
            return Err(retry_or_fail(status, after, "ANTHROPIC_API_KEY", &text));
        }
        let (mut text, mut model, mut stop) = (String::new(), prompt.model.clone(), None);
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
        Ok(Completion { text, model, stop_reason: stop })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(completion)) => Ok(Ok(completion)),
        Ok(Err(attempt)) => attempt,
        Err(_) => Ok(Err(LlmError::Timeout(timeout))),
    }
}
