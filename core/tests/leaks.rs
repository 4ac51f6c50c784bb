//! No leaks: thousands of connect/disconnect cycles leave no session, subscriber or pending entry.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use sse_core::hub::Resume;
use sse_core::session::JsonRpcEvents;
use sse_core::session::SessionConfig;
use sse_core::stream::LiveResponse;
use sse_core::testing::{Stream, eventually, serve};
use sse_core::wire::Event;
use sse_core::{Core, CoreConfig};
use tokio::sync::Notify;

const CYCLES: usize = 2000;

async fn topic_stream(State(core): State<Core>) -> Response {
    let subscription = core.hub.topic("t").subscribe(&Resume::Live);
    LiveResponse::new(subscription).into_response(&core.streams, &core.metrics)
}

/// A core whose sessions expire as soon as their last connection closes, and a notifier that
/// fires on every expiry, so the test can await expiry instead of sleeping.
fn quick_expiring_core() -> (Core, Arc<AtomicUsize>, Arc<Notify>) {
    let config = CoreConfig {
        session: SessionConfig { grace: Duration::ZERO, ..SessionConfig::default() },
        keep_alive: Duration::from_millis(20),
        ..CoreConfig::default()
    };
    let core = Core::new(config);
    let expired = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    let (counter, waker) = (expired.clone(), notify.clone());
    core.sessions.on_expire(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        waker.notify_one();
    });
    (core, expired, notify)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_http_cycles_leave_nothing_behind() {
    let (core, expired, notify) = quick_expiring_core();
    let app = Router::new()
        .route("/topic", get(topic_stream))
        .with_state(core.clone())
        .merge(sse_core::rpc::http::routes(core.clone()));
    let (base, _stop) = serve(app).await;
    let topic = core.hub.topic("t");

    for i in 0..CYCLES {
        let mut session_stream = Stream::open(&format!("{base}/rpc/events?client_id=c{i}")).await;
        session_stream.next().await.expect("greeting");
        let mut topic_stream = Stream::open(&format!("{base}/topic")).await;
        if i % 100 == 0 {
            topic.publish(Event::new().data("tick"));
            assert_eq!(topic_stream.next().await.unwrap().data, "tick");
        }
        drop(session_stream);
        drop(topic_stream);
    }

    // Each dropped connection is noticed at the latest at its next keep-alive write; await every
    // session's expiry.
    let all_expired = async {
        while expired.load(Ordering::SeqCst) < CYCLES {
            notify.notified().await;
        }
    };
    // A watchdog, not a timing assertion: far longer than this takes.
    tokio::time::timeout(Duration::from_secs(120), all_expired)
        .await
        .expect("every session expires");
    assert_eq!(core.sessions.len(), 0, "sessions left");
    assert_eq!(core.correlator.pending_count(), 0, "pending requests left");
    assert_eq!(core.correlator.finished_count(), 0, "finished requests remembered");
    eventually("every topic subscriber to go", || {
        topic.publish(Event::new().data("flush")); // a write reveals a closed socket
        topic.subscriber_count() == 0
    })
    .await;
    let metrics = core.metrics.render();
    assert!(metrics.contains("sse_sessions_active 0"), "{metrics}");
}

#[tokio::test(start_paused = true)]
async fn sessions_with_pending_requests_release_everything_on_expiry() {
    let config = CoreConfig::default();
    let core = Core::new(config);
    let mut calls = Vec::new();
    for i in 0..1000 {
        let session =
            core.sessions.create(Some(&format!("s{i}")), Arc::new(JsonRpcEvents)).await.unwrap();
        drop(session.connect(None));
        let correlator = core.correlator.clone();
        calls.push(tokio::spawn(async move {
            correlator.request(&session, "never", None, Duration::from_secs(3600)).await
        }));
    }
    while core.correlator.pending_count() < 1000 {
        tokio::task::yield_now().await; // let every caller send its request
    }
    tokio::time::advance(Duration::from_secs(31)).await;
    for call in calls {
        assert!(matches!(call.await.unwrap(), Err(sse_core::rpc::RpcError::SessionClosed)));
    }
    assert_eq!(core.sessions.len(), 0);
    assert_eq!(core.correlator.pending_count(), 0);
    assert_eq!(core.correlator.finished_count(), 0);
}
