//! The bench's line protocol with a server it started, over the child's stdin and stdout.
//!
//! A server started by the bench (with `SSE_APPS_BENCH_CONTROL` set to the bench's pid) reads
//! commands from stdin. `usage` is answered by every server with its own resource usage: from
//! `getrusage` (the kernel's per-process counters; `/proc/stat`, machine-wide, misreports on
//! shared machines), its resident set from `/proc/self/statm` and its open descriptors from
//! `/proc/self/fd`. Any other line goes to the server's own handler
//! (the fan-out targets take `publish <rate> <payload> <count>`).

use std::io::{BufRead, Write};

use nix::sys::resource::{UsageWho, getrusage};
use tokio::sync::mpsc;

/// The environment variable that turns the control channel on: it holds the bench's pid.
pub const ENV: &str = "SSE_APPS_BENCH_CONTROL";

/// A server's resource usage at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU time in user mode, in microseconds.
    pub user_us: u64,
    /// CPU time in the kernel, in microseconds.
    pub system_us: u64,
    /// Resident memory now, in KiB.
    pub rss_kib: u64,
    /// Open file descriptors now (sockets included).
    pub fds: u64,
}

impl Usage {
    /// This process's usage now.
    pub fn of_self() -> Usage {
        let (user_us, system_us) = cpu_of_self();
        Usage {
            user_us,
            system_us,
            rss_kib: resident_kib().unwrap_or(0),
            fds: open_descriptors().unwrap_or(0),
        }
    }

    /// CPU time in microseconds, user and kernel.
    pub fn cpu_us(&self) -> u64 {
        self.user_us + self.system_us
    }

    /// The CPU time used since `before`, over `wall` of real time, in percent of one core.
    pub fn cpu_percent_since(&self, before: &Usage, wall: std::time::Duration) -> f64 {
        100.0 * self.cpu_us().saturating_sub(before.cpu_us()) as f64
            / wall.as_micros().max(1) as f64
    }

    /// The line a server prints.
    pub fn to_line(self) -> String {
        format!("usage {} {} {} {}", self.user_us, self.system_us, self.rss_kib, self.fds)
    }

    /// Reads a line printed by [`Usage::to_line`].
    pub fn from_line(line: &str) -> Option<Usage> {
        let mut fields = line.strip_prefix("usage ")?.split(' ').map(str::parse::<u64>);
        let mut next = || fields.next()?.ok();
        Some(Usage { user_us: next()?, system_us: next()?, rss_kib: next()?, fds: next()? })
    }
}

/// This process's CPU time so far, user and kernel, in microseconds (0 where it cannot be read).
pub fn cpu_of_self() -> (u64, u64) {
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => (micros(usage.user_time()), micros(usage.system_time())),
        Err(_) => (0, 0),
    }
}

/// Resident memory in KiB (second field of `/proc/self/statm`, in pages).
fn resident_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split(' ').nth(1)?.parse().ok()?;
    let page_size = rustix::param::page_size() as u64;
    Some(pages * page_size / 1024)
}

/// Open descriptors: the entries of `/proc/self/fd`, less the one reading it.
fn open_descriptors() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

/// When the bench started this process, answers its commands on a thread of their own: `usage`
/// here, anything else handed to the returned channel (to be answered with [`reply`]).
pub fn serve_if_asked() -> Option<mpsc::UnboundedReceiver<String>> {
    let bench = std::env::var(ENV).ok()?;
    // A bench that dies (or is killed) takes its servers with it, rather than leave them serving.
    let death = Some(rustix::process::Signal::TERM);
    if let Err(error) = rustix::process::set_parent_process_death_signal(death) {
        eprintln!("warning: this server will outlive its bench if the bench is killed: {error}");
    }
    let parent = rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get());
    if bench.parse::<i32>().ok() != Some(parent) {
        // The bench ended before the signal was asked for (this server has a new parent now),
        // and nobody will ever send it; or the variable was left set in a shell.
        eprintln!(
            "error: {ENV}={bench} says a bench with that pid started this process, but its parent \
             is {parent}: the bench has ended, or the variable was left set (unset it to run \
             normally)"
        );
        std::process::exit(1);
    }
    let (commands, received) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "usage" {
                reply(&Usage::of_self().to_line());
            } else if commands.send(line).is_err() {
                break;
            }
        }
    });
    Some(received)
}

/// Prints one answer line for the bench.
pub fn reply(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::Usage;

    #[test]
    fn a_usage_line_reads_back() {
        let usage = Usage { user_us: 1_250_000, system_us: 40, rss_kib: 9_876, fds: 17 };
        assert_eq!(Usage::from_line(&usage.to_line()), Some(usage));
        assert_eq!(Usage::from_line("usage 1 2 3"), None);
        assert_eq!(Usage::from_line("listening on http://x"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let usage = Usage::of_self();
        assert!(usage.rss_kib > 0);
        assert!(usage.fds >= 3, "stdin, stdout and stderr at least: {}", usage.fds);
        assert!(usage.cpu_us() > 0);
    }
}
