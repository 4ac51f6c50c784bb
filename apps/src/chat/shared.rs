//! Chat history in Redis, for several instances behind one load balancer (`--redis`).
//!
//! The same contract as the SQLite store, with Redis as the one source of truth every instance
//! reads and writes:
//!
//! | what | Redis |
//! |---|---|
//! | rooms | sorted set `sse:chat:rooms`, scored by creation time |
//! | members | hashes `sse:chat:members:<room>` (nick key → token hash) and `sse:chat:tokens:<room>` (token hash → nick) |
//! | messages | stream `sse:chat:log:<room>`, entry id `<id>-0`, so a message id is its position in the room's log |
//! | message ids | counter `sse:chat:seq:<room>`: 1, 2, 3, ... per room, with no gaps |
//! | idempotency | hash `sse:chat:sent:<room>` (`nick`, newline, `client_msg_id` → id) |
//! | live fan-out | pub/sub channel `sse:chat:live`, one for every room |
//! | who is online | sorted set `sse:chat:online:<room>` of `<instance> <nick>`, scored by when the entry expires (30 s, refreshed every 10 s, so an instance that dies stops counting) |
//!
//! Posting is one Lua script, so Redis runs it whole and alone: look up the idempotency key,
//! take the next id, append to the log, remember the key, publish. Publishing inside the script
//! is what keeps the live channel in log order across instances.
//!
//! Every instance follows the live channel and hands each message to its room's local stream.
//! Because ids have no gaps, an instance sees at once when it missed one (the next id is more
//! than one ahead, say after its Redis connection dropped or while a room was loading) and reads
//! the missing ones from the log before going on; after each resubscription it catches every
//! loaded room up the same way. A room's local stream therefore carries every message, in order,
//! exactly once, and resume (`Last-Event-ID`) works on any instance, for any gap.
//!
//! This is the design of sse-core's `SharedTopic` (a counter, a stream and an announcement from one
//! Lua script; followers that fill gaps from the log), kept apart because a room's log is more
//! than a replay log: it is the room's whole history, paged through by "load earlier" and never
//! trimmed, and a post must check the sender's `client_msg_id` in the same atomic step that
//! appends. The room's live stream is fed from it as from SQLite on one instance.
//!
//! Durability is Redis's: a message is acknowledged once Redis has run the script. Run Redis with
//! `appendonly yes` and `appendfsync always` to have it on disk first, as SQLite does; with
//! `everysec` up to a second of acknowledged messages can be lost if Redis itself crashes.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, Script, Value};
use sse_core::cluster::{ChannelEvent, Cluster};
use sse_core::wire::Event;

use super::room::{Room, Rooms};
use super::store::{Message, StoreError};

/// The channel every instance follows.
const LIVE: &str = "sse:chat:live";

/// Most messages read from the log in one go when catching up.
const CATCH_UP_PAGE: usize = 500;

/// How long an instance's claim that a member is online lasts without a refresh.
const ONLINE_TTL_MS: i64 = 30_000;
/// How often an instance refreshes its members' claims.
const ONLINE_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

fn key(what: &str, room: &str) -> String {
    format!("sse:chat:{what}:{room}")
}

/// Appends a message unless its sender already sent one with this `client_msg_id`.
/// KEYS: sent, seq, log. ARGV: nick, text, client_msg_id, ts, room.
/// Returns `{1, id}` when stored now, `{0, id}` when it was stored before.
const POST: &str = r"
local sent_key = ARGV[1] .. '\n' .. ARGV[3]
local existing = redis.call('HGET', KEYS[1], sent_key)
if existing then
  return {0, tonumber(existing)}
end
local id = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], id .. '-0', 'nick', ARGV[1], 'text', ARGV[2], 'cmid', ARGV[3], 'ts', ARGV[4])
redis.call('HSET', KEYS[1], sent_key, id)
redis.call('PUBLISH', 'sse:chat:live', 'm\n' .. ARGV[5] .. '\n' .. id)
return {1, id}
";

/// Gives a nick to a new token, taking it from the old one.
/// KEYS: members, tokens. ARGV: nick key, nick, token hash.
const SET_MEMBER: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('HDEL', KEYS[2], old)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
return 1
";

/// The chat's history in the shared Redis. Cheap to clone.
#[derive(Clone)]
pub struct SharedLog {
    redis: ConnectionManager,
    instance: String,
    post: Arc<Script>,
    set_member: Arc<Script>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLog")
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A message from its log entry.
fn message_of(room: &str, entry: &StreamId) -> Option<Message> {
    let id = entry.id.split_once('-')?.0.parse().ok()?;
    let text = |field: &str| entry.get::<String>(field);
    Some(Message {
        id,
        room: room.to_owned(),
        nick: text("nick")?,
        text: text("text")?,
        client_msg_id: text("cmid")?,
        ts: entry.get("ts")?,
    })
}

fn messages_of(room: &str, reply: &StreamRangeReply) -> Vec<Message> {
    reply.ids.iter().filter_map(|entry| message_of(room, entry)).collect()
}

impl SharedLog {
    /// The history in the Redis `cluster` shares.
    pub fn new(cluster: &Cluster) -> SharedLog {
        SharedLog {
            redis: cluster.commands(),
            instance: cluster.instance().to_owned(),
            post: Arc::new(Script::new(POST)),
            set_member: Arc::new(Script::new(SET_MEMBER)),
        }
    }

    fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Room names, oldest first.
    pub async fn rooms(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.redis().zrange("sse:chat:rooms", 0, -1).await?)
    }

    /// The id of the room's newest message (0 when it has none), or `None` if there is no room.
    pub async fn last_id(&self, room: &str) -> Result<Option<u64>, StoreError> {
        let mut redis = self.redis();
        let created: Option<f64> = redis.zscore("sse:chat:rooms", room).await?;
        if created.is_none() {
            return Ok(None);
        }
        let last: Option<u64> = redis.get(key("seq", room)).await?;
        Ok(Some(last.unwrap_or(0)))
    }

    /// Creates the room if it does not exist; returns the hash of the token holding `nick_key`.
    pub async fn ensure_room(
        &self,
        room: &str,
        nick_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut redis = self.redis();
        let _: Value = redis::cmd("ZADD")
            .arg("sse:chat:rooms")
            .arg("NX")
            .arg(now_ms())
            .arg(room)
            .query_async(&mut redis)
            .await?;
        Ok(redis.hget(key("members", room), nick_key).await?)
    }

    /// Gives `nick` in `room` to the holder of the token with this hash.
    pub async fn set_member(
        &self,
        room: &str,
        nick_key: &str,
        nick: &str,
        token_sha256: &str,
    ) -> Result<(), StoreError> {
        let mut redis = self.redis();
        let _: i64 = self
            .set_member
            .key(key("members", room))
            .key(key("tokens", room))
            .arg(nick_key)
            .arg(nick)
            .arg(token_sha256)
            .invoke_async(&mut redis)
            .await?;
        Ok(())
    }

    /// The nick whose token has this hash in `room`.
    pub async fn nick_for_token(
        &self,
        room: &str,
        token_sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.redis().hget(key("tokens", room), token_sha256).await?)
    }

    /// Stores a message unless this sender already stored one with the same `client_msg_id`,
    /// and publishes it to every instance. Returns the message and whether it is new.
    pub async fn post(
        &self,
        room: &str,
        nick: &str,
        text: &str,
        client_msg_id: &str,
    ) -> Result<(Message, bool), StoreError> {
        let ts = now_ms();
        let mut redis = self.redis();
        let (created, id): (u8, u64) = self
            .post
            .key(key("sent", room))
            .key(key("seq", room))
            .key(key("log", room))
            .arg(nick)
            .arg(text)
            .arg(client_msg_id)
            .arg(ts)
            .arg(room)
            .invoke_async(&mut redis)
            .await?;
        if created == 1 {
            let message = Message {
                id,
                room: room.into(),
                nick: nick.into(),
                text: text.into(),
                client_msg_id: client_msg_id.into(),
                ts,
            };
            return Ok((message, true));
        }
        let original = self.messages_after(room, id - 1, 1).await?.into_iter().next();
        original.map(|m| (m, false)).ok_or(StoreError::Missing(id))
    }

    /// Up to `limit` messages of `room` with ids above `after`, oldest first.
    pub async fn messages_after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let reply: StreamRangeReply =
            self.redis().xrange_count(key("log", room), format!("({after}-0"), "+", limit).await?;
        Ok(messages_of(room, &reply))
    }

    /// Up to `limit` messages of `room` with ids below `before` (or the newest), newest last.
    pub async fn messages_before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let end = before.map_or_else(|| "+".to_owned(), |before| format!("({before}-0"));
        let reply: StreamRangeReply =
            self.redis().xrevrange_count(key("log", room), end, "-", limit).await?;
        let mut messages = messages_of(room, &reply);
        messages.reverse();
        Ok(messages)
    }

    /// Sends a live-only event (typing, presence) named `name` to `room` on every instance.
    pub async fn announce(
        &self,
        room: &str,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let _: i64 = self.redis().publish(LIVE, format!("t\n{room}\n{name}\n{data}")).await?;
        Ok(())
    }

    /// Counts `nicks` as online in `room` on this instance, for the next 30 s.
    pub async fn mark_online(&self, room: &str, nicks: &[String]) -> Result<(), StoreError> {
        if nicks.is_empty() {
            return Ok(());
        }
        let until = now_ms() + ONLINE_TTL_MS;
        let entries: Vec<(i64, String)> =
            nicks.iter().map(|nick| (until, format!("{} {nick}", self.instance))).collect();
        let _: i64 = self.redis().zadd_multiple(key("online", room), &entries).await?;
        Ok(())
    }

    /// Stops counting `nick` as online in `room` on this instance.
    pub async fn mark_offline(&self, room: &str, nick: &str) -> Result<(), StoreError> {
        let _: i64 =
            self.redis().zrem(key("online", room), format!("{} {nick}", self.instance)).await?;
        Ok(())
    }

    /// The nicks online in `room` on any instance, sorted.
    pub async fn online(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let entries: Vec<String> =
            self.redis().zrangebyscore(key("online", room), now_ms(), "+inf").await?;
        let nicks: std::collections::BTreeSet<String> = entries
            .into_iter()
            .filter_map(|entry| entry.split_once(' ').map(|(_, nick)| nick.to_owned()))
            .collect();
        Ok(nicks.into_iter().collect())
    }

    /// Brings the room's local stream up to the log: every message after the stream's newest id,
    /// in order. Safe to run alongside the follower: a message already sent is skipped.
    pub async fn catch_up(&self, room: &Room) -> Result<(), StoreError> {
        loop {
            let after = room.topic.last_id();
            let page = self.messages_after(&room.name, after, CATCH_UP_PAGE).await?;
            let Some(last) = page.last().map(|m| m.id) else { return Ok(()) };
            for message in &page {
                room.send_live(message);
            }
            if page.len() < CATCH_UP_PAGE || last <= after {
                return Ok(());
            }
        }
    }

    /// Follows the live channel for as long as the server runs, handing every message and
    /// announcement to the rooms this instance has loaded.
    pub fn follow(&self, cluster: &Cluster, rooms: Arc<Rooms>) {
        tokio::spawn(self.clone().keep_online(rooms.clone()));
        let (log, cluster) = (self.clone(), cluster.clone());
        tokio::spawn(async move {
            cluster
                .follow(LIVE.to_owned(), "chat messages from other instances", move |heard| {
                    let (log, rooms) = (log.clone(), rooms.clone());
                    async move { log.hear(&rooms, heard).await }
                })
                .await;
        });
    }

    /// Refreshes this instance's online members in every loaded room before their claims expire.
    async fn keep_online(self, rooms: Arc<Rooms>) {
        let mut every = tokio::time::interval(ONLINE_REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for room in rooms.loaded() {
                if let Err(error) = self.mark_online(&room.name, &room.online_here()).await {
                    tracing::warn!(%error, room = room.name, "cannot refresh who is online (Redis)");
                }
            }
        }
    }

    async fn hear(&self, rooms: &Rooms, heard: ChannelEvent) {
        let text = match heard {
            ChannelEvent::Subscribed => {
                // Anything may have been published while unsubscribed.
                for room in rooms.loaded() {
                    if let Err(error) = self.catch_up(&room).await {
                        tracing::error!(%error, room = room.name, "cannot catch up from Redis");
                    }
                }
                return;
            }
            ChannelEvent::Message(text) => text,
        };
        let mut parts = text.splitn(3, '\n');
        let (Some(kind), Some(name), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            tracing::warn!("unreadable chat message from Redis");
            return;
        };
        let Some(room) = rooms.get(name) else { return };
        match kind {
            "m" => {
                let Ok(id) = rest.parse::<u64>() else { return };
                if id > room.topic.last_id() {
                    // The message itself and any the stream missed before it, from the log.
                    if let Err(error) = self.catch_up(&room).await {
                        tracing::error!(%error, room = room.name, "cannot read new messages from Redis");
                    }
                }
            }
            "t" => {
                if let Some((name, data)) = rest.split_once('\n') {
                    room.topic.publish_transient(&Event::new().event(name).data(data));
                }
            }
            _ => tracing::warn!(kind, "unknown chat message kind from Redis"),
        }
    }
}
