//! `basic-client`: prints every event of a stream, reconnecting and resuming as a browser would.

use std::time::Duration;

use http::HeaderValue;
use http::header::AUTHORIZATION;
use sse_core::client::{EventSource, SseItem};
use tokio_util::sync::CancellationToken;

/// Prints events from `url` until the server says it is done (204), a fatal error, or `shutdown`.
/// Returns whether it ended cleanly.
pub async fn run(
    url: &str,
    last_event_id: Option<&str>,
    token: Option<&str>,
    shutdown: CancellationToken,
) -> bool {
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build();
    let Ok(http) = http else {
        eprintln!("could not build the HTTP client");
        return false;
    };
    let mut source = EventSource::new(http, url);
    if let Some(id) = last_event_id {
        source = source.last_event_id(id);
    }
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        source = source.header(AUTHORIZATION, value);
    }
    println!("connecting to {url}");
    loop {
        let item = tokio::select! {
            () = shutdown.cancelled() => return true,
            item = source.next() => item,
        };
        match item {
            None => {
                println!("the server has nothing more (204 No Content): done");
                return true;
            }
            Some(Ok(SseItem::Open)) => {
                let last = source.current_last_event_id();
                if last.is_empty() {
                    println!("connected");
                } else {
                    println!("connected, resuming after Last-Event-ID {last}");
                }
            }
            Some(Ok(SseItem::Event(event))) => {
                println!(
                    "[id {}] {}: {}",
                    display_id(&event.last_event_id),
                    event.event,
                    event.data
                );
            }
            Some(Err(error)) if error.is_retryable() => println!("{error}; reconnecting"),
            Some(Err(error)) => {
                eprintln!("{error}; giving up");
                return false;
            }
        }
    }
}

fn display_id(id: &str) -> &str {
    if id.is_empty() { "-" } else { id }
}
