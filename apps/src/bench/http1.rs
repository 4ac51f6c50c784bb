//! A minimal HTTP/1.1 keep-alive client for the load generator: one request at a time on one
//! connection, answers read by `Content-Length`. At 20,000 round trips a second on one core, a
//! full client's per-request cost would be the load generator's limit, not the server's.
//! [`Connection::reusing`]`(false)` makes it a client that never reuses a connection: each
//! request dials anew and the connection is closed once its answer is read, so the server pays
//! for an accept (and a close) per request, as it does for clients that cannot keep theirs.

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One kept-alive connection.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    socket: Option<TcpStream>,
    buffer: Vec<u8>,
    reuse: bool,
}

/// An answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Connection {
    /// A connection to `addr` (`host:port`), opened on first use.
    pub fn new(addr: &str) -> Connection {
        Connection {
            addr: addr.to_owned(),
            socket: None,
            buffer: Vec::with_capacity(4096),
            reuse: true,
        }
    }

    /// With `false`, each request gets a connection of its own, closed after its answer.
    pub fn reusing(mut self, reuse: bool) -> Connection {
        self.reuse = reuse;
        self
    }

    /// Sends a request (`extra_headers` lines each end in `\r\n`) and reads its answer; on any
    /// failure the connection is closed, to be opened again by the next request.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        extra_headers: &str,
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        let result = self.exchange(method, target, extra_headers, body).await;
        if result.is_err() || !self.reuse {
            self.socket = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: &str,
        target: &str,
        extra_headers: &str,
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        if self.socket.is_none() {
            let socket = TcpStream::connect(&self.addr).await.context("connecting")?;
            socket.set_nodelay(true)?;
            self.socket = Some(socket);
            self.buffer.clear();
        }
        let socket = self.socket.as_mut().context("a socket")?;
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{extra_headers}\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        socket.write_all(&request).await.context("sending")?;
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            read_more(socket, &mut self.buffer).await?;
        };
        let (status, length) = parse_head(&self.buffer[..head_end])?;
        while self.buffer.len() < head_end + length {
            read_more(socket, &mut self.buffer).await?;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        Ok(Answer { status, body })
    }
}

async fn read_more(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = socket.read(&mut chunk).await.context("reading")?;
    anyhow::ensure!(n > 0, "the server closed the connection");
    buffer.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// The status and `Content-Length` of a response head.
fn parse_head(head: &[u8]) -> anyhow::Result<(u16, usize)> {
    let text = std::str::from_utf8(head).context("a response head in UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().context("a status line")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("a status code in {status_line:?}"))?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .context("a Content-Length (this client reads no other framing)")?;
    Ok((status, length))
}

#[cfg(test)]
mod tests {
    use super::parse_head;

    #[test]
    fn reads_status_and_length() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 42\r\n\r\n";
        assert_eq!(parse_head(head).expect("a head"), (200, 42));
        let head = b"HTTP/1.1 404 Not Found\r\nContent-Length:7\r\n\r\n";
        assert_eq!(parse_head(head).expect("a head"), (404, 7));
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
