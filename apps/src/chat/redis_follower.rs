//! Keeping this instance's rooms in step with the Redis history, when several instances share
//! the chat (`--redis`): the follower of the live channel.
//!
//! Every instance follows [`LIVE`] and hands each message to its loaded room's local stream.
//! Because ids have no gaps, a message whose id is more than one ahead of the room's stream shows
//! at once that some were missed (the Redis connection dropped, the room was still loading), and
//! the room is caught up from the log before going on; after each resubscription every loaded
//! room is caught up the same way. It also keeps this instance's online members counted in
//! Redis, refreshing their claims before they expire.
//!
//! It sits between [`super::room`] (the live side) and [`super::redis_history`] (the log) and
//! uses both, so that neither needs the other's insides: a room only asks the history who is
//! online and announces through it; the history knows nothing of rooms.

use std::sync::Arc;

use sse_core::cluster::{ChannelEvent, Cluster};
use sse_core::wire::Event;

use super::redis_history::{LIVE, Live, ONLINE_REFRESH, RedisHistory};
use super::room::{Room, Rooms};
use super::store::StoreError;

/// Most messages read from the log in one go when catching up.
const CATCH_UP_PAGE: usize = 500;

/// Brings the room's local stream up to the log: every message after the stream's newest id, in
/// order. Safe to run alongside the follower: a message already sent is skipped.
pub async fn catch_up(log: &RedisHistory, room: &Room) -> Result<(), StoreError> {
    loop {
        let after = room.topic.last_id();
        let page = log.messages_after(&room.name, after, CATCH_UP_PAGE).await?;
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
/// announcement to the rooms this instance has loaded, and keeps its online members counted.
pub fn follow(log: &RedisHistory, cluster: &Cluster, rooms: Arc<Rooms>) {
    tokio::spawn(keep_online(log.clone(), rooms.clone()));
    let (log, cluster) = (log.clone(), cluster.clone());
    tokio::spawn(async move {
        cluster
            .follow(LIVE.to_owned(), "chat messages from other instances", move |heard| {
                let (log, rooms) = (log.clone(), rooms.clone());
                async move { hear(&log, &rooms, heard).await }
            })
            .await;
    });
}

/// Refreshes this instance's online members in every loaded room before their claims expire.
async fn keep_online(log: RedisHistory, rooms: Arc<Rooms>) {
    let mut every = tokio::time::interval(ONLINE_REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for room in rooms.loaded() {
            if let Err(error) = log.mark_online(&room.name, &room.online_here()).await {
                tracing::warn!(%error, room = room.name, "cannot refresh who is online (Redis)");
            }
        }
    }
}

/// One thing heard on the live channel.
async fn hear(log: &RedisHistory, rooms: &Rooms, heard: ChannelEvent) {
    let text = match heard {
        ChannelEvent::Subscribed => {
            // Anything may have been published while unsubscribed.
            for room in rooms.loaded() {
                if let Err(error) = catch_up(log, &room).await {
                    tracing::error!(%error, room = room.name, "cannot catch up from Redis");
                }
            }
            return;
        }
        ChannelEvent::Message(text) => text,
    };
    match Live::read(&text) {
        Some(Live::Message { room, id }) => {
            let Some(room) = rooms.get(room) else { return };
            if id > room.topic.last_id() {
                // The message itself and any the stream missed before it, from the log.
                if let Err(error) = catch_up(log, &room).await {
                    tracing::error!(%error, room = room.name, "cannot read new messages from Redis");
                }
            }
        }
        Some(Live::Announced { room, name, data }) => {
            if let Some(room) = rooms.get(room) {
                room.topic.publish_transient(&Event::new().event(name).data(data));
            }
        }
        None => tracing::warn!("unreadable chat message from Redis"),
    }
}
