//! Skip on a first read: this is a performance path, the socket end of the sweeper
//! ([`super::fanout`]). A stream written here sends the same frames, in the same order, as one
//! that stays with hyper.
//!
//! A stream whose socket was taken over from hyper ([`crate::edge::takeover`]): its topic's
//! sweeper ([`super::fanout`]) writes to it directly.
//!
//! The sweeper writes each batch with one non-blocking `write` while nothing is queued, which is
//! almost always, so a stream that keeps up costs one system call per batch and nothing else: no
//! task wakes, nothing is copied. Only what the socket does not take at once is queued here, and
//! the stream's own small task finishes it when the socket drains. That task also sends the
//! keep-alive comment, notices the client hanging up, and ends the stream on shutdown or when the
//! per-client cap closes it.
//!
//! A client that stops reading cannot hold unbounded memory: past the topic's buffer of frames,
//! what is queued is dropped for one `resync` (as a subscription that lags behind its channel
//! gets), and live frames go on after it, so ids on the stream keep increasing and the gap is
//! announced, never silent. A unit already half written is finished first: cutting it would
//! break the framing.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::ResumePoint;
use super::fanout::Fanout;
use crate::metrics::Metrics;
use crate::sync::lock;
use crate::wire::Frame;
use crate::wire::Framing;

/// What the stream's task keeps alive for as long as the stream is open.
pub(crate) struct Watch {
    /// Cancelled on shutdown or by the per-client cap: the stream ends at once.
    pub token: CancellationToken,
    /// No stream is silent for longer than this.
    pub keep_alive: Duration,
    /// Whatever must live as long as the stream (an app's presence guard, the open-stream count).
    pub keep: Vec<Box<dyn Send>>,
}

/// One unit of bytes in the stream's framing, and how many frames it carries.
#[derive(Debug)]
struct Unit {
    bytes: Bytes,
    frames: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// The topic is gone: finish what is queued, then end the body properly.
    Ending,
    Closed,
}

#[derive(Debug)]
struct Outbox {
    /// Accepted and not yet written; the first may be the rest of a unit partly written.
    queue: VecDeque<Unit>,
    /// Frames in `queue`.
    frames: usize,
    /// The first unit is partly written, so it must go out whole before anything else.
    front_started: bool,
    life: Life,
}

/// A taken-over socket, written to by its topic's sweeper and by its own task.
#[derive(Debug)]
pub(crate) struct DirectStream {
    socket: TcpStream,
    framing: Framing,
    outbox: Mutex<Outbox>,
    /// Wakes the stream's task: something is queued, or the stream must end.
    wake: Notify,
    /// Nothing was written since the keep-alive last looked.
    quiet: AtomicBool,
    /// The sequence number of the last frame handed to this stream (at first, the last that came
    /// with the subscription it was made from). Only the sweeper reads and writes it.
    sent_through: AtomicU64,
    /// How many frames may wait here before the stream is sent `resync` instead.
    buffer: usize,
    metrics: Metrics,
    /// Told when this stream closes, so it stops being swept.
    fanout: Weak<Fanout>,
    /// The last id handed to this stream, for whoever must know it when the stream is gone.
    handed: ResumePoint,
}

impl DirectStream {
    /// A stream on `socket` that starts with `first` (the subscription's frames not yet sent).
    pub(crate) fn new(
        socket: TcpStream,
        framing: Framing,
        first: Vec<Bytes>,
        joined_after: u64,
        buffer: usize,
        metrics: Metrics,
        handed: ResumePoint,
    ) -> DirectStream {
        let queue: VecDeque<Unit> =
            first.into_iter().map(|raw| Unit { bytes: framing.unit(raw), frames: 1 }).collect();
        let frames = queue.len();
        let outbox = Outbox { queue, frames, front_started: false, life: Life::Open };
        metrics.direct_stream_opened();
        DirectStream {
            socket,
            framing,
            outbox: Mutex::new(outbox),
            wake: Notify::new(),
            quiet: AtomicBool::new(false),
            sent_through: AtomicU64::new(joined_after),
            buffer: buffer.max(1),
            metrics,
            fanout: Weak::new(),
            handed,
        }
    }

    /// The same stream, on `fanout`'s list: told when it closes.
    pub(crate) fn swept_by(mut self, fanout: Weak<Fanout>) -> DirectStream {
        self.fanout = fanout;
        self
    }

    /// Notes that frames through `id` (if replayable) were handed to this stream.
    pub(crate) fn note_handed(&self, id: Option<u64>) {
        self.handed.note(id);
    }

    /// How this stream's body is delimited.
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// The sequence number of the last frame handed to this stream.
    pub(crate) fn sent_through(&self) -> u64 {
        self.sent_through.load(Ordering::Relaxed)
    }

    /// Notes that frames through `seq` were handed to this stream.
    pub(crate) fn set_sent_through(&self, seq: u64) {
        self.sent_through.store(seq, Ordering::Relaxed);
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        lock(&self.outbox)
    }

    /// Sends `unit` (already in this stream's framing, carrying `frames` frames): written now if
    /// nothing waits before it and the socket takes it, else queued for the task. A stream that
    /// would queue more than its buffer gets `resync` (with `current_id`) instead. False once the
    /// stream is closed or ending.
    pub(crate) fn send(&self, unit: &Bytes, frames: usize, current_id: u64) -> bool {
        self.send_in(self.outbox(), unit, frames, current_id)
    }

    /// [`send`](Self::send), under the outbox's lock already taken.
    fn send_in(
        &self,
        mut outbox: MutexGuard<'_, Outbox>,
        unit: &Bytes,
        frames: usize,
        current_id: u64,
    ) -> bool {
        if outbox.life != Life::Open {
            return false;
        }
        self.quiet.store(false, Ordering::Relaxed);
        if outbox.queue.is_empty() {
            // Asked of the socket itself, not of tokio's readiness (see `end`): a stream that has
            // just taken its socket is written to at once, too.
            match socket2::SockRef::from(&self.socket).send(unit) {
                Ok(n) if n == unit.len() => {
                    self.metrics.bytes_sent(n);
                    return true;
                }
                Ok(n) => {
                    self.metrics.bytes_sent(n);
                    outbox.front_started = n > 0;
                    outbox.queue.push_back(Unit { bytes: unit.slice(n..), frames });
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    outbox.queue.push_back(Unit { bytes: unit.clone(), frames });
                }
                Err(_) => {
                    drop(outbox);
                    self.close();
                    return false;
                }
            }
            outbox.frames = frames;
            drop(outbox);
            // The task waits for the socket to drain and writes the rest.
            self.wake.notify_one();
            return true;
        }
        if outbox.frames + frames > self.buffer {
            self.lagged(&mut outbox, current_id);
        } else {
            outbox.queue.push_back(Unit { bytes: unit.clone(), frames });
            outbox.frames += frames;
        }
        true
    }

    /// Sends a keep-alive comment, unless frames are queued: those are waiting for a client
    /// that has stopped reading, and a comment behind them would say nothing more. (Queued, one
    /// a period, comments would pile up for as long as such a client holds the connection, and
    /// count as no frames against the buffer that would end it with `resync`.)
    fn keep_alive(&self) {
        let outbox = self.outbox();
        if !outbox.queue.is_empty() {
            return;
        }
        let keep_alive = self.framing.unit(Frame::keep_alive().into_bytes());
        self.send_in(outbox, &keep_alive, 0, 0);
    }

    /// Drops what is queued (but a unit already begun) for one `resync`.
    fn lagged(&self, outbox: &mut Outbox, current_id: u64) {
        self.metrics.resync("lagged");
        let begun = if outbox.front_started { outbox.queue.pop_front() } else { None };
        outbox.queue.clear();
        outbox.queue.extend(begun);
        let resync = super::resync_frame("lagged", current_id);
        self.handed.note(Some(current_id));
        outbox.queue.push_back(Unit { bytes: self.framing.unit(resync.into_bytes()), frames: 1 });
        outbox.frames = outbox.queue.iter().map(|u| u.frames).sum();
    }

    /// Writes as much of the queue as the socket takes now. Err when the socket failed.
    fn write_queued(&self) -> std::io::Result<()> {
        let mut outbox = self.outbox();
        while !outbox.queue.is_empty() {
            let slices: Vec<IoSlice<'_>> =
                outbox.queue.iter().take(64).map(|u| IoSlice::new(&u.bytes)).collect();
            let written = match self.socket.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            };
            drop(slices);
            self.metrics.bytes_sent(written);
            outbox.advance(written);
        }
        Ok(())
    }

    /// Stops the stream at once (the client is gone, or the socket failed): nothing more is
    /// written, the socket is shut, the sweeper forgets it.
    pub(crate) fn close(&self) {
        self.end(false);
    }

    /// Ends the stream: with the body's proper end when `properly` and nothing is half written
    /// (the last chunk; for a body delimited by the close, the close itself), then as [`close`].
    ///
    /// [`close`]: DirectStream::close
    fn end(&self, properly: bool) {
        let mut outbox = self.outbox();
        if outbox.life == Life::Closed {
            return;
        }
        outbox.life = Life::Closed;
        if properly && !outbox.front_started && self.framing == Framing::Chunked {
            // Under the lock, so no batch can slip in after the last chunk. Sent on the socket
            // itself: tokio's `try_write` answers "would block" until the runtime has seen the
            // socket writable once, which a stream ended right after it took its socket has not.
            let _ = socket2::SockRef::from(&self.socket).send(b"0\r\n\r\n");
        }
        outbox.queue.clear();
        drop(outbox);
        self.metrics.direct_stream_closed();
        // Shut now rather than when the last reference goes: the client learns at once.
        let _ = socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Both);
        self.wake.notify_one();
        if let Some(fanout) = self.fanout.upgrade() {
            fanout.stream_closed();
        }
    }

    /// The topic is gone: the stream sends what it has queued, then ends its body.
    pub(crate) fn end_after_queued(&self) {
        let mut outbox = self.outbox();
        if outbox.life == Life::Open {
            outbox.life = Life::Ending;
        }
        drop(outbox);
        self.wake.notify_one();
    }

    /// Whether the stream is still open (the sweeper drops closed ones).
    pub(crate) fn is_open(&self) -> bool {
        self.outbox().life == Life::Open
    }

    /// Runs the stream until it ends: finishes queued writes, keeps the connection alive, watches
    /// for the client leaving and for `watch.token`.
    pub(crate) async fn run(&self, watch: Watch) {
        let Watch { token, keep_alive, keep } = watch;
        let half = (keep_alive / 2).max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + half, half);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let (queued, life) = {
                let outbox = self.outbox();
                (!outbox.queue.is_empty(), outbox.life)
            };
            match life {
                Life::Closed => break,
                Life::Ending if !queued => {
                    self.end(true);
                    break;
                }
                _ => {}
            }
            tokio::select! {
                biased;
                () = token.cancelled() => {
                    self.end(true);
                    break;
                }
                () = self.wake.notified() => {}
                ready = self.socket.writable(), if queued => {
                    if ready.and_then(|()| self.write_queued()).is_err() {
                        self.close();
                        break;
                    }
                }
                ready = self.socket.readable() => {
                    if !self.client_is_still_there(ready) {
                        self.close();
                        break;
                    }
                }
                _ = ticks.tick() => {
                    // Quiet since the last tick, half a period ago at least: say something.
                    if self.quiet.swap(true, Ordering::Relaxed) {
                        self.keep_alive();
                    }
                }
            }
        }
        // The stream is over: the open count and the app's guards go now.
        drop(keep);
    }

    /// A readable socket means the client sent something (ignored: it has nothing to say on an
    /// event stream) or hung up.
    fn client_is_still_there(&self, ready: std::io::Result<()>) -> bool {
        if ready.is_err() {
            return false;
        }
        let mut scratch = [0u8; 256];
        match self.socket.try_read(&mut scratch) {
            Ok(0) => false,
            Ok(_) => true,
            Err(error) => error.kind() == ErrorKind::WouldBlock,
        }
    }
}

impl Outbox {
    /// Forgets `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.queue.front_mut() else { return };
            if written < front.bytes.len() {
                front.bytes = front.bytes.slice(written..);
                self.front_started = true;
                return;
            }
            written -= front.bytes.len();
            self.frames -= front.frames;
            self.queue.pop_front();
            self.front_started = false;
        }
    }
}
