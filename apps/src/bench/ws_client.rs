//! The load generator's WebSocket client: the opening handshake on a raw TCP connection, then
//! the connection's bytes as they arrive, to be split by [`super::ws_scan`].
//!
//! Why not tokio-tungstenite's client, the crate axum's `ws` is built on: the SSE readers this
//! client stands beside are raw sockets scanned in place ([`super::reader`], [`super::scan`]),
//! because at 10,000 readers and a million deliveries a second the load generator's one core is
//! already 88-99% busy. A full client per connection costs more per message (a `Message` and a
//! reference-counted buffer each, waker bookkeeping on every poll) and per connection (a 128 KiB
//! read buffer, zero-filled on its first read): the WebSocket rows would pay more of that core
//! than the SSE rows do, and their latencies would describe the client. So both kinds of reader
//! cost the same here: one read per arrival, scanned in place, one clock reading per read. The
//! handshake's key, and the check of the server's answer to it, still come from `tungstenite`.

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

use super::reader::Connected;

/// The largest response head the handshake reads.
const MAX_HEAD: usize = 8 * 1024;

/// Opens a WebSocket at `path` on `addr` (at most as many connecting at once as `connecting`
/// has permits): the socket, and whatever the server sent after its `101` (frames already).
pub async fn open(
    addr: &str,
    path: &str,
    connecting: &Semaphore,
) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let permit = connecting.acquire().await;
    let mut socket = super::dial::dial(addr).await.context("connecting")?;
    let key = generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.context("sending the handshake")?;
    drop(permit);
    let mut received = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(end) = memchr::memmem::find(&received, b"\r\n\r\n") {
            break end + 4;
        }
        anyhow::ensure!(received.len() < MAX_HEAD, "a response head over {MAX_HEAD} bytes");
        let mut chunk = [0u8; 1024];
        let n = socket.read(&mut chunk).await.context("reading the handshake's answer")?;
        anyhow::ensure!(n > 0, "the server closed the connection during the handshake");
        received.extend_from_slice(&chunk[..n]);
    };
    check_answer(&received[..head_end], &key)?;
    Ok((socket, received.split_off(head_end)))
}

/// The server switched protocols, and proved it read this handshake's key.
fn check_answer(head: &[u8], key: &str) -> anyhow::Result<()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(head).context("a response head")?;
    let status = response.code.context("a status code")?;
    anyhow::ensure!(status == 101, "the server answered {status}, not 101 Switching Protocols");
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .context("no Sec-WebSocket-Accept")?;
    anyhow::ensure!(
        accept.value == derive_accept_key(key.as_bytes()).as_bytes(),
        "a Sec-WebSocket-Accept for another key"
    );
    Ok(())
}

/// Like [`super::reader::read_body`] for a WebSocket: opens it at `path`, counts itself in
/// `connected` once the handshake is done, then hands over the connection's bytes as they
/// arrive until it ends or `stop`. Returns false when the connection could not be made.
pub async fn read_stream(
    addr: &str,
    path: &str,
    connecting: &Semaphore,
    connected: &Connected,
    stop: &CancellationToken,
    mut on_bytes: impl FnMut(&[u8]),
) -> bool {
    let Ok((mut socket, first)) = open(addr, path, connecting).await else {
        return false;
    };
    connected.one_more();
    on_bytes(&first);
    let mut buffer = vec![0u8; 16 * 1024];
    // As in `read_body`: one cancellation future for the whole connection, the read polled first.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            biased;
            read = socket.read(&mut buffer) => read,
            () = &mut cancelled => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => on_bytes(&buffer[..n]),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::check_answer;

    #[test]
    fn the_answer_must_switch_protocols_for_this_key() {
        // RFC 6455 §1.3's own example.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        check_answer(good, key).expect("the RFC's handshake");
        let other_key = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert!(check_answer(other_key, key).is_err());
        let refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        let error = check_answer(refused, key).expect_err("a 400 is no handshake");
        assert!(error.to_string().contains("400"), "{error}");
        assert!(check_answer(b"garbage\r\n\r\n", key).is_err());
    }
}
