//! The basic one-way server: `GET /events` streams numbered events; `GET /` is the browser test
//! page.
//!
//! Wire-compatible with the Go original (`data: Event <i> at <HH:MM:SS>`, ten events two seconds
//! apart, then the stream ends) and better behaved: each event carries `id: <i>`, so a client that
//! reconnects with `Last-Event-ID: 4` continues at event 5, even across a server restart (the id
//! *is* the position, no state needed; an id that is not one of ours gets `resync` and the stream
//! starts over). A client that comes back after the last event gets
//! `204 No Content`, which tells a browser's `EventSource` to stop reconnecting. A resumed stream
//! opens with `event: resumed` naming the id the client sent, so the test page can show it.

pub mod client;

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sse_core::Core;
use sse_core::stream::{FrameStream, LastEventId, sse_response, with_prelude};
use sse_core::wire::Event;

/// How the basic server paces its events.
#[derive(Clone, Copy, Debug)]
pub struct BasicConfig {
    /// Events per stream; 0 streams forever.
    pub count: u64,
    /// Pause between events.
    pub interval: Duration,
}

impl Default for BasicConfig {
    fn default() -> Self {
        BasicConfig { count: 10, interval: Duration::from_secs(2) }
    }
}

#[derive(Clone, Debug)]
struct BasicState {
    core: Core,
    config: BasicConfig,
}

/// The routes: `/` (test page) and `/events`. Mounted at `/basic`, and also at the root when run
/// alone as `basic-server`, where the Go original had them.
pub fn router(core: Core, config: BasicConfig) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .with_state(BasicState { core, config })
}

/// Mounts [`router`] under `/basic`.
pub fn mounted(core: Core, config: BasicConfig) -> Router {
    // Nesting maps the page to `/basic`; `/basic/` is the same page.
    Router::new().route("/basic/", get(page)).nest("/basic", router(core, config))
}

#[derive(Template, WebTemplate)]
#[template(path = "basic.html")]
struct TestPage;

async fn page() -> TestPage {
    TestPage
}

async fn events(State(state): State<BasicState>, LastEventId(last): LastEventId) -> Response {
    // Our ids are positions; anything else cannot be resumed from.
    let resume_after = last.as_deref().map(position);
    let after = resume_after.flatten().unwrap_or(0);
    let BasicConfig { count, interval } = state.config;
    if count != 0 && after >= count {
        // Everything was delivered: 204 tells EventSource not to reconnect.
        return StatusCode::NO_CONTENT.into_response();
    }
    // `retry:` alone dispatches nothing; it makes browsers come back after 1 s, not their 3 s.
    let mut prelude = vec![Event::new().retry(Duration::from_secs(1)).encode()];
    match (&last, resume_after) {
        (Some(id), Some(Some(_))) => {
            let resumed = json!({ "last_event_id": id });
            prelude.push(Event::new().event("resumed").json(&resumed).encode());
        }
        (Some(_), _) => {
            // Not one of our ids: say so rather than silently starting over.
            let reason = json!({ "reason": "unknown_id" });
            prelude.push(Event::new().event("resync").json(&reason).encode());
        }
        (None, _) => {}
    }
    let frames = with_prelude(prelude, numbered_events(after, count, interval));
    sse_response(frames, &state.core.streams, &state.core.metrics)
}

/// The position an id names: decimal digits only (`+4` and ` 4` are none of ours), and a number
/// past `u64::MAX` is past every count, so it counts as the largest.
fn position(id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(id.parse().unwrap_or(u64::MAX))
}

/// Events `after+1 ..= count` (forever when `count` is 0), the first at once, then one per
/// `interval`; the stream ends right after the last one (the original idled one more interval).
fn numbered_events(after: u64, count: u64, interval: Duration) -> FrameStream {
    let next = after.saturating_add(1);
    Box::pin(futures_util::stream::unfold(next, move |i| async move {
        if count != 0 && i > count {
            return None;
        }
        if i > next {
            tokio::time::sleep(interval).await;
        }
        let time = chrono::Local::now().format("%H:%M:%S");
        let frame = Event::new().id(i).data(format!("Event {i} at {time}")).encode();
        // At u64::MAX the count is exhausted: `count != 0 && i > count` cannot hold, so stop here.
        let following = i.checked_add(1)?;
        Some((frame.into_bytes(), following))
    }))
}
