//! Skip on a first read: this is a performance path. The sweeper makes fan-out to many
//! taken-over sockets cheap (one loop, one write per stream per batch); what a client receives is
//! the same as through the broadcast channel that [`super`] describes.
//!
//! The sweeper: one task per topic that writes each batch of new frames straight to every
//! taken-over socket ([`DirectStream`]), the way the bench's `limit` baseline does.
//!
//! Publishing only queues the frame here (under the topic's lock, so the order is the topic's
//! order) and wakes the sweeper. The sweeper takes everything queued since its last pass, joins it
//! into batches of at most `max_batch_bytes` (each encoded once, in both body framings), and
//! offers each batch to every stream in turn: one non-blocking write per stream per batch, from
//! one loop, with no task woken per stream. While it writes, new frames queue up and go out
//! together in the next pass, so a burst costs one write per stream rather than one per event.
//! Every few hundred streams the sweeper yields, so a long pass never keeps the rest of the
//! server waiting.
//!
//! The sweeper owns its list of streams, so writing to them needs no lock shared with publishers
//! or with streams joining: a new stream is handed over through the queue and added at the start
//! of the next pass. Each stream remembers the sequence number of the last frame it was handed
//! ([`DirectStream::sent_through`]), so it is sent only what it has not had: a new stream only the
//! frames queued after it joined (earlier ones came with the subscription it was made from).
//!
//! **Closed streams leave the list in bulk.** Dropping them is a walk over the whole list, so doing
//! it for every close made a storm of closes (10,000 clients gone at once) cost the square of the
//! list: 15% of the server's time in a 10,000-connection run. So a pass that has frames to send
//! drops them (it visits every stream anyway); a wake with nothing to send drops them only once
//! they are a sixteenth of the list; and a quiet topic drops the rest a second later. A closed
//! stream's socket is shut at once ([`DirectStream::close`]), so the client learns straight away;
//! only its descriptor waits for the walk.
//!
//! **A few streams are written from the publisher.** Waking the sweeper costs a task switch per
//! frame, which is most of the work when a topic has one stream: a session's, where every
//! server→client request is one frame on one socket and a caller waits for the answer. So when
//! the sweeper is idle (nothing queued, its list not in a pass) and the topic has at most
//! `INLINE_STREAMS` streams (those joining included), `push` takes the list, writes the frame to
//! each stream itself with the same non-blocking write, and puts the list back, as the bench's
//! `limit` round-trip server does. Whoever holds the list is the only writer, so the order stays the
//! topic's: frames that come in meanwhile queue up, and whoever puts the list back with work
//! waiting wakes the sweeper.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::direct::DirectStream;
use crate::edge::redact_secrets;
use crate::sync::lock;
use crate::wire::Frame;
use crate::wire::Framing;

/// A frame waiting for the sweeper: its place in the topic's order and, if replayable, its id.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) seq: u64,
    pub(crate) id: Option<u64>,
    pub(crate) frame: Frame,
}

#[derive(Debug)]
struct Queue {
    frames: Vec<Queued>,
    joining: Vec<Arc<DirectStream>>,
    /// Streams closed since the sweeper last took the queue.
    closed: usize,
    /// The topic is gone: streams finish what they have and end.
    topic_gone: bool,
    /// The streams, while nobody writes to them; `None` while a pass (or a publisher writing
    /// inline) has them.
    streams: Option<Vec<Arc<DirectStream>>>,
    /// The last replayable id sent: what a `resync` carries.
    last_id: u64,
}

impl Queue {
    /// Whether the sweeper has something to do.
    fn has_work(&self) -> bool {
        !self.frames.is_empty() || !self.joining.is_empty() || self.closed > 0 || self.topic_gone
    }
}

/// The most streams a publisher writes to itself rather than waking the sweeper. Each write is a
/// few microseconds in the publisher's task, with the topic's lock held; beyond a handful, the
/// sweeper (which yields, and batches what comes in meanwhile) is the better writer.
const INLINE_STREAMS: usize = 4;

/// One topic's sweeper, as the topic and its streams see it.
#[derive(Debug)]
pub(crate) struct Fanout {
    queue: Mutex<Queue>,
    wake: Notify,
    /// Streams joined and not yet closed.
    open: AtomicUsize,
    max_batch: usize,
}

impl Fanout {
    /// Starts the sweeper of a topic whose last id is `last_id`. Needs a Tokio runtime.
    pub(crate) fn start(max_batch: usize, last_id: u64) -> Arc<Fanout> {
        let queue = Queue {
            frames: Vec::new(),
            joining: Vec::new(),
            closed: 0,
            topic_gone: false,
            streams: Some(Vec::new()),
            last_id,
        };
        let fanout = Arc::new(Fanout {
            queue: Mutex::new(queue),
            wake: Notify::new(),
            open: AtomicUsize::new(0),
            max_batch: max_batch.max(1),
        });
        tokio::spawn(sweep(fanout.clone()));
        fanout
    }

    /// Sends a frame to every stream: written here and now when the sweeper is idle and the
    /// streams are few (see the module's doc), else queued for the sweeper. Called under the
    /// topic's lock, in the topic's order.
    pub(crate) fn push(&self, queued: Queued) {
        let mut queue = lock(&self.queue);
        if let Some(streams) = self.inline_writable(&mut queue) {
            let last_id = queue.last_id.max(queued.id.unwrap_or(0));
            queue.last_id = last_id;
            // Not under the queue's lock: a stream that fails closes itself, which takes it.
            drop(queue);
            let batch = Batch::new(std::slice::from_ref(&queued), 0);
            for stream in &streams {
                batch.send_to(stream, last_id);
            }
            batch.trace(streams.len());
            self.give_back(streams, last_id);
            return;
        }
        let was_empty = queue.frames.is_empty();
        queue.frames.push(queued);
        drop(queue);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// The streams, taken for a publisher to write to itself, when that keeps the topic's order:
    /// nothing queued, the list not in a pass, and few streams once those joining are added and
    /// the closed ones dropped (as the sweeper's next pass would).
    fn inline_writable(&self, queue: &mut Queue) -> Option<Vec<Arc<DirectStream>>> {
        if !queue.frames.is_empty() || queue.topic_gone {
            return None;
        }
        let streams = queue.streams.as_mut()?;
        if streams.len() + queue.joining.len() > INLINE_STREAMS {
            return None;
        }
        // Nothing is queued, so a stream joining has nothing to wait for: it can be written to.
        streams.append(&mut queue.joining);
        if std::mem::take(&mut queue.closed) > 0 {
            streams.retain(|stream| stream.is_open());
        }
        queue.streams.take()
    }

    /// Puts the streams back after a pass or an inline write, waking the sweeper if work came in
    /// meanwhile (it could not start without them).
    fn give_back(&self, streams: Vec<Arc<DirectStream>>, last_id: u64) {
        let mut queue = lock(&self.queue);
        queue.streams = Some(streams);
        queue.last_id = queue.last_id.max(last_id);
        let work = queue.has_work();
        drop(queue);
        if work {
            self.wake.notify_one();
        }
    }

    /// Adds a stream from the next pass on. Called under the topic's lock, so no frame falls
    /// between the subscription it was made from and this.
    pub(crate) fn join(&self, stream: Arc<DirectStream>) {
        self.open.fetch_add(1, Ordering::Relaxed);
        lock(&self.queue).joining.push(stream);
        self.wake.notify_one();
    }

    /// A stream closed: count it out, and have the sweeper drop it soon.
    pub(crate) fn stream_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        lock(&self.queue).closed += 1;
        self.wake.notify_one();
    }

    /// The topic was dropped: its streams end once they have sent what they have.
    pub(crate) fn topic_gone(&self) {
        lock(&self.queue).topic_gone = true;
        self.wake.notify_one();
    }

    /// How many streams are open on this sweeper.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// What a pass starts from.
struct Taken {
    frames: Vec<Queued>,
    streams: Vec<Arc<DirectStream>>,
    closed: usize,
    topic_gone: bool,
    last_id: u64,
}

impl Fanout {
    /// The work queued and the streams, or `None` while a publisher writing inline has the
    /// streams (it wakes the sweeper again when it puts them back with work waiting).
    fn take(&self) -> Option<Taken> {
        let mut queue = lock(&self.queue);
        let mut streams = queue.streams.take()?;
        streams.append(&mut queue.joining);
        Some(Taken {
            frames: std::mem::take(&mut queue.frames),
            streams,
            closed: std::mem::take(&mut queue.closed),
            topic_gone: queue.topic_gone,
            last_id: queue.last_id,
        })
    }

    /// Frames and streams that came in during a pass. Taken together: a stream that joined
    /// before a frame was queued must be in the list when that frame is sent.
    fn take_newer(&self) -> (Vec<Queued>, Vec<Arc<DirectStream>>) {
        let mut queue = lock(&self.queue);
        (std::mem::take(&mut queue.frames), std::mem::take(&mut queue.joining))
    }
}

/// Streams written to between two yields. A pass over 10,000 streams takes tens of milliseconds,
/// and on a server with one core nothing else (a POST, another topic, a timer) would run
/// meanwhile; yielding this often costs next to nothing and lets them in.
const STREAMS_PER_TURN: usize = 512;

/// On a wake with nothing to send, closed streams are dropped once they are at least this share
/// of the list (one in this many).
const PRUNE_SHARE: usize = 16;

/// How long a quiet topic keeps closed streams in its list (their sockets already shut).
const PRUNE_AFTER: Duration = Duration::from_secs(1);

/// The sweeper's loop: until the topic is gone, every queued frame to every stream.
async fn sweep(fanout: Arc<Fanout>) {
    // Closes seen and not yet walked out of the list, and when the first of them must go: a
    // deadline set at the first close, so a steady trickle of closes cannot keep pushing it back.
    let mut dead = 0;
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let overdue = match due {
            None => {
                fanout.wake.notified().await;
                false
            }
            Some(due) => tokio::select! {
                () = fanout.wake.notified() => false,
                () = tokio::time::sleep_until(due) => true,
            },
        };
        let Some(Taken { frames, mut streams, closed, topic_gone, mut last_id }) = fanout.take()
        else {
            // A publisher has the list for an inline write; try again later rather than spin.
            if overdue {
                due = Some(tokio::time::Instant::now() + PRUNE_AFTER);
            }
            continue;
        };
        dead += closed;
        if dead > 0 && (overdue || !frames.is_empty() || dead * PRUNE_SHARE >= streams.len()) {
            streams.retain(|stream| stream.is_open());
            (dead, due) = (0, None);
        } else if dead > 0 && due.is_none() {
            due = Some(tokio::time::Instant::now() + PRUNE_AFTER);
        }
        let mut pass = Pass { window: frames, start: 0, max_batch: fanout.max_batch };
        while let Some(batch) = pass.next_batch() {
            last_id = last_id.max(batch.last_id.unwrap_or(0));
            let batch = pass.send_to_all(&fanout, &mut streams, batch, last_id).await;
            batch.trace(streams.len());
        }
        if topic_gone {
            for stream in &streams {
                stream.end_after_queued();
            }
            return;
        }
        let more = !pass.window.is_empty();
        fanout.give_back(streams, last_id);
        if more {
            // Let the publisher and the streams' own tasks run between passes.
            tokio::task::yield_now().await;
        }
    }
}

/// The frames of one round of passes, and how far every stream has had them.
struct Pass {
    window: Vec<Queued>,
    /// Frames before this index have gone to every stream.
    start: usize,
    max_batch: usize,
}

impl Pass {
    /// The next batch to send every stream: consecutive frames from `start`, at most
    /// `max_batch` bytes (one frame at least).
    fn next_batch(&mut self) -> Option<Batch> {
        let rest = self.window.get(self.start..).filter(|rest| !rest.is_empty())?;
        let count = batches(rest, self.max_batch).next().map_or(0, <[Queued]>::len);
        Some(Batch::new(&rest[..count], self.start))
    }

    /// Offers `batch` to every stream, dropping those that closed (by swapping the last one into
    /// the gap: the order streams are served in does not matter). Frames published during the
    /// pass join the batch for the streams still ahead, so a stream at the end of a long pass
    /// gets them in the same write rather than one pass later; the streams already passed get
    /// them next (a stream's `sent_through` says what it has). Returns the batch as it ended.
    async fn send_to_all(
        &mut self,
        fanout: &Fanout,
        streams: &mut Vec<Arc<DirectStream>>,
        mut batch: Batch,
        mut current_id: u64,
    ) -> Batch {
        // Where the frames that joined during the pass begin in the window.
        let mut grown_from = None;
        let (mut index, mut turn) = (0, 0);
        while index < streams.len() {
            if batch.send_to(&streams[index], current_id) {
                index += 1;
            } else {
                streams.swap_remove(index);
            }
            turn += 1;
            if turn < STREAMS_PER_TURN {
                continue;
            }
            turn = 0;
            tokio::task::yield_now().await;
            let (newer, joining) = fanout.take_newer();
            streams.extend(joining);
            if newer.is_empty() {
                continue;
            }
            let end = batch.start + batch.starts.len();
            let newer_bytes: usize = newer.iter().map(|queued| queued.frame.len()).sum();
            let fits = end == self.window.len() && batch.raw.len() + newer_bytes <= self.max_batch;
            self.window.extend(newer);
            if fits {
                grown_from.get_or_insert(end);
                batch = Batch::new(&self.window[batch.start..], batch.start);
                current_id = current_id.max(batch.last_id.unwrap_or(0));
            }
        }
        // Streams passed before the batch grew still lack its newer frames: the next batch
        // starts where those came in (the streams that have them skip it).
        self.start = grown_from.unwrap_or(batch.start + batch.starts.len());
        batch
    }
}

/// Consecutive runs of `frames` of at most `max_bytes` each (a bigger frame makes a run alone).
fn batches(frames: &[Queued], max_bytes: usize) -> impl Iterator<Item = &[Queued]> {
    let mut rest = frames;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = 0;
        let count = rest
            .iter()
            .take_while(|queued| {
                size += queued.frame.len();
                size <= max_bytes
            })
            .count()
            .max(1);
        let (group, after) = rest.split_at(count);
        rest = after;
        Some(group)
    })
}

/// Frames joined once, in both framings, with where each one starts.
struct Batch {
    /// `<hex length>\r\n<frames>\r\n`: one chunk of an HTTP/1.1 body.
    chunked: Bytes,
    /// The frames alone, for HTTP/1.0 bodies (a slice of `chunked`).
    raw: Bytes,
    /// Each frame's sequence number and where it starts in `raw`.
    starts: Vec<(u64, usize)>,
    /// The last replayable id in the batch.
    last_id: Option<u64>,
    /// Where its first frame is in the pass's window.
    start: usize,
}

/// The head of an HTTP/1.1 chunk of `size` bytes (`1a2\r\n`): the buffer and where the head
/// starts in it. Written by hand because `format!` would cost a batch more than its copy does.
fn chunk_head(size: usize) -> ([u8; 18], usize) {
    let mut digits = [0u8; 18];
    digits[16] = b'\r';
    digits[17] = b'\n';
    let mut at = 16;
    let mut rest = size;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            return (digits, at);
        }
    }
}

impl Batch {
    /// `frames` joined; they begin at `start` in the pass's window.
    fn new(frames: &[Queued], start: usize) -> Batch {
        let size: usize = frames.iter().map(|queued| queued.frame.len()).sum();
        let (digits, head) = chunk_head(size);
        let head = &digits[head..];
        let mut buffer = BytesMut::with_capacity(head.len() + size + 2);
        buffer.extend_from_slice(head);
        let mut starts = Vec::with_capacity(frames.len());
        for queued in frames {
            starts.push((queued.seq, buffer.len() - head.len()));
            buffer.extend_from_slice(queued.frame.as_bytes());
        }
        buffer.extend_from_slice(b"\r\n");
        let chunked = buffer.freeze();
        let raw = chunked.slice(head.len()..chunked.len() - 2);
        let last_id = frames.iter().filter_map(|queued| queued.id).max();
        Batch { chunked, raw, starts, last_id, start }
    }

    /// Sends `stream` the frames it has not had (all of them, almost always). False once the
    /// stream is closed.
    fn send_to(&self, stream: &DirectStream, current_id: u64) -> bool {
        let had = stream.sent_through();
        let first_new = self.starts.partition_point(|(seq, _)| *seq <= had);
        let Some(&(last_seq, _)) = self.starts.last() else { return true };
        if first_new == self.starts.len() {
            return true;
        }
        stream.set_sent_through(last_seq);
        if first_new == 0 {
            let unit = match stream.framing() {
                Framing::Chunked => &self.chunked,
                Framing::UntilClose => &self.raw,
            };
            let sent = stream.send(unit, self.starts.len(), current_id);
            if sent {
                stream.note_handed(self.last_id);
            }
            return sent;
        }
        // A stream that joined, or was passed, while these frames were queued gets the rest.
        let unit = stream.framing().unit(self.raw.slice(self.starts[first_new].1..));
        let sent = stream.send(&unit, self.starts.len() - first_new, current_id);
        if sent {
            stream.note_handed(self.last_id);
        }
        sent
    }

    /// Message tracing (`RUST_LOG=sse_core=trace`): what went out, secrets redacted.
    fn trace(&self, streams: usize) {
        if tracing::enabled!(tracing::Level::TRACE) {
            let text = String::from_utf8_lossy(&self.raw);
            tracing::trace!(bytes = self.raw.len(), streams, frames = %redact_secrets(&text), "sent");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
mod tests {
    use super::*;
    use crate::hub::{Resume, Topic, TopicConfig};
    use crate::metrics::Metrics;
    use crate::wire::{Event, Parser};
    use tokio::io::AsyncReadExt;

    fn queued(seq: u64, data: &str) -> Queued {
        Queued { seq, id: Some(seq), frame: Event::new().id(seq).data(data).encode() }
    }

    #[test]
    fn batches_hold_at_most_the_limit_and_a_big_frame_goes_alone() {
        let frames: Vec<Queued> = (1..=5).map(|seq| queued(seq, "0123456789")).collect();
        let size = frames[0].frame.len();
        let sizes: Vec<usize> = batches(&frames, 2 * size).map(<[Queued]>::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        let alone: Vec<usize> = batches(&frames, 1).map(<[Queued]>::len).collect();
        assert_eq!(alone, [1, 1, 1, 1, 1]);
    }

    #[test]
    fn chunk_heads_are_lower_case_hex_and_crlf() {
        for size in [0, 1, 15, 16, 255, 4096, 123_456_789, usize::MAX] {
            let (digits, start) = chunk_head(size);
            assert_eq!(&digits[start..], format!("{size:x}\r\n").as_bytes(), "{size}");
        }
    }

    #[test]
    fn a_batch_is_one_chunk_and_the_frames_in_order() {
        let frames = [queued(7, "a"), queued(8, "b")];
        let batch = Batch::new(&frames, 0);
        let raw = b"id: 7\ndata: a\n\nid: 8\ndata: b\n\n";
        assert_eq!(batch.raw.as_ref(), raw);
        let chunk = [format!("{:x}\r\n", raw.len()).as_bytes(), raw, b"\r\n"].concat();
        assert_eq!(batch.chunked.as_ref(), chunk.as_slice());
        assert_eq!(batch.starts, [(7, 0), (8, 15)]);
        assert_eq!(batch.last_id, Some(8));
    }

    /// More streams than one turn of the sweeper, and events published all the while: frames
    /// that come in during a pass join it for the streams still ahead and reach the others next,
    /// and every stream gets every event once, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_published_during_long_passes_reach_every_stream_once_in_order() {
        const STREAMS: usize = 3 * STREAMS_PER_TURN / 2;
        const EVENTS: usize = 300;
        let config = TopicConfig { buffer: 4096, ..TopicConfig::default() };
        let topic = Topic::new(config, Metrics::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..STREAMS {
            clients.push(direct_client(&topic, &listener, addr).await.0);
        }
        let first = topic.last_id() + 1;
        for i in 0..EVENTS {
            topic.publish(Event::new().data(i.to_string()));
            tokio::task::yield_now().await;
        }
        drop(topic);
        for client in clients {
            let expected: Vec<u64> = (first..first + EVENTS as u64).collect();
            assert_eq!(ids_until_the_end(client).await, expected);
        }
    }

    /// A topic that grows from one stream to more than a publisher writes to itself, and back:
    /// frames go out inline, then through the sweeper, then inline again, and every stream gets
    /// exactly the frames published after it joined, once each, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_written_inline_or_swept_get_every_frame_after_they_joined_once_in_order() {
        const EVENTS: u64 = 60;
        let config = TopicConfig { buffer: 4096, ..TopicConfig::default() };
        let topic = Topic::new(config, Metrics::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Each client with the id of the first event it must get, and whether it leaves early.
        let mut clients = Vec::new();
        let mut leaving = Vec::new();
        for i in 0..EVENTS {
            if i % 10 == 0 {
                let (client, handle) = direct_client(&topic, &listener, addr).await;
                let first = topic.last_id() + 1;
                if i == 20 {
                    leaving.push((client, handle, first));
                } else {
                    clients.push((client, first));
                }
            }
            if i == 40 {
                // One leaves: the stream notices, and the others go on as before.
                let (client, handle, _) = leaving.pop().unwrap();
                drop(client);
                handle.await.unwrap();
            }
            topic.publish(Event::new().data(i.to_string()));
            tokio::task::yield_now().await;
        }
        let last = topic.last_id();
        drop(topic);
        for (client, first) in clients {
            let expected: Vec<u64> = (first..=last).collect();
            assert_eq!(ids_until_the_end(client).await, expected);
        }
    }

    /// Closed streams leave the sweeper's list, and let go of their sockets, on a quiet topic too
    /// (where no pass comes to walk them out); the streams still open get what comes next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_streams_leave_the_list_on_a_quiet_topic_too() {
        let topic = Topic::new(TopicConfig::default(), Metrics::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut staying, mut leaving) = (Vec::new(), Vec::new());
        // Two of 48 leave: fewer than a sixteenth, so no wake walks them out at once.
        for i in 0..48 {
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let stream = topic.subscribe(&Resume::Live).into_direct(server, Framing::UntilClose);
            let held = Arc::downgrade(&stream);
            let task = tokio::spawn(async move { stream.run(watch()).await });
            if i % 24 == 0 { leaving.push((client, task, held)) } else { staying.push(client) }
        }
        let mut gone = Vec::new();
        for (client, task, held) in leaving {
            drop(client);
            task.await.unwrap();
            gone.push(held);
        }
        // Nothing is published: only the sweeper's own clock can drop them (a bounded poll: no
        // event says a list let go of a stream).
        let all_dropped = async {
            while gone.iter().any(|held| held.strong_count() > 0) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all_dropped)
            .await
            .expect("the sweeper let go of every closed stream");
        let next = topic.last_id() + 1;
        topic.publish(Event::new().data("after"));
        drop(topic);
        for client in staying {
            assert_eq!(ids_until_the_end(client).await, [next]);
        }
    }

    /// A client whose stream (HTTP/1.0 framing) joins `topic`'s sweeper now, and the stream's task.
    async fn direct_client(
        topic: &Topic,
        listener: &tokio::net::TcpListener,
        addr: std::net::SocketAddr,
    ) -> (tokio::net::TcpStream, tokio::task::JoinHandle<()>) {
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream = topic.subscribe(&Resume::Live).into_direct(server, Framing::UntilClose);
        (client, tokio::spawn(async move { stream.run(watch()).await }))
    }

    /// The ids of every event the client reads until its stream ends.
    async fn ids_until_the_end(mut client: tokio::net::TcpStream) -> Vec<u64> {
        let mut body = Vec::new();
        client.read_to_end(&mut body).await.unwrap();
        let events = Parser::new().feed(&body);
        events.iter().map(|event| event.last_event_id.parse().unwrap()).collect()
    }

    fn watch() -> crate::hub::Watch {
        let keep_alive = std::time::Duration::from_secs(60);
        crate::hub::Watch { token: Default::default(), keep_alive, keep: Vec::new() }
    }
}
