//! Starting the server under test as a child process, pinned to a core: `sse-apps` itself (one
//! of its servers, or a baseline it serves), or a foreign program that speaks the same control
//! line ([`super::control`]) and prints the same `listening on http://…` first line (the Go
//! original's server, [`super::foreign`]).

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
    child: Child,
    /// The data directory of an `sse-apps` server.
    data: Option<PathBuf>,
    /// Where commands go ([`super::control`]).
    stdin: ChildStdin,
    /// The server's output lines after the first.
    lines: mpsc::UnboundedReceiver<String>,
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        if let Some(data) = &self.data {
            let _ = std::fs::remove_dir_all(data);
        }
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

    /// Kills the server and waits for it to exit, so that it is gone before the next
    /// measurement starts (dropping only sends the signal).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
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
    launch_program(Program::SseApps { args, env, caps: Caps::Lifted }, pin).await
}

/// [`launch`] with the server's default caps kept, as it ships: what a foreign client meets.
pub async fn launch_as_shipped(args: &[&str], pin: bool) -> anyhow::Result<ServerUnderTest> {
    launch_program(Program::SseApps { args, env: &[], caps: Caps::AsShipped }, pin).await
}

/// Starts the foreign server `program` with `-addr 127.0.0.1:0`, pinned as [`launch`] pins.
pub async fn launch_foreign(program: &Path, pin: bool) -> anyhow::Result<ServerUnderTest> {
    launch_program(Program::Foreign(program), pin).await
}

/// What to start.
#[derive(Clone, Copy, Debug)]
enum Program<'a> {
    /// `sse-apps <args>`, with a fresh data directory.
    SseApps { args: &'a [&'a str], env: &'a [(&'a str, &'a str)], caps: Caps },
    /// A server of another language, which takes its address as `-addr`.
    Foreign(&'a Path),
}

/// Whether the per-client stream cap is lifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caps {
    /// Every reader of the bench comes from 127.0.0.1: no per-client stream cap.
    Lifted,
    /// The defaults.
    AsShipped,
}

async fn launch_program(program: Program<'_>, pin: bool) -> anyhow::Result<ServerUnderTest> {
    // Counted once, before this process pins itself to one core (after which it sees one).
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pinned = pin && can_pin() && cores >= 2;
    if pin && !pinned {
        eprintln!("note: not pinning (needs taskset and two cores)");
    }
    let data = matches!(program, Program::SseApps { .. }).then(|| {
        std::env::temp_dir().join(format!("sse-apps-bench-{}", uuid::Uuid::new_v4().simple()))
    });
    let (base, mut child, lines) = start(program, data.as_deref(), pinned.then_some(0)).await?;
    let stdin = child.stdin.take().context("the server's input")?;
    let server = ServerUnderTest { base, pinned, child, data, stdin, lines };
    if pinned {
        pin_self(1)?;
    }
    Ok(server)
}

/// Starts `program` on an ephemeral port (on `core` when given) and waits until it listens.
async fn start(
    program: Program<'_>,
    data_dir: Option<&Path>,
    core: Option<usize>,
) -> anyhow::Result<(String, Child, mpsc::UnboundedReceiver<String>)> {
    let exe = match program {
        Program::SseApps { .. } => std::env::current_exe().context("finding this program")?,
        Program::Foreign(path) => path.to_owned(),
    };
    // `sse-apps` asks for its own death signal (`control::serve_if_asked`); a foreign server
    // cannot, so setpriv asks for it.
    let mut program_line = match program {
        Program::SseApps { .. } => vec![exe.into_os_string()],
        Program::Foreign(_) => tied_to_bench(&exe),
    };
    if let Some(core) = core {
        program_line.splice(0..0, ["taskset".into(), "-c".into(), core.to_string().into()]);
    }
    let mut command = Command::new(&program_line[0]);
    command.args(&program_line[1..]);
    match program {
        Program::SseApps { args, env, caps } => {
            command.args(args).args(["--addr", "127.0.0.1:0"]);
            if caps == Caps::Lifted {
                command.args(["--max-streams-per-client", "0"]);
            }
            if let Some(data_dir) = data_dir {
                command.arg("--data-dir").arg(data_dir);
            }
            command.env("RUST_LOG", "warn").envs(env.iter().copied());
        }
        Program::Foreign(_) => {
            command.args(["-addr", "127.0.0.1:0"]);
        }
    }
    command
        .env(control::ENV, std::process::id().to_string())
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

/// The command line that runs `program` so that the kernel kills it if this bench dies first:
/// `setpriv --pdeathsig KILL` (util-linux, as `taskset` is), for programs that cannot ask for it
/// themselves (the Go ones). Without a setpriv that has `--pdeathsig` (util-linux 2.33 on), the
/// program alone.
pub fn tied_to_bench(program: &Path) -> Vec<std::ffi::OsString> {
    static HAS_SETPRIV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let has_setpriv = *HAS_SETPRIV.get_or_init(|| {
        let probe = ["--pdeathsig", "KILL", "--", "true"];
        std::process::Command::new("setpriv").args(probe).output().is_ok_and(|o| o.status.success())
    });
    let program = program.as_os_str().to_owned();
    if has_setpriv {
        vec!["setpriv".into(), "--pdeathsig".into(), "KILL".into(), "--".into(), program]
    } else {
        vec![program]
    }
}
