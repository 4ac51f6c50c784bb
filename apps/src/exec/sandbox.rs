//! The sandbox a run executes in, and the limits it runs under.
//!
//! With bubblewrap (`bwrap`, Debian package `bubblewrap`) a run gets new user, network, PID, IPC,
//! UTS and cgroup namespaces (so no network at all), a read-only root made of `/usr` and the
//! usual symlinks, its own `/proc`, `/dev` and a size-capped `/tmp`, and its private scratch
//! directory as the working directory `/work`, the only place it can keep files. Without bwrap,
//! `unshare` gives the same namespaces over the host's file system (weaker: the host's files
//! stay readable), and with neither the server refuses to run anything unless started with
//! `--no-sandbox`.
//!
//! Limits are rlimits set by `prlimit` just before the program starts: address space (memory),
//! CPU seconds, processes, file size and open files. `RLIMIT_NPROC` counts every process of a
//! user and does not bind root, so a server running as root starts each run as its own
//! unprivileged uid (`setpriv`), one per concurrent slot; the wall-clock limit is the server's.
//!
//! Everything here only builds command lines; it needs no `unsafe` (which the workspace forbids:
//! setting rlimits or uids between fork and exec would need it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The uid the start-up probe runs as (when the server is root).
const PROBE_UID: u32 = 199_999;

/// How runs are isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// bubblewrap: namespaces and a read-only minimal root.
    Bubblewrap,
    /// `unshare`: namespaces over the host's file system.
    Unshare,
    /// Nothing (`--no-sandbox`): the run is the server's user, with the limits only.
    None,
}

impl Isolation {
    /// The strongest isolation this machine supports, found by running `true` in each exactly
    /// as a run would be started (as an unprivileged uid when the server is root).
    pub fn detect() -> Option<Isolation> {
        // One folder per probe, not per process: probes may run at once (tests start several
        // servers in one process), and one removing a shared folder under another's bwrap
        // makes that probe fail.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let probe = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch =
            std::env::temp_dir().join(format!("sse-apps-probe-{}-{probe}", std::process::id()));
        let root = rustix::process::getuid().is_root();
        let found = [Isolation::Bubblewrap, Isolation::Unshare].into_iter().find(|isolation| {
            let _ = std::fs::create_dir_all(&scratch);
            let uid = root.then_some(PROBE_UID);
            if let Some(uid) = uid {
                let _ = std::os::unix::fs::chown(&scratch, Some(uid), Some(uid));
            }
            let placement = Placement { scratch: scratch.clone(), uid };
            command(*isolation, &Limits::default(), &placement, &["/bin/true".to_owned()], false)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let _ = std::fs::remove_dir_all(&scratch);
        found
    }

    /// As the API and the page name it.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Bubblewrap => "bubblewrap",
            Isolation::Unshare => "unshare",
            Isolation::None => "none",
        }
    }
}

/// The limits of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Address space, bytes.
    pub memory: u64,
    /// CPU seconds.
    pub cpu_seconds: u64,
    /// Processes (and threads) of the run's user.
    pub processes: u64,
    /// Largest file it may write, bytes.
    pub file_size: u64,
    /// Open files.
    pub open_files: u64,
    /// Size of its `/tmp`, bytes (bubblewrap only).
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
    /// The run's private working directory on the host.
    pub scratch: PathBuf,
    /// The uid (and gid) to run as, when the server can choose.
    pub uid: Option<u32>,
}

/// The command that runs `argv` inside the sandbox, with `limits`, at `placement`. A run in a
/// terminal keeps its session (so the terminal's Ctrl-C reaches it); a run on pipes gets a new
/// one, so it cannot push input into a terminal the server may have (`TIOCSTI`).
pub fn command(
    isolation: Isolation,
    limits: &Limits,
    placement: &Placement,
    argv: &[String],
    terminal: bool,
) -> Command {
    let mut line: Vec<String> = Vec::new();
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
        Isolation::Bubblewrap => line.extend(bwrap(limits, &placement.scratch, terminal)),
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
        .env("LANG", "C.UTF-8");
    if isolation != Isolation::Bubblewrap {
        command.current_dir(&placement.scratch).env("HOME", &placement.scratch);
    }
    command
}

fn bwrap(limits: &Limits, scratch: &Path, terminal: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "bwrap",
        "--unshare-all",
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
    // capped tmpfs, like /tmp, and the rest of /dev is made read-only (device nodes still work).
    let tmp_size = limits.tmp_size.to_string();
    for (flag, value) in [
        ("--size", tmp_size.as_str()),
        ("--tmpfs", "/dev/shm"),
        ("--remount-ro", "/dev"),
        ("--size", tmp_size.as_str()),
        ("--tmpfs", "/tmp"),
        ("--bind", &*scratch.to_string_lossy()),
    ] {
        args.extend([flag.to_owned(), value.to_owned()]);
    }
    args.extend(["/work", "--chdir", "/work", "--remount-ro", "/", "--"].map(str::to_owned));
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
