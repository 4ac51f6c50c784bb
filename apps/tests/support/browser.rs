//! A real browser for page tests: headless Chromium through chromedriver, one at a time, and
//! waits on what the page shows.
//!
//! Needs Debian's `chromium` and `chromium-driver`, which `.ci/run` installs. In CI (`CI` set) a
//! missing browser fails the test; elsewhere [`browser`] prints a notice and the test passes.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session, and the chromedriver behind it (killed on drop).
pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: TempDir,
}

/// The browser's profile directory, removed on drop with the Chromium that used it: killing
/// chromedriver leaves its Chromium running (re-parented to init), and a test must not leave
/// processes behind. Every process of that Chromium names the directory on its command line.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", "--"])
            .arg(format!("--user-data-dir={}", self.0.display()))
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One browser at a time: two Chromiums on two cores only slow each other down.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the browser, or says why it cannot (then the caller skips, outside CI only).
pub async fn browser() -> Option<Browser> {
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
        // One size for every page, so the screenshots in docs/ match each other.
        "--window-size=1200,900",
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

/// Saves what the page shows as `<name>.png`, and checks it is a PNG of the window's size.
///
/// The files go to `docs/screenshots/` when `SSE_APPS_SCREENSHOTS=docs` is set (the one command
/// that remakes the README's pictures is
/// `SSE_APPS_SCREENSHOTS=docs cargo test -p sse-apps --test browser`), and to the test's own
/// scratch directory otherwise, so a plain test run never changes the checkout.
#[allow(dead_code)] // not every test binary including this file takes pictures
pub async fn screenshot(client: &Client, name: &str) {
    client.execute("window.scrollTo(0, 0); return true;", vec![]).await.expect("scrolled up");
    let png = client.screenshot().await.expect("a screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    // The IHDR chunk comes first: width and height, big-endian, after its length and type.
    let width = u32::from_be_bytes(png[16..20].try_into().expect("width"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("height"));
    assert!(width >= 800 && height >= 500, "{name}: {width}x{height}");
    let dir = match std::env::var("SSE_APPS_SCREENSHOTS").as_deref() {
        Ok("docs") => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"),
        _ => std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    };
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is written");
}

pub async fn wait_for(client: &Client, css: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("the page never showed {css}: {e}"));
}

#[allow(dead_code, reason = "used by the page tests that read a text")]
pub async fn text_of(client: &Client, css: &str) -> String {
    client.find(Locator::Css(css)).await.expect("element").text().await.expect("text")
}

/// Runs `script` in the page until it returns `true` (the watchdog fails the test otherwise).
#[allow(dead_code, reason = "used by the page tests that wait on a script")]
pub async fn until_true(client: &Client, what: &str, script: &str) {
    let wait = async {
        while client.execute(script, vec![]).await.expect("script runs") != json!(true) {
            // The page's state has no event this side can await: poll it, as fantoccini's own
            // waits do.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("the page never showed {what}"));
}

/// The exec page in a browser, on a server with a token (the page gets it from the link), or
/// `None` with a notice (outside CI) when bubblewrap or the browser is missing.
#[allow(dead_code, reason = "used by the page tests of exec")]
pub async fn exec_page() -> Option<(Browser, crate::support::TestApp, tempfile::TempDir)> {
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut config = sse_apps::exec::ExecConfig::checked(data.path().to_owned());
    // A page driven key by key is slower than a person: its runs get minutes, not 30 s.
    (config.timeout, config.max_timeout) = (Duration::from_secs(300), Duration::from_secs(300));
    if let Err(why) = &config.sandbox {
        assert!(std::env::var_os("CI").is_none(), "CI must have bubblewrap: {why}");
        eprintln!("NOTICE: skipping an exec browser test: {why}");
        return None;
    }
    let browser = browser().await?;
    let app = crate::support::spawn_app_on(
        "127.0.0.1:0".parse().expect("addr"),
        sse_core::edge::auth::Token::required("t0k"),
        |core| sse_apps::exec::router(core, config).expect("exec starts"),
    )
    .await;
    browser.client.goto(&format!("{}/exec?token=t0k", app.base)).await.expect("page loads");
    Some((browser, app, data))
}
