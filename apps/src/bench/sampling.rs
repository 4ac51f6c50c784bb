//! `bench sampling`: MCP tool calls that ask the caller's model, the two ways MCP has to ask,
//! against `sse-apps sampling` (pinned to one core, as every scenario here).
//!
//! * `push` (the handshake era, 2025-11-25): each caller has a session; a `tools/call` is answered
//!   with an SSE stream on which the server's `sampling/createMessage` arrives; the caller POSTs
//!   the completion at once and reads the tool's result off the stream.
//! * `mrtr` (2026-07-28): a `tools/call` is answered with an `InputRequiredResult`; the caller
//!   calls again at once with the completion and the `requestState`, and gets the result.
//!
//! With `--redis URL` it runs two instances sharing that Redis (and a token, from which both
//! derive the key that seals `requestState`), and every call crosses them as a load balancer
//! with no sticky sessions would make it: a push-era session lives on one instance and its answer
//! is POSTed to the other (which forwards it to the owner); an MRTR call's first round goes to one
//! and its retry to the other (which needs nothing from the first but the shared key). Callers
//! alternate which instance comes first.
//!
//! Beside ours, the `limit` target ([`super::targets::limit_sampling`]) serves the MRTR exchange
//! over raw sockets with nothing but the sealed state, to show what the machine can do for the
//! same two rounds with the same load generator (it has no push era: that needs sessions).
//!
//! C callers each call `classify_sentiment` back to back for the duration; a call's time runs
//! from its first byte sent to its result read, so it holds both rounds and the client's (instant)
//! answer. HTTP is reqwest's, the same for both eras, so the load generator's cost is the same on
//! both sides of the comparison.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sse_core::wire::Parser;

use super::conditions::{Conditions, Watch};
use super::{Latencies, Percentiles, server};

/// How the server asks the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Era {
    /// A request down the call's stream, answered by POST (2025-11-25).
    Push,
    /// An `InputRequiredResult`, answered by calling again (2026-07-28).
    Mrtr,
}

/// Which server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplingTarget {
    /// `sse-apps sampling`.
    Ours,
    /// The MRTR exchange over raw sockets, nothing else ([`super::targets::limit_sampling`]).
    Limit,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct SamplingBench {
    /// The server.
    pub target: SamplingTarget,
    /// The era.
    pub era: Era,
    /// Concurrent callers.
    pub callers: usize,
    /// How long they call.
    pub duration: Duration,
    /// Pin the server to core 0 and this process to core 1.
    pub pin: bool,
    /// Two instances sharing this Redis, every call crossing them, instead of one.
    pub redis: Option<String>,
}

/// The token the bench's servers require (two instances must share one: it keys the state).
const TOKEN: &str = "bench";

/// What came out.
#[derive(Clone, Debug)]
pub struct SamplingReport {
    /// The scenario.
    pub bench: SamplingBench,
    /// Tool calls completed.
    pub completed: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Their times.
    pub latency: Percentiles,
    /// Completed calls a second.
    pub per_second: f64,
    /// The server's CPU time over the run, as a share of one core.
    pub cpu_percent: f64,
    /// Whether the server was pinned to one core.
    pub pinned: bool,
    /// What the run ran beside: the machine's steal time, the load generator's CPU.
    pub conditions: Conditions,
}

impl SamplingReport {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "sampling {:>4} {}{}: {} callers for {:?}{}: {} tool calls ({:.0}/s), {} errors, {}, server CPU {:.0}%{}",
            match self.bench.era {
                Era::Push => "push",
                Era::Mrtr => "mrtr",
            },
            match self.bench.target {
                SamplingTarget::Ours => "ours",
                SamplingTarget::Limit => "limit",
            },
            if self.bench.redis.is_some() { " (two instances through Redis)" } else { "" },
            self.bench.callers,
            self.bench.duration,
            if self.pinned { " (server pinned to one core)" } else { "" },
            self.completed,
            self.per_second,
            self.errors,
            self.latency.summary(),
            self.cpu_percent,
            self.conditions.suffix(),
        )
    }
}

/// Runs the scenario on a server of its own.
pub async fn run(bench: SamplingBench) -> anyhow::Result<SamplingReport> {
    anyhow::ensure!(bench.callers > 0, "need at least one caller");
    anyhow::ensure!(
        bench.target == SamplingTarget::Ours || (bench.era == Era::Mrtr && bench.redis.is_none()),
        "the limit baseline serves the mrtr era on one instance only"
    );
    let mut servers = Vec::new();
    let env = [("SSE_APPS_TOKEN", TOKEN)];
    let command: &[&str] = match bench.target {
        SamplingTarget::Ours => &["sampling"],
        SamplingTarget::Limit => &["bench-limit", "sampling"],
    };
    match &bench.redis {
        None => servers.push(server::launch_with_env(command, &env, bench.pin).await?),
        Some(redis) => {
            for _ in 0..2 {
                let args = ["sampling", "--redis", redis];
                servers.push(server::launch_with_env(&args, &env, bench.pin).await?);
            }
        }
    }
    let urls: Vec<String> =
        servers.iter().map(|server| format!("{}/sampling/mcp", server.base)).collect();
    let latencies = Arc::new(Latencies::default());
    let (completed, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut before = Vec::new();
    for server in &mut servers {
        before.push(server.usage().await?);
    }
    let watch = Watch::start();
    let started = Instant::now();
    let callers: Vec<_> = (0..bench.callers)
        .map(|i| {
            // Asked on one instance, answered on the next (the same one when there is one).
            let (url, other) = (urls[i % urls.len()].clone(), urls[(i + 1) % urls.len()].clone());
            let (latencies, completed, errors) =
                (latencies.clone(), completed.clone(), errors.clone());
            let (era, until) = (bench.era, started + bench.duration);
            tokio::spawn(async move {
                let http = bench_client();
                let session = match era {
                    Era::Push => match initialize(&http, &url).await {
                        Ok(session) => Some(session),
                        Err(error) => {
                            eprintln!("initialize failed: {error:#}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                    Era::Mrtr => None,
                };
                let mut batch = Vec::with_capacity(256);
                while Instant::now() < until {
                    let sent = Instant::now();
                    let called = match &session {
                        Some(session) => push_call(&http, (&url, &other), session).await,
                        None => mrtr_call(&http, (&url, &other)).await,
                    };
                    match called {
                        Ok(()) => {
                            batch.push(sent.elapsed().as_micros() as u64);
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            eprintln!("tool call failed: {error:#}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies.record(&batch);
            })
        })
        .collect();
    for caller in callers {
        caller.await?;
    }
    let wall = started.elapsed();
    let mut cpu_percent = 0.0;
    for (server, before) in servers.iter_mut().zip(&before) {
        cpu_percent += server.usage().await?.cpu_percent_since(before, wall);
    }
    let conditions = watch.finish();
    let completed = completed.load(Ordering::Relaxed);
    Ok(SamplingReport {
        bench,
        completed,
        errors: errors.load(Ordering::Relaxed),
        latency: latencies.percentiles(),
        per_second: completed as f64 / wall.as_secs_f64(),
        cpu_percent,
        pinned: servers.iter().all(|server| server.pinned),
        conditions,
    })
}

/// A client that sends the bench's token with every request.
fn bench_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {TOKEN}");
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().expect("a header value"));
    reqwest::Client::builder().default_headers(headers).build().expect("a client")
}

/// The tool call both eras make.
fn call_params() -> Value {
    json!({ "name": "classify_sentiment", "arguments": { "text": "A quick benchmark." } })
}

/// The completion every caller answers with, at once.
fn completion() -> Value {
    json!({ "role": "assistant", "content": { "type": "text", "text": "neutral" }, "model": "bench" })
}

/// A handshake-era session that declares sampling: its id.
async fn initialize(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": { "sampling": {} },
        "clientInfo": { "name": "bench", "version": "1" } } });
    let response = http.post(url).json(&init).send().await?.error_for_status()?;
    let session = response.headers().get("mcp-session-id").context("no MCP-Session-Id")?;
    let session = session.to_str()?.to_owned();
    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    handshake(http, url, &session).json(&note).send().await?.error_for_status()?;
    Ok(session)
}

fn handshake(http: &reqwest::Client, url: &str, session: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
}

/// One push-era call: the request down the call's stream (at `url`, where the session lives),
/// the answer by POST (to `answer_url`), the result.
async fn push_call(
    http: &reqwest::Client,
    (url, answer_url): (&str, &str),
    session: &str,
) -> anyhow::Result<()> {
    let call =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call_params() });
    let response = handshake(http, url, session).json(&call).send().await?.error_for_status()?;
    let mut body = response.bytes_stream();
    let mut parser = Parser::new();
    loop {
        let chunk = body.next().await.context("the call's stream ended early")??;
        for event in parser.feed(&chunk) {
            let message: Value = serde_json::from_str(&event.data)?;
            if message.get("method").and_then(Value::as_str) == Some("sampling/createMessage") {
                let answer =
                    json!({ "jsonrpc": "2.0", "id": message["id"], "result": completion() });
                let posted = handshake(http, answer_url, session).json(&answer).send().await?;
                posted.error_for_status()?;
            } else if message.get("id") == Some(&json!(1)) {
                return check_result(&message);
            }
        }
    }
}

/// One 2026-07-28 call: the `InputRequiredResult` (from `url`), then the retry with the answer
/// (to `retry_url`).
async fn mrtr_call(http: &reqwest::Client, (url, retry_url): (&str, &str)) -> anyhow::Result<()> {
    let first = modern(http, url, call_params()).await?;
    let state = first.pointer("/result/requestState").context("no requestState")?.clone();
    let mut retry = call_params();
    retry["inputResponses"] = json!({ "sample": completion() });
    retry["requestState"] = state;
    check_result(&modern(http, retry_url, retry).await?)
}

async fn modern(http: &reqwest::Client, url: &str, mut params: Value) -> anyhow::Result<Value> {
    params["_meta"] = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": { "sampling": {} } });
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params });
    let response = http
        .post(url)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "classify_sentiment")
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    Ok(response.json().await?)
}

fn check_result(message: &Value) -> anyhow::Result<()> {
    match message.pointer("/result/content/0/text").and_then(Value::as_str) {
        Some("neutral") => Ok(()),
        _ => bail!("not the tool's result: {message}"),
    }
}
