//! The chat room: rooms, nicknames, presence, typing, persistent history and gap-free resume.
//!
//! History is the source of truth: every accepted message is committed to SQLite
//! ([`store`]) before its POST is answered, and its database id is its SSE event id. A room's
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

pub mod names;
pub mod room;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
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
use sse_core::edge::{ApiError, JsonBody, QueryParams};
use sse_core::hub::Resume;
use sse_core::stream::{FrameStream, LastEventId, sse_response, with_prelude};
use sse_core::wire::Event;

use room::{Room, Rooms};
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

/// Where data goes when `--data-dir` is not given: the user's data directory.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("sse-apps")
}

#[derive(Clone, Debug)]
struct ChatState {
    core: Core,
    store: Store,
    rooms: Arc<Rooms>,
    posts: Option<RateLimit<String>>,
}

/// Messages replayed per store read when a client catches up.
const REPLAY_PAGE: usize = 500;
/// Most messages one history request returns.
const MAX_PAGE: usize = 200;

/// The chat routes, mounted at `/chat`. Fails only if the database cannot be opened.
pub fn router(core: Core, config: &ChatConfig) -> Result<Router, StoreError> {
    let store = Store::open(&config.data_dir)?;
    let posts = RateLimit::new(config.posts_per_second, config.burst);
    if let Some(posts) = posts.clone() {
        // Buckets of members who stopped posting are full again: drop them, so the limiter holds
        // only active members. It stops with the server.
        let shutdown = core.shutdown_token();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => posts.forget_idle(),
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }
    let state = ChatState { rooms: Arc::new(Rooms::new(core.hub.clone())), core, store, posts };
    let routes = Router::new()
        .route("/chat", get(page))
        .route("/chat/", get(page))
        .route("/chat/rooms", get(list_rooms))
        .route("/chat/rooms/{room}/join", post(join))
        .route("/chat/rooms/{room}/events", get(events))
        .route("/chat/rooms/{room}/messages", get(history).post(post_message))
        .route("/chat/rooms/{room}/typing", post(typing))
        .with_state(state);
    Ok(routes)
}

#[derive(Template, WebTemplate)]
#[template(path = "chat.html")]
struct ChatPage;

async fn page() -> ChatPage {
    ChatPage
}

fn internal(error: StoreError) -> ApiError {
    tracing::error!(%error, "chat storage failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the message store is unavailable",
    )
    .retry_after(1)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The member token a request carries: `Authorization: Bearer`, or `?token=` (for EventSource).
fn member_token(headers: &HeaderMap, query_token: Option<&str>) -> Option<String> {
    let token = bearer(headers).or(query_token.filter(|t| !t.is_empty()));
    token.map(str::to_owned)
}

impl ChatState {
    /// The room, loading it on first use; 404 if it was never created.
    async fn room(&self, name: &str) -> Result<Arc<Room>, ApiError> {
        let name = names::room(name)?.to_owned();
        if let Some(room) = self.rooms.get(&name) {
            return Ok(room);
        }
        let lookup = name.clone();
        let last_id = self
            .store
            .run(move |db| {
                Ok(if Store::room_exists(db, &lookup)? {
                    Some(Store::last_id(db, &lookup)?)
                } else {
                    None
                })
            })
            .await
            .map_err(internal)?;
        match last_id {
            Some(last_id) => Ok(self.rooms.load(&name, last_id)),
            None => Err(ApiError::not_found(
                "unknown_room",
                format!("there is no room {name:?}; join it to create it"),
            )),
        }
    }

    /// The nick this token holds in `room`; 401 without a valid one.
    async fn member(&self, room: &str, token: Option<String>) -> Result<String, ApiError> {
        let token = token.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_member_token",
                "join the room first and send its token",
            )
        })?;
        let (room, hash) = (room.to_owned(), sha256_hex(&token));
        let nick = self
            .store
            .run(move |db| Store::nick_for_token(db, &room, &hash))
            .await
            .map_err(internal)?;
        nick.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_member_token",
                "this token holds no nickname in this room",
            )
        })
    }
}

async fn list_rooms(State(state): State<ChatState>) -> Result<Response, ApiError> {
    let names = state.store.run(|db| Store::rooms(db)).await.map_err(internal)?;
    let rooms: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let online = state.rooms.get(&name).map_or(0, |room| room.online().len());
            json!({ "name": name, "online": online })
        })
        .collect();
    Ok(axum::Json(json!({ "rooms": rooms })).into_response())
}

#[derive(Debug, Deserialize)]
struct JoinBody {
    nick: String,
}

async fn join(
    State(state): State<ChatState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JoinBody>,
) -> Result<Response, ApiError> {
    let room = names::room(&room)?.to_owned();
    let nick = names::nick(&body.nick)?.to_owned();
    let key = names::nick_key(&nick);
    let presented = member_token(&headers, None);
    let (db_room, db_key) = (room.clone(), key.clone());
    let holder = state
        .store
        .run(move |db| {
            Store::ensure_room(db, &db_room)?;
            Store::member_token(db, &db_room, &db_key)
        })
        .await
        .map_err(internal)?;
    let room_state = state.room(&room).await?;
    // The holder coming back with its token keeps it, under the nickname as first written.
    if let (Some(held), Some(token)) = (&holder, &presented) {
        if *held == sha256_hex(token) {
            let stored = state.member(&room, Some(token.clone())).await?;
            let body = json!({ "token": token, "nick": stored, "room": room });
            return Ok((StatusCode::OK, axum::Json(body)).into_response());
        }
    }
    if holder.is_some() && room_state.online().iter().any(|online| names::nick_key(online) == key) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nick_taken",
            format!("{nick:?} is online in {room:?}"),
        ));
    }
    let token = Token::generate();
    let (db_room, db_nick, hash) = (room.clone(), nick.clone(), sha256_hex(&token));
    state
        .store
        .run(move |db| Store::set_member(db, &db_room, &key, &db_nick, &hash))
        .await
        .map_err(internal)?;
    tracing::info!(room, nick, "joined");
    Ok((StatusCode::CREATED, axum::Json(json!({ "token": token, "nick": nick, "room": room })))
        .into_response())
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn message_event(message: &Message) -> Event {
    Event::new().event("message").json(&json!({
        "id": message.id,
        "nick": message.nick,
        "text": message.text,
        "ts": message.ts,
        "client_msg_id": message.client_msg_id,
    }))
}

async fn events(
    State(state): State<ChatState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<TokenQuery>,
    LastEventId(last_event_id): LastEventId,
) -> Result<Response, ApiError> {
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
    let mut prelude = vec![room.presence_snapshot().encode()];
    let replay: ReplayStream = match last_event_id.as_deref().map(str::parse::<u64>) {
        Some(Ok(after)) if after <= upto => {
            replay_from_store(state.store.clone(), room.name.clone(), after, upto)
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
    // carrying on live would leave a silent gap.
    let live = futures_util::StreamExt::map(live.into_stream(), Ok);
    let frames = futures_util::StreamExt::chain(replay, live);
    let frames =
        futures_util::StreamExt::take_while(frames, |frame| std::future::ready(frame.is_ok()));
    let frames =
        futures_util::StreamExt::filter_map(frames, |frame| std::future::ready(frame.ok()));
    let frames = with_prelude(prelude, Box::pin(frames));
    // The presence guard lives as long as the response body: closing the stream counts it out.
    let frames: FrameStream = Box::pin(futures_util::StreamExt::map(frames, move |bytes| {
        let _keep = &presence;
        bytes
    }));
    Ok(sse_response(frames, &state.core.streams, &state.core.metrics))
}

/// Replayed pages, or the failure that ends the replay.
type ReplayStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// Messages of `room` in `(after, upto]`, read from the store a page at a time, each page one
/// write.
fn replay_from_store(store: Store, room: String, after: u64, upto: u64) -> ReplayStream {
    Box::pin(futures_util::stream::unfold(Some(after), move |cursor| {
        let (store, room) = (store.clone(), room.clone());
        async move {
            let after = cursor.filter(|after| *after < upto)?;
            let page =
                store.run(move |db| Store::messages_after(db, &room, after, REPLAY_PAGE)).await;
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
    Path(room): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PostBody>,
) -> Result<Response, ApiError> {
    let room = state.room(&room).await?;
    let nick = state.member(&room.name, member_token(&headers, None)).await?;
    if let Some(posts) = &state.posts {
        posts.check(&format!("{}\n{}", room.name, names::nick_key(&nick)))?;
    }
    let text = names::message(&body.text)?;
    let client_msg_id = names::client_msg_id(&body.client_msg_id)?.to_owned();
    let live = room.clone();
    let stored = state
        .store
        .run(move |db| {
            let (message, created) =
                Store::insert_message(db, &live.name, &nick, &text, &client_msg_id)?;
            if created {
                // Still holding the database lock: live ids leave in commit order.
                if let Err(last) = live.topic.publish_with_id(message.id, message_event(&message)) {
                    tracing::error!(
                        id = message.id,
                        last,
                        "message id not above the stream's; not sent live"
                    );
                }
            }
            Ok((message, created))
        })
        .await
        .map_err(internal)?;
    let (message, created) = stored;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(message)).into_response())
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn history(
    State(state): State<ChatState>,
    Path(room): Path<String>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Response, ApiError> {
    let room = state.room(&room).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", format!("limit is 1 to {MAX_PAGE}")));
    }
    let (name, before) = (room.name.clone(), query.before);
    let messages = state
        .store
        .run(move |db| Store::messages_before(db, &name, before, limit))
        .await
        .map_err(internal)?;
    Ok(axum::Json(json!({ "messages": messages })).into_response())
}

async fn typing(
    State(state): State<ChatState>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let room = state.room(&room).await?;
    let nick = state.member(&room.name, member_token(&headers, None)).await?;
    let announced = room.typing(&nick);
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "announced": announced }))).into_response())
}
