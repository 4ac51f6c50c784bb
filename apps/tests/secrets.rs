//! Tokens and API keys never reach the logs, at any level: the server runs with `RUST_LOG=trace`
//! while every way of presenting its token is used (header, cookie, `?token=` link, a stream
//! opened with it) and a chat member's token is issued and used; neither appears anywhere in its
//! output. The sampling client, at `RUST_LOG=trace` too, answers a request with a model it calls
//! with its API key; the key reaches the model's server and nothing the client prints.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/mock_llm.rs"]
mod mock_llm;
mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sse_core::testing::Stream;
use tokio::io::AsyncReadExt;

const TOKEN: &str = "s3cret-server-token-4f1b2c";
/// A watchdog for steps that must finish; not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn no_token_appears_in_the_logs_even_at_trace_level() {
    let data = tempfile::tempdir().unwrap();
    let mut command = support::binary();
    command
        .args(["--addr", "127.0.0.1:0", "--token", TOKEN, "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped());
    let (mut server, base) = support::started(command).await;
    let mut stderr = server.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let http = reqwest::Client::new();
    // The token as a link (which sets the cookie), as a cookie, and as a bearer header.
    let link = http.get(format!("{base}/?token={TOKEN}")).send().await.unwrap();
    assert_eq!(link.status(), 200);
    let port = reqwest::Url::parse(&base).unwrap().port().unwrap();
    let cookie = sse_core::edge::auth::Token::required(TOKEN).on_port(port).cookie().unwrap();
    let page = http.get(format!("{base}/chat")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // A member joins (its own token comes back) (the room exists from then on).
    let joined: Value = http
        .post(format!("{base}/chat/rooms/secrets/join"))
        .bearer_auth(TOKEN)
        .json(&json!({ "nick": "Ada" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let member = joined["token"].as_str().unwrap().to_owned();
    // The member's stream, its token in the URL (the chat's own `?token=`), the server's in
    // the cookie.
    let url = format!("{base}/chat/rooms/secrets/events?token={member}");
    let mut stream = Stream::open_with(http.get(&url).header("cookie", &cookie)).await;
    // The member posts with its token.
    let posted = http
        .post(format!("{base}/chat/rooms/secrets/messages"))
        .header("authorization", format!("Bearer {member}"))
        .header("cookie", &cookie)
        .json(&json!({ "text": "hello", "client_msg_id": "1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201, "{}", posted.text().await.unwrap());
    loop {
        let event = tokio::time::timeout(WATCHDOG, stream.next()).await.unwrap().unwrap();
        if event.event == "message" {
            break;
        }
    }
    // A wrong token is refused, and logged as refused, not echoed.
    let wrong = http.get(format!("{base}/chat?token={TOKEN}x")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    drop(stream);
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let log = tokio::time::timeout(WATCHDOG, log).await.unwrap().unwrap();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "the log ran at trace level");
    assert!(!log.contains(TOKEN), "the server token is in the log");
    let cookie_value = cookie.split_once('=').unwrap().1;
    assert!(!log.contains(cookie_value), "the server's cookie is in the log");
    assert!(!log.contains(&member), "a member token is in the log");
}

const API_KEY: &str = "sk-test-never-logged-9c41e7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_api_key_appears_in_the_sampling_clients_output_even_at_trace_level() {
    let mock = mock_llm::Mock::default();
    let model = format!("{}/v1", mock_llm::mock_server(mock.clone()).await);
    let data = tempfile::tempdir().unwrap();
    let mut command = support::binary();
    command
        .args(["sampling", "--addr", "127.0.0.1:0", "--token", TOKEN, "--data-dir"])
        .arg(data.path());
    let (_server, base) = support::started(command).await;
    let http = reqwest::Client::new();
    let events = http.get(format!("{base}/sampling/events")).bearer_auth(TOKEN);
    let mut events = Stream::open_with(events).await;

    let mut client = support::binary();
    client
        .args(["sampling-client", "--approve", "auto", "--token", TOKEN, "--server"])
        .arg(format!("{base}/sampling/mcp"))
        .env("OPENAI_API_KEY", API_KEY)
        .env("OPENAI_BASE_URL", &model)
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped());
    let mut client = client.spawn().unwrap();
    let (mut out, mut err) = (client.stdout.take().unwrap(), client.stderr.take().unwrap());
    let printed = tokio::spawn(async move {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        let _ = tokio::join!(out.read_to_string(&mut stdout), err.read_to_string(&mut stderr));
        stdout + &stderr
    });

    // Once the client is connected, a request sent to it by hand is answered by the model.
    let connected = async {
        loop {
            let event = events.next().await.unwrap();
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let clients = data["clients"].as_array().map_or(0, Vec::len);
            if event.event == "client_connected" || clients > 0 {
                return;
            }
        }
    };
    tokio::time::timeout(WATCHDOG, connected).await.expect("the client connected");
    let body = json!({"client": "sse-apps-sampling-client", "maxTokens": 10,
        "messages": [{"role": "user", "content": {"type": "text", "text": "Greet me."}}]});
    let sent = http.post(format!("{base}/sampling/requests")).bearer_auth(TOKEN).json(&body);
    assert_eq!(sent.send().await.unwrap().status(), 202);
    let finished = async {
        loop {
            let event = events.next().await.unwrap();
            if event.event == "request_finished" {
                return serde_json::from_str::<Value>(&event.data).unwrap();
            }
        }
    };
    let finished = tokio::time::timeout(WATCHDOG, finished).await.expect("the request finished");
    assert_eq!(finished["state"], "done", "{finished}");
    assert_eq!(
        mock.keys.lock().unwrap().as_slice(),
        [format!("Bearer {API_KEY}")],
        "the key was used"
    );

    client.start_kill().unwrap();
    client.wait().await.unwrap();
    let printed = tokio::time::timeout(WATCHDOG, printed).await.unwrap().unwrap();
    assert!(
        printed.contains("TRACE") || printed.contains("DEBUG"),
        "the client ran at trace level"
    );
    assert!(!printed.contains(API_KEY), "the API key is in the client's output");
    assert!(!printed.contains(TOKEN), "the server token is in the client's output");
}
