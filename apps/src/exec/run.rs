//! One run: the sandboxed child, its pipes, its controls, and why it ended.
//!
//! The child's stdout and stderr are read in 64 KiB reads into the run's [`Output`]; stdin is
//! written on request. The run ends when the child has exited and both pipes are closed (or a
//! second after the exit, if something the child left behind holds them open); then its reason
//! is decided once, from what the server did (timeout, a user's signal) and how the child ended.
//!
//! Signals from the user go to every process of the run (the program and what it started), as a
//! terminal's Ctrl-C reaches its whole foreground job; KILL goes to the sandbox itself, whose
//! death takes the run's PID namespace with it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::Serialize;
use serde_json::{Value, json};
use sse_core::metrics::Metrics;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Notify;

use super::cgroup::{JOIN_FAILED, LimitHit, RunGroup};
use super::output::{Output, Pipe};
use super::spec::RunSpec;
use crate::shared::clock::unix_millis;

/// How long `terminate` waits after TERM before KILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The program exited by itself (see `code`).
    Exited,
    /// A signal ended it that nobody here sent (see `signal`).
    Signal,
    /// The wall-clock limit.
    Timeout,
    /// The memory limit: an allocation failed, or the run's cgroup went past its memory.
    MemoryLimit,
    /// The CPU-time limit.
    CpuLimit,
    /// The process limit (fork failed).
    ProcessLimit,
    /// The file-size limit.
    FileLimit,
    /// A user interrupted, terminated or killed it.
    KilledByUser,
    /// The sandbox could not be set up.
    SandboxFailure,
    /// The server stopped while it ran (killed or crashed); reported after the restart, from
    /// the run journal.
    Interrupted,
}

/// What a user may ask of a running run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSignal {
    /// SIGINT to every process of the run.
    Interrupt,
    /// SIGTERM to every process, then KILL after 5 s.
    Terminate,
    /// KILL at once.
    Kill,
}

/// A run, shared by its handlers and its supervising task.
#[derive(Debug)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// The language or program.
    pub label: String,
    /// Whether it runs in a terminal (a PTY), which the page then shows in a terminal.
    pub terminal: bool,
    /// Ms since the epoch.
    pub started_at: u64,
    /// Its output and events.
    pub output: Output,
    stdin: tokio::sync::Mutex<Option<Input>>,
    /// The tasks reading the output.
    pumps: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    control: Mutex<Control>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Control {
    pid: Option<u32>,
    asked: Option<UserSignal>,
    exit: Option<Value>,
}

/// Where stdin goes: a pipe, or the terminal (which also carries resizes).
#[derive(Debug)]
enum Input {
    Pipe(ChildStdin),
    Terminal(pty_process::OwnedWritePty),
}

/// Why writing to stdin failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StdinError {
    /// The run has ended, or its stdin was closed (EOF sent, or the program closed it).
    Closed,
    /// The program has not read its input for 5 s (the pipe is full); it took `written` bytes.
    NotReading {
        /// Bytes it did take.
        written: usize,
    },
}

impl Run {
    /// A run about to start.
    pub fn new(id: String, spec: &RunSpec, output_cap: u64, metrics: Metrics) -> Run {
        Run {
            id,
            label: spec.label.clone(),
            terminal: spec.terminal.is_some(),
            started_at: unix_millis(),
            output: Output::new(output_cap, metrics),
            stdin: tokio::sync::Mutex::new(None),
            pumps: Mutex::default(),
            control: Mutex::new(Control::default()),
            changed: Notify::new(),
        }
    }

    /// A run from before the server's restart, as the journal tells it: ended, its output not
    /// kept (its log holds only the `exit` event, which says `output_kept: false`).
    pub fn restored(past: super::journal::PastRun, metrics: Metrics) -> Run {
        let mut exit = past.exit;
        if let Some(fields) = exit.as_object_mut() {
            fields.insert("output_kept".to_owned(), Value::Bool(false));
        }
        let output = Output::new(0, metrics);
        output.finish(&exit);
        Run {
            id: past.id,
            label: past.label,
            // Its output is not kept, so there is no screen to draw.
            terminal: false,
            started_at: past.started_at,
            output,
            stdin: tokio::sync::Mutex::new(None),
            pumps: Mutex::default(),
            control: Mutex::new(Control { exit: Some(exit), ..Control::default() }),
            changed: Notify::new(),
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `exit` event's data, once the run has ended.
    pub fn exit(&self) -> Option<Value> {
        self.control().exit.clone()
    }

    /// Waits for the run to end; returns its `exit` event.
    pub async fn finished(&self) -> Value {
        loop {
            let changed = self.changed.notified();
            if let Some(exit) = self.exit() {
                return exit;
            }
            changed.await;
        }
    }

    /// Writes `data` to the program's stdin, then closes it if `eof` (in a terminal, EOF is
    /// Ctrl-D, as typed). Fails with `NotReading` when the program accepts nothing for 5 s,
    /// saying how many bytes it did take.
    pub async fn write_stdin(&self, data: &[u8], eof: bool) -> Result<(), StdinError> {
        let mut stdin = self.stdin.lock().await;
        let input = stdin.as_mut().ok_or(StdinError::Closed)?;
        let mut written = 0;
        let mut data = data.to_vec();
        if eof && matches!(input, Input::Terminal(_)) {
            data.push(0x04);
        }
        while written < data.len() {
            let chunk = &data[written..(written + 4096).min(data.len())];
            let write = async {
                match input {
                    Input::Pipe(pipe) => pipe.write(chunk).await,
                    Input::Terminal(terminal) => terminal.write(chunk).await,
                }
            };
            match tokio::time::timeout(Duration::from_secs(5), write).await {
                Err(_) => return Err(StdinError::NotReading { written }),
                Ok(Err(_) | Ok(0)) => {
                    *stdin = None;
                    return Err(StdinError::Closed);
                }
                Ok(Ok(n)) => written += n,
            }
        }
        if eof && matches!(input, Input::Pipe(_)) {
            *stdin = None;
        }
        Ok(())
    }

    /// Resizes the run's terminal. `Ok(false)` if the run has no terminal (or has ended).
    pub async fn resize(&self, rows: u16, cols: u16) -> std::io::Result<bool> {
        match self.stdin.lock().await.as_ref() {
            Some(Input::Terminal(terminal)) => {
                terminal
                    .resize(pty_process::Size::new(rows, cols))
                    .map_err(std::io::Error::other)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sends a user's signal. Returns false if the run has already ended.
    pub fn signal(&self, signal: UserSignal) -> bool {
        let mut control = self.control();
        if control.exit.is_some() {
            return false;
        }
        control.asked = Some(match (control.asked, signal) {
            (Some(UserSignal::Kill), _) | (_, UserSignal::Kill) => UserSignal::Kill,
            (Some(UserSignal::Terminate), _) | (_, UserSignal::Terminate) => UserSignal::Terminate,
            _ => UserSignal::Interrupt,
        });
        let pid = control.pid;
        drop(control);
        if let Some(pid) = pid {
            match signal {
                UserSignal::Interrupt => signal_tree(pid, Signal::INT),
                UserSignal::Terminate => signal_tree(pid, Signal::TERM),
                UserSignal::Kill => signal_tree(pid, Signal::KILL),
            }
        }
        self.changed.notify_waiters();
        true
    }

    /// Starts `command` in the sandbox on pipes, or in a terminal of `size` (rows, columns). Its
    /// stdin is ready for writes as soon as this returns, and its output is being read. A run
    /// that cannot start is ended as a sandbox failure.
    pub fn spawn(self: &Arc<Self>, command: Command, size: Option<(u16, u16)>) -> Option<Child> {
        let started = match size {
            None => self.spawn_on_pipes(command),
            Some(size) => self.spawn_in_terminal(command, size),
        };
        match started {
            Ok(child) => {
                self.control().pid = child.id();
                Some(child)
            }
            Err(error) => {
                self.fail(&format!("cannot start the sandbox: {error}"));
                None
            }
        }
    }

    fn spawn_on_pipes(self: &Arc<Self>, mut command: Command) -> std::io::Result<Child> {
        command.stdin(std::process::Stdio::piped());
        command.stdout(std::process::Stdio::piped());
        command.stderr(std::process::Stdio::piped());
        command.kill_on_drop(true);
        let mut child = command.spawn()?;
        self.set_input(child.stdin.take().map(Input::Pipe));
        let mut pumps = self.pumps();
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(self.clone(), Pipe::Stdout, out)));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(self.clone(), Pipe::Stderr, err)));
        }
        Ok(child)
    }

    /// In a terminal the program's stdout and stderr are one stream, sent as `stdout`.
    fn spawn_in_terminal(
        self: &Arc<Self>,
        command: Command,
        (rows, cols): (u16, u16),
    ) -> std::io::Result<Child> {
        let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
        pty.resize(pty_process::Size::new(rows, cols)).map_err(std::io::Error::other)?;
        let child = pty_process::Command::from(command)
            .kill_on_drop(true)
            .spawn(pts)
            .map_err(std::io::Error::other)?;
        let (output, input) = pty.into_split();
        self.set_input(Some(Input::Terminal(input)));
        self.pumps().push(tokio::spawn(pump(self.clone(), Pipe::Stdout, output)));
        Ok(child)
    }

    fn set_input(&self, input: Option<Input>) {
        // Uncontended: nothing else knows the run before it is spawned.
        if let Ok(mut stdin) = self.stdin.try_lock() {
            *stdin = input;
        }
    }

    fn pumps(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.pumps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Supervises a started child to the end (run this on its own task); `group` is the run's
    /// cgroup, which tells whether one of its limits ended the run.
    pub async fn supervise(
        self: Arc<Self>,
        mut child: Child,
        timeout: Duration,
        group: Option<&RunGroup>,
    ) {
        let started = Instant::now();

        let mut timed_out = false;
        let mut killed = false;
        let mut term_sent_at: Option<Instant> = None;
        let status = loop {
            let asked = self.changed.notified();
            // Level-triggered: a signal asked between two turns of this loop is seen here, not
            // lost with the wakeup that announced it.
            match self.control().asked {
                Some(UserSignal::Kill) if !killed => {
                    killed = true;
                    self.kill_all(&mut child);
                }
                Some(UserSignal::Terminate) if term_sent_at.is_none() && !killed => {
                    term_sent_at = Some(Instant::now());
                }
                _ => {}
            }
            let grace_over = async {
                match term_sent_at {
                    Some(at) => tokio::time::sleep_until((at + TERMINATE_GRACE).into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = child.wait() => {
                    // Reaped: the pid may now be reused, so nothing may be sent to it any more.
                    self.control().pid = None;
                    break status;
                }
                () = tokio::time::sleep_until((started + timeout).into()), if !timed_out => {
                    timed_out = true;
                    killed = true;
                    self.kill_all(&mut child);
                }
                () = asked => {}
                () = grace_over, if !killed => {
                    killed = true;
                    self.kill_all(&mut child);
                }
            }
        };
        // The pipes close when the last process holding them ends; whatever outlives the child
        // (only possible without a PID namespace) gets a second, then its output is cut off.
        let pumps = std::mem::take(&mut *self.pumps());
        for pump in pumps {
            let abort = pump.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), pump).await.is_err() {
                abort.abort();
            }
        }
        *self.stdin.lock().await = None;
        let (kept, dropped) = self.output.counts();
        let asked = self.control().asked;
        let limit_hit = group.and_then(RunGroup::limit_hit);
        let (reason, code, signal) =
            classify(status.ok(), timed_out, asked, limit_hit, &self.output.stderr_tail());
        let exit = json!({
            "reason": reason,
            "code": code,
            "signal": signal,
            "duration_ms": started.elapsed().as_millis() as u64,
            "output_bytes": kept,
            "dropped_bytes": dropped,
            "memory_peak_bytes": group.and_then(RunGroup::peak_memory),
        });
        self.end(exit);
    }

    /// KILL to every process of the run (listed while the sandbox still lives), then to the
    /// sandbox itself.
    fn kill_all(&self, child: &mut Child) {
        if let Some(pid) = child.id() {
            signal_tree(pid, Signal::KILL);
        }
        let _ = child.start_kill();
    }

    /// Ends a run that could not start.
    pub fn fail(&self, message: &str) {
        self.end(json!({
            "reason": Reason::SandboxFailure,
            "code": null,
            "signal": null,
            "message": message,
            "duration_ms": 0,
            "output_bytes": 0,
            "dropped_bytes": 0,
        }));
    }

    /// Records the end: from here the run lists as finished and refuses signals and stdin. Its
    /// viewers hear of it later, from [`Run::announce_end`], once the server has done with it.
    fn end(&self, exit: Value) {
        self.control().exit = Some(exit);
        self.changed.notify_waiters();
    }

    /// Tells the run's viewers how it ended (the `exit` event, which ends their streams). Called
    /// once its end is recorded, its slot given back and its journal line written, so a viewer
    /// who sees `exit` and then lists the runs, signals this one or starts the next finds the
    /// server already past it.
    pub fn announce_end(&self, exit: &Value) {
        self.output.finish(exit);
    }
}

/// Reads one pipe into the output until it closes.
async fn pump(run: Arc<Run>, pipe: Pipe, mut reader: impl AsyncRead + Unpin) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => run.output.append(pipe, &buffer[..n]),
        }
    }
}

/// Why the run ended, its exit code and the name of the signal that ended it. A limit of the
/// run's cgroup that the kernel enforced (`limit_hit`) is the surest sign; the rest is read from
/// the exit status and the end of stderr.
fn classify(
    status: Option<std::process::ExitStatus>,
    timed_out: bool,
    asked: Option<UserSignal>,
    limit_hit: Option<LimitHit>,
    stderr_tail: &str,
) -> (Reason, Option<i32>, Option<String>) {
    use std::os::unix::process::ExitStatusExt;
    // The sandbox reports a program killed by signal n as exit code 128 + n (as shells do), so
    // such codes are read as signals; a program that exits with 129-192 by itself is misread.
    let raw_code = status.and_then(|s| s.code());
    let signal = status
        .and_then(|s| s.signal())
        .or(raw_code.filter(|c| (129..=192).contains(c)).map(|c| c - 128));
    let code = if signal.is_some() { None } else { raw_code };
    let signal_name = signal.map(signal_name);
    if timed_out {
        return (Reason::Timeout, code, signal_name);
    }
    if asked.is_some() && signal.is_some() {
        return (Reason::KilledByUser, code, signal_name);
    }
    match signal {
        Some(24) => return (Reason::CpuLimit, code, signal_name), // SIGXCPU
        Some(25) => return (Reason::FileLimit, code, signal_name), // SIGXFSZ
        _ => {}
    }
    let failed = code != Some(0);
    if failed && (stderr_tail.starts_with("bwrap:") || stderr_tail.starts_with(JOIN_FAILED)) {
        return (Reason::SandboxFailure, code, signal_name);
    }
    match limit_hit {
        Some(LimitHit::Memory) => return (Reason::MemoryLimit, code, signal_name),
        Some(LimitHit::Processes) if failed => return (Reason::ProcessLimit, code, signal_name),
        _ => {}
    }
    const MEMORY: [&str; 5] = [
        "MemoryError",
        "Cannot allocate memory",
        "out of memory",
        "bad_alloc",
        "memory allocation of",
    ];
    if failed && MEMORY.iter().any(|m| stderr_tail.contains(m)) {
        return (Reason::MemoryLimit, code, signal_name);
    }
    const FORK: [&str; 4] =
        ["Cannot fork", "fork: retry", "fork: Resource temporarily unavailable", "BlockingIOError"];
    if failed && FORK.iter().any(|m| stderr_tail.contains(m)) {
        return (Reason::ProcessLimit, code, signal_name);
    }
    match signal {
        Some(_) => (Reason::Signal, code, signal_name),
        None => (Reason::Exited, code, signal_name),
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        6 => "ABRT",
        9 => "KILL",
        11 => "SEGV",
        13 => "PIPE",
        15 => "TERM",
        24 => "XCPU",
        25 => "XFSZ",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// Sends `signal` to every descendant of `root` (the sandbox's processes), and to `root` itself
/// for KILL (which takes the PID namespace down with it).
fn signal_tree(root: u32, signal: Signal) {
    let mut targets = descendants(root);
    if signal == Signal::KILL || targets.is_empty() {
        targets.push(root);
    }
    for pid in targets {
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// Every process below `root`, from the parent ids in `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = stat.get(stat.rfind(')')? + 2..)?;
            let ppid = after_name.split(' ').nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        index += 1;
    }
    found.remove(0);
    found
}
