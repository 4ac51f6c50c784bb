//! Replay and resume: a client that comes back with Last-Event-ID gets exactly what it missed;
//! one whose id cannot be honoured gets `resync`, never a silent gap.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use sse_core::hub::{Resume, Topic, TopicConfig};
use sse_core::metrics::Metrics;
use sse_core::session::JsonRpcEvents;
use sse_core::session::{SessionConfig, Sessions};
use sse_core::stream::{LastEventId, LiveResponse};
use sse_core::testing::{Stream, serve};
use sse_core::wire::{Event, Parser};
use sse_core::{Core, CoreConfig};

async fn topic_stream(State(core): State<Core>, LastEventId(last): LastEventId) -> Response {
    let subscription =
        core.hub.topic("news").subscribe(&Resume::from_last_event_id(last.as_deref()));
    LiveResponse::new(subscription).into_response(&core.streams, &core.metrics)
}

async fn news_server(replay: usize) -> (String, Core) {
    let config = CoreConfig {
        topic: TopicConfig { replay, ..TopicConfig::default() },
        ..CoreConfig::default()
    };
    let core = Core::new(config);
    let app = Router::new().route("/news", get(topic_stream)).with_state(core.clone());
    let (base, _) = serve(app).await;
    (base, core)
}

#[tokio::test]
async fn a_cut_stream_resumes_with_exactly_the_missed_events() {
    let (base, core) = news_server(1024).await;
    let topic = core.hub.topic("news");
    let mut stream = Stream::open(&format!("{base}/news")).await;
    let ids: Vec<u64> =
        (1..=10).map(|i| topic.publish(Event::new().data(format!("n{i}")))).collect();
    let first = stream.take(5).await;
    assert_eq!(
        first.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["n1", "n2", "n3", "n4", "n5"]
    );
    let resume_from = first[4].last_event_id.clone();
    assert_eq!(resume_from, ids[4].to_string());
    drop(stream); // cut mid-way: n6..n10 were sent or queued but never read

    for i in 11..=15 {
        topic.publish(Event::new().data(format!("n{i}")));
    }
    let mut resumed = Stream::resume(&format!("{base}/news"), Some(&resume_from)).await;
    let missed = resumed.take(10).await;
    let expected: Vec<String> = (6..=15).map(|i| format!("n{i}")).collect();
    assert_eq!(missed.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), expected);
    assert!(missed.iter().all(|e| e.event == "message"));
    // Nothing more: the next thing on the stream is what is published next.
    topic.publish(Event::new().data("n16"));
    assert_eq!(resumed.next().await.map(|e| e.data), Some("n16".to_owned()));
}

#[tokio::test]
async fn the_query_parameter_works_for_clients_that_cannot_send_headers() {
    let (base, core) = news_server(1024).await;
    let topic = core.hub.topic("news");
    let first = topic.publish(Event::new().data("a"));
    topic.publish(Event::new().data("b"));
    let mut stream = Stream::open(&format!("{base}/news?lastEventId={first}")).await;
    assert_eq!(stream.next().await.map(|e| e.data), Some("b".to_owned()));
}

#[tokio::test]
async fn an_id_older_than_the_ring_gets_resync() {
    let (base, core) = news_server(8).await;
    let topic = core.hub.topic("news");
    let old = topic.publish(Event::new().data("old"));
    for i in 0..20 {
        topic.publish(Event::new().data(format!("later {i}")));
    }
    let mut stream = Stream::resume(&format!("{base}/news"), Some(&old.to_string())).await;
    let resync = stream.next().await.unwrap();
    assert_eq!(resync.event, "resync");
    assert_eq!(resync.last_event_id, topic.last_id().to_string());
    assert!(resync.data.contains("unknown_id"));
    let next = topic.publish(Event::new().data("after resync"));
    let event = stream.next().await.unwrap();
    assert_eq!((event.data.as_str(), event.last_event_id), ("after resync", next.to_string()));
}

#[tokio::test]
async fn unknown_or_future_ids_get_resync() {
    let (base, core) = news_server(8).await;
    let topic = core.hub.topic("news");
    let last = topic.publish(Event::new().data("x"));
    for id in ["not-a-number".to_owned(), (last + 100).to_string(), "1".to_owned()] {
        let mut stream = Stream::resume(&format!("{base}/news"), Some(&id)).await;
        assert_eq!(stream.next().await.unwrap().event, "resync", "Last-Event-ID {id}");
    }
    // An id that is not plain text is still an id, and none of ours: resync, not a silent
    // start from now (and it wins over a good query parameter, as every header does).
    let url = format!("{base}/news?lastEventId={last}");
    for bytes in [&b"caf\xc3\xa9"[..], b"\xff1"] {
        let value = reqwest::header::HeaderValue::from_bytes(bytes).unwrap();
        let request = reqwest::Client::new().get(&url).header("last-event-id", value);
        let mut stream = Stream::open_with(request).await;
        let resync = stream.next().await.unwrap();
        assert_eq!((resync.event.as_str(), resync.data.contains("unknown_id")), ("resync", true));
    }
    // The current id itself is fine: nothing to replay, no resync.
    let mut stream = Stream::resume(&format!("{base}/news"), Some(&last.to_string())).await;
    topic.publish(Event::new().data("y"));
    assert_eq!(stream.next().await.unwrap().data, "y");
}

#[tokio::test]
async fn an_id_from_before_a_gap_the_topic_never_had_gets_resync() {
    // As a shared topic's mirror does when Redis trimmed what it missed: it says so live, then
    // goes on from the first entry it can still read.
    let topic = Topic::new(TopicConfig::default(), Metrics::new());
    let before = topic.publish(Event::new().data("before the gap"));
    let missed_through = before + 10;
    topic.resync_live("log_trimmed", missed_through);
    topic.publish_with_id(missed_through + 1, Event::new().data("after the gap")).unwrap();

    let mut from_before = topic.subscribe(&Resume::After(before.to_string()));
    let events = Parser::new().feed(&from_before.next_batch().await.unwrap());
    assert_eq!(events[0].event, "resync", "never a silent skip over the gap: {events:?}");
    let mut from_the_gap = topic.subscribe(&Resume::After(missed_through.to_string()));
    let events = Parser::new().feed(&from_the_gap.next_batch().await.unwrap());
    assert_eq!((events[0].data.as_str(), events.len()), ("after the gap", 1));
}

#[tokio::test]
async fn ids_from_before_a_restart_are_never_confused_with_new_ones() {
    let before = Topic::new(TopicConfig::default(), Metrics::new());
    let old_id = before.publish(Event::new().data("before restart"));
    // A restarted server starts its ids from the clock, which has moved on since (here at least
    // a microsecond; in life, the restart itself).
    let after = loop {
        let topic = Topic::new(TopicConfig::default(), Metrics::new());
        if topic.last_id() > old_id {
            break topic;
        }
    };
    after.publish(Event::new().data("after restart"));
    let mut subscription = after.subscribe(&Resume::After(old_id.to_string()));
    let batch = subscription.next_batch().await.unwrap();
    assert_eq!(Parser::new().feed(&batch)[0].event, "resync");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_resync_and_ids_keep_increasing() {
    let config = TopicConfig { replay: 64, buffer: 4, max_batch_bytes: 64 * 1024 };
    let topic = Topic::new(config, Metrics::new());
    let mut subscription = topic.subscribe(&Resume::Live);
    for i in 0..10 {
        topic.publish(Event::new().data(format!("{i}")));
    }
    let mut parser = Parser::new();
    let events = parser.feed(&subscription.next_batch().await.unwrap());
    assert_eq!(events[0].event, "resync");
    assert!(events[0].data.contains("lagged"));
    assert_eq!(events[0].last_event_id, topic.last_id().to_string());
    // Whatever was still queued is covered by the resync; what comes next is new.
    let next = topic.publish(Event::new().data("fresh"));
    let mut rest = events[1..].to_vec();
    while rest.is_empty() {
        rest = parser.feed(&subscription.next_batch().await.unwrap());
    }
    assert_eq!((rest[0].data.as_str(), rest[0].last_event_id.clone()), ("fresh", next.to_string()));
}

#[tokio::test]
async fn removing_a_topic_ends_its_subscriptions() {
    let core = Core::new(CoreConfig::default());
    let mut subscription = core.hub.topic("gone").subscribe(&Resume::Live);
    core.hub.remove("gone");
    assert!(subscription.next_batch().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn messages_for_a_disconnected_session_wait_for_its_return() {
    let sessions = Sessions::new(SessionConfig::default(), Metrics::new());
    let session = sessions.create(Some("worker"), Arc::new(JsonRpcEvents)).await.unwrap();
    let mut connection = session.connect(None);
    session.send(Event::new().data("one")).unwrap();
    let first = Parser::new().feed(&connection.next_batch().await.unwrap());
    assert_eq!(first[0].data, "one");
    drop(connection);

    session.send(Event::new().data("two")).unwrap();
    session.send(Event::new().data("three")).unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(sessions.by_name("worker").is_some(), "still within the grace period");

    // Without Last-Event-ID the stream continues after what the last connection was handed.
    let mut back = session.connect(None);
    let events = Parser::new().feed(&back.next_batch().await.unwrap());
    assert_eq!(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["two", "three"]);

    // With Last-Event-ID it replays exactly after that id.
    let again = session.connect(Some(&first[0].last_event_id));
    let mut again = again;
    let replay = Parser::new().feed(&again.next_batch().await.unwrap());
    assert_eq!(replay.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["two", "three"]);
}

#[tokio::test(start_paused = true)]
async fn a_session_expires_after_the_grace_period_and_leaves_nothing() {
    let sessions = Sessions::new(SessionConfig::default(), Metrics::new());
    let session = sessions.create(Some("worker"), Arc::new(JsonRpcEvents)).await.unwrap();
    let id = session.id().clone();
    drop(session.connect(None));
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::task::yield_now().await;
    session.closed().await;
    assert!(sessions.get(&id).is_none());
    assert!(sessions.by_name("worker").is_none());
    assert!(sessions.is_empty());
    assert!(session.send(Event::new().data("too late")).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_within_grace_cancels_the_expiry() {
    let sessions = Sessions::new(SessionConfig::default(), Metrics::new());
    let session = sessions.create(None, Arc::new(JsonRpcEvents)).await.unwrap();
    drop(session.connect(None));
    tokio::time::advance(Duration::from_secs(20)).await;
    let connection = session.connect(None);
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::task::yield_now().await;
    assert!(!session.is_closed());
    assert_eq!(sessions.len(), 1);
    drop(connection);
}
