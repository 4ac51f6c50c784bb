//! A client that stops reading for 60 seconds, behind a proxy that stops forwarding
//! ([`sse_core::testing::fault`]), against the real server binary: the server's memory stays
//! bounded while 30 MB of events pass, another client gets every event meanwhile, and the
//! stalled client is told with `resync` when it reads again.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::process::Stdio;
use std::time::Duration;

use sse_apps::bench::control::{ENV, Usage};
use sse_apps::bench::scan::{Scanner, Seen};
use sse_apps::bench::targets::{PublishOrder, parse_payload};
use sse_core::testing::fault::{Fault, FaultProxy};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_sse-apps");
/// A watchdog for steps that must finish; not a timing assertion.
const WATCHDOG: Duration = Duration::from_secs(120);

/// The fan-out server the bench uses (one topic at `/events`, published to on command).
struct Server {
    _child: Child,
    addr: String,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Server {
    async fn start() -> Server {
        let mut child = Command::new(BIN)
            .args(["bench-target", "ours", "--addr", "127.0.0.1:0"])
            .env(ENV, std::process::id().to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().unwrap();
        let addr = first.split("listening on http://").nth(1).unwrap().trim().to_owned();
        Server { _child: child, addr, stdin, lines }
    }

    /// Sends a command and returns the answer line that starts with `answer`.
    async fn ask(&mut self, command: &str, answer: &str) -> String {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.unwrap();
        let wait = async {
            loop {
                let line = self.lines.next_line().await.unwrap().unwrap();
                if line.starts_with(answer) {
                    return line;
                }
            }
        };
        tokio::time::timeout(WATCHDOG, wait).await.unwrap()
    }

    async fn usage(&mut self) -> Usage {
        Usage::from_line(&self.ask("usage", "usage ").await).unwrap()
    }
}

/// Opens `/events` on `addr` and returns the socket once the response head is read.
async fn open_stream(addr: &str) -> (TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /events HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the stream closed before its head");
        head.extend_from_slice(&buffer[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"));
            return (socket, head.split_off(end + 4));
        }
    }
}

/// What a reader saw: event numbers in order, and `resync` reasons.
#[derive(Default)]
struct Tally {
    numbers: Vec<u64>,
    resyncs: usize,
}

/// Reads `socket` (after `already`) until `done` says so.
async fn read_until(
    socket: &mut TcpStream,
    already: &[u8],
    seen: &mut Tally,
    mut done: impl FnMut(&Tally) -> bool,
) {
    let mut scanner = Scanner::default();
    let mut feed = |bytes: &[u8], seen: &mut Tally| {
        scanner.feed(bytes, |event| match event {
            Seen::Resync => seen.resyncs += 1,
            Seen::Data(data) => {
                if let Some((number, _)) = parse_payload(data) {
                    seen.numbers.push(number);
                }
            }
        });
    };
    feed(already, seen);
    let mut buffer = vec![0u8; 64 * 1024];
    while !done(seen) {
        let n = tokio::time::timeout(WATCHDOG, socket.read(&mut buffer)).await.unwrap().unwrap();
        assert!(n > 0, "the stream ended");
        feed(&buffer[..n], seen);
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_for_a_minute_costs_bounded_memory_and_delays_nobody() {
    let mut server = Server::start().await;
    let proxy = FaultProxy::start(server.addr.parse().unwrap()).await.unwrap();
    let (mut stalled, stalled_rest) = open_stream(&proxy.addr.to_string()).await;
    let (mut healthy, healthy_rest) = open_stream(&server.addr).await;
    proxy.set(Fault::Stall);

    // A minute of events, 500 a second, 1,000 bytes each: 30 MB in all.
    let order = PublishOrder { rate: 500, payload: 1000, count: 30_000 };
    let before = server.usage().await;
    let command = order.command();
    let (publishing, reading) = tokio::join!(server.ask(&command, "published"), async {
        let mut seen = Tally::default();
        read_until(&mut healthy, &healthy_rest, &mut seen, |s| s.numbers.len() == 30_000).await;
        seen
    });
    assert_eq!(publishing, "published 30000");
    let after = server.usage().await;

    // The other client got every event, in order, with no gap, while the stalled one was stalled.
    assert_eq!(reading.numbers, (1..=30_000).collect::<Vec<u64>>());
    assert_eq!(reading.resyncs, 0);

    // Nothing piled up for the stalled client: at most the topic's buffer of 1,024 shared events
    // and socket buffers, far from the 30 MB that went by.
    let growth_kib = after.rss_kib.saturating_sub(before.rss_kib);
    eprintln!("server RSS {} → {} KiB while one client stalled", before.rss_kib, after.rss_kib);
    assert!(
        growth_kib < 16 * 1024,
        "server memory grew by {growth_kib} KiB while one client stalled"
    );

    // When it reads again it is told it missed events, then goes on with live ones.
    proxy.heal();
    let mut seen = Tally::default();
    read_until(&mut stalled, &stalled_rest, &mut seen, |s| s.resyncs > 0).await;
    let late = PublishOrder { rate: 100, payload: 100, count: 3 };
    assert_eq!(server.ask(&late.command(), "published").await, "published 3");
    read_until(&mut stalled, &[], &mut seen, |s| s.numbers.ends_with(&[30_003])).await;
    eprintln!("the stalled client got {} events of 30,003, and a resync", seen.numbers.len());
    assert!(seen.numbers.len() < 30_000, "it did not get the whole backlog: it was resynced");
    assert!(seen.numbers.windows(2).all(|w| w[0] < w[1]), "ids only grow");
}
