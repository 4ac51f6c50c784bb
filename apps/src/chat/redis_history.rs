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
//! Every instance follows the live channel and hands each message to its room's local stream
//! ([`super::redis_follower`], which uses this module; this one knows no room). Because ids have
//! no gaps, an instance sees at once when it missed one (the next id is more
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
use sse_core::cluster::Cluster;

use super::store::{Message, StoreError};
use crate::shared::clock::unix_millis_i64;

/// The channel every instance follows.
pub const LIVE: &str = "sse:chat:live";

/// How long an instance's claim that a member is online lasts without a refresh.
const ONLINE_TTL_MS: i64 = 30_000;
/// How often an instance refreshes its members' claims (well within `ONLINE_TTL_MS`).
pub const ONLINE_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// What came on the [`LIVE`] channel, as [`RedisHistory::post`] and
/// [`RedisHistory::announce`] publish it.
#[derive(Debug, PartialEq)]
pub enum Live<'a> {
    /// Message `id` was appended to `room`'s log (read it from there).
    Message {
        /// The room.
        room: &'a str,
        /// The message's id.
        id: u64,
    },
    /// A live-only event for `room`'s connections (`presence`, `typing`).
    Announced {
        /// The room.
        room: &'a str,
        /// The event's name.
        name: &'a str,
        /// Its data, JSON.
        data: &'a str,
    },
}

impl Live<'_> {
    /// Reads one message of the live channel: `m\n<room>\n<id>` or
    /// `t\n<room>\n<event>\n<data>`. `None` for anything else.
    pub fn read(text: &str) -> Option<Live<'_>> {
        let mut parts = text.splitn(3, '\n');
        let (kind, room, rest) = (parts.next()?, parts.next()?, parts.next()?);
        match kind {
            "m" => Some(Live::Message { room, id: rest.parse().ok()? }),
            "t" => {
                let (name, data) = rest.split_once('\n')?;
                Some(Live::Announced { room, name, data })
            }
            _ => None,
        }
    }
}

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
pub struct RedisHistory {
    redis: ConnectionManager,
    instance: String,
    post: Arc<Script>,
    set_member: Arc<Script>,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisHistory")
    }
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

impl RedisHistory {
    /// The history in the Redis `cluster` shares.
    pub fn new(cluster: &Cluster) -> RedisHistory {
        RedisHistory {
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
            .arg(unix_millis_i64())
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
        let ts = unix_millis_i64();
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
        let until = unix_millis_i64() + ONLINE_TTL_MS;
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
            self.redis().zrangebyscore(key("online", room), unix_millis_i64(), "+inf").await?;
        let nicks: std::collections::BTreeSet<String> = entries
            .into_iter()
            .filter_map(|entry| entry.split_once(' ').map(|(_, nick)| nick.to_owned()))
            .collect();
        Ok(nicks.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    use super::Live;

    #[test]
    fn reads_what_the_live_channel_carries_and_nothing_else() {
        assert_eq!(Live::read("m\nlobby\n42"), Some(Live::Message { room: "lobby", id: 42 }));
        assert_eq!(
            Live::read("t\nlobby\ntyping\n{\"nick\":\"a\"}"),
            Some(Live::Announced { room: "lobby", name: "typing", data: "{\"nick\":\"a\"}" })
        );
        // A data line may hold newlines of its own: only the first three split.
        assert_eq!(
            Live::read("t\nlobby\npresence\na\nb"),
            Some(Live::Announced { room: "lobby", name: "presence", data: "a\nb" })
        );
        assert_eq!(Live::read("m\nlobby\nnot a number"), None);
        assert_eq!(Live::read("t\nlobby\nno data"), None);
        assert_eq!(Live::read("x\nlobby\n1"), None);
        assert_eq!(Live::read("m\nlobby"), None);
    }
}
