//! Interop with the official MCP Python SDK (`mcp` 2.3, pinned in
//! `apps/tests/mcp-interop-python/requirements.txt`, installed into `.venv` there by `.ci/run`):
//! its client, declaring sampling and elicitation, connects to `/sampling/mcp` in each of its
//! modes (`auto`: it probes `server/discover` and stays modern; `legacy`: the `initialize`
//! handshake; pinned to `2026-07-28`), lists the tools and calls each one. In the handshake era
//! our questions go down the stream; in the modern era they come back as `InputRequiredResult`s
//! and the SDK retries. Either way its callbacks answer them and every tool completes.
//!
//! The other way round, `sampling-client call` drives a tool of the SDK's own 2026-07-28 server
//! (`mrtr_server.py`), which asks for a completion by an `InputRequiredResult`.
//!
//! In CI (`CI` set) a missing venv fails the test; elsewhere it prints a notice.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/mock_llm.rs"]
mod mock_llm;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use sse_apps::sampling::{SamplingConfig, router};
use sse_core::edge::auth::Token;
use support::spawn_app_on;

fn interop_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp-interop-python"))
}

fn python() -> PathBuf {
    interop_dir().join(".venv/bin/python")
}

/// Whether the venv with the SDK is here (or, outside CI only, a notice and `false`).
fn sdk_available() -> bool {
    if interop_dir().join(".venv/bin/python").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have the MCP Python SDK (.ci/run makes apps/tests/mcp-interop-python/.venv)"
    );
    eprintln!(
        "NOTICE: skipping the MCP Python SDK interop test: in apps/tests/mcp-interop-python run \
         `python3 -m venv .venv && .venv/bin/pip install -r requirements.txt`"
    );
    false
}

async fn sdk_client(mode: &str, url: &str) -> Value {
    let run = tokio::process::Command::new(python())
        .arg("sampling_client.py")
        .args([mode, url, "interop-token"])
        .current_dir(interop_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the SDK client finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{mode}: {stdout}{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{mode}: {e}: {stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_completes_every_tool_in_each_of_its_modes() {
    if !sdk_available() {
        return;
    }
    let addr = "127.0.0.1:0".parse().unwrap();
    let config = SamplingConfig::default();
    let app =
        spawn_app_on(addr, Token::required("interop-token"), move |core| router(core, config))
            .await;
    let url = format!("{}/sampling/mcp", app.base);
    for (mode, protocol) in
        [("auto", "2026-07-28"), ("legacy", "2025-11-25"), ("2026-07-28", "2026-07-28")]
    {
        let report = sdk_client(mode, &url).await;
        assert_eq!(report["protocol"], protocol, "{mode}: {report}");
        assert_eq!(report["tools"], json!(["summarize", "classify_sentiment", "explain_code"]));
        // summarize asked for a length first (the SDK declares form elicitation), and the
        // answer ("short") shaped the sampling request.
        let questions = report["questions"].as_array().unwrap();
        assert_eq!(questions.len(), 1, "{mode}: {report}");
        assert_eq!(questions[0]["schema"]["required"], json!(["length"]));
        let asked = report["asked"].as_array().unwrap();
        assert_eq!(asked.len(), 3, "{mode}: one sampling request per tool: {report}");
        assert!(asked[0]["system"].as_str().unwrap().contains("one sentence"), "{mode}");
        assert!(asked[0]["text"].as_str().unwrap().contains("Text from the Python SDK."));
        assert!(asked[2]["text"].as_str().unwrap().contains("print('hi')"));
        for (i, tool) in ["summarize", "classify_sentiment", "explain_code"].iter().enumerate() {
            let result = &report["results"][tool];
            assert_eq!(result["isError"], false, "{mode} {tool}: {report}");
            assert_eq!(result["text"], format!("Python answer {}.", i + 1), "{mode} {tool}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_calls_a_tool_of_the_python_sdks_modern_server_by_rounds() {
    use sse_apps::sampling::client::approval::Approve;
    use sse_apps::sampling::client::call::call;
    use sse_apps::sampling::client::llm::Provider;
    use sse_apps::sampling::client::{ClientConfig, Transport};
    use tokio::io::{AsyncBufReadExt, BufReader};

    if !sdk_available() {
        return;
    }
    let mock = mock_llm::Mock::default();
    let base = format!("{}/v1", mock_llm::mock_server(mock.clone()).await);
    let mut server = tokio::process::Command::new(python())
        .arg("mrtr_server.py")
        .current_dir(interop_dir())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let port = first.strip_prefix("listening ").expect("the SDK server's port");
    let config = ClientConfig {
        server: format!("http://127.0.0.1:{port}/mcp"),
        transport: Transport::Streamable,
        token: None,
        provider: Provider::OpenAi { base, key: Some("sk-test".into()) },
        models: vec!["mock-gpt".into()],
        default_model: "mock-gpt".into(),
        approve: Approve::Auto,
        per_minute: 10,
        call_timeout: Duration::from_secs(30),
    };
    let result = call(&config, "greet", json!({"name": "Ada"})).await.unwrap();
    assert_eq!(result["content"][0]["text"], "The model says: Hello.", "{result}");
    let seen = mock.seen.lock().unwrap()[0].clone();
    assert!(seen.to_string().contains("Greet Ada warmly."), "{seen}");
    assert_eq!(seen["max_tokens"], 33);
}
