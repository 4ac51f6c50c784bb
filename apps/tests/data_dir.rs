//! The data directory is the server's alone: once the chat, the dashboard and exec have written
//! their files, every file under it is 0600 and every directory 0700 (exec's runs need nothing
//! from it, so that holds for a root server too); and a symlink planted where
//! one of their files goes is refused with an error that names it, and nothing is written
//! through it.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/dashboard.rs"]
mod dashboard_source;
mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use dashboard_source::ScriptedSource;
use serde_json::{Value, json};
use sse_apps::chat::{self, ChatConfig};
use sse_apps::dashboard::{self, DashboardConfig};
use sse_apps::exec::{self, ExecConfig};
use sse_core::Core;
use support::{Stream, spawn_app};

/// A watchdog for awaited events; not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Every file an app keeps in the data directory.
const DATA_FILES: [&str; 4] =
    ["chat.sqlite3", "dashboard-audit.jsonl", "exec-approvals.jsonl", "exec-runs.jsonl"];

fn chat_config(data: &Path) -> ChatConfig {
    ChatConfig { posts_per_second: 0, ..ChatConfig::new(data.to_owned()) }
}

/// The apps that keep files, sharing the data directory `data`, or the first one's error; exec
/// runs programs in the checked default sandbox (none: runs are refused, its files are written
/// all the same).
fn apps(core: Core, data: &Path) -> anyhow::Result<Router> {
    let chat = chat::router(core.clone(), &chat_config(data))?;
    let source = ScriptedSource::with_cpu(&[5.0]);
    let config = DashboardConfig::new(data.to_owned());
    let dashboard = dashboard::router_with_source(core.clone(), config, source)?;
    let exec = exec::router(core, ExecConfig::checked(data.to_owned()))?;
    Ok(Router::new().merge(chat).merge(dashboard).merge(exec))
}

/// Every path under `dir`, `dir` included, with its mode; symlinks are not followed.
fn walk(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut found = vec![(dir.to_owned(), std::fs::symlink_metadata(dir).unwrap())];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push((path, metadata));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_the_apps_write_is_0600_and_every_directory_0700() {
    let root = tempfile::tempdir().unwrap();
    // Made by the server, with a parent it lacks.
    let data = root.path().join("data").join("sse-apps");
    let sandbox_works = ExecConfig::checked(data.clone()).sandbox.is_ok();
    let app = spawn_app(|core| apps(core, &data).unwrap()).await;
    let http = reqwest::Client::new();

    // The chat stores a member and a message (WAL mode: the -wal and -shm files appear).
    let joined = http
        .post(format!("{}/chat/rooms/lobby/join", app.base))
        .json(&json!({"nick": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 201);
    let token = joined.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let posted = http
        .post(format!("{}/chat/rooms/lobby/messages", app.base))
        .bearer_auth(&token)
        .json(&json!({"text": "hello", "client_msg_id": "m1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    // The dashboard audits a command before it answers.
    let command = http
        .post(format!("{}/dashboard/commands", app.base))
        .json(&json!({"action": "set_interval", "interval_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(command.status(), 202);
    let audit = std::fs::read_to_string(data.join("dashboard-audit.jsonl")).unwrap();
    assert!(audit.contains("set_interval"), "the audit line is on disk: {audit:?}");
    // An exec run: journaled (it keeps nothing else here: its files live in its sandbox).
    if sandbox_works {
        let started = http
            .post(format!("{}/exec/runs", app.base))
            .json(&json!({"language": "sh", "code": "echo hi > file"}))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 201);
        let id = started.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let mut events = Stream::open(&format!("{}/exec/runs/{id}/events", app.base)).await;
        let exit = loop {
            let event = tokio::time::timeout(WATCHDOG, events.next()).await.unwrap().unwrap();
            if event.event == "exit" {
                break event.data;
            }
        };
        assert!(exit.contains(r#""reason":"exited""#), "{exit}");
        let journal = std::fs::read_to_string(data.join("exec-runs.jsonl")).unwrap();
        assert!(journal.contains(&id), "{journal}");
    } else {
        assert!(std::env::var_os("CI").is_none(), "CI must have a sandbox (bubblewrap)");
        eprintln!("NOTICE: no sandbox here: the walk covers exec's files without a run");
    }

    // Walked while the server runs: the database's companion files exist only while it is open.
    let walked = walk(&data);
    let mut names = BTreeSet::new();
    for (path, metadata) in &walked {
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            assert_eq!(mode, 0o700, "{} is a directory with mode {mode:o}", path.display());
        } else {
            assert!(metadata.is_file(), "{} is a regular file", path.display());
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
            names.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    let wanted = DATA_FILES.into_iter().chain(["chat.sqlite3-wal", "chat.sqlite3-shm"]);
    for name in wanted {
        assert!(names.contains(name), "{name} was written and checked: {names:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_where_a_data_file_goes_is_refused_by_name_and_not_written_through() {
    for name in DATA_FILES {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // What a planted link would have the server append to: a file only its owner reads.
        let target = root.path().join("owned-by-root");
        std::fs::write(&target, "untouched\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, data.join(name)).unwrap();

        let error = apps(Core::new(Default::default()), &data).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(&format!("{name} is a symbolic link")), "{name}: {message}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n", "{name}");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}: the target's mode is untouched too");
        assert!(data.join(name).is_symlink(), "{name}: the link is neither replaced nor removed");
    }
}

/// The apps' start with a FIFO planted where `name` goes, `held` open by someone (read and
/// write, as a log shipper holds its pipe) or not; on a thread, under the watchdog, so a start
/// that waits on the pipe fails the test instead of hanging it.
fn start_with_fifo_at(name: &'static str, held: bool) -> Result<(), String> {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let fifo = data.join(name);
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from(0o600)).unwrap();
    let _holder =
        held.then(|| std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap());
    // A plain thread, not the runtime's: a runtime waits for its blocking threads when dropped,
    // so a start stuck on the pipe there would hang the test rather than fail it.
    let (done, outcome) = std::sync::mpsc::channel();
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _in_runtime = runtime.enter(); // the apps spawn their tasks as they start
        let started = apps(Core::new(Default::default()), &data);
        let _ = done.send(started.map(drop).map_err(|error| format!("{error:#}")));
    });
    outcome.recv_timeout(WATCHDOG).expect("the start does not wait on a pipe")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_where_a_data_file_goes_is_refused_by_name_unless_it_is_a_read_audit_log() {
    for name in ["chat.sqlite3", "exec-runs.jsonl"] {
        for held in [false, true] {
            let error = start_with_fifo_at(name, held).unwrap_err();
            assert!(error.contains(&format!("{name} is not a regular file")), "{name}: {error}");
        }
    }
    for name in ["dashboard-audit.jsonl", "exec-approvals.jsonl"] {
        // A log shipper's pipe: written, never read back.
        start_with_fifo_at(name, true).unwrap_or_else(|e| panic!("{name}: {e}"));
        let error = start_with_fifo_at(name, false).unwrap_err();
        assert!(error.contains(&format!("{name} is a named pipe that nothing reads")), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_others_own_or_may_write_or_a_hard_linked_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    // Writable by others: they could replace the server's files.
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = format!("{:#}", apps(Core::new(Default::default()), &open).unwrap_err());
    assert!(error.contains("may be written by others"), "{error}");
    assert!(std::fs::read_dir(&open).unwrap().next().is_none(), "nothing written: {error}");

    // A file with a second name, as a hard link another user planted would give it.
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let elsewhere = root.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, "").unwrap();
    std::fs::hard_link(&elsewhere, data.join("dashboard-audit.jsonl")).unwrap();
    let error = format!("{:#}", apps(Core::new(Default::default()), &data).unwrap_err());
    assert!(error.contains("hard link"), "{error}");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "", "nothing written through it");

    // Another user's directory (a second user made it first): only root can set that up here.
    if rustix::process::getuid().is_root() {
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let error = format!("{:#}", apps(Core::new(Default::default()), &theirs).unwrap_err());
        assert!(error.contains("belongs to uid 65534"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_to_start_on_a_symlinked_database_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("elsewhere.sqlite3");
    std::fs::write(&target, "").unwrap();
    std::os::unix::fs::symlink(&target, root.path().join("chat.sqlite3")).unwrap();

    let mut command = support::binary();
    command
        .args(["chat", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(root.path())
        .stderr(std::process::Stdio::piped());
    let output = tokio::time::timeout(WATCHDOG, command.output())
        .await
        .expect("the server stops at once")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chat.sqlite3 is a symbolic link"), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), b"", "SQLite never wrote through the link");
}
