//! The sandbox a run executes in, and the limits it runs under.
//!
//! With bubblewrap (`bwrap`, Debian package `bubblewrap`) a run gets new user, network, PID, IPC,
//! UTS and cgroup namespaces (so no network at all), may not make user namespaces of its own
//! (`--disable-userns`: no nested namespace in which it could mount a tmpfs outside every limit),
//! a read-only root made of `/usr` and the usual symlinks, its own `/proc`, a read-only `/dev`,
//! and size-capped tmpfs mounts at `/tmp`, `/dev/shm` and `/work` (its working directory), the
//! only places it can keep files. Nothing of the host's file system is writable, and no host
//! directory is needed, so the data directory may be anywhere (`/root` included).
//!
//! `unshare` gives the same namespaces over the host's file system (weaker: the host's files stay
//! readable, and nested namespaces are not prevented), so it is used only when asked for by flag;
//! likewise `--no-sandbox`. The kind asked for is checked at start by running `/bin/true` in it,
//! exactly as a run would start; if that fails, exec refuses runs and says why, never falling back
//! to a weaker kind by itself.
//!
//! Limits: the run's cgroup ([`super::cgroup`]) bounds its total memory (tmpfs included), its
//! process count and its CPU share; rlimits set by `prlimit` just before the program starts bound
//! each process (address space, CPU seconds, processes, file size, open files). `RLIMIT_NPROC`
//! counts every process of a user and does not bind root, so a server running as root starts each
//! run as its own unprivileged uid (`setpriv`), one per concurrent slot, from a range outside every
//! subordinate id range on the machine ([`super::run_uids`]); the wall-clock limit is the server's.
//!
//! Everything here only builds command lines; it needs no `unsafe` (which the workspace forbids:
//! setting rlimits or uids between fork and exec would need it).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::cgroup::RunGroup;

/// How runs are isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// bubblewrap: namespaces and a read-only minimal root.
    Bubblewrap,
    /// `unshare`: namespaces over the host's file system.
    Unshare,
    /// Nothing: the run is the server's user (or a run uid), with the limits only.
    None,
}

impl Isolation {
    /// Runs `/bin/true` in this kind of sandbox exactly as a run would be started (as `uid` when
    /// the server is root, in `group` when runs get cgroups); on failure, says why.
    ///
    /// Only `unshare` and no sandbox need a host directory, the run's working directory: a
    /// fresh one with a random name and mode 0700, made by `tempfile` (so nobody can plant a
    /// symlink or a directory where it will be), whose owner is changed through its open
    /// descriptor (so the change cannot be redirected either).
    pub fn probe(self, uid: Option<u32>, group: Option<&RunGroup>) -> Result<(), String> {
        let scratch = match self {
            Isolation::Bubblewrap => None,
            Isolation::Unshare | Isolation::None => Some(
                tempfile::Builder::new()
                    .prefix("sse-apps-probe-")
                    .tempdir()
                    .map_err(|e| format!("cannot make the probe's directory: {e}"))?,
            ),
        };
        if let (Some(dir), Some(uid)) = (&scratch, uid) {
            give_to(dir.path(), uid)
                .map_err(|e| format!("cannot hand the probe's directory to uid {uid}: {e}"))?;
        }
        let placement = Placement { scratch: scratch.as_ref().map(|d| d.path().to_owned()), uid };
        let output =
            command(self, &Limits::default(), &placement, group, &["/bin/true".to_owned()], false)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("cannot start {}: {e}", self.program()))?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        Err(format!("{} failed ({}): {}", self.program(), output.status, said.trim()))
    }

    /// As the API and the page name it.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Bubblewrap => "bubblewrap",
            Isolation::Unshare => "unshare",
            Isolation::None => "none",
        }
    }

    /// The program this kind of sandbox starts.
    pub fn program(self) -> &'static str {
        match self {
            Isolation::Bubblewrap => "bwrap",
            Isolation::Unshare => "unshare",
            Isolation::None => "prlimit",
        }
    }
}

/// Gives the directory at `path` to `uid` (and the group of the same number), through a
/// descriptor opened without following a symlink, so the change lands on that directory or
/// nowhere.
pub fn give_to(path: &std::path::Path, uid: u32) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let dir = rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let id = |n| rustix::process::Uid::from_raw(n);
    rustix::fs::fchown(&dir, Some(id(uid)), Some(rustix::process::Gid::from_raw(uid)))?;
    Ok(())
}

/// The limits of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Memory, bytes: the whole run's (its cgroup: every process, tmpfs and page cache), and
    /// each process's address space.
    pub memory: u64,
    /// CPU seconds.
    pub cpu_seconds: u64,
    /// Processes (and threads) of the run's user.
    pub processes: u64,
    /// Largest file it may write, bytes.
    pub file_size: u64,
    /// Open files.
    pub open_files: u64,
    /// Size of each of its tmpfs mounts, `/tmp`, `/dev/shm` and `/work`, bytes (bubblewrap
    /// only); they count in `memory` too.
    pub tmp_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 512 << 20,
            cpu_seconds: 60,
            processes: 64,
            file_size: 16 << 20,
            open_files: 256,
            tmp_size: 64 << 20,
        }
    }
}

/// Where a run happens: its scratch directory and, when the server is root, its own uid.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The run's private working directory on the host; bubblewrap needs none (its `/work` is a
    /// tmpfs).
    pub scratch: Option<PathBuf>,
    /// The uid (and gid) to run as, when the server can choose.
    pub uid: Option<u32>,
}

/// The command that runs `argv` inside the sandbox, with `limits`, at `placement`, in `group`
/// (joined before anything else runs). A run in a terminal keeps its session (so the terminal's
/// Ctrl-C reaches it); a run on pipes gets a new one, so it cannot push input into a terminal the
/// server may have (`TIOCSTI`).
pub fn command(
    isolation: Isolation,
    limits: &Limits,
    placement: &Placement,
    group: Option<&RunGroup>,
    argv: &[String],
    terminal: bool,
) -> Command {
    let mut line: Vec<String> = group.map(super::cgroup::join_prefix).unwrap_or_default();
    if let Some(uid) = placement.uid {
        line.extend(
            [
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--no-new-privs",
                "--",
            ]
            .map(str::to_owned),
        );
    }
    // A run dies with the server, so a run the journal reports as interrupted after a crash is
    // really gone: bubblewrap has --die-with-parent; otherwise the parent-death signal is set
    // here (after any change of uid, which clears it), and `unshare --kill-child` passes it on.
    if isolation != Isolation::Bubblewrap {
        line.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(str::to_owned));
    }
    match isolation {
        Isolation::Bubblewrap => line.extend(bwrap(limits, terminal)),
        Isolation::Unshare => line.extend(
            [
                "unshare",
                "--user",
                "--map-current-user",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--mount-proc",
                "--ipc",
                "--uts",
                "--",
            ]
            .map(str::to_owned),
        ),
        Isolation::None => {}
    }
    // Without bubblewrap's --new-session, a program on pipes could still reach the server's
    // controlling terminal and push keystrokes into it (TIOCSTI): a new session has none.
    if isolation != Isolation::Bubblewrap && !terminal {
        line.insert(0, "setsid".to_owned());
    }
    line.extend(prlimit(limits));
    line.extend(argv.iter().cloned());
    let mut command = Command::new(&line[0]);
    command.args(&line[1..]);
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/work")
        .env("LANG", "C.UTF-8")
        // In a terminal, programs may draw (colours, full-screen); on pipes they must not try.
        .env("TERM", if terminal { "xterm-256color" } else { "dumb" });
    if let (false, Some(scratch)) = (isolation == Isolation::Bubblewrap, &placement.scratch) {
        command.current_dir(scratch).env("HOME", scratch);
    }
    command
}

fn bwrap(limits: &Limits, terminal: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "bwrap",
        "--unshare-all",
        // Named apart from --unshare-all, which --disable-userns requires.
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    .map(str::to_owned)
    .to_vec();
    if !terminal {
        args.insert(1, "--new-session".to_owned());
    }
    // bwrap's /dev is a tmpfs of its own, with no size limit, and /dev/shm is a folder in it: a
    // run could fill memory there (RLIMIT_AS does not count tmpfs pages). /dev/shm gets its own
    // capped tmpfs, like /tmp and /work, and the rest of /dev is made read-only (device nodes
    // still work).
    let tmp_size = limits.tmp_size.to_string();
    for (flag, value) in [
        ("--size", tmp_size.as_str()),
        ("--tmpfs", "/dev/shm"),
        ("--remount-ro", "/dev"),
        ("--size", tmp_size.as_str()),
        ("--tmpfs", "/tmp"),
        ("--size", tmp_size.as_str()),
        ("--tmpfs", "/work"),
    ] {
        args.extend([flag.to_owned(), value.to_owned()]);
    }
    args.extend(["--chdir", "/work", "--remount-ro", "/", "--"].map(str::to_owned));
    args
}

fn prlimit(limits: &Limits) -> Vec<String> {
    vec![
        "prlimit".to_owned(),
        format!("--as={}", limits.memory),
        // Soft limit sends SIGXCPU, the hard one a second later SIGKILL.
        format!("--cpu={}:{}", limits.cpu_seconds, limits.cpu_seconds + 1),
        format!("--nproc={}", limits.processes),
        format!("--fsize={}", limits.file_size),
        format!("--nofile={}", limits.open_files),
        "--".to_owned(),
    ]
}
