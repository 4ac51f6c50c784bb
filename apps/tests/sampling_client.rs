//! The sampling client against our sampling server, with mock model servers standing in for the
//! providers' HTTP contracts (OpenAI-compatible Chat Completions and Anthropic Messages, both
//! streaming): a request sent to the client comes back with the mock's completion, its model and
//! stop reason; `max_tokens` is sent; a refused key, a rate limit that passes, and the legacy
//! transport.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sse_apps::sampling::client::approval::Approve;
use sse_apps::sampling::client::llm::Provider;
use sse_apps::sampling::client::{ClientConfig, Transport, run};
use sse_apps::sampling::{SamplingConfig, router};
use support::mock_llm::{Mock, mock_server};
use support::{Stream, spawn_app};
use tokio_util::sync::CancellationToken;

const WATCHDOG: Duration = Duration::from_secs(60);

/// Our sampling server, a sampling client answering for it, and the request sent by hand.
async fn ask_through_client(provider: Provider, transport: Transport) -> Value {
    ask_with_timeout(provider, transport, Duration::from_secs(30)).await
}

async fn ask_with_timeout(
    provider: Provider,
    transport: Transport,
    call_timeout: Duration,
) -> Value {
    let app = spawn_app(|core| router(core, SamplingConfig::default())).await;
    let server = match transport {
        Transport::Streamable => format!("{}/sampling/mcp", app.base),
        Transport::Sse => format!("{}/sampling/sse", app.base),
    };
    let config = ClientConfig {
        server,
        transport,
        token: None,
        provider,
        models: vec!["mock-model".to_owned()],
        default_model: "mock-model".to_owned(),
        approve: Approve::Auto,
        per_minute: 100,
        call_timeout,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(run(config, shutdown.clone()));

    let mut events = Stream::open(&format!("{}/sampling/events", app.base)).await;
    let wait = async {
        loop {
            let event = events.next().await.unwrap();
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let joined = (event.event == "snapshot"
                && !data["clients"].as_array().unwrap().is_empty())
                || event.event == "client_connected";
            if joined {
                return;
            }
        }
    };
    tokio::time::timeout(WATCHDOG, wait).await.expect("the client connected");
    let body = json!({"client": "sse-apps-sampling-client",
        "messages": [{"role": "user", "content": {"type": "text", "text": "Greet me."}}],
        "systemPrompt": "Be brief.", "maxTokens": 42, "temperature": 0.5});
    let http = reqwest::Client::new();
    let sent =
        http.post(format!("{}/sampling/requests", app.base)).json(&body).send().await.unwrap();
    assert_eq!(sent.status(), 202);
    let mut stages = Vec::new();
    let finished = async {
        loop {
            let event = events.next().await.unwrap();
            let data = serde_json::from_str::<Value>(&event.data).unwrap();
            match event.event.as_str() {
                "request_progress" => stages.push(data["state"].as_str().unwrap().to_owned()),
                "request_finished" => return data,
                _ => {}
            }
        }
    };
    let mut outcome = tokio::time::timeout(WATCHDOG, finished).await.expect("the request finished");
    // The client reports its stage: unattended, it goes straight to generating.
    outcome["stages"] = json!(stages);
    shutdown.cancel();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_model_answers_with_max_tokens_sent() {
    let mock = Mock::default();
    let base = format!("{}/v1", mock_server(mock.clone()).await);
    let outcome = ask_through_client(
        Provider::OpenAi { base, key: Some("sk-test".into()) },
        Transport::Streamable,
    )
    .await;
    assert_eq!(outcome["state"], "done", "{outcome}");
    assert_eq!(outcome["stages"], json!(["generating"]));
    let result = &outcome["result"];
    assert_eq!(
        (result["content"]["text"].as_str(), result["model"].as_str()),
        (Some("Hello."), Some("mock-gpt"))
    );
    assert_eq!(result["stopReason"], "maxTokens", "length maps to maxTokens");
    let seen = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(seen["max_tokens"], 42, "max_tokens, which llama.cpp reads: {seen}");
    assert_eq!(seen["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(seen["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_model_answers_over_the_legacy_transport() {
    let mock = Mock::default();
    let base = mock_server(mock.clone()).await;
    let outcome = ask_through_client(
        Provider::Anthropic { base, key: Some("sk-ant-test".into()) },
        Transport::Sse,
    )
    .await;
    assert_eq!(outcome["state"], "done", "{outcome}");
    assert_eq!(outcome["result"]["content"]["text"], "Bonjour");
    assert_eq!(outcome["result"]["model"], "mock-claude");
    assert_eq!(outcome["result"]["stopReason"], "endTurn");
    let seen = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(
        (seen["max_tokens"].as_u64(), seen["system"].as_str()),
        (Some(42), Some("Be brief."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_and_a_passing_rate_limit() {
    let mock = Mock::default();
    *mock.failures.lock().unwrap() = vec![401];
    let base = mock_server(mock.clone()).await;
    let outcome = ask_through_client(
        Provider::Anthropic { base: base.clone(), key: Some("wrong".into()) },
        Transport::Streamable,
    )
    .await;
    assert_eq!(outcome["state"], "failed", "{outcome}");
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused the API key") && !message.contains("wrong"), "{message}");

    *mock.failures.lock().unwrap() = vec![429];
    let outcome = ask_through_client(
        Provider::Anthropic { base, key: Some("k".into()) },
        Transport::Streamable,
    )
    .await;
    assert_eq!(outcome["state"], "done", "a 429 is retried: {outcome}");

    let missing = Provider::Anthropic { base: "http://127.0.0.1:9".into(), key: None };
    let outcome = ask_through_client(missing, Transport::Streamable).await;
    assert!(
        outcome["error"]["message"].as_str().unwrap().contains("ANTHROPIC_API_KEY"),
        "{outcome}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_are_retried_then_reported_and_a_stall_times_out() {
    let mock = Mock::default();
    let base = format!("{}/v1", mock_server(mock.clone()).await);
    let openai = || Provider::OpenAi { base: base.clone(), key: Some("k".into()) };

    *mock.failures.lock().unwrap() = vec![500, 503];
    let outcome = ask_through_client(openai(), Transport::Streamable).await;
    assert_eq!(outcome["state"], "done", "two 5xx are retried: {outcome}");

    // Three in a row exhaust the retries (async-openai keeps its own backoff for OpenAI, so the
    // count is ours on the Anthropic path).
    *mock.failures.lock().unwrap() = vec![500, 500, 500];
    let anthropic = Provider::Anthropic {
        base: base.trim_end_matches("/v1").to_owned(),
        key: Some("k".into()),
    };
    let outcome = ask_through_client(anthropic, Transport::Streamable).await;
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert!(
        outcome["error"]["message"].as_str().unwrap().contains("provider failed (500)"),
        "{outcome}"
    );

    *mock.failures.lock().unwrap() = vec![0];
    let outcome =
        ask_with_timeout(openai(), Transport::Streamable, Duration::from_millis(300)).await;
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert!(
        outcome["error"]["message"].as_str().unwrap().contains("did not answer within"),
        "{outcome}"
    );
}
