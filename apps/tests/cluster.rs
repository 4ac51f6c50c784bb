//! Two instances sharing one Redis, behind the repository's nginx configuration: a request waiting
//! on one instance is answered through the other, in both of the server's formats, and the
//! instances recover when Redis restarts.
//!
//! Needs Debian's `redis-server` and `nginx-light`, which `.ci/run` installs; each test starts its
//! own on free loopback ports. In CI a missing one fails the test; elsewhere it is skipped with a
//! notice.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sse_core::client::Responder;
use sse_core::wire::jsonrpc::{ErrorObject, Request};
use support::{Stream, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A watchdog for steps that must finish; not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WATCHDOG, future).await.unwrap_or_else(|_| panic!("{what} did not finish"))
}

/// Whether the programs are installed; outside CI, a missing one skips the test with a notice.
fn installed(programs: &[&str]) -> bool {
    let missing: Vec<&&str> = programs
        .iter()
        .filter(|p| {
            !Path::new(&format!("/usr/sbin/{p}")).exists()
                && !Path::new(&format!("/usr/bin/{p}")).exists()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI must have {missing:?} (.ci/run installs them)");
    eprintln!(
        "NOTICE: skipping: {missing:?} not installed (apt-get install redis-server nginx-light)"
    );
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis server on `port`, without persistence, killed when dropped.
async fn redis(port: u16) -> Child {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    within("Redis to start", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Ready to accept connections") {
                return;
            }
        }
        panic!("redis-server exited");
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// nginx, stopped when dropped. SIGTERM, not the SIGKILL of `kill_on_drop`: a killed master
/// leaves its worker running.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
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
    let child =
        Nginx(Command::new("nginx").arg("-p").arg(prefix).arg("-c").arg(&path).spawn().unwrap());
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

/// `sse-apps bidi-server` as one instance of the cluster on `redis_port`.
async fn instance(redis_port: u16) -> (Child, String) {
    let mut command = support::binary();
    command
        .args(["bidi-server", "--addr", "127.0.0.1:0", "--timeout", "20s", "--redis"])
        .arg(format!("redis://127.0.0.1:{redis_port}"))
        .stderr(Stdio::null());
    support::started(command).await
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

async fn trigger(base: &str, name: &str, message: &str) -> (u16, Value) {
    let url = format!("{base}/trigger?client_id={name}&message={message}");
    let response = within("a trigger", reqwest::Client::new().post(url).send()).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_on_one_instance_is_answered_through_the_other_and_through_nginx() {
    if !installed(&["redis-server", "nginx"]) {
        return;
    }
    let redis_port = free_port();
    let _redis = redis(redis_port).await;
    let ((_a, base_a), (_b, base_b)) = (instance(redis_port).await, instance(redis_port).await);
    let prefix = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let upstreams = [base_a.trim_start_matches("http://"), base_b.trim_start_matches("http://")];
    let _nginx = nginx(proxy_port, upstreams, prefix.path()).await;
    let proxy = format!("http://127.0.0.1:{proxy_port}");
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
