//! The chat room over HTTP: exchange, resume, persistence, idempotency, limits, bad input.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/chat.rs"]
mod chat_requests;
mod support;

use std::path::Path;

use chat_requests::{chat_message, join, say};
use serde_json::{Value, json};
use sse_apps::chat::{self, ChatConfig};
use support::{Stream, TestApp, spawn_app};

/// The chat app with its real limits.
async fn chat_app(data: &Path) -> TestApp {
    let config = ChatConfig::new(data.to_owned());
    spawn_app(move |core| chat::router(core, &config).unwrap()).await
}

/// The chat app without the per-member rate limit, for tests that post a lot on purpose.
async fn unlimited_chat_app(data: &Path) -> TestApp {
    let config = ChatConfig { posts_per_second: 0, ..ChatConfig::new(data.to_owned()) };
    spawn_app(move |core| chat::router(core, &config).unwrap()).await
}

async fn open(
    app: &TestApp,
    room: &str,
    token: Option<&str>,
    last_event_id: Option<u64>,
) -> Stream {
    let mut url = format!("{}/chat/rooms/{room}/events", app.base);
    if let Some(token) = token {
        url.push_str(&format!("?token={token}"));
    }
    let mut request = reqwest::Client::new().get(url);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    Stream::open_with(request).await
}

async fn history(app: &TestApp, room: &str, query: &str) -> Vec<Value> {
    let url = format!("{}/chat/rooms/{room}/messages{query}", app.base);
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn two_members_exchange_messages_and_see_each_other_online() {
    let data = tempfile::tempdir().unwrap();
    let app = chat_app(data.path()).await;
    let ada = join(&app.base, "general", "Ada").await;
    let bob = join(&app.base, "general", "Bob").await;
    let mut ada_stream = open(&app, "general", Some(&ada), None).await;
    let presence: Value = serde_json::from_str(&ada_stream.next().await.unwrap().data).unwrap();
    assert_eq!(presence["online"], json!(["Ada"]));
    let mut bob_stream = open(&app, "general", Some(&bob), None).await;
    let joined = ada_stream.next().await.unwrap();
    assert_eq!(joined.event, "presence");
    assert_eq!(
        serde_json::from_str::<Value>(&joined.data).unwrap(),
        json!({"joined": "Bob", "count": 2})
    );

    assert_eq!(say(&app.base, "general", &ada, "hi Bob", "a1").await.0, 201);
    let seen_by_bob = chat_message(&mut bob_stream).await;
    assert_eq!(
        (seen_by_bob["nick"].as_str(), seen_by_bob["text"].as_str()),
        (Some("Ada"), Some("hi Bob"))
    );
    assert_eq!(say(&app.base, "general", &bob, "hi Ada", "b1").await.0, 201);
    assert_eq!(chat_message(&mut ada_stream).await["text"], "hi Bob", "her own message first");
    assert_eq!(chat_message(&mut ada_stream).await["text"], "hi Ada");

    drop(bob_stream);
    let left = loop {
        let event = ada_stream.next().await.unwrap();
        if event.event == "presence" {
            break serde_json::from_str::<Value>(&event.data).unwrap();
        }
    };
    assert_eq!(left, json!({"left": "Bob", "count": 1}));

    let rooms: Value =
        reqwest::get(format!("{}/chat/rooms", app.base)).await.unwrap().json().await.unwrap();
    assert_eq!(rooms, json!({"rooms": [{"name": "general", "online": 1}]}));
}

#[tokio::test]
async fn a_member_cut_off_for_a_hundred_messages_resumes_with_none_missing_or_doubled() {
    let data = tempfile::tempdir().unwrap();
    let app = unlimited_chat_app(data.path()).await;
    let ada = join(&app.base, "room", "Ada").await;
    let bob = join(&app.base, "room", "Bob").await;
    let mut stream = open(&app, "room", Some(&bob), None).await;
    assert_eq!(say(&app.base, "room", &ada, "before the cut", "m0").await.0, 201);
    let last_seen = chat_message(&mut stream).await["id"].as_u64().unwrap();
    drop(stream);

    for i in 1..=100 {
        assert_eq!(
            say(&app.base, "room", &ada, &format!("while away {i}"), &format!("m{i}")).await.0,
            201
        );
    }
    let mut resumed = open(&app, "room", Some(&bob), Some(last_seen)).await;
    let mut ids = Vec::new();
    for i in 1..=100 {
        let message = chat_message(&mut resumed).await;
        assert_eq!(message["text"], format!("while away {i}"));
        ids.push(message["id"].as_u64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > last_seen);
    // Live messages follow, and nothing replayed comes again.
    assert_eq!(say(&app.base, "room", &ada, "after", "m101").await.0, 201);
    let next = chat_message(&mut resumed).await;
    assert_eq!(next["text"], "after");
    assert!(next["id"].as_u64().unwrap() > *ids.last().unwrap());
}

#[tokio::test]
async fn a_stranger_id_gets_resync_and_viewers_need_no_token() {
    let data = tempfile::tempdir().unwrap();
    let app = chat_app(data.path()).await;
    join(&app.base, "room", "Ada").await;
    let request = reqwest::Client::new()
        .get(format!("{}/chat/rooms/room/events", app.base))
        .header("last-event-id", "junk");
    let mut viewer = Stream::open_with(request).await;
    assert_eq!(viewer.next().await.unwrap().event, "presence");
    assert_eq!(viewer.next().await.unwrap().event, "resync");
}

#[tokio::test]
async fn history_survives_a_restart_and_pages_backwards() {
    let data = tempfile::tempdir().unwrap();
    let app = unlimited_chat_app(data.path()).await;
    let ada = join(&app.base, "archive", "Ada").await;
    for i in 0..120 {
        assert_eq!(
            say(&app.base, "archive", &ada, &format!("n{i}"), &format!("k{i}")).await.0,
            201
        );
    }
    app.stop().await;

    let app = chat_app(data.path()).await;
    let newest = history(&app, "archive", "?limit=50").await;
    assert_eq!(newest.len(), 50);
    assert_eq!(
        (newest[0]["text"].as_str(), newest[49]["text"].as_str()),
        (Some("n70"), Some("n119"))
    );
    let before = newest[0]["id"].as_u64().unwrap();
    let earlier = history(&app, "archive", &format!("?before={before}&limit=100")).await;
    assert_eq!(earlier.len(), 70);
    assert_eq!(
        (earlier[0]["text"].as_str(), earlier[69]["text"].as_str()),
        (Some("n0"), Some("n69"))
    );
    // The token still holds the nick after the restart, and ids keep growing.
    let (status, message) = say(&app.base, "archive", &ada, "after restart", "k-after").await;
    assert_eq!(status, 201);
    assert!(message["id"].as_u64().unwrap() > newest[49]["id"].as_u64().unwrap());
}

#[tokio::test]
async fn a_retried_post_stores_one_message() {
    let data = tempfile::tempdir().unwrap();
    let app = chat_app(data.path()).await;
    let ada = join(&app.base, "room", "Ada").await;
    let (first_status, first) = say(&app.base, "room", &ada, "once", "same-id").await;
    let (again_status, again) = say(&app.base, "room", &ada, "once", "same-id").await;
    assert_eq!((first_status, again_status), (201, 200));
    assert_eq!(first, again);
    assert_eq!(history(&app, "room", "").await.len(), 1);
}

#[tokio::test]
async fn limits_and_bad_input_get_clear_errors() {
    let data = tempfile::tempdir().unwrap();
    let app = chat_app(data.path()).await;
    let ada = join(&app.base, "room", "Ada").await;
    let mut stream = open(&app, "room", Some(&ada), None).await;
    stream.next().await.unwrap();
    let code = |body: &Value| body["error"]["code"].as_str().unwrap_or("").to_owned();

    assert_eq!(say(&app.base, "room", &ada, &"x".repeat(1000), "max").await.0, 201);
    let (status, body) = say(&app.base, "room", &ada, &"x".repeat(1001), "over").await;
    assert_eq!((status, code(&body).as_str()), (400, "message_too_long"));
    let (status, body) = say(&app.base, "room", &ada, "   ", "blank").await;
    assert_eq!((status, code(&body).as_str()), (400, "empty_message"));
    let (status, body) = say(&app.base, "room", &ada, "bell\u{7}", "ctl").await;
    assert_eq!((status, code(&body).as_str()), (400, "control_characters"));
    let (status, body) = say(&app.base, "room", "not-a-token", "hi", "tok").await;
    assert_eq!((status, code(&body).as_str()), (401, "invalid_member_token"));

    let http = reqwest::Client::new();
    let taken = http
        .post(format!("{}/chat/rooms/room/join", app.base))
        .json(&json!({"nick": "ADA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 409, "Ada is online; nicknames ignore case");
    let bad_nick = http
        .post(format!("{}/chat/rooms/room/join", app.base))
        .json(&json!({"nick": "<script>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_nick.status(), 400);
    let bad_room = http
        .post(format!("{}/chat/rooms/No%20Such/join", app.base))
        .json(&json!({"nick": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_room.status(), 400);
    let unknown = reqwest::get(format!("{}/chat/rooms/never-made/events", app.base)).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let invalid_utf8 = http
        .post(format!("{}/chat/rooms/room/messages", app.base))
        .bearer_auth(&ada)
        .header("content-type", "application/json")
        .body(b"{\"text\":\"\xff\",\"client_msg_id\":\"u\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(invalid_utf8.status(), 400);
    let bad_limit =
        reqwest::get(format!("{}/chat/rooms/room/messages?limit=0", app.base)).await.unwrap();
    assert_eq!(bad_limit.status(), 400);
}

#[tokio::test]
async fn a_flood_is_rate_limited_with_retry_after() {
    let data = tempfile::tempdir().unwrap();
    let app = chat_app(data.path()).await;
    let ada = join(&app.base, "room", "Ada").await;
    // Sent all at once, so the limit (10/s, bursts of 20) sees them together however slowly
    // each one is committed.
    let http = reqwest::Client::new();
    let posts = (0..40).map(|i| {
        let request = http
            .post(format!("{}/chat/rooms/room/messages", app.base))
            .bearer_auth(&ada)
            .json(&json!({ "text": format!("flood {i}"), "client_msg_id": format!("f{i}") }));
        async move { request.send().await.unwrap() }
    });
    let responses = futures_util::future::join_all(posts).await;
    let accepted = responses.iter().filter(|r| r.status() == 201).count();
    let limited: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    assert!(!limited.is_empty(), "40 posts at once are limited");
    assert!(accepted >= 20, "the burst of 20 passes ({accepted} accepted)");
    assert_eq!(accepted + limited.len(), 40, "every post is either stored or limited");
    for response in limited {
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_delays_nobody_and_learns_it_missed_messages() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let data = tempfile::tempdir().unwrap();
    let app = unlimited_chat_app(data.path()).await;
    let ada = join(&app.base, "busy", "Ada").await;
    // A reader that reads its response headers and then nothing more.
    let mut stalled = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!("GET /chat/rooms/busy/events HTTP/1.0\r\nHost: {}\r\n\r\n", app.addr);
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 1024];
    let n = stalled.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.0 200"));
    let mut active = open(&app, "busy", None, None).await;
    assert_eq!(active.next().await.unwrap().event, "presence");

    // Far more than the stalled reader's socket (4 MiB at most here) and its 1,024-frame buffer.
    const MESSAGES: usize = 6000;
    let text = "x".repeat(1000);
    let reading = tokio::spawn(async move {
        let mut texts = 0;
        while texts < MESSAGES {
            assert_eq!(chat_message(&mut active).await["text"].as_str().map(str::len), Some(1000));
            texts += 1;
        }
        texts
    });
    let posters: Vec<_> = (0..8)
        .map(|p| {
            let (base, ada, text) = (app.base.clone(), ada.clone(), text.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in (p..MESSAGES).step_by(8) {
                    let body = json!({ "text": text, "client_msg_id": format!("s{i}") });
                    let url = format!("{base}/chat/rooms/busy/messages");
                    let response =
                        http.post(url).bearer_auth(&ada).json(&body).send().await.unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        })
        .collect();
    for poster in posters {
        poster.await.unwrap();
    }
    // The active reader got every message while the other one stalled.
    assert_eq!(reading.await.unwrap(), MESSAGES);

    // The stalled reader was not buffered without bound: when it reads at last, it finds a
    // resync where frames were dropped for it.
    let mut parser = sse_core::wire::Parser::new();
    let head_end = first[..n].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut events = parser.feed(&first[head_end..n]);
    let mut buffer = vec![0u8; 64 * 1024];
    while !events.iter().any(|e| e.event == "resync") {
        let n = stalled.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the stream ended without a resync");
        events.extend(parser.feed(&buffer[..n]));
    }
    let resync = events.iter().find(|e| e.event == "resync").unwrap();
    assert!(resync.data.contains("lagged"), "{}", resync.data);
}
