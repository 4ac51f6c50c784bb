//! The Rust client against scripted servers: reconnection, Last-Event-ID, `retry:`, 204, status
//! handling, and the responder's concurrency, cancellation and error answers.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sse_core::client::{
    ClientError, EventSource, PostOutcome, Responder, SseItem, post_json_with_retry,
};
use sse_core::rpc::RpcError;
use sse_core::testing::{eventually, serve};
use sse_core::wire::jsonrpc::{ErrorObject, Request, codes};
use sse_core::{Core, CoreConfig};
use tokio::sync::{Barrier, mpsc};
use tokio_util::sync::CancellationToken;

/// A server that answers the n-th connection with the n-th scripted response, and records the
/// `Last-Event-ID` each connection sent.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Vec<(u16, &'static str, &'static str)>>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    count: Arc<AtomicUsize>,
}

async fn scripted(State(script): State<Script>, headers: HeaderMap) -> Response {
    let n = script.count.fetch_add(1, Ordering::SeqCst);
    let last =
        headers.get("last-event-id").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    script.seen.lock().unwrap_or_else(|e| e.into_inner()).push(last);
    let (status, content_type, body) = script.replies.get(n).copied().unwrap_or((204, "", ""));
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    if !content_type.is_empty() {
        response
            .headers_mut()
            .insert("content-type", content_type.parse().unwrap_or_else(|_| unreachable!()));
    }
    response
}

async fn scripted_server(replies: Vec<(u16, &'static str, &'static str)>) -> (String, Script) {
    let script = Script { replies: Arc::new(replies), ..Script::default() };
    let app = Router::new().route("/events", get(scripted)).with_state(script.clone());
    let (base, _) = serve(app).await;
    (format!("{base}/events"), script)
}

fn describe(item: Option<Result<SseItem, ClientError>>) -> String {
    match item {
        None => "closed".into(),
        Some(Ok(SseItem::Open)) => "open".into(),
        Some(Ok(SseItem::Event(event))) => {
            format!("{}:{}#{}", event.event, event.data, event.last_event_id)
        }
        Some(Err(error)) => format!("error({})", error.is_retryable()),
    }
}

#[tokio::test]
async fn reconnects_with_last_event_id_honouring_retry_and_stops_on_204() {
    let stream = "text/event-stream";
    let (url, script) = scripted_server(vec![
        (200, stream, "retry: 10\nid: 1\ndata: a\n\n"),
        (200, stream, "id: 2\ndata: b\n\nid: 3\ndata: partial"),
    ])
    .await;
    let mut source = EventSource::new(reqwest::Client::new(), url);
    let mut seen = Vec::new();
    loop {
        let item = describe(source.next().await);
        seen.push(item.clone());
        if item == "closed" {
            break;
        }
    }
    assert_eq!(
        seen,
        ["open", "message:a#1", "error(true)", "open", "message:b#2", "error(true)", "closed"]
    );
    // The unterminated third event was discarded, so its id was never taken.
    let sent = script.seen.lock().unwrap().clone();
    assert_eq!(sent, [None, Some("1".to_owned()), Some("2".to_owned())]);
}

#[tokio::test]
async fn ids_travel_as_their_utf_8_and_one_no_header_can_carry_ends_the_source_clearly() {
    let stream = "text/event-stream";
    let (url, script) = scripted_server(vec![
        // retry: 0 is "at once" for the first reconnect.
        (200, stream, "retry: 0\nid: caf\u{e9}\ndata: a\n\n"),
        (200, stream, "id: a\u{1}b\ndata: b\n\n"),
    ])
    .await;
    let mut source = EventSource::new(reqwest::Client::new(), url);
    let mut seen = Vec::new();
    while let Some(item) = source.next().await {
        if let Err(ClientError::UnsendableLastEventId(id)) = &item {
            assert_eq!(id, "a\u{1}b");
        }
        seen.push(describe(Some(item)));
    }
    assert_eq!(
        seen,
        [
            "open",
            "message:a#caf\u{e9}",
            "error(true)",
            "open",
            "message:b#a\u{1}b",
            "error(true)",
            "error(false)"
        ]
    );
    let sent = script.seen.lock().unwrap().clone();
    assert_eq!(sent, [None, Some("caf\u{e9}".to_owned())], "no third try with a wrong id");
}

#[tokio::test]
async fn a_request_that_cannot_be_made_ends_the_source_instead_of_retrying() {
    let mut source = EventSource::new(reqwest::Client::new(), "http://[::1/events");
    let first = source.next().await;
    assert!(matches!(&first, Some(Err(e @ ClientError::Transport(_))) if !e.is_retryable()));
    assert!(source.next().await.is_none(), "closed, not retried");
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_end_the_source() {
    let (url, _) = scripted_server(vec![
        (503, "application/json", "{}"),
        (200, "text/event-stream", "data: ok\n\n"),
        (404, "application/json", "{}"),
    ])
    .await;
    let mut source =
        EventSource::new(reqwest::Client::new(), url).reconnect_time(Duration::from_millis(5));
    let mut seen = Vec::new();
    while let Some(item) = source.next().await {
        seen.push(describe(Some(item)));
    }
    assert_eq!(seen, ["error(true)", "open", "message:ok#", "error(true)", "error(false)"]);
}

#[tokio::test]
async fn a_response_that_is_not_an_event_stream_fails_for_good() {
    let (url, script) = scripted_server(vec![(200, "text/plain", "data: no\n\n")]).await;
    let mut source = EventSource::new(reqwest::Client::new(), url);
    assert!(matches!(source.next().await, Some(Err(ClientError::ContentType(_)))));
    assert!(source.next().await.is_none());
    assert_eq!(script.count.load(Ordering::SeqCst), 1);
}

async fn native_server() -> (String, Core) {
    let core = Core::new(CoreConfig::default());
    let (base, _) = serve(sse_core::rpc::http::routes(core.clone())).await;
    (base, core)
}

/// Starts a responder and waits until its session exists.
async fn responder(
    base: &str,
    core: &Core,
    name: &str,
    handler: impl sse_core::client::Handler,
) -> sse_core::session::Session {
    let stop = CancellationToken::new();
    let run =
        Responder::new(reqwest::Client::new(), base).client_id(name).run(handler, stop.clone());
    tokio::spawn(run);
    let connected = || core.sessions.by_name(name).filter(|s| s.connections() > 0);
    eventually("the responder connects", || connected().is_some()).await;
    connected().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_responder_handles_requests_concurrently() {
    let (base, core) = native_server().await;
    let barrier = Arc::new(Barrier::new(10));
    let handler = move |request: Request| {
        let barrier = barrier.clone();
        async move {
            // Ten handlers must be running at once to pass this point.
            barrier.wait().await;
            Ok::<Value, ErrorObject>(request.params.unwrap_or(Value::Null))
        }
    };
    let session = responder(&base, &core, "worker", handler).await;
    let calls: Vec<_> = (0..10)
        .map(|n| {
            let (core, session) = (core.clone(), session.clone());
            tokio::spawn(async move {
                core.correlator
                    .request(&session, "echo", Some(json!({ "n": n })), Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap().result, json!({ "n": n }));
    }
}

#[tokio::test]
async fn a_cancelled_request_stops_its_handler() {
    let (base, core) = native_server().await;
    let (dropped, mut handler_dropped) = mpsc::channel::<()>(1);
    struct Tell(mpsc::Sender<()>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self.0.try_send(());
        }
    }
    let handler = move |_: Request| {
        let tell = Tell(dropped.clone());
        async move {
            let _tell = tell;
            std::future::pending::<Result<Value, ErrorObject>>().await
        }
    };
    let session = responder(&base, &core, "slow", handler).await;
    let answer = core.correlator.request(&session, "hang", None, Duration::from_millis(100)).await;
    assert!(matches!(answer, Err(RpcError::Timeout(_))));
    handler_dropped.recv().await.expect("the handler was stopped");
}

#[tokio::test]
async fn a_failing_handler_still_answers_with_an_error() {
    let (base, core) = native_server().await;
    let handler = |request: Request| async move {
        if request.method == "panic" {
            panic!("handler bug");
        }
        Err::<Value, _>(ErrorObject::new(codes::METHOD_NOT_FOUND, "no such method"))
    };
    let session = responder(&base, &core, "buggy", handler).await;
    let deadline = Duration::from_secs(30);
    match core.correlator.request(&session, "panic", None, deadline).await {
        Err(RpcError::Remote(error)) => assert_eq!(error.code, codes::INTERNAL_ERROR),
        other => panic!("expected an error answer, got {other:?}"),
    }
    match core.correlator.request(&session, "other", None, deadline).await {
        Err(RpcError::Remote(error)) => assert_eq!(error.code, codes::METHOD_NOT_FOUND),
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[tokio::test]
async fn answers_are_retried_on_5xx_and_a_409_means_delivered() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let app = Router::new()
        .route(
            "/flaky",
            post(move || {
                let counter = counter.clone();
                async move {
                    match counter.fetch_add(1, Ordering::SeqCst) {
                        0 | 1 => StatusCode::SERVICE_UNAVAILABLE,
                        _ => StatusCode::ACCEPTED,
                    }
                }
            }),
        )
        .route("/conflict", post(|| async { StatusCode::CONFLICT }))
        .route("/refuse", post(|| async { (StatusCode::FORBIDDEN, "no") }));
    let (base, _) = serve(app).await;
    let http = reqwest::Client::new();
    let headers = HeaderMap::new();
    let body = json!({});
    let flaky = post_json_with_retry(&http, &format!("{base}/flaky"), &headers, &body, 5).await;
    assert_eq!(flaky.unwrap(), PostOutcome::Accepted(StatusCode::ACCEPTED));
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let conflict =
        post_json_with_retry(&http, &format!("{base}/conflict"), &headers, &body, 5).await;
    assert_eq!(conflict.unwrap(), PostOutcome::AlreadyDelivered);
    let refused = post_json_with_retry(&http, &format!("{base}/refuse"), &headers, &body, 5).await;
    assert!(matches!(refused, Err(ClientError::Refused { status: StatusCode::FORBIDDEN, .. })));
}
