//! How an event stream's body is delimited on an HTTP/1 connection, for the bytes written to a
//! socket taken over from hyper ([`crate::edge::takeover`]): the one place that knows the framing
//! hyper would have used, so direct writes continue the body exactly as hyper began it.

use bytes::{Bytes, BytesMut};

/// How a response body is delimited on an HTTP/1 connection, which decides how the stream frames
/// what it writes after taking the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1: `Transfer-Encoding: chunked`, so every write is one chunk, and the end is the
    /// zero-length chunk.
    Chunked,
    /// HTTP/1.0: the body runs until the connection closes; bytes go out as they are.
    UntilClose,
}

impl Framing {
    /// The framing hyper gives a streamed response body (one of unknown length) to a request of
    /// `version`; `None` for versions whose socket cannot be taken (HTTP/2 and later).
    pub fn for_version(version: http::Version) -> Option<Framing> {
        match version {
            http::Version::HTTP_11 => Some(Framing::Chunked),
            http::Version::HTTP_10 | http::Version::HTTP_09 => Some(Framing::UntilClose),
            _ => None,
        }
    }

    /// `raw` as one unit of a body with this framing: a chunk (`<hex length>\r\n…\r\n`) or the
    /// bytes themselves.
    pub fn unit(self, raw: Bytes) -> Bytes {
        match self {
            Framing::UntilClose => raw,
            Framing::Chunked => {
                let head = format!("{:x}\r\n", raw.len());
                let mut unit = BytesMut::with_capacity(head.len() + raw.len() + 2);
                unit.extend_from_slice(head.as_bytes());
                unit.extend_from_slice(&raw);
                unit.extend_from_slice(b"\r\n");
                unit.freeze()
            }
        }
    }
}
