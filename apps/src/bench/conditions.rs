//! What a scenario ran beside, said at the end of its report line: the machine's steal time
//! ([`steal`](super::steal)) and the load generator's own CPU time.
//!
//! Both tell whether a figure describes the server. In a run where the hypervisor took a third of
//! the machine, or where the load generator kept its own core busy all the time, the latencies
//! measure those as much as the server: a load generator that is always busy reads each event
//! late. The load generator's time comes from its own `getrusage`, as the server's does.

use std::time::Instant;

use super::control::cpu_of_self;
use super::steal::CpuTimes;

/// Started with a scenario's measured part; [`Watch::finish`] says what it ran beside.
#[derive(Debug)]
pub struct Watch {
    machine: Option<CpuTimes>,
    /// The load generator's CPU time at the start, in microseconds.
    own_cpu_us: u64,
    started: Instant,
}

/// The conditions of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Conditions {
    /// The machine's steal time, in percent, where it can be read.
    pub steal_percent: Option<f64>,
    /// The load generator's CPU time, in percent of one core.
    pub load_cpu_percent: f64,
}

impl Watch {
    /// Starts watching now.
    pub fn start() -> Watch {
        // Only the CPU times: `Usage::of_self` would also walk `/proc/self/fd`, which holds
        // 10,000 sockets at the big loads, on the clock being measured.
        let own_cpu_us = total(cpu_of_self());
        Watch { machine: CpuTimes::now(), own_cpu_us, started: Instant::now() }
    }

    /// The conditions from the start until now.
    pub fn finish(&self) -> Conditions {
        let steal_percent =
            self.machine.and_then(|before| CpuTimes::now()?.steal_percent_since(&before));
        let used_us = total(cpu_of_self()).saturating_sub(self.own_cpu_us);
        let load_cpu_percent =
            100.0 * used_us as f64 / self.started.elapsed().as_micros().max(1) as f64;
        Conditions { steal_percent, load_cpu_percent }
    }
}

/// User plus kernel time.
fn total((user_us, system_us): (u64, u64)) -> u64 {
    user_us + system_us
}

impl Conditions {
    /// The end of a report line: `, load generator CPU 61%, machine steal 12%` (the steal left out
    /// where it cannot be read).
    pub fn suffix(&self) -> String {
        let steal = self
            .steal_percent
            .map(|percent| format!(", machine steal {percent:.0}%"))
            .unwrap_or_default();
        format!(", load generator CPU {:.0}%{steal}", self.load_cpu_percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_names_both_and_leaves_out_what_could_not_be_read() {
        let both = Conditions { steal_percent: Some(33.06), load_cpu_percent: 61.4 };
        assert_eq!(both.suffix(), ", load generator CPU 61%, machine steal 33%");
        let no_steal = Conditions { steal_percent: None, load_cpu_percent: 7.0 };
        assert_eq!(no_steal.suffix(), ", load generator CPU 7%");
    }

    #[test]
    fn a_busy_load_generator_is_seen() {
        let watch = Watch::start();
        let until = Instant::now() + std::time::Duration::from_millis(100);
        let mut spins = 0u64;
        while Instant::now() < until {
            spins = std::hint::black_box(spins + 1);
        }
        let conditions = watch.finish();
        // Spinning for the whole window is close to one core; the kernel's accounting is coarse,
        // so this asserts only that a busy process is not reported idle.
        assert!(conditions.load_cpu_percent > 10.0, "{conditions:?}");
    }
}
