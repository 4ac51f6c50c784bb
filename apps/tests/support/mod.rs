//! Test helpers: the real app on an ephemeral port (zero2prod's `spawn_app`); the stream reader
//! and `eventually` come from `sse_core::testing`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::Router;
use sse_apps::server;
use sse_core::edge::auth::Token;
use sse_core::edge::origin::HostPolicy;
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
    let guards = server::Guards { token, rate: None };
    let app = server::finish(build(core.clone()), &core, hosts, guards);
    let shutdown = core.shutdown_token();
    let served = tokio::spawn(server::serve(listener, app, shutdown.clone()));
    let served = tokio::spawn(async move { served.await.unwrap().unwrap() });
    TestApp { base: format!("http://{addr}"), addr, core, shutdown, served }
}

/// Serves the app `build` makes on an ephemeral port, without a token.
pub async fn spawn_app(build: impl FnOnce(Core) -> Router) -> TestApp {
    spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::open(), build).await
}

#[allow(unused_imports)] // each test file uses its own subset
pub use sse_core::testing::{Stream, eventually};
