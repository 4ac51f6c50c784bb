//! A topic every instance shares, through Redis: one replay log, and live fan-out to the clients
//! of every instance.
//!
//! A hub [`Topic`] reaches only its own process's clients. A [`SharedTopic`] keeps the topic's
//! log in a Redis stream, `sse:topic:<name>`, whose entry ids come one after another from the
//! counter `sse:topic-seq:<name>` (which starts from the clock, so ids only grow, even after Redis
//! loses its data) by the same Lua script that appends the entry and announces its id on the
//! pub/sub channel `sse:topics`. Redis runs the script whole and alone, so the log's order is
//! the announcements' order. Every instance follows that channel and mirrors the log into a local
//! topic under the same ids, so:
//!
//! - a client of any instance gets every event, published on any instance, in log order, and
//!   each instance fans it out to its own clients the usual way (one encode, the sweeper);
//! - `Last-Event-ID` means the same everywhere: a client cut off from one instance resumes on
//!   another with exactly what it missed, from that instance's ring, which mirrors the log (a new
//!   instance loads the log's tail into its ring before it serves anyone);
//! - an instance that missed announcements (its link to Redis dropped) sees the gap in the ids,
//!   or is told it subscribed again, and reads what it missed from the log before going on. If
//!   the log no longer holds it (it keeps about [`LOG_LENGTH`] entries), the instance's clients
//!   get `resync`: a gap is never silent.
//!
//! Publishing waits for Redis: an event is acknowledged (`Ok(id)`) only once it is in the log.
//! While Redis cannot be reached publishing fails, and the caller says so; each instance's
//! clients keep what they have and catch up when Redis is back.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, Script};

use super::{ChannelEvent, Cluster};
use crate::hub::{Topic, TopicConfig};
use crate::metrics::Metrics;
use crate::sync::lock;
use crate::wire::Event;

/// The channel on which every shared topic's new ids are announced.
const ANNOUNCEMENTS: &str = "sse:topics";

/// About how many entries a shared topic's log keeps (Redis trims it approximately).
pub const LOG_LENGTH: usize = 10_000;

/// Entries read from the log in one go when catching up.
const PAGE: usize = 500;

/// How often a catch-up tries to read the log, and the pause between tries.
const CATCH_UP_ATTEMPTS: u32 = 10;
const CATCH_UP_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// Appends one entry under the next id and announces it. A counter that does not exist (a new
/// topic, or a Redis that lost its data) starts from the clock, in microseconds, so ids only ever
/// grow: an id a client kept from before can never name a different event.
/// KEYS: counter, log. ARGV: event name, data, topic name, log length, now in microseconds.
/// Returns the id as text: Lua's numbers would print a clock-sized id in exponent form.
const APPEND: &str = r"
redis.call('SET', KEYS[1], ARGV[5], 'NX')
local id = string.format('%d', redis.call('INCR', KEYS[1]))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], id .. '-0', 'event', ARGV[1], 'data', ARGV[2])
redis.call('PUBLISH', 'sse:topics', ARGV[3] .. '\n' .. id)
return id
";

/// One topic shared by every instance of a cluster. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedTopic {
    inner: Arc<Shared>,
}

struct Shared {
    name: String,
    /// This instance's mirror of the log: its clients subscribe here.
    topic: Topic,
    /// How many entries the mirror's ring holds: what a new mirror loads first.
    ring: usize,
    commands: ConnectionManager,
    append: Script,
    /// One catch-up at a time, so entries are read and mirrored in order.
    catching_up: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTopic").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The shared topics this instance mirrors, by name, and whether their follower runs.
#[derive(Default)]
pub(super) struct Mirrors {
    topics: HashMap<String, Weak<Shared>>,
    following: bool,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
}

fn log_key(name: &str) -> String {
    format!("sse:topic:{name}")
}

fn counter_key(name: &str) -> String {
    format!("sse:topic-seq:{name}")
}

/// An entry's id (`<id>-0`) and its event.
fn entry_event(entry: &StreamId) -> Option<(u64, Event)> {
    let id = entry.id.split_once('-')?.0.parse().ok()?;
    let data: String = entry.get("data")?;
    let name: String = entry.get("event").unwrap_or_default();
    let event = Event::new().data(data);
    Some((id, if name.is_empty() { event } else { event.event(name) }))
}

impl Cluster {
    /// The topic `name` (no line breaks) shared by every instance, mirrored here into a topic of
    /// `config`. The mirror first loads the log's newest entries (as many as its ring holds), in
    /// the background; with Redis unreachable it stays empty and catches up once Redis is back.
    /// Needs a Tokio runtime.
    pub fn shared_topic(&self, name: &str, config: TopicConfig, metrics: Metrics) -> SharedTopic {
        let name = name.replace(['\n', '\r'], " ");
        let shared = Arc::new(Shared {
            name: name.clone(),
            topic: Topic::starting_after(config, metrics, 0),
            ring: config.replay,
            commands: self.commands(),
            append: Script::new(APPEND),
            catching_up: tokio::sync::Mutex::new(()),
        });
        let start_follower = {
            let mut mirrors = lock(&self.inner.mirrors);
            mirrors.topics.insert(name, Arc::downgrade(&shared));
            !std::mem::replace(&mut mirrors.following, true)
        };
        if start_follower {
            tokio::spawn(self.clone().follow_shared_topics());
        }
        let loading = SharedTopic { inner: shared.clone() };
        tokio::spawn(async move { loading.catch_up().await });
        SharedTopic { inner: shared }
    }

    /// Follows every shared topic's announcements for as long as the process runs.
    async fn follow_shared_topics(self) {
        let cluster = self.clone();
        self.follow(ANNOUNCEMENTS.to_owned(), "events of shared topics", move |heard| {
            let cluster = cluster.clone();
            async move {
                let mirrors: Vec<(String, Arc<Shared>)> = {
                    let mut mirrors = lock(&cluster.inner.mirrors);
                    mirrors.topics.retain(|_, shared| shared.strong_count() > 0);
                    let live = mirrors.topics.iter();
                    live.filter_map(|(name, shared)| Some((name.clone(), shared.upgrade()?)))
                        .collect()
                };
                match heard {
                    // Anything may have been announced while unsubscribed.
                    ChannelEvent::Subscribed => {
                        for (_, shared) in mirrors {
                            SharedTopic { inner: shared }.catch_up().await;
                        }
                    }
                    ChannelEvent::Message(text) => {
                        let Some((name, id)) = text.split_once('\n') else { return };
                        let Ok(id) = id.parse::<u64>() else { return };
                        let Some((_, shared)) = mirrors.into_iter().find(|(n, _)| n == name) else {
                            return;
                        };
                        if id > shared.topic.last_id() {
                            SharedTopic { inner: shared }.catch_up().await;
                        }
                    }
                }
            }
        })
        .await;
    }
}

/// The newest `count` entries of the log, oldest first.
async fn newest_entries(
    commands: &mut ConnectionManager,
    name: &str,
    count: usize,
) -> redis::RedisResult<Vec<(u64, Event)>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let reply: StreamRangeReply = commands.xrevrange_count(log_key(name), "+", "-", count).await?;
    Ok(reply.ids.iter().rev().filter_map(entry_event).collect())
}

impl SharedTopic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This instance's mirror of the log: subscribe here.
    pub fn topic(&self) -> &Topic {
        &self.inner.topic
    }

    /// Appends an event (named `name`, or unnamed when empty) to the log, for every instance's
    /// clients. Returns its id once it is in the log; fails if Redis cannot be reached.
    pub async fn publish(&self, name: &str, data: &str) -> redis::RedisResult<u64> {
        let mut commands = self.inner.commands.clone();
        let id: u64 = self
            .inner
            .append
            .key(counter_key(&self.inner.name))
            .key(log_key(&self.inner.name))
            .arg(name)
            .arg(data)
            .arg(&self.inner.name)
            .arg(LOG_LENGTH)
            .arg(now_micros())
            .invoke_async(&mut commands)
            .await?;
        // The next one in order goes out here at once; after a gap, the log says what came first.
        let event = if name.is_empty() { Event::new() } else { Event::new().event(name) };
        if id == self.inner.topic.last_id() + 1 {
            let _ = self.inner.topic.publish_with_id(id, event.data(data));
        } else {
            self.catch_up().await;
        }
        Ok(id)
    }

    /// Mirrors every log entry after the local topic's newest, in order. A mirror that has
    /// nothing yet starts from the log's newest entries rather than its first. A read that fails
    /// is tried again a few times: right after Redis comes back, the first command on an old
    /// connection fails while the connection is made anew, and a catch-up given up would wait
    /// for the next announcement.
    async fn catch_up(&self) {
        let _one_at_a_time = self.inner.catching_up.lock().await;
        for attempt in 1..=CATCH_UP_ATTEMPTS {
            match self.read_and_mirror().await {
                Ok(()) => return,
                Err(error) if attempt == CATCH_UP_ATTEMPTS => {
                    tracing::warn!(%error, topic = self.inner.name, "cannot read a shared topic's log (Redis)");
                }
                Err(_) => tokio::time::sleep(CATCH_UP_PAUSE).await,
            }
        }
    }

    async fn read_and_mirror(&self) -> redis::RedisResult<()> {
        let mut commands = self.inner.commands.clone();
        if self.inner.topic.last_id() == 0 {
            for (id, event) in
                newest_entries(&mut commands, &self.inner.name, self.inner.ring).await?
            {
                let _ = self.inner.topic.publish_with_id(id, event);
            }
        }
        loop {
            let after = self.inner.topic.last_id();
            let page: StreamRangeReply = commands
                .xrange_count(log_key(&self.inner.name), format!("({after}-0"), "+", PAGE)
                .await?;
            let entries: Vec<(u64, Event)> = page.ids.iter().filter_map(entry_event).collect();
            let Some(first) = entries.first().map(|(id, _)| *id) else { return Ok(()) };
            // A mirror that has had nothing misses nothing: ids start from the clock.
            if after != 0 && first > after + 1 {
                tracing::warn!(
                    topic = self.inner.name,
                    after,
                    first,
                    "a shared topic's log no longer holds what this instance missed"
                );
                self.inner.topic.resync_live("log_trimmed", first - 1);
            }
            let count = entries.len();
            for (id, event) in entries {
                let _ = self.inner.topic.publish_with_id(id, event);
            }
            if count < PAGE {
                return Ok(());
            }
        }
    }
}
