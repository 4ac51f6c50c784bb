//! The WebSocket baseline of `bench fanout`, `bench idle` and `bench connect`: axum's own
//! WebSocket support (`WebSocketUpgrade`, tungstenite underneath), written the way a careful
//! axum server publishes one feed to many clients.
//!
//! `GET /events` upgrades to a WebSocket, and every event goes down it as one text message with
//! the same data as the SSE targets' (`<seq> <due µs> xxx…`). What it does:
//!
//! - one tokio broadcast channel; an event's text is made once and shared by every connection
//!   (`Utf8Bytes` is a reference-counted buffer), and each connection's task frames it and writes
//!   it to its socket (`send` flushes every message: one write each);
//! - a second task per connection reads the socket, so a client's close or a dead connection
//!   ends both at once (tungstenite answers the client's pings on the way);
//! - a ping every 15 s, so proxies do not cut a quiet connection (the SSE targets' comment line);
//! - a connection that falls 1,024 events behind is closed with code 1013 (try again later), so
//!   the client knows it missed some: a gap is never silent (a client that takes its data slowly
//!   only holds its own task: the broadcast channel keeps no copy per connection);
//! - `TCP_NODELAY` on every connection, as axum's documentation advises for latency.
//!
//! What it does not do: join events that are already waiting into one write (ours does), resume
//! (a client that reconnects starts from now: WebSocket has no `Last-Event-ID`), check the
//! `Origin` or a token (a real server must check `Origin`: a browser sends its cookies with a
//! cross-site WebSocket handshake), or change axum's buffer sizes: tungstenite reads into a
//! 128 KiB buffer per connection, zero-filled before each read, which `bench idle` sees.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, MissedTickBehavior};

/// Events a connection may fall behind before it is closed.
const BACKLOG: usize = 1024;

/// How long a lagging client has to take its close frame.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// How often a connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(15);

/// Serves `GET /events` on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    commands: UnboundedReceiver<String>,
) -> std::io::Result<()> {
    let (sender, _) = broadcast::channel::<Utf8Bytes>(BACKLOG);
    let publisher = sender.clone();
    tokio::spawn(super::follow_orders(commands, move |_, data| {
        let _ = publisher.send(Utf8Bytes::from(data));
    }));
    let app = Router::new().route("/events", get(events)).with_state(sender);
    let listener = listener.tap_io(|socket| {
        let _ = socket.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

/// Subscribes before the upgrade, so events published while it completes are not lost.
async fn events(
    upgrade: WebSocketUpgrade,
    State(sender): State<broadcast::Sender<Utf8Bytes>>,
) -> Response {
    let events = sender.subscribe();
    upgrade.on_upgrade(move |socket| forward(socket, events))
}

/// Serves one client until either side ends: one task forwards the events, another reads.
///
/// Two tasks, as axum's own examples have it, and not one `select!` over both: tungstenite
/// zero-fills its 128 KiB read buffer each time its read side is polled, so a loop that polls
/// it on every event pays a 128 KiB `memset` per event (27% of this server's CPU at 1,000 × 100
/// when it did). A reading task of its own is polled only when the socket has something to read.
async fn forward(socket: WebSocket, events: broadcast::Receiver<Utf8Bytes>) {
    let (outgoing, incoming) = socket.split();
    let mut sending = tokio::spawn(send_events(outgoing, events));
    let mut reading = tokio::spawn(read_until_closed(incoming));
    tokio::select! {
        _ = &mut sending => reading.abort(),
        _ = &mut reading => sending.abort(),
    }
}

/// Writes every event, and a ping now and then, until the client lags or the socket fails.
async fn send_events(
    mut outgoing: SplitSink<WebSocket, Message>,
    mut events: broadcast::Receiver<Utf8Bytes>,
) {
    let mut pings = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let sent = tokio::select! {
            event = events.recv() => match event {
                Ok(text) => outgoing.send(Message::Text(text)).await,
                Err(RecvError::Lagged(_)) => {
                    let close = CloseFrame { code: close_code::AGAIN, reason: "lagged".into() };
                    let close = outgoing.send(Message::Close(Some(close)));
                    // A client that lags may have stopped reading altogether.
                    let _ = tokio::time::timeout(CLOSE_WITHIN, close).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            _ = pings.tick() => outgoing.send(Message::Ping(Default::default())).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Reads until the client closes or the connection fails (tungstenite answers pings meanwhile).
async fn read_until_closed(mut incoming: SplitStream<WebSocket>) {
    while let Some(Ok(message)) = incoming.next().await {
        if matches!(message, Message::Close(_)) {
            return;
        }
    }
}
