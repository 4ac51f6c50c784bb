//! Faults between client and server, injected by a misbehaving proxy
//! ([`sse_core::testing::fault`]): a stream cut in the middle of a frame resumes with nothing
//! missed, nothing doubled and no partial event delivered.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use sse_core::client::{EventSource, SseItem};
use sse_core::hub::Resume;
use sse_core::stream::{LastEventId, LiveResponse};
use sse_core::testing::fault::{Fault, FaultProxy};
use sse_core::testing::serve;
use sse_core::wire::Event;
use sse_core::{Core, CoreConfig};

/// A watchdog for steps that must finish; not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(60);

async fn stream(State(core): State<Core>, LastEventId(last): LastEventId) -> Response {
    let subscription =
        core.hub.topic("feed").subscribe(&Resume::from_last_event_id(last.as_deref()));
    LiveResponse::new(subscription).into_response(&core.streams, &core.metrics)
}

/// Event `n`'s data: its number, padded to 1,000 bytes so a cut can land inside it.
fn data(n: usize) -> String {
    format!("{n:>6} {}", "x".repeat(993))
}

/// The next event from `source`, counting reconnections in `opens`.
async fn next(source: &mut EventSource, opens: &mut usize) -> sse_core::wire::MessageEvent {
    loop {
        match tokio::time::timeout(WATCHDOG, source.next()).await.unwrap().unwrap() {
            Ok(SseItem::Event(event)) => return event,
            Ok(SseItem::Open) => *opens += 1,
            Err(error) => assert!(error.is_retryable(), "{error}"),
        }
    }
}

#[tokio::test]
async fn a_stream_cut_mid_frame_resumes_with_nothing_missed_doubled_or_partial() {
    let core = Core::new(CoreConfig::default());
    let app = Router::new().route("/feed", get(stream)).with_state(core.clone());
    let (base, _stop) = serve(app).await;
    let upstream = base.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let topic = core.hub.topic("feed");

    let url = format!("{}/feed", proxy.base());
    let mut source =
        EventSource::new(reqwest::Client::new(), url).reconnect_time(Duration::from_millis(10));
    let mut opens = 0;
    let mut seen = Vec::new();

    // Open the stream (its subscription exists once the head is in), then let 50 events
    // through whole.
    match tokio::time::timeout(WATCHDOG, source.next()).await.unwrap().unwrap() {
        Ok(SseItem::Open) => opens += 1,
        other => panic!("expected the stream to open, got {other:?}"),
    }
    assert_eq!(topic.subscriber_count(), 1);
    for n in 1..=50 {
        topic.publish(Event::new().data(data(n)));
    }
    while seen.len() < 50 {
        seen.push(next(&mut source, &mut opens).await);
    }

    // The stream is between frames: the next 100 bytes are the start of event 51's frame, and
    // the connection is cut right after them.
    proxy.set(Fault::CutAfter(100));
    for n in 51..=300 {
        topic.publish(Event::new().data(data(n)));
    }
    while seen.len() < 300 {
        seen.push(next(&mut source, &mut opens).await);
    }

    assert!(opens >= 2, "the client reconnected (opens: {opens})");
    assert!(proxy.connections_made() >= 2);
    let numbers: Vec<usize> = seen.iter().map(|e| e.data[..6].trim().parse().unwrap()).collect();
    assert_eq!(numbers, (1..=300).collect::<Vec<_>>(), "every event once, in order");
    for (event, n) in seen.iter().zip(1..) {
        assert_eq!(event.data, data(n), "event {n} arrived whole");
    }
}
