//! The `limit` baseline: what one core can do with no framework at all.
//!
//! Each event is encoded once, and one loop writes it straight to every socket with a
//! non-blocking `write`. Events that queue up while a sweep is under way go out together in the
//! next sweep, one write per socket. Only a socket that cannot take a whole write gets help: the
//! rest is queued for it, and its own task finishes the write when the socket drains. There is
//! no HTTP beyond reading the request head and writing a fixed response head, and no keep-alive
//! comments.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use sse_core::sync::lock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::sync::mpsc::{self, UnboundedReceiver};

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
Cache-Control: no-cache\r\nConnection: close\r\n\r\n";

/// A client this far behind is dropped.
const MAX_PENDING: usize = 4 << 20;

/// One client's socket and what it still has to receive.
#[derive(Debug)]
struct Connection {
    socket: TcpStream,
    pending: Mutex<BytesMut>,
    drained: Notify,
    closed: AtomicBool,
}

type Connections = Arc<Mutex<Vec<Arc<Connection>>>>;

/// Serves event streams on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    commands: UnboundedReceiver<String>,
) -> std::io::Result<()> {
    let connections = Connections::default();
    let (frames, queued) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(super::follow_orders(commands, move |seq, data| {
        let _ = frames.send(Bytes::from(format!("id: {seq}\ndata: {data}\n\n")));
    }));
    tokio::spawn(fan_out(queued, connections.clone()));
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                tokio::spawn(serve_one(socket, connections.clone()));
            }
            Err(error) => eprintln!("accept: {error}"),
        }
    }
}

/// Sweeps every socket with whatever events have queued since the last sweep.
async fn fan_out(mut queued: UnboundedReceiver<Bytes>, connections: Connections) {
    let mut batch = BytesMut::new();
    while let Some(first) = queued.recv().await {
        batch.extend_from_slice(&first);
        while let Ok(more) = queued.try_recv() {
            batch.extend_from_slice(&more);
        }
        let bytes = batch.split().freeze();
        lock(&connections).retain(|connection| write_or_queue(connection, &bytes));
        // Let the publisher and the connections' own tasks run between sweeps.
        tokio::task::yield_now().await;
    }
}

/// Writes `bytes` to the socket now if it takes them, else queues the rest for the connection's
/// task. False when the connection is gone (or too far behind, which closes it).
fn write_or_queue(connection: &Connection, bytes: &Bytes) -> bool {
    if connection.closed.load(Ordering::Relaxed) {
        return false;
    }
    let mut pending = lock(&connection.pending);
    if pending.is_empty() {
        match connection.socket.try_write(bytes) {
            Ok(n) if n == bytes.len() => return true,
            Ok(n) => pending.extend_from_slice(&bytes[n..]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => pending.extend_from_slice(bytes),
            Err(_) => connection.closed.store(true, Ordering::Relaxed),
        }
    } else {
        pending.extend_from_slice(bytes);
    }
    if pending.len() > MAX_PENDING {
        connection.closed.store(true, Ordering::Relaxed);
    }
    drop(pending);
    connection.drained.notify_one();
    !connection.closed.load(Ordering::Relaxed)
}

/// Reads the request head, answers with the stream's head, joins the sweep, then finishes the
/// writes the sweep could not.
async fn serve_one(mut socket: TcpStream, connections: Connections) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(n) if n > 0 && head.len() + n <= 8192 => head.extend_from_slice(&buffer[..n]),
            _ => return,
        }
    }
    if socket.write_all(HEAD).await.is_err() {
        return;
    }
    let connection = Arc::new(Connection {
        socket,
        pending: Mutex::default(),
        drained: Notify::new(),
        closed: AtomicBool::new(false),
    });
    lock(&connections).push(connection.clone());
    loop {
        connection.drained.notified().await;
        loop {
            if connection.closed.load(Ordering::Relaxed)
                || connection.socket.writable().await.is_err()
            {
                connection.closed.store(true, Ordering::Relaxed);
                return;
            }
            let mut pending = lock(&connection.pending);
            if pending.is_empty() {
                break;
            }
            match connection.socket.try_write(&pending) {
                Ok(n) => pending.advance(n),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    connection.closed.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}
