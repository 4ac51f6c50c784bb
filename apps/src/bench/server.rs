//! Starting the server under test as a child process, pinned to a core.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::control::{self, Usage};

/// A server child process; killed (and its data directory removed) when dropped.
#[derive(Debug)]
pub struct ServerUnderTest {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Whether the server runs pinned to core 0 and this process to core 1.
    pub pinned: bool,
    /// The process, held so that dropping this kills it.
    _child: Child,
    data: PathBuf,
    /// Where commands go ([`super::control`]).
    stdin: ChildStdin,
    /// The server's output lines after the first.
    lines: mpsc::UnboundedReceiver<String>,
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl ServerUnderTest {
    /// Sends `command` and waits for the server's line that starts with `answer` (skipping any
    /// other output), for a minute at most.
    pub async fn ask(&mut self, command: &str, answer: &str) -> anyhow::Result<String> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(answer) {
                    return Ok(line);
                }
            }
            anyhow::bail!("the server exited before answering `{command}`")
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), wait)
            .await
            .with_context(|| format!("no answer to `{command}`"))?
    }

    /// The server's CPU time and resident memory now, as it reports them itself.
    pub async fn usage(&mut self) -> anyhow::Result<Usage> {
        let line = self.ask("usage", "usage ").await?;
        Usage::from_line(&line).with_context(|| format!("a usage line: {line}"))
    }
}

/// Whether `taskset` can pin processes here.
fn can_pin() -> bool {
    std::process::Command::new("taskset").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// Pins every thread of this process to `core`.
fn pin_self(core: usize) -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-cp", &core.to_string(), &pid])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    anyhow::ensure!(status.success(), "taskset could not pin the load generator");
    Ok(())
}

/// Starts `sse-apps <args>` with a fresh data directory; with `pin` (and `taskset` and two
/// cores), the server runs on core 0 and this process moves to core 1, so the figures describe a
/// server with one core of its own.
pub async fn launch(args: &[&str], pin: bool) -> anyhow::Result<ServerUnderTest> {
    launch_with_env(args, &[], pin).await
}

/// [`launch`], with extra environment variables for the server.
pub async fn launch_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    pin: bool,
) -> anyhow::Result<ServerUnderTest> {
    launch_inner(args, env, pin, Caps::Lifted).await
}

/// [`launch`] with the server's default caps kept, as it ships: what a foreign client meets.
pub async fn launch_as_shipped(args: &[&str], pin: bool) -> anyhow::Result<ServerUnderTest> {
    launch_inner(args, &[], pin, Caps::AsShipped).await
}

/// Whether the per-client stream cap is lifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caps {
    /// Every reader of the bench comes from 127.0.0.1: no per-client stream cap.
    Lifted,
    /// The defaults.
    AsShipped,
}

async fn launch_inner(
    args: &[&str],
    env: &[(&str, &str)],
    pin: bool,
    caps: Caps,
) -> anyhow::Result<ServerUnderTest> {
    // Counted once, before this process pins itself to one core (after which it sees one).
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pinned = pin && can_pin() && cores >= 2;
    if pin && !pinned {
        eprintln!("note: not pinning (needs taskset and two cores)");
    }
    let data =
        std::env::temp_dir().join(format!("sse-apps-bench-{}", uuid::Uuid::new_v4().simple()));
    let (base, mut child, lines) = start(args, env, &data, pinned.then_some(0), caps).await?;
    let stdin = child.stdin.take().context("the server's input")?;
    let server = ServerUnderTest { base, pinned, _child: child, data, stdin, lines };
    if pinned {
        pin_self(1)?;
    }
    Ok(server)
}

/// Starts `sse-apps <args>` on an ephemeral port (on `core` when given) and waits until it
/// listens.
async fn start(
    args: &[&str],
    env: &[(&str, &str)],
    data_dir: &Path,
    core: Option<usize>,
    caps: Caps,
) -> anyhow::Result<(String, Child, mpsc::UnboundedReceiver<String>)> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut command = match core {
        Some(core) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &core.to_string()]).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    command.args(args).args(["--addr", "127.0.0.1:0"]);
    if caps == Caps::Lifted {
        command.args(["--max-streams-per-client", "0"]);
    }
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env(control::ENV, "1")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting the server")?;
    let stdout = child.stdout.take().context("the server's output")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await?.context("the server exited before listening")?;
    let base = first
        .split("listening on ")
        .nth(1)
        .context("no address in the server's first line")?
        .trim()
        .to_owned();
    let (forward, rest) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = forward.send(line);
        }
    });
    Ok((base, child, rest))
}
