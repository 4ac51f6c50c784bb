//! `sse_process_*` series, read from `/proc/self` at each scrape (Prometheus' own clients' names
//! under the registry's `sse_` prefix): CPU seconds, resident and virtual memory, open and
//! allowed descriptors, threads, start time. (`sse_build_info`, with the version, is registered
//! beside them in [`crate::metrics`].)
//!
//! Read when `/metrics` is asked, never on a request's or an event's path: a collector costs the
//! server nothing between scrapes.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Encodes the `process_*` series of this process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says, in the units the series use.
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    start_seconds: f64,
    threads: i64,
    open_fds: i64,
    max_fds: i64,
}

fn snapshot() -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may itself hold spaces and parentheses.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as i64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|t| t.trim().parse::<f64>().ok()))?;
    let max_fds = std::fs::read_to_string("/proc/self/limits").ok()?.lines().find_map(|l| {
        l.strip_prefix("Max open files")
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    });
    Some(Snapshot {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)? as i64,
        start_seconds: boot + field(22)? as f64 / ticks,
        virtual_bytes: field(23)? as i64,
        resident_bytes: field(24)? as i64 * page,
        open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as i64,
        max_fds: max_fds.unwrap_or(-1),
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(now) = snapshot() else { return Ok(()) };
        let cpu = ConstCounter::new(now.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let start = ConstGauge::new(now.start_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            None,
            start.metric_type(),
        )?)?;
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory, in bytes", now.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory, in bytes", now.virtual_bytes),
            ("process_open_fds", "Open file descriptors", now.open_fds),
            ("process_max_fds", "The open file descriptor limit", now.max_fds),
            ("process_threads", "Threads", now.threads),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_itself() {
        let now = snapshot().unwrap_or_else(|| panic!("/proc/self reads"));
        assert!(now.resident_bytes > 0 && now.virtual_bytes >= now.resident_bytes);
        assert!(now.threads >= 1 && now.open_fds >= 3 && now.max_fds >= now.open_fds);
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        assert!(
            now.start_seconds <= since_epoch + 1.0 && now.start_seconds > since_epoch - 86_400.0
        );
    }
}
