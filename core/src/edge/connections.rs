//! Skip on a first read: this is the hand-written accept loop, there for hardening (deadlines,
//! descriptor budgets, accept errors survived) and for the socket takeover. What an app serves is
//! a plain axum `Router`; reading the apps needs nothing from here but [`serve`].
//!
//! Accepting connections and speaking HTTP on them.
//!
//! Our own loop over hyper rather than `axum::serve`, for what that one does not let us set:
//!
//! - **`TCP_NODELAY` on every connection.** An event is one small write; Nagle's algorithm would
//!   hold it back while an earlier one is still unacknowledged.
//! - **A deadline for the request head** ([`HEADER_TIMEOUT`]). A client that opens connections
//!   and trickles its headers a byte at a time (slowloris) is cut off instead of holding a
//!   descriptor for ever; so is one that connects and sends no request at all. Streams are not
//!   affected: the deadline covers the head only. The
//!   body has a deadline of its own ([`super::body_deadline`], 408 past it).
//! - **The same deadline for a connection with nothing to do** ([`super::idle`]): one that sends
//!   no request at all, or an HTTP/2 one with no request in progress (hyper closes idle HTTP/1
//!   keep-alive connections itself, but holds idle HTTP/2 ones for ever).
//! - **A budget for connections that have sent no request yet** ([`super::pending`]): capped per
//!   client address and in total, well below the open-file limit, the oldest closed to make room
//!   for a new one. Idle connections opened faster than the head deadline retires them no longer
//!   use up the descriptors, so new clients keep being accepted and answered. A connection that
//!   has sent a request is never closed for it.
//! - **Accept errors are survived.** Out of file descriptors, `accept` fails until a connection
//!   closes; the loop logs it, waits a moment rather than spin, and goes on serving.
//! - **Graceful shutdown**: stop accepting, let open requests finish (event streams end at once,
//!   as they watch the core's shutdown token), close idle keep-alive connections.
//! - **HTTPS** when given a rustls configuration: the handshake runs in the connection's own
//!   task, under the same deadline as the request head.
//! - **Sockets offered to event streams.** A plain-TCP connection is served through a
//!   [`TakeoverIo`], and every HTTP/1 response that asks for the socket
//!   ([`crate::stream::LiveResponse`]) is offered it, so its topic's sweeper can write to it
//!   directly ([`super::takeover`] explains why and how).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use super::body_deadline::{BODY_TIMEOUT, DeadlineBody};
use super::idle::{Activity, Exchange, ExchangeBody, Idle};
pub use super::pending::PendingCaps;
use super::pending::{Budget, Pending};
use super::takeover::{Takeover, TakeoverIo};
use crate::metrics::Metrics;

/// How long a client may take to send a request's head, by default.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections are served.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    /// How long a client may take to send a request's head (and, with TLS, its handshake), and
    /// how long a connection may have nothing in progress.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from when the server first waits.
    pub body_timeout: Duration,
    /// Serve HTTPS with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<ServerConfig>>,
    /// How many connections may be waiting for their first request head, in total and per
    /// client address; past a cap the oldest such connection is closed ([`super::pending`]). By
    /// default half the open-file limit, and half of that per address.
    pub pending: PendingCaps,
    /// Where connections closed for the pending budget are counted (`/metrics`), if anywhere.
    pub metrics: Option<Metrics>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            tls: None,
            pending: PendingCaps::default(),
            metrics: None,
        }
    }
}

/// How often an HTTP/2 connection is pinged, and how long its answer may take.
const H2_PING_EVERY: Duration = Duration::from_secs(20);

/// How long to wait after an accept error that will repeat until something changes (no free
/// descriptors or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What [`serve`] can serve: an axum `Router`, or a service around one (a layer put on the whole
/// router costs a request one call, where `Router::layer` puts it on every route, boxed).
pub trait App:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> App for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits for open connections to
/// finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
    shutdown: CancellationToken,
    settings: ConnectionSettings,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_timeout);
    // An HTTP/2 peer that stops answering pings (gone, or suspended with a stream open) is
    // dropped, as TCP alone would take many minutes to notice.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(H2_PING_EVERY);
    let connections = TaskTracker::new();
    let tls = settings.tls.map(TlsAcceptor::from);
    let metrics = settings.metrics.clone();
    let budget = Budget::new(settings.pending, settings.metrics);
    while let Some((socket, remote)) = next_connection(&listener, &shutdown, &metrics).await {
        let pending = budget.as_ref().map(|budget| budget.admit(remote.ip()));
        let builder = builder.clone();
        let app = app.clone();
        let tls = tls.clone();
        let deadline = settings.header_timeout;
        let body_timeout = settings.body_timeout;
        // A token of its own: every connection polling the server's one token would take its
        // shared locks at each wake of each connection.
        let shutdown = shutdown.child_token();
        connections.spawn(async move {
            let activity = Arc::new(Activity::default());
            let watch = Watch { activity: activity.clone(), within: deadline, shutdown, pending };
            let asked = watch.pending.clone();
            let Some(acceptor) = tls else {
                let (io, takeover) = TakeoverIo::new(socket);
                let service = tower::service_fn(move |request: http::Request<Incoming>| {
                    if let Some(pending) = &asked {
                        pending.request();
                    }
                    let takeover = Some(takeover.clone());
                    let exchange = activity.request(request.version());
                    let peer = Peer { remote, body_timeout, takeover, exchange };
                    handle(app.clone(), peer, request)
                });
                return serve_one(io, service, &builder, watch).await;
            };
            let service = tower::service_fn(move |request: http::Request<Incoming>| {
                if let Some(pending) = &asked {
                    pending.request();
                }
                let exchange = activity.request(request.version());
                let peer = Peer { remote, body_timeout, takeover: None, exchange };
                handle(app.clone(), peer, request)
            });
            let handshake = tokio::time::timeout(deadline, acceptor.accept(socket));
            let handshake = tokio::select! {
                done = handshake => done,
                cap = until_evicted(watch.pending.as_deref()) => {
                    if let Some(pending) = &watch.pending {
                        pending.count_eviction(cap);
                    }
                    return;
                }
            };
            match handshake {
                Ok(Ok(stream)) => serve_one(stream, service, &builder, watch).await,
                Ok(Err(error)) => tracing::debug!(%error, %remote, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake not finished in time"),
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// What [`handle`] knows of the connection a request came on.
struct Peer {
    remote: SocketAddr,
    body_timeout: Duration,
    /// Plain TCP only.
    takeover: Option<Takeover>,
    /// HTTP/2 only: in progress until the response body is done.
    exchange: Option<Exchange>,
}

/// What the task serving a connection watches besides the connection itself.
struct Watch {
    /// Told of requests by the connection's service ([`super::idle`]).
    activity: Arc<Activity>,
    /// How long the connection may have nothing in progress (the head deadline).
    within: Duration,
    /// The server's shutdown: the connection finishes what it has begun, and closes.
    shutdown: CancellationToken,
    /// Its place in the pending budget, when there is one.
    pending: Option<Arc<Pending>>,
}

/// Waits until the budget wants the connection closed; for ever when there is no budget.
/// The next connection accepted (counted in `metrics` and set to send without delay), or `None`
/// once `shutdown` is cancelled.
async fn next_connection(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    metrics: &Option<Metrics>,
) -> Option<(TcpStream, SocketAddr)> {
    let (socket, remote) = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => break accepted,
                Err(error) => survive_accept_error(&error).await,
            },
            () = shutdown.cancelled() => return None,
        }
    };
    if let Some(metrics) = metrics {
        metrics.connection_accepted();
    }
    if let Err(error) = socket.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
    Some((socket, remote))
}

async fn until_evicted(pending: Option<&Pending>) -> super::pending::Cap {
    match pending {
        Some(pending) => pending.evicted().await,
        None => std::future::pending().await,
    }
}

/// Answers one request with `app`: handlers can ask for the peer (what
/// `into_make_service_with_connect_info` does), the body has its deadline, and a response that
/// asks for the socket is offered it through the peer's takeover.
async fn handle(
    app: impl App,
    peer: Peer,
    mut request: http::Request<Incoming>,
) -> Result<Response, Infallible> {
    request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer.remote));
    let version = request.version();
    let request = request.map(|body| Body::new(DeadlineBody::new(body, peer.body_timeout)));
    let mut response = app.oneshot(request).await?;
    if let Some(takeover) = &peer.takeover {
        takeover.offer_to(version, &mut response);
    }
    if let Some(exchange) = peer.exchange {
        response = response.map(|body| Body::new(ExchangeBody::new(body, exchange)));
    }
    Ok(response)
}

/// Serves HTTP/1.1 or HTTP/2 (whichever the client speaks) on one connection until it closes,
/// until the server shuts down, or until it has had nothing to do for `watch.within`.
async fn serve_one<I, S>(io: I, service: S, builder: &Builder<TokioExecutor>, watch: Watch)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<http::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
        .into_owned();
    tokio::pin!(connection);
    let idle = super::idle::idle_for(&watch.activity, watch.within);
    tokio::pin!(idle);
    let evicted = until_evicted(watch.pending.as_deref());
    tokio::pin!(evicted);
    let shutdown = watch.shutdown.cancelled();
    tokio::pin!(shutdown);
    // Armed once GOAWAY has gone to an idle connection: a client that never acknowledges it (h2
    // closes only after the PING that follows it is answered) is dropped when this passes.
    let drain = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain);
    let (mut watching, mut closing, mut draining) = (true, false, false);
    let ended = loop {
        tokio::select! {
            // In this order, and without drawing a random one first: this loop is polled at
            // every wake of the connection, several times a request.
            biased;
            ended = &mut connection => break ended,
            // After the connection: a head already on the socket has just been read, and its
            // request spares the connection. Not polled once a request came (one load a wake).
            cap = &mut evicted, if watch.pending.as_ref().is_some_and(|p| !p.asked()) => {
                if let Some(pending) = watch.pending.as_ref().filter(|p| !p.asked()) {
                    pending.count_eviction(cap);
                    return;
                }
            }
            idle = &mut idle, if watching => match idle {
                Idle::NeverAsked => {
                    // Dropping the connection closes its socket.
                    tracing::debug!("no request within {:?} of connecting; closing", watch.within);
                    return;
                }
                Idle::AfterRequests if !closing => {
                    tracing::debug!("nothing in progress for {:?}; closing", watch.within);
                    connection.as_mut().graceful_shutdown();
                    drain.as_mut().reset(tokio::time::Instant::now() + watch.within);
                    (watching, closing, draining) = (false, true, true);
                }
                Idle::AfterRequests | Idle::LeftToHyper => watching = false,
            },
            () = &mut shutdown, if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut drain, if draining => {
                tracing::debug!("GOAWAY not acknowledged within {:?}; closing", watch.within);
                return;
            }
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Logs an accept error and, when it will repeat (descriptors or memory exhausted), waits a
/// moment so the loop does not spin. Errors about one connection (its client gave up before it
/// was accepted) need no wait.
async fn survive_accept_error(error: &std::io::Error) {
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        tracing::debug!(%error, "a connection was lost before it was accepted");
        return;
    }
    tracing::error!(%error, "cannot accept connections; retrying in {ACCEPT_BACKOFF:?}");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}
