//! The correlator under concurrency, over real HTTP: 1000 requests over 50 sessions, each caller
//! gets its own answer while foreign, duplicate, late and unknown answers are injected.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sse_core::rpc::RpcError;
use sse_core::session::Session;
use sse_core::testing::{Stream, eventually, serve};
use sse_core::wire::jsonrpc::{Id, Message};
use sse_core::{Core, CoreConfig};
use tokio::sync::mpsc;

const SESSIONS: usize = 50;
const REQUESTS: usize = 1000;

/// Counts of the statuses the injected answers got.
#[derive(Default, Debug)]
struct Injected {
    foreign: Vec<u16>,
    unknown: Vec<u16>,
    duplicate: Vec<u16>,
    late: Vec<u16>,
    real: Vec<u16>,
}

async fn post(http: &reqwest::Client, base: &str, session: &str, body: Value) -> u16 {
    http.post(format!("{base}/rpc/responses"))
        .header("session-id", session)
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// One client: reads its stream and answers every request, injecting wrong answers around the
/// right one. `slow` requests are answered only after the server cancels them (so, late).
async fn client(
    base: String,
    name: String,
    directory: Arc<Mutex<Vec<String>>>,
    injected: Arc<Mutex<Injected>>,
    ready: mpsc::Sender<String>,
) {
    let http = reqwest::Client::new();
    let mut stream = Stream::open(&format!("{base}/rpc/events?client_id={name}")).await;
    let hello = stream.next().await.expect("greeting");
    assert_eq!(hello.event, "session");
    let session_id = serde_json::from_str::<Value>(&hello.data).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    directory.lock().unwrap().push(session_id.clone());
    ready.send(session_id.clone()).await.unwrap();
    let mut slow: HashMap<Id, Value> = HashMap::new();
    while let Some(event) = stream.next().await {
        let message = Message::parse(event.data.as_bytes()).expect("valid JSON-RPC");
        match (event.event.as_str(), message) {
            ("request", Message::Request(request)) if request.method == "slow" => {
                slow.insert(request.id.clone(), json!(request.id));
            }
            ("request", Message::Request(request)) => {
                let n = request.params.as_ref().unwrap()["n"].as_u64().unwrap();
                let answer = json!({"jsonrpc": "2.0", "id": request.id, "result": {"n": n, "double": n * 2}});
                let neighbour = {
                    let directory = directory.lock().unwrap();
                    directory.iter().find(|s| **s != session_id).cloned().unwrap()
                };
                let foreign = post(&http, &base, &neighbour, answer.clone()).await;
                let unknown_body = json!({"jsonrpc": "2.0", "id": 1_000_000_000 + n, "result": 0});
                let unknown = post(&http, &base, &session_id, unknown_body).await;
                let real = post(&http, &base, &session_id, answer.clone()).await;
                let duplicate = post(&http, &base, &session_id, answer).await;
                let mut injected = injected.lock().unwrap();
                injected.foreign.push(foreign);
                injected.unknown.push(unknown);
                injected.real.push(real);
                injected.duplicate.push(duplicate);
            }
            ("notification", Message::Notification(note)) => {
                assert_eq!(note.method, "notifications/cancelled");
                let id: Id =
                    serde_json::from_value(note.params.unwrap()["requestId"].clone()).unwrap();
                if slow.remove(&id).is_some() {
                    let body = json!({"jsonrpc": "2.0", "id": id, "result": "too late"});
                    let late = post(&http, &base, &session_id, body).await;
                    injected.lock().unwrap().late.push(late);
                }
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_requests_over_fifty_sessions_are_each_answered_correctly() {
    let core = Core::new(CoreConfig::default());
    let (base, stop) = serve(sse_core::rpc::http::routes(core.clone())).await;
    let directory = Arc::new(Mutex::new(Vec::new()));
    let injected = Arc::new(Mutex::new(Injected::default()));
    let (ready, mut readied) = mpsc::channel(SESSIONS);
    for i in 0..SESSIONS {
        tokio::spawn(client(
            base.clone(),
            format!("c{i}"),
            directory.clone(),
            injected.clone(),
            ready.clone(),
        ));
    }
    let mut sessions: Vec<Session> = Vec::new();
    for _ in 0..SESSIONS {
        let id = readied.recv().await.unwrap();
        sessions.push(core.sessions.get(&id.as_str().into()).expect("live session"));
    }

    let mut calls = Vec::new();
    for n in 0..REQUESTS {
        let (core, session) = (core.clone(), sessions[n % SESSIONS].clone());
        calls.push(tokio::spawn(async move {
            let params = json!({ "n": n });
            let answer = core
                .correlator
                .request(&session, "double", Some(params), Duration::from_secs(30))
                .await;
            (n as u64, answer)
        }));
    }
    // Late answers: these time out, then the client answers once told they were cancelled.
    let mut late_calls = Vec::new();
    for session in &sessions[..10] {
        let (core, session) = (core.clone(), session.clone());
        late_calls.push(tokio::spawn(async move {
            core.correlator.request(&session, "slow", None, Duration::from_millis(50)).await
        }));
    }
    for call in calls {
        let (n, answer) = call.await.unwrap();
        let answer = answer.expect("answered");
        assert_eq!(
            answer.result,
            json!({"n": n, "double": n * 2}),
            "request {n} got someone else's answer"
        );
    }
    for call in late_calls {
        assert!(matches!(call.await.unwrap(), Err(RpcError::Timeout(_))));
    }
    // Each client records its injected answers after the caller already has the real one, and
    // the late answers are POSTed after the cancellation: wait until every one is recorded.
    eventually("every injected answer recorded", || {
        let injected = injected.lock().unwrap();
        injected.duplicate.len() == REQUESTS && injected.late.len() == 10
    })
    .await;

    let injected = injected.lock().unwrap();
    let all =
        |codes: &[u16], want: u16| codes.len() == REQUESTS && codes.iter().all(|c| *c == want);
    assert!(all(&injected.real, 202), "real answers: {:?}", &injected.real[..5]);
    assert!(all(&injected.foreign, 403), "foreign answers must get 403");
    assert!(all(&injected.unknown, 404), "unknown ids must get 404");
    assert!(all(&injected.duplicate, 409), "duplicates must get 409");
    assert_eq!(injected.late, vec![410; 10], "late answers must get 410");
    assert_eq!(core.correlator.pending_count(), 0);
    stop.cancel();
}

#[tokio::test]
async fn a_caller_that_gives_up_removes_its_entry_and_the_client_is_told() {
    let core = Core::new(CoreConfig::default());
    let (base, _stop) = serve(sse_core::rpc::http::routes(core.clone())).await;
    let mut stream = Stream::open(&format!("{base}/rpc/events?client_id=w")).await;
    stream.next().await.expect("greeting");
    let session = core.sessions.by_name("w").unwrap();
    let call = {
        let (core, session) = (core.clone(), session.clone());
        tokio::spawn(async move {
            core.correlator.request(&session, "work", None, Duration::from_secs(60)).await
        })
    };
    let request = stream.next().await.unwrap();
    assert_eq!(request.event, "request");
    assert_eq!(core.correlator.pending_count(), 1);
    call.abort(); // the caller goes away
    let cancelled = stream.next().await.unwrap();
    assert_eq!(cancelled.event, "notification");
    assert!(cancelled.data.contains("notifications/cancelled"));
    assert_eq!(core.correlator.pending_count(), 0);
    let Message::Request(request) = Message::parse(request.data.as_bytes()).unwrap() else {
        panic!()
    };
    let late = json!({"jsonrpc": "2.0", "id": request.id, "result": 1});
    assert_eq!(post(&reqwest::Client::new(), &base, session.id().as_str(), late).await, 410);
}

#[tokio::test]
async fn a_client_error_reaches_the_caller_typed() {
    let core = Core::new(CoreConfig::default());
    let (base, _stop) = serve(sse_core::rpc::http::routes(core.clone())).await;
    let mut stream = Stream::open(&format!("{base}/rpc/events")).await;
    let hello: Value = serde_json::from_str(&stream.next().await.unwrap().data).unwrap();
    let session_id = hello["session_id"].as_str().unwrap().to_owned();
    let session = core.sessions.get(&session_id.as_str().into()).unwrap();
    let call = {
        let core = core.clone();
        tokio::spawn(async move {
            core.correlator.request(&session, "fail", None, Duration::from_secs(60)).await
        })
    };
    let Message::Request(request) =
        Message::parse(stream.next().await.unwrap().data.as_bytes()).unwrap()
    else {
        panic!("not a request")
    };
    let body =
        json!({"jsonrpc": "2.0", "id": request.id, "error": {"code": -32000, "message": "nope"}});
    assert_eq!(post(&reqwest::Client::new(), &base, &session_id, body).await, 202);
    match call.await.unwrap() {
        Err(RpcError::Remote(error)) => {
            assert_eq!((error.code, error.message.as_str()), (-32000, "nope"))
        }
        other => panic!("expected the client's error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_answers_get_400_with_a_json_error() {
    let core = Core::new(CoreConfig::default());
    let (base, _stop) = serve(sse_core::rpc::http::routes(core)).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/rpc/responses");
    let cases: Vec<(&str, Option<&str>, &str, u16)> = vec![
        ("{", Some("s"), "application/json", 400),
        (r#"{"jsonrpc":"2.0","id":1}"#, Some("s"), "application/json", 400),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}"#,
            Some("s"),
            "application/json",
            400,
        ),
        (r#"[{"jsonrpc":"2.0","id":1,"result":1}]"#, Some("s"), "application/json", 400),
        (r#"{"jsonrpc":"2.0","method":"x"}"#, Some("s"), "application/json", 400),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"$serde_json::private::RawValue":"1"}}"#,
            Some("s"),
            "application/json",
            400,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"result":1}"#, None, "application/json", 400),
        (r#"{"jsonrpc":"2.0","id":1,"result":1}"#, Some("s"), "text/plain", 415),
    ];
    for (body, session, content_type, status) in cases {
        let mut request =
            http.post(&url).header("content-type", content_type).body(body.to_owned());
        if let Some(session) = session {
            request = request.header("session-id", session);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["code"].is_string() && error["error"]["message"].is_string(),
            "{error}"
        );
    }
    let huge = format!(r#"{{"jsonrpc":"2.0","id":1,"result":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let response = http
        .post(&url)
        .header("session-id", "s")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}
