//! Servers side by side on one host, in one real browser (headless Chromium): browsers scope
//! cookies by host, not by port, so every server on 127.0.0.1, and any other local listener,
//! sees the cookies of all of them.
//!
//! * Two token-protected servers on two ports each keep their own login: opening the second's
//!   link does not log the browser out of the first.
//! * A plain listener on a third port, visited by the same browser, receives both servers'
//!   cookies (the browser sends them) but neither token.
//! * A page that listener serves cannot take a bidi client's name by opening an `EventSource`
//!   to the server's naming streams: the browser sends them (and would have made the server
//!   give the name away before the browser's CORS check threw the answer away), the server
//!   refuses them, and the client keeps its name.
//!
//! The browser comes from `support::browser` (Debian's Chromium; outside CI a missing one skips
//! with a notice).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::Duration;

use browser::{ONE_AT_A_TIME, browser, text_of, until_true, wait_for};
use fantoccini::Client;
use sse_apps::basic::BasicConfig;
use sse_apps::bidi::BidiConfig;
use sse_apps::bidi::client::{ClientConfig, Protocol, analyze};
use sse_core::edge::auth::Token;
use sse_core::testing::port_of;
use support::{TestApp, eventually, spawn_app_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A token-protected test page (`/`, whose script opens the stream `/events`).
async fn protected(token: &'static str) -> TestApp {
    let config = BasicConfig { count: 0, interval: Duration::from_millis(100) };
    spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::required(token), move |core| {
        sse_apps::basic_server(core, config)
    })
    .await
}

/// Opens `base`'s test page with no token in the address: it loads and its stream delivers
/// events only if the browser's cookie for that server still opens it.
async fn still_logged_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/")).await.unwrap();
    let address = client.current_url().await.unwrap();
    assert_eq!(address.as_str(), format!("{base}/"));
    wait_for(client, "#events li:nth-child(2)").await;
    assert_eq!(text_of(client, "#status").await, "connected", "{base}");
}

/// A listener that is not one of ours: it answers every request with a short page, and sends
/// the head of each request it received to the test.
async fn stranger(page: &'static str) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (base, received)
}

/// The value of the cookie `name` in a request head, if it sent one.
fn cookie_in(head: &str, name: &str) -> Option<String> {
    let lines = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("cookie"));
    let pairs = lines.flat_map(|(_, v)| v.split(';')).filter_map(|p| p.trim().split_once('='));
    pairs.into_iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_keep_their_own_logins_and_another_port_receives_no_token() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    let client = &browser.client;
    const TOKEN_A: &str = "token-of-a-3f9e";
    const TOKEN_B: &str = "token-of-b-71c2";
    let (a, b) = (protected(TOKEN_A).await, protected(TOKEN_B).await);

    // Each link logs the browser in to its server (and leaves the address without the token).
    client.goto(&format!("{}/?token={TOKEN_A}", a.base)).await.unwrap();
    still_logged_in(client, &a.base).await;
    client.goto(&format!("{}/?token={TOKEN_B}", b.base)).await.unwrap();
    still_logged_in(client, &b.base).await;
    // B's link did not log the browser out of A, nor the other way round.
    still_logged_in(client, &a.base).await;
    still_logged_in(client, &b.base).await;

    // A plain listener on a third port: the browser sends it the cookies of 127.0.0.1.
    let (elsewhere, mut heads) = stranger("<!doctype html><title>elsewhere</title>").await;
    client.goto(&format!("{elsewhere}/")).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(60), heads.recv()).await.unwrap().unwrap();
    assert!(head.starts_with("GET / "), "{head}");
    for (app, token) in [(&a, TOKEN_A), (&b, TOKEN_B)] {
        let name = format!("sse_apps_token_{}", port_of(&app.base));
        let sent = cookie_in(&head, &name);
        // The browser did send it (which is why its value must not be the token)...
        assert!(sent.is_some(), "the browser sends {name} to any port: {head}");
        // ...and it is the value derived for that server's port, not the token.
        let expected = Token::required(token).on_port(port_of(&app.base)).cookie().unwrap();
        assert_eq!(Some(expected.split_once('=').unwrap().1.to_owned()), sent);
        assert!(!head.contains(token), "a token reached another port: {head}");
    }
    // Whatever else the listener has received by now (a favicon request, say) carried no token.
    while let Ok(head) = heads.try_recv() {
        assert!(!head.contains(TOKEN_A) && !head.contains(TOKEN_B), "{head}");
    }
    // And both servers still know the browser.
    still_logged_in(client, &a.base).await;
    still_logged_in(client, &b.base).await;
    a.stop().await;
    b.stop().await;
}

/// A page on another origin that opens an `EventSource` to each `path` of the server its
/// address names (`?target=http://127.0.0.1:PORT`), asking for the client name `worker`, and
/// notes in `window.outcome` how each one ended.
const TAKER: &str = r#"<!doctype html><title>taker</title><script>
window.outcome = {};
const target = new URLSearchParams(location.search).get("target");
for (const path of ["/events", "/rpc/events"]) {
  const source = new EventSource(`${target}${path}?client_id=worker`);
  source.onopen = () => { window.outcome[path] = "open"; };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) window.outcome[path] ??= "failed";
  };
}
</script>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_port_cannot_take_a_clients_name_with_an_event_source() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(browser) = browser().await else { return };
    let client = &browser.client;
    let config = BidiConfig { timeout: Duration::from_secs(30) };
    let app = spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::open(), move |core| {
        sse_apps::bidi_server(core, config)
    })
    .await;
    let stop = CancellationToken::new();
    let worker = ClientConfig {
        server: app.base.clone(),
        client_id: "worker".into(),
        protocol: Protocol::Compat,
        work: Duration::ZERO,
        token: None,
    };
    tokio::spawn(sse_apps::bidi::client::run(worker, stop.clone()));
    let held = || app.core.sessions.by_name("worker").filter(|s| s.connections() > 0);
    eventually("the worker connects", || held().is_some()).await;
    let session = held().unwrap().id().clone();

    let (elsewhere, mut heads) = stranger(TAKER).await;
    client.goto(&format!("{elsewhere}/?target={}", app.base)).await.unwrap();
    // Both streams ended for good: each request went to the server and came back refused
    // (a failed CORS check ends one the same way, which is why the server must refuse).
    until_true(
        client,
        "both streams failed",
        r#"return window.outcome["/events"] === "failed" && window.outcome["/rpc/events"] === "failed";"#,
    )
    .await;
    let page = heads.recv().await.unwrap();
    assert!(page.starts_with("GET /?target="), "the page came from the other port: {page}");

    // The worker still holds its name and answers what is sent to it.
    assert_eq!(held().map(|s| s.id().clone()), Some(session));
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/trigger", app.base))
        .query(&[("client_id", "worker"), ("message", "still mine")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"], serde_json::json!(analyze("still mine")), "{answer}");
    stop.cancel();
    app.stop().await;
}
