//! A cgroup per run: the run's whole memory, its process count and its CPU share, counted by
//! the kernel across every process of the run.
//!
//! Rlimits are per process: eighteen children of 400 MiB each stay under a 512 MiB
//! `RLIMIT_AS`, and pages of a tmpfs or a `memfd` are not address space at all. A memory cgroup
//! counts all of them (anonymous memory, tmpfs and shared memory, page cache) for the run as a
//! whole, and when the run goes past its limit the kernel's OOM killer picks a victim inside the
//! run, never the server.
//!
//! At start the server makes one parent group below its own cgroup (so it works wherever it
//! was given a cgroup it may manage: as root anywhere, as a user in a delegated systemd unit),
//! and each run gets a child of it made before the run starts and removed after it ends:
//!
//! - **cgroup v2** (where the unified hierarchy has the `memory` and `pids` controllers): the
//!   controllers are enabled for the parent; the "no processes in inner groups" rule may first
//!   require moving the server into a leaf of its own (`sse-apps-server`).
//! - **cgroup v1** (the `memory`, `pids` and `cpu` hierarchies mounted apart): the same group is
//!   made in each.
//!
//! The run joins its group itself, before anything of the program runs: its command line starts
//! with a tiny `sh` that writes its own pid into each group and then `exec`s the sandbox (see
//! [`join_prefix`]). Adding the pid from the server after `spawn` would race a program that forks
//! or allocates at once, and doing it between fork and exec in Rust needs `unsafe`, which the
//! workspace forbids. Crates such as `cgroups-rs` add tasks by pid after the fact, the race we
//! avoid, and create groups below the hierarchy's root rather than below our own group; the few
//! text files written here are simpler than adapting them.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::sandbox::Limits;

/// Where the cgroup file systems are mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup version the runs' groups use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The unified hierarchy.
    V2,
    /// The memory, pids and cpu hierarchies of cgroup v1.
    V1,
}

impl Version {
    /// As start-up and `/metrics` name it.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2 => "v2",
            Version::V1 => "v1",
        }
    }
}

/// The group every run's group is made in, removed when the server is done with it.
#[derive(Debug)]
pub struct RunGroups {
    version: Version,
    /// One directory (v2), or one per controller (v1: memory, pids, cpu).
    parents: Vec<PathBuf>,
    next: AtomicU64,
}

/// Why a run ended, when its cgroup says a limit did it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// The memory limit: the kernel killed a process of the run for it.
    Memory,
    /// The process limit refused a fork.
    Processes,
}

/// One run's group (v2), or its groups (v1).
#[derive(Debug)]
pub struct RunGroup {
    version: Version,
    dirs: Vec<PathBuf>,
}

impl RunGroups {
    /// Makes the parent group for this server's runs, or says why none can be made here.
    pub fn create() -> Result<RunGroups, String> {
        let membership = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        // A random name: unique across servers, processes and PID namespaces (which share the
        // v1 hierarchies), so no server ever takes or removes another's groups.
        let name = format!("sse-apps-runs-{}", uuid::Uuid::new_v4().simple());
        let v2 = v2_parent(&membership).and_then(|own| create_v2(&own, &name));
        match v2 {
            Ok(parent) => Ok(RunGroups::new(Version::V2, vec![parent])),
            Err(v2_error) => match create_v1(&membership, &name) {
                Ok(parents) => Ok(RunGroups::new(Version::V1, parents)),
                Err(v1_error) => Err(format!("cgroup v2: {v2_error}; cgroup v1: {v1_error}")),
            },
        }
    }

    fn new(version: Version, parents: Vec<PathBuf>) -> RunGroups {
        RunGroups { version, parents, next: AtomicU64::new(0) }
    }

    /// Whether the parent group(s) still exist.
    pub fn still_there(&self) -> Result<(), String> {
        match self.parents.iter().find(|parent| !parent.is_dir()) {
            Some(gone) => Err(format!("the runs' cgroup {} is gone", gone.display())),
            None => Ok(()),
        }
    }

    /// The version in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Makes the group of a run about to start, with `limits` set: total memory (swap off),
    /// processes and a CPU share of at most one core.
    pub fn run(&self, limits: &Limits) -> std::io::Result<RunGroup> {
        let name = format!("run-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut group = RunGroup { version: self.version, dirs: Vec::new() };
        for parent in &self.parents {
            let dir = parent.join(&name);
            std::fs::create_dir(&dir)?;
            group.dirs.push(dir);
        }
        group.limit(limits)?;
        Ok(group)
    }
}

impl Drop for RunGroups {
    fn drop(&mut self) {
        for parent in &self.parents {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

impl RunGroup {
    fn limit(&self, limits: &Limits) -> std::io::Result<()> {
        let memory = limits.memory.to_string();
        let processes = limits.processes.to_string();
        match self.version {
            Version::V2 => {
                let dir = &self.dirs[0];
                write(dir, "memory.max", &memory)?;
                write(dir, "memory.swap.max", "0").or_else(absent_is_fine)?;
                // Past the limit, the whole run goes, not one process of it picked at random.
                write(dir, "memory.oom.group", "1").or_else(absent_is_fine)?;
                write(dir, "pids.max", &processes)?;
                // At most one core, and half the weight of the server's own work.
                write(dir, "cpu.max", "100000 100000").or_else(absent_is_fine)?;
                write(dir, "cpu.weight", "50").or_else(absent_is_fine)?;
            }
            Version::V1 => {
                let (memory_dir, pids_dir, cpu_dir) = (&self.dirs[0], &self.dirs[1], &self.dirs[2]);
                write(memory_dir, "memory.limit_in_bytes", &memory)?;
                // With swap accounting, the same number for memory and swap together: no swap.
                write(memory_dir, "memory.memsw.limit_in_bytes", &memory)
                    .or_else(absent_is_fine)?;
                write(memory_dir, "memory.swappiness", "0").or_else(absent_is_fine)?;
                write(pids_dir, "pids.max", &processes)?;
                write(cpu_dir, "cpu.cfs_period_us", "100000").or_else(absent_is_fine)?;
                write(cpu_dir, "cpu.cfs_quota_us", "100000").or_else(absent_is_fine)?;
                write(cpu_dir, "cpu.shares", "512").or_else(absent_is_fine)?;
            }
        }
        Ok(())
    }

    /// The files the run writes its pid into to join (see [`join_prefix`]).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|dir| dir.join("cgroup.procs")).collect()
    }

    /// Which of the group's limits ended (part of) the run, if any did.
    pub fn limit_hit(&self) -> Option<LimitHit> {
        let (memory_events, pids_events) = match self.version {
            Version::V2 => (self.dirs[0].join("memory.events"), self.dirs[0].join("pids.events")),
            Version::V1 => {
                (self.dirs[0].join("memory.oom_control"), self.dirs[1].join("pids.events"))
            }
        };
        if counter(&memory_events, "oom_kill").unwrap_or(0) > 0 {
            return Some(LimitHit::Memory);
        }
        if counter(&pids_events, "max").unwrap_or(0) > 0 {
            return Some(LimitHit::Processes);
        }
        None
    }

    /// The most memory the run used at once, in bytes, where the kernel keeps that figure.
    pub fn peak_memory(&self) -> Option<u64> {
        let file = match self.version {
            Version::V2 => "memory.peak",
            Version::V1 => "memory.max_usage_in_bytes",
        };
        read_number(&self.dirs[0].join(file))
    }

    /// Kills whatever of the run is still in the group.
    fn kill_all(&self) {
        if self.version == Version::V2 && write(&self.dirs[0], "cgroup.kill", "1").is_ok() {
            return;
        }
        for dir in &self.dirs {
            let Ok(pids) = std::fs::read_to_string(dir.join("cgroup.procs")) else { continue };
            for pid in pids.lines().filter_map(|line| line.trim().parse::<i32>().ok()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

impl RunGroup {
    /// Removes the group once the run has ended. The kernel refuses (`EBUSY`) while a process
    /// of the run lives, so what is left is killed and the removal tried again for a moment.
    pub async fn remove(mut self) {
        for attempt in 0..50 {
            self.remove_empty();
            if self.dirs.is_empty() {
                return;
            }
            if attempt == 0 {
                self.kill_all();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tracing::warn!(groups = ?self.dirs, "a run's cgroup could not be removed");
    }

    fn remove_empty(&mut self) {
        self.dirs.retain(|dir| {
            std::fs::remove_dir(dir).is_err_and(|error| error.kind() != ErrorKind::NotFound)
        });
    }
}

impl Drop for RunGroup {
    /// A group dropped without [`RunGroup::remove`] (a run that never started) is empty.
    fn drop(&mut self) {
        self.remove_empty();
    }
}

/// The command-line prefix that moves the process into `group` and then runs the rest of the
/// command line: `sh -c '...' sse-apps-join FILE... -- COMMAND...`. It runs as the server's user,
/// before any change of uid.
pub fn join_prefix(group: &RunGroup) -> Vec<String> {
    // oom_score_adj 1000 (inherited by everything the run starts): when memory runs short above
    // the run's own group, the kernel kills a run's process before anything else, the server
    // above all.
    const SCRIPT: &str = r#"echo 1000 > /proc/self/oom_score_adj; while [ "$1" != -- ]; do echo $$ > "$1" || { echo "sse-apps: cannot join the run's cgroup ($1)" >&2; exit 125; }; shift; done; shift; exec "$@""#;
    let mut line =
        vec!["/bin/sh".to_owned(), "-c".to_owned(), SCRIPT.to_owned(), "sse-apps-join".to_owned()];
    line.extend(group.procs_files().iter().map(|file| file.to_string_lossy().into_owned()));
    line.push("--".to_owned());
    line
}

/// The message a failed join prints, so the run's end can say the sandbox failed.
pub const JOIN_FAILED: &str = "sse-apps: cannot join the run's cgroup";

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(file), value)
}

/// Some knobs exist only with some kernel options (swap accounting, the cpu controller).
fn absent_is_fine(error: std::io::Error) -> std::io::Result<()> {
    if error.kind() == ErrorKind::NotFound { Ok(()) } else { Err(error) }
}

/// A `key value` line's value in a cgroup events file.
fn counter(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// This process's group in the unified hierarchy, where that hierarchy has the controllers a
/// run needs.
fn v2_parent(membership: &str) -> Result<PathBuf, String> {
    let own = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 group")?;
    let mount = [PathBuf::from(ROOT), Path::new(ROOT).join("unified")]
        .into_iter()
        .find(|dir| dir.join("cgroup.controllers").exists())
        .ok_or("no cgroup v2 hierarchy is mounted")?;
    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    for needed in ["memory", "pids"] {
        if !controllers.split_whitespace().any(|c| c == needed) {
            return Err(format!("the cgroup v2 hierarchy has no {needed} controller"));
        }
    }
    Ok(mount.join(own.trim().trim_start_matches('/')))
}

/// Makes `own/name` with the controllers enabled for its children. The controllers must first
/// be enabled in `own`, which the kernel allows only while `own` has no processes of its own
/// (unless it is the root): if it refuses, this server moves itself into a leaf `own/sse-apps-server`
/// and tries again.
fn create_v2(own: &Path, name: &str) -> Result<PathBuf, String> {
    let enable = |dir: &Path| {
        let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .map(|c| format!("+{c}"))
            .collect();
        std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))
    };
    if let Err(error) = enable(own) {
        if error.raw_os_error() != Some(rustix::io::Errno::BUSY.raw_os_error()) {
            return Err(format!("cannot enable controllers in {}: {error}", own.display()));
        }
        let leaf = own.join("sse-apps-server");
        match std::fs::create_dir(&leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot make {}: {e}", leaf.display())),
        }
        std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| format!("cannot move this server into {}: {e}", leaf.display()))?;
        enable(own).map_err(|e| format!("cannot enable controllers in {}: {e}", own.display()))?;
    }
    let parent = own.join(name);
    make_group(&parent)?;
    enable(&parent)
        .map_err(|e| format!("cannot enable controllers in {}: {e}", parent.display()))?;
    Ok(parent)
}

/// This process's group in the v1 hierarchy of `controller`.
fn v1_own<'a>(membership: &'a str, controller: &str) -> Result<&'a str, String> {
    membership
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            controllers.split(',').any(|c| c == controller).then_some(path)
        })
        .ok_or_else(|| format!("this process is in no cgroup v1 {controller} group"))
}

/// Makes `name` in this process's group of the v1 memory, pids and cpu hierarchies.
fn create_v1(membership: &str, name: &str) -> Result<Vec<PathBuf>, String> {
    let mut parents = Vec::new();
    for controller in ["memory", "pids", "cpu"] {
        let own = v1_own(membership, controller)?;
        let mount = Path::new(ROOT).join(controller);
        let parent = mount.join(own.trim_start_matches('/')).join(name);
        if let Err(error) = make_group(&parent) {
            for made in &parents {
                let _ = std::fs::remove_dir(made);
            }
            return Err(error);
        }
        parents.push(parent);
    }
    Ok(parents)
}

/// Makes one group (its name is fresh: see [`RunGroups::create`]).
fn make_group(dir: &Path) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))
}

/// The memory limit above this server's own group, if one is set (a systemd `MemoryMax`, a
/// container's `--memory`): the runs' groups are inside it, so runs that together reach it would
/// make the kernel pick a victim among everything in it, the server included.
pub fn inherited_memory_limit() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    if let Ok(own) = v2_parent(&membership) {
        let mut limit = None;
        let mut dir = Some(own.as_path());
        while let Some(group) = dir.filter(|d| d.join("cgroup.controllers").exists()) {
            if let Some(max) = read_number(&group.join("memory.max")) {
                limit = Some(limit.map_or(max, |l: u64| l.min(max)));
            }
            dir = group.parent();
        }
        return limit;
    }
    let own = v1_own(&membership, "memory").ok()?;
    let stat = std::fs::read_to_string(
        Path::new(ROOT).join("memory").join(own.trim_start_matches('/')).join("memory.stat"),
    )
    .ok()?;
    let limit: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("hierarchical_memory_limit ")?.trim().parse().ok())?;
    // v1 says "no limit" with a number near 2^63.
    (limit < 1 << 62).then_some(limit)
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use super::*;

    #[test]
    fn an_events_counter_is_read_by_its_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("memory.events");
        std::fs::write(&file, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n").unwrap_or_default();
        assert_eq!(counter(&file, "oom_kill"), Some(1));
        assert_eq!(counter(&file, "oom"), Some(1));
        assert_eq!(counter(&file, "max"), Some(12));
        assert_eq!(counter(&file, "missing"), None);
    }

    #[test]
    fn v2_needs_the_memory_and_pids_controllers() {
        assert!(v2_parent("1:memory:/\n").is_err(), "no unified line");
    }
}
