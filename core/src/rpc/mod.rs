//! The correlator: sends a request down a session's stream and hands the caller the answer that
//! comes back in a POST.
//!
//! [`Correlator`] keeps a map from request id to the waiting caller's `oneshot` sender, plus a
//! bounded record of recently finished requests. That record is what lets every wrong answer get
//! its own status instead of a generic 404:
//!
//! | the POSTed answer…                        | [`AnswerError`] | HTTP |
//! |-------------------------------------------|-----------------|------|
//! | names an id nobody is waiting for         | `Unknown`       | 404  |
//! | comes from a session other than the one asked | `WrongSession` | 403 |
//! | repeats an answer already delivered (first wins) | `Duplicate` | 409 |
//! | arrives after the deadline or after the caller gave up | `Late` | 410 |
//!
//! A caller that stops waiting, by timeout or by dropping the future, removes its entry and the
//! client is told with a `notifications/cancelled` notification (the MCP convention), so it can
//! stop working on it. Ids are unique per correlator, so concurrent requests to one session can
//! never swap answers.
//!
//! Both maps are split into [`SHARDS`] shards by request id, each behind its own lock, so callers
//! and answers for different requests rarely wait on each other when the runtime has several
//! threads; everything about one request lives in one shard, so each step still takes a single
//! lock. Circuit breakers have their own lock, skipped entirely while no session has one.
//!
//! Every request, to a session here or to one another instance holds, goes through the same
//! steps ([`Correlator::request_via`] and [`Correlator::request_remote`] differ only in how the
//! request is delivered and how its client hears of a cancellation). In a cluster the correlator
//! reaches the other instances through a [`Relay`] that the cluster installs when it attaches;
//! the correlator itself never names the cluster, so the cluster can depend on it and not the
//! other way round. [`Correlator::answer`] is what every handler of a POSTed answer calls: it
//! delivers here when the caller waits here, and otherwise through the relay.

mod error;
pub mod http;

pub use error::{AnswerError, RpcError};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

// tokio's clock, which tests can pause and move; the same as std's otherwise.
use tokio::time::Instant;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::id_map::{IdHasher, IdMap};
use crate::metrics::Metrics;
use crate::session::{Session, SessionId};
use crate::sync::lock;
use crate::wire::jsonrpc::{ErrorObject, Id, Request, Response};

/// A session another instance holds (found through [`crate::cluster::Cluster::locate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSession {
    /// Its id.
    pub id: SessionId,
    /// The instance that holds its stream.
    pub instance: String,
}

/// What a correlator needs from the other instances when this one is part of a cluster. The
/// cluster installs itself as the relay ([`Correlator::relay_through`]), the way it hooks into
/// sessions with [`Sessions::on_create`](crate::session::Sessions::on_create): the correlator
/// only knows that some callers and sessions are elsewhere, never how they are reached.
pub trait Relay: Send + Sync + 'static {
    /// Claims request id `id` for this instance for `ttl`: `Some(false)` if another instance
    /// holds it, `None` if that cannot be known now (the request then stays local).
    fn claim_id<'a>(&'a self, id: &'a Id, ttl: Duration) -> BoxFuture<'a, Option<bool>>;

    /// Sends `request` down `to`'s stream on its instance; true once that instance says it did.
    fn deliver<'a>(&'a self, to: &'a RemoteSession, request: &'a Request) -> BoxFuture<'a, bool>;

    /// Tells `to`'s client, on its instance, that request `id` is cancelled. Called from `Drop`
    /// too, so it must not wait: the message goes on its own task.
    fn cancel(&self, to: &RemoteSession, id: &Id, reason: &str);

    /// Hands an answer nobody here waits for to the instance whose caller waits for it; that
    /// instance's verdict (`Unknown` if no instance waits, `Unreachable` if it cannot be asked).
    fn pass_answer<'a>(
        &'a self,
        from: &'a SessionId,
        response: Response,
    ) -> BoxFuture<'a, Result<(), AnswerError>>;
}

/// A successful answer, with the id the request travelled under.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    /// The request id.
    pub id: Id,
    /// The client's result.
    pub result: Value,
}

/// Tuning for the correlator.
#[derive(Clone, Copy, Debug)]
pub struct CorrelatorConfig {
    /// How long finished requests are remembered (for 409/410 instead of 404).
    pub remember_finished: Duration,
    /// The most finished requests remembered at once (each of the [`SHARDS`] shards keeps its
    /// share, rounded up).
    pub max_finished: usize,
    /// After this many timeouts in a row, a session's circuit opens (0 turns breaking off).
    pub breaker_threshold: u32,
    /// How long an open circuit fails calls fast before one probe is let through.
    pub breaker_cooldown: Duration,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            remember_finished: Duration::from_secs(600),
            max_finished: 100_000,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// Matches answers to requests. Cheap to clone (shared).
#[derive(Clone)]
pub struct Correlator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Correlator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Correlator").field("pending", &self.pending_count()).finish()
    }
}

/// How many shards the request maps are split into.
pub const SHARDS: usize = 16;

struct Inner {
    next_id: AtomicI64,
    shards: Box<[Mutex<Shard>]>,
    /// Picks a request's shard (any hash works, as long as it is the same one every time).
    shard_of: IdHasher,
    breakers: Mutex<HashMap<SessionId, Breaker>>,
    /// How many sessions have a breaker entry; while none has, the breaker lock is not taken.
    breaker_count: AtomicUsize,
    config: CorrelatorConfig,
    metrics: Metrics,
    /// The other instances, when this one is part of a cluster.
    relay: OnceLock<Arc<dyn Relay>>,
}

impl Inner {
    fn shard(&self, id: &Id) -> &Mutex<Shard> {
        let index = self.shard_of.hash_one(id) as usize % self.shards.len();
        &self.shards[index]
    }
}

/// The requests whose ids fall in one shard.
#[derive(Default)]
struct Shard {
    pending: IdMap<Id, Waiting>,
    finished: IdMap<Id, Finished>,
    /// Finished ids in the order they finished, for pruning.
    finished_order: VecDeque<(Id, Instant)>,
}

struct Waiting {
    session: SessionId,
    reply: oneshot::Sender<Result<Value, ErrorObject>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    Gone,
}

struct Finished {
    session: SessionId,
    outcome: Outcome,
}

/// Consecutive timeouts of one session.
struct Breaker {
    timeouts: u32,
    open_until: Option<Instant>,
    /// The latest timeout, for forgetting sessions that have gone quiet (see
    /// [`Correlator::breaker_timeout`]).
    last_timeout: Instant,
}

/// A closed circuit whose last timeout is this many cooldowns old is forgotten.
const BREAKER_MEMORY: u32 = 10;

impl Shard {
    /// Records a finished request, forgetting the oldest ones beyond the shard's share of
    /// `max_finished` or older than `remember_finished`.
    fn finish(&mut self, id: Id, session: SessionId, outcome: Outcome, config: &CorrelatorConfig) {
        let now = Instant::now();
        let max = config.max_finished.div_ceil(SHARDS);
        while let Some((oldest, at)) = self.finished_order.front() {
            let too_old = now.duration_since(*at) > config.remember_finished;
            if !too_old && self.finished_order.len() < max {
                break;
            }
            self.finished.remove(oldest);
            self.finished_order.pop_front();
        }
        self.finished.insert(id.clone(), Finished { session, outcome });
        self.finished_order.push_back((id, now));
    }
}

/// Where a correlator's request ids start: microseconds since 1970. A client that answers a
/// request from before a server restart (a Go-format client reconnects under the same name, so
/// even the session would match) can then never hit a new request that reused the number. The
/// values stay below 2^53, so JavaScript clients read them exactly.
fn first_request_id() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| i64::try_from(d.as_micros()).unwrap_or(1))
}

impl Correlator {
    /// A correlator with nothing pending.
    pub fn new(config: CorrelatorConfig, metrics: Metrics) -> Correlator {
        Correlator {
            inner: Arc::new(Inner {
                next_id: AtomicI64::new(first_request_id()),
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                shard_of: IdHasher::default(),
                breakers: Mutex::default(),
                breaker_count: AtomicUsize::new(0),
                config,
                metrics,
                relay: OnceLock::new(),
            }),
        }
    }

    /// Makes this correlator one of several: request ids are claimed through `relay`, requests
    /// reach sessions other instances hold, and answers reach callers waiting elsewhere. The
    /// first relay stays; later ones are ignored.
    pub fn relay_through(&self, relay: Arc<dyn Relay>) {
        let _ = self.inner.relay.set(relay);
    }

    /// A new request id, unique across the cluster when there is one (claimed there for as long
    /// as its answer may come).
    async fn new_id(&self, deadline: Duration) -> Id {
        loop {
            let id = Id::Number(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
            let Some(relay) = self.inner.relay.get() else { return id };
            let ttl = deadline + self.inner.config.remember_finished;
            if relay.claim_id(&id, ttl).await != Some(false) {
                return id;
            }
        }
    }

    /// Sends `method(params)` to `session` and waits up to `deadline` for the answer.
    ///
    /// Dropping the returned future cancels the request: its entry is removed and the client is
    /// sent a cancellation notification.
    pub async fn request(
        &self,
        session: &Session,
        method: &str,
        params: Option<Value>,
        deadline: Duration,
    ) -> Result<Answered, RpcError> {
        let down_the_stream =
            |request: &Request| session.send(session.dialect().request(request)).is_ok();
        self.request_via(session, method, params, deadline, down_the_stream).await
    }

    /// As [`request`](Self::request), but the request travels by `deliver` (for instance on the
    /// response stream of the client request it belongs to, as MCP's Streamable HTTP prefers);
    /// the answer still comes back through [`answer`](Self::answer) for `session`. `deliver`
    /// returns false when it could not send.
    pub async fn request_via(
        &self,
        session: &Session,
        method: &str,
        params: Option<Value>,
        deadline: Duration,
        deliver: impl FnOnce(&Request) -> bool,
    ) -> Result<Answered, RpcError> {
        let target = Target::Local(session);
        let deliver = |request: Request| std::future::ready(deliver(&request));
        self.send(target, method, params, deadline, deliver, session.closed()).await
    }

    /// Sends `method(params)` to a session another instance holds (see [`crate::cluster`]) and
    /// waits up to `deadline` for the answer, which may be POSTed to any instance.
    pub async fn request_remote(
        &self,
        session: &RemoteSession,
        method: &str,
        params: Option<Value>,
        deadline: Duration,
    ) -> Result<Answered, RpcError> {
        let Some(relay) = self.inner.relay.get() else {
            return Err(RpcError::SessionClosed);
        };
        let target = Target::Remote(session, relay.as_ref());
        let deliver = |request: Request| async move { relay.deliver(session, &request).await };
        // The session's expiry is not seen from here: the deadline bounds the wait.
        self.send(target, method, params, deadline, deliver, std::future::pending()).await
    }

    /// What every request does: a new id, an entry for its answer, the request sent by
    /// `deliver` (false: it could not be), then the wait for the answer until `deadline` or
    /// `closed`.
    async fn send<D: Future<Output = bool>>(
        &self,
        target: Target<'_>,
        method: &str,
        params: Option<Value>,
        deadline: Duration,
        deliver: impl FnOnce(Request) -> D,
        closed: impl Future<Output = ()>,
    ) -> Result<Answered, RpcError> {
        self.check_breaker(target.id())?;
        let id = self.new_id(deadline).await;
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting { session: target.id().clone(), reply };
        lock(self.inner.shard(&id)).pending.insert(id.clone(), waiting);
        self.inner.metrics.rpc_sent();
        let started = Instant::now();
        let mut guard = PendingGuard { correlator: self, target, id: Some(id.clone()), started };

        if !deliver(Request::new(id.clone(), method, params)).await {
            guard.finish("session_closed", None);
            return Err(RpcError::SessionClosed);
        }
        // Leaves the guard armed: from here, dropping this future cancels the request.
        match guard.target {
            Target::Local(session) => {
                tracing::info!(session = ?session.id(), request = %id, method, "request sent");
            }
            Target::Remote(session, _) => {
                tracing::info!(session = ?session.id, instance = %session.instance, request = %id, method, "request sent to another instance");
            }
        }
        self.await_answer(guard, answer, deadline, closed).await
    }

    /// Waits for the answer of the request `guard` holds, until `deadline` or `closed`.
    async fn await_answer(
        &self,
        mut guard: PendingGuard<'_>,
        answer: oneshot::Receiver<Result<Value, ErrorObject>>,
        deadline: Duration,
        closed: impl std::future::Future<Output = ()>,
    ) -> Result<Answered, RpcError> {
        let Some(id) = guard.id.clone() else { return Err(RpcError::SessionClosed) };
        let session = guard.target.id().clone();
        let started = guard.started;
        let mut answer = answer;
        let early = tokio::select! {
            received = &mut answer => Ok(received),
            () = tokio::time::sleep(deadline) => Err(RpcError::Timeout(deadline)),
            () = closed => Err(RpcError::SessionClosed),
        };
        let received = match early {
            Ok(received) => received,
            Err(error) => {
                let (outcome, notify) = match error {
                    RpcError::Timeout(_) => ("timeout", Some("timeout")),
                    _ => ("session_closed", None),
                };
                if guard.finish(outcome, notify) {
                    if outcome == "timeout" {
                        self.breaker_timeout(&session);
                    }
                    tracing::info!(session = ?session, request = %id, outcome, "request ended without answer");
                    return Err(error);
                }
                // The answer slipped in just before we gave up: the answer path sent it before
                // taking the entry, so it is ready now, and it wins.
                answer.await
            }
        };
        guard.id = None;
        self.breaker_success(&session);
        let seconds = started.elapsed().as_secs_f64();
        match received {
            Ok(Ok(result)) => {
                self.inner.metrics.rpc_finished("answered", seconds);
                Ok(Answered { id, result })
            }
            Ok(Err(error)) => {
                self.inner.metrics.rpc_finished("error", seconds);
                Err(RpcError::Remote(error))
            }
            Err(_) => {
                self.inner.metrics.rpc_finished("session_closed", seconds);
                Err(RpcError::SessionClosed)
            }
        }
    }

    /// Delivers an answer POSTed by session `from` to the caller waiting for it, wherever that
    /// is: this is the one every handler of answers calls. Here, or (in a cluster) on the
    /// instance whose caller waits; its verdict is the result (`Unreachable` if it cannot be
    /// reached, so the client sends it again rather than believe it delivered).
    pub async fn answer(&self, from: &SessionId, response: Response) -> Result<(), AnswerError> {
        let Some(relay) = self.inner.relay.get() else {
            return self.answer_here(from, response);
        };
        // Kept for the relay: `try_answer` consumes the response, and most answers are local.
        let unclaimed = response.clone();
        let result = match self.try_answer(from, response) {
            Err(AnswerError::Unknown) => relay.pass_answer(from, unclaimed).await,
            result => result,
        };
        if let Err(error) = &result {
            self.inner.metrics.answer_rejected(error.code());
        }
        result
    }

    /// As [`answer`](Self::answer), but only for callers waiting on this instance: an answer
    /// for a caller elsewhere is `Unknown`. For what cannot be waited for elsewhere (the cluster
    /// handing over an answer that was sent here, an app that routes answers to their owner).
    pub fn answer_here(&self, from: &SessionId, response: Response) -> Result<(), AnswerError> {
        let result = self.try_answer(from, response);
        if let Err(error) = &result {
            self.inner.metrics.answer_rejected(error.code());
        }
        result
    }

    fn try_answer(&self, from: &SessionId, response: Response) -> Result<(), AnswerError> {
        let Response { id, outcome } = response;
        let mut state = lock(self.inner.shard(&id));
        if let Some(waiting) = state.pending.get(&id) {
            if &waiting.session != from {
                return Err(AnswerError::WrongSession);
            }
            let Some(waiting) = state.pending.remove(&id) else {
                return Err(AnswerError::Unknown);
            };
            let delivered = waiting.reply.send(outcome).is_ok();
            let outcome = if delivered { Outcome::Answered } else { Outcome::Gone };
            state.finish(id.clone(), from.clone(), outcome, &self.inner.config);
            drop(state);
            tracing::info!(session = ?from, request = %id, delivered, "answer received");
            return if delivered { Ok(()) } else { Err(AnswerError::Late) };
        }
        match state.finished.get(&id) {
            None => Err(AnswerError::Unknown),
            Some(done) if &done.session != from => Err(AnswerError::WrongSession),
            Some(done) if done.outcome == Outcome::Answered => Err(AnswerError::Duplicate),
            Some(_) => Err(AnswerError::Late),
        }
    }

    /// How many requests are waiting for an answer.
    pub fn pending_count(&self) -> usize {
        self.inner.shards.iter().map(|shard| lock(shard).pending.len()).sum()
    }

    /// Forgets everything kept about `session` (its finished requests and breaker). Call when a
    /// session expires, so that nothing of it stays in memory.
    pub fn forget_session(&self, session: &SessionId) {
        for shard in &self.inner.shards {
            let mut shard = lock(shard);
            let Shard { finished, finished_order, .. } = &mut *shard;
            finished.retain(|_, done| &done.session != session);
            finished_order.retain(|(id, _)| finished.contains_key(id));
        }
        self.breaker_success(session);
    }

    /// How many finished requests are remembered (bounded by the config).
    pub fn finished_count(&self) -> usize {
        self.inner.shards.iter().map(|shard| lock(shard).finished.len()).sum()
    }

    /// Whether `session`'s circuit is open now (its recent requests all timed out), and for how
    /// much longer.
    pub fn circuit_open_for(&self, session: &SessionId) -> Option<Duration> {
        if self.inner.breaker_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let until = lock(&self.inner.breakers).get(session)?.open_until?;
        until.checked_duration_since(Instant::now())
    }

    fn check_breaker(&self, session: &SessionId) -> Result<(), RpcError> {
        if self.inner.breaker_count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let mut breakers = lock(&self.inner.breakers);
        let Some(breaker) = breakers.get_mut(session) else {
            return Ok(());
        };
        match breaker.open_until {
            Some(until) if Instant::now() < until => {
                Err(RpcError::CircuitOpen(until - Instant::now()))
            }
            Some(_) => {
                // Half-open: let this call through as the probe; one more timeout re-opens.
                breaker.open_until = None;
                breaker.timeouts = self.inner.config.breaker_threshold.saturating_sub(1);
                self.publish_circuits(&breakers);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn breaker_timeout(&self, session: &SessionId) {
        let threshold = self.inner.config.breaker_threshold;
        if threshold == 0 {
            return;
        }
        let now = Instant::now();
        let mut breakers = lock(&self.inner.breakers);
        // An entry goes when its session answers or expires here; a session on another instance
        // never expires here, so closed circuits quiet for long are forgotten (a timeout is
        // rare, and this runs only on one).
        let memory = self.inner.config.breaker_cooldown * BREAKER_MEMORY;
        breakers.retain(|_, b| {
            b.open_until.is_some_and(|until| until > now) || now - b.last_timeout < memory
        });
        let breaker = breakers.entry(session.clone()).or_insert(Breaker {
            timeouts: 0,
            open_until: None,
            last_timeout: now,
        });
        breaker.timeouts += 1;
        breaker.last_timeout = now;
        if breaker.timeouts >= threshold {
            breaker.open_until = Some(now + self.inner.config.breaker_cooldown);
            tracing::warn!(session = ?session, timeouts = breaker.timeouts, "circuit opened");
        }
        self.inner.breaker_count.store(breakers.len(), Ordering::Release);
        self.publish_circuits(&breakers);
    }

    /// Forgets `session`'s timeouts (it answered, or it is gone).
    fn breaker_success(&self, session: &SessionId) {
        if self.inner.breaker_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut breakers = lock(&self.inner.breakers);
        if breakers.remove(session).is_some() {
            self.inner.breaker_count.store(breakers.len(), Ordering::Release);
            self.publish_circuits(&breakers);
        }
    }

    /// Shows how many circuits are open in `/metrics`.
    fn publish_circuits(&self, breakers: &HashMap<SessionId, Breaker>) {
        let open = breakers.values().filter(|b| b.open_until.is_some()).count();
        self.inner.metrics.circuits_open(open);
    }
}

/// Removes a request's entry if its caller stops waiting for any reason (including the future
/// being dropped), and tells the client.
struct PendingGuard<'a> {
    correlator: &'a Correlator,
    target: Target<'a>,
    id: Option<Id>,
    started: Instant,
}

/// Where a request went: a session here, or one another instance holds.
enum Target<'a> {
    Local(&'a Session),
    Remote(&'a RemoteSession, &'a dyn Relay),
}

impl Target<'_> {
    fn id(&self) -> &SessionId {
        match self {
            Target::Local(session) => session.id(),
            Target::Remote(session, _) => &session.id,
        }
    }

    /// Tells the client that request `id` is cancelled, if its protocol can say so.
    fn cancel(&self, id: &Id, reason: &str) {
        match self {
            Target::Local(session) => {
                if let Some(event) = session.dialect().cancelled(id, reason) {
                    let _ = session.send(event);
                }
            }
            Target::Remote(session, relay) => relay.cancel(session, id, reason),
        }
    }
}

impl PendingGuard<'_> {
    /// Marks the request finished without an answer; `notify` is the reason told to the client.
    /// Returns false if an answer had already taken the entry.
    fn finish(&mut self, outcome: &'static str, notify: Option<&str>) -> bool {
        let Some(id) = self.id.take() else {
            return false;
        };
        let inner = &self.correlator.inner;
        let mut state = lock(inner.shard(&id));
        if state.pending.remove(&id).is_none() {
            return false; // answered in the meantime; the answer path finished it
        }
        if notify.is_some() {
            state.finish(id.clone(), self.target.id().clone(), Outcome::Gone, &inner.config);
        }
        drop(state);
        inner.metrics.rpc_finished(outcome, self.started.elapsed().as_secs_f64());
        if let Some(reason) = notify {
            self.target.cancel(&id, reason);
        }
        true
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.id.is_some() {
            tracing::info!(session = ?self.target.id(), "request cancelled by its caller");
            self.finish("cancelled", Some("the caller stopped waiting"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn closed_circuits_quiet_for_ten_cooldowns_are_forgotten() {
        let config = CorrelatorConfig { breaker_threshold: 2, ..CorrelatorConfig::default() };
        let cooldown = config.breaker_cooldown;
        let correlator = Correlator::new(config, Metrics::new());
        let (once, twice) = (SessionId::from("once"), SessionId::from("twice"));
        correlator.breaker_timeout(&once);
        correlator.breaker_timeout(&twice);
        correlator.breaker_timeout(&twice); // open now, for one cooldown
        let held = || lock(&correlator.inner.breakers).len();
        assert_eq!(held(), 2);

        tokio::time::advance(cooldown * BREAKER_MEMORY + Duration::from_secs(1)).await;
        // Any timeout prunes: `once` has been quiet for ten cooldowns and goes, as does `twice`,
        // whose circuit has closed since; only the session that just timed out is held.
        let other = SessionId::from("other");
        correlator.breaker_timeout(&other);
        assert_eq!(held(), 1);
        assert_eq!(correlator.inner.breaker_count.load(Ordering::Acquire), 1);
        assert!(lock(&correlator.inner.breakers).contains_key(&other));
    }
}
