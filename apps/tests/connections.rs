//! The connection loop every server runs: slow request heads are cut off while long streams
//! stay open, a slow request body gets 408, a handler that panics answers 500 in the house error shape, and running out of
//! file descriptors is logged and survived.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod support;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use sse_apps::basic::{self, BasicConfig};
use sse_apps::server::{self, ServerConfig};
use sse_core::Core;
use sse_core::edge::JsonBody;
use sse_core::edge::auth::Token;
use sse_core::edge::connections::ConnectionSettings;
use sse_core::edge::forwarded::TrustedProxies;
use sse_core::edge::streams::StreamCap;
use sse_core::testing::{Stream, WATCHDOG, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Serves `build`'s routes with the given connection settings; returns the base URL.
async fn serve(settings: ConnectionSettings, build: impl FnOnce(Core) -> Router) -> (String, Core) {
    serve_guarded(settings, server::Guards::default(), build).await
}

/// The same, behind `guards`, in place of those the default flags give: the server the binary
/// assembles, with these deadlines and guards.
async fn serve_guarded(
    settings: ConnectionSettings,
    guards: server::Guards,
    build: impl FnOnce(Core) -> Router,
) -> (String, Core) {
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Token::open());
    let mut server = server::build(config, |core| Ok(build(core))).unwrap();
    server.guards = server::Guards { token: server.guards.token.clone(), ..guards };
    server.connections = ConnectionSettings {
        header_timeout: settings.header_timeout,
        body_timeout: settings.body_timeout,
        ..server.connections
    };
    let app = support::serve(server);
    (app.base, app.core)
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off_while_streams_stay_open() {
    let settings =
        ConnectionSettings { header_timeout: Duration::from_millis(500), ..Default::default() };
    let config = BasicConfig { count: 0, interval: Duration::from_millis(50) };
    let (base, _core) = serve(settings, |core| basic::router(core, config)).await;

    // A stream opened first outlives the header deadline many times over.
    let mut stream = Stream::open(&format!("{base}/events")).await;
    stream.take(1).await;

    // Half a head, then nothing: the server closes the connection.
    let mut slow = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WATCHDOG, slow.read_to_end(&mut rest)).await;
    let read = closed.expect("the server never cut the slow client off");
    assert!(read.is_err() || !String::from_utf8_lossy(&rest).contains("200 OK"), "{rest:?}");

    // A connection that sends nothing, half of HTTP/2's preface, or all of it and no request,
    // is closed too (hyper's own deadline starts only with a head).
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for sent in [&b""[..], &preface[..10], &preface[..]] {
        let mut idle = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
        idle.write_all(sent).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(WATCHDOG, idle.read_to_end(&mut rest)).await;
        // An end of file or a reset: closed either way.
        let _ =
            closed.unwrap_or_else(|_| panic!("a connection that sent {sent:?} was never closed"));
    }

    // The stream kept going through all of that, and new requests are served.
    let events = stream.take(3).await;
    assert!(events.iter().all(|e| !e.last_event_id.is_empty()), "{events:?}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

/// An HTTP/2 connection (cleartext, prior knowledge) whose end can be awaited: the handle ends
/// with `Ok` when the server closed it cleanly (GOAWAY).
async fn http2_connection(
    addr: &str,
) -> (hyper::client::conn::http2::SendRequest<String>, tokio::task::JoinHandle<hyper::Result<()>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let executor = hyper_util::rt::TokioExecutor::new();
    let (sender, connection) = hyper::client::conn::http2::handshake(executor, io).await.unwrap();
    (sender, tokio::spawn(connection))
}

fn http2_get(path: &str) -> http::Request<String> {
    let uri = format!("http://127.0.0.1{path}");
    http::Request::get(uri).version(http::Version::HTTP_2).body(String::new()).unwrap()
}

/// Reads body frames until `count` events have arrived.
async fn read_events(body: &mut hyper::body::Incoming, count: usize) {
    use http_body::Body as _;
    let mut seen = 0;
    while seen < count {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx));
        let frame = frame.await.expect("the stream ended").unwrap();
        let data = frame.into_data().unwrap_or_default();
        seen += String::from_utf8_lossy(&data).matches("data:").count();
    }
}

#[tokio::test]
async fn an_http2_connection_with_nothing_in_progress_is_closed_and_one_with_a_stream_is_not() {
    let settings =
        ConnectionSettings { header_timeout: Duration::from_millis(300), ..Default::default() };
    let config = BasicConfig { count: 0, interval: Duration::from_millis(50) };
    let (base, _core) = serve(settings, |core| basic::router(core, config)).await;
    let addr = base.trim_start_matches("http://");

    // One request answered, then nothing: the server ends the connection with GOAWAY.
    let (mut sender, closed) = http2_connection(addr).await;
    let health = sender.send_request(http2_get("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    drop(health);
    let ended = tokio::time::timeout(WATCHDOG, closed).await;
    let ended = ended.expect("an idle HTTP/2 connection was never closed").unwrap();
    assert!(ended.is_ok(), "closed uncleanly: {ended:?}");

    // A stream keeps its connection open past the deadline many times over: 20 events come
    // 50 ms apart, three times the 300 ms a connection may have nothing in progress.
    let (mut sender, closed) = http2_connection(addr).await;
    let mut stream = sender.send_request(http2_get("/events")).await.unwrap();
    assert_eq!(stream.status(), 200);
    read_events(stream.body_mut(), 20).await;
    assert!(!closed.is_finished(), "a connection with a stream open was closed");

    // Once the stream is let go, the connection has nothing in progress and is closed too.
    drop(stream);
    let ended = tokio::time::timeout(WATCHDOG, closed).await;
    let ended = ended.expect("the connection of a closed stream was never closed").unwrap();
    assert!(ended.is_ok(), "closed uncleanly: {ended:?}");
}

#[tokio::test]
async fn an_idle_http2_client_that_never_acknowledges_goaway_is_dropped() {
    let settings =
        ConnectionSettings { header_timeout: Duration::from_millis(300), ..Default::default() };
    let (base, _core) = serve(settings, |core| basic::router(core, BasicConfig::default())).await;
    let mut peer = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    // HTTP/2 by hand: the preface, empty SETTINGS, and one GET /healthz (HPACK: GET, http, a
    // literal :path); then the client writes nothing more, so the PING that follows the server's
    // GOAWAY is never answered, and h2 would hold the connection until it is.
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let block = [&[0x82, 0x86, 0x44, 8][..], b"/healthz"].concat();
    let length = u8::try_from(block.len()).unwrap();
    bytes.extend([0, 0, length, 0x1, 0x5, 0, 0, 0, 1]);
    bytes.extend(block);
    peer.write_all(&bytes).await.unwrap();
    // Pings every 20 s would drop it too, after 40 s; the drain deadline does it a deadline
    // after the GOAWAY. The bound below tells the two apart; it is no speed check.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), peer.read_to_end(&mut rest)).await;
    closed.expect("a client that never acknowledged GOAWAY kept its connection").unwrap();
    assert!(rest.windows(4).any(|w| w == [0, 0, 0x8, 0x7]), "a GOAWAY frame was sent first");
}

#[tokio::test]
async fn a_client_trickling_its_request_body_gets_408_and_its_connection_closed() {
    async fn echo(JsonBody(value): JsonBody<Value>) -> axum::Json<Value> {
        axum::Json(value)
    }
    let settings =
        ConnectionSettings { body_timeout: Duration::from_millis(500), ..Default::default() };
    let (base, _core) =
        serve(settings, |_| Router::new().route("/echo", axum::routing::post(echo))).await;
    let addr = base.trim_start_matches("http://").to_owned();

    // A whole head announcing 100 bytes, then 7 of them: the handler gives up on the rest.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let head = "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    slow.write_all(format!("{head}Content-Length: 100\r\n\r\n{{\"a\": 1").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WATCHDOG, slow.read_to_end(&mut answer)).await;
    read.expect("the server never answered the slow body").unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");

    // A body that comes whole is answered as ever.
    let echoed: Value = reqwest::Client::new()
        .post(format!("{base}/echo"))
        .json(&serde_json::json!({"a": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed, serde_json::json!({"a": 1}));
}

#[tokio::test]
async fn a_handler_that_panics_answers_500_in_the_house_shape_and_the_server_goes_on() {
    async fn boom() -> &'static str {
        panic!("internal detail 4711")
    }
    let routes = |_core| Router::new().route("/boom", get(boom));
    let (base, _core) = serve(ConnectionSettings::default(), routes).await;
    let response = reqwest::get(format!("{base}/boom")).await.unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal_error");
    assert!(!body.to_string().contains("4711"), "no details leak: {body}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn past_the_per_client_cap_the_oldest_stream_closes_and_the_newer_ones_go_on() {
    let guards = server::Guards { streams: StreamCap::new(2), ..server::Guards::default() };
    let config = BasicConfig { count: 0, interval: Duration::from_millis(20) };
    let build = |core| basic::router(core, config);
    let (base, core) = serve_guarded(ConnectionSettings::default(), guards, build).await;
    let url = format!("{base}/events");

    let mut oldest = Stream::open(&url).await;
    oldest.take(1).await;
    let mut middle = Stream::open(&url).await;
    let mut newest = Stream::open(&url).await;

    // The third stream from this address closed the first: it ends.
    let ended = tokio::time::timeout(WATCHDOG, async { while oldest.next().await.is_some() {} });
    ended.await.expect("the oldest stream was closed");
    middle.take(2).await;
    newest.take(2).await;
    let two_open = || core.metrics.render().contains("sse_streams_open 2");
    sse_core::testing::eventually("two streams open on the server", two_open).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_cap_and_loopback_is_spared() {
    let proxies = TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
    let cap = StreamCap::new(2).unwrap().behind(proxies).sparing_loopback();
    let guards = server::Guards { streams: Some(cap), ..server::Guards::default() };
    let config = BasicConfig { count: 0, interval: Duration::from_millis(20) };
    let build = |core| basic::router(core, config);
    let (base, core) = serve_guarded(ConnectionSettings::default(), guards, build).await;
    let url = format!("{base}/events");
    let http = reqwest::Client::new();
    let forwarded_for =
        |client: &str| http.get(&url).header("x-forwarded-for", format!("{client}, 127.0.0.1"));

    // Three streams of one client behind the proxy: its oldest closes.
    let mut oldest = Stream::open_with(forwarded_for("203.0.113.1")).await;
    oldest.take(1).await;
    let _second = Stream::open_with(forwarded_for("203.0.113.1")).await;
    let _third = Stream::open_with(forwarded_for("203.0.113.1")).await;
    let ended = tokio::time::timeout(WATCHDOG, async { while oldest.next().await.is_some() {} });
    ended.await.expect("the forwarded client's oldest stream was closed");
    // Another client behind the same proxy, and this machine's own program on another loopback
    // address (not the proxy): their own budgets, and the local one none at all.
    let mut other = Vec::new();
    for _ in 0..2 {
        other.push(Stream::open_with(forwarded_for("203.0.113.2")).await);
    }
    let local_client =
        reqwest::Client::builder().local_address("127.0.0.2".parse().ok()).build().unwrap();
    let mut local = Vec::new();
    for _ in 0..5 {
        local.push(Stream::open_with(local_client.get(&url)).await);
    }
    for stream in other.iter_mut().chain(local.iter_mut()) {
        stream.take(2).await;
    }
    let nine_open = || core.metrics.render().contains("sse_streams_open 9");
    sse_core::testing::eventually("nine streams open on the server", nine_open).await;
    // The proxy itself, forwarding nobody's address (or a client's own Forwarded header, which
    // it does not write): counted as the proxy, never spared as loopback.
    let mut first = Stream::open_with(http.get(&url).header("forwarded", "for=198.51.100.9")).await;
    first.take(1).await;
    let _more: Vec<Stream> =
        futures_util::future::join_all((0..2).map(|_| Stream::open_with(http.get(&url)))).await;
    let ended = tokio::time::timeout(WATCHDOG, async { while first.next().await.is_some() {} });
    ended.await.expect("the proxy's own oldest stream was closed");
}

#[tokio::test]
async fn the_go_originals_harness_of_64_responders_runs_against_the_defaults() {
    // As its load harness does: 64 responder streams from one loopback address, default flags.
    let mut command = support::binary();
    command.args(["bidi-server", "--addr", "127.0.0.1:0"]).stderr(std::process::Stdio::null());
    let (_server, base) = support::started(command).await;
    let mut streams = Vec::new();
    for n in 0..64 {
        let mut stream = Stream::open(&format!("{base}/events?client_id=worker{n}")).await;
        stream.take(1).await;
        streams.push(stream);
    }
    let metrics = format!("{base}/metrics");
    let all_open = || async {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        text.contains("sse_streams_open 64")
    };
    tokio::time::timeout(WATCHDOG, async {
        while !all_open().await {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("all 64 streams stay open");
    // The first one opened still gets the server's request and its answer comes back.
    let trigger =
        tokio::spawn(reqwest::get(format!("{base}/trigger?client_id=worker0&message=hello")));
    let request = within("the request", streams[0].take(1)).await.pop().unwrap();
    let request: Value = serde_json::from_str(&request.data).unwrap();
    let answered = reqwest::Client::new()
        .post(format!("{base}/response"))
        .header("client-id", "worker0")
        .json(&serde_json::json!({"id": request["id"], "result": "from worker0"}))
        .send()
        .await
        .unwrap();
    assert!(answered.status().is_success(), "{}", answered.status());
    let triggered = within("the trigger", trigger).await.unwrap().unwrap();
    assert_eq!(triggered.status(), 200);
    assert!(triggered.text().await.unwrap().contains("from worker0"));
}

#[tokio::test]
async fn out_of_descriptors_accept_fails_loudly_and_the_server_recovers_when_they_free() {
    use tokio::io::AsyncBufReadExt;
    // The real binary with only 32 descriptors, so a few dozen connections exhaust them.
    let mut command = tokio::process::Command::new("prlimit");
    command
        .args(["--nofile=32:32", "--", env!("CARGO_BIN_EXE_sse-apps"), "basic-server"])
        .args(["--addr", "127.0.0.1:0", "--max-streams-per-client", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let (mut server, base) = support::started(command).await;
    let mut log = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = base.trim_start_matches("http://").to_owned();

    // Streams that stay open hold a descriptor each; the kernel queues the ones not accepted.
    let mut held = Vec::new();
    for _ in 0..48 {
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        socket.write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        held.push(socket);
    }
    let said = tokio::time::timeout(WATCHDOG, async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("cannot accept connections") {
                return line;
            }
        }
        panic!("the server's log ended without reporting the accept error");
    })
    .await
    .expect("the accept error is logged");
    assert!(said.contains("ERROR") && said.contains("Too many open files"), "{said}");
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });

    // Descriptors free up: the server is still there and serves new requests and streams.
    drop(held);
    let health = tokio::time::timeout(WATCHDOG, reqwest::get(format!("{base}/healthz")))
        .await
        .expect("health answers")
        .unwrap();
    assert_eq!(health.status(), 200);
    let mut stream = Stream::open(&format!("{base}/events")).await;
    let first = tokio::time::timeout(WATCHDOG, stream.next()).await.unwrap().unwrap();
    assert!(first.data.starts_with("Event"), "{}", first.data);
    assert!(server.try_wait().unwrap().is_none(), "the server is still running");
}
