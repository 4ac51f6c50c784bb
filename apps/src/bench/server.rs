//! Starting the server under test as a child process, pinned to a core.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server child process; killed (and its data directory removed) when dropped.
#[derive(Debug)]
pub struct ServerUnderTest {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Whether the server runs pinned to core 0 and this process to core 1.
    pub pinned: bool,
    /// The process, held so that dropping this kills it.
    child: Child,
    data: PathBuf,
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl ServerUnderTest {
    /// The server's process id (`taskset` execs the server, so it is the server's own).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
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
    let pinned =
        pin && can_pin() && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if pin && !pinned {
        eprintln!("note: not pinning (needs taskset and two cores)");
    }
    let data =
        std::env::temp_dir().join(format!("sse-apps-bench-{}", uuid::Uuid::new_v4().simple()));
    let (base, child) = start(args, &data, pinned.then_some(0)).await?;
    let server = ServerUnderTest { base, pinned, child, data };
    if pinned {
        pin_self(1)?;
    }
    Ok(server)
}

/// Starts `sse-apps <args>` on an ephemeral port (on `core` when given) and waits until it
/// listens.
async fn start(
    args: &[&str],
    data_dir: &Path,
    core: Option<usize>,
) -> anyhow::Result<(String, Child)> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut command = match core {
        Some(core) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &core.to_string()]).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    command
        .args(args)
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((base, child))
}
