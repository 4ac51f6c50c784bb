//! `bench dashboard`: what the dashboard costs with nobody, one, a hundred and a thousand
//! viewers.
//!
//! The server runs pinned to core 0 with the real sampler; viewers are raw HTTP/1.0 connections
//! ([`super::reader`]) on the other core, each parsing its stream and counting `metrics` events. For each viewer count the server's CPU
//! time (user + system, from its own `getrusage`, see [`super::control`]) is read before and after a window and shown as % of one core; the sampler's own time per tick
//! comes from its `/metrics` histogram. With no viewers the sampler must not run at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::reader::{Connected, read_events};
use super::server;

const TOKEN: &str = "bench";

/// What to run.
#[derive(Clone, Debug)]
pub struct DashboardBench {
    /// Viewer counts to measure, in increasing order (0 is always measured first).
    pub viewers: Vec<usize>,
    /// The sampling interval.
    pub interval: Duration,
    /// How long each measurement window lasts.
    pub window: Duration,
    /// Pin the server to core 0 and this process to core 1.
    pub pin: bool,
}

/// One viewer count's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Viewers connected.
    pub viewers: usize,
    /// Server CPU, % of one core, over the window.
    pub server_cpu: f64,
    /// Ticks sampled in the window.
    pub ticks: u64,
    /// Mean time one sample took, in ms.
    pub sample_ms: f64,
    /// `metrics` events received, as % of ticks × viewers.
    pub delivered: f64,
}

impl Step {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "dashboard: {:>5} viewers: server CPU {:.2}% of one core, {} ticks, sampler {:.2} ms/tick, delivered {:.1}%",
            self.viewers, self.server_cpu, self.ticks, self.sample_ms, self.delivered
        )
    }
}

#[derive(Default)]
struct Tally {
    connected: Connected,
    metrics: AtomicU64,
}

/// Runs the scenario; returns one step per viewer count (the first with none).
pub async fn run(bench: DashboardBench) -> anyhow::Result<Vec<Step>> {
    let interval = format!("{}ms", bench.interval.as_millis());
    let args = ["dashboard", "--interval", &interval];
    let mut server =
        server::launch_with_env(&args, &[("SSE_APPS_TOKEN", TOKEN)], bench.pin).await?;
    drive(&bench, &mut server).await
}

async fn drive(
    bench: &DashboardBench,
    server: &mut server::ServerUnderTest,
) -> anyhow::Result<Vec<Step>> {
    let http = reqwest::Client::new();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let tally = Arc::new(Tally::default());
    let connecting = Arc::new(Semaphore::new(256));
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    let mut steps = Vec::new();
    for target in std::iter::once(0).chain(bench.viewers.iter().copied().filter(|n| *n > 0)) {
        while readers.len() < target {
            let (addr, tally, connecting, stop) =
                (addr.clone(), tally.clone(), connecting.clone(), stop.clone());
            readers
                .push(tokio::spawn(async move { read(&addr, &tally, &connecting, &stop).await }));
        }
        tally.connected.wait_for(target).await?;
        // One tick to settle (the first tick after a pause measures no rates).
        tokio::time::sleep(bench.interval).await;
        let before = (
            server.usage().await?.cpu_us(),
            sampler(&http, &server.base).await?,
            tally.metrics.load(Ordering::SeqCst),
        );
        let started = Instant::now();
        tokio::time::sleep(bench.window).await;
        let after = (
            server.usage().await?.cpu_us(),
            sampler(&http, &server.base).await?,
            tally.metrics.load(Ordering::SeqCst),
        );
        let elapsed = started.elapsed().as_secs_f64();
        let ticks = after.1.0.saturating_sub(before.1.0);
        let sample_seconds = after.1.1 - before.1.1;
        let received = after.2 - before.2;
        steps.push(Step {
            viewers: target,
            server_cpu: 100.0 * after.0.saturating_sub(before.0) as f64 / 1e6 / elapsed,
            ticks,
            sample_ms: if ticks == 0 { 0.0 } else { 1000.0 * sample_seconds / ticks as f64 },
            delivered: if ticks == 0 || target == 0 {
                100.0
            } else {
                (100.0 * received as f64 / (ticks as f64 * target as f64)).min(100.0)
            },
        });
    }
    stop.cancel();
    for reader in readers {
        reader.await?;
    }
    Ok(steps)
}

/// The sampler's tick count and total sampling time, from `/metrics`.
async fn sampler(http: &reqwest::Client, base: &str) -> anyhow::Result<(u64, f64)> {
    let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    let ticks = value("sse_dashboard_samples_total").context("the sampler's tick count")?;
    let seconds = value("sse_dashboard_sample_seconds_sum").context("the sampler's time")?;
    Ok((ticks as u64, seconds))
}

/// One viewer: counts `metrics` events until stopped.
async fn read(addr: &str, tally: &Tally, connecting: &Semaphore, stop: &CancellationToken) {
    let token = format!("Authorization: Bearer {TOKEN}\r\n");
    read_events(addr, "/dashboard/events", &token, connecting, &tally.connected, stop, |events| {
        let ticks = events.iter().filter(|e| e.event == "metrics").count();
        tally.metrics.fetch_add(ticks as u64, Ordering::Relaxed);
    })
    .await;
}
