//! # sse-core: the SSE + POST pattern, once and correctly
//!
//! The server pushes to clients over a Server-Sent Events stream; clients answer with plain HTTP
//! POST; this crate matches each answer to its request. It knows nothing of any app.
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | SSE frames (encoded once, spec-exact), the spec's reader, JSON-RPC envelopes. No IO. |
//! | [`hub`] | topics, fan-out, replay ring, `Last-Event-ID` resume, explicit `resync` |
//! | [`session`] | session ids, per-session streams kept through short disconnects, expiry; the dialect a client speaks |
//! | [`rpc`] | the correlator: request id → waiting caller; timeouts, cancellation, typed failures |
//! | [`stream`] | a subscription as an HTTP response: headers, keep-alives, shutdown |
//! | [`edge`] | token auth, Host/Origin checks, rate limits, JSON errors; the connection loop and the socket takeover (skip on a first read) |
//! | [`client`] | reconnecting SSE client and a responder that answers requests |
//! | [`cluster`] | several instances as one through Redis: session directory, requests and answers routed to the right instance |
//! | [`metrics`] | Prometheus counters and histograms |
//! | [`sync`] | a mutex lock that survives poisoning |
//!
//! The modules depend on each other without circles (`core/tests/architecture.rs` checks it):
//! `wire`, `sync` and `metrics` at the bottom; `edge` on those; `hub`, then `session`, `stream`
//! and `rpc` on what is below them; `client` and `cluster` on top. Where a lower module needs
//! something from a higher one, the higher one hooks in (the cluster is the correlator's
//! [`Relay`](rpc::Relay) and a hook of [`Sessions::on_create`](session::Sessions::on_create)).
//!
//! [`Core`] bundles one of each for a server:
//!
//! ```
//! # async fn demo() -> Result<(), sse_core::session::TooManySessions> {
//! use std::time::Duration;
//! use sse_core::{Core, CoreConfig, session::JsonRpcEvents};
//!
//! let core = Core::new(CoreConfig::default());
//! let session = core.sessions.create(Some("worker-1"), std::sync::Arc::new(JsonRpcEvents)).await?;
//! // Some client connected to this session answers over POST; here nobody does:
//! let answer = core
//!     .correlator
//!     .request(&session, "analyze", None, Duration::from_millis(10))
//!     .await;
//! assert!(matches!(answer, Err(sse_core::rpc::RpcError::Timeout(_))));
//! # Ok(())
//! # }
//! ```

#![warn(clippy::too_many_lines)]

pub mod client;
pub mod cluster;
pub mod edge;
pub mod hub;
mod id_map;
pub mod metrics;
pub mod process_metrics;
pub mod ready;
pub mod rpc;
pub mod session;
pub mod stream;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use hub::{Hub, TopicConfig};
use metrics::Metrics;
use rpc::{Correlator, CorrelatorConfig};
use session::{SessionConfig, Sessions};
use stream::StreamConfig;

/// Sizes and timings for a [`Core`].
#[derive(Clone, Copy, Debug)]
pub struct CoreConfig {
    /// Topic ring and buffer sizes.
    pub topic: TopicConfig,
    /// Session grace period and stream sizes.
    pub session: SessionConfig,
    /// Correlator memory and circuit breaker.
    pub correlator: CorrelatorConfig,
    /// Keep-alive interval of every stream.
    pub keep_alive: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            topic: TopicConfig::default(),
            session: SessionConfig::default(),
            correlator: CorrelatorConfig::default(),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// One server's hub, sessions, correlator, stream settings and metrics. Cheap to clone: one
/// shared [`CoreParts`], reached through `Deref` (`core.sessions`, `core.hub`, ...).
///
/// Why one `Arc` around parts that are each shared already: axum clones a handler's state on
/// every request, and each part's own `Arc` is one more atomic increment and decrement there
/// (five per request before; one now).
#[derive(Clone, Debug)]
pub struct Core {
    parts: std::sync::Arc<CoreParts>,
}

/// What a [`Core`] holds.
#[derive(Debug)]
pub struct CoreParts {
    /// Named topics for broadcast.
    pub hub: Hub,
    /// Per-client sessions.
    pub sessions: Sessions,
    /// Request/answer matching.
    pub correlator: Correlator,
    /// Keep-alive and shutdown for streams. Shared rather than copied: streams keep it, and
    /// cloning a cancellation token takes a lock every clone shares.
    pub streams: std::sync::Arc<StreamConfig>,
    /// Every counter.
    pub metrics: Metrics,
    /// What `/readyz` checks.
    pub ready: ready::Readiness,
    /// The other instances, once this core [joined](Core::join) them.
    cluster: std::sync::OnceLock<cluster::Cluster>,
}

impl std::ops::Deref for Core {
    type Target = CoreParts;

    fn deref(&self) -> &CoreParts {
        &self.parts
    }
}

impl Core {
    /// A core with its own metrics registry and shutdown token.
    pub fn new(config: CoreConfig) -> Core {
        let metrics = Metrics::new();
        let sessions = Sessions::new(config.session, metrics.clone());
        let correlator = Correlator::new(config.correlator, metrics.clone());
        let forget = correlator.clone();
        sessions.on_expire(move |id| forget.forget_session(id));
        let parts = CoreParts {
            hub: Hub::new(config.topic, metrics.clone()),
            sessions,
            correlator,
            streams: std::sync::Arc::new(StreamConfig {
                keep_alive: config.keep_alive,
                shutdown: CancellationToken::new(),
            }),
            metrics,
            ready: ready::Readiness::default(),
            cluster: std::sync::OnceLock::new(),
        };
        Core { parts: std::sync::Arc::new(parts) }
    }

    /// Makes this core one instance of `cluster`: its sessions are listed in the cluster's
    /// directory, and requests and answers travel between instances. Call once, in a runtime.
    pub fn join(&self, cluster: &cluster::Cluster) {
        if self.parts.cluster.set(cluster.clone()).is_err() {
            return;
        }
        cluster.attach(&self.sessions, &self.correlator);
        let redis = cluster.clone();
        self.ready.register("redis", move || {
            let redis = redis.clone();
            async move { redis.ping().await }
        });
    }

    /// The cluster this core belongs to, if any.
    pub fn cluster(&self) -> Option<&cluster::Cluster> {
        self.parts.cluster.get()
    }

    /// Cancelling this token ends every open stream at once (graceful shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.streams.shutdown.clone()
    }
}
