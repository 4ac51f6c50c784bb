//! Test helpers: the real app on an ephemeral port (zero2prod's `spawn_app`); the stream reader
//! and `eventually` come from `sse_core::testing`.
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod mock_llm;

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
    let guards = server::Guards { token: token.on_port(addr.port()), rate: None, streams: None };
    let app = server::finish(build(core.clone()), &core, hosts, guards);
    let shutdown = core.shutdown_token();
    let served = tokio::spawn(server::serve(listener, app, shutdown.clone()));
    let served = tokio::spawn(async move { served.await.unwrap().unwrap() });
    TestApp { base: format!("http://{addr}"), addr, core, shutdown, served }
}

/// The `sse-apps` binary as a command: stdout piped (its first line says where it listens),
/// killed when dropped. Add arguments, then [`started`].
pub fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-apps"));
    command.stdout(std::process::Stdio::piped()).kill_on_drop(true);
    command
}

/// Starts a server command made with [`binary`]; returns it and its base URL (from its first
/// line, within a minute), and keeps reading its output so it never writes to a closed pipe.
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
pub async fn spawn_app(build: impl FnOnce(Core) -> Router) -> TestApp {
    spawn_app_on("127.0.0.1:0".parse().unwrap(), Token::open(), build).await
}

#[allow(unused_imports)] // each test file uses its own subset
pub use sse_core::testing::{Stream, eventually};

/// A dashboard metric source whose CPU values a test scripts: each tick takes the next value
/// (repeating the last once the script runs out), and reports the processes the test lists.
#[derive(Clone, Debug, Default)]
pub struct ScriptedSource {
    pub script: std::sync::Arc<std::sync::Mutex<Script>>,
}

#[derive(Debug, Default)]
pub struct Script {
    pub cpu: std::collections::VecDeque<f64>,
    pub last: Option<f64>,
    pub processes: Vec<sse_apps::dashboard::sample::ProcessInfo>,
    /// Names the machine reports for its disks, mounts, interfaces and sensors, and the reason
    /// it gives for having no swap (what a hostile local user or device could choose).
    pub names: Vec<String>,
}

impl ScriptedSource {
    /// A source that will report these CPU values, one per tick.
    pub fn with_cpu(values: &[f64]) -> ScriptedSource {
        let source = ScriptedSource::default();
        source.script.lock().unwrap().cpu.extend(values);
        source
    }
}

impl sse_apps::dashboard::sample::MetricSource for ScriptedSource {
    fn sample(&mut self) -> sse_apps::dashboard::sample::Sample {
        use sse_apps::dashboard::sample::{
            Detail, DiskInfo, Limit, NetworkInfo, Point, Sample, Temperature, Usage,
        };
        let mut script = self.script.lock().unwrap();
        let cpu = script.cpu.pop_front().or(script.last);
        script.last = cpu;
        Sample {
            point: Point {
                t: sse_apps::shared::clock::unix_millis(),
                cpu,
                memory: Some(25.0),
                ..Point::default()
            },
            detail: Detail {
                cpu_limit: Limit { cores: 2.0, source: "host" },
                memory: Usage { used: 1 << 30, total: 4 << 30, source: "host" },
                processes: script.processes.clone(),
                disks: script
                    .names
                    .iter()
                    .map(|name| DiskInfo {
                        name: name.clone(),
                        mount: name.clone(),
                        total: 1 << 30,
                        available: 1 << 29,
                        ..DiskInfo::default()
                    })
                    .collect(),
                networks: script
                    .names
                    .iter()
                    .map(|name| NetworkInfo { name: name.clone(), rx_bps: None, tx_bps: None })
                    .collect(),
                temperatures: script
                    .names
                    .iter()
                    .map(|name| Temperature { label: name.clone(), celsius: 40.0 })
                    .collect(),
                unavailable: script
                    .names
                    .first()
                    .map(|name| [("swap".to_owned(), name.clone())].into())
                    .unwrap_or_default(),
                ..Detail::default()
            },
        }
    }
}

/// A FIFO at `path` and its read end. A data file opened there takes writes while the read end
/// is held, and once it is dropped every write fails (EPIPE) as on a full disk: the failure the
/// logs must survive, without a symlink to `/dev/full` (data files never follow links).
pub fn pipe_at(path: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from(0o600)).unwrap();
    // Non-blocking: there is no writer yet.
    let flags = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path).unwrap()
}
