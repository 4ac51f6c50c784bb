//! One run of the Go harness against one server: the responder connects its sessions, the load
//! generator calls `/trigger` for the bench's duration, and the server's CPU time and accepted
//! connections are read before and after, as the bench reads them of every server.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::programs::Programs;
use crate::bench::Percentiles;
use crate::bench::accepted::AcceptCounter;
use crate::bench::conditions::Watch;
use crate::bench::roundtrip::{ClientReuse, RoundtripBench, RoundtripReport, RoundtripServer};
use crate::bench::server::ServerUnderTest;

/// Runs `bench` (its `sessions` are both the responder's sessions and the load's callers) against
/// `server`, which is `answering`.
pub async fn drive(
    programs: &Programs,
    server: &mut ServerUnderTest,
    answering: RoundtripServer,
    bench: &RoundtripBench,
) -> anyhow::Result<RoundtripReport> {
    let base = server.base.clone();
    let addr = base.trim_start_matches("http://").to_owned();
    let keepalive = format!("-keepalive={}", bench.reuse == ClientReuse::Always);
    let sessions = bench.sessions.to_string();
    let common = ["-server", &base, "-sessions", &sessions, "-prefix", "go", &keepalive];

    let responder_line = crate::bench::server::tied_to_bench(&programs.responder);
    let mut responder = Command::new(&responder_line[0])
        .args(&responder_line[1..])
        .args(common)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the Go responder")?;
    let stdout = responder.stdout.take().context("the responder's output")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the Go responder did not connect its sessions within a minute")??
        .context("the Go responder exited before connecting")?;
    let connected =
        parse_connected(&ready).with_context(|| format!("a responder line: {ready}"))?;
    if connected < bench.sessions {
        eprintln!(
            "go harness → {}: only {connected} of {} sessions could connect; triggers to the \
             others fail",
            answering.name(),
            bench.sessions
        );
    }

    let mut counter = AcceptCounter::new(&addr);
    let accepted_before = counter.read().await?;
    let before = server.usage().await?;
    let children_before = children_cpu_us();
    let watch = Watch::start();
    let started = Instant::now();
    let duration = format!("{}ms", bench.duration.as_millis());
    let load_line = crate::bench::server::tied_to_bench(&programs.load);
    let load = Command::new(&load_line[0])
        .args(&load_line[1..])
        .args(common)
        .args(["-duration", &duration])
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output();
    let load = tokio::time::timeout(bench.duration + Duration::from_secs(60), load)
        .await
        .context("the Go load generator did not finish")?
        .context("running the Go load generator")?;
    let wall = started.elapsed();
    let after = server.usage().await?;
    let mut conditions = watch.finish();
    // The load generator of this run is the Go one, a child of this process that has exited.
    conditions.load_cpu_percent = 100.0 * children_cpu_us().saturating_sub(children_before) as f64
        / wall.as_micros().max(1) as f64;
    let accepted = counter.read().await?.saturating_sub(accepted_before);
    let _ = responder.kill().await;
    anyhow::ensure!(load.status.success(), "the Go load generator failed: {}", load.status);
    let printed = String::from_utf8_lossy(&load.stdout);
    let summary =
        LoadSummary::parse(&printed).with_context(|| format!("the load's summary: {printed}"))?;
    Ok(RoundtripReport {
        completed: summary.count,
        errors: summary.errors,
        latency: summary.latency,
        per_second: summary.count as f64 / summary.elapsed.as_secs_f64().max(1e-6),
        cpu_percent: after.cpu_percent_since(&before, wall),
        cpu_us: after.cpu_us().saturating_sub(before.cpu_us()),
        accepted,
        pinned: server.pinned,
        conditions,
        server: answering,
        bench: RoundtripBench { callers: bench.sessions, ..bench.clone() },
    })
}

/// The CPU time of this process's finished (waited-for) children, user and kernel, in µs.
fn children_cpu_us() -> u64 {
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|usage| micros(usage.user_time()) + micros(usage.system_time()))
        .unwrap_or(0)
}

/// `connected K of N` → K.
fn parse_connected(line: &str) -> Option<usize> {
    line.strip_prefix("connected ")?.split(' ').next()?.parse().ok()
}

/// What the Go load generator printed.
#[derive(Debug, PartialEq)]
struct LoadSummary {
    count: u64,
    errors: u64,
    elapsed: Duration,
    latency: Percentiles,
}

impl LoadSummary {
    /// From `count C errors E elapsed_us T p50_us P p99_us Q p999_us R max_us M`.
    fn parse(printed: &str) -> Option<LoadSummary> {
        let line = printed.lines().find(|line| line.starts_with("count "))?;
        let fields: Vec<&str> = line.split(' ').collect();
        let value = |name: &str| -> Option<u64> {
            let at = fields.iter().position(|field| *field == name)?;
            fields.get(at + 1)?.parse().ok()
        };
        let micros = |name: &str| value(name).map(Duration::from_micros);
        let count = value("count")?;
        Some(LoadSummary {
            count,
            errors: value("errors")?,
            elapsed: micros("elapsed_us")?,
            latency: Percentiles {
                count,
                p50: micros("p50_us")?,
                p99: micros("p99_us")?,
                p999: micros("p999_us")?,
                max: micros("max_us")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LoadSummary, parse_connected};

    #[test]
    fn reads_the_programs_lines() {
        assert_eq!(parse_connected("connected 32 of 64"), Some(32));
        assert_eq!(parse_connected("something else"), None);
        let printed = "count 120 errors 2 elapsed_us 1000500 p50_us 300 p99_us 900 p999_us 1500 \
                       max_us 2100\n";
        let summary = LoadSummary::parse(printed).expect("a summary");
        assert_eq!((summary.count, summary.errors), (120, 2));
        assert_eq!(summary.elapsed, Duration::from_micros(1_000_500));
        assert_eq!(summary.latency.p99, Duration::from_micros(900));
        assert_eq!(summary.latency.max, Duration::from_micros(2100));
        assert_eq!(LoadSummary::parse("count x"), None);
    }
}
