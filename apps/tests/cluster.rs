//! Two instances sharing one Redis, behind the repository's nginx configuration: a request waiting
//! on one instance is answered through the other, in both of the server's formats; a chat message
//! posted to one reaches the clients of the other, and a reader cut from one resumes on the other
//! with nothing missed; the instances recover when Redis restarts. And without Redis: a 2026-07-28
//! MCP tool call begun on one instance finishes on another, sharing nothing but the token.
//!
//! Needs Debian's `redis-server` and `nginx-light`, which `.ci/run` installs; each test starts its
//! own on free loopback ports. In CI a missing one fails the test; elsewhere it is skipped with a
//! notice.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "support/bidi.rs"]
mod bidi_requests;
#[path = "support/chat.rs"]
mod chat_requests;
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bidi_requests::trigger;
use chat_requests::{chat_message, join, say};
use serde_json::{Value, json};
use sse_core::client::Responder;
use sse_core::testing::programs::redis_server;
use sse_core::testing::{next_named, within};
use sse_core::wire::jsonrpc::{ErrorObject, Request};
use support::{Stream, eventually};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

fn installed(programs: &[&str]) -> bool {
    sse_core::testing::programs::installed(programs, "redis-server nginx-light")
}

fn free_port() -> u16 {
    sse_core::testing::programs::free_port()
}

/// A Redis server on `port`, without persistence, killed when dropped.
async fn redis(port: u16) -> Child {
    redis_server(port, &["--save", "", "--appendonly", "no"]).await
}

/// A Redis server on `port` that writes every change to its append-only file in `dir` before
/// answering (the configuration RELIABILITY.md gives for the chat), killed when dropped.
async fn durable_redis(port: u16, dir: &Path) -> Child {
    let dir = dir.to_str().unwrap();
    let durable = ["--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always"];
    redis_server(port, &durable).await
}

/// nginx, stopped when dropped, and then its working directory removed. SIGTERM, not the
/// SIGKILL of `kill_on_drop`: a killed master leaves its worker running. The drop waits for the
/// master to exit (it removes its pid file from the working directory as it goes).
struct Nginx(Child, Option<tempfile::TempDir>);

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
    }
}

/// The repository's nginx configuration on `port`, in front of `upstreams`.
async fn nginx(port: u16, upstreams: [&str; 2], prefix: &Path) -> Nginx {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/nginx/sse-apps.conf"
    ))
    .unwrap();
    let config = shipped
        .replace("server 127.0.0.1:8082;", &format!("server {};", upstreams[0]))
        .replace("server 127.0.0.1:8083;", &format!("server {};", upstreams[1]))
        .replace("listen 127.0.0.1:8080;", &format!("listen 127.0.0.1:{port};"));
    assert_ne!(config, shipped, "the shipped configuration has the ports this test replaces");
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let child = Nginx(
        Command::new("nginx").arg("-p").arg(prefix).arg("-c").arg(&path).spawn().unwrap(),
        None,
    );
    // Up once it answers (the instances' health check, through it).
    let health = format!("http://127.0.0.1:{port}/healthz");
    within("nginx to start", async {
        while !reqwest::get(&health).await.is_ok_and(|r| r.status() == 200) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    child
}

/// One instance of the cluster on `redis_port`: `sse-apps <program…>` on a free port, with a data
/// directory of its own (removed when the returned value is dropped, with the process).
async fn instance_of(redis_port: u16, program: &[&str]) -> (Child, String, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut command = support::binary();
    command
        .args(program)
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--redis")
        .arg(format!("redis://127.0.0.1:{redis_port}"))
        .stderr(Stdio::null());
    let (child, base) = support::started(command).await;
    (child, base, data)
}

/// Two instances of `sse-apps <program…>` on `redis_port`.
async fn two_of(
    redis_port: u16,
    program: &[&str],
) -> ((Child, String, tempfile::TempDir), (Child, String, tempfile::TempDir)) {
    (instance_of(redis_port, program).await, instance_of(redis_port, program).await)
}

/// `sse-apps bidi-server` as one instance of the cluster on `redis_port`.
async fn instance(redis_port: u16) -> (Child, String) {
    let (child, base, _data) = instance_of(redis_port, &["bidi-server", "--timeout", "20s"]).await;
    (child, base)
}

/// The shipped nginx configuration in front of the instances at `a` and `b`; returns it (stopped,
/// and its working directory removed, when dropped) and its base URL.
async fn behind_nginx(a: &str, b: &str) -> (Nginx, String) {
    let prefix = tempfile::tempdir().unwrap();
    let port = free_port();
    let upstreams = [a.trim_start_matches("http://"), b.trim_start_matches("http://")];
    let mut nginx = nginx(port, upstreams, prefix.path()).await;
    nginx.1 = Some(prefix);
    (nginx, format!("http://127.0.0.1:{port}"))
}

/// A client in the Go original's format, connected to `base` as `name`, that answers every
/// request it is sent (by POST to `answer_to`) with `{"echo": message}`.
async fn go_worker(base: &str, name: &str, answer_to: String, stop: CancellationToken) {
    let mut stream = Stream::open(&format!("{base}/events?client_id={name}")).await;
    let hello = within("the greeting", stream.next()).await.unwrap();
    assert!(hello.data.contains("client_id"), "{}", hello.data);
    let name = name.to_owned();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = stream.next() => next,
            };
            let Some(event) = next else { return };
            let request: Value = serde_json::from_str(&event.data).unwrap();
            let answer = json!({ "id": request["id"], "result": { "echo": request["message"] } });
            let sent = http
                .post(&answer_to)
                .header("client-id", &name)
                .json(&answer)
                .send()
                .await
                .unwrap();
            assert_eq!(sent.status(), 200, "the answer is accepted wherever it lands");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_on_one_instance_is_answered_through_the_other_and_through_nginx() {
    if !installed(&["redis-server", "nginx"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    let ((_a, base_a), (_b, base_b)) = (instance(redis_port).await, instance(redis_port).await);
    let (_nginx, proxy) = behind_nginx(&base_a, &base_b).await;
    let stop = CancellationToken::new();

    // The worker's stream is on A; it answers on B.
    go_worker(&base_a, "worker", format!("{base_b}/response"), stop.clone()).await;
    // A caller on B: the request travels to A, down the stream; the answer comes back via B.
    let (status, body) = trigger(&base_b, "worker", "b2a").await;
    assert_eq!((status, &body["result"]), (200, &json!({ "echo": "b2a" })), "{body}");

    // Through nginx, round robin: callers and answers land on either instance.
    let other = CancellationToken::new();
    go_worker(&base_b, "helper", format!("{proxy}/response"), other.clone()).await;
    for n in 0..20 {
        for name in ["worker", "helper"] {
            let message = format!("m{n}");
            let (status, body) = trigger(&proxy, name, &message).await;
            assert_eq!(status, 200, "{name} {message}: {body}");
            assert_eq!(body["result"], json!({ "echo": message }), "its own answer: {body}");
        }
    }

    // An unknown client is unknown on every instance.
    let (status, body) = trigger(&proxy, "nobody", "x").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_client")));
    stop.cancel();
    other.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_redis_is_down_while_it_is_and_ready_once_it_is_back() {
    if !installed(&["redis-server"]) {
        return;
    }
    let redis_port = free_port();
    let mut redis_server = redis(redis_port).await;
    let (_chat, base, _data) = instance_of(redis_port, &["chat"]).await;
    let readyz = || async {
        let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    let until = |wanted: u16| async move {
        loop {
            let (status, body) = readyz().await;
            if status == wanted {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within("ready with Redis up", until(200)).await;
    redis_server.kill().await.unwrap();
    let body = within("not ready with Redis down", until(503)).await;
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    assert_eq!(body["not_ready"][0]["name"], "redis", "{body}");
    assert!(body["not_ready"][0]["error"].is_string(), "{body}");
    let _back = redis(redis_port).await;
    let body = within("ready again with Redis back", until(200)).await;
    assert_eq!(body["ready"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_sessions_answer_across_instances_and_the_cluster_recovers_when_redis_restarts() {
    if !installed(&["redis-server"]) {
        return;
    }
    let redis_port = free_port();
    let mut redis_server = redis(redis_port).await;
    let ((_a, base_a), (_b, base_b)) = (instance(redis_port).await, instance(redis_port).await);
    let stop = CancellationToken::new();

    // A native session on A (the core's own responder); its answers are POSTed to B.
    let answer = |request: Request| async move {
        Ok::<_, ErrorObject>(json!({ "echo": request.params.unwrap_or_default()["message"] }))
    };
    let responder = Responder::new(reqwest::Client::new(), base_a.clone()).client_id("native");
    tokio::spawn(responder.run(answer, stop.child_token()));
    let cross = || async {
        let (status, body) = trigger(&base_b, "native", "hello").await;
        status == 200 && body["result"] == json!({ "echo": "hello" })
    };
    within("the first cross-instance round trip", async {
        while !cross().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Redis goes away: B cannot reach A's session, and says so; A still serves its own.
    redis_server.kill().await.unwrap();
    let (status, body) = trigger(&base_b, "native", "hello").await;
    assert!(status == 404 || status == 503, "a clear refusal, not a hang: {status} {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    let (status, body) = trigger(&base_a, "native", "local").await;
    assert_eq!((status, &body["result"]), (200, &json!({ "echo": "local" })), "{body}");

    // Redis comes back (empty): the instances reconnect and list their sessions again.
    let _redis = redis(redis_port).await;
    let recovered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = tokio::spawn({
        let (recovered, base_b) = (recovered.clone(), base_b.clone());
        async move {
            loop {
                let (status, body) = trigger(&base_b, "native", "again").await;
                if status == 200 && body["result"] == json!({ "echo": "again" }) {
                    recovered.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    eventually("the cluster to recover", || recovered.load(std::sync::atomic::Ordering::SeqCst))
        .await;
    probe.await.unwrap();
    stop.cancel();
}

/// A chat message as (id, text), the two things these tests compare.
fn id_and_text(message: Value) -> (u64, String) {
    (message["id"].as_u64().unwrap(), message["text"].as_str().unwrap().to_owned())
}

/// The room's stream on `base`, resumed after `last` when given, read as `token`'s member.
async fn chat_stream(base: &str, room: &str, token: &str, last: Option<u64>) -> Stream {
    let mut request =
        reqwest::Client::new().get(format!("{base}/chat/rooms/{room}/events")).bearer_auth(token);
    if let Some(last) = last {
        request = request.header("last-event-id", last.to_string());
    }
    within("the chat stream to open", Stream::open_with(request)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_posted_to_one_instance_reaches_the_other_and_a_cut_reader_resumes_anywhere()
{
    if !installed(&["redis-server", "nginx"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    let ((_a, base_a, _data_a), (_b, base_b, _data_b)) = two_of(redis_port, &["chat"]).await;
    let (_nginx, proxy) = behind_nginx(&base_a, &base_b).await;

    // Ann joins on A, creating the room; Bob joins it on B, which lists it.
    let ann = join(&base_a, "lobby", "ann").await;
    let bob = join(&base_b, "lobby", "bob").await;
    let rooms: Value =
        reqwest::get(format!("{base_b}/chat/rooms")).await.unwrap().json().await.unwrap();
    assert_eq!(rooms["rooms"][0]["name"], "lobby", "{rooms}");

    // Posted to A, it reaches Bob's stream on B, under the same id.
    let mut on_b = chat_stream(&base_b, "lobby", &bob, None).await;
    // A member's first snapshot lists them, though Redis may not have heard of them yet.
    let own = next_named(&mut on_b, "presence").await;
    let listed = own["online"].as_array().is_some_and(|online| online.contains(&json!("bob")));
    assert!(listed, "Bob's own snapshot lists him: {own}");
    let mut on_a = chat_stream(&base_a, "lobby", &ann, None).await;
    // Who is online is the union of both instances: B counts Ann (on A) and Bob (on B), and
    // Ann's nick cannot be taken on B while she is online on A.
    // Each arrival is announced once its instance has told Redis, so after both announcements
    // reach B, B counts both.
    let mut joined = std::collections::BTreeSet::new();
    while joined.len() < 2 {
        let presence = next_named(&mut on_b, "presence").await;
        if let Some(nick) = presence["joined"].as_str() {
            joined.insert(nick.to_owned());
        }
    }
    assert_eq!(joined, ["ann".to_owned(), "bob".to_owned()].into());
    let rooms: Value =
        reqwest::get(format!("{base_b}/chat/rooms")).await.unwrap().json().await.unwrap();
    assert_eq!(rooms["rooms"][0]["online"], 2, "{rooms}");
    let taken = reqwest::Client::new()
        .post(format!("{base_b}/chat/rooms/lobby/join"))
        .json(&json!({ "nick": "Ann" }))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 409, "ann is online on A");
    let viewer_url = format!("{base_b}/chat/rooms/lobby/events");
    let mut viewer = within("a viewer on B", Stream::open(&viewer_url)).await;
    let snapshot = next_named(&mut viewer, "presence").await;
    assert_eq!(snapshot["online"], json!(["ann", "bob"]), "{snapshot}");

    let (status, first) = say(&base_a, "lobby", &ann, "hello from A", "m0").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        id_and_text(chat_message(&mut on_b).await),
        (first["id"].as_u64().unwrap(), "hello from A".into())
    );
    assert_eq!(id_and_text(chat_message(&mut on_a).await).1, "hello from A");
    // Typing on B shows on A.
    let typed = reqwest::Client::new()
        .post(format!("{base_b}/chat/rooms/lobby/typing"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), 202);
    assert_eq!(next_named(&mut on_a, "typing").await["nick"], "bob");

    // A browser's POST through nginx carries the proxy's origin: the instances accept it.
    let from_page = reqwest::Client::new()
        .post(format!("{proxy}/chat/rooms/lobby/join"))
        .header("origin", &proxy)
        .json(&json!({ "nick": "carol" }))
        .send()
        .await
        .unwrap();
    assert_eq!(from_page.status(), 201, "same origin through the proxy");

    // The same client_msg_id sent again to the other instance returns the original.
    let (status, again) = say(&base_b, "lobby", &ann, "hello from A", "m0").await;
    assert_eq!((status, &again["id"]), (200, &first["id"]), "{again}");

    // A's reader is cut; 30 messages are posted, alternately to A and B, while it is away.
    let last_seen = first["id"].as_u64().unwrap();
    drop(on_a);
    let mut sent = Vec::new();
    for n in 1..=30 {
        let (base, token) = if n % 2 == 0 { (&base_a, &ann) } else { (&base_b, &bob) };
        let (status, body) =
            say(base, "lobby", token, &format!("away {n}"), &format!("m{n}")).await;
        assert_eq!(status, 201, "{body}");
        sent.push((body["id"].as_u64().unwrap(), format!("away {n}")));
    }
    let ids: Vec<u64> = sent.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "one sequence across instances: {ids:?}");
    // Bob, connected all along on B, saw them all in order.
    for expected in &sent {
        assert_eq!(&id_and_text(chat_message(&mut on_b).await), expected);
    }

    // It comes back through nginx twice (round robin: once on each instance) with its
    // Last-Event-ID: each time exactly the missed messages, in order, then live ones.
    for round in 0..2 {
        let mut resumed = chat_stream(&proxy, "lobby", &ann, Some(last_seen)).await;
        for expected in &sent {
            assert_eq!(&id_and_text(chat_message(&mut resumed).await), expected, "round {round}");
        }
        let text = format!("live {round}");
        let (status, body) = say(&proxy, "lobby", &bob, &text, &format!("live{round}")).await;
        assert_eq!(status, 201, "{body}");
        let live = (body["id"].as_u64().unwrap(), text);
        assert_eq!(
            id_and_text(chat_message(&mut resumed).await),
            live,
            "no duplicate, nothing between"
        );
        assert_eq!(id_and_text(chat_message(&mut on_b).await), live);
        sent.push(live);
    }

    // History pages read the same from either instance.
    let page = |base: String| async move {
        let url = format!("{base}/chat/rooms/lobby/messages?limit=200");
        let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let (from_a, from_b) = (page(base_a.clone()).await, page(base_b.clone()).await);
    assert_eq!(from_a, from_b);
    assert_eq!(from_a.len(), 33, "m0, 30 while away, 2 live: {from_a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_keeps_every_acknowledged_message_across_a_redis_restart_and_recovers_live_delivery() {
    if !installed(&["redis-server"]) {
        return;
    }
    let redis_port = free_port();
    let redis_dir = tempfile::tempdir().unwrap();
    let mut redis_server = durable_redis(redis_port, redis_dir.path()).await;
    let ((_a, base_a, _data_a), (_b, base_b, _data_b)) = two_of(redis_port, &["chat"]).await;
    let ann = join(&base_a, "ops", "ann").await;
    let mut on_b = chat_stream(&base_b, "ops", &join(&base_b, "ops", "bob").await, None).await;

    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let (status, body) =
            say(&base_a, "ops", &ann, &format!("before {n}"), &format!("b{n}")).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(body["id"].as_u64().unwrap());
    }
    for id in &acknowledged {
        assert_eq!(id_and_text(chat_message(&mut on_b).await).0, *id);
    }

    // Redis is killed: a post is refused clearly (503 with Retry-After), never acknowledged.
    redis_server.kill().await.unwrap();
    let (status, body) = say(&base_a, "ops", &ann, "while down", "down").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("storage_unavailable")),
        "{body}"
    );

    // Redis restarts from its append-only file: every acknowledged message is there, the
    // instances resubscribe, and posts flow live again from A to B, continuing the same ids.
    let _redis = durable_redis(redis_port, redis_dir.path()).await;
    let posted = within("posting to work again", async {
        loop {
            let (status, body) = say(&base_a, "ops", &ann, "after", "after").await;
            if status == 201 || status == 200 {
                return body;
            }
            assert_eq!(status, 503, "{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let after = posted["id"].as_u64().unwrap();
    assert_eq!(after, acknowledged.last().unwrap() + 1, "the refused post took no id");
    // B's first command after the restart may find its link broken and answer 503, as a client
    // that retries after `Retry-After` would see.
    let url = format!("{base_b}/chat/rooms/ops/messages?limit=200");
    let history = within("B to read history again", async {
        loop {
            let response = reqwest::get(&url).await.unwrap();
            match response.status().as_u16() {
                200 => return response.json::<Value>().await.unwrap(),
                503 => tokio::time::sleep(Duration::from_millis(100)).await,
                other => panic!("{other}: {}", response.text().await.unwrap()),
            }
        }
    })
    .await;
    let ids: Vec<u64> =
        history["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    let mut expected = acknowledged.clone();
    expected.push(after);
    assert_eq!(ids, expected, "every acknowledged message, once, in order");
    // B's stream was on B all along; it gets the new message (its follower resubscribed, or
    // caught up from the log when the next id arrived).
    assert_eq!(id_and_text(chat_message(&mut on_b).await), (after, "after".to_owned()));
}

/// The token every instance of the apps that need one shares.
const EXEC_TOKEN: &str = "cluster-exec-token";

/// A GET of `url` with the shared token; its JSON body.
async fn authorized_get(url: String) -> Value {
    let response = reqwest::Client::new().get(url).bearer_auth(EXEC_TOKEN).send();
    within("a GET", response).await.unwrap().json().await.unwrap()
}

/// A POST of `body` to `url` with the shared token; its status and JSON body.
async fn authorized_post(url: String, body: Value) -> (u16, Value) {
    let response =
        reqwest::Client::new().post(url).bearer_auth(EXEC_TOKEN).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// Reads a run's stream until one `pipe` event's text contains `needle`; returns the ids seen.
async fn exec_until(stream: &mut Stream, wanted: &str, needle: &str) -> Vec<u64> {
    within(needle, async {
        let mut ids = Vec::new();
        loop {
            let event = stream.next().await.expect("the run's stream ended");
            ids.push(event.last_event_id.parse().unwrap());
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let text = data["text"].as_str().or(data["reason"].as_str()).unwrap_or_default();
            if event.event == wanted && text.contains(needle) {
                return ids;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_run_started_on_one_instance_is_watched_fed_and_stopped_from_the_other() {
    if !installed(&["redis-server", "nginx", "bwrap"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    let ((_a, base_a, _data_a), (_b, base_b, _data_b)) =
        two_of(redis_port, &["exec", "--token", EXEC_TOKEN]).await;
    let (_nginx, proxy) = behind_nginx(&base_a, &base_b).await;

    // Started on A.
    let code = "echo started; read line; echo \"got $line\"; exec sleep 600";
    let (status, started) =
        authorized_post(format!("{base_a}/exec/runs"), json!({ "language": "sh", "code": code }))
            .await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();

    // Watched from B: B forwards to A, and the stream comes through as it is written.
    let events = |base: &str| {
        reqwest::Client::new().get(format!("{base}/exec/runs/{id}/events")).bearer_auth(EXEC_TOKEN)
    };
    let mut on_b = within("B's stream", Stream::open_with(events(&base_b))).await;
    exec_until(&mut on_b, "stdout", "started").await;

    // Fed from B: the program reads it on A.
    let (status, written) =
        authorized_post(format!("{base_b}/exec/runs/{id}/stdin"), json!({ "data": "hello\n" }))
            .await;
    assert_eq!((status, written["written"].as_u64()), (200, Some(6)), "{written}");
    exec_until(&mut on_b, "stdout", "got hello").await;

    // Listed on B, though it runs on A.
    let listed: Value = authorized_get(format!("{base_b}/exec/runs")).await;
    let ids: Vec<&str> =
        listed["runs"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()], "{listed}");

    // Through nginx (either instance), a viewer gets the whole output from the start, replayed.
    for _ in 0..2 {
        let mut viewer = within("a viewer through nginx", Stream::open_with(events(&proxy))).await;
        let ids = exec_until(&mut viewer, "stdout", "got hello").await;
        assert_eq!(ids[0], 1, "from the start: {ids:?}");
    }

    // Stopped from B: the exit reaches B's stream.
    let (status, body) =
        authorized_post(format!("{base_b}/exec/runs/{id}/signal"), json!({ "signal": "kill" }))
            .await;
    assert_eq!(status, 202, "{body}");
    exec_until(&mut on_b, "exit", "killed_by_user").await;

    // A run nobody owns is unknown everywhere; without the token, B refuses before forwarding.
    let (status, body) =
        authorized_post(format!("{base_b}/exec/runs/nope/stdin"), json!({ "data": "x" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_run")), "{body}");
    let anonymous = reqwest::Client::new()
        .post(format!("{base_b}/exec/runs/{id}/signal"))
        .json(&json!({ "signal": "kill" }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // A workflow started on A waits for approval; B shows its stream, lists it and approves it.
    let gated = json!({"name": "release", "steps": [
        {"name": "build", "language": "sh", "code": "echo built"},
        {"name": "deploy", "approval": {"prompt": "Ship it?", "expires_s": 600},
         "argv": ["/bin/echo", "deployed"]},
    ]});
    let (status, created) = authorized_post(format!("{base_a}/exec/workflows"), gated).await;
    assert_eq!(status, 201, "{created}");
    let workflow = created["id"].as_str().unwrap().to_owned();
    let request = reqwest::Client::new()
        .get(format!("{base_b}/exec/workflows/{workflow}/events"))
        .bearer_auth(EXEC_TOKEN);
    let mut steps = within("the workflow's stream through B", Stream::open_with(request)).await;
    next_named(&mut steps, "approval_requested").await;
    let listed: Value = authorized_get(format!("{base_b}/exec/workflows")).await;
    assert_eq!(listed["workflows"][0]["id"], workflow.as_str(), "{listed}");
    let approve = json!({ "decision": "approve", "comment": "from B" });
    let (status, decided) =
        authorized_post(format!("{base_b}/exec/workflows/{workflow}/approvals/1"), approve).await;
    assert_eq!((status, decided["decision"].as_str()), (200, Some("approved")), "{decided}");
    let finished = next_named(&mut steps, "workflow_finished").await;
    assert_eq!(finished["outcome"], "succeeded", "{finished}");
}

/// `GET /dashboard/instances` on `base`, once it lists `count` instances (each says where it is
/// shortly after it starts, and nothing announces it: the list is asked again until then).
async fn instances_listed(base: &str, count: usize) -> Value {
    within("the instances to be listed", async {
        loop {
            let listed: Value = authorized_get(format!("{base}/dashboard/instances")).await;
            if listed["instances"].as_array().is_some_and(|all| all.len() == count) {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_planted_in_redis_names_no_instance_and_gets_no_request() {
    if !installed(&["redis-server"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    // Someone who can write to Redis, but has not the token, says an instance "evil" answers
    // at a port of theirs: nothing may ever connect there.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}")).unwrap();
    let mut planting = client.get_multiplexed_async_connection().await.unwrap();
    let until = std::time::SystemTime::now() + Duration::from_secs(3600);
    let until = until.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let _: () = redis::pipe()
        .set("sse:address:evil", &trap_url)
        .ignore()
        .zadd("sse:addresses", format!("evil {trap_url}"), until)
        .ignore()
        .query_async(&mut planting)
        .await
        .unwrap();
    let (_a, base, _data) = instance_of(redis_port, &["dashboard", "--token", EXEC_TOKEN]).await;
    // The instance lists itself, signed, and not the planted one.
    let listed = instances_listed(&base, 1).await;
    let names: Vec<&str> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["instance"].as_str())
        .collect();
    assert_eq!(names, [listed["this"].as_str().unwrap()], "{listed}");
    // Asked for the planted instance's machine, it answers itself that there is none.
    let response = reqwest::Client::new()
        .get(format!("{base}/dashboard/audit?instance=evil"))
        .bearer_auth(EXEC_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "unknown_instance", "{refused}");
    use futures_util::FutureExt as _;
    assert!(trap.accept().now_or_never().is_none(), "a request reached the planted address");
}

fn made_by(response: &reqwest::Response) -> String {
    response.headers()["x-sse-apps-instance"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_viewer_on_one_instance_watches_and_controls_any_instances_machine() {
    if !installed(&["redis-server"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    let ((_a, base_a, _data_a), (_b, base_b, _data_b)) =
        two_of(redis_port, &["dashboard", "--token", EXEC_TOKEN]).await;
    let http = reqwest::Client::new();
    let get = |url: String| http.get(url).bearer_auth(EXEC_TOKEN).send();

    // B lists both instances once both have said where they are.
    let listed = instances_listed(&base_b, 2).await;
    let this_b = listed["this"].as_str().unwrap().to_owned();
    let a = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["address"] == base_a.as_str())
        .expect("A is listed at its address");
    let this_a = a["instance"].as_str().unwrap().to_owned();
    assert_ne!(this_a, this_b);

    // A viewer on B watches A's machine: the stream is A's, from its snapshot on.
    let request = http
        .get(format!("{base_b}/dashboard/events?instance={this_a}"))
        .bearer_auth(EXEC_TOKEN)
        .send();
    let response = within("A's stream through B", request).await.unwrap();
    assert_eq!(made_by(&response), this_a);
    let mut stream = Stream::from_response(response);
    let snapshot = next_named(&mut stream, "snapshot").await;
    assert!(snapshot["history"].is_array(), "{snapshot}");
    // Without a name, B's own.
    let own = get(format!("{base_b}/dashboard/events")).await.unwrap();
    assert_eq!((own.status().as_u16(), made_by(&own)), (200, this_b.clone()));

    // Commands and the audit log for A, sent to B, are A's: A refuses a bad command itself and
    // records it in its own audit log, not B's.
    let refused = http
        .post(format!("{base_b}/dashboard/commands?instance={this_a}"))
        .bearer_auth(EXEC_TOKEN)
        .json(&json!({ "action": "renice", "pid": 0, "nice": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(made_by(&refused), this_a);
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let audit_a: Value =
        authorized_get(format!("{base_b}/dashboard/audit?instance={this_a}")).await;
    let audit_b: Value = authorized_get(format!("{base_b}/dashboard/audit")).await;
    assert_eq!(audit_a["entries"].as_array().map(Vec::len), Some(1), "{audit_a}");
    assert_eq!(audit_b["entries"].as_array().map(Vec::len), Some(0), "{audit_b}");

    // A name no instance has is refused clearly.
    let unknown = get(format!("{base_b}/dashboard/events?instance=nobody")).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_instance");
}

/// A POST to `{base}/sampling/mcp` in `session` (none for `initialize`).
async fn mcp_post(base: &str, session: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/sampling/mcp"))
        .bearer_auth(EXEC_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    within("an MCP POST", request.send()).await.unwrap()
}

/// The next JSON-RPC request (with an id and a method) on an MCP stream.
async fn next_rpc_request(stream: &mut Stream) -> Value {
    within("a request down the stream", async {
        loop {
            let event = stream.next().await.expect("the stream ended");
            let message: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if message.get("id").is_some() && message.get("method").is_some() {
                return message;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampling_request_waiting_on_one_instance_is_answered_through_the_other_and_every_console_sees_it()
 {
    if !installed(&["redis-server"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    let ((_a, base_a, _data_a), (_b, base_b, _data_b)) =
        two_of(redis_port, &["sampling", "--token", EXEC_TOKEN]).await;

    // An MCP client opens its session on A.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
        "clientInfo": {"name": "worker", "version": "1.0"}}});
    let opened = mcp_post(&base_a, None, init).await;
    assert_eq!((opened.status().as_u16(), made_by(&opened).is_empty()), (200, false));
    let session = opened.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let instance_a = made_by(&opened);
    // Its later messages land on B (as a balancer may send them) and reach its session on A.
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let accepted = mcp_post(&base_b, Some(&session), initialized).await;
    assert_eq!((accepted.status().as_u16(), made_by(&accepted)), (202, instance_a.clone()));

    // Its stream, opened through B, is the session's stream on A.
    let stream = reqwest::Client::new()
        .get(format!("{base_b}/sampling/mcp"))
        .bearer_auth(EXEC_TOKEN)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25");
    let mut stream = within("the session's stream through B", Stream::open_with(stream)).await;

    // A console on B lists the client connected to A, and a request sent to it by hand through
    // B is sent by A, where the client is, and waits there for the client's answer...
    let console =
        reqwest::Client::new().get(format!("{base_b}/sampling/events")).bearer_auth(EXEC_TOKEN);
    let mut console = within("B's console stream", Stream::open_with(console)).await;
    let snapshot: Value =
        serde_json::from_str(&within("B's snapshot", console.next()).await.unwrap().data).unwrap();
    let listed: Vec<&str> =
        snapshot["clients"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(listed, ["worker"], "{snapshot}");
    let body = json!({"client": "worker", "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 10});
    let (status, sent) = authorized_post(format!("{base_b}/sampling/requests"), body).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    let asked = next_rpc_request(&mut stream).await;
    assert_eq!(asked["method"], "sampling/createMessage");
    // (B's console saw it go out.)
    assert_eq!(next_named(&mut console, "request_sent").await["id"], id.as_str());

    // ... and the answer, POSTed to B, completes it on A.
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"role": "assistant",
        "content": {"type": "text", "text": "hello from the model"}, "model": "m", "stopReason": "endTurn"}});
    let answered = mcp_post(&base_b, Some(&session), answer.clone()).await;
    assert_eq!(answered.status(), 202);
    let finished = next_named(&mut console, "request_finished").await;
    assert_eq!(finished["id"], id.as_str(), "{finished}");
    // B answers for the request A holds, alone and in its list.
    let finished: Value = authorized_get(format!("{base_b}/sampling/requests/{id}")).await;
    assert_eq!(finished["state"], "done", "{finished}");
    assert_eq!(finished["result"]["content"]["text"], "hello from the model");
    let listed: Value = authorized_get(format!("{base_b}/sampling/requests")).await;
    assert_eq!(listed["requests"][0]["id"], id.as_str(), "{listed}");
    let clients: Value = authorized_get(format!("{base_b}/sampling/clients")).await;
    assert_eq!(clients["clients"][0]["name"], "worker", "{clients}");
    // A client no instance has is unknown everywhere.
    let nobody = json!({"client": "nobody", "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 10});
    let (status, refused) = authorized_post(format!("{base_b}/sampling/requests"), nobody).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (404, Some("unknown_client")));

    // The same answer again is refused by A, the instance that knows it was answered.
    let repeated = mcp_post(&base_b, Some(&session), answer).await;
    assert!(repeated.status().is_client_error(), "{}", repeated.status());
    // A session no instance holds is unknown on B too.
    let unknown = mcp_post(
        &base_b,
        Some("no-such-session"),
        json!({"jsonrpc": "2.0", "method": "ping", "id": 9}),
    )
    .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_bench_runs_two_instances_through_redis_and_delivers_everything() {
    if !installed(&["redis-server"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    let url = format!("redis://127.0.0.1:{redis_port}");
    let args = [
        "bench",
        "chat",
        "--members",
        "40",
        "--rate",
        "20",
        "--duration",
        "2s",
        "--no-pin",
        "--redis",
        &url,
    ];
    let run = support::binary().args(args).stderr(Stdio::piped()).output();
    let output = within("the bench", run).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("two instances through Redis"), "{stdout}");
    assert!(stdout.contains("delivered 100.00%"), "every message to every member: {stdout}");
    assert!(stdout.contains("resyncs 0"), "{stdout}");
}

/// `sse-apps sampling --token TOKEN` on its own: no Redis, nothing shared with any other
/// instance but what the token gives.
async fn lone_sampling(token: &str) -> (Child, String, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut command = support::binary();
    command
        .args(["sampling", "--addr", "127.0.0.1:0", "--token", token, "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::null());
    let (child, base) = support::started(command).await;
    (child, base, data)
}

/// A 2026-07-28 `tools/call` of `classify_sentiment` to `{base}/sampling/mcp`, with `more`
/// params (the answers and the state of a retry); its JSON-RPC answer.
async fn modern_call(base: &str, token: &str, more: Value) -> Value {
    let mut params = json!({"name": "classify_sentiment", "arguments": {"text": "Both instances."},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}});
    params.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
    let request = reqwest::Client::new()
        .post(format!("{base}/sampling/mcp"))
        .bearer_auth(token)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "classify_sentiment")
        .json(&body);
    let response = within("a 2026-07-28 call", request.send()).await.unwrap();
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_tool_call_begun_on_one_instance_finishes_on_another_with_nothing_shared_but_the_token()
 {
    if !installed(&["nginx"]) {
        return;
    }
    const TOKEN: &str = "cluster-modern-token";
    let (_a, base_a, _data_a) = lone_sampling(TOKEN).await;
    let (_b, base_b, _data_b) = lone_sampling(TOKEN).await;
    let answer = |state: &Value| {
        json!({"requestState": state, "inputResponses": {"sample": {"role": "assistant",
            "content": {"type": "text", "text": "positive"}, "model": "m"}}})
    };

    // The first round on A, the retry on B: B verifies A's state with the key both derive from
    // the token, and finishes the call.
    let first = modern_call(&base_a, TOKEN, json!({})).await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let state = &first["result"]["requestState"];
    let done = modern_call(&base_b, TOKEN, answer(state)).await;
    assert_eq!(done["result"]["content"][0]["text"], "positive", "{done}");
    // B's console records say so: asked on one instance, answered on the other.
    let rounds: Value = reqwest::Client::new()
        .get(format!("{base_b}/sampling/rounds"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answered = rounds["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "tool_round" && !r["answer"].is_null())
        .cloned()
        .unwrap();
    assert_eq!(answered["answer"], "m: positive");
    assert_ne!(answered["asked_on"], answered["answered_on"], "{answered}");

    // Through the shipped nginx (round robin, nothing sticky), round after round.
    let (_nginx, proxy) = behind_nginx(&base_a, &base_b).await;
    for _ in 0..2 {
        let first = modern_call(&proxy, TOKEN, json!({})).await;
        let done = modern_call(&proxy, TOKEN, answer(&first["result"]["requestState"])).await;
        assert_eq!(done["result"]["content"][0]["text"], "positive", "{done}");
    }

    // An instance with another token has another key: A's state does not verify there.
    let (_c, base_c, _data_c) = lone_sampling("another-token").await;
    let refused = modern_call(&base_c, "another-token", answer(state)).await;
    assert_eq!(refused["error"]["data"]["reason"], "state_tampered", "{refused}");
}
