//! Interop with the official MCP TypeScript SDK (npm `@modelcontextprotocol/sdk`, installed under
//! `apps/tests/mcp-interop` by `.ci/run`): an SDK client that declares sampling connects over
//! Streamable HTTP and over the legacy HTTP+SSE transport, lists the tools, calls `summarize`,
//! answers our `sampling/createMessage`, and gets the tool's result.
//!
//! In CI (`CI` set) a missing Node.js or SDK fails the test; elsewhere it prints a notice.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

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
