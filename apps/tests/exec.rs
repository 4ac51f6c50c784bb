//! Remote execution over real HTTP on an ephemeral port, in the real sandbox: output and stdin,
//! exact replay from the start and from an id, every exit reason, the dropped marker, and the
//! abuse cases (fork bomb, memory bomb, endless output, network, escaping the scratch directory,
//! other runs' files), each contained while other runs and the server stay responsive.
//!
//! Needs bubblewrap (Debian `bubblewrap`, which `.ci/run` installs). In CI (`CI` set) a missing
//! sandbox fails the tests; elsewhere they print a notice and pass.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sse_apps::exec::sandbox::Limits;
use sse_apps::exec::{ExecConfig, router};
use sse_core::edge::auth::Token;
use support::{Stream, TestApp, spawn_app_on};

const TOKEN: &str = "exec-test-token";
/// A watchdog for waits on events; it is not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(90);

struct Exec {
    app: TestApp,
    _data: tempfile::TempDir,
    http: reqwest::Client,
}

/// The checked default config (bubblewrap, a cgroup per run), or (outside CI only) `None` with
/// a notice.
fn checked(data: &std::path::Path) -> Option<ExecConfig> {
    let config = ExecConfig::checked(data.to_owned());
    if let Err(why) = &config.sandbox {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have bubblewrap (.ci/run installs it): {why}"
        );
        eprintln!("NOTICE: skipping: {why}");
        return None;
    }
    Some(config)
}

impl Exec {
    async fn start() -> Option<Exec> {
        Exec::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut ExecConfig)) -> Option<Exec> {
        let data = tempfile::tempdir().unwrap();
        let mut config = checked(data.path())?;
        config.limits =
            Limits { cpu_seconds: 2, processes: 32, file_size: 1 << 20, ..Limits::default() };
        config.output_cap = 64 * 1024;
        config.timeout = Duration::from_secs(20);
        config.max_timeout = config.timeout;
        adjust(&mut config);
        let addr = "127.0.0.1:0".parse().unwrap();
        let app =
            spawn_app_on(addr, Token::required(TOKEN), |core| router(core, config).unwrap()).await;
        Some(Exec { app, _data: data, http: reqwest::Client::new() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response =
            self.http.post(self.url(path)).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn run(&self, body: Value) -> String {
        let (status, created) = self.post("/exec/runs", body).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    async fn sh(&self, code: &str) -> String {
        self.run(json!({"language": "sh", "code": code})).await
    }

    async fn events(&self, id: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = self.http.get(self.url(&format!("/exec/runs/{id}/events")));
        request = request.bearer_auth(TOKEN);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        Stream::open_with(request).await
    }

    /// Every event of run `id` from the start to `exit`: (type, id, data).
    async fn all(&self, id: &str) -> Vec<(String, u64, Value)> {
        let mut stream = self.events(id, None).await;
        until_exit(&mut stream).await
    }

    /// The `exit` event of run `id`.
    async fn exit(&self, id: &str) -> Value {
        self.all(id).await.pop().unwrap().2
    }
}

async fn until_exit(stream: &mut Stream) -> Vec<(String, u64, Value)> {
    let read = async {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            let id = event.last_event_id.parse().unwrap();
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let done = event.event == "exit";
            events.push((event.event, id, data));
            if done {
                break;
            }
        }
        events
    };
    let events = tokio::time::timeout(WATCHDOG, read).await.expect("the run ended");
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("exit"), "{events:?}");
    events
}

/// What a run wrote to `pipe`, joined.
fn text(events: &[(String, u64, Value)], pipe: &str) -> String {
    events.iter().filter(|e| e.0 == pipe).map(|e| e.2["text"].as_str().unwrap()).collect()
}

/// Reads events until one of `pipe` contains `needle`.
async fn wait_for_text(stream: &mut Stream, pipe: &str, needle: &str) {
    let wait = async {
        let mut seen = String::new();
        while let Some(event) = stream.next().await {
            if event.event == pipe {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                seen.push_str(data["text"].as_str().unwrap());
                if seen.contains(needle) {
                    return;
                }
            }
        }
        panic!("the stream ended before {needle:?}");
    };
    tokio::time::timeout(WATCHDOG, wait).await.expect("the text came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_stdout_and_stderr_apart_and_reads_stdin() {
    let Some(exec) = Exec::start().await else { return };
    let id = exec.sh("echo out; echo err >&2; read name; echo \"hello $name\"; cat").await;
    let mut stream = exec.events(&id, None).await;
    wait_for_text(&mut stream, "stdout", "out").await;
    let (status, written) =
        exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "Ada\n"})).await;
    assert_eq!((status, written["written"].as_u64()), (200, Some(4)));
    exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "rest", "eof": true})).await;
    let rest = until_exit(&mut stream).await;
    assert!(text(&rest, "stdout").contains("hello Ada\nrest"));
    let all = exec.all(&id).await;
    assert_eq!(text(&all, "stderr"), "err\n");
    let exit = &all.last().unwrap().2;
    assert_eq!((exit["reason"].as_str(), exit["code"].as_i64()), (Some("exited"), Some(0)));
    let ids: Vec<u64> = all.iter().map(|e| e.1).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "ids count from 1 with no gap");

    let (status, error) = exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "x"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("stdin_closed")));
    let (status, error) =
        exec.post(&format!("/exec/runs/{id}/signal"), json!({"signal": "kill"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("run_finished")));
    let (_, list) = exec.get_json("/exec/runs").await;
    assert_eq!(list["runs"][0]["id"], id.as_str());
    assert_eq!(list["runs"][0]["exit"]["reason"], "exited");
}

impl Exec {
    async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).bearer_auth(TOKEN).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_replays_exactly_from_the_start_and_from_an_id() {
    let Some(exec) = Exec::start().await else { return };
    let id = exec.sh("echo one; read x; echo two; echo three >&2").await;
    let mut first = exec.events(&id, None).await;
    wait_for_text(&mut first, "stdout", "one").await;
    // A second viewer joining mid-run gets the output so far, then the rest live.
    let mut second = exec.events(&id, None).await;
    wait_for_text(&mut second, "stdout", "one").await;
    exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "go\n"})).await;
    let first_rest = until_exit(&mut first).await;
    let second_rest = until_exit(&mut second).await;
    assert_eq!(first_rest, second_rest);

    let all = exec.all(&id).await;
    assert_eq!(text(&all, "stdout"), "one\ntwo\n");
    let from_two = until_exit(&mut exec.events(&id, Some("2")).await).await;
    assert_eq!(from_two, all[2..].to_vec(), "resumes after Last-Event-ID");
    let last = all.last().unwrap().1.to_string();
    let done = exec
        .http
        .get(exec.url(&format!("/exec/runs/{id}/events")))
        .bearer_auth(TOKEN)
        .header("last-event-id", last)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 204, "seen everything of a finished run: stop reconnecting");
}

/// Forks 100 children that sleep: past the process limit, `fork` fails and Python exits.
const FORKS: &str = "import os, time\nfor i in range(100):\n    if os.fork() == 0:\n        time.sleep(5)\n        os._exit(0)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exit_reason_is_reported() {
    let Some(exec) = Exec::start_with(|c| c.max_concurrent = 8).await else { return };
    let cases = [
        (json!({"language": "sh", "code": "exit 3"}), "exited"),
        (json!({"language": "sh", "code": "kill -SEGV $$"}), "signal"),
        (json!({"language": "sh", "code": "sleep 100", "timeout_s": 1}), "timeout"),
        (json!({"language": "sh", "code": "while :; do :; done"}), "cpu_limit"),
        (json!({"language": "sh", "code": "head -c 2000000 /dev/zero > big"}), "file_limit"),
        (json!({"language": "python3", "code": "x = bytearray(2 << 30)"}), "memory_limit"),
        (json!({"language": "python3", "code": FORKS}), "process_limit"),
    ];
    let mut ids = Vec::new();
    for (body, _) in &cases {
        ids.push(exec.run(body.clone()).await);
    }
    for ((body, reason), id) in cases.iter().zip(&ids) {
        let exit = exec.exit(id).await;
        assert_eq!(exit["reason"], *reason, "{body} ended with {exit}");
    }
    let exits: Vec<Value> =
        futures_util::future::join_all(ids.iter().map(|id| exec.exit(id))).await;
    assert_eq!(exits[0]["code"], 3);
    assert_eq!(exits[1]["signal"], "SEGV");

    // Killed by the user: interrupt, and kill. Python handles SIGINT from its first line, so
    // an interrupt sent right after "ready" cannot fall into the moment where `sh -c` catches
    // SIGINT and then execs its last command with the signal forgotten (as a terminal's Ctrl-C
    // could too).
    let ready_then_sleep = "import time\nprint('ready', flush=True)\ntime.sleep(100)";
    for signal in ["interrupt", "kill"] {
        let id = exec.run(json!({"language": "python3", "code": ready_then_sleep})).await;
        let mut stream = exec.events(&id, None).await;
        wait_for_text(&mut stream, "stdout", "ready").await;
        let (status, _) =
            exec.post(&format!("/exec/runs/{id}/signal"), json!({"signal": signal})).await;
        assert_eq!(status, 202);
        let exit = until_exit(&mut stream).await.pop().unwrap().2;
        assert_eq!(exit["reason"], "killed_by_user", "{signal}: {exit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_no_run_uid_can_reach_does_not_stop_runs() {
    // As root (runs then get uids of their own), a data directory under a 0700 directory is one
    // no run can traverse, as `/root/.local/share` is: runs need nothing from it.
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("private");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let Some(exec) = Exec::start_with(|c| c.data_dir = data).await else { return };
    let all = exec.all(&exec.sh("echo ok; pwd; touch kept && ls").await).await;
    assert_eq!(text(&all, "stdout"), "ok\n/work\nkept\n", "{all:?}");
    assert_eq!(all.last().unwrap().2["reason"], "exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_runs_memory_is_bounded_while_other_runs_and_the_server_go_on() {
    const BUDGET: u64 = 192 << 20;
    let limits = Limits {
        memory: BUDGET,
        cpu_seconds: 20,
        processes: 32,
        file_size: 4 << 20,
        ..Limits::default()
    };
    let Some(exec) = Exec::start_with(|c| {
        c.limits = limits;
        c.max_concurrent = 6;
    })
    .await
    else {
        return;
    };
    // Eighteen children of 100 MiB each: every one under the address-space rlimit, 1.8 GiB
    // together. A child the kernel kills is counted; without a cgroup, none would be.
    let children = "import os, time\nkids = []\nfor i in range(18):\n    pid = os.fork()\n    if pid == 0:\n        b = bytes([1]) * (100 << 20)\n        time.sleep(4)\n        os._exit(0)\n    kids.append(pid)\nbad = sum(os.waitpid(k, 0)[1] != 0 for k in kids)\nprint('killed', bad)\nraise SystemExit(1 if bad else 0)";
    // Memory in memfd files, which no address-space limit sees: 4 MiB each (the file-size
    // limit), 1 GiB in all.
    let memfd = "import os\nfds = []\nfor i in range(250):\n    fd = os.memfd_create('m%d' % i)\n    for _ in range(4):\n        os.write(fd, bytes([1]) * (1 << 20))\n    fds.append(fd)\nprint('kept', len(fds))";
    let started = [
        exec.run(json!({"language": "python3", "code": children})).await,
        exec.run(json!({"language": "python3", "code": memfd})).await,
    ];
    // Meanwhile an ordinary run starts, takes input and finishes, and the server answers.
    let id = exec.sh("read x; echo \"still $x\"").await;
    exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "here\n"})).await;
    assert_eq!(text(&exec.all(&id).await, "stdout"), "still here\n");
    assert_eq!(exec.http.get(exec.url("/healthz")).send().await.unwrap().status(), 200);
    for id in started {
        let all = exec.all(&id).await;
        let exit = &all.last().unwrap().2;
        assert_eq!(exit["reason"], "memory_limit", "{all:?}");
        let peak = exit["memory_peak_bytes"].as_u64().expect("the cgroup's peak");
        assert!(peak <= BUDGET, "the run peaked at {peak} bytes, past its {BUDGET}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_is_python3() {
    let Some(exec) = Exec::start().await else { return };
    let id = exec
        .run(json!({"language": "python", "code": "import sys; print(sys.version_info[0])"}))
        .await;
    assert_eq!(text(&exec.all(&id).await, "stdout"), "3\n");
    let (_, list) = exec.get_json("/exec/runs").await;
    assert_eq!(list["runs"][0]["label"], "python3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_is_a_capped_tmpfs() {
    let Some(exec) = Exec::start_with(|c| c.limits.file_size = 1 << 20).await else { return };
    // Files of a megabyte (under the file size limit) until /work refuses more, at most 300.
    let fill = "i=0; while [ $i -lt 300 ] && head -c 1000000 /dev/zero > f$i; do i=$((i+1)); done; echo \"wrote $i\"; exit 1";
    let all = exec.all(&exec.sh(fill).await).await;
    let out = text(&all, "stdout");
    let files: u32 = out.trim().strip_prefix("wrote ").and_then(|n| n.parse().ok()).unwrap();
    assert!((60..=67).contains(&files), "/work took {files} MB: {all:?}");
    assert!(text(&all, "stderr").contains("No space left on device"), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_can_make_no_namespace_and_mount_nothing() {
    let Some(exec) = Exec::start().await else { return };
    // The escape: a user namespace of its own, in which it is root and may mount a tmpfs no
    // limit covers.
    let escape = "unshare -Urm sh -c 'mount -t tmpfs -o size=0 none /tmp && echo mounted'; unshare -Ur true && echo nested; mount -t tmpfs none /tmp && echo mounted-here; echo end";
    let all = exec.all(&exec.sh(escape).await).await;
    let out = text(&all, "stdout");
    assert_eq!(out, "end\n", "{all:?}");
    assert!(text(&all, "stderr").contains("unshare failed"), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_uids_lie_outside_every_subordinate_id_range() {
    if !rustix::process::getuid().is_root() {
        eprintln!("NOTICE: skipping: runs get uids of their own only when the server is root");
        return;
    }
    // Two local users, as `useradd` makes them: the second one's subordinate range
    // (165536-231071 on a fresh machine) covers where run uids used to be (200000).
    for user in ["sseappsone", "sseappstwo"] {
        let known = std::process::Command::new("id").arg(user).output().unwrap().status.success();
        if !known {
            let made = std::process::Command::new("useradd").arg(user).status().unwrap();
            assert!(made.success(), "useradd {user}");
        }
    }
    let ranges = sse_apps::exec::run_uids::subordinate_ranges();
    assert!(!ranges.is_empty(), "useradd gave the users subordinate ranges");
    let (uids, _) = sse_apps::exec::run_uid_range(None, 4).unwrap();
    let Some(exec) = Exec::start_with(|c| c.run_uids = uids).await else { return };
    let all = exec.all(&exec.sh("id -u").await).await;
    let uid: u64 = text(&all, "stdout").trim().parse().unwrap();
    assert!(
        !ranges.iter().any(|range| range.contains(&uid)),
        "run uid {uid} lies in a subordinate range: {ranges:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_output_is_capped_and_the_rest_counted() {
    let Some(exec) = Exec::start().await else { return };
    let id = exec.sh("head -c 200000 /dev/zero | tr '\\0' a").await;
    let all = exec.all(&id).await;
    // The cap counts what the log stores: each event's frame (its name, id and JSON, about 60
    // bytes) and 64 bytes of overhead besides the text. So how much text fits depends on how
    // the pipe chunked the output (fewer than 200 bytes short per event), and every other byte
    // is counted.
    let kept = text(&all, "stdout").len() as u64;
    let events = all.iter().filter(|e| e.0 == "stdout").count() as u64;
    assert!(kept <= 64 * 1024 && kept + (events + 1) * 200 > 64 * 1024, "kept {kept} in {events}");
    let dropped = all.iter().find(|e| e.0 == "dropped").expect("a dropped event");
    assert_eq!(dropped.2["bytes"], 200_000 - kept);
    assert_eq!(all.last().unwrap().2["dropped_bytes"], 200_000 - kept);
    assert_eq!(all.last().unwrap().2["output_bytes"], kept);

    let id = exec.run(json!({"language": "sh", "code": "yes", "timeout_s": 1})).await;
    let exit = exec.exit(&id).await;
    assert_eq!(exit["reason"], "timeout");
    assert!(exit["dropped_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_are_contained_while_other_runs_and_the_server_stay_responsive() {
    let Some(exec) = Exec::start().await else { return };
    let bomb = ":(){ :|:& };:; sleep 10";
    let fork_bomb = exec.run(json!({"language": "bash", "code": bomb, "timeout_s": 3})).await;
    let memory_bomb =
        exec.run(json!({"language": "python3", "code": "a = []\nwhile True: a.append(bytearray(1 << 20))"})).await;
    // Meanwhile an ordinary run starts, takes input and finishes, and the server answers.
    let id = exec.sh("read x; echo \"still $x\"").await;
    exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "here\n"})).await;
    assert_eq!(text(&exec.all(&id).await, "stdout"), "still here\n");
    assert_eq!(exec.http.get(exec.url("/healthz")).send().await.unwrap().status(), 200);

    let fork = exec.exit(&fork_bomb).await;
    assert!(
        ["process_limit", "timeout"].contains(&fork["reason"].as_str().unwrap()),
        "the fork bomb ended with {fork}"
    );
    assert_eq!(exec.exit(&memory_bomb).await["reason"], "memory_limit");

    // Memory through tmpfs, which RLIMIT_AS does not count: /dev/shm and /tmp stop at their
    // 64 MiB (files of a megabyte, under the run's file size limit), the rest of /dev is read-only.
    let fill = "for d in /dev/shm /tmp; do i=0; while [ $i -lt 100 ] && head -c 1000000 /dev/zero > $d/f$i 2>/dev/null; do i=$((i+1)); done; echo \"$d $i\"; done; echo x > /dev/escape || echo dev-read-only";
    let all = exec.all(&exec.sh(fill).await).await;
    let out = text(&all, "stdout");
    for dir in ["/dev/shm", "/tmp"] {
        let files: u32 = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{dir} ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!((60..=67).contains(&files), "{dir} took {files} MB: {out}");
    }
    assert!(out.contains("dev-read-only"), "{out}");
    assert!(text(&all, "stderr").contains("Read-only file system"), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cannot_reach_the_network_the_host_or_other_runs() {
    let Some(exec) = Exec::start().await else { return };
    let network = "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\n    print('connected')\nexcept OSError as e:\n    print('no network:', e)";
    let id = exec.run(json!({"language": "python3", "code": network})).await;
    assert!(text(&exec.all(&id).await, "stdout").starts_with("no network"));

    let id =
        exec.sh("echo x > /usr/escape; echo x > /etc-escape; ls /root /home 2>&1; echo done").await;
    let all = exec.all(&id).await;
    let errors = text(&all, "stderr") + &text(&all, "stdout");
    assert!(errors.contains("Read-only file system"), "{errors}");
    assert!(!std::path::Path::new("/usr/escape").exists());
    assert!(!std::path::Path::new("/etc-escape").exists());

    // One run keeps a secret in its scratch directory; another cannot find it.
    let keeper = exec.sh("echo secret > mine; pwd; sleep 30").await;
    let mut stream = exec.events(&keeper, None).await;
    wait_for_text(&mut stream, "stdout", "/work").await;
    let snoop = exec
        .sh(&format!("cat ../{keeper}/mine /work/../{keeper}/mine 2>&1; ls / ; find / -name mine 2>/dev/null; echo end"))
        .await;
    let seen = text(&exec.all(&snoop).await, "stdout");
    assert!(!seen.contains("secret") && seen.ends_with("end\n"), "{seen}");
    exec.post(&format!("/exec/runs/{keeper}/signal"), json!({"signal": "kill"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_status_and_code() {
    let Some(exec) = Exec::start_with(|c| c.max_concurrent = 1).await else { return };
    let cases = [
        (json!({"language": "cobol", "code": "x"}), 422, "unknown_language"),
        (json!({"language": "sh", "code": "x", "argv": ["ls"]}), 422, "invalid_run"),
        (json!({}), 422, "invalid_run"),
        (json!({"argv": []}), 422, "empty_argv"),
        (json!({"language": "sh", "code": "x", "pty": true, "cols": 501}), 422, "invalid_size"),
        (json!({"language": "sh", "code": "x", "timeout_s": 0}), 422, "timeout_out_of_range"),
        (json!({"language": "sh", "code": "x", "timeout_s": 1801}), 422, "timeout_out_of_range"),
        // Past the server's own limit (the tests' server: 20 s).
        (json!({"language": "sh", "code": "x", "timeout_s": 21}), 422, "timeout_out_of_range"),
        // Past the field's type too: still out of range, not a malformed body.
        (json!({"language": "sh", "code": "x", "timeout_s": 1e20}), 422, "timeout_out_of_range"),
        (json!({"language": "sh", "code": "x", "pty": true, "rows": 70000}), 422, "invalid_size"),
        (json!({"language": "sh", "code": "x", "timeout_s": 1.5}), 400, "invalid_body"),
        (json!({"language": "sh", "code": "a\u{0}b"}), 422, "invalid_code"),
        (json!({"language": "sh", "code": "x", "shell": true}), 400, "invalid_body"),
    ];
    for (body, status, code) in &cases {
        let (got, error) = exec.post("/exec/runs", body.clone()).await;
        assert_eq!((got, error["error"]["code"].as_str()), (*status, Some(*code)), "{body}");
    }
    let (status, error) = exec.post("/exec/runs/nope/stdin", json!({"data": "x"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("unknown_run")));
    let (status, error) = exec.post("/exec/runs/nope/signal", json!({"signal": "kill"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("unknown_run")));
    let (status, _) = exec.get_json("/exec/runs/nope/events").await;
    assert_eq!(status, 404);

    // One run at a time here: a second is refused until the first ends.
    let id = exec.sh("sleep 100").await;
    let (status, error) = exec.post("/exec/runs", json!({"language": "sh", "code": "true"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (429, Some("too_many_runs")));
    let (status, error) =
        exec.post(&format!("/exec/runs/{id}/signal"), json!({"signal": "hup"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("unknown_signal")));
    // Huge stdin is refused whole; a program that does not read makes stdin wait, then 503.
    let huge = "x".repeat(3 << 20);
    let (status, error) = exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": huge})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (413, Some("body_too_large")));
    let (status, error) =
        exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "y".repeat(1 << 20)})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (503, Some("stdin_full")));
    exec.post(&format!("/exec/runs/{id}/signal"), json!({"signal": "kill"})).await;
    assert_eq!(exec.exit(&id).await["reason"], "killed_by_user");
    // Its slot is free by the time its `exit` is seen: the next run starts at once.
    let next = exec.sh("true").await;
    assert_eq!(exec.exit(&next).await["reason"], "exited");

    // The token guards every endpoint, and POSTs from another origin are refused.
    let anonymous = exec.http.post(exec.url("/exec/runs")).json(&json!({})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let listing = exec.http.get(exec.url("/exec/runs")).send().await.unwrap();
    assert_eq!(listing.status(), 401);
    let cross = exec
        .http
        .post(exec.url("/exec/runs"))
        .bearer_auth(TOKEN)
        .header("origin", "https://evil.example")
        .json(&json!({"language": "sh", "code": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_run_behaves_as_in_a_terminal_and_resizes() {
    let Some(exec) = Exec::start().await else { return };
    let body = json!({"argv": ["/usr/bin/python3", "-q"], "pty": true, "rows": 30, "cols": 100});
    let id = exec.run(body).await;
    let mut stream = exec.events(&id, None).await;
    wait_for_text(&mut stream, "stdout", ">>> ").await; // the interactive prompt: stdin is a tty
    exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": "print(6 * 7)\n"})).await;
    wait_for_text(&mut stream, "stdout", "42\r\n>>> ").await; // the terminal's CR LF
    let (status, size) =
        exec.post(&format!("/exec/runs/{id}/resize"), json!({"rows": 40, "cols": 120})).await;
    assert_eq!((status, size), (200, json!({"rows": 40, "cols": 120})));
    let probe = "import os; print(os.get_terminal_size())\n";
    exec.post(&format!("/exec/runs/{id}/stdin"), json!({"data": probe, "eof": true})).await;
    let rest = until_exit(&mut stream).await;
    assert!(text(&rest, "stdout").contains("columns=120, lines=40"), "{rest:?}");
    assert_eq!(rest.last().unwrap().2["reason"], "exited", "Ctrl-D ended the REPL");

    // Resizing a run without a terminal, or with a silly size, is refused.
    let piped = exec.sh("sleep 30").await;
    let (status, error) =
        exec.post(&format!("/exec/runs/{piped}/resize"), json!({"rows": 40, "cols": 120})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("not_a_terminal")));
    let (status, error) =
        exec.post(&format!("/exec/runs/{piped}/resize"), json!({"rows": 0, "cols": 120})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("invalid_size")));
    let (status, error) =
        exec.post(&format!("/exec/runs/{piped}/resize"), json!({"rows": 70000, "cols": 1})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("invalid_size")));
    exec.post(&format!("/exec/runs/{piped}/signal"), json!({"signal": "kill"})).await;
    let (status, error) = exec.post("/exec/runs", json!({"argv": ["ls"], "rows": 10})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("invalid_size")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_names_the_terminal_and_the_list_says_which_runs_have_one() {
    let Some(exec) = Exec::start().await else { return };
    let probe = "echo TERM=$TERM; tput colors";
    let in_terminal = exec.run(json!({"language": "sh", "code": probe, "pty": true})).await;
    let on_pipes = exec.sh(probe).await;
    let drawn = exec.all(&in_terminal).await;
    assert_eq!(text(&drawn, "stdout"), "TERM=xterm-256color\r\n256\r\n");
    let plain = exec.all(&on_pipes).await;
    assert_eq!(text(&plain, "stdout"), "TERM=dumb\n-1\n", "a dumb terminal has no colours");
    let (_, listed) = exec.get_json("/exec/runs").await;
    let terminal_of = |id: &str| {
        let runs = listed["runs"].as_array().unwrap();
        runs.iter().find(|run| run["id"] == id).map(|run| run["terminal"].clone())
    };
    assert_eq!(terminal_of(&in_terminal), Some(json!(true)));
    assert_eq!(terminal_of(&on_pipes), Some(json!(false)));
}

/// Every event of a workflow's stream until one named `until` (included).
async fn workflow_events(stream: &mut Stream, until: &str) -> Vec<(String, Value)> {
    let read = async {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            let done = event.event == until;
            events.push((event.event, serde_json::from_str(&event.data).unwrap()));
            if done {
                return events;
            }
        }
        panic!("the stream ended before {until}: {events:?}");
    };
    tokio::time::timeout(WATCHDOG, read).await.expect("the workflow progressed")
}

impl Exec {
    async fn workflow(&self, definition: Value) -> (String, Stream) {
        let (status, created) = self.post("/exec/workflows", definition).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let request = self.http.get(self.url(&format!("/exec/workflows/{id}/events")));
        (id.clone(), Stream::open_with(request.bearer_auth(TOKEN)).await)
    }
}

fn gated(expires_s: u64) -> Value {
    json!({"name": "release", "steps": [
        {"name": "build", "language": "sh", "code": "echo built"},
        {"name": "deploy", "approval": {"prompt": "Ship it?", "expires_s": expires_s},
         "argv": ["/bin/echo", "deployed"]},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_its_steps_and_waits_for_approval() {
    let Some(exec) = Exec::start().await else { return };
    let (id, mut stream) = exec.workflow(gated(600)).await;
    let before = workflow_events(&mut stream, "approval_requested").await;
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["workflow_started", "step_started", "step_finished", "approval_requested"]);
    let build_run = before[1].1["run"].as_str().unwrap();
    assert_eq!(text(&exec.all(build_run).await, "stdout"), "built\n", "each step is a run");
    assert_eq!(before[3].1["prompt"], "Ship it?");

    // Deciding a step that is not waiting is refused; the waiting one takes the first decision.
    let approvals = format!("/exec/workflows/{id}/approvals");
    let (status, error) =
        exec.post(&format!("{approvals}/0"), json!({"decision": "approve"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("not_waiting")));
    let (status, error) = exec.post(&format!("{approvals}/1"), json!({"decision": "maybe"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("unknown_decision")));
    let (status, error) =
        exec.post(&format!("{approvals}/9"), json!({"decision": "approve"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("unknown_step")));
    let body = json!({"decision": "approve", "comment": "looks good"});
    let (status, decided) = exec.post(&format!("{approvals}/1"), body).await;
    assert_eq!((status, decided["decision"].as_str()), (200, Some("approved")));
    // Answered only once it is on disk.
    let log = std::fs::read_to_string(exec._data.path().join("exec-approvals.jsonl")).unwrap();
    assert!(log.contains("\"outcome\":\"approved\"") && log.contains("looks good"), "{log}");
    let (status, _) = exec.post(&format!("{approvals}/1"), json!({"decision": "reject"})).await;
    assert_eq!(status, 409, "the first decision wins");

    let after = workflow_events(&mut stream, "workflow_finished").await;
    let decided = &after[0].1;
    assert_eq!(
        (decided["decision"].as_str(), decided["comment"].as_str()),
        (Some("approved"), Some("looks good"))
    );
    assert!(decided["by"].as_str().unwrap().starts_with("127.0.0.1"));
    let finished = &after.last().unwrap().1;
    assert_eq!(finished["outcome"], "succeeded");
    let deploy_run = after[1].1["run"].as_str().unwrap();
    assert_eq!(text(&exec.all(deploy_run).await, "stdout"), "deployed\n");

    // The list shows the outcome.
    let (_, list) = exec.get_json("/exec/workflows").await;
    assert_eq!(list["workflows"][0]["outcome"]["outcome"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_the_log_cannot_record_is_refused_and_never_acted_on() {
    // The approvals log cannot be written: a pipe whose reader goes once the log is open.
    let mut reader = None;
    let Some(exec) = Exec::start_with(|config| {
        reader = Some(support::pipe_at(&config.data_dir.join("exec-approvals.jsonl")));
    })
    .await
    else {
        return;
    };
    drop(reader);
    let (id, mut stream) = exec.workflow(gated(600)).await;
    workflow_events(&mut stream, "approval_requested").await;
    let approve = json!({"decision": "approve", "comment": "ship"});
    let (status, error) = exec.post(&format!("/exec/workflows/{id}/approvals/1"), approve).await;
    assert_eq!((status, error["error"]["code"].as_str()), (503, Some("not_recorded")), "{error}");

    // The workflow stopped without acting on it: no decision announced, the step never ran.
    let events = workflow_events(&mut stream, "workflow_finished").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["workflow_finished"], "{events:?}");
    let finished = &events[0].1;
    assert_eq!(
        (finished["outcome"].as_str(), finished["step"].as_u64()),
        (Some("failed"), Some(1))
    );
    assert!(finished["message"].as_str().unwrap().contains("could not be recorded"), "{finished}");
    let (status, _) = exec
        .post(&format!("/exec/workflows/{id}/approvals/1"), json!({"decision": "reject"}))
        .await;
    assert_eq!(status, 409, "a stopped workflow waits for nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_or_expired_approval_stops_the_workflow() {
    let Some(exec) = Exec::start().await else { return };
    let (id, mut stream) = exec.workflow(gated(600)).await;
    workflow_events(&mut stream, "approval_requested").await;
    let body = json!({"decision": "reject", "comment": "not on a Friday"});
    exec.post(&format!("/exec/workflows/{id}/approvals/1"), body).await;
    let events = workflow_events(&mut stream, "workflow_finished").await;
    assert_eq!(events.len(), 2, "nothing runs after a rejection: {events:?}");
    let finished = &events[1].1;
    assert_eq!(
        (finished["outcome"].as_str(), finished["step"].as_u64()),
        (Some("rejected"), Some(1))
    );
    assert!(finished["message"].as_str().unwrap().contains("not on a Friday"));

    let (_, mut stream) = exec.workflow(gated(1)).await;
    let events = workflow_events(&mut stream, "workflow_finished").await;
    let decided = events.iter().find(|(n, _)| n == "approval_decided").unwrap();
    assert_eq!((decided.1["decision"].as_str(), &decided.1["by"]), (Some("expired"), &Value::Null));
    assert_eq!(events.last().unwrap().1["outcome"], "expired");

    // A failing step stops it too; bad definitions are refused with their reason.
    let failing = json!({"name": "f", "steps": [{"name": "a", "language": "sh", "code": "exit 2"}, {"name": "b", "argv": ["/bin/true"]}]});
    let (_, mut stream) = exec.workflow(failing).await;
    let events = workflow_events(&mut stream, "workflow_finished").await;
    assert_eq!(events.last().unwrap().1["outcome"], "failed");
    assert_eq!(events.iter().filter(|(n, _)| n == "step_started").count(), 1);
    let bad = [
        (json!({"name": "x", "steps": []}), 422, "invalid_steps"),
        (json!({"name": "x", "steps": [{"name": "a"}]}), 422, "empty_step"),
        (
            json!({"name": "x", "steps": [{"name": "a", "argv": ["/bin/true"]}, {"name": "a", "argv": ["/bin/true"]}]}),
            422,
            "invalid_step_name",
        ),
        (
            json!({"name": "x", "steps": [{"name": "a", "language": "cobol", "code": "x"}]}),
            422,
            "unknown_language",
        ),
        (
            json!({"name": "x", "steps": [{"name": "a", "approval": {"expires_s": 0}}]}),
            422,
            "invalid_expiry",
        ),
        (json!({"name": "x", "steps": [{"name": "a", "run": "x"}]}), 400, "invalid_definition"),
    ];
    for (body, status, code) in bad {
        let (got, error) = exec.post("/exec/workflows", body.clone()).await;
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_can_be_defined_in_toml() {
    let Some(exec) = Exec::start().await else { return };
    let toml =
        "name = \"hello\"\n\n[[steps]]\nname = \"greet\"\nlanguage = \"sh\"\ncode = \"echo hi\"\n";
    let response = exec
        .http
        .post(exec.url("/exec/workflows"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/toml")
        .body(toml)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let request = exec.http.get(exec.url(&format!("/exec/workflows/{id}/events")));
    let mut stream = Stream::open_with(request.bearer_auth(TOKEN)).await;
    let events = workflow_events(&mut stream, "workflow_finished").await;
    assert_eq!(events.last().unwrap().1["outcome"], "succeeded");
    let text_body = exec
        .http
        .post(exec.url("/exec/workflows"))
        .bearer_auth(TOKEN)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(text_body.status(), 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_sends_term_then_kill_to_a_program_that_ignores_term() {
    let Some(exec) = Exec::start().await else { return };
    let id = exec.sh("trap '' TERM; echo ready; while :; do sleep 1; done").await;
    let mut stream = exec.events(&id, None).await;
    wait_for_text(&mut stream, "stdout", "ready").await;
    let (status, _) =
        exec.post(&format!("/exec/runs/{id}/signal"), json!({"signal": "terminate"})).await;
    assert_eq!(status, 202);
    let exit = until_exit(&mut stream).await.pop().unwrap().2;
    assert_eq!(
        (exit["reason"].as_str(), exit["signal"].as_str()),
        (Some("killed_by_user"), Some("KILL"))
    );
    assert!(exit["duration_ms"].as_u64().unwrap() >= 5000, "KILL only after the 5 s grace: {exit}");
}
