//! The real metric source: one `sysinfo` [`System`] (and disk, network, sensor and user lists)
//! kept for the life of the dashboard, refreshed once per tick.
//!
//! Rates (CPU, disk and network) are differences between two refreshes, so the first tick has
//! none and says so; CPU also needs the two refreshes at least 200 ms apart
//! ([`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`]). Under a cgroup, the cgroup's memory limit and CPU
//! quota are 100%.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use sysinfo::{
    Components, Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind,
    Users,
};

use crate::shared::clock::unix_millis;

use super::cgroup::CpuQuota;
use super::sample::{
    Detail, DiskInfo, Limit, MetricSource, NetworkInfo, Point, ProcessInfo, Sample, Temperature,
    Usage,
};

/// How many processes each top list (by CPU, by memory) keeps.
const TOP: usize = 15;

/// Measures this machine.
#[derive(Debug)]
pub struct SystemSource {
    system: System,
    disks: Disks,
    networks: Networks,
    components: Components,
    users: Users,
    quota: Option<CpuQuota>,
    /// When the previous refresh happened, and the cgroup's CPU counter then.
    previous: Option<(Instant, Option<u64>)>,
    /// Processes the previous refresh saw (a process's CPU % needs two refreshes too).
    seen: HashSet<Pid>,
}

impl SystemSource {
    /// Lists the CPUs, disks, interfaces, sensors and users once.
    pub fn new() -> Result<SystemSource, sysinfo::Error> {
        Ok(SystemSource {
            system: System::new()?,
            disks: Disks::new_with_refreshed_list()?,
            networks: Networks::new_with_refreshed_list()?,
            components: Components::new_with_refreshed_list()?,
            users: Users::new_with_refreshed_list()?,
            quota: CpuQuota::of_this_process(),
            previous: None,
            seen: HashSet::new(),
        })
    }

    fn refresh(&mut self) {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_user(UpdateKind::OnlyIfNotSet),
        );
        self.disks.refresh(true);
        self.networks.refresh(true);
        self.components.refresh(true);
    }
}

impl MetricSource for SystemSource {
    fn restart(&mut self) {
        self.previous = None;
        self.seen.clear();
    }

    fn sample(&mut self) -> Sample {
        // Rates are over the time between the starts of two refreshes; the sampler schedules
        // ticks from those starts too, so at a 200 ms interval they are never under 200 ms apart.
        let now = Instant::now();
        self.refresh();
        let quota_used = self.quota.as_ref().and_then(CpuQuota::used_micros);
        let interval = Interval::since(self.previous.map(|(then, _)| then), now);
        let mut unavailable = interval.warming_up();
        let (cpu, cpu_limit) = self.cpu(&interval, quota_used);
        let cores = interval
            .cpu_ready
            .then(|| self.system.cpus().iter().map(|c| f64::from(c.usage())).collect());
        let memory = memory_usage(&self.system);
        let (swap, load) = self.swap_and_load(&mut unavailable);
        let disks = self.disks(&interval);
        let networks = self.networks(&interval);
        let temperatures = self.temperatures(&mut unavailable);
        let external = || networks.iter().filter(|n| n.name != "lo");
        let sum = |values: Vec<Option<f64>>| values.into_iter().sum::<Option<f64>>();
        let point = Point {
            t: unix_millis(),
            cpu,
            cores,
            memory: (memory.total > 0).then(|| 100.0 * memory.used as f64 / memory.total as f64),
            swap: swap.as_ref().map(|s| 100.0 * s.used as f64 / s.total as f64),
            load,
            net_rx: sum(external().map(|n| n.rx_bps).collect()),
            net_tx: sum(external().map(|n| n.tx_bps).collect()),
            disk_read: sum(disks.iter().map(|d| d.read_bps).collect()),
            disk_write: sum(disks.iter().map(|d| d.write_bps).collect()),
        };
        let processes = self.top_processes(interval.cpu_ready);
        self.previous = Some((now, quota_used));
        self.seen = self.system.processes().keys().copied().collect();
        let uptime_s = System::uptime().ok();
        Sample {
            point,
            detail: Detail {
                cpu_limit,
                memory,
                swap,
                uptime_s,
                disks,
                networks,
                processes,
                temperatures,
                unavailable,
            },
        }
    }
}

/// The time since the previous refresh, and so what can be measured over it yet.
struct Interval {
    /// When this refresh started.
    now: Instant,
    /// Seconds since the previous one started (none for the first).
    elapsed: Option<f64>,
    /// Byte rates need two refreshes.
    rates_ready: bool,
    /// CPU shares need two refreshes at least `MINIMUM_CPU_UPDATE_INTERVAL` apart.
    cpu_ready: bool,
}

impl Interval {
    fn since(previous: Option<Instant>, now: Instant) -> Interval {
        let elapsed = previous.map(|then| now.duration_since(then).as_secs_f64());
        Interval {
            now,
            elapsed,
            rates_ready: elapsed.is_some_and(|s| s > 0.0),
            cpu_ready: elapsed
                .is_some_and(|s| s >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.as_secs_f64()),
        }
    }

    /// `bytes` over the interval, per second, once rates can be measured.
    fn per_second(&self, bytes: u64) -> Option<f64> {
        self.elapsed.filter(|_| self.rates_ready).map(|s| bytes as f64 / s)
    }

    /// Why the metrics that are warming up have no value yet.
    fn warming_up(&self) -> BTreeMap<String, String> {
        let mut unavailable = BTreeMap::new();
        if !self.cpu_ready {
            unavailable.insert(
                "cpu".to_owned(),
                "warming up: CPU usage needs two samples at least 200 ms apart".to_owned(),
            );
        }
        if !self.rates_ready {
            for rate in ["net_rx", "net_tx", "disk_read", "disk_write"] {
                unavailable
                    .insert(rate.to_owned(), "warming up: rates need two samples".to_owned());
            }
        }
        unavailable
    }
}

impl SystemSource {
    /// The CPU in use, in percent of what this process may use (the cgroup's quota, or every
    /// core of the host), and that limit.
    fn cpu(&self, interval: &Interval, quota_used: Option<u64>) -> (Option<f64>, Limit) {
        let host_cores = self.system.cpus().len().max(1) as f64;
        match (&self.quota, quota_used, self.previous) {
            (Some(quota), Some(used), Some((then, Some(before)))) => {
                let busy = used.saturating_sub(before) as f64
                    / 1e6
                    / interval.now.duration_since(then).as_secs_f64();
                let cpu =
                    interval.cpu_ready.then(|| (100.0 * busy / quota.cores).clamp(0.0, 100.0));
                (cpu, Limit { cores: quota.cores, source: "cgroup" })
            }
            (Some(quota), ..) => (None, Limit { cores: quota.cores, source: "cgroup" }),
            (None, ..) => (
                interval.cpu_ready.then(|| f64::from(self.system.global_cpu_usage())),
                Limit { cores: host_cores, source: "host" },
            ),
        }
    }

    /// Swap (none on a machine without) and the load averages (none where the system has
    /// none), each noted in `unavailable` when missing.
    fn swap_and_load(
        &self,
        unavailable: &mut BTreeMap<String, String>,
    ) -> (Option<Usage>, Option<[f64; 3]>) {
        let swap_total = self.system.total_swap();
        let swap = (swap_total > 0).then(|| Usage {
            used: self.system.used_swap(),
            total: swap_total,
            source: "host",
        });
        if swap.is_none() {
            unavailable.insert("swap".to_owned(), "this machine has no swap".to_owned());
        }
        let load = System::load_average().ok().map(|l| [l.one, l.five, l.fifteen]);
        if load.is_none() {
            unavailable.insert("load".to_owned(), "this system reports no load average".to_owned());
        }
        (swap, load)
    }

    /// Every disk: its space, and its reads and writes per second over `interval`.
    fn disks(&self, interval: &Interval) -> Vec<DiskInfo> {
        self.disks
            .iter()
            .map(|disk| {
                let usage = disk.usage();
                DiskInfo {
                    name: disk.name().to_string_lossy().into_owned(),
                    mount: disk.mount_point().to_string_lossy().into_owned(),
                    total: disk.total_space(),
                    available: disk.available_space(),
                    read_bps: interval.per_second(usage.read_bytes),
                    write_bps: interval.per_second(usage.written_bytes),
                }
            })
            .collect()
    }

    /// Every network interface, with bytes received and sent per second over `interval`.
    fn networks(&self, interval: &Interval) -> Vec<NetworkInfo> {
        self.networks
            .iter()
            .map(|(name, data)| NetworkInfo {
                name: name.to_string_lossy().into_owned(),
                rx_bps: interval.per_second(data.received()),
                tx_bps: interval.per_second(data.transmitted()),
            })
            .collect()
    }

    /// Every sensor that reads a temperature, noted in `unavailable` when there is none.
    fn temperatures(&self, unavailable: &mut BTreeMap<String, String>) -> Vec<Temperature> {
        let temperatures: Vec<Temperature> = self
            .components
            .iter()
            .filter_map(|c| {
                Some(Temperature {
                    label: c.label().to_owned(),
                    celsius: f64::from(c.temperature()?),
                })
            })
            .collect();
        if temperatures.is_empty() {
            unavailable.insert(
                "temperatures".to_owned(),
                "this machine exposes no temperature sensors".to_owned(),
            );
        }
        temperatures
    }

    /// The top processes by CPU and by memory. A process's CPU % is `None` on the first tick it
    /// is seen (sysinfo would say 0).
    fn top_processes(&mut self, cpu_ready: bool) -> Vec<ProcessInfo> {
        let mut all: Vec<ProcessInfo> = self
            .system
            .processes()
            .values()
            .filter(|p| p.thread_kind().is_none())
            .map(|p| ProcessInfo {
                pid: p.pid().as_u32(),
                name: p.name().to_string_lossy().into_owned(),
                user: p.user_id().map(|uid| match self.users.get_user_by_id(uid) {
                    Some(user) => user.name().to_owned(),
                    None => uid.to_string(),
                }),
                cpu: (cpu_ready && self.seen.contains(&p.pid())).then(|| f64::from(p.cpu_usage())),
                memory: p.memory(),
            })
            .collect();
        let mut keep = HashSet::new();
        all.sort_by(|a, b| b.cpu.unwrap_or(0.0).total_cmp(&a.cpu.unwrap_or(0.0)));
        keep.extend(all.iter().take(TOP).map(|p| p.pid));
        all.sort_by_key(|p| std::cmp::Reverse(p.memory));
        keep.extend(all.iter().take(TOP).map(|p| p.pid));
        all.retain(|p| keep.contains(&p.pid));
        all
    }
}

/// Memory used and total: the cgroup's when it has a limit below the host's memory.
fn memory_usage(system: &System) -> Usage {
    let host = Usage { used: system.used_memory(), total: system.total_memory(), source: "host" };
    match system.cgroup_limits() {
        Some(limits) if limits.total_memory > 0 && limits.total_memory < host.total => Usage {
            used: limits.total_memory.saturating_sub(limits.free_memory),
            total: limits.total_memory,
            source: "cgroup",
        },
        _ => host,
    }
}
