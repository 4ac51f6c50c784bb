//! The documents stay true: every endpoint a use-case document lists answers on the running app.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::time::Duration;

use axum::Router;
use serde_json::Value;
use sse_apps::basic::BasicConfig;
use sse_apps::bidi::BidiConfig;
use sse_core::Core;
use support::spawn_app;

/// The `(method, path)` rows of the markdown table under `heading`.
fn endpoints(document: &str, heading: &str) -> Vec<(String, String)> {
    let section = document.split(heading).nth(1).unwrap_or_else(|| panic!("no {heading:?}"));
    let rows =
        section.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|'));
    let endpoints: Vec<(String, String)> = rows
        .skip(2) // header and separator
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].trim_matches('`').to_owned())
        })
        .collect();
    assert!(!endpoints.is_empty(), "no endpoints under {heading:?}");
    endpoints
}

/// Calls each endpoint on the app and checks it is routed: no 404 `not_found`, no 405.
async fn check_all(build: impl FnOnce(Core) -> Router, list: Vec<(String, String)>) {
    let app = spawn_app(build).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    for (method, path) in list {
        let path = path
            .replace("=X", "=docs-client")
            .replace("=M", "=hello")
            .replace("{room}", "docs")
            .replace("{id}", "1")
            .replace("{step}", "0");
        let url = format!("{}{path}", app.base);
        let request = match method.as_str() {
            "GET" => http.get(&url),
            "POST" => http.post(&url).json(&serde_json::json!({})),
            "DELETE" => http.delete(&url),
            other => panic!("unexpected method {other}"),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert_ne!(status, 405, "{method} {path}: method not allowed");
        if status == 404 {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(body["error"]["code"], "not_found", "{method} {path}: no such route");
        }
    }
}

#[tokio::test]
async fn every_learning_program_endpoint_in_the_use_case_document_answers() {
    let document = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../use-cases/LEARNING_PROGRAMS.md"
    ))
    .unwrap();
    let basic = BasicConfig { count: 1, interval: Duration::from_millis(1) };
    check_all(
        move |core| sse_apps::basic_server(core, basic),
        endpoints(&document, "### basic-server endpoints"),
    )
    .await;
    let bidi = BidiConfig { timeout: Duration::from_millis(50) };
    check_all(
        move |core| sse_apps::bidi_server(core, bidi),
        endpoints(&document, "### bidi-server endpoints"),
    )
    .await;
}

#[tokio::test]
async fn every_chat_endpoint_in_the_use_case_document_answers() {
    let document = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../use-cases/CHAT_SYSTEM.md"
    ))
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = sse_apps::chat::ChatConfig::new(data.path().to_owned());
    let list = endpoints(&document, "## Endpoints");
    assert_eq!(list.len(), 7, "{list:?}");
    // The room exists once someone joined it, so the room paths have something to answer.
    let app = spawn_app(move |core| sse_apps::chat::router(core, &config).unwrap()).await;
    let joined = reqwest::Client::new()
        .post(format!("{}/chat/rooms/docs/join", app.base))
        .json(&serde_json::json!({"nick": "doc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 201);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    for (method, path) in list {
        let url = format!("{}{}", app.base, path.replace("{room}", "docs"));
        let request = if method == "GET" {
            http.get(&url)
        } else {
            http.post(&url).json(&serde_json::json!({}))
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(status != 405 && status != 404, "{method} {path} answered {status}");
    }
}

#[tokio::test]
async fn every_dashboard_endpoint_in_the_use_case_document_answers() {
    let document = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../use-cases/LIVE_DASHBOARD.md"
    ))
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = sse_apps::dashboard::DashboardConfig::new(data.path().to_owned());
    check_all(
        move |core| sse_apps::dashboard::router(core, config).unwrap(),
        endpoints(&document, "## Endpoints"),
    )
    .await;
}

#[tokio::test]
async fn every_exec_endpoint_in_the_use_case_document_answers() {
    let document = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../use-cases/REMOTE_EXECUTION.md"
    ))
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    // Routing is what is checked: no sandbox is needed (runs would answer 503).
    let config = sse_apps::exec::ExecConfig::new(data.path().to_owned(), Err("not needed".into()));
    check_all(
        move |core| sse_apps::exec::router(core, config).unwrap(),
        endpoints(&document, "## Endpoints"),
    )
    .await;
}

#[tokio::test]
async fn every_sampling_endpoint_in_the_use_case_document_answers() {
    let document = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../use-cases/LLM_SAMPLING.md"
    ))
    .unwrap();
    let config = sse_apps::sampling::SamplingConfig::default();
    check_all(
        move |core| sse_apps::sampling::router(core, config),
        endpoints(&document, "## Endpoints"),
    )
    .await;
}
