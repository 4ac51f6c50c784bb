//! `bench roundtrip --targets go`: our `bidi-server`, with its default flags, under a harness we
//! did not write.
//!
//! The bench's own clients ([`super::http1`]) keep every connection and read every answer; real
//! clients do neither always. This target builds, from source in a scratch directory, two small
//! Go programs (standard library only, `go 1.19`) written the way the Go original's programs are:
//!
//! - `responder.go`: S sessions, each reading its `GET /events?client_id=go-<i>` stream with
//!   `bufio` and answering every request with `http.Client.Do` on `POST /response`, closing the
//!   answer's body unread, as the original's `bidirectional_client` does. Net/http reuses a
//!   connection only when nothing of the answer was left unread, so any body there would make it
//!   dial anew for every answer;
//! - `load.go`: S goroutines, one per session, calling `GET /trigger` for a fixed time on one
//!   `net/http` client, printing the count and the percentiles of the round trips.
//!
//! They run on the load generator's core (they inherit its pinning); the server is started as it
//! ships (no `--max-streams-per-client 0`, unlike the bench's other targets). Its CPU time comes
//! from its own `getrusage` and its accepted connections from its own
//! `sse_connections_accepted_total` ([`super::accepted`]). The load generator's CPU in the report
//! is the Go load generator's (the responder's is not counted). Without `go` on the `PATH` the
//! target is skipped with a notice, and the rest of the bench runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::Percentiles;
use super::accepted::AcceptCounter;
use super::conditions::Watch;
use super::roundtrip::{ClientReuse, RoundtripBench, RoundtripReport};
use super::server;

const RESPONDER: &str = include_str!("responder.go");
const LOAD: &str = include_str!("load.go");
const GO_MOD: &str = "module ssebench\n\ngo 1.19\n";

/// Runs `bench` (its `sessions` are both the responder's sessions and the load's callers);
/// `None` when `go` is not installed.
pub async fn run(bench: RoundtripBench) -> anyhow::Result<Option<RoundtripReport>> {
    if !go_installed().await {
        eprintln!(
            "NOTICE: skipping the go target: `go` is not installed (apt-get install golang-go)"
        );
        return Ok(None);
    }
    anyhow::ensure!(bench.sessions > 0, "need at least one session");
    let scratch = Scratch::new()?;
    let programs = scratch.build().await?;
    let mut server = server::launch_as_shipped(&["bidi-server"], bench.pin).await?;
    let base = server.base.clone();
    let addr = base.trim_start_matches("http://").to_owned();
    let keepalive = format!("-keepalive={}", bench.reuse == ClientReuse::Always);
    let sessions = bench.sessions.to_string();
    let common = ["-server", &base, "-sessions", &sessions, "-prefix", "go", &keepalive];

    let mut responder = Command::new(&programs.responder)
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
            "go: only {connected} of {} sessions could connect to bidi-server with its default \
             flags; triggers to the others fail",
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
    let load = Command::new(&programs.load)
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
    conditions.load_cpu_percent = 100.0 * children_cpu_us().saturating_sub(children_before) as f64
        / wall.as_micros().max(1) as f64;
    let accepted = counter.read().await?.saturating_sub(accepted_before);
    let _ = responder.kill().await;
    anyhow::ensure!(load.status.success(), "the Go load generator failed: {}", load.status);
    let printed = String::from_utf8_lossy(&load.stdout);
    let summary =
        LoadSummary::parse(&printed).with_context(|| format!("the load's summary: {printed}"))?;
    Ok(Some(RoundtripReport {
        completed: summary.count,
        errors: summary.errors,
        latency: summary.latency,
        per_second: summary.count as f64 / summary.elapsed.as_secs_f64().max(1e-6),
        cpu_percent: after.cpu_percent_since(&before, wall),
        cpu_us: after.cpu_us().saturating_sub(before.cpu_us()),
        accepted,
        pinned: server.pinned,
        conditions,
        bench: RoundtripBench { callers: bench.sessions, ..bench },
    }))
}

/// Whether `go version` runs.
async fn go_installed() -> bool {
    Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
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

/// The scratch directory the programs are written and built in; removed when dropped.
struct Scratch {
    dir: PathBuf,
}

/// The two built programs.
struct Programs {
    responder: PathBuf,
    load: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir()
            .join(format!("sse-apps-bench-go-{}", uuid::Uuid::new_v4().simple()));
        let scratch = Scratch { dir };
        for (path, text) in
            [("go.mod", GO_MOD), ("responder/main.go", RESPONDER), ("load/main.go", LOAD)]
        {
            let path = scratch.dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(scratch)
    }

    /// `go build`s both programs.
    async fn build(&self) -> anyhow::Result<Programs> {
        let programs =
            Programs { responder: self.dir.join("responder-bin"), load: self.dir.join("load-bin") };
        for (output, package) in [(&programs.responder, "./responder"), (&programs.load, "./load")]
        {
            go_build(&self.dir, output, package).await?;
        }
        Ok(programs)
    }
}

/// `go build -o output package` in `dir`, offline (the programs need only the standard library).
async fn go_build(dir: &Path, output: &Path, package: &str) -> anyhow::Result<()> {
    let mut command = Command::new("go");
    command
        .current_dir(dir)
        .args(["build", "-o"])
        .arg(output)
        .arg(package)
        .env("GOPROXY", "off")
        // Only this module: no go.work found in a parent directory (another user may plant one
        // in /tmp), no toolchain download, no flags from the environment.
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .stdin(Stdio::null());
    // Go needs a build cache; without a home directory to keep one in, the scratch directory's.
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        command.env("GOCACHE", dir.join("cache"));
    }
    let built = command.output().await.context("running go build")?;
    anyhow::ensure!(
        built.status.success(),
        "go build {package} failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Ok(())
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
