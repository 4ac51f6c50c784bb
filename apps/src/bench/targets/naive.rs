//! The baseline most tutorials arrive at: axum's `Sse` over a tokio broadcast channel. Every
//! connection encodes every event itself, and a subscriber that lags loses events silently.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// Serves `GET /events` on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    commands: UnboundedReceiver<String>,
) -> std::io::Result<()> {
    let (sender, _) = broadcast::channel::<(u64, String)>(1024);
    let publisher = sender.clone();
    tokio::spawn(super::follow_orders(commands, move |seq, data| {
        let _ = publisher.send((seq, data));
    }));
    let app = Router::new().route("/events", get(events)).with_state(sender);
    axum::serve(listener, app).await
}

async fn events(
    State(sender): State<broadcast::Sender<(u64, String)>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = BroadcastStream::new(sender.subscribe())
        .filter_map(|item| item.ok())
        .map(|(seq, data)| Ok(Event::default().id(seq.to_string()).data(data)));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
