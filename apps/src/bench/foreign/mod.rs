//! `bench roundtrip --targets go`: a harness we did not write, against our `bidi-server`, against
//! a server written like the Go original's, and against the `limit` baseline, one after the
//! other in the same run. The limit shows what this machine can do for the same clients: a
//! target it misses is beyond the machine.
//!
//! The bench's own clients ([`super::http1`]) keep every connection and read every answer; real
//! clients do neither always. This target builds, from source in a scratch directory
//! ([`programs`]), small Go programs (standard library only, `go 1.19`) written the way the Go
//! original's programs are:
//!
//! - `responder.go`: S sessions, each reading its `GET /events?client_id=go-<i>` stream with
//!   `bufio` and answering every request with `http.Client.Do` on `POST /response`, closing the
//!   answer's body unread, as the original's `bidirectional_client` does. Net/http reuses a
//!   connection only when nothing of the answer was left unread, so any body there would make it
//!   dial anew for every answer;
//! - `load.go`: S goroutines, one per session, calling `GET /trigger` for a fixed time on one
//!   `net/http` client, printing the count and the percentiles of the round trips;
//! - `server.go`: the server, as the original's `bidirectional_server` is written (`net/http`, a
//!   map of client channels under a mutex, `http.Flusher`), on the same wire as ours; with
//!   `control.go`, which gives the bench what it reads of ours: its CPU time from its own
//!   `getrusage` over the control line ([`super::control`]) and its accepted connections as
//!   `sse_connections_accepted_total` on `/metrics` ([`super::accepted`]).
//!
//! [`harness`] runs the responder and the load against one server. The servers are pinned as
//! every target's server is, to core 0, and the Go clients run on the load generator's core
//! (they inherit its pinning); ours is started as it ships (no `--max-streams-per-client 0`,
//! unlike the bench's other targets). Each server is stopped and reaped before the next starts,
//! so no server's exit lands in another's measurement. Without `go` on the `PATH` the target is
//! skipped with a notice, and the rest of the bench runs.

mod harness;
mod programs;

use super::roundtrip::{ClientReuse, RoundtripBench, RoundtripReport, RoundtripServer};
use super::server;
use programs::Programs;

/// The Go harness's runs against each server, at one number of sessions.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Against `sse-apps bidi-server`.
    pub ours: RoundtripReport,
    /// Against the server written like the Go original's.
    pub original: RoundtripReport,
    /// Against the limit baseline ([`super::targets::limit_roundtrip`]).
    pub limit: RoundtripReport,
}

/// Runs `bench` against each server; `None` when `go` is not installed.
pub async fn run(bench: RoundtripBench) -> anyhow::Result<Option<Comparison>> {
    if !programs::go_installed().await {
        eprintln!(
            "NOTICE: skipping the go target: `go` is not installed (apt-get install golang-go)"
        );
        return Ok(None);
    }
    anyhow::ensure!(bench.sessions > 0, "need at least one session");
    let programs = Programs::build().await?;

    let mut server = server::launch_as_shipped(&["bidi-server"], bench.pin).await?;
    let ours = harness::drive(&programs, &mut server, RoundtripServer::Ours, &bench).await;
    server.stop().await;
    let mut server = server::launch_foreign(&programs.server, bench.pin).await?;
    let original =
        harness::drive(&programs, &mut server, RoundtripServer::GoOriginal, &bench).await;
    server.stop().await;
    let mut server = server::launch(&["bench-limit", "roundtrip"], bench.pin).await?;
    let limit = harness::drive(&programs, &mut server, RoundtripServer::Limit, &bench).await;
    server.stop().await;
    Ok(Some(Comparison { ours: ours?, original: original?, limit: limit? }))
}

impl Comparison {
    /// Every line: one per server, then [`Comparison::ratio_line`].
    pub fn lines(&self) -> [String; 4] {
        [self.ours.line(), self.original.line(), self.limit.line(), self.ratio_line()]
    }

    /// Ours beside the original: the rate, the CPU per round trip, and, when every request came
    /// on a connection of its own, the CPU per accepted connection. Beside each CPU ratio, the
    /// limit's: the least a server spends here for the same clients.
    pub fn ratio_line(&self) -> String {
        let (ours, original, limit) = (&self.ours, &self.original, &self.limit);
        let share = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let per_trip =
            |report: &RoundtripReport| report.cpu_us as f64 / report.completed.max(1) as f64;
        let mut line = format!(
            "roundtrip go harness, {} sessions, ours ÷ go original: round trips/s {:.2}, server \
             CPU per round trip {:.2} (limit ÷ go original {:.2})",
            ours.bench.sessions,
            share(ours.per_second, original.per_second),
            share(per_trip(ours), per_trip(original)),
            share(per_trip(limit), per_trip(original)),
        );
        if ours.bench.reuse == ClientReuse::Never {
            let per_connection =
                |report: &RoundtripReport| report.cpu_us as f64 / report.accepted.max(1) as f64;
            line.push_str(&format!(
                ", server CPU per accepted connection {:.2} (ours {:.0} µs, go original {:.0} µs, \
                 limit {:.0} µs)",
                share(per_connection(ours), per_connection(original)),
                per_connection(ours),
                per_connection(original),
                per_connection(limit),
            ));
        }
        line
    }
}
