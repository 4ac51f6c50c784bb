//! Test helpers: the real app on an ephemeral port (zero2prod's `spawn_app`), assembled by the
//! same `server::build` as the binary; the binary itself as a command; the stream reader and
//! `eventually` come from `sse_core::testing`.
//!
//! Every test binary includes this file (`mod support;`) and uses some of it, so an item another
//! binary alone uses carries its own `allow(dead_code)`. The helpers of one app or tool are in
//! their own files, which only the tests that use them include (`#[path = "support/…"]`):
//! `browser.rs` (Chromium through WebDriver), `mock_llm.rs` (a model API), `dashboard.rs` (a
//! scripted metric source), `chat.rs` and `bidi.rs` (an app's requests).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::net::SocketAddr;

use axum::Router;
use sse_apps::server::{self, Server, ServerConfig};
use sse_core::Core;
use sse_core::edge::auth::Token;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running server.
#[allow(dead_code, reason = "each test binary reads the fields it needs")]
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub core: Core,
    pub shutdown: CancellationToken,
    pub served: JoinHandle<()>,
}

impl TestApp {
    /// Stops the server (streams end at once) and waits until it has stopped.
    #[allow(dead_code, reason = "used by the tests that stop a server midway")]
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.served.await.unwrap();
    }
}

/// Serves the app `build` makes on 127.0.0.1:0 (or `addr`), requiring `token`, assembled by the
/// binary's own [`server::build`] with its default flags.
#[allow(dead_code, reason = "used by the tests that serve an app in-process")]
pub async fn spawn_app_on(
    addr: SocketAddr,
    token: Token,
    build: impl FnOnce(Core) -> Router,
) -> TestApp {
    let server = server::build(ServerConfig::new(addr, token), |core| Ok(build(core))).unwrap();
    serve(server)
}

/// Serves a server made by [`server::build`] (a test may first change its guards or connection
/// settings) until the returned app is stopped.
#[allow(dead_code, reason = "used by the tests that serve an app in-process")]
pub fn serve(server: Server) -> TestApp {
    let addr = server.local_addr();
    let base = server.base_url();
    let core = server.core.clone();
    let shutdown = core.shutdown_token();
    let served = tokio::spawn(server.serve(shutdown.clone()));
    let served = tokio::spawn(async move { served.await.unwrap().unwrap() });
    TestApp { base, addr, core, shutdown, served }
}

/// The `sse-apps` binary as a command: stdout piped (its first line says where it listens),
/// killed when dropped. Add arguments, then [`started`].
#[allow(dead_code, reason = "used by the tests that run the binary")]
pub fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-apps"));
    command.stdout(std::process::Stdio::piped()).kill_on_drop(true);
    command
}

/// Starts a server command made with [`binary`]; returns it and its base URL (from its first
/// line, within a minute), and keeps reading its output so it never writes to a closed pipe.
#[allow(dead_code, reason = "used by the tests that run the binary")]
pub async fn started(mut command: tokio::process::Command) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = command.spawn().expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("the server starts within a minute")
        .unwrap()
        .expect("a start-up line");
    let base = first.split("listening on ").nth(1).expect("the address line").trim().to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

/// Serves the app `build` makes on an ephemeral port, without a token.
#[allow(dead_code, reason = "used by the tests that serve an app in-process")]
pub async fn spawn_app(build: impl FnOnce(Core) -> Router) -> TestApp {
    spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::open(), build).await
}

#[allow(unused_imports)] // each test file uses its own subset
pub use sse_core::testing::{Stream, eventually};

/// A FIFO at `path` and its read end. A data file opened there takes writes while the read end
/// is held, and once it is dropped every write fails (EPIPE) as on a full disk: the failure the
/// logs must survive, without a symlink to `/dev/full` (data files never follow links).
#[allow(dead_code, reason = "used by the tests of a failing data file")]
pub fn pipe_at(path: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from(0o600)).unwrap();
    // Non-blocking: there is no writer yet.
    let flags = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path).unwrap()
}
