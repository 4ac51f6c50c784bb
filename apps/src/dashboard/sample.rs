//! What one tick measures, in the shape it travels in.
//!
//! A tick is split in two: a [`Point`] (a dozen numbers: what the charts plot and the history
//! ring keeps) and a [`Detail`] (disks, interfaces, processes, sensors: shown for the latest
//! tick only). The `metrics` event carries both; the `snapshot` carries ten minutes of points
//! and the latest detail, so a page that connects has full charts at once without the server
//! keeping ten minutes of process tables.
//!
//! Nothing here is ever a fake zero: a value that is not measured yet (CPU usage needs two
//! samples) or not measurable here (no swap, no sensors) is `null`, and `unavailable` says why.

use std::collections::BTreeMap;

use serde::Serialize;

/// The numbers the charts plot. Percentages are of what this process may use: under a cgroup
/// limit the limit is 100%.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    /// CPU busy, % of the CPUs available (all cores, or the cgroup's quota).
    pub cpu: Option<f64>,
    /// Each core's busy %, host-wide.
    pub cores: Option<Vec<f64>>,
    /// Memory used, % of the total (or of the cgroup limit).
    pub memory: Option<f64>,
    /// Swap used, %; `null` when there is no swap.
    pub swap: Option<f64>,
    /// Load average over 1, 5 and 15 minutes.
    pub load: Option<[f64; 3]>,
    /// Bytes a second received, all interfaces but loopback.
    pub net_rx: Option<f64>,
    /// Bytes a second sent, all interfaces but loopback.
    pub net_tx: Option<f64>,
    /// Bytes a second read from all disks.
    pub disk_read: Option<f64>,
    /// Bytes a second written to all disks.
    pub disk_write: Option<f64>,
}

/// Everything else one tick saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Detail {
    /// CPUs available to this process, and where that figure comes from.
    pub cpu_limit: Limit,
    /// Memory in bytes.
    pub memory: Usage,
    /// Swap in bytes; `null` when there is none.
    pub swap: Option<Usage>,
    /// Seconds since boot.
    pub uptime_s: Option<u64>,
    /// Mounted file systems.
    pub disks: Vec<DiskInfo>,
    /// Network interfaces.
    pub networks: Vec<NetworkInfo>,
    /// The busiest processes by CPU and the largest by memory (the union of both top lists).
    pub processes: Vec<ProcessInfo>,
    /// Sensor temperatures; empty when the machine exposes none (`unavailable` says so).
    pub temperatures: Vec<Temperature>,
    /// Why a value is missing, by field name (`cpu`, `swap`, `load`, `temperatures`, …).
    pub unavailable: BTreeMap<String, String>,
}

/// A capacity and where it comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Limit {
    /// CPUs (fractional under a quota).
    pub cores: f64,
    /// `"host"` or `"cgroup"`.
    pub source: &'static str,
}

/// Used out of total, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Bytes in use.
    pub used: u64,
    /// Bytes in all (the cgroup limit when there is one below the host's memory).
    pub total: u64,
    /// `"host"` or `"cgroup"`.
    pub source: &'static str,
}

/// One mounted file system.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DiskInfo {
    /// Device name.
    pub name: String,
    /// Where it is mounted.
    pub mount: String,
    /// Size in bytes.
    pub total: u64,
    /// Free bytes for unprivileged users.
    pub available: u64,
    /// Bytes a second read since the previous tick.
    pub read_bps: Option<f64>,
    /// Bytes a second written since the previous tick.
    pub write_bps: Option<f64>,
}

impl DiskInfo {
    /// Space used, % of the size; `None` for a file system of size zero (proc and the like).
    pub fn used_percent(&self) -> Option<f64> {
        (self.total > 0).then(|| {
            100.0 * (self.total - self.available.min(self.total)) as f64 / self.total as f64
        })
    }
}

/// One network interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NetworkInfo {
    /// Interface name.
    pub name: String,
    /// Bytes a second received since the previous tick.
    pub rx_bps: Option<f64>,
    /// Bytes a second sent since the previous tick.
    pub tx_bps: Option<f64>,
}

/// One process.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Executable name.
    pub name: String,
    /// Owner's user name (or uid, when it has no name).
    pub user: Option<String>,
    /// CPU busy, % of one core (so up to 100 × cores); `null` on its first tick.
    pub cpu: Option<f64>,
    /// Resident memory in bytes.
    pub memory: u64,
}

/// One sensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Temperature {
    /// The sensor's label.
    pub label: String,
    /// Degrees Celsius.
    pub celsius: f64,
}

/// One tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// The numbers for charts.
    pub point: Point,
    /// The rest.
    pub detail: Detail,
}

impl Sample {
    /// The values alerts watch, by metric name: `cpu`, `memory`, `swap` and `disk:<mount>`,
    /// each in %.
    pub fn watched(&self) -> Vec<(String, f64)> {
        let point = &self.point;
        let named = [("cpu", point.cpu), ("memory", point.memory), ("swap", point.swap)];
        let mut values: Vec<(String, f64)> =
            named.into_iter().filter_map(|(name, v)| Some((name.to_owned(), v?))).collect();
        for disk in &self.detail.disks {
            if let Some(percent) = disk.used_percent() {
                values.push((format!("disk:{}", disk.mount), percent));
            }
        }
        values
    }
}

/// Where ticks come from: the machine ([`super::system::SystemSource`]) or, in tests, a source
/// that returns whatever the test sets.
pub trait MetricSource: Send + 'static {
    /// Measures once. Called from a blocking thread, once per tick, whatever the viewer count.
    fn sample(&mut self) -> Sample;

    /// Forgets the previous measurement after the sampler paused (nobody watched), so the next
    /// sample's rates are not averaged over the pause.
    fn restart(&mut self) {}
}
