//! Several instances as one, through Redis: what must be shared when a load balancer spreads
//! clients over N servers with no sticky sessions.
//!
//! A session's stream lives on the instance its client connected to, but the caller of a request
//! and the POST of the answer may each land on any instance. Three things make that work:
//!
//! | need | Redis | kept how |
//! |---|---|---|
//! | which instance holds a session | `sse:session:<id>` → instance, `sse:name:<name>` → `<instance> <id>` | written when the session is created, refreshed every 10 s with a 30 s expiry, deleted when it expires |
//! | which instance waits for a request's answer | `sse:request:<id>` → instance | claimed with `SET NX` when the request is sent (which also keeps ids unique across instances), expiring after its deadline plus the time finished requests are remembered |
//! | getting there | one channel per instance, `sse:instance:<id>` | pub/sub; each message that needs an outcome carries a ticket, answered with a `verdict` on the asker's own channel |
//! | where an instance answers HTTP | `sse:address:<instance>` → its base URL, and the sorted set `sse:addresses` of every live one | written at start, refreshed with the directory; for apps that forward a request to the instance that owns what it names |
//! | which instance owns a thing an app names (an exec run, say) | `sse:owner:<kind>:<id>` → instance | written by the app when it creates the thing, expiring when the app says |
//! | a topic every instance's clients follow ([`SharedTopic`]) | stream `sse:topic:<name>` (consecutive ids, starting from the clock), counter `sse:topic-seq:<name>`, channel `sse:topics` | appended and announced by one Lua script; each instance mirrors the log into a local topic |
//!
//! So a request for a session held elsewhere is published to that instance, which frames it in
//! the session's dialect and sends it down the stream, and says whether it could; an answer POSTed
//! where nobody waits for it is forwarded to the instance whose caller waits, and the POST gets that
//! instance's verdict (202, or 404/403/409/410 as the correlator there decides).
//!
//! ## Two ways to reach another instance, and which serves what
//!
//! - **Redis messages inside the correlator** (this module) serve the request/answer pattern of
//!   the bidi programs and of any app built on [`Correlator::request`]. What crosses instances
//!   there is small and well defined: one JSON-RPC request down to the instance holding a
//!   session's stream, one answer back to the instance whose caller waits, a verdict for each.
//!   The correlator stays the one place that matches answers to requests, so an answer may be
//!   POSTed anywhere and still gets its exact status (202, 404, 403, 409, 410), and the caller's
//!   deadline, cancellation and circuit breaker work the same as for a local session. The cluster
//!   plugs into it as its [`Relay`](crate::rpc::Relay); the correlator never knows how instances
//!   are reached.
//! - **HTTP forwarding to the owner** (`apps/src/forward.rs`) serves the other apps (exec,
//!   sampling, the dashboard), whose requests are about a thing that lives in one process (an
//!   exec run's child process, an MCP session with its pending `createMessage` calls, one
//!   machine's measurements), and whose endpoints are many and app-specific (event streams,
//!   stdin, signals, tool calls, control actions). The instance that gets such a request looks
//!   the owner up (the session directory, [`Cluster::owner`], or the instance the request names)
//!   and forwards the whole HTTP request there ([`Cluster::address_of`]), streaming the answer
//!   back byte for byte.
//!   Teaching the correlator each of those endpoints would copy every app's protocol into the
//!   core; forwarding needs nothing of them but "who owns this".
//!
//! So: a request/answer pair matched by id crosses instances as Redis messages; anything else
//! an app owns is reached by forwarding the HTTP request to its owner.
//!
//! Redis failing does not stop an instance: everything local goes on (its own sessions, callers
//! and answers), a remote step fails clearly (`503`, the session treated as gone), the listener
//! reconnects every second and the directory is rewritten on its next refresh. A message
//! published while an instance is cut off is lost, never acknowledged: the caller waiting for it
//! times out, and the POST that sent an answer got `503` and can be sent again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::sync::lock;

mod addresses;
mod shared_topic;

pub use crate::rpc::RemoteSession;
use crate::rpc::{AnswerError, Correlator, Relay};
use crate::session::{Session, SessionId, Sessions};
use crate::wire::jsonrpc::{Id, Message, Request, Response};
pub use shared_topic::{LOG_LENGTH, SharedTopic};

/// How long a directory entry lives without a refresh.
const DIRECTORY_TTL: Duration = Duration::from_secs(30);
/// How often live sessions' entries are refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// How long an instance waits for another's verdict.
const VERDICT_WAIT: Duration = Duration::from_secs(5);

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("not a Redis URL ({0})")]
    BadUrl(redis::RedisError),
}

/// This instance's link to the others. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("instance", &self.inner.instance).finish()
    }
}

struct Inner {
    instance: String,
    client: redis::Client,
    commands: ConnectionManager,
    /// Outcomes this instance waits for, by ticket.
    tickets: Mutex<HashMap<String, oneshot::Sender<Delivery>>>,
    /// This instance's sessions and correlator, for messages from the others.
    local: OnceLock<(Sessions, Correlator)>,
    /// Where this instance answers HTTP, once it listens.
    address: OnceLock<String>,
    /// The instances' shared token, which signs the address records (see [`addresses`]).
    address_key: OnceLock<String>,
    /// The shared topics mirrored here.
    mirrors: Mutex<shared_topic::Mirrors>,
}

/// Whether `session`'s name is refreshed in the directory: only by the session that holds it here
/// and has a stream open. One waiting out its grace period after its client left must not take
/// the name back from the session that client opened since, here or on another instance (lookups
/// by name would go to the old one). Its id stays listed, for late answers.
fn refreshes_its_name(sessions: &Sessions, session: &Session) -> bool {
    session.connections() > 0
        && session
            .name()
            .and_then(|name| sessions.by_name(name))
            .is_some_and(|holder| holder.id() == session.id())
}

/// A verdict this instance waits for, listed in `Inner::tickets` until dropped: when the wait
/// ends, or when the caller gives up and drops the future mid-wait (a client that hangs up while
/// its request is forwarded), which would otherwise leave the entry there for good.
struct Ticket<'a> {
    tickets: &'a Mutex<HashMap<String, oneshot::Sender<Delivery>>>,
    id: String,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        lock(self.tickets).remove(&self.id);
    }
}

/// What an instance says about a request or an answer it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Sent down the session's stream, or handed to the waiting caller.
    Delivered,
    /// The session is not (or no longer) there.
    NoSession,
    /// The correlator refused the answer, with this reason.
    Refused(Refusal),
}

/// [`AnswerError`] on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// See [`AnswerError::Unknown`].
    Unknown,
    /// See [`AnswerError::WrongSession`].
    WrongSession,
    /// See [`AnswerError::Duplicate`].
    Duplicate,
    /// See [`AnswerError::Late`].
    Late,
}

impl Refusal {
    fn of(error: AnswerError) -> Refusal {
        match error {
            AnswerError::WrongSession => Refusal::WrongSession,
            AnswerError::Duplicate => Refusal::Duplicate,
            AnswerError::Late => Refusal::Late,
            _ => Refusal::Unknown,
        }
    }

    /// The correlator's error this stands for.
    pub fn error(self) -> AnswerError {
        match self {
            Refusal::Unknown => AnswerError::Unknown,
            Refusal::WrongSession => AnswerError::WrongSession,
            Refusal::Duplicate => AnswerError::Duplicate,
            Refusal::Late => AnswerError::Late,
        }
    }
}

/// What a follower of a channel hears (see [`Cluster::follow`]).
#[derive(Debug)]
pub enum ChannelEvent {
    /// The channel is (again) subscribed: messages published from now on will arrive, and any
    /// published while unsubscribed never will.
    Subscribed,
    /// One message, as published.
    Message(String),
}

/// A message between instances.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Envelope {
    /// Send this request down the session's stream.
    Request {
        session: String,
        id: Id,
        method: String,
        params: Option<Value>,
        ticket: String,
        reply_to: String,
    },
    /// Tell the session's client that request `id` is cancelled.
    Cancel { session: String, id: Id, reason: String },
    /// An answer POSTed elsewhere, for the caller waiting here.
    Answer { session: String, response: Value, ticket: String, reply_to: String },
    /// The outcome of a `request` or an `answer`.
    Verdict { ticket: String, verdict: Delivery },
}

fn channel(instance: &str) -> String {
    format!("sse:instance:{instance}")
}

impl Cluster {
    /// Joins the cluster that shares the Redis at `url`, as a new instance. Redis need not be up
    /// yet: the link connects when first used and reconnects after failures.
    pub fn connect(url: &str) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(url).map_err(ClusterError::BadUrl)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let commands = client.get_connection_manager_lazy(config).map_err(ClusterError::BadUrl)?;
        let instance = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Ok(Cluster {
            inner: Arc::new(Inner {
                instance,
                client,
                commands,
                tickets: Mutex::default(),
                local: OnceLock::new(),
                address: OnceLock::new(),
                address_key: OnceLock::new(),
                mirrors: Mutex::default(),
            }),
        })
    }

    /// Whether Redis answers now (for readiness).
    pub async fn ping(&self) -> Result<(), String> {
        let mut commands = self.commands();
        redis::cmd("PING")
            .query_async::<String>(&mut commands)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// This instance's name in the cluster.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Serves messages for `sessions` and `correlator` from the other instances, lists every
    /// session in the directory while it lives, and becomes the correlator's
    /// [`Relay`](crate::rpc::Relay) to the other instances. The cluster hooks into both; neither
    /// knows it. Call once, inside a runtime.
    pub fn attach(&self, sessions: &Sessions, correlator: &Correlator) {
        if self.inner.local.set((sessions.clone(), correlator.clone())).is_err() {
            return;
        }
        correlator.relay_through(Arc::new(self.clone()));
        let cluster = self.clone();
        sessions.on_create(move |session| {
            let (cluster, session) = (cluster.clone(), session.clone());
            // A new session takes its name at once.
            async move { cluster.list(&[session], |_| true).await }
        });
        let cluster = self.clone();
        sessions.on_expire(move |id| {
            let (cluster, id) = (cluster.clone(), id.clone());
            tokio::spawn(async move { cluster.delist(&id).await });
        });
        tokio::spawn(self.clone().listen());
        tokio::spawn(self.clone().refresh(sessions.clone()));
    }

    /// Writes the directory entries of `sessions`: each id, and the names `claims` says.
    async fn list(&self, sessions: &[Session], claims: impl Fn(&Session) -> bool) {
        if sessions.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        let ttl = DIRECTORY_TTL.as_secs();
        for session in sessions {
            let id = session.id().as_str();
            pipe.set_ex(format!("sse:session:{id}"), self.instance(), ttl).ignore();
            if let Some(name) = session.name().filter(|_| claims(session)) {
                let entry = format!("{} {id}", self.instance());
                pipe.set_ex(format!("sse:name:{name}"), entry, ttl).ignore();
            }
        }
        let mut commands = self.inner.commands.clone();
        if let Err(error) = pipe.query_async::<()>(&mut commands).await {
            tracing::warn!(%error, "cannot list sessions in the cluster directory (Redis)");
        }
    }

    async fn delist(&self, id: &SessionId) {
        let mut commands = self.inner.commands.clone();
        let deleted: redis::RedisResult<()> =
            commands.del(format!("sse:session:{}", id.as_str())).await;
        if let Err(error) = deleted {
            tracing::warn!(%error, "cannot remove a session from the cluster directory (Redis)");
        }
    }

    /// Keeps the directory entries of live sessions, and this instance's address, from expiring.
    async fn refresh(self, sessions: Sessions) {
        let mut every = tokio::time::interval(REFRESH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let holds_name = |session: &Session| refreshes_its_name(&sessions, session);
            self.list(&sessions.list(), holds_name).await;
            self.write_address().await;
        }
    }

    /// Signs this instance's address record with `token`, and reads only records signed with it:
    /// an address someone else wrote in Redis names no instance. Every instance of a cluster
    /// that requires a token must be given the same one, and call this before
    /// [`Cluster::advertise`].
    pub fn sign_addresses_with(&self, token: &str) {
        let _ = self.inner.address_key.set(token.to_owned());
    }

    fn address_key(&self) -> Option<&str> {
        self.inner.address_key.get().map(String::as_str)
    }

    /// Tells the other instances where this one answers HTTP (`http://127.0.0.1:8082`, say).
    /// Call once, when the server listens.
    pub async fn advertise(&self, base_url: &str) {
        if self.inner.address.set(base_url.to_owned()).is_ok() {
            self.write_address().await;
        }
    }

    async fn write_address(&self) {
        let Some(address) = self.inner.address.get() else { return };
        let mut commands = self.inner.commands.clone();
        let key = format!("sse:address:{}", self.instance());
        let record = addresses::record(self.address_key(), self.instance(), address);
        let now = now_ms();
        let until = now + DIRECTORY_TTL.as_millis() as i64;
        let written: redis::RedisResult<()> = redis::pipe()
            .set_ex(key, &record, DIRECTORY_TTL.as_secs())
            .ignore()
            .zadd("sse:addresses", format!("{} {record}", self.instance()), until)
            .ignore()
            .zrembyscore("sse:addresses", "-inf", now)
            .ignore()
            .query_async(&mut commands)
            .await;
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write this instance's address to Redis");
        }
    }

    /// Where `instance` answers HTTP, if it is alive and said (in a record signed as this
    /// instance signs its own).
    pub async fn address_of(&self, instance: &str) -> Option<String> {
        let mut commands = self.inner.commands.clone();
        let record: Option<String> = commands.get(format!("sse:address:{instance}")).await.ok()?;
        addresses::address_in(self.address_key(), instance, &record?)
    }

    /// Every live instance (this one included) and its base URL, by instance name.
    pub async fn instances(&self) -> redis::RedisResult<Vec<(String, String)>> {
        let mut commands = self.inner.commands.clone();
        let live: Vec<String> = commands.zrangebyscore("sse:addresses", now_ms(), "+inf").await?;
        let mut instances: Vec<(String, String)> = live
            .into_iter()
            .filter_map(|entry| {
                let (instance, record) = entry.split_once(' ')?;
                let address = addresses::address_in(self.address_key(), instance, record)?;
                Some((instance.to_owned(), address))
            })
            .collect();
        instances.sort();
        Ok(instances)
    }

    /// Every other live instance's base URL.
    pub async fn other_addresses(&self) -> Vec<String> {
        let instances = self.instances().await.unwrap_or_default();
        instances
            .into_iter()
            .filter(|(instance, _)| instance != self.instance())
            .map(|(_, address)| address)
            .collect()
    }

    /// Records that this instance owns the `kind` thing `id`, for `ttl`.
    pub async fn own(&self, kind: &str, id: &str, ttl: Duration) -> redis::RedisResult<()> {
        let mut commands = self.inner.commands.clone();
        commands.set_ex(format!("sse:owner:{kind}:{id}"), self.instance(), ttl.as_secs()).await
    }

    /// The instance that owns the `kind` thing `id`, if any does.
    pub async fn owner(&self, kind: &str, id: &str) -> redis::RedisResult<Option<String>> {
        let mut commands = self.inner.commands.clone();
        commands.get(format!("sse:owner:{kind}:{id}")).await
    }

    /// The session named `name`, when another instance holds it.
    pub async fn locate_name(&self, name: &str) -> Option<RemoteSession> {
        let mut commands = self.inner.commands.clone();
        let entry: Option<String> = commands.get(format!("sse:name:{name}")).await.ok()?;
        let (instance, id) = entry?.split_once(' ').map(|(i, s)| (i.to_owned(), s.to_owned()))?;
        // The name outlives its session by up to its expiry: the session must still be listed.
        let holder = self.holder(&SessionId::from(id.as_str())).await?;
        (holder == instance && instance != self.instance())
            .then(|| RemoteSession { id: SessionId::from(id.as_str()), instance })
    }

    /// The session `id`, when another instance holds it.
    pub async fn locate(&self, id: &SessionId) -> Option<RemoteSession> {
        let instance = self.holder(id).await?;
        (instance != self.instance()).then(|| RemoteSession { id: id.clone(), instance })
    }

    async fn holder(&self, id: &SessionId) -> Option<String> {
        let mut commands = self.inner.commands.clone();
        commands.get(format!("sse:session:{}", id.as_str())).await.ok()?
    }

    /// Claims request id `id` for this instance for `ttl`; false if another instance holds it
    /// (or Redis cannot say, in which case the request stays local: `None`).
    pub async fn claim_request(&self, id: &Id, ttl: Duration) -> Option<bool> {
        let key = format!("sse:request:{}", id_text(id));
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(ttl.as_secs().max(1)));
        let mut commands = self.inner.commands.clone();
        match commands.set_options::<_, _, Option<String>>(key, self.instance(), options).await {
            Ok(set) => Some(set.is_some()),
            Err(error) => {
                tracing::warn!(%error, "cannot record a request in the cluster (Redis); its answer must come here");
                None
            }
        }
    }

    /// The instance waiting for request `id`'s answer, when it is another one.
    pub async fn request_origin(&self, id: &Id) -> Option<String> {
        let mut commands = self.inner.commands.clone();
        let origin: Option<String> =
            commands.get(format!("sse:request:{}", id_text(id))).await.ok()?;
        origin.filter(|origin| origin != self.instance())
    }

    /// Sends `request` down `session`'s stream on its instance; `None` if that instance could not
    /// be reached.
    pub async fn send_request(
        &self,
        session: &RemoteSession,
        request: &Request,
    ) -> Option<Delivery> {
        let (ticket, verdict) = self.ticket();
        let envelope = Envelope::Request {
            session: session.id.as_str().to_owned(),
            id: request.id.clone(),
            method: request.method.clone(),
            params: request.params.clone(),
            ticket: ticket.id.clone(),
            reply_to: self.instance().to_owned(),
        };
        self.ask(&session.instance, &envelope, ticket, verdict).await
    }

    /// Forwards an answer from `session` to `origin`, where its caller waits; the verdict there,
    /// or `None` if it could not be reached.
    pub async fn forward_answer(
        &self,
        origin: &str,
        session: &SessionId,
        response: Value,
    ) -> Option<Delivery> {
        let (ticket, verdict) = self.ticket();
        let envelope = Envelope::Answer {
            session: session.as_str().to_owned(),
            response,
            ticket: ticket.id.clone(),
            reply_to: self.instance().to_owned(),
        };
        self.ask(origin, &envelope, ticket, verdict).await
    }

    /// Tells `session`'s client, on its instance, that request `id` is cancelled.
    pub async fn send_cancel(&self, session: &RemoteSession, id: &Id, reason: &str) {
        let envelope = Envelope::Cancel {
            session: session.id.as_str().to_owned(),
            id: id.clone(),
            reason: reason.to_owned(),
        };
        let _ = self.publish(&session.instance, &envelope).await;
    }

    fn ticket(&self) -> (Ticket<'_>, oneshot::Receiver<Delivery>) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (sender, receiver) = oneshot::channel();
        lock(&self.inner.tickets).insert(id.clone(), sender);
        (Ticket { tickets: &self.inner.tickets, id }, receiver)
    }

    /// Publishes `envelope` to `instance` and waits for its verdict on `ticket`.
    async fn ask(
        &self,
        instance: &str,
        envelope: &Envelope,
        ticket: Ticket<'_>,
        verdict: oneshot::Receiver<Delivery>,
    ) -> Option<Delivery> {
        let heard = match self.publish(instance, envelope).await {
            Ok(receivers) => receivers > 0,
            Err(error) => {
                tracing::warn!(%error, instance, "cannot reach another instance (Redis)");
                false
            }
        };
        let answer = if heard {
            tokio::time::timeout(VERDICT_WAIT, verdict).await.ok().and_then(Result::ok)
        } else {
            None
        };
        drop(ticket);
        answer
    }

    async fn publish(&self, instance: &str, envelope: &Envelope) -> redis::RedisResult<u64> {
        let text = serde_json::to_string(envelope).unwrap_or_default();
        let mut commands = self.inner.commands.clone();
        commands.publish(channel(instance), text).await
    }

    /// Receives this instance's messages for as long as the process runs.
    async fn listen(self) {
        let cluster = self.clone();
        self.follow(
            channel(self.instance()),
            "requests and answers from other instances",
            move |heard| {
                let cluster = cluster.clone();
                async move {
                    let ChannelEvent::Message(text) = heard else { return };
                    match serde_json::from_str::<Envelope>(&text) {
                        Ok(envelope) => cluster.handle(envelope).await,
                        Err(error) => tracing::warn!(%error, "unreadable cluster message"),
                    }
                }
            },
        )
        .await;
    }

    /// Follows the pub/sub `channel` for as long as the process runs: `handler` hears
    /// [`ChannelEvent::Subscribed`] after each (re)subscription, so it can catch up on what it missed
    /// while cut off, then each message in the order Redis published them (one at a time: the
    /// next waits for the handler). While Redis is unreachable it logs once that `what` cannot
    /// arrive and tries again every second.
    pub async fn follow<F, Fut>(&self, channel: String, what: &str, mut handler: F)
    where
        F: FnMut(ChannelEvent) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut lost = false;
        loop {
            match self.subscribe(&channel).await {
                Ok(mut pubsub) => {
                    if lost {
                        tracing::info!(instance = self.instance(), channel, "reconnected to Redis");
                    }
                    handler(ChannelEvent::Subscribed).await;
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        if let Ok(text) = message.get_payload::<String>() {
                            handler(ChannelEvent::Message(text)).await;
                        }
                    }
                    tracing::error!(
                        instance = self.instance(),
                        "lost the connection to Redis: {what} cannot reach this instance until it \
                         is back; local work goes on"
                    );
                }
                Err(error) if !lost => tracing::error!(
                    %error,
                    "cannot subscribe to Redis: {what} cannot reach this instance until it is back; \
                     local work goes on"
                ),
                Err(_) => {}
            }
            lost = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn subscribe(&self, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = self.inner.client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    }

    /// A handle for commands to the shared Redis (it reconnects by itself; cheap to clone).
    pub fn commands(&self) -> ConnectionManager {
        self.inner.commands.clone()
    }

    async fn handle(&self, envelope: Envelope) {
        let Some((sessions, correlator)) = self.inner.local.get() else { return };
        match envelope {
            Envelope::Request { session, id, method, params, ticket, reply_to } => {
                let verdict = match sessions.get(&SessionId::from(session.as_str())) {
                    Some(session) => {
                        let event = session.dialect().request(&Request::new(id, method, params));
                        if session.send(event).is_ok() {
                            Delivery::Delivered
                        } else {
                            Delivery::NoSession
                        }
                    }
                    None => Delivery::NoSession,
                };
                let _ = self.publish(&reply_to, &Envelope::Verdict { ticket, verdict }).await;
            }
            Envelope::Cancel { session, id, reason } => {
                if let Some(session) = sessions.get(&SessionId::from(session.as_str()))
                    && let Some(event) = session.dialect().cancelled(&id, &reason)
                {
                    let _ = session.send(event);
                }
            }
            Envelope::Answer { session, response, ticket, reply_to } => {
                let verdict = match Message::from_value(response) {
                    Ok(Message::Response(response)) => {
                        match correlator.answer_here(&SessionId::from(session.as_str()), response) {
                            Ok(()) => Delivery::Delivered,
                            Err(error) => Delivery::Refused(Refusal::of(error)),
                        }
                    }
                    _ => Delivery::Refused(Refusal::Unknown),
                };
                let _ = self.publish(&reply_to, &Envelope::Verdict { ticket, verdict }).await;
            }
            Envelope::Verdict { ticket, verdict } => {
                if let Some(waiting) = lock(&self.inner.tickets).remove(&ticket) {
                    let _ = waiting.send(verdict);
                }
            }
        }
    }
}

/// How the correlator reaches the other instances: the cluster's messages, each awaiting the
/// verdict of the instance it went to.
impl Relay for Cluster {
    fn claim_id<'a>(&'a self, id: &'a Id, ttl: Duration) -> BoxFuture<'a, Option<bool>> {
        Box::pin(self.claim_request(id, ttl))
    }

    fn deliver<'a>(&'a self, to: &'a RemoteSession, request: &'a Request) -> BoxFuture<'a, bool> {
        Box::pin(async move { self.send_request(to, request).await == Some(Delivery::Delivered) })
    }

    fn cancel(&self, to: &RemoteSession, id: &Id, reason: &str) {
        let (cluster, to) = (self.clone(), to.clone());
        let (id, reason) = (id.clone(), reason.to_owned());
        tokio::spawn(async move { cluster.send_cancel(&to, &id, &reason).await });
    }

    fn pass_answer<'a>(
        &'a self,
        from: &'a SessionId,
        response: Response,
    ) -> BoxFuture<'a, Result<(), AnswerError>> {
        Box::pin(async move {
            let Some(origin) = self.request_origin(&response.id).await else {
                return Err(AnswerError::Unknown);
            };
            match self.forward_answer(&origin, from, response.to_value()).await {
                Some(Delivery::Delivered) => Ok(()),
                Some(Delivery::Refused(refusal)) => Err(refusal.error()),
                Some(Delivery::NoSession) => Err(AnswerError::Unknown),
                None => Err(AnswerError::Unreachable),
            }
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A request id as a key part.
fn id_text(id: &Id) -> String {
    match id {
        Id::Number(n) => n.to_string(),
        Id::String(s) => format!("s:{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::programs::{free_port, installed, redis_server};

    #[tokio::test]
    async fn only_a_session_with_a_stream_that_still_holds_its_name_refreshes_it() {
        let config = crate::session::SessionConfig::default();
        let sessions = Sessions::new(config, crate::metrics::Metrics::new());
        let dialect = || Arc::new(crate::session::JsonRpcEvents);
        let old = sessions.create(Some("w"), dialect()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!refreshes_its_name(&sessions, &old), "no stream yet");
        let stream = old.connect(None);
        assert!(refreshes_its_name(&sessions, &old));

        // Its client leaves and comes back as a new session: the old one, in its grace period,
        // keeps its id listed but not the name, even with a stream open again.
        drop(stream);
        assert!(!refreshes_its_name(&sessions, &old), "waiting out its grace");
        let new = sessions.create(Some("w"), dialect()).await.unwrap_or_else(|e| panic!("{e}"));
        let _new_stream = new.connect(None);
        let _late_stream = old.connect(None);
        assert!(refreshes_its_name(&sessions, &new));
        assert!(!refreshes_its_name(&sessions, &old), "the name is the new session's");
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_mid_wait_leaves_no_ticket_behind() {
        if !installed(&["redis-server"], "redis-server") {
            return;
        }
        let port = free_port();
        let _redis = redis_server(port, &["--save", "", "--appendonly", "no"]).await;
        let url = format!("redis://127.0.0.1:{port}");
        let cluster = Cluster::connect(&url).unwrap_or_else(|e| panic!("{e}"));
        // An instance that hears every message sent to it and never answers.
        let client = redis::Client::open(url).unwrap_or_else(|e| panic!("{e}"));
        let mut deaf = client.get_async_pubsub().await.unwrap_or_else(|e| panic!("{e}"));
        deaf.subscribe(channel("deaf")).await.unwrap_or_else(|e| panic!("{e}"));
        let session = RemoteSession { id: SessionId::from("s"), instance: "deaf".into() };
        let request = Request::new(Id::Number(1), "analyze", None);

        let mut asking = Box::pin(cluster.send_request(&session, &request));
        let mut heard = deaf.on_message();
        tokio::select! {
            verdict = &mut asking => panic!("a verdict from nobody: {verdict:?}"),
            message = heard.next() => assert!(message.is_some()),
        }
        assert_eq!(lock(&cluster.inner.tickets).len(), 1, "waiting on its verdict");
        // The caller gives up while the ticket waits (its client hung up, say).
        drop(asking);
        assert!(lock(&cluster.inner.tickets).is_empty(), "the ticket left with its caller");
    }
}
