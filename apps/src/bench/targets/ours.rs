//! The core's fan-out as the apps use it: one topic, [`LiveResponse`], the apps' layers.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use sse_core::Core;
use sse_core::hub::{Resume, Topic};
use sse_core::stream::{LastEventId, LiveResponse};
use sse_core::wire::Event;
use tokio::sync::mpsc::UnboundedReceiver;

/// `GET /events` on one topic, published to as the bench orders.
pub fn router(core: Core, commands: UnboundedReceiver<String>) -> Router {
    let topic = core.hub.topic("bench");
    let publisher = topic.clone();
    tokio::spawn(super::follow_orders(commands, move |_, data| {
        publisher.publish(Event::new().data(data));
    }));
    Router::new().route("/events", get(events)).with_state((core, topic))
}

async fn events(
    State((core, topic)): State<(Core, Topic)>,
    LastEventId(last): LastEventId,
) -> Response {
    let subscription = topic.subscribe(&Resume::from_last_event_id(last.as_deref()));
    LiveResponse::new(subscription).into_response(&core.streams, &core.metrics)
}
