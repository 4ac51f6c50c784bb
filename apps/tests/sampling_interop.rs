//! Interop with the official MCP TypeScript SDK (npm `@modelcontextprotocol/sdk`, installed under
//! `apps/tests/mcp-interop` by `.ci/run`): an SDK client that declares sampling connects over
//! Streamable HTTP and over the legacy HTTP+SSE transport, lists the tools, calls `summarize`,
//! answers our `sampling/createMessage`, and gets the tool's result.
//!
//! In CI (`CI` set) a missing Node.js or SDK fails the test; elsewhere it prints a notice.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/mock_llm.rs"]
mod mock_llm;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sse_apps::sampling::{SamplingConfig, router};
use sse_core::edge::auth::Token;
use support::spawn_app_on;

fn interop_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp-interop"))
}

/// Whether node and the SDK are here (or, outside CI only, a notice and `false`).
fn sdk_available() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let sdk = interop_dir().join("node_modules/@modelcontextprotocol/sdk/package.json").exists();
    if node && sdk {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have node and the MCP SDK (.ci/run installs them)"
    );
    eprintln!(
        "NOTICE: skipping the MCP SDK interop test: run `npm ci` in apps/tests/mcp-interop (needs Node.js)"
    );
    false
}

async fn sdk_client(transport: &str, url: &str) -> Value {
    let run = tokio::process::Command::new("node")
        .arg("sampling-client.mjs")
        .args([transport, url, "interop-token"])
        .current_dir(interop_dir())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the SDK client finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_client_answers_our_sampling_request_over_both_transports() {
    if !sdk_available() {
        return;
    }
    let addr = "127.0.0.1:0".parse().unwrap();
    let config = SamplingConfig::default();
    let app =
        spawn_app_on(addr, Token::required("interop-token"), move |core| router(core, config))
            .await;
    for (transport, path) in [("streamable", "/sampling/mcp"), ("sse", "/sampling/sse")] {
        let report = sdk_client(transport, &format!("{}{path}", app.base)).await;
        assert_eq!(
            report["tools"],
            serde_json::json!(["summarize", "classify_sentiment", "explain_code"])
        );
        let asked = &report["asked"];
        assert_eq!(asked["messages"][0]["role"], "user", "{transport}");
        assert!(
            asked["messages"][0]["content"]["text"]
                .as_str()
                .unwrap()
                .contains("Text from the SDK.")
        );
        assert_eq!(report["result"]["content"][0]["text"], "SDK summary.", "{transport}");
        assert_eq!(report["result"]["isError"], false);
        if transport == "streamable" {
            assert_eq!(report["protocol"], "2025-11-25");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_sampling_client_answers_an_sdk_servers_sampling_request() {
    use sse_apps::sampling::client::approval::Approve;
    use sse_apps::sampling::client::llm::Provider;
    use sse_apps::sampling::client::{ClientConfig, Transport, run};
    use tokio::io::{AsyncBufReadExt, BufReader};

    if !sdk_available() {
        return;
    }
    let mock = mock_llm::Mock::default();
    let base = format!("{}/v1", mock_llm::mock_server(mock.clone()).await);
    let mut server = tokio::process::Command::new("node")
        .arg("sampling-server.mjs")
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
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(run(config, shutdown.clone()));
    let report = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    shutdown.cancel();
    let report: Value = serde_json::from_str(&report).unwrap();
    let result = &report["result"];
    assert_eq!(result["content"]["text"], "Hello.", "{report}");
    assert_eq!(
        (result["model"].as_str(), result["stopReason"].as_str()),
        (Some("mock-gpt"), Some("maxTokens"))
    );
    let seen = mock.seen.lock().unwrap()[0].clone();
    assert_eq!(
        (seen["model"].as_str(), seen["max_tokens"].as_u64()),
        (Some("mock-gpt"), Some(33)),
        "the hint picked the model"
    );
}
