//! How many TCP connections a server accepted, from its own `sse_connections_accepted_total`.
//!
//! The server counts each accept itself, so the figure is this server's alone: the kernel's
//! `PassiveOpens` counter is machine-wide and counts every other program's loopback connections
//! too. The count is read over one kept-alive connection, opened by the first read, so the reads
//! themselves add nothing between the first and the last.

use anyhow::Context;

use super::http1::Connection;

/// The series read.
const SERIES: &str = "sse_connections_accepted_total";

/// Reads a server's accept count, again and again on one connection.
#[derive(Debug)]
pub struct AcceptCounter {
    connection: Connection,
}

impl AcceptCounter {
    /// A counter for the server at `addr` (`host:port`).
    pub fn new(addr: &str) -> AcceptCounter {
        AcceptCounter { connection: Connection::new(addr) }
    }

    /// The server's count now.
    pub async fn read(&mut self) -> anyhow::Result<u64> {
        let answer = self.connection.request("GET", "/metrics", "", b"").await?;
        anyhow::ensure!(answer.status == 200, "/metrics answered {}", answer.status);
        let text = String::from_utf8_lossy(&answer.body);
        series(&text).with_context(|| format!("no {SERIES} in /metrics"))
    }
}

/// The value of [`SERIES`] in an OpenMetrics text.
fn series(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(SERIES)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::series;

    #[test]
    fn finds_the_count_and_nothing_else() {
        let text = "# TYPE sse_connections_accepted counter\n\
                    sse_connections_accepted_total 17\n\
                    sse_connections_pending 3\n# EOF\n";
        assert_eq!(series(text), Some(17));
        assert_eq!(series("sse_connections_pending 3\n"), None);
    }
}
