//! Assembling and running a server: [`build`] turns a [`ServerConfig`] and an app into a
//! [`Server`] (the core, joined to its cluster, the token bound to the port and scheme, TLS, the
//! guards, the bound listener), and [`Server::serve`] serves it until shutdown, then drains.
//!
//! The binary and the tests start every server this way (the axum examples' `app()` apart from
//! `main`), so what the tests exercise is the assembly people run. A test that needs a tighter
//! deadline or another guard changes [`Server::connections`] or [`Server::guards`] between the
//! two steps. The routes every server adds are in `server/routes.rs`; the settings and the
//! helpers that read their flags in `server/options.rs`.

mod options;
mod routes;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use sse_core::cluster::Cluster;
use sse_core::edge::connections::{self, ConnectionSettings};
use sse_core::edge::origin::HostPolicy;
use sse_core::edge::rate::RateLimit;
use sse_core::edge::streams::StreamCap;
use sse_core::session::SessionConfig;
use sse_core::{Core, CoreConfig};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

pub use options::{
    DEFAULT_MAX_STREAMS_PER_CLIENT, ServerConfig, TlsFiles, given_token, parse_proxy, pending_caps,
};
pub use routes::{Guards, guarded_with_shared_routes};

/// The listen backlog. tokio's default (128) drops connection bursts; this machine allows 4096.
const BACKLOG: u32 = 4096;

/// How long requests still open after the shutdown signal may go on before serving stops anyway.
const DRAIN: Duration = Duration::from_secs(5);

/// Binds `addr` with a deep backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A server assembled and bound by [`build`], not serving yet.
#[derive(Debug)]
pub struct Server {
    /// The core the app was built on.
    pub core: Core,
    /// What guards the app's routes.
    pub guards: Guards,
    /// The connection loop's deadlines, TLS and pending-connection caps.
    pub connections: ConnectionSettings,
    app: Router,
    hosts: HostPolicy,
    listener: TcpListener,
    local: SocketAddr,
}

/// Assembles a server: the core (joined to the cluster of `config.redis`), TLS, the bound
/// listener, the guards, and the routes `app` makes on the core.
pub fn build(
    config: ServerConfig,
    app: impl FnOnce(Core) -> anyhow::Result<Router>,
) -> anyhow::Result<Server> {
    let core = core_for(&config)?;
    let tls = match &config.tls {
        Some(files) => Some(crate::tls::server_config(&files.cert, &files.key)?),
        None => None,
    };
    let addr = config.addr;
    let listener = bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let guards = guards_for(&config, &core, local, tls.is_some());
    let app = app(core.clone())?;
    let connections = ConnectionSettings {
        tls,
        pending: config.pending,
        metrics: Some(core.metrics.clone()),
        ..ConnectionSettings::default()
    };
    let hosts = HostPolicy::for_bind(addr, &config.allow_hosts, &config.allow_origins);
    let server = Server { core, guards, connections, app, hosts, listener, local };
    if let Some(cluster) = server.core.cluster() {
        advertise(cluster, config.advertise_url, &server.base_url(), local);
    }
    Ok(server)
}

/// The core with `config`'s stream and session settings, one instance of the cluster sharing
/// `config.redis` when given.
fn core_for(config: &ServerConfig) -> anyhow::Result<Core> {
    let defaults = CoreConfig::default();
    let session = SessionConfig { max_sessions: config.max_sessions, ..defaults.session };
    let core = Core::new(CoreConfig { keep_alive: config.keep_alive, session, ..defaults });
    if let Some(url) = &config.redis {
        let cluster = Cluster::connect(url).map_err(|e| anyhow::anyhow!("--redis {url}: {e}"))?;
        if let Some(token) = config.token.secret() {
            // Only instances holding the token can say where requests for them are forwarded.
            cluster.sign_addresses_with(token);
        }
        core.join(&cluster);
        tracing::info!(instance = cluster.instance(), "one instance of a cluster sharing {url}");
    }
    Ok(core)
}

/// The token bound to this server's cookie, the rate limit and the stream cap, the last two
/// reading the client's address through the trusted proxies.
fn guards_for(config: &ServerConfig, core: &Core, local: SocketAddr, https: bool) -> Guards {
    let token = if https { config.token.clone().over_https() } else { config.token.clone() };
    // The port bound, not the one asked for (which may be 0), names the token's cookie.
    let token = token.on_port(config.cookie_port.unwrap_or(local.port()));
    if core.cluster().is_some() && token.is_required() && config.cookie_port.is_none() {
        tracing::warn!(
            "--redis without --cookie-port: a browser's login holds on this instance only; give \
             every instance the same --cookie-port"
        );
    }
    let proxies = &config.proxies;
    let rate = RateLimit::new(config.rate_limit, config.rate_limit.saturating_mul(2))
        .map(|rate| rate.behind(proxies.clone()));
    if let Some(rate) = &rate {
        rate.forget_idle_every_minute(core.shutdown_token());
    }
    let streams = StreamCap::new(config.max_streams_per_client)
        .map(|cap| cap.behind(proxies.clone()).sparing_loopback());
    Guards { token, rate, streams }
}

/// Tells the cluster where the other instances reach this one: `advertise_url`, else `own`.
fn advertise(cluster: &Cluster, advertise_url: Option<String>, own: &str, local: SocketAddr) {
    if advertise_url.is_none() && local.ip().is_unspecified() {
        tracing::warn!(
            "--redis with --addr {local}: give --advertise-url so other instances can reach this \
             one"
        );
    }
    let url = advertise_url.unwrap_or_else(|| own.to_owned());
    // Not awaited: a Redis that is down must not hold up the start.
    let cluster = cluster.clone();
    tokio::spawn(async move { cluster.advertise(&url).await });
}

impl Server {
    /// The address bound (the port chosen when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `http://` or `https://` and the address bound.
    pub fn base_url(&self) -> String {
        let scheme = if self.connections.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local)
    }

    /// The link to `home` on this server, carrying the token when the app's routes need one
    /// (opening it sets the token's cookie).
    pub fn link(&self, home: &str) -> String {
        match self.guards.token.secret() {
            Some(secret) => format!("{}{home}?token={secret}", self.base_url()),
            None => format!("{}{home}", self.base_url()),
        }
    }

    /// Says on stdout that `what` listens here, and the link to `home` to open.
    pub fn announce(&self, what: &str, home: &str) {
        // Not `println!`: a server must not die because whoever started it closed its stdout.
        let (base, link) = (self.base_url(), self.link(home));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "sse-apps: {what} listening on {base}\n  open {link}");
        let _ = out.flush();
    }

    /// Serves until `shutdown` is cancelled: open event streams end at once (the core's own
    /// shutdown token is cancelled with it), and requests still open are given `DRAIN` (5 s) to
    /// finish.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let streams = self.core.shutdown_token();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            streams.cancel();
        });
        let app = guarded_with_shared_routes(self.app, &self.core, self.hosts, self.guards);
        let served = connections::serve(self.listener, app, shutdown.clone(), self.connections);
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        };
        tokio::select! {
            result = served => result?,
            () = deadline => tracing::warn!("requests still open 5 s after the signal; exiting anyway"),
        }
        Ok(())
    }
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        let signal = tokio::select! {
            _ = ctrl_c => "SIGINT",
            () = term => "SIGTERM",
        };
        // Cancelled first: logging can fail (a closed stderr) and must not stop the shutdown.
        token.cancel();
        tracing::info!("{signal}: shutting down");
    });
}
