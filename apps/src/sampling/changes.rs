//! What the console sees change (`GET /sampling/events`): clients connecting and leaving,
//! requests sent by hand moving from state to state.
//!
//! On one instance the changes go to a topic of this instance's hub. With several (`--redis`),
//! clients and their requests live on whichever instance each client reached, while a console
//! may be open on any of them, so the changes go to a topic every instance shares
//! ([`SharedTopic`]): every console sees every instance's changes, in the order each instance
//! made them. Every change carries the whole client or request, so seeing one twice (a snapshot
//! and a change at the same moment) is harmless.

use serde_json::Value;
use sse_core::Core;
use sse_core::cluster::SharedTopic;
use sse_core::hub::{Resume, Subscription, Topic, TopicConfig};
use sse_core::wire::Event;
use tokio::sync::mpsc;

/// Where console changes go.
#[derive(Clone, Debug)]
pub enum Changes {
    /// This instance's topic: there is no other instance.
    Local(Topic),
    /// A topic every instance shares, fed one change at a time through `queue`.
    Shared {
        /// The shared topic; consoles subscribe to its local mirror.
        topic: SharedTopic,
        /// Changes on their way to Redis, in order.
        queue: mpsc::UnboundedSender<(String, String)>,
    },
}

impl Changes {
    /// The changes topic for `core`: shared when it belongs to a cluster. Needs a runtime.
    pub fn new(core: &Core) -> Changes {
        let Some(cluster) = core.cluster() else {
            return Changes::Local(core.hub.topic("sampling"));
        };
        let topic =
            cluster.shared_topic("sampling-console", TopicConfig::default(), core.metrics.clone());
        let (queue, mut queued) = mpsc::unbounded_channel::<(String, String)>();
        let publisher = topic.clone();
        // One at a time, so every console sees this instance's changes in the order they were
        // made.
        tokio::spawn(async move {
            while let Some((name, data)) = queued.recv().await {
                if let Err(error) = publisher.publish(&name, &data).await {
                    tracing::warn!(%error, "cannot share a console change (Redis): only this instance's consoles see it");
                    publisher.topic().publish_transient(&Event::new().event(name).data(data));
                }
            }
        });
        Changes::Shared { topic, queue }
    }

    /// Sends a change named `name` to every console.
    pub fn publish(&self, name: &str, data: &Value) {
        match self {
            // Nobody watching this instance's console: nothing to encode (a tool call records
            // two changes, so an unwatched server would spend a share of each call on them).
            Changes::Local(topic) if topic.subscriber_count() == 0 => {}
            Changes::Local(topic) => {
                topic.publish_transient(&Event::new().event(name).data(data.to_string()));
            }
            Changes::Shared { queue, .. } => {
                let _ = queue.send((name.to_owned(), data.to_string()));
            }
        }
    }

    /// A console's subscription, from the next change on.
    pub fn subscribe(&self) -> Subscription {
        match self {
            Changes::Local(topic) => topic.subscribe(&Resume::Live),
            Changes::Shared { topic, .. } => topic.topic().subscribe(&Resume::Live),
        }
    }
}
