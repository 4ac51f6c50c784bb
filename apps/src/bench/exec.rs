//! `bench exec`: how fast a run's output reaches one viewer, and how long a keystroke takes to
//! come back.
//!
//! Throughput: a run writes `--mib` MiB (`head -c … /dev/zero | tr`) and one raw HTTP/1.0
//! viewer ([`super::reader`]) reads the stream to `exit`; the figure is output bytes over the
//! time from the POST to `exit`, so it includes the sandbox's start. Latency, twice: a run of
//! `cat` on pipes echoes each keystroke (a short line POSTed to stdin) back on the stream, and a
//! run of `cat` in a terminal (a PTY, as the page's xterm uses) gets one key per POST, which the
//! terminal echoes at once, as it does for a shell. Each is timed from just before its POST to the
//! moment the viewer parses the echo.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::reader::{Connected, read_events};
use super::{Percentiles, ms, server};

const TOKEN: &str = "bench";

/// What to run.
#[derive(Clone, Debug)]
pub struct ExecBench {
    /// MiB of output for the throughput run.
    pub mib: u64,
    /// Keystrokes for the latency run.
    pub keystrokes: usize,
    /// Pin the server to core 0 and this process to core 1.
    pub pin: bool,
}

/// What came out.
#[derive(Clone, Debug)]
pub struct ExecReport {
    /// The scenario.
    pub bench: ExecBench,
    /// Output bytes the viewer received.
    pub bytes: u64,
    /// POST to `exit`.
    pub elapsed: Duration,
    /// Keystroke to echo, on pipes.
    pub echo: Percentiles,
    /// Keystroke to echo, in a terminal.
    pub terminal_echo: Percentiles,
    /// Whether the server was pinned.
    pub pinned: bool,
}

impl ExecReport {
    /// One line for people.
    pub fn line(&self) -> String {
        let mb_per_s = self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64();
        format!(
            "exec{}: {} MB of output to one viewer in {:.2} s = {:.0} MB/s; {} keystrokes echoed: p50 {}, p99 {}, max {}; in a terminal: p50 {}, p99 {}, max {}",
            if self.pinned { " (server pinned to one core)" } else { "" },
            self.bytes / 1_000_000,
            self.elapsed.as_secs_f64(),
            mb_per_s,
            self.bench.keystrokes,
            ms(self.echo.p50),
            ms(self.echo.p99),
            ms(self.echo.max),
            ms(self.terminal_echo.p50),
            ms(self.terminal_echo.p99),
            ms(self.terminal_echo.max),
        )
    }
}

/// Runs the scenario.
pub async fn run(bench: ExecBench) -> anyhow::Result<ExecReport> {
    let cap = (bench.mib + 1).to_string();
    let args = ["exec", "--output-cap-mib", &cap, "--run-timeout", "5m"];
    let server = server::launch_with_env(&args, &[("SSE_APPS_TOKEN", TOKEN)], bench.pin).await?;
    let http = reqwest::Client::new();
    let addr = server.base.trim_start_matches("http://").to_owned();

    let code = format!("head -c {} /dev/zero | tr '\\0' a", bench.mib << 20);
    let started = Instant::now();
    let id = start(&http, &server.base, json!({ "language": "sh", "code": code })).await?;
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = bytes.clone();
    view(&addr, &id, move |event, data| {
        if event == "stdout" {
            counted.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    })
    .await;
    let elapsed = started.elapsed();

    let on_pipes = json!({ "language": "sh", "code": "exec cat" });
    let echo =
        echoes(&http, &server.base, on_pipes, bench.keystrokes, |i| format!("{i}\n")).await?;
    let in_terminal = json!({ "argv": ["cat"], "pty": true, "rows": 24, "cols": 80 });
    let keys = b"abcdefghijklmnopqrstuvwxyz";
    let key = |i: usize| char::from(keys[i % keys.len()]).to_string();
    let terminal_echo = echoes(&http, &server.base, in_terminal, bench.keystrokes, key).await?;
    Ok(ExecReport {
        bytes: bytes.load(Ordering::Relaxed),
        elapsed,
        echo,
        terminal_echo,
        pinned: server.pinned,
        bench,
    })
}

/// Starts a run of `cat` as `body` says, sends it `count` keystrokes (`key(i)` each, one POST
/// each, the next once the last came back) and times each from its POST to its echo.
async fn echoes(
    http: &reqwest::Client,
    base: &str,
    body: Value,
    count: usize,
    key: impl Fn(usize) -> String,
) -> anyhow::Result<Percentiles> {
    let id = start(http, base, body).await?;
    let (echoed, mut echoes) = mpsc::unbounded_channel::<Instant>();
    let viewer = tokio::spawn({
        let addr = base.trim_start_matches("http://").to_owned();
        let id = id.clone();
        async move {
            view(&addr, &id, move |event, _| {
                if event == "stdout" {
                    let _ = echoed.send(Instant::now());
                }
            })
            .await;
        }
    });
    let mut micros = Vec::with_capacity(count);
    let stdin = format!("{base}/exec/runs/{id}/stdin");
    for i in 0..count {
        let sent = Instant::now();
        http.post(&stdin)
            .bearer_auth(TOKEN)
            .json(&json!({ "data": key(i) }))
            .send()
            .await?
            .error_for_status()?;
        let back = tokio::time::timeout(Duration::from_secs(10), echoes.recv())
            .await
            .context("a keystroke never came back")?
            .context("the viewer stopped")?;
        micros.push(back.duration_since(sent).as_micros() as u64);
        // An echo may come in more than one event: the next key waits for a quiet stream.
        while echoes.try_recv().is_ok() {}
    }
    // A terminal ends `cat` with a new line then Ctrl-D; pipes by closing stdin.
    let end = json!({ "data": "\n\u{4}", "eof": true });
    http.post(&stdin).bearer_auth(TOKEN).json(&end).send().await?;
    viewer.await?;
    Ok(Percentiles::from_micros(micros))
}

async fn start(http: &reqwest::Client, base: &str, body: Value) -> anyhow::Result<String> {
    let created: Value = http
        .post(format!("{base}/exec/runs"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(created["id"].as_str().context("a run id")?.to_owned())
}

/// Reads run `id`'s stream to `exit`, handing each event's type and text to `seen`.
async fn view(addr: &str, id: &str, mut seen: impl FnMut(&str, &str)) {
    let stop = CancellationToken::new();
    let (connecting, connected) = (Semaphore::new(1), Connected::default());
    let path = format!("/exec/runs/{id}/events");
    let token = format!("Authorization: Bearer {TOKEN}\r\n");
    let ended = stop.clone();
    read_events(addr, &path, &token, &connecting, &connected, &stop, |events| {
        for event in events {
            if event.event == "exit" {
                ended.cancel();
            }
            let text: Value = serde_json::from_str(&event.data).unwrap_or_default();
            seen(&event.event, text["text"].as_str().unwrap_or(""));
        }
    })
    .await;
}
