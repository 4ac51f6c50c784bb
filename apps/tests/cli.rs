//! The binary as people run it: `--help`, start-up, signals, the learning path end to end.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::process::Stdio;
use std::time::Duration;

use sse_apps::basic::BasicConfig;
use sse_core::testing::within;
use support::{Stream, spawn_app};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

const BIN: &str = env!("CARGO_BIN_EXE_sse-apps");

/// Starts a server subcommand on an ephemeral port; returns it and its base URL.
async fn start_server(args: &[&str]) -> (Child, String) {
    start_server_at(args, "127.0.0.1:0").await
}

/// Starts a server subcommand on `addr`; returns it and its base URL.
async fn start_server_at(args: &[&str], addr: &str) -> (Child, String) {
    let mut command = support::binary();
    command.args(args).args(["--addr", addr]).stderr(Stdio::null());
    support::started(command).await
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status =
        std::process::Command::new("kill").args(["-s", name, &pid]).status().expect("kill runs");
    assert!(status.success());
}

/// Every command and the flags its `--help` must show (its own, or for `bench` its scenarios).
const COMMANDS: &[(&str, &[&str])] = &[
    ("chat", &["--addr", "--token", "--token-file", "--data-dir", "SSE_APPS_ADDR"]),
    ("exec", &["--sandbox", "--no-cgroup", "--run-timeout", "--max-runs", "--addr"]),
    ("sampling", &["--deadline", "--no-auth", "--addr"]),
    (
        "sampling-client",
        &["--server", "--transport", "--provider", "--approve", "--per-minute", "call"],
    ),
    ("dashboard", &["--interval", "--alert-thresholds", "--alert", "--allow-control-all"]),
    ("basic-server", &["--count", "--interval", "--addr"]),
    ("basic-client", &["--url", "--last-event-id", "--token"]),
    ("bidi-server", &["--timeout", "--addr"]),
    ("bidi-client", &["--server", "--client-id", "--protocol", "--work"]),
    ("bench", &["fanout", "roundtrip", "idle", "flood", "connect", "chat", "exec", "soak"]),
    ("trigger", &["--client-id", "--message", "--count", "--concurrency"]),
    // Hidden from the list: `bench` starts them.
    ("bench-target", &["<TARGET>", "--addr"]),
    ("bench-flood-holder", &["--server", "--idle", "--source"]),
    ("bench-limit", &["<PROTOCOL>", "--addr"]),
    ("bench-ws-roundtrip", &["--addr"]),
];

/// Every scenario of `bench` and the flags its `--help` must show.
const BENCH_SCENARIOS: &[(&str, &[&str])] = &[
    ("fanout", &["--loads", "--targets", "--payload", "--plot", "--no-pin"]),
    (
        "roundtrip",
        &["--sessions", "--callers", "--rate", "--targets", "--client-reuse", "--go-sessions"],
    ),
    ("sampling", &["--callers", "--eras", "--targets", "--duration", "--redis", "--no-pin"]),
    ("idle", &["--connections", "--targets"]),
    ("flood", &["--idle", "--sources", "--probes"]),
    ("connect", &["--connections", "--concurrency"]),
    ("chat", &["--members", "--rate", "--redis"]),
    ("exec", &["--mib", "--keystrokes"]),
    ("soak", &["--duration", "--warmup", "--sample-every"]),
    ("dashboard", &["--viewers", "--interval", "--window"]),
];

/// `args --help`'s output, which must succeed.
async fn help_of(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).arg("--help").output().await.unwrap();
    assert!(output.status.success(), "{args:?} --help exits with {}", output.status);
    String::from_utf8(output.stdout).unwrap()
}

/// The command names a `--help` lists under "Commands:" (clap's own `help` left out).
fn listed_commands(help: &str) -> Vec<String> {
    let section = help.split("Commands:\n").nth(1).expect("a Commands: section");
    section
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn help_lists_every_program_and_each_has_its_own() {
    let help = help_of(&[]).await;
    for flag in
        ["--addr", "--token", "--data-dir", "SSE_APPS_ADDR", "SSE_APPS_TOKEN", "SSE_APPS_DATA_DIR"]
    {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    // Every command clap lists is in the table (the hidden ones are there besides).
    let known: Vec<&str> = COMMANDS.iter().map(|(name, _)| *name).collect();
    for listed in listed_commands(&help) {
        assert!(known.contains(&listed.as_str()), "--help lists {listed}, which this test lacks");
    }
    for (command, flags) in COMMANDS {
        assert!(help.contains(command) || command.starts_with("bench-"), "--help lacks {command}");
        let own = help_of(&[command]).await;
        for flag in *flags {
            assert!(own.contains(flag), "{command} --help lacks {flag}:\n{own}");
        }
    }
    let bench = help_of(&["bench"]).await;
    let scenarios: Vec<&str> = BENCH_SCENARIOS.iter().map(|(name, _)| *name).collect();
    assert_eq!(listed_commands(&bench), scenarios, "bench --help lists every scenario");
    for (scenario, flags) in BENCH_SCENARIOS {
        let own = help_of(&["bench", scenario]).await;
        for flag in *flags {
            assert!(own.contains(flag), "bench {scenario} --help lacks {flag}:\n{own}");
        }
    }
}

#[tokio::test]
async fn bad_flags_and_a_busy_port_fail_clearly() {
    let bad = Command::new(BIN).args(["basic-server", "--count", "many"]).output().await.unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--count"));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let output = Command::new(BIN).args(["bidi-server", "--addr", &addr]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"));
}

#[tokio::test]
async fn sigterm_and_sigint_end_open_streams_and_the_process() {
    for (command, path, name) in
        [("basic-server", "/events", "TERM"), ("bidi-server", "/events?client_id=x", "INT")]
    {
        let extra: &[&str] =
            if command == "basic-server" { &["--count", "0", "--interval", "1h"] } else { &[] };
        let (mut child, base) = start_server(&[&[command], extra].concat()).await;
        assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().status(), 200);
        let mut stream = Stream::open(&format!("{base}{path}")).await;
        within("first event", stream.next()).await.expect("an event");
        signal(&child, name);
        assert!(
            within("the stream to end", stream.next()).await.is_none(),
            "{command}: stream ended"
        );
        let status = within("the process to exit", child.wait()).await.unwrap();
        assert!(status.success(), "{command} exited with {status}");
    }
}

#[tokio::test]
async fn basic_client_prints_every_event_and_stops_on_204() {
    let app = spawn_app(|core| {
        sse_apps::basic_server(core, BasicConfig { count: 3, interval: Duration::from_millis(5) })
    })
    .await;
    let url = format!("{}/events", app.base);
    let output =
        within("basic-client", Command::new(BIN).args(["basic-client", "--url", &url]).output())
            .await
            .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for i in 1..=3 {
        assert!(stdout.contains(&format!("[id {i}] message: Event {i} at ")), "{stdout}");
    }
    assert!(stdout.contains("204"), "{stdout}");
}

/// Reads the child's log until a line contains `needle`.
async fn await_log(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) {
    within(needle, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return;
            }
        }
        panic!("the log ended before {needle:?}");
    })
    .await;
}

#[tokio::test]
async fn bidi_server_client_and_trigger_round_trip_as_separate_programs() {
    let (_server, base) = start_server(&["bidi-server"]).await;
    for protocol in ["compat", "native"] {
        let client_id = format!("demo-{protocol}");
        let mut client = Command::new(BIN)
            .args([
                "bidi-client",
                "--server",
                &base,
                "--client-id",
                &client_id,
                "--protocol",
                protocol,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut log = BufReader::new(client.stderr.take().unwrap()).lines();
        await_log(&mut log, "connected").await;
        let args = [
            "trigger",
            "--server",
            &base,
            "--client-id",
            &client_id,
            "--message",
            "hello world",
            "--count",
            "20",
            "--concurrency",
            "4",
        ];
        let output = within("trigger", Command::new(BIN).args(args).output()).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.contains("20 requests, 0 errors"), "{stdout}");
        assert!(stdout.contains("'hello world': 11 characters, 2 words."), "{stdout}");
    }
    let unknown = ["trigger", "--server", &base, "--client-id", "nobody", "--message", "x"];
    let output = Command::new(BIN).args(unknown).output().await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("404"));
}

#[tokio::test]
async fn ctrl_c_stops_trigger_and_the_server_tells_the_client_its_request_is_cancelled() {
    let (_server, base) = start_server(&["bidi-server"]).await;
    // A native worker that never answers: the request waits for it.
    let mut worker = support::Stream::open(&format!("{base}/rpc/events?client_id=silent")).await;
    let mut trigger = Command::new(BIN)
        .args(["trigger", "--server", &base, "--client-id", "silent", "--message", "x"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let request = within("the request", async {
        loop {
            let event = worker.next().await.expect("the worker's stream stays open");
            if event.event == "request" {
                return event;
            }
        }
    })
    .await;
    let request: serde_json::Value = serde_json::from_str(&request.data).unwrap();
    signal(&trigger, "INT");
    let status = within("trigger after Ctrl-C", trigger.wait()).await.unwrap();
    assert_eq!(status.code(), Some(130));
    let mut said = String::new();
    trigger.stderr.take().unwrap().read_to_string(&mut said).await.unwrap();
    assert!(said.contains("interrupted"), "{said}");
    // The server saw the caller go, and says so to the client.
    let cancelled = within("the cancellation notice", async {
        loop {
            let event = worker.next().await.expect("the worker's stream stays open");
            if event.event == "notification" && event.data.contains("notifications/cancelled") {
                return event;
            }
        }
    })
    .await;
    let note: serde_json::Value = serde_json::from_str(&cancelled.data).unwrap();
    assert_eq!(note["params"]["requestId"], request["id"], "{note}");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let (_server, base) = start_server(&["bidi-server", "--rate-limit", "1"]).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = http.get(format!("{base}/")).send().await.unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "a burst of two, then refused");
    assert_eq!(
        http.get(format!("{base}/healthz")).send().await.unwrap().status(),
        200,
        "health is never limited"
    );
}

#[tokio::test]
async fn past_max_sessions_new_clients_get_503_and_known_ones_come_back() {
    let (_server, base) = start_server(&["bidi-server", "--max-sessions", "1"]).await;
    let mut first = Stream::open(&format!("{base}/events?client_id=first")).await;
    within("the greeting", first.next()).await.unwrap();

    let refused = reqwest::get(format!("{base}/events?client_id=second")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "30");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_sessions", "{body}");

    // The session that exists is found by its name, cap or no cap.
    drop(first);
    let mut again = Stream::open(&format!("{base}/events?client_id=first")).await;
    let greeting = within("the greeting again", again.next()).await.unwrap();
    assert!(greeting.data.contains("first"), "{}", greeting.data);

    // MCP's initialize is refused the same way, as a JSON-RPC error for its request.
    let (_sampling, base) = start_server(&["sampling", "--no-auth", "--max-sessions", "0"]).await;
    let (_full, full) = start_server(&["sampling", "--no-auth", "--max-sessions", "1"]).await;
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}});
    let http = reqwest::Client::new();
    let post = |base: &str| {
        http.post(format!("{base}/sampling/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(post(&base).await.unwrap().status(), 200, "0 is no cap");
    }
    assert_eq!(post(&full).await.unwrap().status(), 200);
    let refused = post(&full).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!((body["id"].as_i64(), body["error"]["code"].as_i64()), (Some(7), Some(-32000)));
}

#[tokio::test]
async fn a_request_pending_at_kill_9_fails_clearly_and_its_late_answer_is_refused() {
    let (mut server, base) = start_server(&["bidi-server"]).await;
    let mut stream = Stream::open(&format!("{base}/events?client_id=worker")).await;
    let greeting = within("the greeting", stream.next()).await.unwrap();
    assert!(greeting.data.contains("client_id"), "{}", greeting.data);

    // A caller waits on /trigger; the worker sees the request but never answers it.
    let trigger = format!("{base}/trigger?client_id=worker&message=hello");
    let caller = tokio::spawn(async move { reqwest::get(trigger).await });
    let request = within("the request", stream.next()).await.unwrap();
    let id = serde_json::from_str::<serde_json::Value>(&request.data).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    signal(&server, "KILL");
    within("the kill", server.wait()).await.unwrap();
    let outcome = within("the caller", caller).await.unwrap();
    let error = outcome.expect_err("the caller must not get an answer from a dead server");
    assert!(error.is_request() || error.is_connect(), "a transport error: {error}");

    // Restarted on the same port: the answer that comes late is refused with a JSON error.
    let addr = base.trim_start_matches("http://").to_owned();
    let (_server, base) = start_server_at(&["bidi-server"], &addr).await;
    let http = reqwest::Client::new();
    let late = serde_json::json!({ "id": id, "result": "too late" });
    let post = |http: &reqwest::Client| {
        http.post(format!("{base}/response")).header("Client-ID", "worker").json(&late).send()
    };
    let answer = post(&http).await.unwrap();
    assert_eq!(answer.status(), 404, "the session is gone");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_client");

    // Even once the worker is back under the same name, the old request id means nothing.
    let mut back = Stream::open(&format!("{base}/events?client_id=worker")).await;
    within("the greeting", back.next()).await.unwrap();
    let answer = post(&http).await.unwrap();
    assert_eq!(answer.status(), 404, "an id from before the restart is unknown");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampling_request_pending_at_kill_9_fails_clearly_and_its_late_answer_is_refused() {
    let (mut server, base) = start_server(&["sampling", "--no-auth"]).await;
    let http = reqwest::Client::new();
    let mcp = format!("{base}/sampling/mcp");
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
                   "clientInfo": {"name": "killed", "version": "1"}}});
    let response = http
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let post = |body: serde_json::Value| {
        http.post(&mcp)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
    };
    let initialized =
        post(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(initialized.await.unwrap().status(), 202);

    // A tool call waits on the client's model: its sampling request comes down the call's stream.
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "summarize", "arguments": {"text": "a story"}}});
    let mut tool = support::Stream::from_response(post(call).await.unwrap());
    let asked = loop {
        let event = within("the sampling request", tool.next()).await.unwrap();
        let message: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        if message["method"] == "sampling/createMessage" {
            break message;
        }
    };

    signal(&server, "KILL");
    within("the kill", server.wait()).await.unwrap();
    // The caller's stream ends without a result: never a made-up answer.
    while let Some(event) = within("the call's stream to end", tool.next()).await {
        let message: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
        assert!(message.get("result").is_none(), "a result from a dead server: {message}");
    }

    // Restarted on the same port: the late answer names a session that is gone, 404 as MCP says.
    let addr = base.trim_start_matches("http://").to_owned();
    let (_server, _) = start_server_at(&["sampling", "--no-auth"], &addr).await;
    let answer = serde_json::json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "too late"}, "model": "m"}});
    let late = post(answer).await.unwrap();
    assert_eq!(late.status(), 404, "the session is gone");
    let body: serde_json::Value = late.json().await.unwrap();
    assert!(body["error"].is_object(), "a JSON error: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_chat_message_survives_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let (mut server, base) = start_server(&["chat", "--data-dir", &dir]).await;
    let http = reqwest::Client::new();
    let joined: serde_json::Value = http
        .post(format!("{base}/chat/rooms/durable/join"))
        .json(&serde_json::json!({"nick": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = joined["token"].as_str().unwrap().to_owned();
    // Posts race the kill: whatever was acknowledged must be there afterwards.
    let (acked_send, mut acked) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let posting = tokio::spawn({
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            for i in 0.. {
                let body =
                    serde_json::json!({"text": format!("m{i}"), "client_msg_id": format!("k{i}")});
                let sent = http
                    .post(format!("{base}/chat/rooms/durable/messages"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 201 => {
                        let message: serde_json::Value = response.json().await.unwrap_or_default();
                        if let Some(id) = message["id"].as_u64() {
                            let _ = acked_send.send(id);
                        }
                    }
                    Ok(response) if response.status() == 429 => tokio::task::yield_now().await,
                    _ => return,
                }
            }
        }
    });
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 15 {
        acknowledged.push(within("acknowledgements", acked.recv()).await.unwrap());
    }
    signal(&server, "KILL");
    within("the kill", server.wait()).await.unwrap();
    within("the poster to stop", posting).await.unwrap();
    while let Ok(id) = acked.try_recv() {
        acknowledged.push(id);
    }

    let (_restarted, base) = start_server(&["chat", "--data-dir", &dir]).await;
    let history: serde_json::Value =
        reqwest::get(format!("{base}/chat/rooms/durable/messages?limit=200"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let stored: Vec<u64> =
        history["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged message {id} was lost");
    }
}

/// Whether any process on this machine has `marker` in its command line.
fn a_process_has(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|line| line.windows(marker.len()).any(|w| w == marker.as_bytes()))
    })
}

/// Whether exec's tests can run: bubblewrap is there (CI must have it; elsewhere they skip).
fn has_bubblewrap() -> bool {
    let checked = sse_apps::exec::ExecConfig::checked(std::env::temp_dir());
    let Err(why) = checked.sandbox else { return true };
    assert!(std::env::var_os("CI").is_none(), "CI must have bubblewrap: {why}");
    eprintln!("NOTICE: skipping: {why}");
    false
}

/// Starts a sh run with `code` on the exec server at `base`; its id and its event stream.
async fn start_run(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    code: &str,
) -> (String, support::Stream) {
    let started: serde_json::Value = http
        .post(format!("{base}/exec/runs"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "language": "sh", "code": code }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    let events = http.get(format!("{base}/exec/runs/{id}/events")).bearer_auth(token);
    (id, support::Stream::open_with(events).await)
}

#[tokio::test]
async fn a_descriptor_the_server_inherited_never_reaches_a_run() {
    if !has_bubblewrap() {
        return;
    }
    // A shell opens descriptor 7 without close-on-exec (as a careless parent would) and
    // becomes the server: the server holds it, and must not hand it on.
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let mut command = Command::new("bash");
    command
        .args(["-c", "exec 7</etc/hostname; exec \"$0\" \"$@\"", BIN])
        .args(["exec", "--data-dir", &dir, "--token", "fd-token", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let (_server, base) = support::started(command).await;
    let http = reqwest::Client::new();
    let code = "if [ -e /proc/self/fd/7 ]; then echo fd7-open; else echo fd7-closed; fi";
    let (_, mut output) = start_run(&http, &base, "fd-token", code).await;
    let mut said = String::new();
    while let Some(event) = within("the run's events", output.next()).await {
        if event.event == "exit" {
            break;
        }
        said.push_str(&event.data);
    }
    assert!(said.contains("fd7-closed"), "the run saw the server's descriptor: {said}");
}

/// Reads a server's stderr until a line containing `needle`; every line read so far.
async fn stderr_until(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
    let mut seen = String::new();
    within(needle, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return;
            }
        }
        panic!("stderr ended before {needle:?}: {seen}");
    })
    .await;
    seen
}

#[tokio::test]
async fn readyz_names_the_chat_database_once_its_file_is_gone() {
    let data = tempfile::tempdir().unwrap();
    let mut command = support::binary();
    command
        .args(["chat", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::null());
    let (_server, base) = support::started(command).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    std::fs::remove_file(data.path().join("chat.sqlite3")).unwrap();
    let not = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(not.status(), 503);
    let body: serde_json::Value = not.json().await.unwrap();
    assert_eq!(body["not_ready"][0]["name"], "chat_database", "{body}");
    assert!(body["not_ready"][0]["error"].as_str().unwrap().contains("is gone"), "{body}");
}

#[tokio::test]
async fn a_server_whose_stderr_was_closed_still_serves_and_stops_on_sigterm() {
    // As after `sse-apps ... 2>&1 | head -2`: whoever read its output has gone.
    let mut command = support::binary();
    command.args(["bidi-server", "--addr", "127.0.0.1:0"]).stderr(Stdio::piped());
    let (mut server, base) = support::started(command).await;
    drop(server.stderr.take());
    // Logged at info as it connects: the log line cannot be written, the stream opens all the same.
    let mut stream = Stream::open(&format!("{base}/events?client_id=unheard")).await;
    let hello = within("the greeting", stream.next()).await.unwrap();
    assert!(hello.data.contains("unheard"), "{}", hello.data);
    signal(&server, "TERM");
    let status = within("the server stops on SIGTERM", server.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn log_lines_are_json_objects_with_log_format_json() {
    let data = tempfile::tempdir().unwrap();
    let mut command = support::binary();
    command
        .args(["chat", "--log-format", "json", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::piped());
    let (mut server, base) = support::started(command).await;
    // A bad request is logged (at info, with its status) as the server answers it.
    let refused = reqwest::Client::new()
        .post(format!("{base}/chat/rooms/lobby/messages"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error());
    signal(&server, "TERM");
    within("the server stops", server.wait()).await.unwrap();
    let mut said = String::new();
    server.stderr.take().unwrap().read_to_string(&mut said).await.unwrap();
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{said}");
    for line in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["timestamp"].is_string() && parsed["level"].is_string(), "{line}");
        assert!(parsed["fields"]["message"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn files_planted_where_the_probe_once_ran_steer_nothing() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !has_bubblewrap() {
        return;
    }
    // A local user plants, for the coming pids, what the old probe path would meet: a symlink
    // to a root-owned 0600 file (whose owner the old probe changed) and 0000 directories
    // (which made the old probe fall back to `unshare` without a word).
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("secret");
    std::fs::write(&victim, "root only").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let last_pid: u32 =
        std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").unwrap().trim().parse().unwrap();
    let mut plants = Vec::new();
    for pid in last_pid + 1..last_pid + 400 {
        for probe in 0..2 {
            let path = std::env::temp_dir().join(format!("sse-apps-probe-{pid}-{probe}"));
            let planted = if pid % 2 == 0 {
                std::os::unix::fs::symlink(&victim, &path)
            } else {
                std::fs::create_dir(&path).and_then(|()| {
                    std::fs::set_permissions(&path, PermissionsExt::from_mode(0o000))
                })
            };
            if planted.is_ok() {
                plants.push(path);
            }
        }
    }
    let data = tempfile::tempdir().unwrap();
    let mut command = support::binary();
    command
        .args(["exec", "--addr", "127.0.0.1:0", "--data-dir", data.path().to_str().unwrap()])
        .env("SSE_APPS_TOKEN", "probe-token")
        .stderr(Stdio::piped());
    let (mut server, base) = support::started(command).await;
    let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
    let said = stderr_until(&mut stderr, "runs start in").await;
    for path in plants {
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir(&path));
    }
    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 0, 0o600), "the victim changed");
    assert!(said.contains("runs start in bubblewrap, cgroup"), "{said}");
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sse_exec_sandbox_info{isolation=\"bubblewrap\""), "{metrics}");

    let http = reqwest::Client::new();
    let (_, mut output) =
        start_run(&http, &base, "probe-token", "cat /etc/passwd || echo none").await;
    let mut seen = String::new();
    while let Some(event) = within("the run's events", output.next()).await {
        if event.event == "exit" {
            break;
        }
        seen.push_str(&event.data);
    }
    assert!(seen.contains("none") && !seen.contains("root:"), "the host's files: {seen}");
}

#[tokio::test]
async fn a_sandbox_that_does_not_work_is_never_weakened_silently() {
    if !has_bubblewrap() {
        return;
    }
    // A machine as a plain user in a container sees it: no cgroup to manage, and no user
    // namespaces (an outer bubblewrap that disables them, running the server as nobody).
    let jail = |args: &[&str]| {
        let mut command = Command::new("bwrap");
        command
            .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"])
            .args(["--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534"])
            // The server inside goes with the bwrap that `kill_on_drop` kills.
            .arg("--die-with-parent")
            .args(["--", BIN, "exec", "--addr", "127.0.0.1:0", "--data-dir", "/tmp/data"])
            .args(args)
            .env("SSE_APPS_TOKEN", "jail-token")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    };
    let refused = |args: &'static [&'static str]| async move {
        let output = within("a refused start", jail(args).output()).await.unwrap();
        assert!(!output.status.success(), "started with {args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let said = refused(&[]).await;
    assert!(said.contains("no cgroup can be made") && said.contains("--no-cgroup"), "{said}");
    let said = refused(&["--no-cgroup"]).await;
    assert!(
        said.contains("cannot start in bubblewrap") && said.contains("--sandbox unshare"),
        "{said}"
    );
    let said = refused(&["--no-cgroup", "--sandbox", "unshare"]).await;
    assert!(said.contains("cannot start in the unshare sandbox"), "{said}");

    // Asked for by name, the weaker kind starts, and says so.
    let mut command = jail(&["--no-cgroup", "--no-sandbox"]);
    command.stderr(Stdio::piped());
    let (mut server, _) = support::started(command).await;
    let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
    let said = stderr_until(&mut stderr, "weaker sandbox than bubblewrap (none)").await;
    assert!(said.contains("runs start in none, no cgroup"), "{said}");
    assert!(said.contains("WARN") && said.contains("no cgroup (--no-cgroup)"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_run_cut_by_kill_9_is_reported_interrupted_after_the_restart() {
    if !has_bubblewrap() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let args = ["exec", "--data-dir", &dir, "--token", "exec-kill-token"];
    let (mut server, base) = start_server(&args).await;
    let http = reqwest::Client::new();
    let marker = format!("interrupted-{}-{}", std::process::id(), line!());
    let code = format!("echo {marker}; exec sleep 600 # {marker}");
    let (id, mut output) = start_run(&http, &base, "exec-kill-token", &code).await;
    let first = within("the run's first output", output.next()).await.unwrap();
    assert!(first.data.contains(&marker), "the run is going: {}", first.data);

    signal(&server, "KILL");
    within("the kill", server.wait()).await.unwrap();
    // The sandbox dies with the server (bubblewrap's --die-with-parent), its program with it.
    support::eventually("the run's processes to end", || !a_process_has(&marker)).await;

    let (_restarted, base) = start_server(&args).await;
    let listed: serde_json::Value = http
        .get(format!("{base}/exec/runs"))
        .bearer_auth("exec-kill-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = &listed["runs"][0];
    assert_eq!(run["id"], id.as_str(), "{listed}");
    assert_eq!(run["state"], "finished");
    assert_eq!(run["exit"]["reason"], "interrupted", "{run}");
    assert_eq!(run["exit"]["output_kept"], false);

    // Its stream says so and ends; its controls refuse with 409.
    let mut stream = support::Stream::open_with(
        http.get(format!("{base}/exec/runs/{id}/events")).bearer_auth("exec-kill-token"),
    )
    .await;
    let exit = within("the exit event", stream.next()).await.unwrap();
    assert_eq!(exit.event, "exit");
    assert!(exit.data.contains("\"interrupted\""), "{}", exit.data);
    assert!(within("the stream's end", stream.next()).await.is_none(), "nothing after exit");
    for (path, body) in [
        ("stdin", serde_json::json!({ "data": "x" })),
        ("signal", serde_json::json!({ "signal": "kill" })),
    ] {
        let answer = http
            .post(format!("{base}/exec/runs/{id}/{path}"))
            .bearer_auth("exec-kill-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 409, "{path} to an interrupted run");
    }
    assert!(
        !data.path().join("exec").join(&id).exists(),
        "the interrupted run's scratch directory is cleaned up"
    );
}

#[tokio::test]
async fn the_chat_bench_runs_and_delivers_everything_at_a_small_load() {
    let args = ["bench", "chat", "--members", "20", "--rate", "20", "--duration", "1s", "--no-pin"];
    let output = within("the bench", Command::new(BIN).args(args).output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("delivered 100.00%") && stdout.contains("resyncs 0"), "{stdout}");
}

#[tokio::test]
async fn the_dashboard_bench_samples_nothing_without_viewers_and_everything_with_them() {
    let args = [
        "bench",
        "dashboard",
        "--viewers",
        "1,5",
        "--interval",
        "200ms",
        "--window",
        "1s",
        "--no-pin",
    ];
    let output = within("the bench", Command::new(BIN).args(args).output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].contains("0 viewers") && lines[0].contains(" 0 ticks"), "{stdout}");
    for line in &lines[1..] {
        assert!(!line.contains(" 0 ticks") && line.contains("server CPU"), "{stdout}");
    }
}

#[tokio::test]
async fn the_dashboard_makes_up_a_token_when_given_none_and_refuses_a_too_short_interval() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let mut child = Command::new(BIN)
        .args(["dashboard", "--addr", "127.0.0.1:0", "--data-dir", &dir])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = within("start-up", lines.next_line()).await.unwrap().unwrap();
    let base = first.split("listening on ").nth(1).unwrap().trim().to_owned();
    let link = within("the link", lines.next_line()).await.unwrap().unwrap();
    let token = link.split("/dashboard?token=").nth(1).expect("a link with a token").trim();
    assert!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()), "{link}");

    let http = reqwest::Client::new();
    let events = format!("{base}/dashboard/events");
    assert_eq!(http.get(&events).send().await.unwrap().status(), 401);
    let page = http.get(format!("{base}/dashboard?token={token}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie =
        page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let stream = http.get(&events).header("cookie", cookie).send().await.unwrap();
    assert_eq!(stream.status(), 200, "the cookie the link set opens the stream");

    let refused =
        Command::new(BIN).args(["dashboard", "--interval", "100ms"]).output().await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 200ms"));
}

#[tokio::test]
async fn the_exec_bench_streams_every_byte_and_echoes_every_keystroke() {
    if sse_apps::exec::ExecConfig::checked(std::env::temp_dir()).sandbox.is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must have bubblewrap");
        eprintln!("NOTICE: skipping: no sandbox (apt-get install bubblewrap)");
        return;
    }
    let args = ["bench", "exec", "--mib", "4", "--keystrokes", "20", "--no-pin"];
    let output = within("the bench", Command::new(BIN).args(args).output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("4 MB of output")
            && stdout.contains("20 keystrokes echoed")
            && stdout.contains("; in a terminal: p50 "),
        "{stdout}"
    );
}

#[tokio::test]
async fn sampling_needs_its_token_unless_no_auth_and_the_client_explains_what_is_missing() {
    let (_open, base) = start_server(&["sampling", "--no-auth"]).await;
    assert_eq!(reqwest::get(format!("{base}/sampling/clients")).await.unwrap().status(), 200);
    let exposed = Command::new(BIN)
        .args(["sampling", "--no-auth", "--addr", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert!(!exposed.status.success());
    assert!(String::from_utf8_lossy(&exposed.stderr).contains("--allow-host"));
    let (_guarded, base) = start_server(&["sampling"]).await;
    assert_eq!(reqwest::get(format!("{base}/sampling/clients")).await.unwrap().status(), 401);

    let no_key = Command::new(BIN)
        .args(["sampling-client", "--approve", "auto"])
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .await
        .unwrap();
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("set OPENAI_API_KEY"));
    // Nobody at a terminal to approve: it says how to run unattended.
    let unattended = Command::new(BIN)
        .args(["sampling-client", "--provider", "anthropic"])
        .env("ANTHROPIC_API_KEY", "sk-ant-never-printed")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!unattended.status.success());
    assert!(String::from_utf8_lossy(&unattended.stderr).contains("--approve auto"));
    assert!(
        !String::from_utf8_lossy(&unattended.stderr).contains("k\n"),
        "the key is never printed"
    );
}
