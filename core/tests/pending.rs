//! The pending-connection budget: a flood of connections that never send a request cannot use up
//! the server's descriptors; the oldest of them are closed to make room, clients keep being
//! answered, and a connection that has sent a request is never closed for the budget.
//!
//! One test in its own binary: it lowers the process's open-file limit, which the client sockets
//! of the flood and the server's accepted ones share.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use sse_core::edge::connections::{self, ConnectionSettings, PendingCaps};
use sse_core::hub::Resume;
use sse_core::stream::LiveResponse;
use sse_core::testing::{Stream, eventually};
use sse_core::wire::Event;
use sse_core::{Core, CoreConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A watchdog for awaited events; not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(60);
/// Idle connections from each of four addresses.
const EACH: usize = 150;
const SOURCES: [u8; 4] = [2, 3, 4, 5];

async fn news(State(core): State<Core>) -> Response {
    let subscription = core.hub.topic("news").subscribe(&Resume::from_last_event_id(None));
    LiveResponse::new(subscription).into_response(&core.streams, &core.metrics)
}

/// One series of the core's metrics, 0 when absent.
fn series(core: &Core, name: &str) -> u64 {
    let text = core.metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// A connection from `source` that sends nothing.
async fn idle_from(source: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from([127, 0, 0, source]), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_past_the_budget_closes_its_oldest_and_clients_keep_being_answered() {
    // 800 descriptors for the whole process: the flood's 600 client sockets and as many on the
    // server's side would not fit, so without the budget `accept` would fail, and the head
    // deadline (10 minutes here) would free nothing in time. With it the server holds at most 64.
    let limit = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(800), maximum: limit.maximum }).unwrap();

    let core = Core::new(CoreConfig::default());
    let settings = ConnectionSettings {
        header_timeout: Duration::from_secs(600),
        pending: PendingCaps::new(64, 32),
        metrics: Some(core.metrics.clone()),
        ..ConnectionSettings::default()
    };
    let app = Router::new()
        .route("/news", get(news))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(core.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(connections::serve(listener, app, core.shutdown_token(), settings));
    let base = format!("http://{server}");

    // A client that asked before the flood: its stream must outlive it.
    let mut stream = Stream::open(&format!("{base}/news")).await;

    let mut flood = Vec::new();
    for source in SOURCES {
        for _ in 0..EACH {
            flood.push(idle_from(source, server).await);
        }
    }

    // A new client is answered at once, from the address with the stream.
    let health = tokio::time::timeout(WATCHDOG, reqwest::get(format!("{base}/healthz")))
        .await
        .expect("answered while the flood holds its connections")
        .unwrap();
    assert_eq!(health.status(), 200);

    // Every idle connection is either still pending (at most 64 of them) or was closed for one
    // of the caps: each address past its 32, then all past 64.
    let flooded = (SOURCES.len() * EACH) as u64;
    let per_address = r#"sse_connections_evicted_total{cap="per_address"}"#;
    let total = r#"sse_connections_evicted_total{cap="total"}"#;
    let accounted = || {
        let evicted = series(&core, per_address) + series(&core, total);
        evicted + series(&core, "sse_connections_pending") == flooded
    };
    eventually("each idle connection pending or evicted", accounted).await;
    assert!(series(&core, "sse_connections_pending") <= 64);
    assert!(
        series(&core, per_address) > 0 && series(&core, total) > 0,
        "{}",
        core.metrics.render()
    );

    // The oldest were the ones closed: the very first idle connection sees the server hang up.
    let mut byte = [0; 1];
    let read = tokio::time::timeout(WATCHDOG, flood[0].read(&mut byte)).await.unwrap();
    assert_eq!(read.unwrap(), 0, "closed by the server without a byte");

    // The stream that asked before the flood was never touched.
    core.hub.topic("news").publish(Event::new().data("still here"));
    let event = tokio::time::timeout(WATCHDOG, stream.next()).await.unwrap().unwrap();
    assert_eq!(event.data, "still here");
}
