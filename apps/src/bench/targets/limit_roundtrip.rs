//! The `limit` baseline of `bench roundtrip`: the Go original's bidirectional protocol with no
//! framework at all, to show what one core can do here for a round trip.
//!
//! `GET /events?client_id=X` answers the stream's head and the `client_id` greeting, then the
//! connection is X's stream; `GET /trigger?client_id=X&message=M` writes a request frame straight
//! to X's socket and waits for its answer; `POST /response` (header `Client-ID`, body
//! `{"id","result"}`) hands the result to the waiting trigger. HTTP/1.1 kept alive, heads parsed
//! with `httparse`, one task per connection, and nothing else: no router, no middleware, no
//! sessions kept through disconnects, no checks beyond what the protocol needs. `GET /metrics`
//! gives one series, `sse_connections_accepted_total`, so the bench can count its accepts as it
//! counts ours ([`crate::bench::accepted`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use sse_core::sync::lock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// How long a trigger waits for its answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Streams by client id, and triggers waiting by request id.
#[derive(Default)]
struct Server {
    streams: Mutex<HashMap<String, Arc<tokio::sync::Mutex<OwnedWriteHalf>>>>,
    waiting: Mutex<HashMap<u64, oneshot::Sender<String>>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
}

/// One request: what the routes need of it.
pub(super) struct Asked {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) client_id: Option<String>,
    pub(super) body: Vec<u8>,
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let server = Arc::new(Server::default());
    loop {
        let (socket, _) = listener.accept().await?;
        server.accepted.fetch_add(1, Ordering::Relaxed);
        socket.set_nodelay(true)?;
        tokio::spawn(connection(socket, server.clone()));
    }
}

/// Answers requests on one connection until it closes, or becomes a client's stream.
async fn connection(mut socket: TcpStream, server: Arc<Server>) {
    let mut buffer = Vec::with_capacity(4096);
    while let Some(asked) = read_request(&mut socket, &mut buffer).await {
        let (status, body) = match (asked.method.as_str(), asked.path.as_str()) {
            ("GET", "/events") => {
                return stream(socket, &server, query(&asked.query, "client_id")).await;
            }
            ("GET", "/trigger") => trigger(&server, &asked).await,
            ("POST", "/response") => respond(&server, &asked),
            ("GET", "/metrics") => {
                let accepted = server.accepted.load(Ordering::Relaxed);
                (200, format!("sse_connections_accepted_total {accepted}\n"))
            }
            _ => (404, "{}".to_owned()),
        };
        if !write_response(&mut socket, status, &body).await {
            return;
        }
    }
}

/// Writes a JSON response (head and body in one write); `false` when the connection is gone.
pub(super) async fn write_response(socket: &mut TcpStream, status: u16, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    socket.write_all([head.as_bytes(), body.as_bytes()].concat().as_slice()).await.is_ok()
}

/// The most a request's head and body may take; past it the connection is closed.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Reads one request (head and `Content-Length` body) from `socket`, keeping what follows it.
/// `None` when the connection closes, or sends what is not an HTTP request or is too large.
pub(super) async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Asked> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let head = match request.parse(buffer) {
            Ok(httparse::Status::Complete(head)) => head,
            Ok(httparse::Status::Partial) if buffer.len() < MAX_REQUEST_BYTES => {
                read_more(socket, buffer).await?;
                continue;
            }
            Ok(httparse::Status::Partial) | Err(_) => return None,
        };
        let header = |name: &str| {
            request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
        };
        let length: usize = header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
            .unwrap_or(0);
        let client_id = header("client-id").map(|v| String::from_utf8_lossy(v).into_owned());
        let target = request.path.unwrap_or("/").to_owned();
        let method = request.method.unwrap_or("GET").to_owned();
        let end = head.checked_add(length).filter(|end| *end <= MAX_REQUEST_BYTES)?;
        while buffer.len() < end {
            read_more(socket, buffer).await?;
        }
        let body = buffer[head..end].to_vec();
        buffer.drain(..end);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        return Some(Asked {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            client_id,
            body,
        });
    }
}

async fn read_more(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match socket.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn query(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The connection becomes `client`'s stream until it closes.
async fn stream(socket: TcpStream, server: &Server, client: Option<String>) {
    let Some(client) = client else { return };
    let (mut read, mut write) = socket.into_split();
    let greeting = serde_json::json!({"type": "client_id", "id": client});
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\ndata: {greeting}\n\n"
    );
    if write.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let write = Arc::new(tokio::sync::Mutex::new(write));
    lock(&server.streams).insert(client.clone(), write.clone());
    let mut scratch = [0u8; 256];
    while matches!(read.read(&mut scratch).await, Ok(n) if n > 0) {}
    let mut streams = lock(&server.streams);
    if streams.get(&client).is_some_and(|current| Arc::ptr_eq(current, &write)) {
        streams.remove(&client);
    }
}

/// Sends the request down the client's stream and waits for its answer.
async fn trigger(server: &Server, asked: &Asked) -> (u16, String) {
    let (Some(client), Some(message)) =
        (query(&asked.query, "client_id"), query(&asked.query, "message"))
    else {
        return (400, "{}".to_owned());
    };
    let Some(stream) = lock(&server.streams).get(&client).cloned() else {
        return (404, "{}".to_owned());
    };
    let id = server.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let (answered, answer) = oneshot::channel();
    lock(&server.waiting).insert(id, answered);
    let request =
        serde_json::json!({"id": id.to_string(), "message": message, "method": "analyze"});
    let frame = format!("data: {request}\n\n");
    if stream.lock().await.write_all(frame.as_bytes()).await.is_err() {
        lock(&server.waiting).remove(&id);
        return (404, "{}".to_owned());
    }
    match tokio::time::timeout(TIMEOUT, answer).await {
        Ok(Ok(result)) => {
            (200, serde_json::json!({"id": id.to_string(), "result": result}).to_string())
        }
        _ => {
            lock(&server.waiting).remove(&id);
            (504, "{}".to_owned())
        }
    }
}

/// Hands an answer to the trigger waiting for it.
fn respond(server: &Server, asked: &Asked) -> (u16, String) {
    let Ok(answer) = serde_json::from_slice::<Value>(&asked.body) else {
        return (400, "{}".to_owned());
    };
    let id = answer["id"].as_str().and_then(|id| id.parse::<u64>().ok());
    let waiting = id.and_then(|id| lock(&server.waiting).remove(&id));
    let result = answer["result"].as_str().unwrap_or_default().to_owned();
    match (waiting, &asked.client_id) {
        (Some(waiting), Some(_)) => {
            let _ = waiting.send(result);
            // Empty, as ours and the Go original answer: a Go client closes this body unread,
            // and reuses its connection only when nothing was left in it.
            (200, String::new())
        }
        _ => (404, "{}".to_owned()),
    }
}
