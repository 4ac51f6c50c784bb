//! Control actions: what a request may ask, who may ask it of which process, and carrying it
//! out.
//!
//! A request is checked completely before it is accepted: the action and its values, then the
//! target process (it must exist, must not be pid 1 or this server, and must belong to this
//! server's user unless `--allow-control-all`). What is accepted runs in the background and
//! reports through the board's `command_*` events.
//!
//! Termination uses a pidfd (Linux 5.3+): the signals go to the process that was checked even if
//! its pid is reused meanwhile, and its exit is awaited with `poll(2)` on the pidfd (on a
//! blocking thread: tokio's `AsyncFd` needs `unsafe` to register a descriptor, which this
//! workspace forbids) rather than by checking the pid in a loop.

use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_core::edge::numbers::{saturating_i64, saturating_u64};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::error::DashboardError;
use super::sampler::MIN_INTERVAL;

/// The longest sampling interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// How long `terminate` waits after TERM before KILL, unless the request says.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// The longest grace period accepted.
const MAX_GRACE: Duration = Duration::from_secs(60);
/// How long to wait for a KILLed process to be gone.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// The body of `POST /dashboard/commands`, before it is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// `terminate`, `renice` or `set_interval`.
    pub action: String,
    /// Target of `terminate` and `renice`.
    #[serde(default, deserialize_with = "saturating_i64")]
    pub pid: Option<i64>,
    /// New nice value for `renice`, -20 to 19.
    #[serde(default, deserialize_with = "saturating_i64")]
    pub nice: Option<i64>,
    /// New interval for `set_interval`, in ms.
    #[serde(default, deserialize_with = "saturating_u64")]
    pub interval_ms: Option<u64>,
    /// For `terminate`: ms between TERM and KILL.
    #[serde(default, deserialize_with = "saturating_u64")]
    pub grace_ms: Option<u64>,
}

/// A checked command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// TERM, then KILL after `grace`.
    Terminate {
        /// The target.
        pid: i32,
        /// Time between the signals.
        grace: Duration,
    },
    /// Set the nice value.
    Renice {
        /// The target.
        pid: i32,
        /// -20 to 19.
        nice: i32,
    },
    /// Change how often the dashboard samples.
    SetInterval(Duration),
}

/// A refusal: its status, code and message, for the response and the audit log.
pub type Refusal = DashboardError;

fn invalid(code: &'static str, message: impl Into<String>) -> Refusal {
    DashboardError::Invalid { code, message: message.into() }
}

impl CommandBody {
    /// What was asked, without the action's name, as the audit log and events show it.
    pub fn params(&self) -> Value {
        let mut params = json!({});
        let fields = [
            ("pid", self.pid.map(Value::from)),
            ("nice", self.nice.map(Value::from)),
            ("interval_ms", self.interval_ms.map(Value::from)),
            ("grace_ms", self.grace_ms.map(Value::from)),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                params[name] = value;
            }
        }
        params
    }

    /// Checks the action and its values (not yet the target process).
    pub fn check(&self) -> Result<Command, Refusal> {
        let pid = || -> Result<i32, Refusal> {
            let pid = self.pid.ok_or_else(|| invalid("missing_pid", "this action needs a pid"))?;
            i32::try_from(pid)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("invalid_pid", format!("{pid} is not a process id")))
        };
        match self.action.as_str() {
            "terminate" => {
                let grace = self.grace_ms.map_or(DEFAULT_GRACE, Duration::from_millis);
                if grace > MAX_GRACE {
                    return Err(invalid("grace_out_of_range", "grace_ms may be at most 60000"));
                }
                Ok(Command::Terminate { pid: pid()?, grace })
            }
            "renice" => {
                let nice = self.nice.ok_or_else(|| invalid("missing_nice", "renice needs nice"))?;
                let nice = i32::try_from(nice).ok().filter(|n| (-20..=19).contains(n)).ok_or_else(
                    || invalid("nice_out_of_range", format!("nice must be -20 to 19, not {nice}")),
                )?;
                Ok(Command::Renice { pid: pid()?, nice })
            }
            "set_interval" => {
                let ms = self
                    .interval_ms
                    .ok_or_else(|| invalid("missing_interval", "set_interval needs interval_ms"))?;
                let interval = Duration::from_millis(ms);
                if interval < MIN_INTERVAL {
                    return Err(invalid(
                        "interval_too_short",
                        "interval_ms must be at least 200: CPU usage cannot be measured over less",
                    ));
                }
                if interval > MAX_INTERVAL {
                    return Err(invalid("interval_too_long", "interval_ms may be at most 3600000"));
                }
                Ok(Command::SetInterval(interval))
            }
            other => Err(invalid(
                "unknown_action",
                format!("unknown action {other:?}; use terminate, renice or set_interval"),
            )),
        }
    }
}

impl Command {
    /// The process this command acts on, if any.
    pub fn target(&self) -> Option<i32> {
        match self {
            Command::Terminate { pid, .. } | Command::Renice { pid, .. } => Some(*pid),
            Command::SetInterval(_) => None,
        }
    }
}

/// Whether `pid` is a descendant of this server: its parents, read from `/proc`, lead here.
fn descends_from_server(pid: i32) -> bool {
    let server = std::process::id();
    let mut current = pid.unsigned_abs();
    // A chain of parents is short; the bound only guards against a table changing under us.
    for _ in 0..4096 {
        let Some(parent) = parent_of(current) else { return false };
        if parent == server {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        current = parent;
    }
    false
}

/// The parent of process `pid` (field 4 of `/proc/<pid>/stat`, after the command's parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    stat_field(pid, PARENT)
}

/// Whether `pid` is in this server's session or process group: started from the same terminal
/// or script as the server (a `sleep 600 &` typed in the shell that started it), never a
/// daemon's or another login's. A server under systemd has a session of its own.
///
/// The ids are read from `/proc`, not with `getsid`: a session led from outside this pid
/// namespace (a process started by `unshare --pid`, `nsenter`, or a sandbox or CI runner that
/// enters the namespace without starting a session, as on this project's CI machines) has id
/// 0, which `rustix::process::getsid` cannot represent (it panics). Id 0 names no one session or
/// group, so it matches nothing. The process group is what still ties such a script's
/// background jobs to the server it started: without job control they share the script's
/// group. A group is never wider than a session (a process may join only a group of its own
/// session), so the group adds no process the session rule, where it can be read, would refuse.
fn in_server_session(pid: i32) -> bool {
    let (Some(ours), Some(theirs)) =
        (session_and_group("self"), session_and_group(&pid.unsigned_abs().to_string()))
    else {
        return false;
    };
    let same = |ours: i32, theirs: i32| ours > 0 && ours == theirs;
    same(ours.0, theirs.0) || same(ours.1, theirs.1)
}

/// The session and the process group of `/proc/<process>/stat`, from one read of it.
fn session_and_group(process: &str) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
    Some((stat_field_in(&stat, SESSION)?, stat_field_in(&stat, PROCESS_GROUP)?))
}

/// The fields of `/proc/<pid>/stat`, counted after the command as [`stat_field`] does.
const PARENT: usize = 1;
const PROCESS_GROUP: usize = 2;
const SESSION: usize = 3;

/// Field `n` after the command of `/proc/<pid>/stat` (0: state, 1: parent, 2: process group,
/// 3: session).
fn stat_field<T: std::str::FromStr>(pid: u32, n: usize) -> Option<T> {
    stat_field_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, n)
}

/// Field `n` after the command in the text of a `stat` file (the command may hold spaces and
/// parentheses, so the fields start after its last `)`).
fn stat_field_in<T: std::str::FromStr>(stat: &str, n: usize) -> Option<T> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n)?.parse().ok()
}

/// Whether this server may act on `pid`: not pid 1, not itself, an existing process, and (unless
/// `allow_all`) one of its own user's; when that user is root, one the server started or one of
/// its own session.
///
/// Returns a pidfd opened before the checks: a process cannot be replaced while it lives, and
/// the fd is checked for an exit after them, so the process that passed is the one the fd
/// names, and `terminate` signals it through the fd even if its pid is reused later.
pub fn may_act_on(pid: i32, allow_all: bool) -> Result<OwnedFd, Refusal> {
    if pid == 1 {
        return Err(DashboardError::Protected(
            "pid 1 (init) is never signalled from the dashboard",
        ));
    }
    if u32::try_from(pid).ok() == Some(std::process::id()) {
        return Err(DashboardError::Protected("the dashboard does not act on its own server"));
    }
    // A thread id is not a process: /proc answers for it too, so it must be refused here or
    // the server's own threads (or pid 1's) would pass the checks above.
    if !is_process(pid) {
        return Err(DashboardError::UnknownPid(pid));
    }
    let unknown = || DashboardError::UnknownPid(pid);
    let pidfd = Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok())
        .ok_or_else(unknown)?;
    let target = sysinfo::Pid::from_u32(pid.unsigned_abs());
    let mut system = System::new().map_err(|e| DashboardError::ProcessTable(e.to_string()))?;
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[target]),
        true,
        ProcessRefreshKind::nothing().with_user(UpdateKind::Always),
    );
    let process = system
        .process(target)
        .filter(|p| p.status() != ProcessStatus::Zombie)
        .ok_or_else(unknown)?;
    let owned = match process.user_id() {
        Some(owner) => **owner == rustix::process::getuid().as_raw(),
        None => false,
    };
    if !owned && !allow_all {
        return Err(DashboardError::ForeignProcess(pid));
    }
    // Run as root, "the server user's own processes" would be every root process (sshd, the
    // journal…): then only those the server started count as its own.
    if rustix::process::getuid().is_root()
        && !allow_all
        && !descends_from_server(pid)
        && !in_server_session(pid)
    {
        return Err(DashboardError::NotStartedHere(pid));
    }
    // Still alive after the checks: they were about the process the fd names.
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    if rustix::event::poll(&mut fds, Some(&zero)).map_or(true, |ready| ready > 0) {
        return Err(unknown());
    }
    Ok(pidfd)
}

/// Whether `pid` is a process (its thread group id is itself), not one of a process's threads.
fn is_process(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .is_some_and(|t| t.trim() == pid.to_string())
}

/// What a failed command reports: a code and a message.
#[derive(Debug, PartialEq)]
pub struct Failure {
    /// `process_gone`, `permission_denied`, `still_running`, `os_error`.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl Failure {
    /// As JSON for events and the audit log.
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

fn os_failure(pid: i32, error: rustix::io::Errno) -> Failure {
    match error {
        rustix::io::Errno::SRCH => Failure {
            code: "process_gone",
            message: format!("pid {pid} exited before the action reached it"),
        },
        rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => Failure {
            code: "permission_denied",
            message: format!("the server may not do this to pid {pid}: {error}"),
        },
        other => Failure { code: "os_error", message: format!("pid {pid}: {other}") },
    }
}

/// Sets the nice value of every thread of `pid` (Linux keeps one per thread, and
/// `setpriority` on a pid changes only its main thread); returns the main thread's, read back.
pub fn renice(pid: i32, nice: i32) -> Result<Value, Failure> {
    let target = Pid::from_raw(pid).ok_or_else(|| os_failure(pid, rustix::io::Errno::SRCH))?;
    rustix::process::setpriority_process(Some(target), nice).map_err(|e| os_failure(pid, e))?;
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten();
    for tid in threads.filter_map(|t| t.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if let Some(thread) = Pid::from_raw(tid).filter(|t| *t != target) {
            // A thread that ended meanwhile is no failure.
            let _ = rustix::process::setpriority_process(Some(thread), nice);
        }
    }
    let now = rustix::process::getpriority_process(Some(target)).map_err(|e| os_failure(pid, e))?;
    Ok(json!({ "pid": pid, "nice": now }))
}

/// Sends TERM through `pidfd` (from [`may_act_on`]) to process `pid`, waits up to `grace` for
/// the exit, then KILL. Reports which signal ended it.
pub async fn terminate(pid: i32, pidfd: OwnedFd, grace: Duration) -> Result<Value, Failure> {
    let pidfd = Arc::new(pidfd);
    rustix::process::pidfd_send_signal(&*pidfd, Signal::TERM).map_err(|e| os_failure(pid, e))?;
    if exits_within(&pidfd, grace).await.map_err(|e| os_failure(pid, e))? {
        return Ok(json!({ "pid": pid, "signal": "TERM" }));
    }
    match rustix::process::pidfd_send_signal(&*pidfd, Signal::KILL) {
        Ok(()) => {}
        // It exited between the wait and the KILL: TERM did it after all.
        Err(rustix::io::Errno::SRCH) => return Ok(json!({ "pid": pid, "signal": "TERM" })),
        Err(error) => return Err(os_failure(pid, error)),
    }
    if exits_within(&pidfd, AFTER_KILL).await.map_err(|e| os_failure(pid, e))? {
        return Ok(json!({ "pid": pid, "signal": "KILL" }));
    }
    Err(Failure {
        code: "still_running",
        message: format!("pid {pid} survived KILL for 5 s (stuck in the kernel?)"),
    })
}

/// Whether the process behind `pidfd` exits within `limit` (a pidfd turns readable then).
async fn exits_within(pidfd: &Arc<OwnedFd>, limit: Duration) -> Result<bool, rustix::io::Errno> {
    let pidfd = pidfd.clone();
    let waited = tokio::task::spawn_blocking(move || {
        let timeout = Timespec {
            tv_sec: limit.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: limit.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&*pidfd, PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Err(rustix::io::Errno::INTR) => continue,
                other => return other.map(|ready| ready > 0),
            }
        }
    })
    .await;
    waited.unwrap_or(Err(rustix::io::Errno::IO))
}

/// Whether this server would act on `pid`, owned by `owner`, as far as `/proc` tells without
/// opening it: the list's hint of which rows get buttons. [`may_act_on`] still decides each
/// action.
pub fn would_act_on(pid: u32, owner: Option<u32>, allow_all: bool) -> bool {
    if pid <= 1 || pid == std::process::id() {
        return false;
    }
    if allow_all {
        return true;
    }
    let ours = rustix::process::getuid();
    if owner != Some(ours.as_raw()) {
        return false;
    }
    let Ok(pid) = i32::try_from(pid) else { return false };
    !ours.is_root() || descends_from_server(pid) || in_server_session(pid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The pid of a child that has exited and been reaped: no process has it (until reused).
    fn vanished_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        i32::try_from(child.id()).unwrap()
    }

    #[tokio::test]
    async fn a_process_gone_by_the_time_of_the_action_fails_as_process_gone() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let pidfd = may_act_on(pid, false).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        // Checked while alive, gone (and reaped) before the signal.
        let failed = terminate(pid, pidfd, Duration::from_millis(10)).await.unwrap_err();
        assert_eq!(failed.code, "process_gone");
        assert_eq!(renice(vanished_pid(), 5).unwrap_err().code, "process_gone");
        assert_eq!(may_act_on(vanished_pid(), false).unwrap_err().code(), "unknown_pid");
    }

    #[test]
    fn checks_values_before_processes() {
        let body = |json: &str| serde_json::from_str::<CommandBody>(json).unwrap().check();
        assert_eq!(
            body(r#"{"action":"set_interval","interval_ms":250}"#).ok(),
            Some(Command::SetInterval(Duration::from_millis(250)))
        );
        assert_eq!(
            body(r#"{"action":"terminate","pid":42}"#).ok(),
            Some(Command::Terminate { pid: 42, grace: DEFAULT_GRACE })
        );
        assert_eq!(
            body(r#"{"action":"renice","pid":4294967296,"nice":1}"#).unwrap_err().code(),
            "invalid_pid"
        );
    }
}
