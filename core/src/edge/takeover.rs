//! Skip on a first read: this is a performance path. Everything here only makes an event stream
//! cheaper once it is open (no hyper task and buffers per stream); streams behave the same
//! without it, and HTTP/2 and TLS streams never use it.
//!
//! Taking a plain HTTP/1 connection's socket from hyper once an event stream's head is out.
//!
//! An event stream served through hyper costs, for every event and every connection, a task
//! wake-up, a pass through hyper's dispatcher and its chunk encoder, and then the write itself.
//! The bench's `limit` baseline shows what is left without the first three: one loop writing each
//! event to every socket. Once a stream's response head and first frames are out, all HTTP still
//! asks of that connection is the body's framing, so the stream takes the socket over and its
//! topic's sweeper ([`crate::hub`]) writes to it directly, the way `limit` does. hyper's task and
//! its two 8 KiB buffers are freed, which is most of what an idle stream used to cost.
//!
//! How, without reaching into hyper's internals: the connection loop serves every plain-TCP
//! connection through a [`TakeoverIo`], which passes everything through until a response asks
//! for the socket. Then:
//!
//! 1. the stream's body asks ([`SocketOffer::poll_take`]) and waits;
//! 2. hyper writes out everything it holds (the head, earlier chunks) and flushes. hyper flushes
//!    its transport only once its own buffer is empty, so at that flush every byte it wrote is in
//!    the kernel, in order. There [`TakeoverIo`] duplicates the socket's descriptor and wakes the
//!    body;
//! 3. the body takes the duplicate and ends. From then on [`TakeoverIo`] swallows whatever hyper
//!    still writes (the end of a chunked body), reports end-of-file to its reads, and hyper closes
//!    its side and frees the connection, while the socket lives on through the duplicate.
//!
//! Only HTTP/1 over plain TCP is offered: HTTP/2 multiplexes many streams over one socket and TLS
//! encrypts it, so such streams stay with hyper (and cost what they did). A descriptor that cannot
//! be duplicated (none left) leaves the stream with hyper too.

use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::sync::lock;
use crate::wire::Framing;

/// Where one connection's socket is in being taken over.
#[derive(Debug, Default)]
enum Handover {
    /// hyper has the socket, and nobody asked for it.
    #[default]
    Serving,
    /// A stream asked for it; hyper still writes out what it holds. The waker is the stream's.
    Asked(Waker),
    /// hyper's bytes are all out; this duplicate waits for the stream to take it.
    Ready(TcpStream),
    /// The stream has the socket; hyper's side is a dummy.
    Taken,
    /// The socket could not be duplicated; hyper keeps serving.
    Failed,
}

/// A plain TCP connection as hyper sees it: the socket itself until a stream takes it over, then
/// a dummy that accepts writes, reports end-of-file and lets hyper wind down.
#[derive(Debug)]
pub struct TakeoverIo {
    socket: TcpStream,
    handover: Arc<Mutex<Handover>>,
}

/// The connection loop's end of a [`TakeoverIo`]: offers its socket to a response.
#[derive(Clone, Debug)]
pub struct Takeover {
    handover: Arc<Mutex<Handover>>,
}

impl TakeoverIo {
    /// Wraps `socket`; the [`Takeover`] offers it to responses.
    pub fn new(socket: TcpStream) -> (TakeoverIo, Takeover) {
        let handover = Arc::new(Mutex::new(Handover::Serving));
        (TakeoverIo { socket, handover: handover.clone() }, Takeover { handover })
    }

    /// What hyper's calls meet: the socket, or (once taken) nothing.
    fn taken(&self) -> bool {
        matches!(*lock(&self.handover), Handover::Ready(_) | Handover::Taken)
    }
}

impl Takeover {
    /// Offers the socket to `response` if it asked for one (see [`TakeoverRequest`]) and the
    /// request was HTTP/1 (`version`). Call once the handler has answered, before hyper sees the
    /// response.
    ///
    /// An offered response says `Connection: close`: a stream that took its socket closes it
    /// when it ends, so an HTTP/1.1 client must not keep the connection for its next request
    /// (without the header, a client that read the body's last chunk would send its next POST
    /// into a closed socket). HTTP/2 forbids the header, and is never offered the socket.
    pub fn offer_to<B>(&self, version: http::Version, response: &mut http::Response<B>) {
        let Some(request) = response.extensions_mut().remove::<TakeoverRequest>() else { return };
        if let Some(framing) = Framing::for_version(version) {
            let _ = request.0.set(SocketOffer { handover: self.handover.clone(), framing });
            let close = http::HeaderValue::from_static("close");
            response.headers_mut().insert(http::header::CONNECTION, close);
        }
    }
}

/// Put in a response whose body would like the connection's socket (an event stream that can be
/// written to directly): the connection loop fills it with a [`SocketOffer`] when it can.
#[derive(Clone, Debug, Default)]
pub struct TakeoverRequest(pub(crate) Arc<std::sync::OnceLock<SocketOffer>>);

/// The right to take one connection's socket, with the framing its response body has.
#[derive(Clone, Debug)]
pub struct SocketOffer {
    handover: Arc<Mutex<Handover>>,
    /// How the body is delimited, so direct writes frame it the same way.
    pub framing: Framing,
}

impl SocketOffer {
    /// Asks for the socket. Pending until hyper has written out everything it holds; then the
    /// socket, or `None` if it cannot be had (the stream stays with hyper).
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<TcpStream>> {
        let mut handover = lock(&self.handover);
        match std::mem::take(&mut *handover) {
            Handover::Serving | Handover::Asked(_) => {
                *handover = Handover::Asked(cx.waker().clone());
                Poll::Pending
            }
            Handover::Ready(socket) => {
                *handover = Handover::Taken;
                Poll::Ready(Some(socket))
            }
            Handover::Failed => {
                *handover = Handover::Failed;
                Poll::Ready(None)
            }
            Handover::Taken => {
                *handover = Handover::Taken;
                Poll::Ready(None)
            }
        }
    }

    /// Takes back a request not yet granted (the stream ends before it got the socket): hyper
    /// goes on serving the connection as before.
    pub fn withdraw(&self) {
        let mut handover = lock(&self.handover);
        if matches!(*handover, Handover::Asked(_) | Handover::Ready(_)) {
            *handover = Handover::Serving;
        }
    }
}

/// A second descriptor for the same socket, registered with the runtime on its own.
fn duplicate(socket: &TcpStream) -> io::Result<TcpStream> {
    let descriptor = socket.as_fd().try_clone_to_owned()?;
    let socket = std::net::TcpStream::from(descriptor);
    socket.set_nonblocking(true)?;
    TcpStream::from_std(socket)
}

impl AsyncRead for TakeoverIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &*lock(&this.handover) {
            // End-of-file now would make hyper drop the body before it takes the socket it was
            // given: have hyper come back once the body (polled by the same task) has run.
            Handover::Ready(_) => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Handover::Taken => return Poll::Ready(Ok(())),
            _ => {}
        }
        Pin::new(&mut this.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for TakeoverIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut handover = lock(&this.handover);
        match &*handover {
            Handover::Ready(_) | Handover::Taken => Poll::Ready(Ok(())),
            Handover::Serving | Handover::Failed => Pin::new(&mut this.socket).poll_flush(cx),
            Handover::Asked(_) => {
                ready!(Pin::new(&mut this.socket).poll_flush(cx))?;
                // hyper flushes its transport only with its own buffer empty: every byte it
                // wrote is in the kernel, so the socket can change hands here.
                let next = match duplicate(&this.socket) {
                    Ok(socket) => Handover::Ready(socket),
                    Err(error) => {
                        tracing::debug!(%error, "cannot duplicate a socket; hyper keeps the stream");
                        Handover::Failed
                    }
                };
                if let Handover::Asked(waker) = std::mem::replace(&mut *handover, next) {
                    waker.wake();
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.socket).poll_shutdown(cx)
    }
}
