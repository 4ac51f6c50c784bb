//! The one sampler every viewer shares.
//!
//! A single task measures the machine once per tick and hands the sample to the [`Board`],
//! which encodes it once for every viewer. With no viewers it stops measuring altogether and
//! waits to be woken by the next connection; the first tick after a pause measures rates afresh
//! (a rate averaged over the pause would be a made-up figure).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sse_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use super::board::Board;
use super::sample::MetricSource;

/// The sampler's own figures, served at `/metrics`.
#[derive(Clone, Debug)]
pub struct SamplerStats {
    /// Ticks measured.
    pub samples: Counter,
    /// Time each measurement took.
    pub seconds: Histogram,
    /// 1 while measuring, 0 while idle (no viewers).
    pub running: Gauge,
}

impl SamplerStats {
    /// Registers the sampler's series with `metrics`.
    pub fn register(metrics: &Metrics) -> SamplerStats {
        let stats = SamplerStats {
            samples: Counter::default(),
            seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            running: Gauge::default(),
        };
        metrics.register("dashboard_samples", "Dashboard ticks measured", stats.samples.clone());
        metrics.register(
            "dashboard_sample_seconds",
            "Time one dashboard measurement took",
            stats.seconds.clone(),
        );
        metrics.register(
            "dashboard_sampler_running",
            "1 while the dashboard sampler measures, 0 while nobody watches",
            stats.running.clone(),
        );
        stats
    }
}

/// Runs the sampler until `shutdown`.
pub fn spawn<S: MetricSource>(
    board: Arc<Board>,
    source: S,
    stats: SamplerStats,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = run(board, source, stats) => {}
            () = shutdown.cancelled() => {}
        }
    });
}

async fn run<S: MetricSource>(board: Arc<Board>, mut source: S, stats: SamplerStats) {
    let mut interval = board.interval.subscribe();
    let mut paused = true;
    loop {
        if board.viewers() == 0 {
            stats.running.set(0);
            paused = true;
            board.wake.notified().await;
            continue;
        }
        stats.running.set(1);
        if paused {
            source.restart();
            paused = false;
        }
        let started = Instant::now();
        let measured = tokio::task::spawn_blocking(move || {
            // The next tick is due one interval after this one really began (not after the
            // blocking pool got round to it), so two readings are never closer than the interval.
            let began = Instant::now();
            let sample = source.sample();
            (source, sample, began)
        })
        .await;
        let (sample, began);
        (source, sample, began) = match measured {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "the dashboard sampler failed; it stops");
                stats.running.set(0);
                return;
            }
        };
        stats.samples.inc();
        stats.seconds.observe(started.elapsed().as_secs_f64());
        board.record(sample);
        let pause = *interval.borrow_and_update();
        let next = began + pause;
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            // A new interval applies from now, not after the old one runs out.
            Ok(()) = interval.changed() => {}
        }
    }
}

/// The shortest interval: sysinfo cannot measure CPU usage over less.
pub const MIN_INTERVAL: Duration = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
