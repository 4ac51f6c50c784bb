//! The flags every server subcommand takes, and what each server program is (its name, default
//! port, home page, and whether it can change the machine), turned into a [`ServerConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sse_core::edge::auth::Token;
use sse_core::edge::forwarded::{ForwardedHeader, TrustedProxies};

use crate::server::{self, ServerConfig, TlsFiles};

/// `--forwarded-header`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ForwardedHeaderName {
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`).
    XForwardedFor,
    /// `Forwarded: for=…` (RFC 7239).
    Forwarded,
}

/// The flags every server takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:8080; basic-server 127.0.0.1:8081; bidi-server
    /// 127.0.0.1:8082]
    #[arg(help_heading = "Listening", long, env = "SSE_APPS_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Require this token (Bearer header, cookie, or ?token= link) on the app's endpoints; on
    /// the command line every local user can read it (ps): prefer --token-file or the env var
    #[arg(help_heading = "Access", long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Require the token written on this file's first line (instead of --token)
    #[arg(
        help_heading = "Access",
        long,
        env = "SSE_APPS_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// Where apps keep their data (apps that store nothing ignore it) [default:
    /// $XDG_DATA_HOME/sse-apps, else ~/.local/share/sse-apps]
    #[arg(help_heading = "Data", long, env = "SSE_APPS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Also answer to this Host name (repeatable); a loopback server answers only loopback names
    #[arg(help_heading = "Access", long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Also accept state-changing requests from this Origin (repeatable)
    #[arg(help_heading = "Access", long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Limit each client address to this many requests a second (bursts of twice that); 0 is off
    #[arg(
        help_heading = "Limits",
        long,
        env = "SSE_APPS_RATE_LIMIT",
        default_value_t = 0,
        value_name = "PER_SECOND"
    )]
    pub rate_limit: u32,
    /// No stream stays silent longer than this: quiet ones get a keep-alive comment
    #[arg(help_heading = "Limits", long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub keep_alive: Duration,
    /// At most this many open event streams per client address; past it the oldest closes
    /// (0: no cap). Loopback clients (this machine's own programs) are not counted
    #[arg(
        help_heading = "Limits",
        long,
        env = "SSE_APPS_MAX_STREAMS_PER_CLIENT",
        default_value_t = server::DEFAULT_MAX_STREAMS_PER_CLIENT
    )]
    pub max_streams_per_client: usize,
    /// A reverse proxy (address or CIDR, repeatable) whose Forwarded / X-Forwarded-For headers
    /// name the client, for the rate limit and the stream cap; from anyone else they are ignored
    #[arg(help_heading = "Limits", long = "trusted-proxy", env = "SSE_APPS_TRUSTED_PROXY", value_delimiter = ',', value_name = "CIDR", value_parser = server::parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header the trusted proxies write (only that one is read: a proxy passes the other on
    /// from the client)
    #[arg(help_heading = "Limits", long, env = "SSE_APPS_FORWARDED_HEADER", value_enum, default_value_t = ForwardedHeaderName::XForwardedFor)]
    pub forwarded_header: ForwardedHeaderName,
    /// At most this many sessions at once (bidi and MCP clients; one lingers 30 s after its
    /// stream closes); past it new ones get 503 too_many_sessions (0: no cap)
    #[arg(help_heading = "Limits", long, env = "SSE_APPS_MAX_SESSIONS", default_value_t = sse_core::session::MAX_SESSIONS)]
    pub max_sessions: usize,
    /// Serve HTTPS with this certificate chain (PEM, leaf first; needs --tls-key)
    #[arg(
        help_heading = "Listening",
        long,
        env = "SSE_APPS_TLS_CERT",
        requires = "tls_key",
        value_name = "PEM"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(
        help_heading = "Listening",
        long,
        env = "SSE_APPS_TLS_KEY",
        requires = "tls_cert",
        value_name = "PEM"
    )]
    pub tls_key: Option<PathBuf>,
    /// Run as one of several instances sharing this Redis (redis://HOST:PORT): the chat's
    /// history and live messages, bidi sessions, requests and answers reach across instances
    /// (give every instance the same --token)
    #[arg(help_heading = "Cluster", long, env = "SSE_APPS_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// With --redis: the URL at which the other instances reach this one (default: the address
    /// it listens on); they forward requests for its exec runs there
    #[arg(
        help_heading = "Cluster",
        long,
        env = "SSE_APPS_ADVERTISE_URL",
        value_name = "URL",
        requires = "redis"
    )]
    pub advertise_url: Option<String>,
    /// Name the token's cookie for this port, not the one listened on: the port browsers reach
    /// the server at behind a proxy; the same on every instance of a cluster, so that one login
    /// holds on all of them
    #[arg(help_heading = "Access", long, env = "SSE_APPS_COOKIE_PORT", value_name = "PORT")]
    pub cookie_port: Option<u16>,
    /// At most this many connections that have sent no request yet; past it the oldest of them
    /// closes (0: no cap) [default: half the open-file limit]
    #[arg(help_heading = "Limits", long, env = "SSE_APPS_MAX_PENDING", value_name = "N")]
    pub max_pending: Option<usize>,
    /// At most this many of them per client address; past it that address's oldest closes (0: no
    /// cap) [default: half of --max-pending]
    #[arg(
        help_heading = "Limits",
        long,
        env = "SSE_APPS_MAX_PENDING_PER_CLIENT",
        value_name = "N"
    )]
    pub max_pending_per_client: Option<usize>,
}

impl ServerArgs {
    /// `--data-dir`, else the user's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(crate::shared::data_dir::default_dir)
    }

    /// The server `program` runs, as these flags set it. Fails when `--token-file` holds no
    /// token.
    pub fn config(self, program: &Program) -> anyhow::Result<ServerConfig> {
        let given = server::given_token(self.token.as_deref(), self.token_file.as_deref())?;
        // Servers whose apps can change the machine always need a token: one is made up if none
        // was given, and the link printed at start carries it.
        let token = match given {
            Some(secret) => Token::required(secret),
            None if program.changes_machine => Token::required(Token::generate()),
            None => Token::open(),
        };
        let header = match self.forwarded_header {
            ForwardedHeaderName::XForwardedFor => ForwardedHeader::XForwardedFor,
            ForwardedHeaderName::Forwarded => ForwardedHeader::Forwarded,
        };
        Ok(ServerConfig {
            addr: self.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], program.default_port))),
            token,
            allow_hosts: self.allow_hosts,
            allow_origins: self.allow_origins,
            rate_limit: self.rate_limit,
            keep_alive: self.keep_alive,
            max_sessions: self.max_sessions,
            max_streams_per_client: self.max_streams_per_client,
            proxies: TrustedProxies::new(self.trusted_proxies).reading(header),
            tls: self.tls_cert.zip(self.tls_key).map(|(cert, key)| TlsFiles { cert, key }),
            redis: self.redis,
            advertise_url: self.advertise_url,
            cookie_port: self.cookie_port,
            pending: server::pending_caps(self.max_pending, self.max_pending_per_client),
        })
    }
}

/// What a server subcommand serves, for its settings and its start-up line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Program {
    /// Its name in the start-up line.
    pub what: &'static str,
    /// The port it listens on without `--addr`.
    pub default_port: u16,
    /// The page the start-up link opens.
    pub home: &'static str,
    /// It includes an app that can change the machine, so it always requires a token.
    pub changes_machine: bool,
}

pub(crate) const ALL_APPS: Program =
    Program { what: "all apps", default_port: 8080, home: "/", changes_machine: true };
pub(crate) const CHAT: Program =
    Program { what: "chat", default_port: 8080, home: "/chat", changes_machine: false };
pub(crate) const SAMPLING: Program =
    Program { what: "MCP sampling", default_port: 8080, home: "/sampling", changes_machine: true };
pub(crate) const EXEC: Program =
    Program { what: "remote execution", default_port: 8080, home: "/exec", changes_machine: true };
pub(crate) const DASHBOARD: Program =
    Program { what: "dashboard", default_port: 8080, home: "/dashboard", changes_machine: true };
pub(crate) const BASIC_SERVER: Program =
    Program { what: "basic SSE server", default_port: 8081, home: "/", changes_machine: false };
pub(crate) const BENCH_TARGET: Program =
    Program { what: "bench target ours", default_port: 0, home: "/events", changes_machine: false };
pub(crate) const BIDI_SERVER: Program =
    Program { what: "bidirectional server", default_port: 8082, home: "/", changes_machine: false };
