//! `bench roundtrip`: server→client requests answered by POST, as fast as they go.
//!
//! `sse-apps bidi-server` (ours), and then the [`limit_roundtrip`](super::targets::limit_roundtrip)
//! baseline (the same protocol
//! over raw sockets), each run pinned to one core. S sessions connect to it in the Go original's
//! format (`GET /events?client_id=…`), each answering every request it is sent with a
//! `POST /response` on its own kept-alive connection; C callers keep `GET /trigger` busy, each
//! asking the sessions in turn and timing the whole round trip (trigger → request down the
//! stream → answer posted → trigger answered); with `--rate`, on a schedule instead
//! ([`super::pace`]). Streams are read with the lean scanner and HTTP
//! is spoken by [`super::http1`], so the load generator's own cost stays small.
//!
//! With `--client-reuse never` the answers and the triggers each open a connection of their own
//! and close it once answered, so the server's cost of accepting a connection is in every round
//! trip (two accepts per round trip). Each report gives the server's CPU time per round trip and
//! the connections it accepted per round trip, by its own count.
//!
//! The `go` target ([`super::foreign`]) runs a responder and a load generator written in Go like
//! the Go original's programs against `bidi-server` with its default flags, a server written
//! like the Go original's and the limit, built from source when `go` is installed.
//!
//! The `ws` target ([`ws_roundtrip`](super::targets::ws_roundtrip)) is the same round trip with
//! each session's requests and answers on one WebSocket ([`super::ws_session`]); the callers are
//! the same. Its answers never open a connection, so with `--client-reuse never` only the
//! triggers do (one accept per round trip).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::conditions::{Conditions, Watch};
use super::http1::Connection;
use super::pace::{Pacer, Schedule};
use super::reader::{Connected, read_body};
use super::scan::{Scanner, Seen};
use super::{Latencies, Percentiles, limits, server};

/// Which server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoundtripTarget {
    /// `sse-apps bidi-server`.
    Ours,
    /// The same protocol over raw sockets, no framework.
    Limit,
    /// A Go responder and load generator written like the Go original's programs, against
    /// `sse-apps bidi-server` with its default flags, a Go server written like the original's
    /// and the limit ([`super::foreign`]).
    Go,
    /// The same round trip on axum's WebSocket, one socket per session both ways.
    Ws,
}

/// Which server answered a report's round trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundtripServer {
    /// `sse-apps bidi-server`.
    Ours,
    /// The limit baseline.
    Limit,
    /// The Go server written like the Go original's ([`super::foreign`]).
    GoOriginal,
    /// The same round trip on axum's WebSocket.
    Ws,
}

impl RoundtripServer {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            RoundtripServer::Ours => "ours",
            RoundtripServer::Limit => "limit",
            RoundtripServer::GoOriginal => "go original",
            RoundtripServer::Ws => "ws",
        }
    }
}

/// Whether the bench's clients keep their connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientReuse {
    /// One kept-alive connection per session's answers and per caller.
    #[default]
    Always,
    /// A new connection for every request, closed once it is answered.
    Never,
}

impl RoundtripTarget {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            RoundtripTarget::Ours => "ours",
            RoundtripTarget::Limit => "limit",
            RoundtripTarget::Go => "go",
            RoundtripTarget::Ws => "ws",
        }
    }

    /// The server of the bench's own clients; the `go` target runs two ([`super::foreign`]).
    fn server(self) -> RoundtripServer {
        match self {
            RoundtripTarget::Ours | RoundtripTarget::Go => RoundtripServer::Ours,
            RoundtripTarget::Limit => RoundtripServer::Limit,
            RoundtripTarget::Ws => RoundtripServer::Ws,
        }
    }

    fn command(self) -> &'static [&'static str] {
        match self {
            RoundtripTarget::Ours | RoundtripTarget::Go => &["bidi-server"],
            RoundtripTarget::Limit => &["bench-limit", "roundtrip"],
            RoundtripTarget::Ws => &["bench-ws-roundtrip"],
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RoundtripBench {
    /// Sessions answering requests.
    pub sessions: usize,
    /// Concurrent callers of `/trigger`.
    pub callers: usize,
    /// How long the callers call.
    pub duration: Duration,
    /// Round trips a second offered on a schedule ([`super::pace`]); `None`: each caller calls
    /// again as soon as it is answered.
    pub rate: Option<u32>,
    /// The server.
    pub target: RoundtripTarget,
    /// Whether the clients keep their connections.
    pub reuse: ClientReuse,
    /// Pin the server to core 0 and this process to core 1.
    pub pin: bool,
}

/// What came out.
#[derive(Clone, Debug)]
pub struct RoundtripReport {
    /// The scenario.
    pub bench: RoundtripBench,
    /// Round trips answered 200.
    pub completed: u64,
    /// Calls that failed or were answered otherwise, and answers the server refused.
    pub errors: u64,
    /// Round-trip times of the completed ones.
    pub latency: Percentiles,
    /// Completed round trips a second.
    pub per_second: f64,
    /// The server's CPU time over the run, as a share of one core.
    pub cpu_percent: f64,
    /// The server's CPU time over the run, in microseconds.
    pub cpu_us: u64,
    /// TCP connections the server accepted over the run, by its own count
    /// ([`super::accepted`]).
    pub accepted: u64,
    /// Whether the server was pinned to one core.
    pub pinned: bool,
    /// The server that answered.
    pub server: RoundtripServer,
    /// What the run ran beside: the machine's steal time, the load generator's CPU.
    pub conditions: Conditions,
}

impl RoundtripReport {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "roundtrip {}: {} sessions, {} callers{}{} for {:?}{}: {} round trips ({:.0}/s), {} errors, {}, server CPU {:.0}%, {}{}",
            self.label(),
            self.bench.sessions,
            self.bench.callers,
            self.bench.rate.map(|rate| format!(" offering {rate}/s")).unwrap_or_default(),
            match self.bench.reuse {
                ClientReuse::Always => "",
                ClientReuse::Never => " (a new connection per request)",
            },
            self.bench.duration,
            if self.pinned { " (server pinned to one core)" } else { "" },
            self.completed,
            self.per_second,
            self.errors,
            self.latency.summary(),
            self.cpu_percent,
            self.per_round_trip(),
            self.conditions.suffix(),
        )
    }

    /// ` ours` or `limit` (aligned), or `go harness → <server>` under the Go harness.
    fn label(&self) -> String {
        match self.bench.target {
            RoundtripTarget::Go => format!("go harness → {}", self.server.name()),
            _ => format!("{:>5}", self.server.name()),
        }
    }

    /// `N µs server CPU per round trip, M connections accepted per round trip (K in all)`.
    pub fn per_round_trip(&self) -> String {
        let per_trip = |total: u64| total as f64 / self.completed.max(1) as f64;
        let accepted = format!(
            "{:.3} connections accepted per round trip ({} in all)",
            per_trip(self.accepted),
            self.accepted
        );
        format!("{:.0} µs server CPU per round trip, {accepted}", per_trip(self.cpu_us))
    }
}

/// Runs the scenario with this process's own clients (the `go` target's are
/// [`super::foreign::run`]'s).
pub async fn run(bench: RoundtripBench) -> anyhow::Result<RoundtripReport> {
    anyhow::ensure!(
        bench.sessions > 0 && bench.callers > 0,
        "need at least one session and one caller"
    );
    limits::ensure_open_files(bench.sessions * 2 + bench.callers)?;
    let mut server = server::launch(bench.target.command(), bench.pin).await?;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let reuse = bench.reuse == ClientReuse::Always;
    let stop = CancellationToken::new();
    let connected = Arc::new(Connected::default());
    let refused = Arc::new(AtomicU64::new(0));
    let connecting = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::new();
    let over_websocket = bench.target == RoundtripTarget::Ws;
    for i in 0..bench.sessions {
        let (addr, stop, connected, refused, connecting) =
            (addr.clone(), stop.clone(), connected.clone(), refused.clone(), connecting.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("rt-{i}");
            if over_websocket {
                super::ws_session::answer_requests(&addr, &name, &connecting, &connected, &stop)
                    .await;
            } else {
                answer_requests(&addr, &name, reuse, &connecting, &connected, &refused, &stop)
                    .await;
            }
        }));
    }
    connected.wait_for(bench.sessions).await?;

    let latencies = Arc::new(Latencies::default());
    let (completed, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut counter = super::accepted::AcceptCounter::new(&addr);
    let accepted_before = counter.read().await?;
    let before = server.usage().await?;
    let watch = Watch::start();
    let started = Instant::now();
    let pacer = bench
        .rate
        .map(|rate| Pacer::start(Schedule::new(rate, bench.callers, started, bench.duration)));
    let callers: Vec<_> = (0..bench.callers)
        .map(|c| {
            let (addr, latencies, completed, errors) =
                (addr.clone(), latencies.clone(), completed.clone(), errors.clone());
            let (sessions, callers, duration) = (bench.sessions, bench.callers, bench.duration);
            let pace = pacer.clone();
            tokio::spawn(async move {
                let mut connection = Connection::new(&addr).reusing(reuse);
                let mut batch = Vec::with_capacity(256);
                let mut n = 0;
                loop {
                    // On a schedule, the pacer says when the round trip's time counts from.
                    let paced = match pace {
                        None if started.elapsed() < duration => None,
                        Some(ref pacer) => match pacer.due_for(c, n) {
                            Some(due) => Some(pacer.wait(c, due).await),
                            None => break,
                        },
                        None => break,
                    };
                    let session = (c + n * callers) % sessions;
                    n += 1;
                    let target = format!("/trigger?client_id=rt-{session}&message=m{n}");
                    let sent = paced.unwrap_or_else(Instant::now);
                    match connection.request("GET", &target, "", b"").await {
                        Ok(answer) if answer.status == 200 => {
                            batch.push(sent.elapsed().as_micros() as u64);
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(answer) => {
                            eprintln!(
                                "trigger answered {}: {}",
                                answer.status,
                                String::from_utf8_lossy(&answer.body)
                            );
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            eprintln!("trigger failed: {error:#}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if batch.len() == batch.capacity() {
                        latencies.record(&batch);
                        batch.clear();
                    }
                }
                latencies.record(&batch);
            })
        })
        .collect();
    for caller in callers {
        caller.await?;
    }
    let wall = started.elapsed();
    let after = server.usage().await?;
    let conditions = watch.finish();
    let accepted = counter.read().await?.saturating_sub(accepted_before);
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let completed = completed.load(Ordering::Relaxed);
    Ok(RoundtripReport {
        completed,
        errors: errors.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed),
        latency: latencies.percentiles(),
        per_second: completed as f64 / wall.as_secs_f64(),
        cpu_percent: after.cpu_percent_since(&before, wall),
        cpu_us: after.cpu_us().saturating_sub(before.cpu_us()),
        accepted,
        pinned: server.pinned,
        server: bench.target.server(),
        conditions,
        bench,
    })
}

/// Ours beside the limit, from two runs of the same scenario.
pub fn ratio_line(ours: &RoundtripReport, limit: &RoundtripReport) -> String {
    let share = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    format!(
        "roundtrip ours ÷ limit: round trips/s {:.2}, p99 {:.2}",
        share(ours.per_second, limit.per_second),
        share(ours.latency.p99.as_secs_f64(), limit.latency.p99.as_secs_f64()),
    )
}

/// One session: reads its stream and posts an answer to every request on it, in order, on one
/// kept-alive connection (with `reuse`; otherwise on a new connection each).
async fn answer_requests(
    addr: &str,
    name: &str,
    reuse: bool,
    connecting: &Semaphore,
    connected: &Connected,
    refused: &AtomicU64,
    stop: &CancellationToken,
) {
    let (ids, mut to_answer) = mpsc::unbounded_channel::<String>();
    let poster = async {
        let mut connection = Connection::new(addr).reusing(reuse);
        let headers = format!("Client-ID: {name}\r\nContent-Type: application/json\r\n");
        while let Some(id) = to_answer.recv().await {
            let body = format!(r#"{{"id":"{id}","result":"ok"}}"#);
            match connection.request("POST", "/response", &headers, body.as_bytes()).await {
                Ok(answer) if answer.status == 200 => {}
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let mut scanner = Scanner::default();
    let path = format!("/events?client_id={name}");
    let reader = async {
        read_body(addr, &path, "", connecting, connected, stop, |body| {
            scanner.feed(body, |seen| {
                if let Seen::Data(data) = seen
                    && let Some(id) = request_id(data)
                {
                    let _ = ids.send(id);
                }
            });
        })
        .await;
        drop(ids);
    };
    tokio::join!(reader, poster);
}

/// The id of a request frame's data (`{"id":"…","message":…}`); `None` for the greeting
/// (`{"type":"client_id",…}`) and anything else.
pub(super) fn request_id(data: &[u8]) -> Option<String> {
    if memchr::memmem::find(data, b"\"type\":\"client_id\"").is_some() {
        return None;
    }
    let start = memchr::memmem::find(data, b"\"id\":\"")? + 6;
    let length = memchr::memchr(b'"', &data[start..])?;
    Some(String::from_utf8_lossy(&data[start..start + length]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn finds_request_ids_and_skips_the_greeting() {
        assert_eq!(
            request_id(br#"{"id":"17","message":"m","method":"analyze"}"#).as_deref(),
            Some("17")
        );
        assert_eq!(request_id(br#"{"id":"rt-1","type":"client_id"}"#), None);
        assert_eq!(request_id(b"{}"), None);
    }
}
