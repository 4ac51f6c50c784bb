//! The sampling client against our sampling server, with mock model servers standing in for the
//! providers' HTTP contracts (OpenAI-compatible Chat Completions and Anthropic Messages, both
//! streaming), all over real HTTP: a request sent to the client comes back with the mock's
//! completion, its model and stop reason; `max_tokens` is sent; a refused key, an unknown model
//! and a forbidden one are named as such after one request; a 429 is tried again once after its
//! `Retry-After` in either form, and one asking too long a wait is reported at once; a failing
//! provider sees at most the client's own tries (one retry layer, not two); and the binary prints
//! one line per request. Counting the mock's requests, never timing, is what shows the retries.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/mock_llm.rs"]
mod mock_llm;
mod support;

use std::time::{Duration, SystemTime};

use mock_llm::{Mock, mock_server};
use serde_json::{Value, json};
use sse_apps::sampling::client::approval::Approve;
use sse_apps::sampling::client::llm::Provider;
use sse_apps::sampling::client::retry::RETRIES;
use sse_apps::sampling::client::{ClientConfig, Transport, run};
use sse_apps::sampling::{SamplingConfig, router};
use support::{Stream, TestApp, spawn_app};
use tokio::io::AsyncBufReadExt;

const WATCHDOG: Duration = Duration::from_secs(60);

/// Our sampling server, with its console's event stream open.
struct Scene {
    app: TestApp,
    events: Stream,
}

impl Scene {
    async fn start() -> Scene {
        let app = spawn_app(|core| router(core, SamplingConfig::default())).await;
        let events = Stream::open(&format!("{}/sampling/events", app.base)).await;
        Scene { app, events }
    }

    fn endpoint(&self, transport: Transport) -> String {
        match transport {
            Transport::Streamable => format!("{}/sampling/mcp", self.app.base),
            Transport::Sse => format!("{}/sampling/sse", self.app.base),
        }
    }

    /// Runs a sampling client in this process (until the scene's server stops), and waits
    /// until it has connected.
    async fn with_client(provider: Provider, transport: Transport, timeout: Duration) -> Scene {
        let mut scene = Scene::start().await;
        let config = ClientConfig {
            server: scene.endpoint(transport),
            transport,
            token: None,
            provider,
            models: vec!["mock-model".to_owned()],
            default_model: "mock-model".to_owned(),
            approve: Approve::Auto,
            per_minute: 100,
            call_timeout: timeout,
        };
        tokio::spawn(run(config, scene.app.shutdown.child_token()));
        scene.connected().await;
        scene
    }

    /// Waits until a client has initialized with the server.
    async fn connected(&mut self) {
        let wait = async {
            loop {
                let event = self.events.next().await.unwrap();
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
    }

    /// Sends the client a request by hand; returns how it finished, with the stages the client
    /// reported on the way.
    async fn ask(&mut self) -> Value {
        let body = json!({"client": "sse-apps-sampling-client",
            "messages": [{"role": "user", "content": {"type": "text", "text": "Greet me."}}],
            "systemPrompt": "Be brief.", "maxTokens": 42, "temperature": 0.5});
        let sent = reqwest::Client::new()
            .post(format!("{}/sampling/requests", self.app.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 202);
        let mut stages = Vec::new();
        let finished = async {
            loop {
                let event = self.events.next().await.unwrap();
                let data = serde_json::from_str::<Value>(&event.data).unwrap();
                match event.event.as_str() {
                    "request_progress" => stages.push(data["state"].as_str().unwrap().to_owned()),
                    "request_finished" => return data,
                    _ => {}
                }
            }
        };
        let mut outcome =
            tokio::time::timeout(WATCHDOG, finished).await.expect("the request finished");
        outcome["stages"] = json!(stages);
        outcome
    }
}

fn error_of(outcome: &Value) -> &str {
    outcome["error"]["message"].as_str().unwrap_or_else(|| panic!("an error: {outcome}"))
}

async fn openai_mock() -> (Mock, Provider) {
    let mock = Mock::default();
    let base = format!("{}/v1", mock_server(mock.clone()).await);
    (mock, Provider::OpenAi { base, key: Some("sk-test-secret".into()) })
}

async fn anthropic_mock() -> (Mock, Provider) {
    let mock = Mock::default();
    let base = mock_server(mock.clone()).await;
    (mock, Provider::Anthropic { base, key: Some("sk-ant-test-secret".into()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_model_answers_with_max_tokens_sent() {
    let (mock, provider) = openai_mock().await;
    let mut scene = Scene::with_client(provider, Transport::Streamable, WATCHDOG).await;
    let outcome = scene.ask().await;
    assert_eq!(outcome["state"], "done", "{outcome}");
    // The client reports its stage: unattended, it goes straight to generating.
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
    assert_eq!(seen["stream_options"]["include_usage"], true, "the token counts are asked for");
    assert_eq!(mock.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_model_answers_over_the_legacy_transport() {
    let (mock, provider) = anthropic_mock().await;
    let mut scene = Scene::with_client(provider, Transport::Sse, WATCHDOG).await;
    let outcome = scene.ask().await;
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

/// 401, 403 and 404 will not change by asking again: one request each, and an error that names
/// the variable or the model to fix, never the key itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_a_forbidden_and_an_unknown_model_are_named_after_one_request() {
    let (mock, provider) = openai_mock().await;
    let mut scene = Scene::with_client(provider, Transport::Streamable, WATCHDOG).await;
    for (status, names) in [
        (401, "the provider refused the API key (401): check OPENAI_API_KEY"),
        (
            403,
            "refused this request to model mock-model (403): check that the key in OPENAI_API_KEY",
        ),
        (404, "does not know model mock-model (404): choose another with --model"),
    ] {
        let before = mock.requests();
        mock.fail(&[(status, None)]);
        let outcome = scene.ask().await;
        assert_eq!(outcome["state"], "failed", "{outcome}");
        let message = error_of(&outcome);
        assert!(message.contains(names) && !message.contains("secret"), "{status}: {message}");
        assert_eq!(mock.requests() - before, 1, "{status} is not tried again");
    }

    let (mock, provider) = anthropic_mock().await;
    let mut scene = Scene::with_client(provider, Transport::Streamable, WATCHDOG).await;
    mock.fail(&[(401, None)]);
    let outcome = scene.ask().await;
    let message = error_of(&outcome);
    assert!(message.contains("refused the API key (401): check ANTHROPIC_API_KEY"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert_eq!(mock.requests(), 1);

    let missing = Provider::Anthropic { base: "http://127.0.0.1:9".into(), key: None };
    let mut scene = Scene::with_client(missing, Transport::Streamable, WATCHDOG).await;
    let outcome = scene.ask().await;
    assert!(error_of(&outcome).contains("no API key: set ANTHROPIC_API_KEY"), "{outcome}");
}

/// A 429 is tried again once, after the wait its `Retry-After` names as delta-seconds or as an
/// HTTP-date, and then answered: two requests in all. The same header asking for ten minutes is
/// reported at once (one request), which shows each form is read off the real response on both
/// providers' paths: unread, it would have been retried after the client's own backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_tried_again_after_its_retry_after_in_either_form() {
    let (mock, provider) = openai_mock().await;
    let mut scene = Scene::with_client(provider, Transport::Streamable, WATCHDOG).await;
    let ahead = |seconds| httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(seconds));

    mock.fail(&[(429, Some("1"))]);
    let outcome = scene.ask().await;
    assert_eq!(outcome["state"], "done", "{outcome}");
    assert_eq!(mock.requests(), 2, "one 429, one answer");

    mock.fail(&[(429, Some(&ahead(1)))]);
    let outcome = scene.ask().await;
    assert_eq!(outcome["state"], "done", "{outcome}");
    assert_eq!(mock.requests(), 4, "one 429 with a date, one answer");

    for too_long in ["600".to_owned(), ahead(600)] {
        let before = mock.requests();
        mock.fail(&[(429, Some(&too_long)), (429, None), (429, None)]);
        let outcome = scene.ask().await;
        assert_eq!(outcome["state"], "failed", "{outcome}");
        assert!(error_of(&outcome).contains("answered 429 and asks to wait"), "{outcome}");
        assert_eq!(mock.requests() - before, 1, "Retry-After: {too_long}");
        mock.fail(&[]);
    }

    let (mock, provider) = anthropic_mock().await;
    let mut scene = Scene::with_client(provider, Transport::Streamable, WATCHDOG).await;
    mock.fail(&[(429, Some(&ahead(600))), (429, None), (429, None)]);
    let outcome = scene.ask().await;
    assert!(error_of(&outcome).contains("answered 429 and asks to wait"), "{outcome}");
    assert_eq!(mock.requests(), 1);
    mock.fail(&[(429, Some("1"))]);
    assert_eq!(scene.ask().await["state"], "done");
    assert_eq!(mock.requests(), 3);
}

/// One retry layer: a provider failing with 5xx sees the client's 1 + RETRIES (3) requests, not
/// the 12 that async-openai's own retries under the client's made; a passing 503 is retried; a
/// stalled call times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_gets_the_clients_tries_only_and_a_stall_times_out() {
    let tries = 1 + RETRIES as usize;
    assert_eq!(tries, 3);
    for (mock, provider) in [openai_mock().await, anthropic_mock().await] {
        let mut scene = Scene::with_client(provider, Transport::Streamable, WATCHDOG).await;
        mock.fail(&[(503, Some("0"))]);
        assert_eq!(scene.ask().await["state"], "done", "a passing 503 is retried");
        assert_eq!(mock.requests(), 2);

        mock.fail(&[(500, Some("0")); 12]);
        let outcome = scene.ask().await;
        assert_eq!(outcome["state"], "failed", "{outcome}");
        assert!(error_of(&outcome).contains("the provider failed (500)"), "{outcome}");
        assert_eq!(mock.requests() - 2, tries, "the client's tries, and no more");
    }

    let (mock, provider) = openai_mock().await;
    let mut scene =
        Scene::with_client(provider, Transport::Streamable, Duration::from_millis(300)).await;
    mock.fail(&[(0, None)]);
    let outcome = scene.ask().await;
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert!(error_of(&outcome).contains("did not answer within"), "{outcome}");
}

/// The binary, as a person runs it: Anthropic's default model is asked, and stdout gets one
/// line per request: model, tokens, stop reason in words and time when answered; the cause,
/// naming the key's variable, when the key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_one_line_per_request() {
    let mock = Mock::default();
    let base = mock_server(mock.clone()).await;
    let mut scene = Scene::start().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-apps"))
        .args(["sampling-client", "--provider", "anthropic", "--approve", "auto", "--server"])
        .arg(scene.endpoint(Transport::Streamable))
        .env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "sk-ant-test-secret")
        .env_remove("SSE_APPS_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line_starting = async |prefix: &str| {
        let find = async {
            loop {
                let line = stdout.next_line().await.unwrap().expect("the client is running");
                if line.starts_with(prefix) {
                    return line;
                }
            }
        };
        tokio::time::timeout(WATCHDOG, find).await.expect("the line")
    };
    scene.connected().await;

    assert_eq!(scene.ask().await["state"], "done");
    let line = line_starting("answered req ").await;
    let (what, ms) = line.rsplit_once(", ").unwrap();
    assert!(what.ends_with(": mock-claude, 7 in / 3 out tokens, stop: endTurn"), "{line}");
    assert!(ms.strip_suffix(" ms").is_some_and(|n| n.parse::<u64>().is_ok()), "{line}");
    assert_eq!(mock.seen.lock().unwrap()[0]["model"], "claude-haiku-4-5", "the default model");

    mock.fail(&[(401, None)]);
    assert_eq!(scene.ask().await["state"], "failed");
    let line = line_starting("failed req ").await;
    assert!(
        line.contains("failed: the provider refused the API key (401): check ANTHROPIC_API_KEY, "),
        "{line}"
    );
    assert!(!line.contains("secret"), "{line}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_calls_tools_itself_answering_each_round_at_its_checkpoints() {
    use sse_apps::sampling::client::approval::Lines;
    use sse_apps::sampling::client::call::call;

    let (mock, provider) = openai_mock().await;
    let app = spawn_app(|core| router(core, SamplingConfig::default())).await;
    let (typed, lines) = tokio::sync::mpsc::unbounded_channel();
    let config = ClientConfig {
        server: format!("{}/sampling/mcp", app.base),
        transport: Transport::Streamable,
        token: None,
        provider,
        models: vec!["mock-model".to_owned()],
        default_model: "mock-model".to_owned(),
        approve: Approve::Ask(std::sync::Arc::new(Lines::from_channel(lines))),
        per_minute: 100,
        call_timeout: WATCHDOG,
    };
    // summarize: the length form (answer it: "short"), then the request and the completion,
    // both approved with Enter.
    for line in ["", "short", "", ""] {
        typed.send(line.to_owned()).unwrap();
    }
    let result = call(&config, "summarize", json!({"text": "Rounds, not streams."})).await.unwrap();
    assert_eq!(result["isError"], false, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(!text.is_empty());
    let seen = mock.seen.lock().unwrap().last().cloned().unwrap();
    let system = seen["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
    assert!(system.contains("one sentence"), "the length answered shaped the prompt: {seen}");
    assert!(seen.to_string().contains("Rounds, not streams."));

    // A rejected request ends the call, since MRTR cannot carry a refusal.
    typed.send("r".to_owned()).unwrap();
    let refused = call(&config, "classify_sentiment", json!({"text": "t"})).await.unwrap_err();
    assert!(refused.to_string().contains("refusal"), "{refused}");

    // Unattended, the client declares no forms: no question, the default length.
    let unattended = ClientConfig { approve: Approve::Auto, ..config };
    let result = call(&unattended, "summarize", json!({"text": "t"})).await.unwrap();
    assert_eq!(result["isError"], false);
    let seen = mock.seen.lock().unwrap().last().cloned().unwrap();
    assert!(seen.to_string().contains("at most three sentences"), "{seen}");
    let result = call(&unattended, "explain_code", json!({"code": "x = 1"})).await.unwrap();
    assert_eq!(result["isError"], false);
}
