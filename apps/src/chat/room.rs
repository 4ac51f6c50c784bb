//! A room's live side: its stream of events and who is online. History lives in the store.
//!
//! With several instances (`--redis`), typing and presence announcements go through Redis so
//! every instance's clients see them, and who is online is the union of every instance's members
//! (each instance counts its own connections and tells Redis; see `redis_history`). What other
//! instances publish reaches a room through `redis_follower`, which uses this module, never the
//! other way round.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sse_core::hub::{Hub, Topic};
use sse_core::sync::lock;
use sse_core::wire::Event;

use super::redis_history::RedisHistory;
use super::store::Message;

/// How often one member's typing is announced at most.
const TYPING_EVERY: Duration = Duration::from_secs(2);

/// One room's live state. Shared by every connection to it.
#[derive(Debug)]
pub struct Room {
    /// The room's name.
    pub name: String,
    /// The room's live stream: messages under their database ids, presence and typing unnumbered.
    pub topic: Topic,
    /// Online members and how many connections each has open.
    online: Mutex<BTreeMap<String, usize>>,
    /// When each member's typing was last announced.
    typing: Mutex<HashMap<String, Instant>>,
    /// The other instances, when there are any: announcements go to them too.
    relay: Option<RedisHistory>,
}

/// The `message` event of a stored message (its id is set when it is published).
pub fn message_event(message: &Message) -> Event {
    Event::new().event("message").json(&json!({
        "id": message.id,
        "nick": message.nick,
        "text": message.text,
        "ts": message.ts,
        "client_msg_id": message.client_msg_id,
    }))
}

impl Room {
    /// The nicks with a connection to this instance, sorted.
    pub fn online_here(&self) -> Vec<String> {
        lock(&self.online).keys().cloned().collect()
    }

    /// The nicks online now on any instance, sorted (this instance's alone if Redis cannot say).
    /// This instance's own members are always in it: Redis hears of an arrival a moment after it
    /// happens here, and a member's first `presence` snapshot, read in that moment, must list them.
    pub async fn online(&self) -> Vec<String> {
        let Some(relay) = &self.relay else { return self.online_here() };
        match relay.online(&self.name).await {
            Ok(elsewhere) => {
                let mut online: std::collections::BTreeSet<String> =
                    elsewhere.into_iter().collect();
                online.extend(self.online_here());
                online.into_iter().collect()
            }
            Err(error) => {
                tracing::warn!(%error, room = self.name, "cannot read who is online elsewhere (Redis)");
                self.online_here()
            }
        }
    }

    /// The `presence` snapshot a connection starts with: everyone online.
    pub async fn presence_snapshot(&self) -> Event {
        Event::new().event("presence").json(&json!({ "online": self.online().await }))
    }

    /// Announces a `presence` change: who joined or left, and how many are online now. Changes
    /// never carry the whole list, so a room of 10,000 does not send 10,000 names per arrival.
    fn presence_change(self: &Arc<Self>, what: &'static str, nick: &str) {
        let Some(relay) = &self.relay else {
            let count = lock(&self.online).len();
            return self.announce("presence", json!({ what: nick, "count": count }));
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        // Tell Redis first, so the count includes (or leaves out) this member everywhere.
        let (relay, room, nick) = (relay.clone(), self.clone(), nick.to_owned());
        runtime.spawn(async move {
            let told = if what == "joined" {
                relay.mark_online(&room.name, std::slice::from_ref(&nick)).await
            } else {
                relay.mark_offline(&room.name, &nick).await
            };
            if let Err(error) = told {
                tracing::warn!(%error, room = room.name, "cannot tell Redis who is online");
            }
            let count = room.online().await.len();
            room.announce("presence", json!({ what: nick, "count": count }));
        });
    }

    /// Sends a live-only event to the room's connections, on every instance when there are
    /// several (through Redis; if Redis cannot take it, at least to this instance's).
    fn announce(&self, name: &'static str, data: serde_json::Value) {
        let local = || self.topic.publish_transient(&Event::new().event(name).json(&data));
        let Some(relay) = &self.relay else { return local() };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return local() };
        let (relay, topic, room) = (relay.clone(), self.topic.clone(), self.name.clone());
        runtime.spawn(async move {
            if let Err(error) = relay.announce(&room, name, &data).await {
                tracing::warn!(%error, room, "cannot announce {name} to other instances");
                topic.publish_transient(&Event::new().event(name).json(&data));
            }
        });
    }

    /// Sends a stored message live, unless the stream already carried it (or a later one).
    pub fn send_live(&self, message: &Message) {
        if let Err(last) = self.topic.publish_with_id(message.id, message_event(message)) {
            tracing::debug!(id = message.id, last, "message already sent live");
        }
    }

    /// Counts a connection of `nick`; the first one announces the arrival. Dropping the returned
    /// guard counts it out again.
    pub fn arrive(self: &Arc<Self>, nick: &str) -> Presence {
        let first = {
            let mut online = lock(&self.online);
            let count = online.entry(nick.to_owned()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            self.presence_change("joined", nick);
        }
        Presence { room: self.clone(), nick: nick.to_owned() }
    }

    /// Announces that `nick` is typing, unless it was announced less than two seconds ago.
    /// Returns whether it was announced.
    pub fn typing(&self, nick: &str) -> bool {
        let now = Instant::now();
        let mut typing = lock(&self.typing);
        if typing.get(nick).is_some_and(|last| now.duration_since(*last) < TYPING_EVERY) {
            return false;
        }
        typing.insert(nick.to_owned(), now);
        typing.retain(|_, last| now.duration_since(*last) < TYPING_EVERY);
        drop(typing);
        self.announce("typing", json!({ "nick": nick }));
        true
    }
}

/// One open connection of a member; dropping it may announce the member's departure.
#[derive(Debug)]
pub struct Presence {
    room: Arc<Room>,
    nick: String,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let last = {
            let mut online = lock(&self.room.online);
            match online.get_mut(&self.nick) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                _ => {
                    online.remove(&self.nick);
                    true
                }
            }
        };
        if last {
            self.room.presence_change("left", &self.nick);
        }
    }
}

/// The rooms loaded so far (a room is loaded on first use, its stream continuing after the
/// newest stored message).
#[derive(Debug)]
pub struct Rooms {
    hub: Hub,
    loaded: Mutex<HashMap<String, Arc<Room>>>,
    relay: Option<RedisHistory>,
}

impl Rooms {
    /// No rooms loaded; their streams will live in `hub`, announcing through `relay` when
    /// other instances share the chat.
    pub fn new(hub: Hub, relay: Option<RedisHistory>) -> Rooms {
        Rooms { hub, loaded: Mutex::default(), relay }
    }

    /// Every loaded room.
    pub fn loaded(&self) -> Vec<Arc<Room>> {
        lock(&self.loaded).values().cloned().collect()
    }

    /// The room, if loaded.
    pub fn get(&self, name: &str) -> Option<Arc<Room>> {
        lock(&self.loaded).get(name).cloned()
    }

    /// Loads the room whose newest stored message has id `last_id` (or returns it if another
    /// request loaded it first).
    pub fn load(&self, name: &str, last_id: u64) -> Arc<Room> {
        let mut loaded = lock(&self.loaded);
        let topic = || self.hub.topic_backed_by_store(&format!("chat/{name}"), last_id);
        loaded
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Room {
                    name: name.to_owned(),
                    topic: topic(),
                    online: Mutex::default(),
                    typing: Mutex::default(),
                    relay: self.relay.clone(),
                })
            })
            .clone()
    }
}
