//! `bench chat`: one room, N members reading, a fixed rate of messages posted; every delivery
//! timed.
//!
//! Readers are raw HTTP/1.0 connections ([`super::reader`]). Messages are
//! posted by 20 members sharing the rate, each within the chat's per-member limit (10/s), through
//! the real `POST /chat/rooms/{room}/messages`, so every message is validated, committed to
//! SQLite and fanned out exactly as in use.
//!
//! With `--redis URL` the same run measures one instance and then two chat instances sharing that
//! Redis (both on the server's core): readers and posters alternate between the two, so half of
//! every message's deliveries cross instances through Redis, and the ratio of the two p99s says
//! what scaling out costs. With `--nginx` as well, every reader and poster goes through the
//! repository's nginx configuration ([`super::nginx`]) in front of the instances, one or two, as
//! a deployment would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use sse_core::sync::lock;

use super::conditions::{Conditions, Watch};
use super::reader::{Connected, read_events};
use super::{Percentiles, limits, ms, nginx, server};

/// What to run.
#[derive(Clone, Debug)]
pub struct ChatBench {
    /// Readers connected to the room.
    pub members: usize,
    /// Messages per second, all posters together.
    pub rate: u32,
    /// How long to post.
    pub duration: Duration,
    /// Also two instances sharing this Redis, after one with SQLite.
    pub redis: Option<String>,
    /// Reach the instances through nginx.
    pub nginx: bool,
    /// Pin the server to core 0 and this process to core 1.
    pub pin: bool,
}

/// What came out.
#[derive(Clone, Debug)]
pub struct ChatReport {
    /// The scenario.
    pub bench: ChatBench,
    /// Two instances through Redis, or one with SQLite.
    pub two_instances: bool,
    /// Messages the server acknowledged.
    pub sent: u64,
    /// Deliveries the readers saw (of `sent × members`).
    pub delivered: u64,
    /// `resync` events the readers saw.
    pub resyncs: u64,
    /// Send-to-delivery latency.
    pub latency: Percentiles,
    /// Whether the server was pinned to one core.
    pub pinned: bool,
    /// What the messages went out beside: the machine's steal time, the load generator's CPU.
    pub conditions: Conditions,
}

impl ChatReport {
    /// Delivered as a share of expected, in percent.
    pub fn share(&self) -> f64 {
        let expected = self.sent * self.bench.members as u64;
        if expected == 0 { 0.0 } else { 100.0 * self.delivered as f64 / expected as f64 }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "chat{}{}: {} members × {} msg/s for {:?}{}: sent {}, delivered {:.2}% ({} of {}), resyncs {}, p50 {}, p99 {}, max {}{}",
            if self.two_instances { " (two instances through Redis)" } else { "" },
            if self.bench.nginx { " behind nginx" } else { "" },
            self.bench.members,
            self.bench.rate,
            self.bench.duration,
            if self.pinned { " (server pinned to one core)" } else { "" },
            self.sent,
            self.share(),
            self.delivered,
            self.sent * self.bench.members as u64,
            self.resyncs,
            ms(self.latency.p50),
            ms(self.latency.p99),
            ms(self.latency.max),
            self.conditions.suffix(),
        )
    }
}

const ROOM: &str = "bench";
const POSTERS: usize = 20;

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Shared tallies of every reader.
#[derive(Default)]
struct Tally {
    connected: Connected,
    delivered: AtomicU64,
    resyncs: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
}

/// Runs the scenario: one instance, and with `--redis` then two.
pub async fn run(bench: ChatBench) -> anyhow::Result<Vec<ChatReport>> {
    limits::ensure_open_files(bench.members)?;
    let mut reports = vec![run_one(&bench, None).await?];
    if let Some(url) = &bench.redis {
        reports.push(run_one(&bench, Some(url)).await?);
    }
    Ok(reports)
}

/// The last report's p99 as a multiple of the first's: what the second instance costs.
pub fn ratio_line(reports: &[ChatReport]) -> Option<String> {
    let (one, two) = (reports.first()?, reports.get(1)?);
    let (one, two) = (one.latency.p99.as_secs_f64(), two.latency.p99.as_secs_f64());
    let ratio = if one > 0.0 && two > 0.0 { format!("{:.2}", two / one) } else { "n/a".into() };
    Some(format!("chat: two instances' p99 ÷ one instance's: {ratio}"))
}

/// One instance with SQLite, or (`redis`) two sharing that Redis; behind nginx if asked.
async fn run_one(bench: &ChatBench, redis: Option<&String>) -> anyhow::Result<ChatReport> {
    let mut args = vec!["chat"];
    if bench.nginx {
        // As the shipped configuration's instances are started: believing its X-Forwarded-For.
        args.extend(["--trusted-proxy", "127.0.0.1"]);
    }
    let mut servers = Vec::new();
    match redis {
        None => servers.push(server::launch(&args, bench.pin).await?),
        Some(url) => {
            args.extend(["--redis", url.as_str()]);
            for _ in 0..2 {
                servers.push(server::launch(&args, bench.pin).await?);
            }
        }
    }
    let pinned = servers.iter().all(|s| s.pinned);
    let mut bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let proxy = if bench.nginx {
        let upstreams: Vec<String> =
            bases.iter().map(|b| b.trim_start_matches("http://").to_owned()).collect();
        Some(nginx::start(&upstreams, bench.members, pinned).await?)
    } else {
        None
    };
    if let Some(proxy) = &proxy {
        bases = vec![proxy.base.clone()];
    }
    let outcome = drive(bench, &bases).await;
    drop(proxy);
    drop(servers);
    let (sent, tally, conditions) = outcome?;
    let latencies = std::mem::take(&mut *lock(&tally.latencies));
    Ok(ChatReport {
        bench: bench.clone(),
        two_instances: redis.is_some(),
        sent,
        delivered: tally.delivered.load(Ordering::Relaxed),
        resyncs: tally.resyncs.load(Ordering::Relaxed),
        latency: Percentiles::from_micros(latencies),
        pinned,
        conditions,
    })
}

/// What a run's load produced: messages acknowledged, the readers' tallies, and the conditions
/// while the messages went out.
type Driven = (u64, Arc<Tally>, Conditions);

/// Joins the posters and connects the readers, alternating over `bases`, then posts.
async fn drive(bench: &ChatBench, bases: &[String]) -> anyhow::Result<Driven> {
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    // A unique room per run: a shared Redis may hold earlier runs' rooms.
    let room = format!("{ROOM}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let room = room.as_str();
    for i in 0..POSTERS {
        let base = &bases[i % bases.len()];
        let joined: Value = http
            .post(format!("{base}/chat/rooms/{room}/join"))
            .json(&json!({ "nick": format!("poster {i}") }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tokens.push(joined["token"].as_str().context("a token")?.to_owned());
    }

    let tally = Arc::new(Tally::default());
    let connecting = Arc::new(Semaphore::new(256));
    let stop = CancellationToken::new();
    let mut readers = Vec::with_capacity(bench.members);
    for n in 0..bench.members {
        let addr = bases[n % bases.len()].trim_start_matches("http://").to_owned();
        let path = format!("/chat/rooms/{room}/events");
        let (tally, connecting, stop) = (tally.clone(), connecting.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            read(&addr, &path, &tally, &connecting, &stop).await;
        }));
    }
    tally.connected.wait_for(bench.members).await?;

    let sent = Arc::new(AtomicU64::new(0));
    let per_poster = Duration::from_secs_f64(POSTERS as f64 / f64::from(bench.rate.max(1)));
    let started = Instant::now();
    let watch = Watch::start();
    let posters: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let base = bases[i % bases.len()].clone();
            let (http, sent, duration) = (http.clone(), sent.clone(), bench.duration);
            let url = format!("{base}/chat/rooms/{room}/messages");
            tokio::spawn(async move {
                // Stagger the posters so the room sees an even rate.
                let offset = per_poster.mul_f64(i as f64 / POSTERS as f64);
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, per_poster);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut n = 0u64;
                while started.elapsed() < duration {
                    tick.tick().await;
                    n += 1;
                    let body = json!({ "text": format!("b {}", now_micros()), "client_msg_id": format!("{i}-{n}") });
                    match http.post(&url).bearer_auth(&token).json(&body).send().await {
                        Ok(response) if response.status().is_success() => {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(response) => eprintln!("post refused: {}", response.status()),
                        Err(error) => eprintln!("post failed: {error}"),
                    }
                }
            })
        })
        .collect();
    for poster in posters {
        poster.await?;
    }
    let conditions = watch.finish();
    // Let the last deliveries arrive (bounded: the report counts what did).
    let expected = sent.load(Ordering::Relaxed) * bench.members as u64;
    let drain_until = Instant::now() + Duration::from_secs(10);
    while tally.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    for reader in readers {
        reader.await?;
    }
    Ok((sent.load(Ordering::Relaxed), tally, conditions))
}

/// One reader: parses the room's stream until it ends, timing each message.
async fn read(
    addr: &str,
    path: &str,
    tally: &Tally,
    connecting: &Semaphore,
    stop: &CancellationToken,
) {
    let mut latencies = Vec::new();
    read_events(addr, path, "", connecting, &tally.connected, stop, |events| {
        record(events, tally, &mut latencies);
        if latencies.len() >= 4096 {
            lock(&tally.latencies).append(&mut latencies);
        }
    })
    .await;
    lock(&tally.latencies).append(&mut latencies);
}

/// The send time in a bench message's data (`…"text":"b <micros>"…`). A substring search, not a
/// JSON parse: at 10,000 readers the load generator's own cost per event shows in the latencies.
fn sent_at(data: &str) -> Option<u64> {
    let start = data.find("\"text\":\"b ")? + "\"text\":\"b ".len();
    let digits = data[start..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

fn record(events: &[sse_core::wire::MessageEvent], tally: &Tally, latencies: &mut Vec<u64>) {
    let now = now_micros();
    for event in events {
        match event.event.as_str() {
            "message" => {
                if let Some(sent) = sent_at(&event.data) {
                    tally.delivered.fetch_add(1, Ordering::Relaxed);
                    latencies.push(now.saturating_sub(sent));
                }
            }
            "resync" => {
                tally.resyncs.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_send_time_from_a_message() {
        let data = r#"{"client_msg_id":"1-2","id":7,"nick":"poster 1","text":"b 1764277612000123","ts":1}"#;
        assert_eq!(super::sent_at(data), Some(1_764_277_612_000_123));
        assert_eq!(super::sent_at(r#"{"text":"hello"}"#), None);
    }
}
