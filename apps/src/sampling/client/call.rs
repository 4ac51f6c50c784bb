//! `sse-apps sampling-client call TOOL --arg KEY=VALUE`: this client as a caller of tools, in
//! MCP 2026-07-28, where the server asks by multi round-trip requests (MRTR) instead of down a
//! stream.
//!
//! The call is one POST. When the server needs something, it answers with an
//! `InputRequiredResult`; this client gathers every input it asks for and calls again with the
//! answers (`inputResponses`) and the `requestState` it was given, until a final result, at
//! most [`MAX_ROUNDS`] times. A `sampling/createMessage` goes to the model under the same human
//! checkpoints as the push era (approve, edit or reject the request, then the completion); an
//! `elicitation/create` form is asked at the terminal ([`Approve::form`]); unattended
//! (`--approve auto`) the client does not declare elicitation, so it is asked none. MRTR has no way to answer an input with an error, so a rejected or failed
//! sampling request ends the call here, saying why. Each round is reported on stderr; the
//! result's text goes to stdout.

use std::num::NonZeroU32;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::future::BoxFuture;
use governor::{Quota, RateLimiter};
use serde_json::{Map, Value, json};

use super::approval::Approve;
use super::outcome::Outcome;
use super::{ClientConfig, Transport, answer_sampling};
use crate::sampling::mcp;

/// Most rounds a call may take before this client gives up (the official SDKs' figure).
pub const MAX_ROUNDS: usize = 10;

/// What `sampling-client` does besides answering a server's requests.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Action {
    /// Call a tool yourself (MCP 2026-07-28): its sampling requests go to your model under the
    /// same checkpoints, its questions are asked at this terminal; prints the result
    Call {
        /// The tool's name
        tool: String,
        /// One argument, as KEY=VALUE (VALUE is a string); repeat for more
        #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = key_value)]
        args: Vec<(String, String)>,
    },
}

fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or("write each argument as KEY=VALUE")?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The arguments object of `--arg` pairs.
pub fn arguments(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// Calls `tool` with `arguments` on `config.server`, answering every round; the final result
/// (`isError` may be true: the tool's own failure, for the caller to show).
pub async fn call(config: &ClientConfig, tool: &str, arguments: Value) -> anyhow::Result<Value> {
    if config.transport != Transport::Streamable {
        bail!("calling a tool speaks 2026-07-28, over Streamable HTTP: leave out --transport sse");
    }
    let limiter = RateLimiter::direct(Quota::per_minute(
        NonZeroU32::new(config.per_minute.max(1)).unwrap_or(NonZeroU32::MIN),
    ));
    let http = reqwest::Client::new();
    let mut retry = Map::new();
    for round in 1..=MAX_ROUNDS {
        let started = Instant::now();
        let result = post(&http, config, tool, &arguments, &retry).await?;
        if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
            eprintln!("round {round}: the result, {} ms", started.elapsed().as_millis());
            return Ok(result);
        }
        let asked =
            result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
        let names: Vec<&str> = asked.keys().map(String::as_str).collect();
        eprintln!(
            "round {round}: asked for {}, {} ms",
            names.join(", "),
            started.elapsed().as_millis()
        );
        let mut answers = Map::new();
        for (key, request) in &asked {
            answers.insert(key.clone(), answer_input(config, &limiter, key, request).await?);
        }
        retry = Map::new();
        retry.insert("inputResponses".to_owned(), Value::Object(answers));
        if let Some(state) = result.get("requestState") {
            retry.insert("requestState".to_owned(), state.clone());
        }
    }
    bail!("the server still asked for input after {MAX_ROUNDS} rounds; giving up")
}

/// One 2026-07-28 `tools/call`, with the answers and state of the last round in `retry`; its
/// result, or the server's JSON-RPC error as an error.
async fn post(
    http: &reqwest::Client,
    config: &ClientConfig,
    tool: &str,
    arguments: &Value,
    retry: &Map<String, Value>,
) -> anyhow::Result<Value> {
    // Forms only when a person is there to fill them in: never declare what cannot be done.
    let capabilities = match config.approve {
        Approve::Ask(_) => json!({ "sampling": {}, "elicitation": { "form": {} } }),
        Approve::Auto => json!({ "sampling": {} }),
    };
    let mut params = json!({ "name": tool, "arguments": arguments, "_meta": {
        "io.modelcontextprotocol/protocolVersion": mcp::MODERN,
        "io.modelcontextprotocol/clientInfo": { "name": "sse-apps-sampling-client", "version": env!("CARGO_PKG_VERSION") },
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    } });
    if let Some(fields) = params.as_object_mut() {
        fields.extend(retry.clone());
    }
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params });
    let mut request = http
        .post(&config.server)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", mcp::MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", header_value(tool))
        .json(&body);
    if let Some(token) = &config.token {
        request = request.bearer_auth(token);
    }
    let response =
        request.send().await.map_err(|e| e.without_url()).context("cannot reach the server")?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .with_context(|| format!("the server answered {status} without a JSON-RPC response"))?;
    if let Some(error) = answer.get("error") {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("no message");
        let code = error.get("code").and_then(Value::as_i64).unwrap_or_default();
        bail!("the server refused the call ({status}, {code}): {message}");
    }
    answer.get("result").cloned().context("the server's response has no result")
}

/// A tool name as an `Mcp-Name` header: as it is when it can be, else in the spec's Base64
/// sentinel form.
fn header_value(name: &str) -> String {
    use base64::Engine;
    let plain = name.bytes().all(|b| (0x20..0x7f).contains(&b))
        && name.trim() == name
        && !(name.starts_with("=?base64?") && name.ends_with("?="));
    if plain {
        return name.to_owned();
    }
    format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(name))
}

/// The answer to one input request.
async fn answer_input(
    config: &ClientConfig,
    limiter: &governor::DefaultDirectRateLimiter,
    key: &str,
    request: &Value,
) -> anyhow::Result<Value> {
    let params = request.get("params").cloned().unwrap_or_default();
    match request.get("method").and_then(Value::as_str) {
        Some("sampling/createMessage") => {
            let stage = |_: u64, _: &'static str| Box::pin(async {}) as BoxFuture<'_, ()>;
            let started = Instant::now();
            let outcome = answer_sampling(config, limiter, &params, &stage).await;
            eprintln!("{}", outcome.line(&json!(key), started.elapsed()));
            match outcome {
                Outcome::Answered(_) => Ok(outcome.answer(&json!(key))["result"].clone()),
                Outcome::Rejected(_) | Outcome::Failed { .. } => {
                    bail!("the call ends here: MRTR cannot send the server a refusal")
                }
            }
        }
        Some("elicitation/create") => {
            let message = params.get("message").and_then(Value::as_str).unwrap_or_default();
            let schema = params.get("requestedSchema").cloned().unwrap_or_default();
            Ok(config.approve.form(message, &schema).await)
        }
        other => bail!("the server asked for {other:?}, which this client does not answer"),
    }
}
