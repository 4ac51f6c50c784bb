//! Coalescing: when a subscriber has several frames waiting, they leave in one write, in order,
//! with their ids, never past the batch limit; and a stream that goes quiet still gets its
//! keep-alive comments.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::Duration;

use futures_util::StreamExt;
use sse_core::hub::{Resume, Topic, TopicConfig};
use sse_core::metrics::Metrics;
use sse_core::stream::{StreamConfig, sse_response};
use sse_core::wire::{Event, Parser};

#[tokio::test]
async fn waiting_frames_leave_together_in_order_with_their_ids() {
    let topic = Topic::new(TopicConfig::default(), Metrics::new());
    let mut subscription = topic.subscribe(&Resume::Live);
    let ids: Vec<u64> = (0..50).map(|i| topic.publish(Event::new().data(format!("{i}")))).collect();

    let batch = subscription.next_batch().await.unwrap();
    let events = Parser::new().feed(&batch);
    let data: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(data, expected, "one write, every frame, in publication order");
    let seen: Vec<u64> = events.iter().map(|e| e.last_event_id.parse().unwrap()).collect();
    assert_eq!(seen, ids, "each frame keeps its own id");
    assert_eq!(subscription.last_id(), ids.last().copied());
}

#[tokio::test]
async fn a_batch_never_passes_the_limit_and_nothing_is_lost_across_batches() {
    let config = TopicConfig { max_batch_bytes: 256, ..TopicConfig::default() };
    let topic = Topic::new(config, Metrics::new());
    let mut subscription = topic.subscribe(&Resume::Live);
    let frame_len = Event::new().id(topic.last_id() + 1).data("x".repeat(40)).encode().len();
    for _ in 0..40 {
        topic.publish(Event::new().data("x".repeat(40)));
    }
    let mut parser = Parser::new();
    let (mut events, mut batches) = (Vec::new(), 0);
    while events.len() < 40 {
        let batch = subscription.next_batch().await.unwrap();
        assert!(batch.len() <= 256, "batch of {} bytes", batch.len());
        assert!(batch.len() >= frame_len, "at least one whole frame");
        events.extend(parser.feed(&batch));
        batches += 1;
    }
    assert_eq!(events.len(), 40);
    assert!(batches > 1 && batches < 40, "{batches} batches: several frames in each");
    let ids: Vec<u64> = events.iter().map(|e| e.last_event_id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "in order, none skipped: {ids:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_goes_quiet_after_a_burst_still_gets_keep_alives() {
    let metrics = Metrics::new();
    let topic = Topic::new(TopicConfig::default(), metrics.clone());
    let config = StreamConfig { keep_alive: Duration::from_secs(10), ..StreamConfig::default() };
    let frames = topic.subscribe(&Resume::Live).into_stream();
    let mut body = sse_response(frames, &config, &metrics).into_body().into_data_stream();

    for i in 0..3 {
        topic.publish(Event::new().data(format!("burst {i}")));
    }
    let burst = body.next().await.unwrap().unwrap();
    let events = Parser::new().feed(&burst);
    assert_eq!(
        events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["burst 0", "burst 1", "burst 2"]
    );

    // Nothing more is published: (paused) time runs on until the keep-alive comment comes.
    let started = tokio::time::Instant::now();
    let quiet = body.next().await.unwrap().unwrap();
    assert_eq!(&quiet[..], b": keep-alive\n\n");
    assert!(started.elapsed() <= Duration::from_secs(10), "at most one period of silence");
    // Still quiet: the next comment comes a whole period later, not at the next half-period tick.
    let first = tokio::time::Instant::now();
    assert_eq!(&body.next().await.unwrap().unwrap()[..], b": keep-alive\n\n");
    let gap = first.elapsed();
    // (Paused time: the clock jumps straight to each tick, to the timer's millisecond.)
    assert!(
        gap >= Duration::from_secs(10) && gap <= Duration::from_millis(10_001),
        "one comment per period of silence, not {gap:?}"
    );

    topic.publish(Event::new().data("after"));
    let after = Parser::new().feed(&body.next().await.unwrap().unwrap());
    assert_eq!(after[0].data, "after");
}
