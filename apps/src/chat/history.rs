//! Where the chat's history lives: a SQLite file when one instance serves the chat, the shared
//! Redis when several do (`--redis`). The handlers see one interface; each backend keeps the same
//! promises (ids increase within a room, a message is stored before it is acknowledged, a
//! repeated `client_msg_id` returns the original).

use std::sync::Arc;

use super::group_commit::GroupCommit;
use super::redis_history::RedisHistory;
use super::room::Room;
use super::store::{Message, NewMessage, Store, StoreError};

/// The chat's history, in one of its two homes. Cheap to clone.
#[derive(Clone, Debug)]
pub enum History {
    /// `chat.sqlite3` in the data directory: this instance alone. Posts go through the group
    /// committer; everything else straight to the store.
    Local(Store, GroupCommit),
    /// Redis, shared by every instance.
    Redis(RedisHistory),
}

impl History {
    /// The history in this SQLite store.
    pub fn local(store: Store) -> History {
        History::Local(store.clone(), GroupCommit::new(store))
    }

    /// Room names, oldest first.
    pub async fn rooms(&self) -> Result<Vec<String>, StoreError> {
        match self {
            History::Local(store, _) => store.run(|db| Store::rooms(db)).await,
            History::Redis(log) => log.rooms().await,
        }
    }

    /// The id of the room's newest message (0 when it has none), or `None` if there is no room.
    pub async fn last_id(&self, room: &str) -> Result<Option<u64>, StoreError> {
        match self {
            History::Local(store, _) => {
                let room = room.to_owned();
                store
                    .run(move |db| {
                        Ok(if Store::room_exists(db, &room)? {
                            Some(Store::last_id(db, &room)?)
                        } else {
                            None
                        })
                    })
                    .await
            }
            History::Redis(log) => log.last_id(room).await,
        }
    }

    /// Creates the room if it does not exist; returns the hash of the token holding `nick_key`.
    pub async fn ensure_room(
        &self,
        room: &str,
        nick_key: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            History::Local(store, _) => {
                let (room, key) = (room.to_owned(), nick_key.to_owned());
                store
                    .run(move |db| {
                        Store::ensure_room(db, &room)?;
                        Store::member_token(db, &room, &key)
                    })
                    .await
            }
            History::Redis(log) => log.ensure_room(room, nick_key).await,
        }
    }

    /// Gives `nick` in `room` to the holder of the token with this hash.
    pub async fn set_member(
        &self,
        room: &str,
        nick_key: &str,
        nick: &str,
        token_sha256: &str,
    ) -> Result<(), StoreError> {
        match self {
            History::Local(store, _) => {
                let (room, key, nick, hash) = (
                    room.to_owned(),
                    nick_key.to_owned(),
                    nick.to_owned(),
                    token_sha256.to_owned(),
                );
                store.run(move |db| Store::set_member(db, &room, &key, &nick, &hash)).await
            }
            History::Redis(log) => log.set_member(room, nick_key, nick, token_sha256).await,
        }
    }

    /// The nick whose token has this hash in `room`.
    pub async fn nick_for_token(
        &self,
        room: &str,
        token_sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            History::Local(store, _) => {
                let (room, hash) = (room.to_owned(), token_sha256.to_owned());
                store.run(move |db| Store::nick_for_token(db, &room, &hash)).await
            }
            History::Redis(log) => log.nick_for_token(room, token_sha256).await,
        }
    }

    /// Stores a message unless its sender already stored one with this `client_msg_id`, and
    /// sends a new one live. Returns the message and whether it is new.
    pub async fn post(
        &self,
        room: &Arc<Room>,
        nick: String,
        text: String,
        client_msg_id: String,
    ) -> Result<(Message, bool), StoreError> {
        match self {
            History::Local(_, group) => {
                let live = room.clone();
                let message = NewMessage { room: room.name.clone(), nick, text, client_msg_id };
                // Called in commit order, with the database still held: live ids leave in order.
                group.post(message, Box::new(move |message| live.send_live(message))).await
            }
            // Every instance, this one included, sends it live when Redis publishes it.
            History::Redis(log) => log.post(&room.name, &nick, &text, &client_msg_id).await,
        }
    }

    /// Up to `limit` messages of `room` with ids above `after`, oldest first.
    pub async fn messages_after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        match self {
            History::Local(store, _) => {
                let room = room.to_owned();
                store.run(move |db| Store::messages_after(db, &room, after, limit)).await
            }
            History::Redis(log) => log.messages_after(room, after, limit).await,
        }
    }

    /// Up to `limit` messages of `room` with ids below `before` (or the newest), newest last.
    pub async fn messages_before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        match self {
            History::Local(store, _) => {
                let room = room.to_owned();
                store.run(move |db| Store::messages_before(db, &room, before, limit)).await
            }
            History::Redis(log) => log.messages_before(room, before, limit).await,
        }
    }
}
