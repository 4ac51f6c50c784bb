//! How much of the machine the hypervisor took while a scenario ran: the `steal` column of
//! `/proc/stat`, as a share of all CPU time the kernel accounted over the run.
//!
//! On the shared VMs these figures come from, the same run moves by a factor of two or more from
//! one minute to the next, and steal is what moves with it (33% in one slow run, next to nothing
//! in the fast ones). Every report says it, so a slow figure can be told from a slow server. It is
//! the kernel's count (the paravirtual steal clock), so it is only as good as what the hypervisor
//! reports; the server's own CPU time still comes from its `getrusage`, never from here. Reports
//! take it through [`conditions`](super::conditions).

/// The machine's CPU time counters at one moment, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// All the time accounted (every column of the `cpu` line).
    pub total: u64,
    /// Time the hypervisor ran something else while this VM wanted to run.
    pub steal: u64,
}

impl CpuTimes {
    /// The counters now, or `None` where there is no `/proc/stat` (not Linux).
    pub fn now() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Reads the aggregate `cpu` line of a `/proc/stat` text: `cpu user nice system idle iowait
    /// irq softirq steal guest guest_nice`. Guest time is already counted in user time, so it is
    /// left out of the total.
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|line| line.split_whitespace().next() == Some("cpu"))?;
        let columns: Vec<u64> =
            line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
        let steal = *columns.get(7)?;
        let total = columns.iter().take(8).sum();
        Some(CpuTimes { total, steal })
    }

    /// Steal since `before`, in percent of the time accounted meanwhile.
    pub fn steal_percent_since(&self, before: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(before.total).filter(|&t| t > 0)?;
        let steal = self.steal.checked_sub(before.steal)?;
        Some(100.0 * steal as f64 / total as f64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
mod tests {
    use super::*;

    const STAT: &str = "cpu  374716 149 58465 198906 1246 0 19658 30364 0 0\n\
                        cpu0 187000 70 29000 99000 600 0 9800 15000 0 0\n\
                        intr 123 4 5\n";

    #[test]
    fn reads_the_aggregate_line_and_leaves_guest_time_out() {
        let times = CpuTimes::parse(STAT).unwrap();
        assert_eq!(times.steal, 30364);
        assert_eq!(times.total, 374716 + 149 + 58465 + 198906 + 1246 + 19658 + 30364);
    }

    #[test]
    fn steal_is_a_share_of_the_time_accounted_between_two_readings() {
        let before = CpuTimes { total: 1000, steal: 100 };
        let after = CpuTimes { total: 2939, steal: 741 };
        let percent = after.steal_percent_since(&before).unwrap();
        assert!((percent - 33.06).abs() < 0.01, "{percent}");
    }

    #[test]
    fn nothing_is_claimed_from_unreadable_or_backwards_counters() {
        assert_eq!(CpuTimes::parse("intr 1 2\n"), None);
        assert_eq!(CpuTimes::parse("cpu 1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(CpuTimes::parse("cpu 1 2 3\n"), None, "no steal column");
        let same = CpuTimes { total: 10, steal: 1 };
        assert_eq!(same.steal_percent_since(&same), None, "no time passed");
        let earlier = CpuTimes { total: 20, steal: 5 };
        assert_eq!(same.steal_percent_since(&earlier), None);
    }
}
