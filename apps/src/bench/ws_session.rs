//! One session of `bench roundtrip --targets ws`: a WebSocket that carries requests down and
//! answers up ([`super::targets::ws_roundtrip`]).
//!
//! It answers as the SSE sessions do ([`super::roundtrip`]), every request with
//! `{"id":"…","result":"ok"}`, in order, but on the socket the request came on: the answers to
//! every request one read brought go out in one write, as answers posted back to back on a
//! kept-alive connection would.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::reader::Connected;
use super::roundtrip::request_id;
use super::ws_client;
use super::ws_scan::{Frame, FrameScanner, masked_text};

/// Connects as `name` and answers every request until the connection ends or `stop`; counts
/// itself in `connected` once the handshake is done (or failed, saying so).
pub async fn answer_requests(
    addr: &str,
    name: &str,
    connecting: &Semaphore,
    connected: &Connected,
    stop: &CancellationToken,
) {
    let path = format!("/events?client_id={name}");
    let (mut socket, first) = match ws_client::open(addr, &path, connecting).await {
        Ok(opened) => opened,
        Err(error) => {
            eprintln!("session {name} could not connect: {error:#}");
            return;
        }
    };
    connected.one_more();
    if socket.set_nodelay(true).is_err() {
        return;
    }
    let mut scanner = FrameScanner::default();
    let mut answers = Vec::new();
    let mut answer_all = |bytes: &[u8], answers: &mut Vec<u8>| {
        scanner.feed(bytes, |frame| {
            if let Frame::Text(data) = frame
                && let Some(id) = request_id(data)
            {
                let answer = format!(r#"{{"id":"{id}","result":"ok"}}"#);
                answers.extend_from_slice(&masked_text(answer.as_bytes(), rand::random()));
            }
        });
    };
    answer_all(&first, &mut answers);
    let mut buffer = vec![0u8; 16 * 1024];
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        if !answers.is_empty() {
            if socket.write_all(&answers).await.is_err() {
                return;
            }
            answers.clear();
        }
        let read = tokio::select! {
            biased;
            read = socket.read(&mut buffer) => read,
            () = &mut cancelled => return,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => answer_all(&buffer[..n], &mut answers),
        }
    }
}
