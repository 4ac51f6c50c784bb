//! `bench flood`: how long a new client waits for its answer while N connections that never send a
//! byte are held open against the server.
//!
//! Such a flood once used up the server's descriptors (about 21,000 idle connections against
//! `ulimit -n` 20,000): `accept` failed and a new client waited in the kernel's backlog until the
//! head deadline, 10 s, freed some. The pending-connection budget
//! ([`sse_core::edge::pending`]) closes the oldest connection that has sent no request to make
//! room for each new one, so the client should be answered at once.
//!
//! The flood comes from several loopback addresses (127.0.0.2, 127.0.0.3, …), each held by a
//! process of its own (`sse-apps bench-flood-holder`, started by this one): one process may not
//! hold more sockets than the open-file limit it shares with the server, and one address has
//! about 28,000 ephemeral ports. The probing client comes from 127.0.0.1 and sends `GET /healthz`
//! on a new connection each time, timed from its connect to the answer's status line. The same
//! probes run before the flood, for comparison.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use super::{Percentiles, limits, ms, server};

/// Connections of the flood being opened at once.
const CONNECTING: usize = 256;

/// How long one connection of the flood, or one probe, may take before it counts as failed.
const GIVE_UP: Duration = Duration::from_secs(30);

/// The scenario.
#[derive(Clone, Debug)]
pub struct FloodBench {
    /// Idle connections to hold.
    pub idle: usize,
    /// Loopback addresses they come from (127.0.0.2 onwards).
    pub sources: u8,
    /// Requests timed before and during the flood.
    pub probes: usize,
    /// Pin the server and this process to separate cores.
    pub pin: bool,
}

/// What it found.
#[derive(Clone, Debug)]
pub struct FloodReport {
    /// The scenario.
    pub bench: FloodBench,
    /// Idle connections that could not be opened.
    pub failed: usize,
    /// How long opening the flood took.
    pub opening: Duration,
    /// The time to an answer without the flood.
    pub before: Percentiles,
    /// The same with the flood held.
    pub during: Percentiles,
    /// Probes that got no answer.
    pub unanswered: usize,
    /// The server's `sse_connections_evicted_total`, per address and in total.
    pub evicted: (u64, u64),
    /// The server's `sse_connections_pending` at the end.
    pub pending: u64,
    /// Whether the server was pinned to a core of its own.
    pub pinned: bool,
}

impl FloodReport {
    /// The figures for people.
    pub fn line(&self) -> String {
        format!(
            "flood: {} idle connections from {} addresses held ({} failed, opened in {:.1} s); \
             the server closed {} of them (per address {}, in total {}), {} still pending; a new \
             client's request answered in {} over {} probes ({} unanswered; before the flood: \
             p50 {}){}",
            self.bench.idle,
            self.bench.sources,
            self.failed,
            self.opening.as_secs_f64(),
            self.evicted.0 + self.evicted.1,
            self.evicted.0,
            self.evicted.1,
            self.pending,
            self.during.summary(),
            self.during.count,
            self.unanswered,
            ms(self.before.p50),
            if self.pinned { "" } else { " (not pinned)" },
        )
    }
}

/// Runs the scenario against `sse-apps bench-target ours`.
pub async fn run(bench: FloodBench) -> anyhow::Result<FloodReport> {
    anyhow::ensure!((1..=250).contains(&bench.sources), "--sources is from 1 to 250");
    let server = server::launch(&["bench-target", "ours"], bench.pin).await?;
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse()?;

    let (before, _) = probe(addr, bench.probes).await;
    let started = Instant::now();
    let sources = usize::from(bench.sources);
    let mut holders = Vec::new();
    for k in 0..sources {
        let share = bench.idle / sources + usize::from(k < bench.idle % sources);
        holders.push(Holder::start(addr, share, 2 + k as u8)?);
    }
    let mut failed = 0;
    for holder in &mut holders {
        failed += holder.holding().await?;
    }
    let opening = started.elapsed();
    let (during, unanswered) = probe(addr, bench.probes).await;
    let metrics = metrics_text(addr).await?;
    let series = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    let evicted = (
        series(r#"sse_connections_evicted_total{cap="per_address"}"#),
        series(r#"sse_connections_evicted_total{cap="total"}"#),
    );
    let pending = series("sse_connections_pending");
    drop(holders);
    Ok(FloodReport {
        pinned: server.pinned,
        bench,
        failed,
        opening,
        before,
        during,
        unanswered,
        evicted,
        pending,
    })
}

/// A process holding part of the flood; killed when this is dropped.
#[derive(Debug)]
struct Holder {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Holder {
    /// Starts `sse-apps bench-flood-holder` for `idle` connections from 127.0.0.`source`.
    fn start(server: SocketAddr, idle: usize, source: u8) -> anyhow::Result<Holder> {
        let exe = std::env::current_exe().context("finding this program")?;
        let mut child = Command::new(exe)
            .arg("bench-flood-holder")
            .args(["--server", &server.to_string(), "--idle", &idle.to_string()])
            .args(["--source", &source.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a flood holder")?;
        let stdout = child.stdout.take().context("the holder's output")?;
        Ok(Holder { _child: child, lines: BufReader::new(stdout).lines() })
    }

    /// Waits until it holds its connections; returns how many it could not open.
    async fn holding(&mut self) -> anyhow::Result<usize> {
        let line = self.lines.next_line().await?.context("a flood holder exited early")?;
        let failed = line.strip_prefix("holding, failed ").and_then(|n| n.parse().ok());
        failed.with_context(|| format!("a flood holder said {line:?}"))
    }
}

/// `sse-apps bench-flood-holder`: opens `idle` connections to `server` from 127.0.0.`source`,
/// sends nothing on them, says `holding, failed F` on stdout, and holds them until `shutdown` (a
/// signal) comes or the process that started it ends.
pub async fn hold(
    server: SocketAddr,
    idle: usize,
    source: u8,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A bench that dies (or is killed) takes its holders with it, rather than leave them
    // holding connections for ever.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    anyhow::ensure!(
        rustix::process::getppid().is_some_and(|parent| !parent.is_init()),
        "the bench that started this holder has already ended"
    );
    limits::ensure_open_files(idle)?;
    let flood: Vec<Option<TcpStream>> = futures_util::stream::iter(0..idle)
        .map(|_| idle_from(source, server))
        .buffer_unordered(CONNECTING)
        .collect()
        .await;
    let failed = flood.iter().filter(|socket| socket.is_none()).count();
    let mut out = tokio::io::stdout();
    out.write_all(format!("holding, failed {failed}\n").as_bytes()).await?;
    out.flush().await?;
    shutdown.cancelled().await;
    drop(flood);
    Ok(())
}

/// A connection from 127.0.0.`source` that sends nothing; `None` if it cannot be made.
async fn idle_from(source: u8, server: SocketAddr) -> Option<TcpStream> {
    let connect = super::dial::connect_from(IpAddr::from([127, 0, 0, source]), server);
    tokio::time::timeout(GIVE_UP, connect).await.ok()?.ok()
}

/// Times `probes` requests, one after another, each on a new connection: from the connect to the
/// answer's status line. Returns their percentiles and how many got no answer.
async fn probe(server: SocketAddr, probes: usize) -> (Percentiles, usize) {
    let mut micros = Vec::with_capacity(probes);
    let mut unanswered = 0;
    for _ in 0..probes {
        let started = Instant::now();
        match tokio::time::timeout(GIVE_UP, health(server)).await {
            Ok(Ok(())) => {
                micros.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            _ => unanswered += 1,
        }
    }
    (Percentiles::from_micros(micros), unanswered)
}

/// `GET /healthz` on a new connection, until the status line of a 200 is in.
async fn health(server: SocketAddr) -> anyhow::Result<()> {
    let mut socket = TcpStream::connect(server).await?;
    socket.set_nodelay(true)?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut buffer = [0; 256];
    while !answer.contains(&b'\n') {
        let n = socket.read(&mut buffer).await?;
        anyhow::ensure!(n > 0, "closed before an answer");
        answer.extend_from_slice(&buffer[..n]);
    }
    anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "not a 200");
    Ok(())
}

/// The server's `/metrics`.
async fn metrics_text(server: SocketAddr) -> anyhow::Result<String> {
    let url = format!("http://{server}/metrics");
    let response = reqwest::get(&url).await.with_context(|| format!("GET {url}"))?;
    Ok(response.text().await?)
}
