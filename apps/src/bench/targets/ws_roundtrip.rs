//! The WebSocket target of `bench roundtrip`: the Go original's round trip on axum's own
//! WebSocket support, with one socket per client carrying both the request and its answer.
//!
//! - `GET /events?client_id=X` upgrades to a WebSocket: X's connection from then on.
//! - `GET /trigger?client_id=X&message=M` hands the request to X's connection task, which sends
//!   `{"id","message","method":"analyze"}` down the socket as a text message; X answers with
//!   `{"id","result"}` up the same socket, and the trigger returns `{"id","result"}`. It answers
//!   400 without both parameters, 404 when X has no connection or it ended before answering,
//!   504 after 30 s.
//! - `GET /metrics` gives one series, `sse_connections_accepted_total`, so the bench counts this
//!   server's accepts as it counts ours ([`crate::bench::accepted`]).
//!
//! Written as a careful axum server would: each connection keeps the requests it sent and their
//! waiting triggers, so an answer can only complete a request of its own connection (the POST
//! way needs the core's 403 check for that), and a connection that ends fails its waiting
//! triggers at once. Triggers reach a connection through a bounded channel, so a client that
//! stops reading holds its callers back instead of filling memory. `TCP_NODELAY` on every
//! connection. What it does not do: keep a client's requests through a reconnect (the POST way
//! keeps a session's queue), check `Origin` or a token, or ping (the bench's sessions never
//! stay quiet).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_core::sync::lock;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// How long a trigger waits for its answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Requests queued for one connection before their triggers wait to hand theirs over.
const QUEUE: usize = 256;

/// A trigger's request on its way to a connection, and where its answer goes.
struct Ask {
    message: String,
    answer: oneshot::Sender<(u64, String)>,
}

/// Connections by client id, and the accept count.
#[derive(Clone, Default)]
struct Server {
    clients: Arc<Mutex<HashMap<String, mpsc::Sender<Ask>>>>,
    accepted: Arc<AtomicU64>,
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let server = Server::default();
    let accepted = server.accepted.clone();
    let listener = listener.tap_io(move |socket| {
        accepted.fetch_add(1, Ordering::Relaxed);
        let _ = socket.set_nodelay(true);
    });
    let app = Router::new()
        .route("/events", get(events))
        .route("/trigger", get(trigger))
        .route("/metrics", get(metrics))
        .with_state(server);
    axum::serve(listener, app).await
}

#[derive(Deserialize)]
struct Params {
    client_id: Option<String>,
    message: Option<String>,
}

async fn events(
    upgrade: WebSocketUpgrade,
    State(server): State<Server>,
    Query(params): Query<Params>,
) -> Response {
    let Some(client) = params.client_id else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "client_id is required");
    };
    upgrade.on_upgrade(move |socket| connection(socket, client, server))
}

/// Registers the client's connection (replacing an older one), then serves it until it ends.
async fn connection(socket: WebSocket, client: String, server: Server) {
    let (asks, queued) = mpsc::channel(QUEUE);
    lock(&server.clients).insert(client.clone(), asks.clone());
    relay(socket, queued).await;
    let mut clients = lock(&server.clients);
    if clients.get(&client).is_some_and(|current| current.same_channel(&asks)) {
        clients.remove(&client);
    }
}

/// The triggers a connection's requests wait for, by request id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<(u64, String)>>>>;

/// Sends each queued request down the socket and hands each answer to its trigger, until either
/// side ends; the triggers still waiting then fail at once.
///
/// One task writes and another reads, as axum's own examples have it: tungstenite zero-fills its
/// 128 KiB read buffer each time its read side is polled, and a single `select!` over both would
/// poll it for every request sent as well as for every answer.
async fn relay(socket: WebSocket, queued: mpsc::Receiver<Ask>) {
    let (outgoing, incoming) = socket.split();
    let waiting = Waiting::default();
    let mut sending = tokio::spawn(send_requests(outgoing, queued, waiting.clone()));
    let mut reading = tokio::spawn(take_answers(incoming, waiting));
    tokio::select! {
        _ = &mut sending => reading.abort(),
        _ = &mut reading => sending.abort(),
    }
}

/// Numbers each request, records its trigger, and sends it.
async fn send_requests(
    mut outgoing: SplitSink<WebSocket, Message>,
    mut queued: mpsc::Receiver<Ask>,
    waiting: Waiting,
) {
    let mut last_id = 0u64;
    while let Some(ask) = queued.recv().await {
        last_id += 1;
        let request =
            json!({"id": last_id.to_string(), "message": ask.message, "method": "analyze"});
        {
            let mut waiting = lock(&waiting);
            // Triggers that gave up are forgotten here rather than on a timer.
            if waiting.len() >= QUEUE {
                waiting.retain(|_, trigger| !trigger.is_closed());
            }
            waiting.insert(last_id, ask.answer);
        }
        if outgoing.send(Message::Text(request.to_string().into())).await.is_err() {
            return;
        }
    }
}

/// Hands every answer to the trigger waiting for it, until the client closes.
async fn take_answers(mut incoming: SplitStream<WebSocket>, waiting: Waiting) {
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(text) => {
                let Some((id, result)) = read_answer(text.as_str()) else { continue };
                if let Some(trigger) = lock(&waiting).remove(&id) {
                    let _ = trigger.send((id, result));
                }
            }
            Message::Close(_) => return,
            _ => {}
        }
    }
}

/// The id and result of an answer `{"id":"N","result":"…"}`.
fn read_answer(text: &str) -> Option<(u64, String)> {
    let answer: Value = serde_json::from_str(text).ok()?;
    let id = answer["id"].as_str()?.parse().ok()?;
    Some((id, answer["result"].as_str()?.to_owned()))
}

async fn trigger(State(server): State<Server>, Query(params): Query<Params>) -> Response {
    let (Some(client), Some(message)) = (params.client_id, params.message) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "client_id and message are required");
    };
    let Some(connection) = lock(&server.clients).get(&client).cloned() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such client");
    };
    let (answer, answered) = oneshot::channel();
    if connection.send(Ask { message, answer }).await.is_err() {
        return error(StatusCode::NOT_FOUND, "not_found", "the client went away");
    }
    match tokio::time::timeout(TIMEOUT, answered).await {
        Ok(Ok((id, result))) => {
            axum::Json(json!({"id": id.to_string(), "result": result})).into_response()
        }
        Ok(Err(_)) => {
            error(StatusCode::NOT_FOUND, "not_found", "the client went away before answering")
        }
        Err(_) => {
            error(StatusCode::GATEWAY_TIMEOUT, "timeout", "the client did not answer in time")
        }
    }
}

async fn metrics(State(server): State<Server>) -> String {
    format!("sse_connections_accepted_total {}\n", server.accepted.load(Ordering::Relaxed))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::read_answer;

    #[test]
    fn answers_read_back_and_anything_else_is_ignored() {
        assert_eq!(read_answer(r#"{"id":"17","result":"ok"}"#), Some((17, "ok".to_owned())));
        assert_eq!(read_answer(r#"{"id":17,"result":"ok"}"#), None);
        assert_eq!(read_answer(r#"{"id":"x","result":"ok"}"#), None);
        assert_eq!(read_answer("not json"), None);
    }
}
