//! Topics: publish once, fan out to every subscriber, replay what a reconnecting client missed.
//!
//! A [`Topic`] keeps three things under one short lock: the last id it gave out, a ring of the
//! most recent replayable frames, and a [`tokio::sync::broadcast`] sender for live delivery.
//! Publishing encodes the event once, pushes the frame into the ring and the channel; every
//! subscriber shares the same bytes.
//!
//! Subscribing takes the same lock, so the replay taken from the ring and the live channel meet
//! exactly: nothing is missed or doubled between them. A client that comes back with a
//! `Last-Event-ID` gets exactly the frames after it; one whose id is unknown or older than the
//! ring gets a single `resync` event instead (it must refetch state). A subscriber that falls
//! behind by more than its buffer is told the same way: a gap is never silent.
//!
//! Streams whose socket could be taken over from hyper ([`crate::edge::takeover`]) leave the
//! channel once their response head is out: [`Subscription::into_direct`] moves them, under the
//! same lock, onto the topic's sweeper ([`fanout`]), which writes each batch of new frames straight
//! to every such socket ([`direct`]) from one loop, or, on a topic with a stream or two (a
//! session's), has the publisher write them itself. The channel stays for every other stream
//! (HTTP/2, TLS), and both paths see the same frames in the same order.
//!
//! Ids are integers that only grow. The first id of a topic is taken from the clock (microseconds
//! since 1970), so ids from before a server restart are always older than anything in the new
//! ring and get `resync`, never some other event that happens to reuse the number.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::sync::lock;
use crate::wire::Framing;
use crate::wire::{Event, Frame};

mod direct;
mod fanout;

pub(crate) use direct::{DirectStream, Watch};
use fanout::{Fanout, Queued};

/// Sizes for topics.
#[derive(Clone, Copy, Debug)]
pub struct TopicConfig {
    /// How many recent frames are kept for replay.
    pub replay: usize,
    /// How many frames a subscriber may fall behind before it is sent `resync`.
    pub buffer: usize,
    /// The most bytes gathered into one write when a subscriber has several frames waiting.
    pub max_batch_bytes: usize,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig { replay: 1024, buffer: 1024, max_batch_bytes: 64 * 1024 }
    }
}

/// Where a new subscription starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// From the next event published.
    Live,
    /// After the event with this id (the client's `Last-Event-ID`, as text).
    After(String),
}

impl Resume {
    /// `Resume::After(id)` when the client sent a non-empty id, else `Resume::Live`.
    pub fn from_last_event_id(id: Option<&str>) -> Resume {
        match id {
            Some(id) if !id.is_empty() => Resume::After(id.to_owned()),
            _ => Resume::Live,
        }
    }
}

/// A frame as it travels to subscribers: replayable frames carry their id.
#[derive(Clone, Debug)]
struct Published {
    id: Option<u64>,
    frame: Frame,
}

/// A named set of topics, created on first use.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    topics: Mutex<HashMap<String, Topic>>,
    config: TopicConfig,
    metrics: Metrics,
}

impl Hub {
    /// An empty hub whose topics use `config`.
    pub fn new(config: TopicConfig, metrics: Metrics) -> Hub {
        Hub { inner: Arc::new(HubInner { topics: Mutex::default(), config, metrics }) }
    }

    /// The topic with this name, created if it does not exist yet.
    pub fn topic(&self, name: &str) -> Topic {
        let mut topics = lock(&self.inner.topics);
        topics
            .entry(name.to_owned())
            .or_insert_with(|| Topic::new(self.inner.config, self.inner.metrics.clone()))
            .clone()
    }

    /// The topic with this name for a history kept elsewhere (a database), created if it does not
    /// exist yet: its ids continue after `last_id` (publish with [`Topic::publish_with_id`]), and
    /// it keeps no replay ring, since resuming reads the store. A `Last-Event-ID` resume on it
    /// gets `resync`.
    pub fn topic_backed_by_store(&self, name: &str, last_id: u64) -> Topic {
        let mut topics = lock(&self.inner.topics);
        let config = TopicConfig { replay: 0, ..self.inner.config };
        let make = || Topic::starting_after(config, self.inner.metrics.clone(), last_id);
        topics.entry(name.to_owned()).or_insert_with(make).clone()
    }

    /// The topic with this name, if it exists.
    pub fn get(&self, name: &str) -> Option<Topic> {
        lock(&self.inner.topics).get(name).cloned()
    }

    /// Forgets a topic. Its subscribers see their stream end.
    pub fn remove(&self, name: &str) -> Option<Topic> {
        lock(&self.inner.topics).remove(name)
    }
}

/// One ordered stream of events with its replay ring. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Topic {
    inner: Arc<TopicInner>,
}

#[derive(Debug)]
struct TopicInner {
    state: Mutex<TopicState>,
    /// The id of the last replayable frame sent, readable without the lock: a subscriber that
    /// has received it knows nothing more is waiting (see [`Subscription::next_batch`]).
    sent_through: Arc<AtomicU64>,
    config: TopicConfig,
    metrics: Metrics,
}

#[derive(Debug)]
struct TopicState {
    /// The id before the first one this topic gave out.
    first_id: u64,
    last_id: u64,
    ring: VecDeque<(u64, Frame)>,
    /// Counts every frame sent live, replayable or not: where a stream joins the sweeper.
    seq: u64,
    /// The sweeper of taken-over streams, once one has joined.
    fanout: Option<Arc<Fanout>>,
    /// The channel to subscribers served through hyper, made by the first subscription: its
    /// ring of `buffer` slots (some 80 KB at the default 1,024) is allocated whole when made, and
    /// a topic nobody has streamed (a chat room only joined, say) should not hold one.
    sender: Option<broadcast::Sender<Published>>,
}

impl Drop for TopicInner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(fanout) = &state.fanout {
            fanout.topic_gone();
        }
    }
}

impl TopicState {
    /// The frames after `after`, or `None` when that id cannot be resumed from.
    fn replay_after(&self, after: u64) -> Option<Vec<Published>> {
        let oldest = self.ring.front().map_or(self.last_id + 1, |(id, _)| *id);
        if after > self.last_id || after < self.first_id || after + 1 < oldest {
            return None;
        }
        let newer = self.ring.iter().filter(|(id, _)| *id > after);
        Some(newer.map(|(id, frame)| Published { id: Some(*id), frame: frame.clone() }).collect())
    }
}

/// Microseconds since 1970: where a new topic's ids start.
fn clock_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
}

impl Topic {
    /// A topic on its own (sessions use these; most code asks a [`Hub`]).
    pub fn new(config: TopicConfig, metrics: Metrics) -> Topic {
        let first_id = clock_id();
        let state = TopicState {
            first_id,
            last_id: first_id,
            ring: VecDeque::new(),
            seq: 0,
            fanout: None,
            sender: None,
        };
        let sent_through = Arc::new(AtomicU64::new(first_id));
        let inner = TopicInner { state: Mutex::new(state), sent_through, config, metrics };
        Topic { inner: Arc::new(inner) }
    }

    /// A topic whose first id will be `last_id + 1` (for ids that must continue a sequence kept
    /// elsewhere, such as a message table).
    pub fn starting_after(config: TopicConfig, metrics: Metrics, last_id: u64) -> Topic {
        let topic = Topic::new(config, metrics);
        let mut state = lock(&topic.inner.state);
        state.first_id = last_id;
        state.last_id = last_id;
        topic.inner.sent_through.store(last_id, Ordering::Release);
        drop(state);
        topic
    }

    /// Publishes `event` under an id chosen by the caller (a database row id, say), which must be
    /// greater than every id published so far; otherwise nothing is sent and the last id is
    /// returned as the error. Callers publish in id order, e.g. while holding the lock that
    /// assigned the id.
    pub fn publish_with_id(&self, id: u64, event: Event) -> Result<(), u64> {
        let mut state = lock(&self.inner.state);
        if id <= state.last_id {
            return Err(state.last_id);
        }
        self.publish_locked(&mut state, id, event);
        Ok(())
    }

    fn publish_locked(&self, state: &mut TopicState, id: u64, event: Event) {
        let frame = event.id(id).encode();
        state.last_id = id;
        if self.inner.config.replay > 0 {
            if state.ring.len() == self.inner.config.replay {
                state.ring.pop_front();
            }
            state.ring.push_back((id, frame.clone()));
        }
        self.send_live(state, Published { id: Some(id), frame });
        self.inner.sent_through.store(id, Ordering::Release);
        self.inner.metrics.event_published();
    }

    /// Sends a frame to the channel's subscribers and to the sweeper's streams, under the lock.
    fn send_live(&self, state: &mut TopicState, published: Published) {
        state.seq += 1;
        if let Some(fanout) = &state.fanout {
            let queued =
                Queued { seq: state.seq, id: published.id, frame: published.frame.clone() };
            fanout.push(queued);
        }
        // No receivers (or no channel yet) is fine: the frame waits in the ring for whoever comes.
        if let Some(sender) = &state.sender {
            let _ = sender.send(published);
        }
    }

    /// Gives `event` the next id, encodes it once, keeps it for replay and sends it to every
    /// subscriber. Returns the id.
    pub fn publish(&self, event: Event) -> u64 {
        let mut state = lock(&self.inner.state);
        let id = state.last_id + 1;
        self.publish_locked(&mut state, id, event);
        id
    }

    /// Sends `event` to the current subscribers only: no id, not kept for replay (for things
    /// like typing indicators that are worthless later).
    pub fn publish_transient(&self, event: &Event) {
        let frame = event.encode();
        let mut state = lock(&self.inner.state);
        self.send_live(&mut state, Published { id: None, frame });
    }

    /// Tells every live subscriber it missed events up to `missed_through` (they never reached
    /// this topic, say a shared log trimmed them): one `resync` carrying that id, not kept for
    /// replay. A client resuming later from an id before the gap gets `resync` too: the ring
    /// holds nothing of the gap, so a replay from there would skip it silently.
    pub fn resync_live(&self, reason: &'static str, missed_through: u64) {
        let mut state = lock(&self.inner.state);
        state.first_id = state.first_id.max(missed_through);
        self.inner.metrics.resync(reason);
        let frame = resync_frame(reason, missed_through);
        self.send_live(&mut state, Published { id: Some(missed_through), frame });
    }

    /// The id of the last replayable event published.
    pub fn last_id(&self) -> u64 {
        lock(&self.inner.state).last_id
    }

    /// How many subscriptions are open (on the channel, and taken over by the sweeper).
    pub fn subscriber_count(&self) -> usize {
        let state = lock(&self.inner.state);
        let direct = state.fanout.as_ref().map_or(0, |fanout| fanout.open());
        state.sender.as_ref().map_or(0, broadcast::Sender::receiver_count) + direct
    }

    /// Opens a subscription starting at `resume`.
    pub fn subscribe(&self, resume: &Resume) -> Subscription {
        let mut state = lock(&self.inner.state);
        let buffer = self.inner.config.buffer.max(1);
        let receiver = state.sender.get_or_insert_with(|| broadcast::channel(buffer).0).subscribe();
        let mut backlog = VecDeque::new();
        if let Resume::After(text) = resume {
            match text.parse::<u64>().ok().and_then(|after| state.replay_after(after)) {
                Some(frames) => backlog.extend(frames),
                None => {
                    self.inner.metrics.resync("unknown_id");
                    let frame = resync_frame("unknown_id", state.last_id);
                    backlog.push_back(Published { id: Some(state.last_id), frame });
                }
            }
        }
        drop(state);
        Subscription {
            backlog,
            receiver: Some(receiver),
            sent_through: self.inner.sent_through.clone(),
            received_through: 0,
            handed: ResumePoint::default(),
            max_batch: self.inner.config.max_batch_bytes,
            skip_through: 0,
            metrics: self.inner.metrics.clone(),
            topic: Arc::downgrade(&self.inner),
        }
    }

    /// Opens a subscription that replays everything after the numeric id `after` (used by
    /// sessions, which track how far each one was delivered).
    pub fn subscribe_after(&self, after: u64) -> Subscription {
        self.subscribe(&Resume::After(after.to_string()))
    }
}

/// The `resync` event: "you missed something; refetch state". It carries the topic's current
/// id, so a client that reconnects later resumes from here rather than from the gap.
fn resync_frame(reason: &str, current_id: u64) -> Frame {
    Event::new()
        .event("resync")
        .id(current_id)
        .json(&serde_json::json!({ "reason": reason }))
        .encode()
}

/// The id of the last replayable frame a subscription handed out, shared with whoever must know
/// it once the subscription has moved on (onto its topic's sweeper, say): a session resumes its
/// next connection after it. Ids start above zero, so zero means "none yet".
#[derive(Clone, Debug, Default)]
pub struct ResumePoint(Arc<AtomicU64>);

impl ResumePoint {
    /// The last id handed out, if any.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// Notes that `id` was handed out (ids on a stream only grow; an older one changes nothing).
    pub(crate) fn note(&self, id: Option<u64>) {
        if let Some(id) = id {
            self.0.fetch_max(id, Ordering::AcqRel);
        }
    }
}

/// A live view of a topic: replayed frames first, then new ones as they are published.
#[derive(Debug)]
pub struct Subscription {
    backlog: VecDeque<Published>,
    /// Always `Some` until the subscription is dropped: its [`Drop`] lets go of it under the
    /// topic's lock, so the last one to leave knows it is the last and frees the channel.
    receiver: Option<broadcast::Receiver<Published>>,
    /// The topic's last sent id, and the last one this subscription took from the channel.
    sent_through: Arc<AtomicU64>,
    received_through: u64,
    handed: ResumePoint,
    max_batch: usize,
    /// After a lag, frames up to this id are covered by the `resync` already sent.
    skip_through: u64,
    metrics: Metrics,
    /// Weak, so that removing a topic from its hub ends its subscriptions.
    topic: Weak<TopicInner>,
}

impl Subscription {
    /// Waits for the next frames and returns them gathered into one buffer (every frame that is
    /// already waiting, up to the batch limit), so a busy stream costs one write per batch rather
    /// than one per event. Returns `None` when the topic is gone.
    ///
    /// Whether more frames wait is first read from the topic's last sent id (an atomic load),
    /// because asking the channel when it is empty takes its lock: on a stream that keeps up,
    /// that was one lock more per event per subscriber, for nothing.
    pub async fn next_batch(&mut self) -> Option<Bytes> {
        if self.backlog.is_empty() {
            let first = self.recv().await?;
            self.backlog.push_back(first);
        }
        let mut size: usize = self.backlog.iter().map(|p| p.frame.len()).sum();
        while size < self.max_batch && self.more_may_wait() {
            let Some(next) = self.try_recv() else { break };
            size += next.frame.len();
            self.backlog.push_back(next);
        }
        Some(self.take_batch())
    }

    /// Takes frames from the backlog, up to the batch limit (at least one).
    fn take_batch(&mut self) -> Bytes {
        if self.backlog.len() == 1 {
            // The common case: hand out the shared bytes without copying.
            return self.pop().map(Frame::into_bytes).unwrap_or_default();
        }
        let mut batch = BytesMut::new();
        while let Some(next) = self.backlog.front() {
            if !batch.is_empty() && batch.len() + next.frame.len() > self.max_batch {
                break;
            }
            let Some(frame) = self.pop() else { break };
            batch.extend_from_slice(frame.as_bytes());
        }
        batch.freeze()
    }

    /// False only when this subscription has received the topic's last replayable frame (a
    /// transient frame sent after it could still wait; it goes in the next batch).
    fn more_may_wait(&self) -> bool {
        self.sent_through.load(Ordering::Acquire) > self.received_through
    }

    /// Notes how far this subscription has taken frames from the channel.
    fn received(&mut self, published: &Published) {
        if let Some(id) = published.id {
            self.received_through = self.received_through.max(id);
        }
    }

    fn pop(&mut self) -> Option<Frame> {
        let published = self.backlog.pop_front()?;
        self.handed.note(published.id);
        Some(published.frame)
    }

    async fn recv(&mut self) -> Option<Published> {
        loop {
            let receiver = self.receiver.as_mut()?;
            let published = match receiver.recv().await {
                Ok(published) => published,
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(self.lagged()),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            self.received(&published);
            if self.wanted(&published) {
                return Some(published);
            }
        }
    }

    fn try_recv(&mut self) -> Option<Published> {
        loop {
            let published = match self.receiver.as_mut()?.try_recv() {
                Ok(published) => published,
                Err(broadcast::error::TryRecvError::Lagged(_)) => return Some(self.lagged()),
                Err(_) => return None,
            };
            self.received(&published);
            if self.wanted(&published) {
                return Some(published);
            }
        }
    }

    /// False for frames a `resync` already covered.
    fn wanted(&self, published: &Published) -> bool {
        published.id.is_none_or(|id| id > self.skip_through)
    }

    /// The subscriber fell more than its buffer behind: frames were dropped for it. It gets one
    /// `resync` carrying the topic's current id, and the frames still queued up to that id are
    /// skipped (the state it refetches includes them), so ids on the stream keep increasing.
    fn lagged(&mut self) -> Published {
        let current = self.topic.upgrade().map_or(0, |topic| lock(&topic.state).last_id);
        self.lagged_at(current)
    }

    /// [`Self::lagged`], with the topic's current id already known (its lock held).
    fn lagged_at(&mut self, current: u64) -> Published {
        self.metrics.resync("lagged");
        self.skip_through = current;
        // Frames up to `current` still queued are skipped, so they count as received, but the
        // loop in `next_batch` must still drain them: leave `received_through` where it is.
        Published { id: Some(current), frame: resync_frame("lagged", current) }
    }

    /// Moves this subscription onto its topic's sweeper, which will write to `socket` (taken over
    /// from hyper; its body delimited by `framing`): the frames this subscription holds and has
    /// not sent go first, then every frame published from now on. The topic's lock is held
    /// throughout, so nothing falls between the two or arrives twice. If the topic is gone, the
    /// stream sends what it still holds and ends.
    pub(crate) fn into_direct(mut self, socket: TcpStream, framing: Framing) -> Arc<DirectStream> {
        let metrics = self.metrics.clone();
        let Some(topic) = self.topic.upgrade() else {
            let waiting = self.drain_waiting(0);
            let handed = self.handed.clone();
            let stream =
                DirectStream::new(socket, framing, waiting, 0, usize::MAX, metrics, handed);
            let stream = Arc::new(stream);
            stream.end_after_queued();
            return stream;
        };
        let mut state = lock(&topic.state);
        let waiting = self.drain_waiting(state.last_id);
        let (max_batch, last_id) = (topic.config.max_batch_bytes, state.last_id);
        let fanout = state.fanout.get_or_insert_with(|| Fanout::start(max_batch, last_id)).clone();
        let buffer = topic.config.buffer;
        let weak = Arc::downgrade(&fanout);
        let handed = self.handed.clone();
        let stream =
            DirectStream::new(socket, framing, waiting, state.seq, buffer, metrics, handed);
        let stream = Arc::new(stream.swept_by(weak));
        fanout.join(stream.clone());
        drop(state);
        stream
    }

    /// Everything this subscription holds and has not handed out: its backlog, then what waits in
    /// the channel (a `resync` if it lagged). `current` is the topic's last id, its lock held.
    /// They count as handed out: they go to the direct stream that replaces this subscription.
    fn drain_waiting(&mut self, current: u64) -> Vec<Bytes> {
        let mut waiting: Vec<Published> = self.backlog.drain(..).collect();
        while let Some(receiver) = self.receiver.as_mut() {
            match receiver.try_recv() {
                Ok(published) => {
                    self.received(&published);
                    if self.wanted(&published) {
                        waiting.push(published);
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    let resync = self.lagged_at(current);
                    waiting.push(resync);
                }
                Err(_) => break,
            }
        }
        for published in &waiting {
            self.handed.note(published.id);
        }
        waiting.into_iter().map(|published| published.frame.into_bytes()).collect()
    }

    /// Skips live frames with ids up to `id`: for a subscriber that was just sent everything up
    /// to `id` from another source (a database), so nothing arrives twice.
    pub fn skip_through(&mut self, id: u64) {
        self.skip_through = self.skip_through.max(id);
        self.backlog.retain(|p| p.id.is_none_or(|pid| pid > id));
    }

    /// The id of the last replayable frame this subscription handed out in a batch, if any.
    pub fn last_id(&self) -> Option<u64> {
        self.handed.get()
    }

    /// The same as [`last_id`](Self::last_id), kept up to date wherever the subscription goes,
    /// including onto its topic's sweeper ([`crate::stream::LiveResponse`]).
    pub fn resume_point(&self) -> ResumePoint {
        self.handed.clone()
    }
}

impl Drop for Subscription {
    /// The channel's ring of slots is allocated whole (some 80 KB), so a topic keeps it only
    /// while someone receives from it. Most subscriptions move onto the sweeper within
    /// microseconds ([`Subscription::into_direct`]); without this, a session whose stream was
    /// taken over, or a room everybody left, would hold its ring until the topic itself went.
    fn drop(&mut self) {
        let Some(topic) = self.topic.upgrade() else { return };
        let mut state = lock(&topic.state);
        drop(self.receiver.take());
        if state.sender.as_ref().is_some_and(|sender| sender.receiver_count() == 0) {
            state.sender = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_topic_nobody_subscribed_to_holds_no_channel_and_its_first_subscriber_misses_nothing()
    {
        let topic = Topic::new(TopicConfig::default(), Metrics::new());
        let first = topic.publish(Event::new().data("before anyone came"));
        assert!(lock(&topic.inner.state).sender.is_none(), "no ring of slots for nobody");

        let mut subscription = topic.subscribe(&Resume::After((first - 1).to_string()));
        assert!(lock(&topic.inner.state).sender.is_some());
        topic.publish(Event::new().data("live"));
        let mut parser = crate::wire::Parser::new();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let batch = subscription.next_batch().await.unwrap_or_default();
            seen.extend(parser.feed(&batch).into_iter().map(|e| e.data));
        }
        assert_eq!(seen, ["before anyone came", "live"], "the replay, then the channel");
    }

    #[tokio::test]
    async fn the_last_subscription_to_leave_frees_the_channel_and_a_later_one_misses_nothing() {
        let topic = Topic::new(TopicConfig::default(), Metrics::new());
        let has_channel = || lock(&topic.inner.state).sender.is_some();
        let first = topic.subscribe(&Resume::Live);
        let second = topic.subscribe(&Resume::Live);
        drop(first);
        assert!(has_channel(), "one subscriber still receives");
        let published = topic.publish(Event::new().data("while one listened"));
        drop(second);
        assert!(!has_channel(), "nobody receives: the ring of slots is let go");

        topic.publish(Event::new().data("while nobody listened"));
        let mut later = topic.subscribe(&Resume::After((published - 1).to_string()));
        assert!(has_channel());
        topic.publish(Event::new().data("live again"));
        let mut parser = crate::wire::Parser::new();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let batch = later.next_batch().await.unwrap_or_default();
            seen.extend(parser.feed(&batch).into_iter().map(|e| e.data));
        }
        assert_eq!(seen, ["while one listened", "while nobody listened", "live again"]);
    }
}
