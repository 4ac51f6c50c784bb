//! Sessions: one client's private stream, kept through short disconnects.
//!
//! A [`Session`] has an unguessable id (122 random bits), an optional human name (such as the
//! `client_id` of the learning programs), a private [`Topic`] for everything sent to it, and the
//! [`Dialect`] its client speaks. Anything sent while the client is away waits in the topic's
//! ring and is delivered when it comes back: with a `Last-Event-ID`, exactly from there; without
//! one, from the last frame an earlier connection was handed.
//!
//! When the last connection of a session closes, a timer of `grace` (default 30 s) starts. If
//! nobody reconnects in that time the session expires: it leaves the registry, its name is freed,
//! its `closed` token fires (so callers waiting on its requests learn at once), and once the last
//! handle is dropped nothing of it stays in memory.
//!
//! The registry holds at most [`SessionConfig::max_sessions`]: anyone who can reach a server can
//! make sessions (a new `client_id` is one), and each costs memory for as long as its grace lasts
//! after its stream closes, so past the cap [`Sessions::create`] refuses with [`TooManySessions`]
//! (answered `503 too_many_sessions`, retry after a grace period) rather than let memory grow
//! without bound.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::hub::{Resume, ResumePoint, Subscription, Topic, TopicConfig};
use crate::id_map::IdMap;
use crate::metrics::Metrics;
use crate::sync::lock;
use crate::wire::Event;

mod dialect;

pub use dialect::{CANCELLED, Dialect, JsonRpcEvents};

/// An unguessable session id (32 lowercase hex digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    fn random() -> SessionId {
        SessionId(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SessionId {
    fn from(text: &str) -> SessionId {
        SessionId(text.into())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    // Ids are bearer secrets for their session: logs show a prefix only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", self.0.get(..8).unwrap_or(&self.0))
    }
}

/// How long sessions survive without a connection, how many there may be, and their stream
/// sizes.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// How long a session with no connection is kept (and messages for it queued).
    pub grace: Duration,
    /// The most sessions live at once; 0 for no cap.
    pub max_sessions: usize,
    /// Ring and buffer sizes of each session's stream.
    pub topic: TopicConfig,
}

/// The default [`SessionConfig::max_sessions`]: five times the streams one core here serves
/// comfortably, and some 150 MB if every one of them lingers in its grace with nothing queued.
pub const MAX_SESSIONS: usize = 50_000;

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            grace: Duration::from_secs(30),
            max_sessions: MAX_SESSIONS,
            topic: TopicConfig::default(),
        }
    }
}

/// No session was made: the registry holds as many as it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server holds as many sessions as it may ({limit}); try again later")]
pub struct TooManySessions {
    /// [`SessionConfig::max_sessions`].
    pub limit: usize,
    /// When a retry may succeed: an idle session leaves within a grace period.
    pub retry_after: Duration,
}

impl From<TooManySessions> for crate::edge::ApiError {
    fn from(refused: TooManySessions) -> Self {
        let status = http::StatusCode::SERVICE_UNAVAILABLE;
        crate::edge::ApiError::new(status, "too_many_sessions", refused.to_string())
            .retry_after(refused.retry_after.as_secs().max(1))
    }
}

/// The session was closed (it expired, or was ended) and takes no more messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the session has expired or was closed")]
pub struct SessionClosed;

/// The registry of live sessions. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Sessions {
    inner: Arc<Registry>,
}

struct Registry {
    by_id: Mutex<IdMap<SessionId, Session>>,
    by_name: Mutex<HashMap<String, SessionId>>,
    on_expire: Mutex<Vec<ExpiryHook>>,
    on_create: Mutex<Vec<CreateHook>>,
    config: SessionConfig,
    metrics: Metrics,
}

type ExpiryHook = Arc<dyn Fn(&SessionId) + Send + Sync>;
type CreateHook = Arc<dyn Fn(&Session) -> BoxFuture<'static, ()> + Send + Sync>;

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions").field("live", &lock(&self.by_id).len()).finish()
    }
}

impl Sessions {
    /// An empty registry.
    pub fn new(config: SessionConfig, metrics: Metrics) -> Sessions {
        Sessions {
            inner: Arc::new(Registry {
                by_id: Mutex::default(),
                by_name: Mutex::default(),
                on_expire: Mutex::default(),
                on_create: Mutex::default(),
                config,
                metrics,
            }),
        }
    }

    /// Creates a session. If `name` is given it now refers to this session. The session expires
    /// after the grace period unless a client connects. Refused when the registry is full.
    ///
    /// Returns once every [`Sessions::on_create`] hook is done with it (a cluster has listed it in
    /// its directory), so that when its id goes out, in a hello frame or a header, a request that
    /// carries it to any instance finds it.
    pub async fn create(
        &self,
        name: Option<&str>,
        dialect: Arc<dyn Dialect>,
    ) -> Result<Session, TooManySessions> {
        let session = Session {
            inner: Arc::new(SessionInner {
                id: SessionId::random(),
                name: name.map(str::to_owned),
                topic: Topic::new(self.inner.config.topic, self.inner.metrics.clone()),
                dialect,
                presence: Mutex::default(),
                closed: CancellationToken::new(),
                registry: Arc::downgrade(&self.inner),
            }),
        };
        let start = session.inner.topic.last_id();
        lock(&session.inner.presence).delivered_through = start;
        {
            let config = &self.inner.config;
            let mut by_id = lock(&self.inner.by_id);
            if config.max_sessions != 0 && by_id.len() >= config.max_sessions {
                self.inner.metrics.session_refused();
                let refused =
                    TooManySessions { limit: config.max_sessions, retry_after: config.grace };
                tracing::debug!(%refused, "session refused");
                return Err(refused);
            }
            by_id.insert(session.id().clone(), session.clone());
        }
        if let Some(name) = name {
            lock(&self.inner.by_name).insert(name.to_owned(), session.id().clone());
        }
        self.inner.metrics.session_created();
        tracing::debug!(session = ?session.id(), name, "session created");
        session.schedule_expiry(0);
        let hooks = lock(&self.inner.on_create).clone();
        for hook in hooks {
            hook(&session).await;
        }
        Ok(session)
    }

    /// The session with this id, if it is live.
    pub fn get(&self, id: &SessionId) -> Option<Session> {
        lock(&self.inner.by_id).get(id).cloned()
    }

    /// The session this name refers to, if it is live.
    pub fn by_name(&self, name: &str) -> Option<Session> {
        let id = lock(&self.inner.by_name).get(name).cloned()?;
        self.get(&id)
    }

    /// Every live session (for status pages), in no particular order.
    pub fn list(&self) -> Vec<Session> {
        lock(&self.inner.by_id).values().cloned().collect()
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        lock(&self.inner.by_id).len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `hook` whenever a session expires or is closed (after it left the registry).
    pub fn on_expire(&self, hook: impl Fn(&SessionId) + Send + Sync + 'static) {
        lock(&self.inner.on_expire).push(Arc::new(hook));
    }

    /// Runs `hook` for every session created from now on (a cluster lists it in its directory);
    /// [`Sessions::create`] waits for the future it returns.
    pub fn on_create<F>(&self, hook: impl Fn(&Session) -> F + Send + Sync + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        lock(&self.inner.on_create).push(Arc::new(move |session| Box::pin(hook(session))));
    }

    /// Ends a session now, as if its grace period had run out.
    pub fn close(&self, id: &SessionId) -> bool {
        self.inner.remove(id)
    }
}

impl Registry {
    fn remove(&self, id: &SessionId) -> bool {
        let Some(session) = lock(&self.by_id).remove(id) else {
            return false;
        };
        if let Some(name) = &session.inner.name {
            let mut by_name = lock(&self.by_name);
            if by_name.get(name) == Some(id) {
                by_name.remove(name);
            }
        }
        // The books first (the gauge, then the hooks: the correlator fails the calls waiting on
        // it, an app's client list drops it), then the streams end, so whoever sees the stream end
        // and looks finds the session gone. (A cluster's hook only starts the Redis delisting.)
        self.metrics.session_expired();
        let hooks = lock(&self.on_expire).clone();
        for hook in hooks {
            hook(id);
        }
        session.inner.closed.cancel();
        tracing::info!(session = ?id, name = session.inner.name.as_deref(), "session expired");
        true
    }
}

/// A handle to one session. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    id: SessionId,
    name: Option<String>,
    topic: Topic,
    dialect: Arc<dyn Dialect>,
    presence: Mutex<Presence>,
    closed: CancellationToken,
    registry: Weak<Registry>,
}

impl fmt::Debug for SessionInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("id", &self.id).field("name", &self.name).finish()
    }
}

#[derive(Debug, Default)]
struct Presence {
    connections: usize,
    /// Bumped whenever the last connection closes; an expiry timer only acts on its own.
    generation: u64,
    /// The last id handed to a connection, where a reconnect without `Last-Event-ID` resumes.
    delivered_through: u64,
}

impl Session {
    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.inner.id
    }

    /// The name given at creation, if any.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// How this session's client wants requests framed.
    pub fn dialect(&self) -> &Arc<dyn Dialect> {
        &self.inner.dialect
    }

    /// Sends an event to the client; it is queued if the client is away. Returns its id.
    pub fn send(&self, event: Event) -> Result<u64, SessionClosed> {
        if self.is_closed() {
            return Err(SessionClosed);
        }
        Ok(self.inner.topic.publish(event))
    }

    /// True once the session has expired or was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Completes when the session expires or is closed.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await;
    }

    /// How many connections are attached now.
    pub fn connections(&self) -> usize {
        lock(&self.inner.presence).connections
    }

    /// Attaches a connection. `last_event_id` is what the client sent; without one, the stream
    /// continues after the last frame handed to an earlier connection.
    pub fn connect(&self, last_event_id: Option<&str>) -> SessionConnection {
        let mut presence = lock(&self.inner.presence);
        presence.connections += 1;
        let subscription = match Resume::from_last_event_id(last_event_id) {
            Resume::Live => self.inner.topic.subscribe_after(presence.delivered_through),
            resume => self.inner.topic.subscribe(&resume),
        };
        drop(presence);
        tracing::info!(session = ?self.id(), name = self.name(), last_event_id, "session connected");
        let attached = Attached { session: self.clone(), handed: subscription.resume_point() };
        SessionConnection { attached, subscription }
    }

    /// Activity other than a stream (a client's POST, say) restarts the grace period of a session
    /// that has no connection, so a client that only POSTs keeps its session while it is active.
    pub fn touch(&self) {
        let mut presence = lock(&self.inner.presence);
        if presence.connections == 0 {
            presence.generation += 1;
            let generation = presence.generation;
            drop(presence);
            self.schedule_expiry(generation);
        }
    }

    /// Counts as a connection until dropped (for work that must not see its session expire, such
    /// as a request answered on a response of its own rather than on the session's stream).
    pub fn hold(&self) -> SessionHold {
        lock(&self.inner.presence).connections += 1;
        SessionHold { session: self.clone() }
    }

    fn disconnected(&self, delivered: Option<u64>) {
        let mut presence = lock(&self.inner.presence);
        presence.connections -= 1;
        if let Some(id) = delivered {
            presence.delivered_through = presence.delivered_through.max(id);
        }
        if presence.connections == 0 {
            presence.generation += 1;
            let generation = presence.generation;
            drop(presence);
            tracing::info!(session = ?self.id(), name = self.name(), "session disconnected");
            self.schedule_expiry(generation);
        }
    }

    /// Starts the grace timer for this generation of "no connections".
    fn schedule_expiry(&self, generation: u64) {
        let Some(registry) = self.inner.registry.upgrade() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let grace = registry.config.grace;
        let session = Arc::downgrade(&self.inner);
        let registry = Arc::downgrade(&registry);
        runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            let (Some(session), Some(registry)) = (session.upgrade(), registry.upgrade()) else {
                return;
            };
            let presence = lock(&session.presence);
            let idle = presence.connections == 0 && presence.generation == generation;
            drop(presence);
            if idle {
                registry.remove(&session.id);
            }
        });
    }
}

/// Keeps a session present; see [`Session::hold`].
#[derive(Debug)]
pub struct SessionHold {
    session: Session,
}

impl Drop for SessionHold {
    fn drop(&mut self) {
        self.session.disconnected(None);
    }
}

/// One open connection to a session. Dropping it detaches the connection.
#[derive(Debug)]
pub struct SessionConnection {
    attached: Attached,
    subscription: Subscription,
}

/// Counts a connection as attached until dropped, then notes how far it was handed frames, where
/// a reconnect without `Last-Event-ID` resumes. Apart from the subscription, so that it can stay
/// with a stream whose subscription moved onto the topic's sweeper.
#[derive(Debug)]
pub(crate) struct Attached {
    session: Session,
    handed: ResumePoint,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.session.disconnected(self.handed.get());
    }
}

impl SessionConnection {
    /// The next frames for this connection (see [`Subscription::next_batch`]); `None` once the
    /// session has closed.
    pub async fn next_batch(&mut self) -> Option<Bytes> {
        tokio::select! {
            biased;
            batch = self.subscription.next_batch() => batch,
            () = self.attached.session.closed() => None,
        }
    }

    /// The session this connection belongs to.
    pub fn session(&self) -> &Session {
        &self.attached.session
    }

    /// Its parts: the subscription, and what keeps the connection attached until dropped.
    pub(crate) fn into_parts(self) -> (Subscription, Attached) {
        (self.subscription, self.attached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::ApiError;

    #[tokio::test]
    async fn past_the_cap_no_session_is_made_until_one_leaves() {
        let config = SessionConfig { max_sessions: 2, ..SessionConfig::default() };
        let sessions = Sessions::new(config, Metrics::new());
        let dialect = || Arc::new(JsonRpcEvents);
        let first = sessions.create(Some("a"), dialect()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(sessions.create(None, dialect()).await.is_ok());

        let refused =
            sessions.create(Some("c"), dialect()).await.map(|_| ()).expect_err("past the cap");
        assert_eq!(refused, TooManySessions { limit: 2, retry_after: config.grace });
        assert!(sessions.by_name("c").is_none(), "a refused session takes no name");
        assert_eq!(sessions.len(), 2);
        let answer = ApiError::from(refused);
        assert_eq!((answer.status.as_u16(), answer.code), (503, "too_many_sessions"));
        assert_eq!(answer.retry_after, Some(30), "an idle session leaves within its grace");

        assert!(sessions.close(first.id()));
        assert!(sessions.create(Some("c"), dialect()).await.is_ok(), "room again once one left");

        let uncapped = SessionConfig { max_sessions: 0, ..SessionConfig::default() };
        let sessions = Sessions::new(uncapped, Metrics::new());
        for _ in 0..3 {
            assert!(sessions.create(None, dialect()).await.is_ok(), "0 is no cap");
        }
    }
}
