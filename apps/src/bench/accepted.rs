//! How many TCP connections a server accepted, from its own `sse_connections_accepted_total`.
//!
//! The server counts each accept itself, so the figure is this server's alone: the kernel's
//! `PassiveOpens` counter is machine-wide and counts every other program's loopback connections
//! too. The count is read over one kept-alive connection, opened by the first read, so the reads
//! themselves add nothing between the first and the last. A server may close that connection
//! between two reads (ours closes one that brings no request for 10 s, longer than a long run):
//! the read then dials anew, and that connection, the counter's own, is counted out.

use anyhow::Context;

use super::http1::Connection;

/// The series read.
const SERIES: &str = "sse_connections_accepted_total";

/// Reads a server's accept count, again and again on one connection.
#[derive(Debug)]
pub struct AcceptCounter {
    connection: Connection,
    /// Whether a read has succeeded (the connection was open and counted by then).
    read_before: bool,
    /// Connections this counter opened after its first read.
    redials: u64,
}

impl AcceptCounter {
    /// A counter for the server at `addr` (`host:port`).
    pub fn new(addr: &str) -> AcceptCounter {
        AcceptCounter { connection: Connection::new(addr), read_before: false, redials: 0 }
    }

    /// The server's count now, less the connections this counter opened after its first read.
    pub async fn read(&mut self) -> anyhow::Result<u64> {
        let answer = match self.connection.request("GET", "/metrics", "", b"").await {
            Ok(answer) => answer,
            // The server closed the kept connection; the request dials anew.
            Err(_) if self.read_before => {
                self.redials += 1;
                self.connection.request("GET", "/metrics", "", b"").await?
            }
            Err(error) => return Err(error),
        };
        anyhow::ensure!(answer.status == 200, "/metrics answered {}", answer.status);
        let text = String::from_utf8_lossy(&answer.body);
        let count = series(&text).with_context(|| format!("no {SERIES} in /metrics"))?;
        self.read_before = true;
        Ok(count.saturating_sub(self.redials))
    }
}

/// The value of [`SERIES`] in an OpenMetrics text.
fn series(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(SERIES)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{AcceptCounter, series};

    /// A server that counts its accepts, answers each request with the count and then closes
    /// the connection, as a server closes one kept idle too long.
    async fn closing_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address").to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while memchr::memmem::find(&head, b"\r\n\r\n").is_none() {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = format!(
                        "sse_connections_accepted_total {}\n",
                        accepted.load(Ordering::SeqCst)
                    );
                    let answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_closed_connection_is_dialled_again_and_counted_out() {
        let addr = closing_server().await;
        let mut counter = AcceptCounter::new(&addr);
        let before = counter.read().await.expect("a first count");
        // Three connections of the load, accepted before the counter's own new one.
        for _ in 0..3 {
            drop(TcpStream::connect(&addr).await.expect("a connection"));
        }
        let after = counter.read().await.expect("a count over a new connection");
        assert_eq!(after - before, 3, "the load's connections, not the counter's");
    }

    #[test]
    fn finds_the_count_and_nothing_else() {
        let text = "# TYPE sse_connections_accepted counter\n\
                    sse_connections_accepted_total 17\n\
                    sse_connections_pending 3\n# EOF\n";
        assert_eq!(series(text), Some(17));
        assert_eq!(series("sse_connections_pending 3\n"), None);
    }
}
