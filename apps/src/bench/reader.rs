//! The load generator's stream reader, shared by every scenario.
//!
//! A reader is a raw TCP connection speaking HTTP/1.0, so the body is the bare event stream (no
//! chunked framing), parsed with the core's own [`Parser`]: a full HTTP client per reader would
//! make the load generator, not the server, the bottleneck at 10,000 readers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use sse_core::wire::{MessageEvent, Parser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Counts readers whose stream has started, and wakes whoever waits for a number of them.
#[derive(Debug, Default)]
pub struct Connected {
    count: AtomicUsize,
    changed: Notify,
}

impl Connected {
    /// Counts one more reader in.
    pub fn one_more(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until `target` readers have started (a minute at most).
    pub async fn wait_for(&self, target: usize) -> anyhow::Result<()> {
        let all = async {
            loop {
                let changed = self.changed.notified();
                if self.count.load(Ordering::SeqCst) >= target {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .context("the readers did not all connect")
    }
}

/// Reads the event stream at `path` on `addr` (with extra header lines, each ending in `\r\n`)
/// until it ends or `stop`: counts itself in `connected` once the response head is in, then hands
/// every batch of parsed events to `on_events`. At most as many readers connect at once as
/// `connecting` has permits, so a burst does not overflow the server's backlog.
pub async fn read_events(
    addr: &str,
    path: &str,
    headers: &str,
    connecting: &Semaphore,
    connected: &Connected,
    stop: &CancellationToken,
    mut on_events: impl FnMut(&[MessageEvent]),
) {
    let mut parser = Parser::new();
    let read = read_body(addr, path, headers, connecting, connected, stop, |body| {
        on_events(&parser.feed(body));
    });
    if !read.await {
        eprintln!("a reader could not connect");
        // Counted all the same, so the run goes on without it and its loss shows in the share
        // delivered, rather than the run waiting a minute for it.
        connected.one_more();
    }
}

/// Like [`read_events`], but hands over the body's bytes as they arrive, unparsed (for
/// scenarios where even the core's parser would make the load generator the bottleneck).
/// Returns false when the connection could not be made.
pub async fn read_body(
    addr: &str,
    path: &str,
    headers: &str,
    connecting: &Semaphore,
    connected: &Connected,
    stop: &CancellationToken,
    mut on_body: impl FnMut(&[u8]),
) -> bool {
    let permit = connecting.acquire().await;
    let Ok(mut socket) = super::dial::dial(addr).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{headers}\r\n"
    );
    if socket.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    drop(permit);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut head = Vec::new();
    let mut in_body = false;
    // One cancellation future for the whole stream: made anew for every read, it would register
    // with the token and deregister again (a lock each) a million times a second at 10k × 100.
    // `biased` polls the read first and spares select!'s random pick.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            biased;
            read = socket.read(&mut buffer) => read,
            () = &mut cancelled => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if in_body {
            on_body(&buffer[..n]);
            continue;
        }
        head.extend_from_slice(&buffer[..n]);
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        if !is_200(&head) {
            // A refusal (a 502 from a proxy, a 503 at a cap) is no stream: never counted in.
            break;
        }
        in_body = true;
        connected.one_more();
        on_body(&head[end + 4..]);
    }
    in_body
}

/// Whether a response head's status line says `200`.
fn is_200(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.") && matches!(head.get(8..13), Some(b" 200 " | b" 200\r"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_200_head_starts_a_stream() {
        assert!(super::is_200(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(super::is_200(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"));
        assert!(!super::is_200(b"HTTP/1.1 502 Bad Gateway\r\n\r\n"));
        assert!(!super::is_200(b"HTTP/1.1 2000\r\n\r\n"));
        assert!(!super::is_200(b"junk"));
    }
}
