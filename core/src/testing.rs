//! Helpers for tests that talk to a real server (enabled by the `testing` feature): serve a
//! router on an ephemeral port, read an event stream with the crate's own parser, and await a
//! step ([`within`]) or a condition ([`eventually`]) with a watchdog instead of sleeping. The
//! core's tests and the apps' tests share these, so each is written once.
//!
//! These panic on failure, as test helpers do.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod fault;
pub mod programs;

use std::collections::VecDeque;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use crate::wire::{MessageEvent, Parser};

/// How long a test step may take before it fails as hung. A watchdog, not a timing assertion:
/// it is far longer than anything should take.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Serves `app` on 127.0.0.1:0 with the same connection loop the apps use; returns the base URL
/// and a token that stops it.
pub async fn serve(app: Router) -> (String, CancellationToken) {
    serve_with_port(|_| app).await
}

/// As [`serve`], for a router that must know its port first (a token's cookie is named for it):
/// binds, then builds the router with the port it got.
pub async fn serve_with_port(build: impl FnOnce(u16) -> Router) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = build(addr.port());
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let settings = crate::edge::connections::ConnectionSettings::default();
        crate::edge::connections::serve(listener, app, stopped, settings).await.unwrap();
    });
    (format!("http://{addr}"), stop)
}

/// The port of a base URL such as `http://127.0.0.1:4242` (as [`serve`] returns).
pub fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a base URL with a port")
}

/// One HTTP client for every test stream: building a client loads the system's root
/// certificates (with a TLS backend compiled in), which costs milliseconds per client.
fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new).clone()
}

/// An open event stream, read with the crate's own parser.
#[derive(Debug)]
pub struct Stream {
    /// The response being read.
    pub response: reqwest::Response,
    parser: Parser,
    queue: VecDeque<MessageEvent>,
}

impl Stream {
    /// GETs `url` and checks the answer is `200 text/event-stream`.
    pub async fn open(url: &str) -> Stream {
        Stream::open_with(client().get(url)).await
    }

    /// GETs `url`, sending `Last-Event-ID` when given.
    pub async fn resume(url: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = client().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Stream::open_with(request).await
    }

    /// Sends `request` and checks the answer is `200 text/event-stream`.
    pub async fn open_with(request: reqwest::RequestBuilder) -> Stream {
        Stream::from_response(request.send().await.unwrap())
    }

    /// Reads a response that must be `200 text/event-stream`.
    pub fn from_response(response: reqwest::Response) -> Stream {
        assert_eq!(response.status(), 200, "{}", response.url());
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream { response, parser: Parser::new(), queue: VecDeque::new() }
    }

    /// The next event, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<MessageEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            let chunk = self.response.chunk().await.ok()??;
            self.queue.extend(self.parser.feed(&chunk));
        }
    }

    /// The next `n` events (panics if the stream ends first).
    pub async fn take(&mut self, n: usize) -> Vec<MessageEvent> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            events.push(self.next().await.expect("stream ended early"));
        }
        events
    }
}

/// Waits until `condition` holds, yielding to other tasks in between. A watchdog turns a
/// condition that never comes true into a failure instead of a hung test (it is not a timing
/// assertion: it is far longer than anything should take).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(WATCHDOG, wait).await.is_err() {
        panic!("never happened: {what}");
    }
}

/// Awaits `future`, failing the test if it has not finished within the [`WATCHDOG`] (`what`
/// names the step in the failure).
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WATCHDOG, future).await.unwrap_or_else(|_| panic!("{what} did not finish"))
}

/// The next event named `name` on `stream`, skipping events of other names (a chat's presence
/// and typing, say); fails if the stream ends first or the [`WATCHDOG`] fires.
pub async fn next_event(stream: &mut Stream, name: &str) -> MessageEvent {
    within(name, async {
        loop {
            let event = stream.next().await.expect("the stream ended");
            if event.event == name {
                return event;
            }
        }
    })
    .await
}

/// The data of the next event named `name` on `stream`, read as JSON (see [`next_event`]).
pub async fn next_named(stream: &mut Stream, name: &str) -> Value {
    let event = next_event(stream, name).await;
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{name} is not JSON ({e})"))
}

/// The data of the next `message` event on `stream`, read as JSON (see [`next_event`]).
pub async fn next_message(stream: &mut Stream) -> Value {
    next_named(stream, "message").await
}
