//! `sse-apps bench`: the load scenarios' flags and how each is run and reported, and the hidden
//! commands a bench starts as its own processes (the servers it measures, the holder of idle
//! connections).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use sse_core::Core;
use tokio_util::sync::CancellationToken;

use super::server_args::{BENCH_TARGET, ServerArgs};
use crate::bench::targets::Target;
use crate::dashboard::flags::parse_interval;
use crate::server;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchScenario {
    /// N connections on one topic, R events a second: delivery, latency, server CPU and memory,
    /// ours beside the `limit` and `naive` baselines (and, when asked, a WebSocket server)
    Fanout {
        /// Loads as CONNECTIONSxRATE (comma-separated)
        #[arg(long, value_delimiter = ',', default_value = "1000x10,1000x100,10000x10,10000x100")]
        loads: Vec<crate::bench::fanout::Load>,
        /// Servers to measure (comma-separated): `ours`, `limit` (no framework), `naive` (axum's
        /// `Sse` over tokio broadcast), `ws` (axum's WebSocket over tokio broadcast)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit,naive")]
        targets: Vec<Target>,
        /// Bytes of data per event
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// How long each load publishes
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Also draw the results to this SVG file
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// Server→client requests answered by POST: S sessions, C callers of /trigger; round trips/s
    Roundtrip {
        /// Sessions answering requests
        #[arg(long, default_value_t = 64)]
        sessions: usize,
        /// Concurrent callers
        #[arg(long, default_value_t = 64)]
        callers: usize,
        /// How long to call
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Offer this many round trips a second on a schedule, timing each from when it was due
        /// (latency at a load); without it, callers call again as soon as they are answered (the
        /// most a server can do)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate: Option<u32>,
        /// Servers to measure (comma-separated): `ours` (`sse-apps bidi-server`), `limit` (the
        /// same protocol over raw sockets, no framework), `go` (a Go responder and load generator
        /// written like the Go original's, against `bidi-server` with its default flags, a Go
        /// server written like the original's and the limit; built with `go` when it is
        /// installed, skipped with a notice otherwise), `ws` (the same round trip on axum's
        /// WebSocket, each session's requests and answers on one socket)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit")]
        targets: Vec<crate::bench::roundtrip::RoundtripTarget>,
        /// Whether the clients keep their connections: `always`, or `never` (a new connection
        /// for every request, closed once answered: the server's cost of accepting is measured)
        #[arg(long, value_enum, default_value = "always")]
        client_reuse: crate::bench::roundtrip::ClientReuse,
        /// Sessions of the `go` target, one run each (comma-separated); each session has a
        /// caller of its own (`--sessions` and `--callers` are for the other targets)
        #[arg(long, value_delimiter = ',', default_value = "1,8,64",
              value_parser = clap::value_parser!(u32).range(1..))]
        go_sessions: Vec<u32>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// MCP tool calls that ask the caller's model, both ways: down the stream (push) or by
    /// multi round-trip requests (mrtr); calls/s and their times at each number of callers
    Sampling {
        /// Numbers of concurrent callers, each a run (comma-separated)
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        callers: Vec<usize>,
        /// The ways to ask (comma-separated)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "push,mrtr")]
        eras: Vec<crate::bench::sampling::Era>,
        /// The servers (comma-separated); `limit` serves only mrtr, and only on one instance
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit")]
        targets: Vec<crate::bench::sampling::SamplingTarget>,
        /// How long each run calls
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Run two instances sharing this Redis (redis://HOST:PORT), every call crossing them
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// N idle connections: the server's resident memory per connection
    Idle {
        /// Connections to hold open
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Servers to measure (comma-separated): `ours`, `limit`, `naive`, `ws`
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit,naive")]
        targets: Vec<Target>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// A new client's request while N idle connections (never a byte) are held: time to its answer
    Flood {
        /// Idle connections to hold
        #[arg(long, default_value_t = 20_000)]
        idle: usize,
        /// Loopback addresses they come from (127.0.0.2 onwards)
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// Requests timed before and during the flood, each on a new connection
        #[arg(long, default_value_t = 20)]
        probes: usize,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// How fast N connections are established
    Connect {
        /// Connections to open
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// How many may be connecting at once
        #[arg(long, default_value_t = 1000)]
        concurrency: usize,
        /// Servers to measure (comma-separated)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit,naive")]
        targets: Vec<Target>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// One chat room: N members reading, R messages a second posted; delivery share and latency
    Chat {
        /// Members connected to the room
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages a second, all posters together
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// How long to post
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Then run two chat instances sharing this Redis (members and posts split between
        /// them), after one with SQLite, and compare
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// Reach the instances through the repository's nginx configuration (needs `nginx`)
        #[arg(long)]
        nginx: bool,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// Remote execution: output throughput to one viewer, and keystroke-to-echo latency
    Exec {
        /// Output of the throughput run, in MiB
        #[arg(long, default_value_t = 256)]
        mib: u64,
        /// Keystrokes for the latency measurement
        #[arg(long, default_value_t = 1000)]
        keystrokes: usize,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// Every app under mixed load for a long time: errors, and memory and descriptor growth
    Soak {
        /// The whole run, warm-up included
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Load before the first settled measurement: longer than the longest time the server
        /// remembers anything (finished requests, 10 minutes), so what fills up is full
        #[arg(long, default_value = "12m", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Time between samples under load
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        sample_every: Duration,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// The dashboard's cost: server CPU and sampler time with 0 and then N viewers
    Dashboard {
        /// Viewer counts to measure, after none
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        viewers: Vec<usize>,
        /// Sampling interval
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// How long each count is measured
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        window: Duration,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
}

// `sse-apps bench-target` (hidden).
#[derive(Debug, Args)]
pub(crate) struct BenchTargetArgs {
    /// Which server
    #[arg(value_enum)]
    target: Target,
    #[command(flatten)]
    server: ServerArgs,
}

// `sse-apps bench-flood-holder` (hidden).
#[derive(Debug, Args)]
pub(crate) struct BenchFloodHolderArgs {
    /// The server under test
    #[arg(long)]
    server: SocketAddr,
    /// Connections to open and hold
    #[arg(long)]
    idle: usize,
    /// From 127.0.0.SOURCE
    #[arg(long)]
    source: u8,
}

// `sse-apps bench-ws-roundtrip` (hidden).
#[derive(Debug, Args)]
pub(crate) struct BenchWsRoundtripArgs {
    #[command(flatten)]
    server: ServerArgs,
}

// `sse-apps bench-limit <PROTOCOL>` (hidden).
#[derive(Debug, Args)]
pub(crate) struct BenchLimitArgs {
    /// Which exchange to serve
    #[arg(value_enum)]
    protocol: LimitProtocol,
    #[command(flatten)]
    server: ServerArgs,
}

/// The exchanges the `limit` baselines serve with no framework at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LimitProtocol {
    /// The Go original's bidirectional protocol (`bench roundtrip`).
    Roundtrip,
    /// 2026-07-28's multi round-trip tool call (`bench sampling`).
    Sampling,
}

impl BenchScenario {
    /// Runs the scenario and prints its report; fails the process when a soak saw errors.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            BenchScenario::Fanout { loads, targets, payload, duration, plot, no_pin } => {
                let bench = crate::bench::fanout::FanoutBench {
                    loads,
                    targets,
                    payload,
                    duration,
                    pin: !no_pin,
                };
                fanout(bench, plot).await?;
            }
            BenchScenario::Roundtrip {
                sessions,
                callers,
                duration,
                rate,
                targets,
                client_reuse,
                go_sessions,
                no_pin,
            } => {
                let plan = RoundtripPlan { sessions, callers, duration, rate, client_reuse };
                roundtrip(plan.benches(&targets, &go_sessions, !no_pin)).await?;
            }
            BenchScenario::Sampling { callers, eras, targets, duration, redis, no_pin } => {
                let plan = SamplingPlan { callers, eras, targets, duration, redis, pin: !no_pin };
                sampling(plan).await?;
            }
            BenchScenario::Idle { connections, targets, no_pin } => {
                for row in crate::bench::connect::run(&targets, connections, 1000, !no_pin).await? {
                    println!("{}", row.idle_line());
                }
            }
            BenchScenario::Flood { idle, sources, probes, no_pin } => {
                let bench = crate::bench::flood::FloodBench { idle, sources, probes, pin: !no_pin };
                println!("{}", crate::bench::flood::run(bench).await?.line());
            }
            BenchScenario::Connect { connections, concurrency, targets, no_pin } => {
                let rows =
                    crate::bench::connect::run(&targets, connections, concurrency, !no_pin).await?;
                for row in rows {
                    println!("{}", row.connect_line());
                }
            }
            BenchScenario::Chat { members, rate, duration, redis, nginx, no_pin } => {
                let bench = crate::bench::chat::ChatBench {
                    members,
                    rate,
                    duration,
                    redis,
                    nginx,
                    pin: !no_pin,
                };
                chat(bench).await?;
            }
            BenchScenario::Exec { mib, keystrokes, no_pin } => {
                let bench = crate::bench::exec::ExecBench { mib, keystrokes, pin: !no_pin };
                println!("{}", crate::bench::exec::run(bench).await?.line());
            }
            BenchScenario::Soak { duration, warmup, sample_every, no_pin } => {
                let bench =
                    crate::bench::soak::SoakBench { duration, warmup, sample_every, pin: !no_pin };
                return soak(bench).await;
            }
            BenchScenario::Dashboard { mut viewers, interval, window, no_pin } => {
                viewers.sort_unstable();
                let bench = crate::bench::dashboard::DashboardBench {
                    viewers,
                    interval,
                    window,
                    pin: !no_pin,
                };
                for step in crate::bench::dashboard::run(bench).await? {
                    println!("{}", step.line());
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The round-trip scenarios to run, one per target (the Go harness one per `--go-sessions`,
/// each session with its caller).
struct RoundtripPlan {
    sessions: usize,
    callers: usize,
    duration: Duration,
    rate: Option<u32>,
    client_reuse: crate::bench::roundtrip::ClientReuse,
}

impl RoundtripPlan {
    fn benches(
        &self,
        targets: &[crate::bench::roundtrip::RoundtripTarget],
        go_sessions: &[u32],
        pin: bool,
    ) -> Vec<crate::bench::roundtrip::RoundtripBench> {
        use crate::bench::roundtrip::{RoundtripBench, RoundtripTarget};
        let bench = |target, sessions, callers| RoundtripBench {
            sessions,
            callers,
            duration: self.duration,
            rate: self.rate,
            target,
            reuse: self.client_reuse,
            pin,
        };
        let mut benches = Vec::new();
        for &target in targets {
            if target == RoundtripTarget::Go {
                benches.extend(go_sessions.iter().map(|&s| bench(target, s as usize, s as usize)));
            } else {
                benches.push(bench(target, self.sessions, self.callers));
            }
        }
        benches
    }
}

/// The fan-out table, and its chart when `plot` names a file.
async fn fanout(
    bench: crate::bench::fanout::FanoutBench,
    plot: Option<PathBuf>,
) -> anyhow::Result<()> {
    let rows = crate::bench::fanout::run(&bench).await?;
    println!("{}", crate::bench::fanout::table(&rows));
    if let Some(path) = plot {
        let title = format!("SSE fan-out, {}-byte events, server on one core", bench.payload);
        crate::bench::plot::draw(&rows, &title, &path)?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}

/// What `bench sampling` was asked to run.
struct SamplingPlan {
    callers: Vec<usize>,
    eras: Vec<crate::bench::sampling::Era>,
    targets: Vec<crate::bench::sampling::SamplingTarget>,
    duration: Duration,
    redis: Option<String>,
    pin: bool,
}

/// `bench sampling`: one run per server, way of asking and number of callers, a line each.
/// The limit serves only what it can (mrtr on one instance); the rest of its runs are skipped.
async fn sampling(plan: SamplingPlan) -> anyhow::Result<()> {
    use crate::bench::sampling::{Era, SamplingBench, SamplingTarget, run};
    for &target in &plan.targets {
        for &era in &plan.eras {
            if target == SamplingTarget::Limit && (era != Era::Mrtr || plan.redis.is_some()) {
                continue;
            }
            for &callers in &plan.callers {
                let (duration, pin, redis) = (plan.duration, plan.pin, plan.redis.clone());
                let bench = SamplingBench { target, era, callers, duration, pin, redis };
                println!("{}", run(bench).await?.line());
            }
        }
    }
    Ok(())
}

/// Each target's round trips (the go target's against both servers, beside each other), then ours
/// beside the limit when both were measured.
async fn roundtrip(benches: Vec<crate::bench::roundtrip::RoundtripBench>) -> anyhow::Result<()> {
    use crate::bench::roundtrip::{RoundtripTarget, ratio_line};
    let mut reports = Vec::new();
    for bench in benches {
        if bench.target == RoundtripTarget::Go {
            // `None`: skipped, with a notice (no `go` here).
            if let Some(comparison) = crate::bench::foreign::run(bench).await? {
                for line in comparison.lines() {
                    println!("{line}");
                }
            }
            continue;
        }
        let report = crate::bench::roundtrip::run(bench).await?;
        println!("{}", report.line());
        reports.push(report);
    }
    let of = |wanted| reports.iter().find(|r| r.bench.target == wanted);
    if let (Some(ours), Some(limit)) = (of(RoundtripTarget::Ours), of(RoundtripTarget::Limit)) {
        println!("{}", ratio_line(ours, limit));
    }
    Ok(())
}

/// The chat's report: a line for each set-up run, then the ratio of their p99s.
async fn chat(bench: crate::bench::chat::ChatBench) -> anyhow::Result<()> {
    let reports = crate::bench::chat::run(bench).await?;
    for report in &reports {
        println!("{}", report.line());
    }
    if let Some(ratio) = crate::bench::chat::ratio_line(&reports) {
        println!("{ratio}");
    }
    Ok(())
}

/// The soak's report; a failure exit when it counted errors.
async fn soak(bench: crate::bench::soak::SoakBench) -> anyhow::Result<ExitCode> {
    let report = crate::bench::soak::run(bench).await?;
    for line in report.lines() {
        println!("{line}");
    }
    Ok(if report.error_count() > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

impl BenchTargetArgs {
    /// Serves one of the fan-out bench's servers, publishing what `commands` orders.
    pub async fn run(
        self,
        commands: tokio::sync::mpsc::UnboundedReceiver<String>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        use crate::bench::targets::{limit, naive, ours, ws};
        if self.target == Target::Ours {
            let app = move |core: Core| Ok(ours::router(core, commands));
            return super::serve_program(self.server, BENCH_TARGET, shutdown, app).await;
        }
        let listener = bind_loopback(&self.server)?;
        println!(
            "sse-apps: bench target {} listening on http://{}",
            self.target.name(),
            listener.local_addr()?
        );
        let served = async {
            match self.target {
                Target::Limit => limit::serve(listener, commands).await,
                Target::Naive => naive::serve(listener, commands).await,
                Target::Ws => ws::serve(listener, commands).await,
                // Served above, behind the apps' layers.
                Target::Ours => Ok(()),
            }
        };
        tokio::select! {
            result = served => result?,
            () = shutdown.cancelled() => {}
        }
        Ok(())
    }
}

impl BenchLimitArgs {
    /// Serves the baseline until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        use crate::bench::targets::{limit_roundtrip, limit_sampling};
        let listener = bind_loopback(&self.server)?;
        let name = format!("{:?}", self.protocol).to_lowercase();
        println!("sse-apps: {name} limit listening on http://{}", listener.local_addr()?);
        let served = async {
            match self.protocol {
                LimitProtocol::Roundtrip => limit_roundtrip::serve(listener).await,
                LimitProtocol::Sampling => limit_sampling::serve(listener).await,
            }
        };
        tokio::select! {
            result = served => result?,
            () = shutdown.cancelled() => {}
        }
        Ok(())
    }
}

impl BenchWsRoundtripArgs {
    /// Serves the WebSocket round trip until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let listener = bind_loopback(&self.server)?;
        println!("sse-apps: roundtrip ws listening on http://{}", listener.local_addr()?);
        tokio::select! {
            result = crate::bench::targets::ws_roundtrip::serve(listener) => result?,
            () = shutdown.cancelled() => {}
        }
        Ok(())
    }
}

impl BenchFloodHolderArgs {
    /// Holds the idle connections until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        crate::bench::flood::hold(self.server, self.idle, self.source, shutdown).await
    }
}

/// A baseline's listener: `--addr`, else any free loopback port. Baselines check no token and
/// no origin, so they never listen beyond loopback.
fn bind_loopback(server: &ServerArgs) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = server.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "a bench baseline listens on loopback only (it checks no token): not {addr}"
    );
    server::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
