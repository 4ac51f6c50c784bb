//! The bidirectional server and client: the Go original's wire format, matched by request id.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/bidi.rs"]
mod bidi_requests;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use bidi_requests::trigger;
use bytes::Bytes;
use serde_json::{Value, json};
use sse_apps::bidi::BidiConfig;
use sse_apps::bidi::client::{ClientConfig, Protocol, analyze};
use sse_core::edge::auth::Token;
use support::{Stream, TestApp, eventually, spawn_app, spawn_app_on};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn bidi_app(timeout: Duration) -> TestApp {
    spawn_app(move |core| sse_apps::bidi_server(core, BidiConfig { timeout })).await
}

/// Starts our `bidi-client` and waits until the server has its session.
async fn start_client(app: &TestApp, client_id: &str, protocol: Protocol) -> CancellationToken {
    let stop = CancellationToken::new();
    let config = ClientConfig {
        server: app.base.clone(),
        client_id: client_id.into(),
        protocol,
        work: Duration::ZERO,
        token: None,
    };
    tokio::spawn(sse_apps::bidi::client::run(config, stop.clone()));
    eventually("the client connects", || {
        app.core.sessions.by_name(client_id).is_some_and(|s| s.connections() > 0)
    })
    .await;
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_round_trips_through_the_client_in_both_wire_formats() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let _compat = start_client(&app, "go-style", Protocol::Compat).await;
    let _native = start_client(&app, "json-rpc", Protocol::Native).await;
    let awkward = "quote \" backslash \\ newline \n tab \t unicode é 😀 </script> \u{2028}";
    for client in ["go-style", "json-rpc"] {
        let (status, body) = trigger(&app.base, client, awkward).await;
        assert_eq!(status, 200, "{client}: {body}");
        assert_eq!(body["result"], analyze(awkward), "{client}");
        assert!(body["id"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_triggers_to_one_client_each_get_their_own_answer() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let _client = start_client(&app, "busy", Protocol::Compat).await;
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let base = app.base.clone();
            tokio::spawn(async move {
                (i, trigger(&base, "busy", &format!("message number {i}")).await)
            })
        })
        .collect();
    for call in calls {
        let (i, (status, body)) = call.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["result"], analyze(&format!("message number {i}")));
    }
}

/// A hand-driven compat client: the test reads the requests and decides the answers.
async fn manual_client(app: &TestApp, client_id: &str) -> Stream {
    let mut stream = Stream::open(&format!("{}/events?client_id={client_id}", app.base)).await;
    let hello: Value = serde_json::from_str(&stream.next().await.unwrap().data).unwrap();
    assert_eq!(hello, json!({"type": "client_id", "id": client_id}));
    stream
}

async fn answer(base: &str, client_id: &str, id: &str, result: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/response"))
        .header("client-id", client_id)
        .json(&json!({"id": id, "result": result}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_answer_with_an_unknown_id_is_refused_and_never_reaches_a_later_trigger() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let mut client = manual_client(&app, "m").await;
    let (status, body) = answer(&app.base, "m", "no-such-request", "stale answer").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_request")));

    let waiting = tokio::spawn(trigger_owned(app.base.clone(), "m", "fresh"));
    let request: Value = serde_json::from_str(&client.next().await.unwrap().data).unwrap();
    assert_eq!(
        (request["method"].as_str(), request["message"].as_str()),
        (Some("analyze"), Some("fresh"))
    );
    let id = request["id"].as_str().unwrap();
    // Accepted with an empty 200, as the original answers, so a client that closes the body
    // unread keeps its connection.
    let accepted = reqwest::Client::new()
        .post(format!("{}/response", app.base))
        .header("client-id", "m")
        .json(&json!({"id": id, "result": "the real answer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(accepted.headers()["content-length"], "0");
    assert!(accepted.bytes().await.unwrap().is_empty());
    let (status, body) = waiting.await.unwrap();
    assert_eq!(
        (status, body["result"].as_str(), body["id"].as_str()),
        (200, Some("the real answer"), Some(id))
    );
    // The same answer again: already answered.
    assert_eq!(answer(&app.base, "m", id, "again").await.0, 409);
}

async fn trigger_owned(
    base: String,
    client_id: &'static str,
    message: &'static str,
) -> (u16, Value) {
    trigger(&base, client_id, message).await
}

#[tokio::test]
async fn trigger_errors_are_json_with_their_own_status() {
    let app = bidi_app(Duration::from_millis(100)).await;
    let (status, body) = trigger(&app.base, "nobody", "hi").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_client")));
    let missing = reqwest::get(format!("{}/trigger?client_id=x", app.base)).await.unwrap();
    assert_eq!(missing.status(), 400);
    let mut silent = manual_client(&app, "silent").await;
    let (status, body) = trigger(&app.base, "silent", "anyone there?").await;
    assert_eq!((status, body["error"]["code"].as_str()), (504, Some("client_timeout")));
    // The request did reach the client; its late answer is refused with 410.
    let request: Value = serde_json::from_str(&silent.next().await.unwrap().data).unwrap();
    let (status, _) = answer(&app.base, "silent", request["id"].as_str().unwrap(), "late").await;
    assert_eq!(status, 410);
    // POST /trigger works like GET.
    let posted = reqwest::Client::new()
        .post(format!("{}/trigger?client_id=nobody&message=x", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 404);
}

#[tokio::test]
async fn bad_answers_get_json_errors() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let _client = manual_client(&app, "b").await;
    let http = reqwest::Client::new();
    let url = format!("{}/response", app.base);
    let no_header = http.post(&url).json(&json!({"id": "1", "result": "x"})).send().await.unwrap();
    assert_eq!(no_header.status(), 400);
    let unknown_client = http
        .post(&url)
        .header("client-id", "ghost")
        .json(&json!({"id": "1", "result": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_client.status(), 404);
    let not_json = http.post(&url).header("client-id", "b").body("id=1").send().await.unwrap();
    assert_eq!(not_json.status(), 415);
    let wrong_shape = http
        .post(&url)
        .header("client-id", "b")
        .json(&json!({"result": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_shape.status(), 400);
    let body: Value = wrong_shape.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_body");
    // A result holding a key serde_json reads as an instruction would reach the caller as
    // something else. Sent as text: a `json!` map would put the key first.
    let reserved = http
        .post(&url)
        .header("client-id", "b")
        .header("content-type", "application/json")
        .body(r#"{"id":"1","result":{"text":"x","$serde_json::private::RawValue":"1"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reserved.status(), 400);
    let body: Value = reserved.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reserved_key");
}

/// Error answers a client may close unread stay small whatever they echo, so they arrive with
/// their headers and the client's connection stays reusable.
#[tokio::test]
async fn error_answers_stay_small_whatever_they_echo() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let long = "x".repeat(5000);
    let answers = [
        http.get(format!("{}/trigger?client_id={long}&message=hi", app.base)),
        http.post(format!("{}/response", app.base))
            .header("client-id", long.as_str())
            .json(&json!({"id": "1", "result": "x"})),
        http.get(format!("{}/{long}", app.base)),
    ];
    for request in answers {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404);
        let body = response.bytes().await.unwrap();
        // The message is cut to 256 bytes; the code and the JSON around it add a few dozen.
        assert!(body.len() < 350, "{} bytes: {}", body.len(), String::from_utf8_lossy(&body));
        let body: Value = serde_json::from_slice(&body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.ends_with('…') && message.contains("xxx"), "{message}");
    }
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_does_not_break_the_first() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let mut first = manual_client(&app, "twin").await;
    let mut second = manual_client(&app, "twin").await;
    let waiting = tokio::spawn(trigger_owned(app.base.clone(), "twin", "to both"));
    let seen_by_first: Value = serde_json::from_str(&first.next().await.unwrap().data).unwrap();
    let seen_by_second: Value = serde_json::from_str(&second.next().await.unwrap().data).unwrap();
    assert_eq!(seen_by_first, seen_by_second);
    let id = seen_by_first["id"].as_str().unwrap();
    assert_eq!(answer(&app.base, "twin", id, "first wins").await.0, 200);
    assert_eq!(answer(&app.base, "twin", id, "second").await.0, 409);
    assert_eq!(waiting.await.unwrap().1["result"], "first wins");

    drop(second);
    let waiting = tokio::spawn(trigger_owned(app.base.clone(), "twin", "still there?"));
    let request: Value = serde_json::from_str(&first.next().await.unwrap().data).unwrap();
    assert_eq!(request["message"], "still there?");
    assert_eq!(answer(&app.base, "twin", request["id"].as_str().unwrap(), "yes").await.0, 200);
    assert_eq!(waiting.await.unwrap().1["result"], "yes");
}

#[tokio::test]
async fn client_ids_are_escaped_in_the_greeting() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let id = "a\"b\\c";
    let url = reqwest::Url::parse_with_params(&format!("{}/events", app.base), [("client_id", id)])
        .unwrap();
    let mut stream = Stream::open(url.as_str()).await;
    let hello: Value =
        serde_json::from_str(&stream.next().await.unwrap().data).expect("valid JSON");
    assert_eq!(hello["id"], id);
}

/// A server that behaves like the Go original: no ids, no keep-alives, single-line `data:`, the
/// greeting with its odd spacing, 200 for every answer. The test pushes requests through it.
#[derive(Clone, Default)]
struct Original {
    connections: Arc<Mutex<Vec<mpsc::UnboundedSender<String>>>>,
    answers: Arc<Mutex<Option<mpsc::UnboundedSender<Value>>>>,
}

#[derive(serde::Deserialize)]
struct ClientIdQuery {
    client_id: String,
}

async fn original_events(
    State(original): State<Original>,
    Query(query): Query<ClientIdQuery>,
) -> axum::response::Response {
    let (send, receive) = mpsc::unbounded_channel::<String>();
    let greeting = format!("data: {{\"type\":\"client_id\",\"id\": \"{}\"}}\n\n", query.client_id);
    send.send(greeting).unwrap();
    original.connections.lock().unwrap().push(send);
    let body = futures_util::stream::unfold(receive, |mut receive| async move {
        let frame = receive.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(frame)), receive))
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap()
}

async fn original_response(State(original): State<Original>, body: Bytes) -> &'static str {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(answers) = original.answers.lock().unwrap().as_ref() {
        let _ = answers.send(value);
    }
    ""
}

#[tokio::test]
async fn our_client_works_against_a_server_like_the_original() {
    let original = Original::default();
    let (answers, mut received) = mpsc::unbounded_channel();
    *original.answers.lock().unwrap() = Some(answers);
    let app = Router::new()
        .route("/events", get(original_events))
        .route("/response", post(original_response))
        .with_state(original.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let stop = CancellationToken::new();
    let config = ClientConfig {
        server: base,
        client_id: "demo_client".into(),
        protocol: Protocol::Compat,
        work: Duration::ZERO,
        token: None,
    };
    tokio::spawn(sse_apps::bidi::client::run(config, stop.clone()));

    let send_request = |id: &str, message: &str| {
        let frame =
            format!("data: {}\n\n", json!({"id": id, "method": "analyze", "message": message}));
        loop {
            // The newest connection is the live one.
            let connections = original.connections.lock().unwrap();
            if let Some(connection) = connections.last()
                && connection.send(frame.clone()).is_ok()
            {
                return;
            }
            drop(connections);
            std::thread::yield_now();
        }
    };
    eventually("the client connects", || !original.connections.lock().unwrap().is_empty()).await;
    send_request("req_1", "hello original");
    assert_eq!(
        received.recv().await.unwrap(),
        json!({"id": "req_1", "result": analyze("hello original")})
    );

    // The original server drops the stream (its clients must reconnect on their own).
    original.connections.lock().unwrap().clear();
    eventually("the client connects", || !original.connections.lock().unwrap().is_empty()).await;
    send_request("req_2", "after a reconnect");
    assert_eq!(
        received.recv().await.unwrap(),
        json!({"id": "req_2", "result": analyze("after a reconnect")})
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_token_serves_only_clients_that_send_it() {
    let config = BidiConfig { timeout: Duration::from_secs(30) };
    let app = spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::required("tok"), move |core| {
        sse_apps::bidi_server(core, config)
    })
    .await;
    let stop = CancellationToken::new();
    for (client_id, protocol) in
        [("with-token", Protocol::Compat), ("native-token", Protocol::Native)]
    {
        let config = ClientConfig {
            server: app.base.clone(),
            client_id: client_id.into(),
            protocol,
            work: Duration::ZERO,
            token: Some("tok".into()),
        };
        tokio::spawn(sse_apps::bidi::client::run(config, stop.clone()));
        eventually("the client connects", || {
            app.core.sessions.by_name(client_id).is_some_and(|s| s.connections() > 0)
        })
        .await;
        let url = format!("{}/trigger", app.base);
        let query = [("client_id", client_id), ("message", "secret work")];
        let refused = reqwest::Client::new().get(&url).query(&query).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let answered =
            reqwest::Client::new().get(&url).query(&query).bearer_auth("tok").send().await.unwrap();
        assert_eq!(answered.status(), 200, "{client_id}");
    }
    let stream = reqwest::get(format!("{}/events?client_id=anonymous", app.base)).await.unwrap();
    assert_eq!(stream.status(), 401);
    stop.cancel();
}

#[tokio::test]
async fn a_page_elsewhere_cannot_fire_triggers() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let url = format!("{}/trigger?client_id=x&message=y", app.base);
    let cross_site = http.get(&url).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(cross_site.status(), 403);
    let body: Value = cross_site.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
    // POST is refused the same way, and before the handler reads anything.
    let posted = http.post(&url).header("origin", "http://evil.example").send().await.unwrap();
    assert_eq!(posted.status(), 403);
    let foreign_origin =
        http.get(&url).header("origin", "http://evil.example").send().await.unwrap();
    assert_eq!(foreign_origin.status(), 403);
    let body: Value = foreign_origin.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
    // Another port of the same host is the same site, not the same origin: an `<img>` there
    // must not fire a trigger either (the browser would send it the cookie).
    let same_site = http.get(&url).header("sec-fetch-site", "same-site").send().await.unwrap();
    assert_eq!(same_site.status(), 403);
    let same_origin = http.get(&url).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(same_origin.status(), 404, "passes the check, then finds no client x");
}

/// The stream GETs that take a client's name: the Go original's and the JSON-RPC one.
const NAMING_STREAMS: [&str; 2] = ["/events", "/rpc/events"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_elsewhere_cannot_take_a_clients_name_and_programs_still_can() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let _compat = start_client(&app, "worker", Protocol::Compat).await;
    let _native = start_client(&app, "native-worker", Protocol::Native).await;
    let held = |name: &str| app.core.sessions.by_name(name).unwrap().id().clone();
    let before = (held("worker"), held("native-worker"));
    let http = reqwest::Client::new();
    // What browsers send from a page on another site, and from another port of this host.
    let elsewhere: [&[(&str, &str)]; 4] = [
        &[("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")],
        &[("origin", "http://127.0.0.1:1"), ("sec-fetch-site", "same-site")],
        &[("origin", "http://evil.example")],
        &[("sec-fetch-site", "cross-site")],
    ];
    for path in NAMING_STREAMS {
        for name in ["worker", "native-worker"] {
            for headers in &elsewhere {
                let mut request =
                    http.get(format!("{}{path}", app.base)).query(&[("client_id", name)]);
                for &(header, value) in *headers {
                    request = request.header(header, value);
                }
                let refused = request.send().await.unwrap();
                assert_eq!(refused.status(), 403, "{path} {name} {headers:?}");
                let body: Value = refused.json().await.unwrap();
                assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
                assert!(body["error"]["message"].is_string(), "{body}");
            }
        }
    }
    // The names stay with the clients that hold them, which still answer.
    assert_eq!((held("worker"), held("native-worker")), before);
    for name in ["worker", "native-worker"] {
        let (status, body) = trigger(&app.base, name, "still mine").await;
        assert_eq!((status, &body["result"]), (200, &json!(analyze("still mine"))), "{name}");
    }
    // Programs send neither header and connect as before; so does a page of this origin.
    for (path, name) in [("/events", "plain-go"), ("/rpc/events", "plain-native")] {
        let url = format!("{}{path}?client_id={name}", app.base);
        let mut plain = Stream::open_with(http.get(&url)).await;
        assert!(plain.next().await.unwrap().data.contains(name), "{path}");
        assert!(app.core.sessions.by_name(name).is_some(), "{path}");
    }
    let same_origin = http
        .get(format!("{}/rpc/events?client_id=from-the-page", app.base))
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin");
    let mut stream = Stream::open_with(same_origin).await;
    assert!(stream.next().await.unwrap().data.contains("from-the-page"));
}

#[tokio::test]
async fn a_stale_last_event_id_on_a_new_compat_session_is_ignored() {
    let app = bidi_app(Duration::from_secs(30)).await;
    let request = reqwest::Client::new()
        .get(format!("{}/events?client_id=fresh", app.base))
        .header("last-event-id", "12345");
    let mut stream = Stream::open_with(request).await;
    let hello = stream.next().await.unwrap();
    assert_eq!((hello.event.as_str(), hello.data.contains("client_id")), ("message", true));
    let waiting = tokio::spawn(trigger_owned(app.base.clone(), "fresh", "first"));
    let next = stream.next().await.unwrap();
    assert_eq!(next.event, "message", "no resync on the original's wire format");
    assert!(next.data.contains("\"first\""));
    waiting.abort();
}

#[tokio::test]
async fn a_malformed_query_string_gets_a_json_error() {
    let app = bidi_app(Duration::from_secs(30)).await;
    for path in [
        "/trigger?client_id=a&client_id=b&message=m",
        "/events?client_id=a&client_id=b",
        "/rpc/events?session_id=a&session_id=b",
    ] {
        let response = reqwest::get(format!("{}{path}", app.base)).await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{path}");
    }
}

#[tokio::test]
async fn a_client_that_keeps_timing_out_trips_its_circuit_and_the_page_says_so() {
    let app = bidi_app(Duration::from_millis(50)).await;
    let _silent = manual_client(&app, "mute").await;
    let page = reqwest::get(format!("{}/", app.base)).await.unwrap().text().await.unwrap();
    assert!(page.contains("<td>mute</td>") && page.contains("<td>go-compat</td>"), "{page}");
    assert!(page.contains("<td>closed</td>"), "{page}");
    for _ in 0..5 {
        assert_eq!(trigger(&app.base, "mute", "anyone?").await.0, 504);
    }
    let response =
        reqwest::get(format!("{}/trigger?client_id=mute&message=again", app.base)).await.unwrap();
    assert_eq!(response.status(), 503, "the sixth call fails at once");
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "client_unresponsive");
    let page = reqwest::get(format!("{}/", app.base)).await.unwrap().text().await.unwrap();
    assert!(page.contains("open: its recent requests all timed out"), "{page}");
    let metrics =
        reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sse_rpc_circuits_open 1"), "{metrics}");
}
