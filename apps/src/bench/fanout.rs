//! `bench fanout`: N connections on one topic, a publisher at R events/s, each event's delivery
//! timed; the same load against [`ours`](super::targets::ours), the
//! [`limit`](super::targets::limit) and the [`naive`](super::targets::naive) baselines in one
//! run, so every figure can be read as a ratio that holds on a noisy machine. With
//! `--targets …,ws`, also against a WebSocket server ([`ws`](super::targets::ws)), read by
//! readers that cost the load generator what the SSE readers do ([`super::ws_client`]).
//!
//! For each load and server: start the server (pinned to core 0), connect the readers (raw
//! sockets, [`super::scan`] or [`super::ws_scan`]), take the server's own CPU time, order the events, wait until every
//! delivery is in (or ten seconds more), take the CPU time again. Latency runs from the time an
//! event was due by the schedule to the moment its reader scanned it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::ws::close_code;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::conditions::{Conditions, Watch};
use super::reader::{Connected, read_body};
use super::scan::{Scanner, Seen};
use super::targets::{PublishOrder, Target, now_micros, parse_payload};
use super::ws_client::read_stream;
use super::ws_scan::{Frame, FrameScanner};
use super::{Latencies, Percentiles, limits, ms, server};

/// One load: connections × events a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Connections on the topic.
    pub connections: usize,
    /// Events published a second.
    pub rate: u32,
}

impl std::str::FromStr for Load {
    type Err = String;

    /// `1000x10`: 1,000 connections, 10 events a second.
    fn from_str(text: &str) -> Result<Load, String> {
        let (connections, rate) =
            text.split_once(['x', '×']).ok_or("write CONNECTIONSxRATE, as in 1000x10")?;
        let connections = connections.trim().parse().map_err(|_| "connections: a number")?;
        let rate = rate.trim().parse().map_err(|_| "rate: a number of events a second")?;
        if connections == 0 || rate == 0 {
            return Err("connections and rate must be above zero".into());
        }
        Ok(Load { connections, rate })
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.connections, self.rate)
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct FanoutBench {
    /// The loads, each run against every target.
    pub loads: Vec<Load>,
    /// The servers to measure.
    pub targets: Vec<Target>,
    /// Bytes of data per event.
    pub payload: usize,
    /// How long each load publishes.
    pub duration: Duration,
    /// Pin the server to core 0 and this process to core 1.
    pub pin: bool,
}

/// One load against one server.
#[derive(Clone, Debug)]
pub struct FanoutRow {
    /// The server.
    pub target: Target,
    /// The load.
    pub load: Load,
    /// Events published.
    pub published: u64,
    /// Deliveries seen (of `published × connections`).
    pub delivered: u64,
    /// `resync` events seen.
    pub resyncs: u64,
    /// Events a reader saw twice or out of order.
    pub duplicates: u64,
    /// Readers that could not connect.
    pub failed_connections: u64,
    /// Deliveries a second, from the first event due to the last delivery.
    pub throughput: f64,
    /// Due-to-delivery latency.
    pub latency: Percentiles,
    /// The server's CPU time over the run, as a share of one core.
    pub cpu_percent: f64,
    /// The server's resident memory at the end, in MiB.
    pub rss_mib: f64,
    /// Whether the server was pinned to one core.
    pub pinned: bool,
    /// What the run ran beside: the machine's steal time, the load generator's CPU.
    pub conditions: Conditions,
}

impl FanoutRow {
    /// Deliveries as a share of those expected, in percent.
    pub fn share(&self) -> f64 {
        let expected = self.published * self.load.connections as u64;
        if expected == 0 { 0.0 } else { 100.0 * self.delivered as f64 / expected as f64 }
    }

    /// Errors of any kind: missing deliveries, duplicates, failed connections.
    pub fn errors(&self) -> u64 {
        let expected = self.published * self.load.connections as u64;
        expected.saturating_sub(self.delivered) + self.duplicates + self.failed_connections
    }
}

/// Shared tallies of every reader of one run.
#[derive(Default)]
struct Tally {
    connected: Connected,
    delivered: AtomicU64,
    resyncs: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    last_delivery: AtomicU64,
    progress: Notify,
    latencies: Latencies,
}

/// Runs every load against every target, in that order.
pub async fn run(bench: &FanoutBench) -> anyhow::Result<Vec<FanoutRow>> {
    let most = bench.loads.iter().map(|l| l.connections).max().unwrap_or(0);
    limits::ensure_open_files(most)?;
    let mut rows = Vec::new();
    for &load in &bench.loads {
        for &target in &bench.targets {
            let row = run_one(bench, target, load).await?;
            eprintln!("{}", line(&row));
            rows.push(row);
        }
    }
    Ok(rows)
}

async fn run_one(bench: &FanoutBench, target: Target, load: Load) -> anyhow::Result<FanoutRow> {
    let mut server = server::launch(&["bench-target", target.name()], bench.pin).await?;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let tally = Arc::new(Tally::default());
    let connecting = Arc::new(Semaphore::new(256));
    let stop = CancellationToken::new();
    let readers: Vec<_> = (0..load.connections)
        .map(|_| {
            let (addr, tally, connecting, stop) =
                (addr.clone(), tally.clone(), connecting.clone(), stop.clone());
            tokio::spawn(async move {
                if target == Target::Ws {
                    read_messages(&addr, &tally, &connecting, &stop).await;
                } else {
                    read_events(&addr, &tally, &connecting, &stop).await;
                }
            })
        })
        .collect();
    tally.connected.wait_for(load.connections).await?;

    let count = (f64::from(load.rate) * bench.duration.as_secs_f64()).ceil().max(1.0) as u64;
    let order = PublishOrder { rate: load.rate, payload: bench.payload, count };
    let before = server.usage().await?;
    let watch = Watch::start();
    let (started, started_micros) = (Instant::now(), now_micros());
    server.ask(&order.command(), "published").await?;
    let expected = count * load.connections as u64;
    let all_in = async {
        loop {
            let progress = tally.progress.notified();
            if tally.delivered.load(Ordering::Relaxed) >= expected {
                return;
            }
            progress.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), all_in).await;
    let after = server.usage().await?;
    let conditions = watch.finish();
    let wall = started.elapsed();
    stop.cancel();
    for reader in readers {
        reader.await.context("a reader")?;
    }

    let delivered = tally.delivered.load(Ordering::Relaxed);
    let last = tally.last_delivery.load(Ordering::Relaxed);
    let span =
        Duration::from_micros(last.saturating_sub(started_micros)).max(Duration::from_millis(1));
    Ok(FanoutRow {
        target,
        load,
        published: count,
        delivered,
        resyncs: tally.resyncs.load(Ordering::Relaxed),
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        failed_connections: tally.failed.load(Ordering::Relaxed),
        throughput: delivered as f64 / span.as_secs_f64(),
        latency: tally.latencies.percentiles(),
        cpu_percent: after.cpu_percent_since(&before, wall),
        rss_mib: after.rss_kib as f64 / 1024.0,
        pinned: server.pinned,
        conditions,
    })
}

/// One reader's deliveries: checks that numbers only grow and times each event from when it
/// was due. Both kinds of reader feed it the same way, one clock reading per read from the
/// socket, so SSE and WebSocket rows are timed alike.
struct Deliveries<'a> {
    tally: &'a Tally,
    last_seq: u64,
    batch: Vec<u64>,
}

/// What one read brought, added to the shared tally at once (one atomic add per read, not per
/// event).
#[derive(Default)]
struct Read {
    delivered: u64,
    resyncs: u64,
    duplicates: u64,
}

impl<'a> Deliveries<'a> {
    fn new(tally: &'a Tally) -> Self {
        Deliveries { tally, last_seq: 0, batch: Vec::with_capacity(1024) }
    }

    /// One event's data, read at `now`.
    fn data(&mut self, data: &[u8], now: u64, read: &mut Read) {
        let Some((seq, due)) = parse_payload(data) else { return };
        if seq <= self.last_seq {
            read.duplicates += 1;
            return;
        }
        self.last_seq = seq;
        read.delivered += 1;
        self.batch.push(now.saturating_sub(due));
    }

    /// Adds what one read brought at `now` to the tally.
    fn add(&mut self, read: Read, now: u64) {
        let tally = self.tally;
        if self.batch.len() >= 1024 {
            tally.latencies.record(&self.batch);
            self.batch.clear();
        }
        tally.resyncs.fetch_add(read.resyncs, Ordering::Relaxed);
        tally.duplicates.fetch_add(read.duplicates, Ordering::Relaxed);
        if read.delivered > 0 {
            tally.last_delivery.fetch_max(now, Ordering::Relaxed);
            tally.delivered.fetch_add(read.delivered, Ordering::Relaxed);
            tally.progress.notify_waiters();
        }
    }

    /// The reader's end: a reader that never connected is counted, so the run goes on and
    /// reports the failure.
    fn finish(self, connected: bool) {
        if !connected {
            self.tally.failed.fetch_add(1, Ordering::Relaxed);
            self.tally.connected.one_more();
        }
        self.tally.latencies.record(&self.batch);
    }
}

/// One SSE reader: scans its event stream.
async fn read_events(addr: &str, tally: &Tally, connecting: &Semaphore, stop: &CancellationToken) {
    let mut deliveries = Deliveries::new(tally);
    let mut scanner = Scanner::default();
    let connected = read_body(addr, "/events", "", connecting, &tally.connected, stop, |body| {
        let now = now_micros();
        let mut read = Read::default();
        scanner.feed(body, |seen| match seen {
            Seen::Resync => read.resyncs += 1,
            Seen::Data(data) => deliveries.data(data, now, &mut read),
        });
        deliveries.add(read, now);
    });
    let connected = connected.await;
    deliveries.finish(connected);
}

/// One WebSocket reader: scans its frames, one text message per event. A close for lagging
/// (1013) is the server telling of a gap, as a `resync` is, and is counted as one.
async fn read_messages(
    addr: &str,
    tally: &Tally,
    connecting: &Semaphore,
    stop: &CancellationToken,
) {
    let mut deliveries = Deliveries::new(tally);
    let mut scanner = FrameScanner::default();
    let connected = read_stream(addr, "/events", connecting, &tally.connected, stop, |bytes| {
        let now = now_micros();
        let mut read = Read::default();
        scanner.feed(bytes, |frame| match frame {
            Frame::Text(data) => deliveries.data(data, now, &mut read),
            Frame::Close(Some(close_code::AGAIN)) => read.resyncs += 1,
            Frame::Close(_) | Frame::Heartbeat | Frame::Unexpected => {}
        });
        deliveries.add(read, now);
    });
    let connected = connected.await;
    deliveries.finish(connected);
}

/// One row for people.
pub fn line(row: &FanoutRow) -> String {
    format!(
        "fanout {} {:>5}: delivered {:.2}% ({} of {}), resyncs {}, errors {}, {:.0} deliveries/s, {}, server CPU {:.0}%, RSS {:.0} MiB{}{}",
        row.load,
        row.target.name(),
        row.share(),
        row.delivered,
        row.published * row.load.connections as u64,
        row.resyncs,
        row.errors(),
        row.throughput,
        row.latency.summary(),
        row.cpu_percent,
        row.rss_mib,
        row.conditions.suffix(),
        if row.pinned { "" } else { " (not pinned)" },
    )
}

/// The results as a Markdown table, each load's `ours` row with its ratios to the baselines.
pub fn table(rows: &[FanoutRow]) -> String {
    let mut out = String::from(
        "| load (conns × events/s) | server | delivered | resyncs | deliveries/s | p50 | p99 | p99.9 | max | server CPU | RSS | p99 ÷ limit's | p99 ÷ naive's |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let p99_of = |target: Target| {
            rows.iter()
                .find(|r| r.load == row.load && r.target == target)
                .map(|r| r.latency.p99.as_secs_f64())
        };
        let mine = row.latency.p99.as_secs_f64();
        let ratio = |other: Option<f64>, text: &dyn Fn(f64) -> String| match other {
            Some(other) if row.target == Target::Ours && other > 0.0 && mine > 0.0 => text(other),
            _ => String::new(),
        };
        let vs_limit = ratio(p99_of(Target::Limit), &|limit| format!("{:.2}", mine / limit));
        let vs_naive = ratio(p99_of(Target::Naive), &|naive| format!("{:.2}", mine / naive));
        out.push_str(&format!(
            "| {} × {} | {} | {:.2}% | {} | {:.0} | {} | {} | {} | {} | {:.0}% | {:.0} MB | {} | {} |\n",
            row.load.connections,
            row.load.rate,
            row.target.name(),
            row.share(),
            row.resyncs,
            row.throughput,
            ms(row.latency.p50),
            ms(row.latency.p99),
            ms(row.latency.p999),
            ms(row.latency.max),
            row.cpu_percent,
            row.rss_mib * 1.048_576,
            vs_limit,
            vs_naive,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Load;

    #[test]
    fn loads_read_from_the_command_line() {
        assert_eq!("1000x10".parse(), Ok(Load { connections: 1000, rate: 10 }));
        assert_eq!("10000×100".parse(), Ok(Load { connections: 10000, rate: 100 }));
        assert!("1000".parse::<Load>().is_err());
        assert!("0x10".parse::<Load>().is_err());
        assert!("ax10".parse::<Load>().is_err());
        assert_eq!(Load { connections: 5, rate: 2 }.to_string(), "5x2");
    }
}
