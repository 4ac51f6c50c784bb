//! Topics that several instances share through a real Redis: an event published on any instance
//! reaches every instance's subscribers under one id, in one order; `Last-Event-ID` resumes on any
//! instance; a new instance starts from the log's newest entries; while Redis is down publishing
//! fails clearly, and after it returns publishing works again with ids that still only grow.
//!
//! Needs Debian's `redis-server`, which `.ci/run` installs; in CI a missing one fails the test,
//! elsewhere it is skipped with a notice.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::Duration;

use sse_core::cluster::{Cluster, SharedTopic};
use sse_core::hub::{Resume, Subscription, TopicConfig};
use sse_core::metrics::Metrics;
use sse_core::testing::programs::{free_port, installed, redis_server};
use sse_core::testing::within;
use sse_core::wire::{MessageEvent, Parser};

/// One instance's view of the topic `news`.
fn instance(port: u16) -> SharedTopic {
    let cluster = Cluster::connect(&format!("redis://127.0.0.1:{port}")).unwrap();
    cluster.shared_topic("news", TopicConfig::default(), Metrics::new())
}

/// The next `count` events of `subscription`.
async fn take(
    subscription: &mut Subscription,
    parser: &mut Parser,
    count: usize,
) -> Vec<MessageEvent> {
    let mut events = Vec::new();
    within("events", async {
        while events.len() < count {
            events.extend(parser.feed(&subscription.next_batch().await.unwrap()));
        }
    })
    .await;
    events
}

fn ids(events: &[MessageEvent]) -> Vec<u64> {
    events.iter().map(|e| e.last_event_id.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_every_instance_reach_every_instance_under_one_id_in_one_order() {
    if !installed(&["redis-server"], "redis-server") {
        return;
    }
    let port = free_port();
    let _redis = redis_server(port, &["--save", "", "--appendonly", "no"]).await;
    let (a, b) = (instance(port), instance(port));
    let mut on_a = a.topic().subscribe(&Resume::Live);
    let mut on_b = b.topic().subscribe(&Resume::Live);

    let mut published = Vec::new();
    for i in 0..20 {
        let from = if i % 2 == 0 { &a } else { &b };
        let id = from.publish("news", &format!("item {i}")).await.unwrap();
        published.push((id, format!("item {i}")));
    }
    let (seen_a, seen_b) = (
        take(&mut on_a, &mut Parser::new(), 20).await,
        take(&mut on_b, &mut Parser::new(), 20).await,
    );
    for seen in [&seen_a, &seen_b] {
        let got: Vec<(u64, String)> =
            ids(seen).into_iter().zip(seen.iter().map(|e| e.data.clone())).collect();
        assert_eq!(got, published, "every event, once, in the log's order, on each instance");
        assert!(seen.iter().all(|e| e.event == "news"));
    }
    assert!(ids(&seen_a).windows(2).all(|w| w[1] == w[0] + 1), "consecutive ids");

    // A client of A that was cut off resumes on B with exactly what it missed.
    let after = published[7].0;
    let mut resumed = b.topic().subscribe(&Resume::After(after.to_string()));
    let rest = take(&mut resumed, &mut Parser::new(), 12).await;
    assert_eq!(ids(&rest), published[8..].iter().map(|(id, _)| *id).collect::<Vec<_>>());

    // An instance that starts later has the log's newest entries in its ring.
    let c = instance(port);
    let last = published.last().unwrap().0;
    within("the new instance to load the log", async {
        while c.topic().last_id() != last {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut replayed = c.topic().subscribe(&Resume::After(published[0].0.to_string()));
    assert_eq!(ids(&take(&mut replayed, &mut Parser::new(), 19).await), ids(&seen_a[1..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_fails_while_redis_is_down_and_ids_still_grow_after_it_returns_empty() {
    if !installed(&["redis-server"], "redis-server") {
        return;
    }
    let port = free_port();
    let mut redis = redis_server(port, &["--save", "", "--appendonly", "no"]).await;
    let (a, b) = (instance(port), instance(port));
    let mut on_b = b.topic().subscribe(&Resume::Live);
    let before = a.publish("", "before").await.unwrap();
    assert_eq!(ids(&take(&mut on_b, &mut Parser::new(), 1).await), [before]);

    redis.kill().await.unwrap();
    assert!(a.publish("", "lost").await.is_err(), "nothing is acknowledged that is not stored");

    // Redis comes back with nothing: not the log, not the counter.
    let _redis = redis_server(port, &["--save", "", "--appendonly", "no"]).await;
    let after = within("a publish once Redis is back", async {
        loop {
            if let Ok(id) = a.publish("", "after").await {
                return id;
            }
            // Nothing announces that Redis is reachable again but a command that succeeds;
            // a pause between attempts keeps this from spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(after > before, "ids only grow, even across a Redis that lost its data");
    let mut parser = Parser::new();
    let mut events = Vec::new();
    while !events.iter().any(|e: &MessageEvent| e.data == "after") {
        events.extend(take(&mut on_b, &mut parser, 1).await);
    }
    let seen = ids(&events);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    assert!(events.iter().all(|e| e.data != "lost"), "the refused one never appears");
}
