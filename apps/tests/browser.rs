//! The SSE test page in a real browser (headless Chromium through chromedriver): it shows events,
//! survives a server restart, and resumes with Last-Event-ID, with no gap and no duplicate.
//!
//! Needs Debian's `chromium` and `chromium-driver`, which `.ci/run` installs. In CI (`CI` set) a
//! missing browser fails the test; elsewhere the test prints a notice and passes.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sse_apps::basic::BasicConfig;
use sse_core::edge::auth::Token;
use support::spawn_app_on;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session, and the chromedriver behind it (killed on drop).
struct Browser {
    client: Client,
    _driver: Child,
    _profile: TempDir,
}

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the browser, or says why it cannot (then the caller skips, outside CI only).
async fn browser() -> Option<Browser> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {missing:?} (.ci/run installs them)"
        );
        eprintln!(
            "NOTICE: skipping the browser test: {missing:?} not installed (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    // chromedriver prints a line once it listens.
    let mut out = tokio::io::BufReader::new(driver.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
            .await
            .expect("chromedriver output");
        assert!(read > 0, "chromedriver exited");
        if line.contains("started successfully") {
            break;
        }
    }
    tokio::spawn(async move {
        let mut sink = String::new();
        while tokio::io::AsyncBufReadExt::read_line(&mut out, &mut sink).await.unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    let profile =
        std::env::temp_dir().join(format!("sse-apps-chromium-{}", uuid::Uuid::new_v4().simple()));
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");
    Some(Browser { client, _driver: driver, _profile: TempDir(profile) })
}

/// The ids of the events the page lists, in order.
async fn listed_ids(client: &Client) -> Vec<u64> {
    let ids = client
        .execute(
            "return [...document.querySelectorAll('#events li')].map(li => li.dataset.id);",
            vec![],
        )
        .await
        .expect("script runs");
    ids.as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().and_then(|s| s.parse().ok()).expect("numeric id"))
        .collect()
}

async fn wait_for(client: &Client, css: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("the page never showed {css}: {e}"));
}

async fn text_of(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.expect("element").text().await.expect("text")
}

fn contiguous_from_one(ids: &[u64]) -> bool {
    ids.iter().enumerate().all(|(i, id)| *id == i as u64 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_page_streams_survives_a_restart_and_resumes() {
    let Some(browser) = browser().await else {
        return;
    };
    let client = &browser.client;
    let config = BasicConfig { count: 0, interval: Duration::from_millis(150) };
    let app = spawn_app_on("127.0.0.1:0".parse().expect("addr"), Token::open(), move |core| {
        sse_apps::basic_server(core, config)
    })
    .await;
    let addr: SocketAddr = app.addr;

    client.goto(&format!("http://{addr}/")).await.expect("page loads");
    wait_for(client, "#events li:nth-child(3)").await;
    assert_eq!(text_of(client, "#status").await, "connected");
    let first_event = text_of(client, "#events li:first-child").await;
    assert!(first_event.contains("[id 1] Event 1 at "), "{first_event}");

    // Restart the server: the page notices, the browser reconnects with Last-Event-ID.
    app.stop().await;
    wait_for(client, "#log li[data-kind=\"error\"]").await;
    let before = listed_ids(client).await;
    let last = *before.last().expect("some events");
    let app =
        spawn_app_on(addr, Token::open(), move |core| sse_apps::basic_server(core, config)).await;
    wait_for(client, "#log li[data-kind=\"resume\"]").await;
    let resumed = text_of(client, "#log li[data-kind=\"resume\"]").await;
    assert!(resumed.contains(&format!("server resumed after Last-Event-ID {last}")), "{resumed}");
    wait_for(client, &format!("#events li[data-id=\"{}\"]", last + 3)).await;
    let after = listed_ids(client).await;
    assert!(contiguous_from_one(&after), "a gap or a duplicate across the restart: {after:?}");

    // Disconnect, then Connect: a new EventSource resumes through the lastEventId parameter.
    client.find(Locator::Css("#disconnect")).await.expect("button").click().await.expect("click");
    assert_eq!(text_of(client, "#status").await, "disconnected");
    let stopped_at = *listed_ids(client).await.last().expect("events");
    client.find(Locator::Css("#connect")).await.expect("button").click().await.expect("click");
    wait_for(client, &format!("#events li[data-id=\"{}\"]", stopped_at + 2)).await;
    let ids = listed_ids(client).await;
    assert!(contiguous_from_one(&ids), "a gap or a duplicate across Disconnect/Connect: {ids:?}");

    // Clear empties both lists.
    client.find(Locator::Css("#clear")).await.expect("button").click().await.expect("click");
    let counts: Value = client
        .execute("return [document.querySelectorAll('#events li').length, document.querySelectorAll('#log li').length];", vec![])
        .await
        .expect("script runs");
    assert!(counts[0].as_u64().expect("count") <= 1, "events after Clear: {counts}");

    browser.client.close().await.expect("browser closes");
    app.stop().await;
}
