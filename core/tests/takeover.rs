//! Streams that take their socket over from hyper: the bytes on the wire are exactly what HTTP/1.1
//! (chunked) and HTTP/1.0 (until close) promise, a stream joining while frames are in flight gets
//! each one exactly once, a reader that stops reading gets `resync`, keep-alives still flow, a
//! client hanging up or a shutdown frees the stream, and HTTP/2 streams stay with hyper. A
//! session's stream takes its socket too: a request sent to it is on the wire when `send`
//! returns, a reconnect resumes after what the taken stream was handed, and closing the session
//! ends the stream.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use sse_core::hub::{Resume, TopicConfig};
use sse_core::session::JsonRpcEvents;
use sse_core::stream::{LastEventId, LiveResponse};
use sse_core::testing::{Stream, eventually, serve};
use sse_core::wire::{Event, Parser};
use sse_core::{Core, CoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn news(State(core): State<Core>, LastEventId(last): LastEventId) -> Response {
    let subscription =
        core.hub.topic("news").subscribe(&Resume::from_last_event_id(last.as_deref()));
    LiveResponse::new(subscription)
        .prelude(vec![Event::new().event("hello").data("").encode()])
        .into_response(&core.streams, &core.metrics)
}

async fn server(config: CoreConfig) -> (String, Core) {
    let core = Core::new(config);
    let app = Router::new().route("/news", get(news)).with_state(core.clone());
    let app = app.merge(sse_core::rpc::http::routes(core.clone()));
    let (base, _stop) = serve(app).await;
    (base, core)
}

/// How many streams the sweeper writes to directly, from `/metrics`.
fn direct_streams(core: &Core) -> u64 {
    let text = core.metrics.render();
    let line = text.lines().find(|l| l.starts_with("sse_streams_direct ")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A raw client of `/news`: the request line's version decides the body's framing.
async fn raw_get(base: &str, version: &str, socket: TcpSocket) -> (TcpStream, Vec<u8>) {
    raw_get_path(base, "/news", version, socket).await
}

/// A raw client of `path`; returns the socket and what came after the response head.
async fn raw_get_path(
    base: &str,
    path: &str,
    version: &str,
    socket: TcpSocket,
) -> (TcpStream, Vec<u8>) {
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} {version}\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed before the response head");
        received.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
    assert!(head.starts_with(&format!("{} 200", version.to_lowercase())), "{head}");
    (stream, received[end..].to_vec())
}

/// A stream of `/news` on a server with `config`, taken over, whose reader has a small receive
/// window so that the server's writes back up quickly: the socket, what came after the head.
async fn slow_reader(config: CoreConfig) -> (TcpStream, Vec<u8>, Core) {
    let (base, core) = server(config).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let (stream, start) = raw_get(&base, "HTTP/1.0", socket).await;
    eventually("the stream takes its socket", || direct_streams(&core) == 1).await;
    (stream, start, core)
}

/// Reads until the server closes the connection.
async fn read_to_end(mut stream: TcpStream, mut body: Vec<u8>) -> Vec<u8> {
    stream.read_to_end(&mut body).await.unwrap();
    body
}

/// Decodes a chunked body, checking every chunk's length; returns the data and whether the
/// zero-length last chunk came.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16);
        let size = size.unwrap();
        let chunk = &body[line_end + 2..];
        if size == 0 {
            assert_eq!(chunk, b"\r\n", "nothing after the last chunk");
            return (data, true);
        }
        assert!(chunk.len() >= size + 2, "a whole chunk");
        data.extend_from_slice(&chunk[..size]);
        assert_eq!(&chunk[size..size + 2], b"\r\n", "each chunk ends with CRLF");
        body = &chunk[size + 2..];
    }
    assert!(body.is_empty(), "no partial chunk");
    (data, false)
}

fn published_frames(core: &Core, count: usize) -> Vec<u8> {
    let topic = core.hub.topic("news");
    (0..count)
        .flat_map(|i| {
            let id = topic.publish(Event::new().event("news").data(format!("item {i}\nline two")));
            Event::new()
                .event("news")
                .id(id)
                .data(format!("item {i}\nline two"))
                .encode()
                .into_bytes()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_stream_is_written_directly_in_exact_chunks_and_ends_with_the_last_chunk() {
    let (base, core) = server(CoreConfig::default()).await;
    let (stream, start) = raw_get(&base, "HTTP/1.1", TcpSocket::new_v4().unwrap()).await;
    eventually("the stream takes its socket", || direct_streams(&core) == 1).await;
    let expected = published_frames(&core, 200);
    core.hub.remove("news");

    let (data, ended) = dechunk(&read_to_end(stream, start).await);
    assert!(ended, "the body ends with the zero-length chunk");
    let hello = Event::new().event("hello").data("").encode().into_bytes();
    assert_eq!(data, [hello.as_ref(), &expected].concat(), "every frame, in order, byte for byte");
    eventually("the stream is counted out", || direct_streams(&core) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_stream_is_the_frames_themselves_until_the_close() {
    let (base, core) = server(CoreConfig::default()).await;
    let (stream, start) = raw_get(&base, "HTTP/1.0", TcpSocket::new_v4().unwrap()).await;
    eventually("the stream takes its socket", || direct_streams(&core) == 1).await;
    let expected = published_frames(&core, 200);
    core.hub.remove("news");

    let body = read_to_end(stream, start).await;
    let hello = Event::new().event("hello").data("").encode().into_bytes();
    assert_eq!(body, [hello.as_ref(), &expected].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_joining_while_frames_are_in_flight_get_each_one_exactly_once() {
    // A ring and a buffer that hold the whole run, so no reader can lag or miss the ring.
    let topic = TopicConfig { replay: 8192, buffer: 8192, ..TopicConfig::default() };
    let (base, core) = server(CoreConfig { topic, ..CoreConfig::default() }).await;
    let topic = core.hub.topic("news");
    let first = topic.publish(Event::new().data("0"));
    const EVENTS: u64 = 3000;
    let publisher = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 1..EVENTS {
                topic.publish(Event::new().data(i.to_string()));
                tokio::task::yield_now().await;
            }
        })
    };
    // Readers join at different moments, each resuming from an id the ring still holds; the
    // last id is the one each must reach.
    let last = first + EVENTS - 1;
    let mut readers = Vec::new();
    for _ in 0..20 {
        let after = topic.last_id().min(last - 1);
        let url = format!("{base}/news");
        readers.push(tokio::spawn(async move {
            let mut stream = Stream::resume(&url, Some(&after.to_string())).await;
            assert_eq!(stream.next().await.unwrap().event, "hello");
            let mut expected = after + 1;
            while expected <= last {
                let event = stream.next().await.expect("the stream goes on");
                assert_eq!(event.event, "message", "no resync under this load");
                assert_eq!(
                    event.last_event_id,
                    expected.to_string(),
                    "in order, none missed or doubled"
                );
                expected += 1;
            }
        }));
        tokio::task::yield_now().await;
    }
    publisher.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_gets_resync_and_then_only_newer_frames() {
    let config = CoreConfig {
        topic: TopicConfig { buffer: 8, ..TopicConfig::default() },
        ..CoreConfig::default()
    };
    let (mut stream, start, core) = slow_reader(config).await;

    let topic = core.hub.topic("news");
    let big = "x".repeat(32 * 1024);
    let mut last = 0;
    for _ in 0..400 {
        last = topic.publish(Event::new().data(big.clone()));
    }
    // Then a frame published after everything else: the reader must reach it.
    let fresh = topic.publish(Event::new().event("fresh").data(""));

    let mut parser = Parser::new();
    let mut events = parser.feed(&start);
    let mut buffer = vec![0u8; 64 * 1024];
    // The reader has caught up once it has `fresh`, or a resync up to it: when the sweeper takes
    // `fresh` in the same batch as the last frames that overflow the buffer, the resync's id is
    // `fresh`'s, and the client, told to resync, is owed nothing older.
    let fresh_id = fresh.to_string();
    let caught_up = |e: &sse_core::wire::MessageEvent| {
        e.event == "fresh" || (e.event == "resync" && e.last_event_id == fresh_id)
    };
    sse_core::testing::within("the reader to catch up", async {
        while !events.iter().any(caught_up) {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the stream goes on");
            events.extend(parser.feed(&buffer[..n]));
        }
    })
    .await;
    let resync = events.iter().position(|e| e.event == "resync").expect("a resync");
    assert!(events[resync].data.contains("lagged"));
    let resync_id: u64 = events[resync].last_event_id.parse().unwrap();
    assert!(resync_id <= last || resync_id == fresh, "{resync_id} against {last} and {fresh}");
    let ids: Vec<u64> = events[1..].iter().map(|e| e.last_event_id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids only grow: {ids:?}");
    assert_eq!(events.last().unwrap().last_event_id, fresh.to_string());
    let delivered = events.iter().filter(|e| e.event == "message").count();
    assert!(delivered < 400, "the backlog was dropped for the resync, not all delivered");
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_stops_reading_is_not_sent_keep_alives_behind_its_backlog() {
    let config = CoreConfig {
        keep_alive: Duration::from_millis(10),
        topic: TopicConfig { buffer: 1000, ..TopicConfig::default() },
        ..CoreConfig::default()
    };
    let (mut stream, start, core) = slow_reader(config).await;

    // More than the sockets hold, less than the stream's buffer: a backlog, and no resync.
    let topic = core.hub.topic("news");
    let big = "x".repeat(32 * 1024);
    for _ in 0..300 {
        topic.publish(Event::new().data(big.clone()));
    }
    // A thousand keep-alive periods pass (paused time: at once) while the reader reads nothing.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let fresh = topic.publish(Event::new().event("fresh").data(""));

    let mut body = start;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut parser = Parser::new();
    let mut events = parser.feed(&body);
    while !events.iter().any(|e| e.event == "fresh") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the stream goes on");
        body.extend_from_slice(&buffer[..n]);
        events.extend(parser.feed(&buffer[..n]));
    }
    assert_eq!(events.iter().filter(|e| e.event == "message").count(), 300, "all delivered");
    assert!(events.iter().all(|e| e.event != "resync"), "no resync");
    assert_eq!(events.last().unwrap().last_event_id, fresh.to_string());
    let comments = body.windows(13).filter(|w| w == b": keep-alive\n").count();
    assert!(comments <= 1, "{comments} keep-alives queued behind the backlog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_stream_still_gets_keep_alives() {
    let config = CoreConfig { keep_alive: Duration::from_millis(100), ..CoreConfig::default() };
    let (base, core) = server(config).await;
    let (mut stream, mut body) = raw_get(&base, "HTTP/1.0", TcpSocket::new_v4().unwrap()).await;
    eventually("the stream takes its socket", || direct_streams(&core) == 1).await;
    let mut buffer = [0u8; 1024];
    while !body.windows(13).any(|w| w == b": keep-alive\n") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the stream stays open");
        body.extend_from_slice(&buffer[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_or_a_shutdown_frees_a_taken_stream() {
    let (base, core) = server(CoreConfig::default()).await;
    let topic = core.hub.topic("news");
    let (stream, _) = raw_get(&base, "HTTP/1.1", TcpSocket::new_v4().unwrap()).await;
    eventually("the stream takes its socket", || direct_streams(&core) == 1).await;
    assert_eq!(topic.subscriber_count(), 1);
    drop(stream);
    eventually("the hang-up is noticed", || topic.subscriber_count() == 0).await;
    assert_eq!(direct_streams(&core), 0);

    let (stream, start) = raw_get(&base, "HTTP/1.1", TcpSocket::new_v4().unwrap()).await;
    eventually("the stream takes its socket", || direct_streams(&core) == 1).await;
    core.shutdown_token().cancel();
    let (_, ended) = dechunk(&read_to_end(stream, start).await);
    assert!(ended, "a shutdown ends the body properly");
    eventually("the stream is counted out", || direct_streams(&core) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_2_stream_stays_with_hyper_and_works_the_same() {
    let (base, core) = server(CoreConfig::default()).await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(format!("{base}/news")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut stream = Stream::from_response(response);
    assert_eq!(stream.next().await.unwrap().event, "hello");
    let topic = core.hub.topic("news");
    eventually("subscribed", || topic.subscriber_count() == 1).await;
    let ids: Vec<u64> = (0..50).map(|i| topic.publish(Event::new().data(i.to_string()))).collect();
    for id in ids {
        assert_eq!(stream.next().await.unwrap().last_event_id, id.to_string());
    }
    assert_eq!(direct_streams(&core), 0, "HTTP/2 shares its socket: hyper keeps it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_connections_never_reuses_a_taken_one() {
    let (base, core) = server(CoreConfig::default()).await;
    // One client with a connection pool, as a browser or an SDK has.
    let http = reqwest::Client::new();
    let response = http.get(format!("{base}/news")).send().await.unwrap();
    assert_eq!(response.headers()["connection"], "close", "the connection ends with the stream");
    let mut stream = Stream::from_response(response);
    assert_eq!(stream.next().await.unwrap().event, "hello");
    eventually("the stream takes its socket", || direct_streams(&core) == 1).await;
    core.hub.remove("news");
    assert!(stream.next().await.is_none(), "the stream ended");
    // The next requests go out on new connections, not into the one the stream closed.
    for _ in 0..3 {
        let again = http.get(format!("{base}/news")).send().await.unwrap();
        assert_eq!(again.status(), 200);
    }
}

/// Everything the client's socket holds now, read without waiting. A plain socket, because
/// tokio's `try_read` answers from its last readiness event, not from the socket.
fn read_now(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return received,
            Err(error) => panic!("{error}"),
        }
    }
}

/// Reads until `expected` has come, after the bytes already in `received`.
async fn read_until(stream: &mut TcpStream, received: &mut Vec<u8>, expected: &[u8]) {
    let mut buffer = [0u8; 4096];
    while !received.windows(expected.len()).any(|window| window == expected) {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the stream ended before {:?}", String::from_utf8_lossy(expected));
        received.extend_from_slice(&buffer[..n]);
    }
}

/// `frame` as one HTTP/1.1 chunk.
fn chunk(frame: &[u8]) -> Vec<u8> {
    [format!("{:x}\r\n", frame.len()).as_bytes(), frame, b"\r\n"].concat()
}

/// A session's stream on a raw HTTP/1.1 connection, once it has taken its socket.
async fn session_stream(base: &str, core: &Core, id: &str) -> (TcpStream, Vec<u8>) {
    let path = format!("/rpc/events?session_id={id}");
    let (stream, start) = raw_get_path(base, &path, "HTTP/1.1", TcpSocket::new_v4().unwrap()).await;
    eventually("the session's stream takes its socket", || direct_streams(core) == 1).await;
    (stream, start)
}

// On one thread, so that nothing runs between `send` and the read: no sweeper pass is under way.
#[tokio::test]
async fn a_request_sent_to_a_session_is_on_the_wire_when_send_returns() {
    let (base, core) = server(CoreConfig::default()).await;
    let session = core.sessions.create(Some("worker"), Arc::new(JsonRpcEvents)).await.unwrap();
    let (stream, start) = session_stream(&base, &core, session.id().as_str()).await;
    let mut stream = stream.into_std().unwrap();
    // hyper flushed the greeting before it gave the socket up: it is all here already.
    let greeting = [start, read_now(&mut stream)].concat();
    assert!(String::from_utf8_lossy(&greeting).contains("event: session"), "{greeting:?}");

    for i in 0..20 {
        let event = Event::new().event("request").data(format!("request {i}"));
        let id = session.send(event.clone()).unwrap();
        // No await between the two: the sender wrote the frame to the socket itself.
        let expected = chunk(event.id(id).encode().as_bytes());
        assert_eq!(read_now(&mut stream), expected, "request {i} went out whole, in its own chunk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reconnect_resumes_after_what_its_taken_stream_was_handed() {
    let (base, core) = server(CoreConfig::default()).await;
    let session = core.sessions.create(Some("worker"), Arc::new(JsonRpcEvents)).await.unwrap();
    let id = session.id().as_str().to_owned();
    let (mut stream, mut received) = session_stream(&base, &core, &id).await;
    let mut last = Vec::new();
    for data in ["one", "two"] {
        let event = Event::new().data(data);
        let event_id = session.send(event.clone()).unwrap();
        last = event.id(event_id).encode().into_bytes().to_vec();
    }
    read_until(&mut stream, &mut received, &last).await;
    drop(stream);
    eventually("the connection is gone", || session.connections() == 0).await;
    eventually("the taken stream is counted out", || direct_streams(&core) == 0).await;

    // Sent while the client is away: it waits in the session's ring.
    session.send(Event::new().data("three")).unwrap();
    // Back without Last-Event-ID: the stream goes on after what the last connection was handed.
    let (mut stream, mut received) = session_stream(&base, &core, &id).await;
    let event = Event::new().data("four");
    let four = session.send(event.clone()).unwrap();
    read_until(&mut stream, &mut received, event.id(four).encode().as_bytes()).await;
    // Closing the session ends its stream, properly.
    assert!(core.sessions.close(session.id()));
    let (data, ended) = dechunk(&read_to_end(stream, received).await);
    assert!(ended, "the body ends with the zero-length chunk");
    let events = Parser::new().feed(&data);
    let data: Vec<&str> =
        events.iter().filter(|e| e.event != "session").map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["three", "four"], "none missed, none repeated");
    eventually("the stream is counted out", || direct_streams(&core) == 0).await;
}
