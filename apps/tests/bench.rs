//! Smoke runs of the load generator's scenarios at small N: each completes and reports sane
//! figures (everything delivered, no errors). Not speed checks: those are the bench's own job.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sse-apps");

/// Runs `sse-apps <args>` to completion (a watchdog, not a timing assertion); returns stdout.
async fn bench(args: &[&str]) -> String {
    let run = Command::new(BIN).args(args).output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not finish"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The cells of the table rows (not the header or the rule) in Markdown output.
fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|line| {
            line.starts_with('|') && !line.starts_with("|---") && !line.contains("server CPU")
        })
        .map(|line| line.trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect()
}

#[tokio::test]
async fn fanout_delivers_everything_to_every_server_and_draws_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("fanout.svg");
    let chart_arg = chart.to_str().unwrap();
    let args = [
        "bench",
        "fanout",
        "--loads",
        "20x20,40x10",
        "--duration",
        "1s",
        "--no-pin",
        "--plot",
        chart_arg,
    ];
    let stdout = bench(&args).await;
    let rows = table_rows(&stdout);
    assert_eq!(rows.len(), 6, "two loads × three servers:\n{stdout}");
    for row in &rows {
        assert_eq!(row[2], "100.00%", "every event delivered: {row:?}");
        assert_eq!(row[3], "0", "no resync under steady load: {row:?}");
        let throughput: f64 = row[4].parse().unwrap();
        assert!(throughput > 0.0, "{row:?}");
        assert!(row[6].ends_with(" ms"), "a p99: {row:?}");
    }
    let servers: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(servers, ["ours", "limit", "naive", "ours", "limit", "naive"]);
    // Ours is given as ratios to both baselines; the baselines are not.
    assert!(rows[0][11].parse::<f64>().unwrap() > 0.0 && rows[0][12].parse::<f64>().unwrap() > 0.0);
    assert!(rows[1][11].is_empty() && rows[2][12].is_empty());

    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("p99 latency"), "an SVG chart");
    for label in ["ours at 20/s", "limit at 10/s", "naive at 20/s"] {
        assert!(svg.contains(label), "the legend names {label}");
    }
}

#[tokio::test]
async fn sampling_completes_tool_calls_both_ways() {
    let args = ["bench", "sampling", "--callers", "2", "--duration", "1s", "--no-pin"];
    let stdout = bench(&args).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "push and mrtr on ours, then mrtr on the limit: {stdout}");
    let runs =
        ["sampling push ours: 2 callers", "sampling mrtr ours: 2 callers", "sampling mrtr limit:"];
    for (line, era) in lines.iter().zip(runs) {
        assert!(line.starts_with(era) && line.contains(" 0 errors"), "{line}");
        let completed: u64 = line
            .split(" tool calls")
            .next()
            .and_then(|before| before.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a count of tool calls in {line}"));
        assert!(completed > 0, "{line}");
    }
}

#[tokio::test]
async fn sampling_across_two_instances_completes_every_call_both_ways() {
    use sse_core::testing::programs::{free_port, installed, redis_server};
    if !installed(&["redis-server"], "redis-server") {
        return;
    }
    let port = free_port();
    let _redis = redis_server(port, &["--save", "", "--appendonly", "no"]).await;
    let redis = format!("redis://127.0.0.1:{port}");
    let args = ["bench", "sampling", "--callers", "2", "--duration", "1s", "--no-pin"];
    let stdout = bench(&[&args[..], &["--redis", &redis]].concat()).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "push, then mrtr, on ours only (the limit is one instance): {stdout}"
    );
    // Every call crossed the instances: a push-era answer POSTed to the instance not holding the
    // session, an MRTR retry sent to the instance that did not ask.
    let eras =
        ["sampling push ours (two instances through Redis): 2 callers", "sampling mrtr ours (two"];
    for (line, era) in lines.iter().zip(eras) {
        assert!(line.starts_with(era) && line.contains(" 0 errors"), "{line}");
        assert!(!line.contains(" 0 tool calls"), "{line}");
    }
}

#[tokio::test]
async fn chat_behind_nginx_delivers_every_message_on_one_instance_and_on_two() {
    use sse_core::testing::programs::{free_port, installed, redis_server};
    if !installed(&["redis-server", "nginx"], "redis-server nginx-light") {
        return;
    }
    let port = free_port();
    let _redis = redis_server(port, &["--save", "", "--appendonly", "no"]).await;
    let redis = format!("redis://127.0.0.1:{port}");
    let args = ["bench", "chat", "--members", "20", "--rate", "20", "--duration", "1s", "--no-pin"];
    let stdout = bench(&[&args[..], &["--redis", &redis, "--nginx"]].concat()).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one instance, two, then the ratio: {stdout}");
    let setups = [
        "chat behind nginx: 20 members",
        "chat (two instances through Redis) behind nginx: 20 members",
    ];
    for (line, setup) in lines.iter().zip(setups) {
        assert!(line.starts_with(setup), "{line}");
        assert!(line.contains("delivered 100.00%") && line.contains("resyncs 0"), "{line}");
        assert!(!line.contains("sent 0,"), "{line}");
    }
    let ratio = lines[2].strip_prefix("chat: two instances' p99 ÷ one instance's: ").unwrap();
    assert!(ratio.parse::<f64>().unwrap() > 0.0, "{ratio}");
}

/// Field `n` after the command of `/proc/<pid>/stat` (1: parent, 2: process group).
fn stat_field(pid: u32, n: usize) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(n)?.parse().ok()
}

/// Every process in the process group `group`: nginx's master and its workers.
fn in_group(group: u32) -> Vec<u32> {
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok());
    pids.filter(|pid: &u32| stat_field(*pid, 2) == Some(group)).collect()
}

/// The children of `parent` whose command (`/proc/<pid>/comm`) is `command`.
fn children_named(parent: u32, command: &str) -> Vec<u32> {
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok());
    pids.filter(|pid: &u32| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        stat_field(*pid, 1) == Some(parent) && comm.trim() == command
    })
    .collect()
}

#[tokio::test]
async fn an_interrupted_bench_stops_its_servers_and_nginx_and_reports_nothing() {
    use sse_core::testing::programs::installed;
    if !installed(&["nginx"], "nginx-light") {
        return;
    }
    let args = [
        "bench",
        "chat",
        "--members",
        "5",
        "--rate",
        "5",
        "--duration",
        "60s",
        "--no-pin",
        "--nginx",
    ];
    let bench = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = bench.id().unwrap();
    // Nginx is the last thing started before the load: once it runs, the run is under way.
    let (nginx, servers) = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let nginx = children_named(pid, "nginx");
            if !nginx.is_empty() {
                return (nginx, children_named(pid, "sse-apps"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("nginx started");
    assert_eq!(servers.len(), 1, "the chat instance");
    // nginx is the leader of its own group: the master and, once it has forked them, its two
    // workers.
    let nginx: Vec<u32> = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let group = in_group(nginx[0]);
            if group.len() == 3 {
                return group;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("nginx's two workers started");

    let pid = rustix::process::Pid::from_raw(pid.try_into().unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), bench.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "an interrupted run fails: {stdout}");
    assert!(stdout.is_empty(), "nothing reported of a run cut short: {stdout}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    // Gone, or a zombie left for init to reap: not running either way. A SIGKILL sent as the
    // bench ended may still be on its way, hence the watchdog.
    let running = |child: &u32| {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, None | Some("Z"))
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while nginx.iter().chain(&servers).any(running) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("nginx and the chat instance stopped with the bench");
}

#[tokio::test]
async fn roundtrip_answers_every_request() {
    let args =
        ["bench", "roundtrip", "--sessions", "4", "--callers", "4", "--duration", "1s", "--no-pin"];
    let stdout = bench(&args).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "ours, the limit, and the ratio: {stdout}");
    for (line, server) in lines.iter().zip(["roundtrip  ours:", "roundtrip limit:"]) {
        assert!(line.starts_with(server) && line.contains(" 0 errors"), "{line}");
        assert!(line.contains(", load generator CPU "), "the load generator's own CPU: {line}");
        let completed: u64 = line
            .split(" round trips")
            .next()
            .and_then(|before| before.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a count of round trips in {line}"));
        assert!(completed > 0, "{line}");
        // Kept alive: one connection per caller and one per session's answers, however many
        // round trips (the streams were open before the count began).
        assert!(figure_before(line, " in all)") <= 8.0, "connections reused: {line}");
    }
    assert!(lines[2].starts_with("roundtrip ours ÷ limit: round trips/s "), "{}", lines[2]);
}

/// A report line's figure just before `unit`, e.g. the `2.000` of `2.000 connections accepted`.
fn figure_before(line: &str, unit: &str) -> f64 {
    line.split(unit)
        .next()
        .and_then(|before| before.rsplit([' ', '(']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a figure before {unit:?} in {line}"))
}

#[tokio::test]
async fn roundtrip_without_reuse_opens_a_connection_per_request() {
    let args = [
        "bench",
        "roundtrip",
        "--sessions",
        "2",
        "--callers",
        "2",
        "--duration",
        "1s",
        "--client-reuse",
        "never",
        "--no-pin",
    ];
    let stdout = bench(&args).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "ours, the limit, and the ratio: {stdout}");
    for line in &lines[..2] {
        assert!(
            line.contains("(a new connection per request)") && line.contains(" 0 errors"),
            "{line}"
        );
        assert!(figure_before(line, " round trips (") > 0.0, "{line}");
        assert!(figure_before(line, " µs server CPU per round trip") > 0.0, "{line}");
    }
    // Each server counts its accepts: a trigger and an answer each came on a connection of its
    // own (the counter's reads share one kept-alive connection, opened before the first).
    for line in &lines[..2] {
        let per_round_trip = figure_before(line, " connections accepted per round trip");
        let completed = figure_before(line, " round trips (");
        assert_eq!(figure_before(line, " in all)"), 2.0 * completed, "{line}");
        assert!((per_round_trip - 2.0).abs() < 1e-9, "{line}");
    }
}

/// Whether `go` runs here; in CI it must (.ci/run installs golang-go).
fn have_go() -> bool {
    let found =
        std::process::Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must have go (apt-get install golang-go)");
        eprintln!("NOTICE: skipping: go is not installed (apt-get install golang-go)");
    }
    found
}

/// The go target at one session for a second, with `extra` arguments: its lines against ours,
/// the Go original's server and the limit, each checked for a clean run, and the ratio line.
async fn go_harness_against_each(extra: &[&str]) -> ([String; 3], String) {
    let mut args =
        vec!["bench", "roundtrip", "--targets", "go", "--go-sessions", "1", "--duration", "1s"];
    args.extend_from_slice(extra);
    args.push("--no-pin");
    let stdout = bench(&args).await;
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let [ours, original, limit, ratio] = <[String; 4]>::try_from(lines)
        .unwrap_or_else(|_| panic!("a line per server, and the ratio: {stdout}"));
    for (line, server) in [(&ours, "ours"), (&original, "go original"), (&limit, "limit")] {
        let head = format!("roundtrip go harness → {server}: 1 sessions, 1 callers");
        assert!(line.starts_with(&head), "{line}");
        assert!(line.contains(" 0 errors"), "every trigger succeeded: {line}");
        assert!(figure_before(line, " round trips (") > 0.0, "{line}");
        assert!(figure_before(line, " µs server CPU per round trip") > 0.0, "{line}");
    }
    let ratio_head = "roundtrip go harness, 1 sessions, ours ÷ go original: round trips/s ";
    assert!(ratio.starts_with(ratio_head), "{ratio}");
    assert!(figure_before(&ratio, ", server CPU per round trip") > 0.0, "{ratio}");
    assert!(figure_before(&ratio, " (limit ÷ go original") > 0.0, "{ratio}");
    ([ours, original, limit], ratio)
}

#[tokio::test]
async fn the_go_harness_reuses_its_connections_on_ours_as_shipped_the_go_original_and_the_limit() {
    if !have_go() {
        return;
    }
    let (servers, ratio) = go_harness_against_each(&[]).await;
    // The responder's connection for its answers and the load's one (the stream was open before
    // the count began), however many round trips: a Go client that closed an answer unread and
    // dialled anew would make it one or more per round trip.
    for line in &servers {
        let per_round_trip = figure_before(line, " connections accepted per round trip");
        let accepted = figure_before(line, " in all)");
        assert!(per_round_trip < 0.1 && accepted <= 4.0, "the connections were reused: {line}");
    }
    assert!(!ratio.contains("per accepted connection"), "only without reuse: {ratio}");
}

#[tokio::test]
async fn without_reuse_the_go_harness_dials_for_every_request_on_each_server() {
    if !have_go() {
        return;
    }
    let (servers, ratio) = go_harness_against_each(&["--client-reuse", "never"]).await;
    // Each server counts its own accepts: a trigger and an answer each came on a connection of
    // their own (the counter's reads share one, opened before the first read).
    for line in &servers {
        let completed = figure_before(line, " round trips (");
        assert_eq!(figure_before(line, " in all)"), 2.0 * completed, "{line}");
    }
    assert!(figure_before(&ratio, " (ours ") > 0.0, "CPU per accepted connection: {ratio}");
    assert!(ratio.contains(" µs, go original ") && ratio.ends_with(" µs)"), "{ratio}");
}

#[tokio::test]
async fn without_go_the_go_target_is_skipped_with_a_notice_and_the_rest_runs() {
    let args = [
        "bench",
        "roundtrip",
        "--targets",
        "go,ours",
        "--sessions",
        "1",
        "--callers",
        "1",
        "--duration",
        "1s",
        "--no-pin",
    ];
    // A PATH with no `go` on it (the bench finds its own servers by its own path).
    let run = Command::new(BIN).args(args).env("PATH", "/nonexistent").output();
    let output = tokio::time::timeout(Duration::from_secs(120), run).await.unwrap().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("NOTICE: skipping the go target"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "ours alone: {stdout}");
    assert!(lines[0].starts_with("roundtrip  ours:") && lines[0].contains(" 0 errors"), "{stdout}");
}

#[tokio::test]
async fn roundtrip_at_a_rate_sends_what_was_due_and_no_more() {
    let args = [
        "bench",
        "roundtrip",
        "--sessions",
        "2",
        "--callers",
        "2",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--no-pin",
    ];
    let stdout = bench(&args).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "ours, the limit, and the ratio: {stdout}");
    for line in &lines[..2] {
        // 200 a second for a second is due, however late the server answers: each is sent.
        assert!(line.contains("2 callers offering 200/s for 1s"), "{line}");
        assert!(line.contains(": 200 round trips (") && line.contains(" 0 errors"), "{line}");
    }
    let refused = Command::new(BIN).args(["bench", "roundtrip", "--rate", "0"]).output();
    let refused = refused.await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "a rate of 0 is refused: {stderr}");
    assert!(stderr.contains("--rate"), "{stderr}");
}

#[tokio::test]
async fn idle_and_connect_open_every_connection_on_every_server() {
    let stdout = bench(&["bench", "idle", "--connections", "50", "--no-pin"]).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, server) in lines.iter().zip(["ours", "limit", "naive"]) {
        assert!(line.contains(server) && line.contains("50 connections"), "{line}");
        assert!(line.contains("KiB per connection") && line.ends_with(", 0 failed"), "{line}");
    }
    let args = ["bench", "connect", "--connections", "50", "--concurrency", "10", "--no-pin"];
    let stdout = bench(&args).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        assert!(line.contains("50 connections in") && line.contains(", 0 failed"), "{line}");
        assert!(line.contains(", server CPU ") && line.contains(", load generator CPU "), "{line}");
    }
}

#[tokio::test]
async fn flood_holds_its_idle_connections_and_every_probe_is_answered() {
    let args = ["bench", "flood", "--idle", "200", "--sources", "2", "--probes", "5", "--no-pin"];
    let stdout = bench(&args).await;
    let line = stdout.trim();
    assert!(
        line.starts_with("flood: 200 idle connections from 2 addresses held (0 failed"),
        "{line}"
    );
    assert!(line.contains(" over 5 probes (0 unanswered; before the flood: p50 "), "{line}");
}

#[tokio::test]
async fn bad_bench_arguments_get_a_clear_error() {
    let output =
        Command::new(BIN).args(["bench", "fanout", "--loads", "0x10"]).output().await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("above zero"));

    let no_sessions = ["bench", "roundtrip", "--targets", "go", "--go-sessions", "1,0"];
    let output = Command::new(BIN).args(no_sessions).output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--go-sessions"));
    let reuse = ["bench", "roundtrip", "--client-reuse", "sometimes"];
    let output = Command::new(BIN).args(reuse).output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--client-reuse"));

    let too_many = ["bench", "idle", "--connections", "100000000", "--no-pin"];
    let output = Command::new(BIN).args(too_many).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ulimit -n"), "says how to raise the limit: {stderr}");
}

#[tokio::test]
async fn a_short_soak_drives_every_app_without_an_error_and_reports_growth() {
    let args = [
        "bench",
        "soak",
        "--duration",
        "12s",
        "--warmup",
        "4s",
        "--sample-every",
        "2s",
        "--no-pin",
    ];
    let stdout = bench(&args).await;
    assert!(stdout.contains("\nerrors: 0\n"), "no errors:\n{stdout}");
    let done = stdout.lines().find_map(|line| line.strip_prefix("done: ")).unwrap();
    let mut kinds = vec![
        "chat posts",
        "chat deliveries",
        "chat reconnects",
        "bidi round trips",
        "sampling round trips",
        "dashboard events",
        "basic events",
    ];
    if sse_apps::exec::ExecConfig::checked(std::env::temp_dir()).sandbox.is_ok() {
        kinds.push("exec runs");
    } else {
        assert!(std::env::var_os("CI").is_none(), "CI must have bubblewrap");
        assert!(stdout.contains("skipped: exec runs"), "{stdout}");
    }
    for kind in kinds {
        let count: u64 = done
            .split(", ")
            .find_map(|part| part.strip_prefix(kind)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {kind} in {done}"));
        assert!(count > 0, "{kind} happened: {done}");
    }
    for measured in ["memory (settled): ", "descriptors (settled): "] {
        let line = stdout.lines().find(|line| line.starts_with(measured)).unwrap();
        assert!(line.contains("under load") && !line.contains("not sampled"), "{line}");
    }
}

/// A baseline started by hand: the address it printed, and the process (killed on drop).
async fn baseline(protocol: &str) -> (String, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let mut child = Command::new(BIN)
        .args(["bench-limit", protocol])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the baseline says where it listens")
        .unwrap()
        .unwrap();
    let addr = line.rsplit("http://").next().unwrap().to_owned();
    (addr, child)
}

#[tokio::test]
async fn the_baselines_refuse_what_is_not_a_request_and_go_on_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, mut child) = baseline("sampling").await;
    let bad: [&[u8]; 3] = [
        // A length that overflows where it is added to the head's.
        b"POST /sampling/mcp HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        b"POST /sampling/mcp HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",
        b"\x00\x01 not http\r\n\r\n",
    ];
    for request in bad {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        socket.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer));
        read.await.expect("the connection is closed").unwrap();
        assert!(
            answer.is_empty(),
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // A head that never ends is cut off at its cap, not buffered for ever.
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let endless = vec![b'A'; 64 * 1024];
    let mut sent = 0usize;
    while socket.write_all(&endless).await.is_ok() {
        sent += endless.len();
        assert!(sent <= 64 << 20, "still reading a head {sent} bytes long");
    }
    // And a real call still works.
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "classify_sentiment", "arguments": {"text": "x"}}});
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/sampling/mcp"))
        .json(&call)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_baseline_listens_on_loopback_only() {
    let output = Command::new(BIN)
        .args(["bench-limit", "sampling", "--addr", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
}

#[tokio::test]
async fn fanout_over_websocket_delivers_every_event_beside_ours() {
    let args = [
        "bench",
        "fanout",
        "--loads",
        "20x20",
        "--targets",
        "ours,ws",
        "--duration",
        "1s",
        "--no-pin",
    ];
    let stdout = bench(&args).await;
    let rows = table_rows(&stdout);
    let servers: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(servers, ["ours", "ws"], "{stdout}");
    for row in &rows {
        assert_eq!(row[2], "100.00%", "every event delivered: {row:?}");
        assert_eq!(row[3], "0", "no resync (for ws, no close for lagging): {row:?}");
        assert!(row[4].parse::<f64>().unwrap() > 0.0, "deliveries/s: {row:?}");
        assert!(row[6].ends_with(" ms"), "a p99: {row:?}");
    }
}

#[tokio::test]
async fn idle_and_connect_over_websocket_open_every_connection() {
    let args = ["bench", "idle", "--connections", "50", "--targets", "ws", "--no-pin"];
    let stdout = bench(&args).await;
    let line = stdout.trim();
    assert!(line.starts_with("idle    ws: 50 connections, server RSS "), "{line}");
    assert!(line.contains("KiB per connection") && line.ends_with(", 0 failed"), "{line}");
    let args = ["bench", "connect", "--connections", "50", "--targets", "ws", "--no-pin"];
    let stdout = bench(&args).await;
    let line = stdout.trim();
    assert!(
        line.starts_with("connect    ws: 50 connections in ") && line.contains(", 0 failed"),
        "{line}"
    );
}

#[tokio::test]
async fn roundtrip_over_websocket_answers_every_request_on_the_socket() {
    let args = [
        "bench",
        "roundtrip",
        "--targets",
        "ws",
        "--sessions",
        "4",
        "--callers",
        "4",
        "--duration",
        "1s",
        "--no-pin",
    ];
    let stdout = bench(&args).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the ws target alone, no ratio: {stdout}");
    let line = lines[0];
    assert!(line.starts_with("roundtrip    ws: 4 sessions, 4 callers for 1s"), "{line}");
    assert!(line.contains(" 0 errors") && figure_before(line, " round trips (") > 0.0, "{line}");
    assert!(figure_before(line, " µs server CPU per round trip") > 0.0, "{line}");
    // The sessions' sockets were open before the count began; only the callers' connections.
    assert!(figure_before(line, " in all)") <= 4.0, "connections reused: {line}");

    // Triggers on a connection each, at a rate: every one due is sent, and the answers ride the
    // sessions' sockets, so the server accepts exactly one connection per round trip.
    let args = [
        "bench",
        "roundtrip",
        "--targets",
        "ws",
        "--sessions",
        "2",
        "--callers",
        "2",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--client-reuse",
        "never",
        "--no-pin",
    ];
    let stdout = bench(&args).await;
    let line = stdout.trim();
    assert!(line.contains(": 200 round trips (") && line.contains(" 0 errors"), "{line}");
    assert!(line.contains(" 1.000 connections accepted per round trip (200 in all)"), "{line}");
}

/// A hidden server command started on a free port, with the bench's control channel; its
/// address, its stdin and its further output lines. Killed when dropped.
struct Started {
    addr: String,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
}

async fn start(args: &[&str]) -> Started {
    use tokio::io::AsyncBufReadExt;
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .env("SSE_APPS_BENCH_CONTROL", std::process::id().to_string())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let addr = first.split("listening on http://").nth(1).unwrap().trim().to_owned();
    Started { addr, stdin, lines, _child: child }
}

#[tokio::test]
async fn a_websocket_client_that_falls_behind_is_told_with_a_close() {
    use sse_apps::bench::ws_client::open;
    use sse_apps::bench::ws_scan::{Frame, FrameScanner};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut server = start(&["bench-target", "ws"]).await;
    let connecting = tokio::sync::Semaphore::new(1);
    let (mut socket, first) = open(&server.addr, "/events", &connecting).await.unwrap();
    // 3,000 events of 64 KiB while the client reads nothing: far more than the sockets' buffers
    // and the 1,024 events its connection may fall behind.
    server.stdin.write_all(b"publish 100000 65536 3000\n").await.unwrap();
    let done = async {
        loop {
            let line = server.lines.next_line().await.unwrap().unwrap();
            if line.starts_with("published") {
                return line;
            }
        }
    };
    let done = tokio::time::timeout(Duration::from_secs(60), done).await.unwrap();
    assert_eq!(done, "published 3000");

    let (mut texts, mut close, mut scanner) = (0u64, None, FrameScanner::default());
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = first;
    let read_to_the_end = async {
        loop {
            scanner.feed(&bytes, |frame| match frame {
                Frame::Text(_) => texts += 1,
                Frame::Close(code) => close = Some(code),
                Frame::Heartbeat | Frame::Unexpected => {}
            });
            let n = socket.read(&mut buffer).await.unwrap();
            if n == 0 || close.is_some() {
                return;
            }
            bytes = buffer[..n].to_vec();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_to_the_end).await.unwrap();
    assert_eq!(close, Some(Some(1013)), "closed for lagging after {texts} events");
    assert!(texts < 3000, "{texts} events before the close");
}

#[tokio::test]
async fn the_websocket_round_trip_server_refuses_bad_triggers_with_json() {
    let server = start(&["bench-ws-roundtrip"]).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    for (path, status) in [
        ("/trigger", 400),
        ("/trigger?client_id=x", 400),
        ("/trigger?client_id=nobody&message=m", 404),
        ("/trigger?client_id=%ZZ", 400),
    ] {
        let answer = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "{path}");
    }
    let answer = http.get(format!("{base}/trigger")).send().await.unwrap();
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    // Not a WebSocket handshake: refused, not served.
    let answer = http.get(format!("{base}/events?client_id=x")).send().await.unwrap();
    assert!(answer.status().is_client_error(), "{}", answer.status());
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.starts_with("sse_connections_accepted_total "), "{metrics}");
}

#[tokio::test]
async fn the_websocket_round_trip_fails_a_waiting_trigger_when_its_client_goes_away() {
    use sse_apps::bench::ws_client::open;
    use sse_apps::bench::ws_scan::{Frame, FrameScanner};
    use tokio::io::AsyncReadExt;

    let server = start(&["bench-ws-roundtrip"]).await;
    let connecting = tokio::sync::Semaphore::new(1);
    let (mut socket, first) =
        open(&server.addr, "/events?client_id=quiet", &connecting).await.unwrap();
    let url = format!("http://{}/trigger?client_id=quiet&message=hello", server.addr);
    let trigger = tokio::spawn(async move { reqwest::get(url).await.unwrap() });
    // The request reaches the client, which goes away without answering.
    let (mut scanner, mut request, mut bytes) = (FrameScanner::default(), None, first);
    let mut buffer = vec![0u8; 4096];
    let read_the_request = async {
        loop {
            scanner.feed(&bytes, |frame| {
                if let Frame::Text(data) = frame {
                    request = Some(String::from_utf8_lossy(data).into_owned());
                }
            });
            if request.is_some() {
                return;
            }
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the server closed before sending the request");
            bytes = buffer[..n].to_vec();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_the_request).await.unwrap();
    let request: serde_json::Value = serde_json::from_str(&request.unwrap()).unwrap();
    assert_eq!(request["message"], "hello", "{request}");
    drop(socket);
    let answer = tokio::time::timeout(Duration::from_secs(60), trigger).await.unwrap().unwrap();
    assert_eq!(answer.status().as_u16(), 404, "failed at once, not after the 30 s deadline");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}
