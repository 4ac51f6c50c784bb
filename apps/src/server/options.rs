//! What a server is told: [`ServerConfig`], the settings every server subcommand shares, and the
//! helpers that read the flags behind them (a proxy's network, the pending-connection caps, the
//! token from its file).
//!
//! Plain values, no clap: the command line fills one in (`cli/server_args.rs`) and a test builds
//! one with [`ServerConfig::new`], so both reach [`super::build`] the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sse_core::edge::auth::Token;
use sse_core::edge::connections::PendingCaps;
use sse_core::edge::forwarded::TrustedProxies;

/// Everything [`super::build`] needs to assemble a server around an app.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen (port 0: any free one).
    pub addr: SocketAddr,
    /// The token the app's routes need ([`Token::open`] for none). It is bound to the port and
    /// the scheme when the server is built.
    pub token: Token,
    /// Host names answered besides those of the bound address.
    pub allow_hosts: Vec<String>,
    /// Origins whose state-changing requests are accepted besides the server's own.
    pub allow_origins: Vec<String>,
    /// Requests a second per client address (bursts of twice that); 0 is off.
    pub rate_limit: u32,
    /// The longest a stream stays silent before a keep-alive comment.
    pub keep_alive: Duration,
    /// Sessions at once (0: no cap).
    pub max_sessions: usize,
    /// Open event streams per client address, loopback spared (0: no cap).
    pub max_streams_per_client: usize,
    /// The reverse proxies believed about the client's address, and the header they write.
    pub proxies: TrustedProxies,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Join the cluster sharing this Redis.
    pub redis: Option<String>,
    /// Where the other instances of the cluster reach this one (default: the bound address).
    pub advertise_url: Option<String>,
    /// The port the token's cookie is named for (default: the bound one).
    pub cookie_port: Option<u16>,
    /// Connections that have sent no request yet, in total and per client address.
    pub pending: PendingCaps,
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The chain's private key.
    pub key: PathBuf,
}

impl ServerConfig {
    /// The settings a server subcommand has with no flags but `--addr`, requiring `token`.
    pub fn new(addr: SocketAddr, token: Token) -> ServerConfig {
        ServerConfig {
            addr,
            token,
            allow_hosts: Vec::new(),
            allow_origins: Vec::new(),
            rate_limit: 0,
            keep_alive: sse_core::CoreConfig::default().keep_alive,
            max_sessions: sse_core::session::MAX_SESSIONS,
            max_streams_per_client: DEFAULT_MAX_STREAMS_PER_CLIENT,
            proxies: TrustedProxies::default(),
            tls: None,
            redis: None,
            advertise_url: None,
            cookie_port: None,
            pending: pending_caps(None, None),
        }
    }
}

/// `--max-streams-per-client`'s default: more than a browser's tabs of one app need, far fewer
/// than a client hoarding streams would like.
pub const DEFAULT_MAX_STREAMS_PER_CLIENT: usize = 32;

/// A proxy's address (`127.0.0.1`, `::1`) or network (`10.0.0.0/8`), as `--trusted-proxy` takes.
pub fn parse_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a CIDR network"))
}

/// The pending-connection caps of `--max-pending` and `--max-pending-per-client`: by default
/// half the open-file limit, and half of the total per address.
pub fn pending_caps(total: Option<usize>, per_client: Option<usize>) -> PendingCaps {
    let total = total.unwrap_or_else(|| PendingCaps::for_open_file_limit().total);
    PendingCaps::new(total, per_client.unwrap_or(total / 2))
}

/// The token a server was given: `--token` (or `SSE_APPS_TOKEN`; empty is none), or the first
/// line of `--token-file`, trimmed. A file that cannot be read or holds no token stops the start:
/// serving without the token meant, or with a made-up one, would be worse.
pub fn given_token(
    token: Option<&str>,
    token_file: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    let Some(path) = token_file else {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        return Ok(token.map(str::to_owned));
    };
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--token-file {shown}: cannot read it: {e}"))?;
    let token = text.lines().next().unwrap_or_default().trim();
    anyhow::ensure!(!token.is_empty(), "--token-file {shown}: its first line holds no token");
    Ok(Some(token.to_owned()))
}
