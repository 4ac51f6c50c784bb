//! `bench soak`: every app under a steady mixed load for a long time (30 minutes by default),
//! the server's memory and descriptors sampled, every error counted.
//!
//! The server is `sse-apps` with every app on one port, as people run it. The load
//! ([`load`]) is what its users do, all at once: chat members reading, posting and reconnecting
//! with `Last-Event-ID`; bidi sessions answering triggered requests; exec runs fed stdin and
//! watched to their exit; an MCP client answering sampling requests sent from the console's API;
//! dashboard viewers and learning-page readers coming and going.
//!
//! Growth is judged between like states, so a connection that happens to be open at one sample
//! and not at the other cannot pass for a leak: after the warm-up and again at the end, the load
//! stops, every client disconnects, and the server is measured once its descriptor count has
//! settled. Under load it is sampled every `sample_every`, and the range is reported too.

pub mod load;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::control::Usage;
use super::server::{self, ServerUnderTest};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakBench {
    /// The whole run, warm-up included.
    pub duration: Duration,
    /// Load before the first settled measurement (caches filled, pools grown).
    pub warmup: Duration,
    /// Time between samples under load.
    pub sample_every: Duration,
    /// Pin the server to core 0 and this process to core 1.
    pub pin: bool,
}

/// What came out.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// The scenario.
    pub bench: SoakBench,
    /// Whether the server was pinned to one core.
    pub pinned: bool,
    /// Operations done, by kind.
    pub done: BTreeMap<String, u64>,
    /// Errors, by what went wrong.
    pub errors: BTreeMap<String, u64>,
    /// Parts of the load left out, and why.
    pub skipped: Vec<String>,
    /// The settled server after the warm-up.
    pub after_warmup: Usage,
    /// The settled server at the end.
    pub at_end: Usage,
    /// Samples under load after the warm-up: (time since the start, usage).
    pub under_load: Vec<(Duration, Usage)>,
}

impl SoakReport {
    /// Resident memory growth from after the warm-up to the end, in percent.
    pub fn rss_growth_percent(&self) -> f64 {
        let before = self.after_warmup.rss_kib.max(1) as f64;
        100.0 * (self.at_end.rss_kib as f64 - before) / before
    }

    /// Descriptors open at the end less after the warm-up (both settled).
    pub fn fd_growth(&self) -> i64 {
        self.at_end.fds as i64 - self.after_warmup.fds as i64
    }

    /// Every error counted.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Resident memory under load about every 5 minutes, so a leak (steady growth) and caches
    /// filling (growth that flattens) can be told apart.
    pub fn trend(&self) -> String {
        let mut next = Duration::ZERO;
        let mut picked = Vec::new();
        for (at, usage) in &self.under_load {
            if *at >= next {
                picked.push(usage.rss_kib.to_string());
                next = *at + Duration::from_secs(300);
            }
        }
        if picked.is_empty() { "not sampled".to_owned() } else { picked.join(", ") }
    }

    /// The report for people, one line per finding.
    pub fn lines(&self) -> Vec<String> {
        let range = |pick: fn(&Usage) -> u64| {
            let values = self.under_load.iter().map(|(_, usage)| pick(usage));
            match (values.clone().min(), values.max()) {
                (Some(low), Some(high)) => format!("{low}-{high}"),
                _ => "not sampled".to_owned(),
            }
        };
        let mut lines = vec![format!(
            "soak: {:?} (warm-up {:?}) of chat, bidi, exec, sampling, dashboard and basic load{}",
            self.bench.duration,
            self.bench.warmup,
            if self.pinned { ", server pinned to one core" } else { "" },
        )];
        let done: Vec<String> = self.done.iter().map(|(what, n)| format!("{what} {n}")).collect();
        lines.push(format!("done: {}", done.join(", ")));
        for skipped in &self.skipped {
            lines.push(format!("skipped: {skipped}"));
        }
        lines.push(format!("errors: {}", self.error_count()));
        for (what, n) in &self.errors {
            lines.push(format!("  {n} × {what}"));
        }
        lines.push(format!(
            "memory (settled): {} KiB after the warm-up, {} KiB at the end: {:+.1}%; under load {} KiB",
            self.after_warmup.rss_kib,
            self.at_end.rss_kib,
            self.rss_growth_percent(),
            range(|usage| usage.rss_kib),
        ));
        lines.push(format!("memory under load, a sample every 5 minutes: {} KiB", self.trend()));
        lines.push(format!(
            "descriptors (settled): {} after the warm-up, {} at the end: {:+}; under load {}",
            self.after_warmup.fds,
            self.at_end.fds,
            self.fd_growth(),
            range(|usage| usage.fds),
        ));
        lines
    }
}

/// Runs the soak against a server it starts.
pub async fn run(bench: SoakBench) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(bench.warmup < bench.duration, "the warm-up must be shorter than the run");
    anyhow::ensure!(!bench.sample_every.is_zero(), "--sample-every must be more than 0");
    let token = uuid::Uuid::new_v4().simple().to_string();
    // mimalloc keeps freed memory for reuse and gives it back to the system later, by its own
    // clock: two 30-minute runs measured the same settled server 27% higher and 30% lower
    // depending on when that happened. Returned at once, the settled RSS is the memory the
    // server still holds, which is what a leak shows in.
    // The token in the environment, not on the command line, where `ps` would show it.
    let env = [("SSE_APPS_TOKEN", token.as_str()), ("MIMALLOC_PURGE_DELAY", "0")];
    let mut server = server::launch_with_env(&[], &env, bench.pin).await?;
    let mut skipped = Vec::new();
    let exec = crate::exec::ExecConfig::checked(std::env::temp_dir()).sandbox.is_ok();
    if !exec {
        skipped.push("exec runs: no sandbox here (install bubblewrap)".to_owned());
    }
    let plan = load::Plan { base: server.base.clone(), token, exec };
    let tally = load::Tally::default();
    let started = Instant::now();

    load::run(&plan, &tally, bench.warmup).await;
    let after_warmup = settle(&mut server).await?;

    let measured = bench.duration - bench.warmup;
    let running = tokio::spawn({
        let (plan, tally) = (plan.clone(), tally.clone());
        async move { load::run(&plan, &tally, measured).await }
    });
    let mut under_load = Vec::new();
    let mut every = tokio::time::interval(bench.sample_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    while !running.is_finished() {
        every.tick().await;
        if !running.is_finished() {
            under_load.push((started.elapsed(), server.usage().await?));
        }
    }
    running.await?;
    let at_end = settle(&mut server).await?;

    let (done, errors) = tally.counts();
    Ok(SoakReport {
        bench,
        pinned: server.pinned,
        done,
        errors,
        skipped,
        after_warmup,
        at_end,
        under_load,
    })
}

/// The server's usage once its descriptor count has held still for 2 s (the clients are gone
/// and it has closed their connections), or after 30 s at most.
async fn settle(server: &mut ServerUnderTest) -> anyhow::Result<Usage> {
    const STILL: usize = 8;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut usage = server.usage().await?;
    let mut still = 0;
    while still < STILL && Instant::now() < deadline {
        // A bench waits on the server's own clock: there is no event for "nothing changes".
        tokio::time::sleep(Duration::from_millis(250)).await;
        let next = server.usage().await?;
        still = if next.fds == usage.fds { still + 1 } else { 0 };
        usage = next;
    }
    Ok(usage)
}
