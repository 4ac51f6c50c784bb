//! This process's cgroup CPU quota and CPU usage, so a container's limit counts as 100%.
//!
//! sysinfo reports a cgroup's memory limit but not its CPU quota, so this reads the two files
//! that hold it: `cpu.max` (cgroup v2) or `cpu.cfs_quota_us` / `cpu.cfs_period_us` (v1), and the
//! cgroup's own usage counter (`cpu.stat` `usage_usec`, or v1 `cpuacct.usage`) to measure how
//! much of the quota is in use. The cgroup's path comes from `/proc/self/cgroup`; inside a
//! container the hierarchy is often mounted at its root, so that is tried too.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// A CPU quota: where to read usage, and how many CPUs it allows.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuQuota {
    /// CPUs the quota allows (quota / period), possibly fractional.
    pub cores: f64,
    usage: UsageFile,
}

#[derive(Clone, Debug, PartialEq)]
enum UsageFile {
    /// v2 `cpu.stat`, `usage_usec` line.
    Stat(PathBuf),
    /// v1 `cpuacct.usage`, nanoseconds.
    Acct(PathBuf),
}

impl CpuQuota {
    /// The quota of this process's cgroup, if it has one.
    pub fn of_this_process() -> Option<CpuQuota> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        v2(&membership).or_else(|| v1(&membership))
    }

    /// CPU time the cgroup has used, in microseconds.
    pub fn used_micros(&self) -> Option<u64> {
        match &self.usage {
            UsageFile::Stat(path) => {
                let text = std::fs::read_to_string(path).ok()?;
                let line = text.lines().find_map(|line| line.strip_prefix("usage_usec "))?;
                line.trim().parse().ok()
            }
            UsageFile::Acct(path) => {
                let nanos: u64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
                Some(nanos / 1000)
            }
        }
    }
}

/// The directories the cgroup `path` may be at under `mount`: the path itself, then the mount's
/// root (a container's namespaced view).
fn candidates(mount: &Path, path: &str) -> [PathBuf; 2] {
    [mount.join(path.trim_start_matches('/')), mount.to_owned()]
}

fn v2(membership: &str) -> Option<CpuQuota> {
    let path = membership.lines().find_map(|line| line.strip_prefix("0::"))?;
    candidates(Path::new(ROOT), path).into_iter().find_map(|dir| {
        let max = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
        let cores = parse_cpu_max(&max)?;
        Some(CpuQuota { cores, usage: UsageFile::Stat(dir.join("cpu.stat")) })
    })
}

fn v1(membership: &str) -> Option<CpuQuota> {
    let path = membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })?;
    ["cpu", "cpu,cpuacct", "cpuacct,cpu"].into_iter().find_map(|name| {
        candidates(&Path::new(ROOT).join(name), path).into_iter().find_map(|dir| {
            let quota = read_i64(&dir.join("cpu.cfs_quota_us"))?;
            let period = read_i64(&dir.join("cpu.cfs_period_us"))?;
            let cores = quota_cores(quota, period)?;
            Some(CpuQuota { cores, usage: UsageFile::Acct(dir.join("cpuacct.usage")) })
        })
    })
}

fn read_i64(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `"max 100000"` (no limit) or `"150000 100000"` (1.5 CPUs).
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?.parse().ok()?;
    let period = fields.next()?.parse().ok()?;
    quota_cores(quota, period)
}

/// A positive quota over a positive period; v1 writes -1 for "no limit".
fn quota_cores(quota: i64, period: i64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use super::*;

    #[test]
    fn cpu_max_reads_quota_over_period_and_max_as_none() {
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(quota_cores(-1, 100_000), None);
        assert_eq!(quota_cores(50_000, 100_000), Some(0.5));
    }
}
