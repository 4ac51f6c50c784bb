//! Starting the server under test as a child process, pinned to a core.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server child process; killed when dropped.
#[derive(Debug)]
pub struct ServerUnderTest {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The process, held so that dropping this kills it.
    child: Child,
}

impl ServerUnderTest {
    /// The server's process id (`taskset` execs the server, so it is the server's own).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Whether `taskset` can pin processes here.
pub fn can_pin() -> bool {
    std::process::Command::new("taskset").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// Pins every thread of this process to `core`.
pub fn pin_self(core: usize) -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-cp", &core.to_string(), &pid])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    anyhow::ensure!(status.success(), "taskset could not pin the load generator");
    Ok(())
}

/// Starts `sse-apps <args>` on an ephemeral port (on `core` when given) and waits until it
/// listens.
pub async fn start(
    args: &[&str],
    data_dir: &Path,
    core: Option<usize>,
) -> anyhow::Result<ServerUnderTest> {
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
    Ok(ServerUnderTest { base, child })
}
