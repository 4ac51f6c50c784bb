//! Test helpers: a real server on an ephemeral port, and a small SSE reader.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;

use axum::Router;
use sse_core::wire::{MessageEvent, Parser};
use tokio_util::sync::CancellationToken;

/// Serves `app` on 127.0.0.1:0; returns the base URL and a token that stops it.
pub async fn serve(app: Router) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(stopped.cancelled_owned())
            .await
            .unwrap();
    });
    (format!("http://{addr}"), stop)
}

/// An open event stream read with the crate's own parser.
pub struct Stream {
    pub response: reqwest::Response,
    parser: Parser,
    queue: VecDeque<MessageEvent>,
}

impl Stream {
    /// GETs `url` (with `Last-Event-ID` when given) and checks it is an event stream.
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {url}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(content_type, "text/event-stream");
        Stream { response, parser: Parser::new(), queue: VecDeque::new() }
    }

    /// The next event, or `None` when the stream ends.
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
/// condition that never comes true into a failure instead of a hung test (not a timing
/// assertion: it is far longer than anything should take).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(60), wait).await.is_err() {
        panic!("never happened: {what}");
    }
}
