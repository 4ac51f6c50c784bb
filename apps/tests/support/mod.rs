//! Test helpers: the real app on an ephemeral port (zero2prod's `spawn_app`), and an SSE reader.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;

use axum::Router;
use sse_apps::server;
use sse_core::edge::auth::Token;
use sse_core::edge::origin::HostPolicy;
use sse_core::wire::{MessageEvent, Parser};
use sse_core::{Core, CoreConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running server.
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub core: Core,
    pub shutdown: CancellationToken,
    pub served: JoinHandle<()>,
}

impl TestApp {
    /// Stops the server (streams end at once) and waits until it has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.served.await.unwrap();
    }
}

/// Serves the app `build` makes on 127.0.0.1:0 (or `addr`), as the binary would.
pub async fn spawn_app_on(
    addr: SocketAddr,
    token: Token,
    build: impl FnOnce(Core) -> Router,
) -> TestApp {
    let core = Core::new(CoreConfig::default());
    let listener = server::bind(addr).unwrap();
    let addr = listener.local_addr().unwrap();
    let hosts = HostPolicy::for_bind(addr, &[], &[]);
    let app = server::finish(build(core.clone()), &core, hosts, token);
    let shutdown = core.shutdown_token();
    let served = tokio::spawn(server::serve(listener, app, shutdown.clone()));
    let served = tokio::spawn(async move { served.await.unwrap().unwrap() });
    TestApp { base: format!("http://{addr}"), addr, core, shutdown, served }
}

/// Serves the app `build` makes on an ephemeral port, without a token.
pub async fn spawn_app(build: impl FnOnce(Core) -> Router) -> TestApp {
    spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::open(), build).await
}

/// An open event stream read with the core's parser.
pub struct Stream {
    pub response: reqwest::Response,
    parser: Parser,
    queue: VecDeque<MessageEvent>,
}

impl Stream {
    /// GETs `url` and checks it is an event stream.
    pub async fn open(url: &str) -> Stream {
        Stream::open_with(reqwest::Client::new().get(url)).await
    }

    /// Sends `request` and checks the answer is an event stream.
    pub async fn open_with(request: reqwest::RequestBuilder) -> Stream {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream { response, parser: Parser::new(), queue: VecDeque::new() }
    }

    /// The next event, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<MessageEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            let chunk = self.response.chunk().await.ok()??;
            self.queue.extend(self.parser.feed(&chunk));
        }
    }
}

/// Waits until `condition` holds, yielding to other tasks in between. A watchdog turns a
/// condition that never comes true into a failure instead of a hung test (not a timing
/// assertion: it is far longer than anything should take).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(60), wait).await.is_err() {
        panic!("never happened: {what}");
    }
}
