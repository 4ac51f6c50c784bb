//! The chat room: rooms, nicknames, presence, typing, persistent history and gap-free resume.
//!
//! History is the source of truth: every accepted message is committed to SQLite
//! ([`store`]), or with several instances to Redis ([`redis_history`]), before its POST is answered, and
//! its id there is its SSE event id ([`history`] is the one interface to both). A room's
//! live stream ([`room`]) carries each message under that id once it is committed, plus
//! unnumbered `presence` and `typing` events that only matter now.
//!
//! Resume never depends on how long a client was away: a connection with `Last-Event-ID: n`
//! subscribes to the live stream first, then reads everything after `n` from the store up to the
//! newest id at that moment, then continues live, skipping what the store already sent. Nothing
//! falls between the two and nothing comes twice. A client that falls behind the live stream gets
//! `resync` and refetches history.
//!
//! Members prove their nickname with the token `join` handed out (its SHA-256 is stored, so the
//! token itself never touches the disk). Posting is idempotent by `client_msg_id` and rate
//! limited per member.

pub mod error;
pub mod group_commit;
pub mod history;
pub mod names;
pub mod redis_follower;
pub mod redis_history;
pub mod room;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sse_core::Core;
use sse_core::edge::auth::{Token, bearer};
use sse_core::edge::rate::RateLimit;
use sse_core::edge::{JsonBody, PathParams, QueryParams};
use sse_core::hub::Resume;
use sse_core::stream::{LastEventId, LiveResponse};
use sse_core::wire::Event;

use error::ChatError;
use history::History;
use redis_history::RedisHistory;
use room::{Room, Rooms, message_event};
use store::{Message, Store, StoreError};

/// Settings of the chat app.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Where `chat.sqlite3` lives.
    pub data_dir: PathBuf,
    /// Messages a member may post per second (sustained).
    pub posts_per_second: u32,
    /// Messages a member may post in a burst.
    pub burst: u32,
}

impl ChatConfig {
    /// The defaults (10 messages a second, bursts of 20) with data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> ChatConfig {
        ChatConfig { data_dir, posts_per_second: 10, burst: 20 }
    }
}

#[derive(Clone, Debug)]
struct ChatState {
    core: Core,
    history: History,
    rooms: Arc<Rooms>,
    posts: Option<RateLimit<String>>,
}

/// Messages replayed per store read when a client catches up.
const REPLAY_PAGE: usize = 500;
/// Most messages one history request returns.
const MAX_PAGE: usize = 200;

/// The chat routes, mounted at `/chat`: history in SQLite, or in Redis when `core` is one
/// instance of a cluster. Fails only if the database cannot be opened.
pub fn router(core: Core, config: &ChatConfig) -> Result<Router, StoreError> {
    let shared = core.cluster().map(|cluster| (cluster.clone(), RedisHistory::new(cluster)));
    let history = match &shared {
        Some((_, log)) => History::Redis(log.clone()),
        None => History::local(Store::open(&config.data_dir)?),
    };
    if let History::Local(store, _) = &history {
        register_database_check(&core, store.clone(), config.data_dir.join(store::FILE_NAME));
    }
    let posts = RateLimit::new(config.posts_per_second, config.burst);
    if let Some(posts) = &posts {
        // Buckets of members who stopped posting are full again: dropped, so the limiter holds
        // only active members.
        posts.forget_idle_every_minute(core.shutdown_token());
    }
    let rooms = Arc::new(Rooms::new(core.hub.clone(), shared.as_ref().map(|(_, log)| log.clone())));
    if let Some((cluster, log)) = &shared {
        redis_follower::follow(log, cluster, rooms.clone());
    }
    let state = ChatState { rooms, core, history, posts };
    let routes = Router::new()
        .route("/chat", get(page))
        .route("/chat/", get(page))
        .route("/chat/rooms", get(list_rooms))
        .route("/chat/rooms/{room}/join", post(join))
        .route("/chat/rooms/{room}/events", get(events))
        .route("/chat/rooms/{room}/messages", get(history_page).post(post_message))
        .route("/chat/rooms/{room}/typing", post(typing))
        .with_state(state);
    Ok(routes)
}

/// `/readyz`'s `chat_database`: the file is still where it was opened (a deleted one would lose
/// everything at the next start) and answers a query.
fn register_database_check(core: &Core, store: Store, path: std::path::PathBuf) {
    core.ready.register("chat_database", move || {
        let (store, path) = (store.clone(), path.clone());
        async move {
            if !path.is_file() {
                return Err(format!("{} is gone", path.display()));
            }
            store.run(|db| Ok(Store::rooms(db)?.len())).await.map(drop).map_err(|e| e.to_string())
        }
    });
}

#[derive(Template, WebTemplate)]
#[template(path = "chat.html")]
struct ChatPage;

async fn page() -> ChatPage {
    ChatPage
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The member token a request carries: `Authorization: Bearer`, or `?token=` (for EventSource).
fn member_token(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    let token = bearer(headers).or(query_token.filter(|t| !t.is_empty()));
    token.map(str::to_owned)
}

impl ChatState {
    /// The room, loading it on first use; 404 if it was never created.
    async fn room(&self, name: &str) -> Result<Arc<Room>, ChatError> {
        let name = names::room(name)?.to_owned();
        if let Some(room) = self.rooms.get(&name) {
            return Ok(room);
        }
        let last_id = self.history.last_id(&name).await?;
        match last_id {
            Some(last_id) => {
                let room = self.rooms.load(&name, last_id);
                if let History::Redis(log) = &self.history {
                    // Messages published while the room was loading reached no stream here.
                    redis_follower::catch_up(log, &room).await?;
                }
                Ok(room)
            }
            None => Err(ChatError::UnknownRoom(name)),
        }
    }

    /// The nick this token holds in `room`; 401 without a valid one.
    async fn member(&self, room: &str, token: Option<String>) -> Result<String, ChatError> {
        let token = token.ok_or(ChatError::MissingMemberToken)?;
        let nick = self.history.nick_for_token(room, &sha256_hex(&token)).await?;
        nick.ok_or(ChatError::InvalidMemberToken)
    }
}

async fn list_rooms(State(state): State<ChatState>) -> Result<Response, ChatError> {
    let names = state.history.rooms().await?;
    let mut rooms: Vec<Value> = Vec::with_capacity(names.len());
    for name in names {
        // Redis: members may be online on other instances even if this one never loaded it.
        let online = match (&state.history, state.rooms.get(&name)) {
            (History::Redis(log), _) => log.online(&name).await?.len(),
            (History::Local(..), Some(room)) => room.online().await.len(),
            (History::Local(..), None) => 0,
        };
        rooms.push(json!({ "name": name, "online": online }));
    }
    Ok(axum::Json(json!({ "rooms": rooms })).into_response())
}

#[derive(Debug, Deserialize)]
struct JoinBody {
    nick: String,
}

async fn join(
    State(state): State<ChatState>,
    PathParams(room): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JoinBody>,
) -> Result<Response, ChatError> {
    let room = names::room(&room)?.to_owned();
    let nick = names::nick(&body.nick)?.to_owned();
    let key = names::nick_key(&nick);
    let presented = member_token(&headers, None);
    let holder = state.history.ensure_room(&room, &key).await?;
    let room_state = state.room(&room).await?;
    // The holder coming back with its token keeps it, under the nickname as first written.
    if let (Some(held), Some(token)) = (&holder, &presented)
        && *held == sha256_hex(token)
    {
        let stored = state.member(&room, Some(token.clone())).await?;
        let body = json!({ "token": token, "nick": stored, "room": room });
        return Ok((StatusCode::OK, axum::Json(body)).into_response());
    }
    let online = room_state.online().await;
    if holder.is_some() && online.iter().any(|online| names::nick_key(online) == key) {
        return Err(ChatError::NickTaken { nick, room });
    }
    let token = Token::generate();
    state.history.set_member(&room, &key, &nick, &sha256_hex(&token)).await?;
    tracing::info!(room, nick, "joined");
    Ok((StatusCode::CREATED, axum::Json(json!({ "token": token, "nick": nick, "room": room })))
        .into_response())
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn events(
    State(state): State<ChatState>,
    PathParams(room): PathParams<String>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<TokenQuery>,
    LastEventId(last_event_id): LastEventId,
) -> Result<Response, ChatError> {
    let room = state.room(&room).await?;
    // With a token the connection counts as the member's presence; without, a read-only viewer.
    let presence = match member_token(&headers, query.token.as_deref()) {
        Some(token) => Some(room.arrive(&state.member(&room.name, Some(token)).await?)),
        None => None,
    };
    // Subscribe first, then read the store up to the id of that moment: nothing falls between.
    let mut live = room.topic.subscribe(&Resume::Live);
    let upto = room.topic.last_id();
    live.skip_through(upto);
    let mut prelude = vec![room.presence_snapshot().await.encode()];
    let replay: ReplayStream = match last_event_id.as_deref().map(str::parse::<u64>) {
        Some(Ok(after)) if after <= upto => {
            replay_from_store(state.history.clone(), room.name.clone(), after, upto)
        }
        Some(_) => {
            // Not an id of this room (or from the future): the client must refetch.
            let resync =
                Event::new().event("resync").id(upto).json(&json!({ "reason": "unknown_id" }));
            prelude.push(resync.encode());
            Box::pin(futures_util::stream::empty())
        }
        None => Box::pin(futures_util::stream::empty()),
    };
    // A replay that fails ends the stream (the client reconnects from the last id it got);
    // carrying on live would leave a silent gap. The presence guard lives as long as the
    // stream: closing it counts the member out.
    Ok(LiveResponse::new(live)
        .prelude(prelude)
        .replay(replay)
        .keep(presence)
        .into_response(&state.core.streams, &state.core.metrics))
}

/// Replayed pages, or the failure that ends the replay.
type ReplayStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// Messages of `room` in `(after, upto]`, read from the store a page at a time, each page one
/// write.
fn replay_from_store(history: History, room: String, after: u64, upto: u64) -> ReplayStream {
    Box::pin(futures_util::stream::unfold(Some(after), move |cursor| {
        let (history, room) = (history.clone(), room.clone());
        async move {
            let after = cursor.filter(|after| *after < upto)?;
            let page = history.messages_after(&room, after, REPLAY_PAGE).await;
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "replay from the store failed; ending the stream");
                    return Some((Err(error), None));
                }
            };
            let page: Vec<Message> = page.into_iter().filter(|m| m.id <= upto).collect();
            let last = page.last()?.id;
            let mut batch = BytesMut::new();
            for message in &page {
                batch.extend_from_slice(message_event(message).id(message.id).encode().as_bytes());
            }
            Some((Ok(Bytes::from(batch)), Some(last)))
        }
    }))
}

#[derive(Debug, Deserialize)]
struct PostBody {
    text: String,
    client_msg_id: String,
}

async fn post_message(
    State(state): State<ChatState>,
    PathParams(room): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostBody>,
) -> Result<Response, ChatError> {
    let room = state.room(&room).await?;
    let nick = state.member(&room.name, member_token(&headers, None)).await?;
    if let Some(posts) = &state.posts {
        posts.check(&format!("{}\n{}", room.name, names::nick_key(&nick)))?;
    }
    let text = names::message(&body.text)?;
    let client_msg_id = names::client_msg_id(&body.client_msg_id)?.to_owned();
    let stored = state.history.post(&room, nick, text, client_msg_id).await?;
    let (message, created) = stored;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(message)).into_response())
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn history_page(
    State(state): State<ChatState>,
    PathParams(room): PathParams<String>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Response, ChatError> {
    let room = state.room(&room).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ChatError::InvalidLimit(MAX_PAGE));
    }
    let messages = state.history.messages_before(&room.name, query.before, limit).await?;
    Ok(axum::Json(json!({ "messages": messages })).into_response())
}

async fn typing(
    State(state): State<ChatState>,
    PathParams(room): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ChatError> {
    let room = state.room(&room).await?;
    let nick = state.member(&room.name, member_token(&headers, None)).await?;
    let announced = room.typing(&nick);
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "announced": announced }))).into_response())
}
