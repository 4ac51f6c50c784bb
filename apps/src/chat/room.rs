//! A room's live side: its stream of events and who is online. History lives in the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sse_core::hub::lock;
use sse_core::hub::{Hub, Topic};
use sse_core::wire::Event;

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
}

impl Room {
    /// The nicks online now, sorted.
    pub fn online(&self) -> Vec<String> {
        lock(&self.online).keys().cloned().collect()
    }

    /// The `presence` snapshot a connection starts with: everyone online.
    pub fn presence_snapshot(&self) -> Event {
        Event::new().event("presence").json(&json!({ "online": self.online() }))
    }

    /// A `presence` change: who joined or left, and how many are online now. Changes never
    /// carry the whole list, so a room of 10,000 does not send 10,000 names per arrival.
    fn presence_change(&self, what: &str, nick: &str) -> Event {
        let count = lock(&self.online).len();
        Event::new().event("presence").json(&json!({ what: nick, "count": count }))
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
            self.topic.publish_transient(&self.presence_change("joined", nick));
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
        self.topic.publish_transient(&Event::new().event("typing").json(&json!({ "nick": nick })));
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
            self.room.topic.publish_transient(&self.room.presence_change("left", &self.nick));
        }
    }
}

/// The rooms loaded so far (a room is loaded on first use, its stream continuing after the
/// newest stored message).
#[derive(Debug)]
pub struct Rooms {
    hub: Hub,
    loaded: Mutex<HashMap<String, Arc<Room>>>,
}

impl Rooms {
    /// No rooms loaded; their streams will live in `hub`.
    pub fn new(hub: Hub) -> Rooms {
        Rooms { hub, loaded: Mutex::default() }
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
                })
            })
            .clone()
    }
}
