//! The binary away from its checkout, as `cargo install` leaves it: the pages' scripts and
//! styles are in the binary, served with validators, and a browser runs them.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::process::Stdio;

use browser::{ONE_AT_A_TIME, browser, text_of, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_sse-apps");

/// The checkout the binary was built in.
fn checkout() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_binary_with_its_checkout_out_of_reach_serves_working_pages() {
    if !std::path::Path::new("/usr/bin/bwrap").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must have bubblewrap");
        eprintln!(
            "NOTICE: skipping: bubblewrap hides the checkout here (apt-get install bubblewrap)"
        );
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    // The binary alone in a directory of its own, run from there, in a mount namespace where
    // the checkout is an empty directory.
    let installed = tempfile::tempdir().unwrap();
    let binary = installed.path().join("sse-apps");
    std::fs::copy(BIN, &binary).unwrap();
    let mut command = tokio::process::Command::new("bwrap");
    command
        // --die-with-parent: the server goes with the bwrap that `kill_on_drop` kills.
        .args(["--die-with-parent", "--dev-bind", "/", "/", "--tmpfs"])
        .arg(checkout())
        .arg("--chdir")
        .arg(installed.path())
        .arg("--")
        .arg(&binary)
        .args(["basic-server", "--addr", "127.0.0.1:0"])
        .env_remove("SSE_APPS_STATIC_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let (_server, base) = support::started(command).await;

    let client = &browser.client;
    client.goto(&format!("{base}/")).await.unwrap();
    // The events list fills only if sse-test.js loaded and ran.
    wait_for(client, "#events li:nth-child(2)").await;
    assert_eq!(text_of(client, "#status").await, "connected");
    let styled = client
        .execute("return document.styleSheets.length > 0 && document.styleSheets[0].cssRules.length > 0;", vec![])
        .await
        .unwrap();
    assert_eq!(styled, serde_json::Value::Bool(true), "style.css was not applied");

    // Served with a validator: the same ETag again is 304 with no body.
    let http = reqwest::Client::new();
    let script = http.get(format!("{base}/static/sse-test.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-type"], "text/javascript");
    assert_eq!(script.headers()["cache-control"], "no-cache");
    let etag = script.headers()["etag"].clone();
    assert!(script.text().await.unwrap().contains("new EventSource"));
    let again = http
        .get(format!("{base}/static/sse-test.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let head = http.head(format!("{base}/static/style.css")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "text/css");
    assert_eq!(
        head.headers()["content-length"],
        std::fs::metadata(checkout().join("static/style.css")).unwrap().len().to_string().as_str()
    );
}

#[tokio::test]
async fn the_static_override_serves_a_directory_as_it_is_now() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sse-test.js"), "// edited\n").unwrap();
    let mut command = support::binary();
    command
        .args(["basic-server", "--addr", "127.0.0.1:0"])
        .env("SSE_APPS_STATIC_DIR", dir.path())
        .stderr(Stdio::null());
    let (_server, base) = support::started(command).await;
    let body =
        reqwest::get(format!("{base}/static/sse-test.js")).await.unwrap().text().await.unwrap();
    assert_eq!(body, "// edited\n");
    let missing = reqwest::get(format!("{base}/static/style.css")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let error: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "not_found");
}
