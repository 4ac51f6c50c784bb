//! `sse-apps bench`: load scenarios that start a real server, drive it from this process, and
//! report what was delivered and how fast.
//!
//! The server runs as a child process pinned to one core (with `taskset`, when present) and the
//! load generator pins itself to the other, so the figures describe a server with one core. Load
//! goes to loopback only. Latency is measured from a timestamp written into each message by its
//! sender to the moment a client parses it.

pub mod chat;
pub mod dashboard;
pub mod exec;
pub mod reader;
mod server;

use std::time::Duration;

/// Percentiles of a set of latencies.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Percentiles {
    /// From latencies in microseconds (sorted here).
    pub fn from_micros(mut micros: Vec<u64>) -> Percentiles {
        micros.sort_unstable();
        let at = |q: f64| {
            if micros.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
            Duration::from_micros(micros[rank - 1])
        };
        Percentiles { p50: at(0.50), p99: at(0.99), max: at(1.0) }
    }
}

/// Formats a duration as milliseconds with one decimal.
pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}
