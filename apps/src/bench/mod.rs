//! `sse-apps bench`: load scenarios that start a real server, drive it from this process, and
//! report what was delivered and how fast.
//!
//! The server runs as a child process pinned to one core (with `taskset`, when present) and the
//! load generator pins itself to the other, so the figures describe a server with one core. Load
//! goes to loopback only. Latency is measured from a timestamp written into each message by its
//! sender to the moment a client parses it.

pub mod accepted;
pub mod chat;
pub mod conditions;
pub mod connect;
pub mod control;
pub mod dashboard;
pub mod dial;
pub mod exec;
pub mod fanout;
pub mod flood;
pub mod foreign;
pub mod http1;
pub mod limits;
pub mod nginx;
pub mod pace;
pub mod plot;
pub mod reader;
pub mod roundtrip;
pub mod sampling;
pub mod scan;
mod server;
pub mod soak;
pub mod steal;
pub mod targets;
pub mod ws_client;
pub mod ws_scan;
pub mod ws_session;

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use sse_core::sync::lock;

/// Percentiles of a set of latencies.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// How many latencies.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest.
    pub max: Duration,
}

impl Percentiles {
    /// `p50 …, p99 …, p99.9 …, max …`, for report lines.
    pub fn summary(&self) -> String {
        format!(
            "p50 {}, p99 {}, p99.9 {}, max {}",
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
    }

    /// From latencies in microseconds.
    pub fn from_micros(micros: Vec<u64>) -> Percentiles {
        let latencies = Latencies::default();
        latencies.record(&micros);
        latencies.percentiles()
    }
}

/// Latencies in microseconds from many readers, in an HDR histogram (three significant digits,
/// up to ten minutes): constant memory however many deliveries, exact enough for p99.9.
#[derive(Debug)]
pub struct Latencies {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        let histogram =
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid bounds");
        Latencies { histogram: Mutex::new(histogram) }
    }
}

impl Latencies {
    /// Adds a reader's batch (readers batch so they take the lock rarely).
    pub fn record(&self, micros: &[u64]) {
        let mut histogram = lock(&self.histogram);
        for &value in micros {
            histogram.saturating_record(value.max(1));
        }
    }

    /// The percentiles so far.
    pub fn percentiles(&self) -> Percentiles {
        let histogram = lock(&self.histogram);
        let at = |q: f64| Duration::from_micros(histogram.value_at_quantile(q));
        Percentiles {
            count: histogram.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_micros(histogram.max()),
        }
    }
}

/// Formats a duration as milliseconds with one decimal (two below 1 ms).
pub fn ms(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if millis < 1.0 { format!("{millis:.2} ms") } else { format!("{millis:.1} ms") }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Percentiles;

    #[test]
    fn percentiles_of_a_known_set() {
        // 1..=1000 µs: nearest-rank p50 is 500, p99 990, p99.9 999, max 1000.
        let p = Percentiles::from_micros((1..=1000).collect());
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, Duration::from_micros(500));
        assert_eq!(p.p99, Duration::from_micros(990));
        assert_eq!(p.p999, Duration::from_micros(999));
        assert_eq!(p.max, Duration::from_micros(1000));
    }

    #[test]
    fn large_values_keep_three_significant_digits() {
        let p = Percentiles::from_micros(vec![123_456_789]);
        let error = p.max.as_micros().abs_diff(123_456_789);
        assert!(error <= 123_456_789 / 1000, "max {:?}", p.max);
    }

    #[test]
    fn no_latencies_report_zero() {
        assert_eq!(Percentiles::from_micros(Vec::new()), Percentiles::default());
    }
}
