//! The command line: every app on one port by default, or one program by name.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use clap::{Args, Parser, Subcommand};
use sse_core::edge::auth::Token;
use sse_core::edge::forwarded::{ForwardedHeader, TrustedProxies};
use sse_core::edge::origin::HostPolicy;
use sse_core::edge::rate::RateLimit;
use sse_core::edge::streams::StreamCap;
use sse_core::session::SessionConfig;
use sse_core::{Core, CoreConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::AllApps;
use crate::basic::{self, BasicConfig};
use crate::bench::targets::Target;
use crate::bidi::client::{ClientConfig, Protocol};
use crate::bidi::{self, BidiConfig};
use crate::chat;
use crate::dashboard::DashboardConfig;
use crate::dashboard::alerts::{AlertConfig, Thresholds};
use crate::exec::sandbox::{Isolation, Limits};
use crate::exec::{ExecConfig, Sandbox};
use crate::server::Guards;
use crate::{server, trigger};
use sse_core::edge::connections::{ConnectionSettings, PendingCaps};

/// Real-time apps on one pattern: SSE down, HTTP POST up, matched by a shared core.
///
/// With no subcommand, serves every app on one port with an index page.
#[derive(Debug, Parser)]
#[command(name = "sse-apps", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// How log lines are written to stderr: text for people, json (one object a line) for log
    /// collectors
    #[arg(long, global = true, value_enum, env = "SSE_APPS_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    dashboard: DashboardArgs,
    #[command(flatten)]
    exec: ExecArgs,
}

/// `--forwarded-header`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeaderName {
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`).
    XForwardedFor,
    /// `Forwarded: for=…` (RFC 7239).
    Forwarded,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object a line: timestamp, level, target, fields, and the spans it is in.
    Json,
}

/// The exec app's own flags.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The sandbox runs start in. If it does not work here, exec refuses runs and says why; it
    /// never falls back to a weaker one by itself
    #[arg(help_heading = "Exec", long, value_enum, default_value_t = Isolation::Bubblewrap)]
    pub sandbox: Isolation,
    /// Run programs without a sandbox (same as --sandbox none; limits still apply; DANGEROUS)
    #[arg(help_heading = "Exec", long, conflicts_with = "sandbox")]
    pub no_sandbox: bool,
    /// Bound runs by rlimits only, where no cgroup can be made for them (a run's total memory,
    /// tmpfs included, is then unbounded)
    #[arg(help_heading = "Exec", long)]
    pub no_cgroup: bool,
    /// First uid of the runs' uids when the server is root (default: the first free stretch from
    /// 1000000000); must lie outside every range in /etc/subuid and /etc/subgid
    #[arg(help_heading = "Exec", long, value_name = "UID")]
    pub run_uid_base: Option<u32>,
    /// Wall-clock limit of a run: the default, and the most a request may ask (at most 30 min)
    #[arg(help_heading = "Exec", long, default_value = "30s", value_parser = parse_run_timeout)]
    pub run_timeout: Duration,
    /// Runs at once
    #[arg(help_heading = "Exec", long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_runs: u16,
    /// Output kept per run, in MiB (past it, output is counted as dropped)
    #[arg(help_heading = "Exec", long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub output_cap_mib: u64,
}

impl ExecArgs {
    /// The exec app's settings, its sandbox checked: a run uid range outside the machine's
    /// subordinate ranges, the cgroups, and a probe run. What fails is in `config.sandbox`
    /// (runs are refused with it) and printed.
    fn config(self, data_dir: PathBuf) -> anyhow::Result<ExecConfig> {
        let (uids, probe_uid) =
            crate::exec::run_uid_range(self.run_uid_base, u32::from(self.max_runs))
                .map_err(anyhow::Error::msg)?;
        let isolation = if self.no_sandbox { Isolation::None } else { self.sandbox };
        let probe_uid = rustix::process::getuid().is_root().then_some(probe_uid);
        let sandbox = Sandbox::prepare(isolation, self.no_cgroup, probe_uid);
        // A failure is left to the caller: `sse-apps exec` stops on it, every app on one port
        // says it and serves the rest.
        if let Ok(sandbox) = &sandbox {
            tracing::info!("exec: runs start in {}", sandbox.describe());
            if self.no_cgroup {
                tracing::warn!(
                    "exec runs have no cgroup (--no-cgroup): a run's whole memory \
                     (tmpfs included), processes and CPU are bounded per process only"
                );
            }
            let needed = u64::from(self.max_runs) * Limits::default().memory + (256 << 20);
            if let Some(above) =
                crate::exec::cgroup::inherited_memory_limit().filter(|l| *l < needed)
            {
                tracing::warn!(
                    "this server's own cgroup allows {} MiB, less than {} runs of {} MiB \
                     and the server: runs are killed first when it fills (oom_score_adj 1000), \
                     but lower --max-runs or raise that limit",
                    above >> 20,
                    self.max_runs,
                    Limits::default().memory >> 20
                );
            }
            if isolation != Isolation::Bubblewrap {
                tracing::warn!(
                    "exec runs programs in a weaker sandbox than bubblewrap ({}), as \
                     asked",
                    isolation.name()
                );
            }
        }
        let mut config = ExecConfig::new(data_dir, sandbox);
        config.run_uids = uids;
        config.timeout = self.run_timeout;
        config.max_timeout = self.run_timeout;
        config.max_concurrent = usize::from(self.max_runs);
        config.output_cap = self.output_cap_mib << 20;
        Ok(config)
    }
}

fn parse_run_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if timeout.is_zero() || timeout > Duration::from_secs(1800) {
        return Err("between 1s and 30m".to_owned());
    }
    Ok(timeout)
}

/// The dashboard's own flags.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Time between dashboard ticks at start (at least 200ms; viewers can change it)
    #[arg(help_heading = "Dashboard", long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Alert thresholds in %: careful,warning,critical
    #[arg(help_heading = "Dashboard", long, default_value = "50,70,90", value_name = "C,W,C")]
    pub alert_thresholds: Thresholds,
    /// Thresholds for one metric (cpu, memory, swap, disk:/mount), e.g. cpu=80,90,95 (repeatable)
    #[arg(help_heading = "Dashboard", long = "alert", value_name = "METRIC=C,W,C", value_parser = parse_metric_thresholds)]
    pub alerts: Vec<(String, Thresholds)>,
    /// How far (in percentage points) a value must fall below a threshold to leave its level
    #[arg(help_heading = "Dashboard", long, default_value_t = 5.0)]
    pub alert_hysteresis: f64,
    /// Allow control actions on other users' processes (never on pid 1 or the server itself)
    #[arg(help_heading = "Dashboard", long)]
    pub allow_control_all: bool,
}

impl DashboardArgs {
    fn config(self, data_dir: PathBuf) -> DashboardConfig {
        DashboardConfig {
            data_dir,
            interval: self.interval,
            alerts: AlertConfig {
                default: self.alert_thresholds,
                per_metric: self.alerts.into_iter().collect(),
                hysteresis: self.alert_hysteresis,
            },
            allow_control_all: self.allow_control_all,
        }
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < crate::dashboard::sampler::MIN_INTERVAL {
        return Err("at least 200ms: CPU usage cannot be measured over less".to_owned());
    }
    Ok(interval)
}

/// A proxy's address (`127.0.0.1`, `::1`) or network (`10.0.0.0/8`).
fn parse_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a CIDR network"))
}

fn parse_metric_thresholds(text: &str) -> Result<(String, Thresholds), String> {
    let (metric, thresholds) =
        text.split_once('=').ok_or("write METRIC=careful,warning,critical")?;
    Ok((metric.trim().to_owned(), thresholds.parse()?))
}

/// The flags every server takes.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
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
        default_value_t = 32
    )]
    pub max_streams_per_client: usize,
    /// A reverse proxy (address or CIDR, repeatable) whose Forwarded / X-Forwarded-For headers
    /// name the client, for the rate limit and the stream cap; from anyone else they are ignored
    #[arg(help_heading = "Limits", long = "trusted-proxy", env = "SSE_APPS_TRUSTED_PROXY", value_delimiter = ',', value_name = "CIDR", value_parser = parse_proxy)]
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

/// The pending-connection caps of `--max-pending` and `--max-pending-per-client`.
fn pending_caps(total: Option<usize>, per_client: Option<usize>) -> PendingCaps {
    let total = total.unwrap_or_else(|| PendingCaps::for_open_file_limit().total);
    PendingCaps::new(total, per_client.unwrap_or(total / 2))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The chat room alone (at /chat): rooms, presence, typing, persistent history
    Chat {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remote execution alone (at /exec): sandboxed runs, streamed output, stdin and signals
    Exec {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// MCP sampling alone (at /sampling): tools answered by the connected clients' models
    Sampling {
        #[command(flatten)]
        server: ServerArgs,
        /// How long a sampling request waits for its answer (long enough for a person)
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        deadline: Duration,
        /// Serve without any token (only for trying it out on a machine you alone use)
        #[arg(long, conflicts_with_all = ["token", "token_file"])]
        no_auth: bool,
    },
    /// Answer an MCP server's sampling requests with a real model (OpenAI-compatible or Anthropic)
    SamplingClient {
        /// The server's MCP endpoint (`…/sampling/sse` with --transport sse)
        #[arg(long, default_value = "http://127.0.0.1:8080/sampling/mcp")]
        server: String,
        /// Streamable HTTP, or the 2024-11-05 HTTP+SSE transport
        #[arg(long, value_enum, default_value_t = crate::sampling::client::Transport::Streamable)]
        transport: crate::sampling::client::Transport,
        /// Send this token as `Authorization: Bearer`
        #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Which API to call: OpenAI-compatible (OPENAI_API_KEY, OPENAI_BASE_URL) or Anthropic
        /// (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)
        #[arg(long, value_enum, default_value_t = ProviderName::Openai)]
        provider: ProviderName,
        /// The model when the request's hints name none of --models [default: gpt-4o-mini, or
        /// claude-haiku-4-5]
        #[arg(long)]
        model: Option<String>,
        /// Models the request's hints may pick (comma-separated)
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Ask a person at this terminal before and after each model call, or answer unattended
        #[arg(long, value_enum, default_value_t = ApproveFlag::Ask)]
        approve: ApproveFlag,
        /// Most requests answered a minute
        #[arg(long, default_value_t = 30)]
        per_minute: u32,
        /// How long one model call may take
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Without one, answer the server's sampling requests until stopped
        #[command(subcommand)]
        action: Option<crate::sampling::client::call::Action>,
    },
    /// The live system dashboard alone (at /dashboard): metrics, alerts, control actions
    Dashboard {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        dashboard: DashboardArgs,
    },
    /// Stream numbered events (GET /events) and serve the browser test page (GET /)
    BasicServer {
        #[command(flatten)]
        server: ServerArgs,
        /// Events per stream; 0 streams forever
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Pause between events
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Print every event of a stream, reconnecting and resuming with Last-Event-ID
    BasicClient {
        /// The stream's URL
        #[arg(long, default_value = "http://127.0.0.1:8081/events")]
        url: String,
        /// Start as if this id had already been received
        #[arg(long)]
        last_event_id: Option<String>,
        /// Send this token as `Authorization: Bearer` (for servers started with --token)
        #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Send requests to clients over SSE and take their answers by POST
    BidiServer {
        #[command(flatten)]
        server: ServerArgs,
        /// How long /trigger waits for an answer
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Answer a bidirectional server's requests
    BidiClient {
        /// The server's base URL
        #[arg(long, default_value = "http://127.0.0.1:8082")]
        server: String,
        /// This client's id [default: a random one]
        #[arg(long)]
        client_id: Option<String>,
        /// Wire format: the Go original's (compat) or the core's JSON-RPC (native)
        #[arg(long, value_enum, default_value_t = Protocol::Compat)]
        protocol: Protocol,
        /// Simulated work per request
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        work: Duration,
        /// Send this token as `Authorization: Bearer` (for servers started with --token)
        #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Run a load scenario against a server this command starts (pinned to one core)
    Bench {
        #[command(subcommand)]
        scenario: BenchScenario,
    },
    /// A server for `bench` to measure (started by it; publishes when told on stdin)
    #[command(hide = true)]
    BenchTarget {
        /// Which server
        #[arg(value_enum)]
        target: Target,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Holds idle connections for `bench flood` (started by it) until a signal or the bench ends
    #[command(hide = true)]
    BenchFloodHolder {
        /// The server under test
        #[arg(long)]
        server: SocketAddr,
        /// Connections to open and hold
        #[arg(long)]
        idle: usize,
        /// From 127.0.0.SOURCE
        #[arg(long)]
        source: u8,
    },
    /// The baseline `bench roundtrip` measures beside `bidi-server` (started by it)
    #[command(hide = true)]
    BenchRoundtripLimit {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send requests through /trigger and report round-trip times
    Trigger {
        /// The server's base URL
        #[arg(long, default_value = "http://127.0.0.1:8082")]
        server: String,
        /// The client to ask
        #[arg(long)]
        client_id: String,
        /// The message to analyze
        #[arg(long)]
        message: String,
        /// How many requests in all
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// How many at once
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Send this token as `Authorization: Bearer` (for servers started with --token)
        #[arg(long, env = "SSE_APPS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// The sampling client's model API.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ProviderName {
    /// OpenAI Chat Completions or any compatible server.
    Openai,
    /// Anthropic Messages.
    Anthropic,
}

/// Who approves sampling requests.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ApproveFlag {
    /// A person at this terminal.
    Ask,
    /// Nobody: answer unattended.
    Auto,
}

/// The provider from the environment: key and base URL.
fn provider(name: ProviderName) -> anyhow::Result<crate::sampling::client::llm::Provider> {
    use crate::sampling::client::llm::Provider;
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    match name {
        ProviderName::Openai => {
            let base =
                env("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
            let key = env("OPENAI_API_KEY");
            anyhow::ensure!(
                key.is_some() || !base.contains("api.openai.com"),
                "no API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server that needs none)"
            );
            Ok(Provider::OpenAi { base, key })
        }
        ProviderName::Anthropic => {
            let base =
                env("ANTHROPIC_BASE_URL").unwrap_or_else(|| "https://api.anthropic.com".to_owned());
            let key = env("ANTHROPIC_API_KEY");
            anyhow::ensure!(key.is_some(), "no API key: set ANTHROPIC_API_KEY");
            Ok(Provider::Anthropic { base, key })
        }
    }
}

#[derive(Debug, Subcommand)]
enum BenchScenario {
    /// N connections on one topic, R events a second: delivery, latency, server CPU and memory,
    /// ours beside the `limit` and `naive` baselines
    Fanout {
        /// Loads as CONNECTIONSxRATE (comma-separated)
        #[arg(long, value_delimiter = ',', default_value = "1000x10,1000x100,10000x10,10000x100")]
        loads: Vec<crate::bench::fanout::Load>,
        /// Servers to measure (comma-separated)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit,naive")]
        targets: Vec<Target>,
        /// Bytes of data per event
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// How long each load publishes
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Also draw the results to this SVG file
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// Server→client requests answered by POST: S sessions, C callers of /trigger; round trips/s
    Roundtrip {
        /// Sessions answering requests
        #[arg(long, default_value_t = 64)]
        sessions: usize,
        /// Concurrent callers
        #[arg(long, default_value_t = 64)]
        callers: usize,
        /// How long to call
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Offer this many round trips a second on a schedule, timing each from when it was due
        /// (latency at a load); without it, callers call again as soon as they are answered (the
        /// most a server can do)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate: Option<u32>,
        /// Servers to measure (comma-separated): `ours` (`sse-apps bidi-server`), `limit` (the
        /// same protocol over raw sockets, no framework)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit")]
        targets: Vec<crate::bench::roundtrip::RoundtripTarget>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// MCP tool calls that ask the caller's model, both ways: down the stream (push) or by
    /// multi round-trip requests (mrtr); calls/s and their times at each number of callers
    Sampling {
        /// Numbers of concurrent callers, each a run (comma-separated)
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        callers: Vec<usize>,
        /// The ways to ask (comma-separated)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "push,mrtr")]
        eras: Vec<crate::bench::sampling::Era>,
        /// How long each run calls
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// N idle connections: the server's resident memory per connection
    Idle {
        /// Connections to hold open
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Servers to measure (comma-separated)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit,naive")]
        targets: Vec<Target>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// A new client's request while N idle connections (never a byte) are held: time to its answer
    Flood {
        /// Idle connections to hold
        #[arg(long, default_value_t = 20_000)]
        idle: usize,
        /// Loopback addresses they come from (127.0.0.2 onwards)
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// Requests timed before and during the flood, each on a new connection
        #[arg(long, default_value_t = 20)]
        probes: usize,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// How fast N connections are established
    Connect {
        /// Connections to open
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// How many may be connecting at once
        #[arg(long, default_value_t = 1000)]
        concurrency: usize,
        /// Servers to measure (comma-separated)
        #[arg(long, value_delimiter = ',', value_enum, default_value = "ours,limit,naive")]
        targets: Vec<Target>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// One chat room: N members reading, R messages a second posted; delivery share and latency
    Chat {
        /// Members connected to the room
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages a second, all posters together
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// How long to post
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Run two chat instances sharing this Redis (members and posts split between them)
        /// instead of one with SQLite
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// Remote execution: output throughput to one viewer, and keystroke-to-echo latency
    Exec {
        /// Output of the throughput run, in MiB
        #[arg(long, default_value_t = 256)]
        mib: u64,
        /// Keystrokes for the latency measurement
        #[arg(long, default_value_t = 1000)]
        keystrokes: usize,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// Every app under mixed load for a long time: errors, and memory and descriptor growth
    Soak {
        /// The whole run, warm-up included
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Load before the first settled measurement: longer than the longest time the server
        /// remembers anything (finished requests, 10 minutes), so what fills up is full
        #[arg(long, default_value = "12m", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Time between samples under load
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        sample_every: Duration,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
    /// The dashboard's cost: server CPU and sampler time with 0 and then N viewers
    Dashboard {
        /// Viewer counts to measure, after none
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        viewers: Vec<usize>,
        /// Sampling interval
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// How long each count is measured
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        window: Duration,
        /// Do not pin the server and the load generator to separate cores
        #[arg(long)]
        no_pin: bool,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    // Whatever descriptors this process inherited without close-on-exec (a parent's open file,
    // a socket) would pass on to every program it starts, exec's sandboxed runs among them, which
    // could then read or write them. Everything this process opens itself is close-on-exec
    // already. Done first, while no other thread exists; stdin, stdout and stderr stay.
    close_fds::set_fds_cloexec(3, &[]);
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    warn_if_token_on_command_line(&matches);
    let cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // A bench reports its own findings; its clients' progress at info would bury them.
    let default_level =
        if matches!(cli.command, Some(Command::Bench { .. })) { "warn" } else { "info" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A log line that cannot be written (stderr closed: `sse-apps | head`) is dropped in silence:
    // the subscriber's own report of it would panic on that same stderr, inside whatever task
    // was logging.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Says on stderr that a `--token` given on the command line is there for every local user to
/// read (`ps`, `/proc/PID/cmdline`). Not for one from `SSE_APPS_TOKEN`, which only the user and
/// root can read (`/proc/PID/environ`).
fn warn_if_token_on_command_line(matches: &clap::ArgMatches) {
    let mut used = matches;
    while let Some((_, inner)) = used.subcommand() {
        used = inner;
    }
    let given = used.ids().any(|id| id.as_str() == "token");
    if !given || used.value_source("token") != Some(clap::parser::ValueSource::CommandLine) {
        return;
    }
    // The clients' `--token` has no file form.
    let instead = if used.try_contains_id("token_file").is_ok() {
        "--token-file PATH or SSE_APPS_TOKEN"
    } else {
        "SSE_APPS_TOKEN"
    };
    eprintln!(
        "warning: --token on the command line can be read by every local user (ps); use \
         {instead} instead"
    );
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    server::cancel_on_signals(shutdown.clone());
    // Started by `bench`: answer its `usage` questions, and hand other commands to the target.
    let bench_commands = crate::bench::control::serve_if_asked();
    match cli.command {
        None => {
            let data_dir = cli.server.data_dir.clone().unwrap_or_else(chat::default_data_dir);
            let config = AllApps {
                dashboard: cli.dashboard.config(data_dir.clone()),
                exec: cli.exec.config(data_dir.clone())?,
                chat: chat::ChatConfig::new(data_dir.clone()),
                sampling: crate::sampling::SamplingConfig::sharing(
                    given_token(&cli.server)?.as_deref(),
                ),
            };
            if let Err(why) = &config.exec.sandbox {
                tracing::warn!("exec refuses runs: {why}");
            }
            let app = move |core: Core| crate::all_apps(core, config);
            run_server(cli.server, ALL_APPS, shutdown, app).await?;
        }
        Some(Command::Exec { server, exec }) => {
            let data_dir = server.data_dir.clone().unwrap_or_else(chat::default_data_dir);
            let config = exec.config(data_dir)?;
            if let Err(why) = &config.sandbox {
                anyhow::bail!("exec cannot run programs safely here: {why}");
            }
            let app = move |core: Core| Ok(crate::exec::router(core, config)?);
            run_server(server, EXEC, shutdown, app).await?;
        }
        Some(Command::Sampling { server, deadline, no_auth }) => {
            // Instances given the same token open each other's modern `requestState`.
            let shared = crate::sampling::SamplingConfig::sharing(given_token(&server)?.as_deref());
            let config = crate::sampling::SamplingConfig { deadline, ..shared };
            let app = move |core: Core| Ok(crate::sampling::router(core, config));
            let exposed = server.addr.is_some_and(|a| !a.ip().is_loopback());
            anyhow::ensure!(
                !(no_auth && exposed && server.allow_hosts.is_empty()),
                "--no-auth beyond loopback needs --allow-host: without a token, only the Host check \
                 stops DNS rebinding"
            );
            let program = if no_auth {
                tracing::warn!(
                    "--no-auth: anyone who can reach this port can use the sampling endpoints"
                );
                Program { changes_machine: false, ..SAMPLING }
            } else {
                SAMPLING
            };
            run_server(server, program, shutdown, app).await?;
        }
        Some(Command::SamplingClient {
            server,
            transport,
            token,
            provider: name,
            model,
            models,
            approve,
            per_minute,
            timeout,
            action,
        }) => {
            let provider = provider(name)?;
            let approve = crate::sampling::client::approval::Approve::from_flag(matches!(
                approve,
                ApproveFlag::Auto
            ))
            .map_err(anyhow::Error::msg)?;
            let config = crate::sampling::client::ClientConfig {
                server,
                transport,
                token,
                default_model: model.unwrap_or_else(|| provider.default_model().to_owned()),
                provider,
                models,
                approve,
                per_minute,
                call_timeout: timeout,
            };
            if let Some(crate::sampling::client::call::Action::Call { tool, args }) = action {
                let arguments = crate::sampling::client::call::arguments(&args);
                let result = crate::sampling::client::call::call(&config, &tool, arguments).await?;
                println!("{}", crate::sampling::tools::result_text(&result).unwrap_or_default());
                // A tool's own failure (its text says why) is not a success for scripts.
                let failed = result["isError"] == true;
                return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
            }
            crate::sampling::client::run(config, shutdown).await;
        }
        Some(Command::Dashboard { server, dashboard }) => {
            let data_dir = server.data_dir.clone().unwrap_or_else(chat::default_data_dir);
            let config = dashboard.config(data_dir);
            let app = move |core: Core| Ok(crate::dashboard::router(core, config)?);
            run_server(server, DASHBOARD, shutdown, app).await?;
        }
        Some(Command::Chat { server }) => {
            let data_dir = server.data_dir.clone().unwrap_or_else(chat::default_data_dir);
            let config = chat::ChatConfig::new(data_dir);
            let app = move |core: Core| Ok(chat::router(core, &config)?);
            run_server(server, CHAT, shutdown, app).await?;
        }
        Some(Command::BasicServer { server, count, interval }) => {
            let config = BasicConfig { count, interval };
            let app = move |core: Core| Ok(crate::basic_server(core, config));
            run_server(server, BASIC_SERVER, shutdown, app).await?;
        }
        Some(Command::BidiServer { server, timeout }) => {
            let config = BidiConfig { timeout };
            let app = move |core: Core| Ok(crate::bidi_server(core, config));
            run_server(server, BIDI_SERVER, shutdown, app).await?;
        }
        Some(Command::Bench {
            scenario: BenchScenario::Chat { members, rate, duration, redis, no_pin },
        }) => {
            let bench =
                crate::bench::chat::ChatBench { members, rate, duration, redis, pin: !no_pin };
            let report = crate::bench::chat::run(bench).await?;
            println!("{}", report.line());
        }
        Some(Command::Bench {
            scenario: BenchScenario::Fanout { loads, targets, payload, duration, plot, no_pin },
        }) => {
            let bench = crate::bench::fanout::FanoutBench {
                loads,
                targets,
                payload,
                duration,
                pin: !no_pin,
            };
            let rows = crate::bench::fanout::run(&bench).await?;
            println!("{}", crate::bench::fanout::table(&rows));
            if let Some(path) = plot {
                let title = format!("SSE fan-out, {payload}-byte events, server on one core");
                crate::bench::plot::draw(&rows, &title, &path)?;
                println!("chart written to {}", path.display());
            }
        }
        Some(Command::Bench {
            scenario:
                BenchScenario::Roundtrip { sessions, callers, duration, rate, targets, no_pin },
        }) => {
            use crate::bench::roundtrip::{RoundtripBench, RoundtripTarget, ratio_line};
            let mut reports = Vec::new();
            for target in targets {
                let bench =
                    RoundtripBench { sessions, callers, duration, rate, target, pin: !no_pin };
                let report = crate::bench::roundtrip::run(bench).await?;
                println!("{}", report.line());
                reports.push(report);
            }
            let of = |wanted| reports.iter().find(|r| r.bench.target == wanted);
            if let (Some(ours), Some(limit)) =
                (of(RoundtripTarget::Ours), of(RoundtripTarget::Limit))
            {
                println!("{}", ratio_line(ours, limit));
            }
        }
        Some(Command::Bench {
            scenario: BenchScenario::Sampling { callers, eras, duration, no_pin },
        }) => {
            for (era, callers) in eras.iter().flat_map(|e| callers.iter().map(move |c| (*e, *c))) {
                let bench =
                    crate::bench::sampling::SamplingBench { era, callers, duration, pin: !no_pin };
                println!("{}", crate::bench::sampling::run(bench).await?.line());
            }
        }
        Some(Command::Bench { scenario: BenchScenario::Idle { connections, targets, no_pin } }) => {
            for row in crate::bench::connect::run(&targets, connections, 1000, !no_pin).await? {
                println!("{}", row.idle_line());
            }
        }
        Some(Command::Bench {
            scenario: BenchScenario::Flood { idle, sources, probes, no_pin },
        }) => {
            let bench = crate::bench::flood::FloodBench { idle, sources, probes, pin: !no_pin };
            println!("{}", crate::bench::flood::run(bench).await?.line());
        }
        Some(Command::Bench {
            scenario: BenchScenario::Connect { connections, concurrency, targets, no_pin },
        }) => {
            for row in
                crate::bench::connect::run(&targets, connections, concurrency, !no_pin).await?
            {
                println!("{}", row.connect_line());
            }
        }
        Some(Command::BenchFloodHolder { server, idle, source }) => {
            crate::bench::flood::hold(server, idle, source, shutdown).await?;
        }
        Some(Command::BenchRoundtripLimit { server }) => {
            let addr = server.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
            let listener =
                server::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            println!("sse-apps: roundtrip limit listening on http://{}", listener.local_addr()?);
            tokio::select! {
                result = crate::bench::targets::limit_roundtrip::serve(listener) => result?,
                () = shutdown.cancelled() => {}
            }
        }
        Some(Command::BenchTarget { target, server }) => {
            let commands = bench_commands.unwrap_or_else(|| {
                // Run by hand: nobody will order events, but the server still serves streams.
                tokio::sync::mpsc::unbounded_channel().1
            });
            run_bench_target(target, server, commands, shutdown).await?;
        }
        Some(Command::Bench { scenario: BenchScenario::Exec { mib, keystrokes, no_pin } }) => {
            let bench = crate::bench::exec::ExecBench { mib, keystrokes, pin: !no_pin };
            println!("{}", crate::bench::exec::run(bench).await?.line());
        }
        Some(Command::Bench {
            scenario: BenchScenario::Dashboard { mut viewers, interval, window, no_pin },
        }) => {
            viewers.sort_unstable();
            let bench =
                crate::bench::dashboard::DashboardBench { viewers, interval, window, pin: !no_pin };
            for step in crate::bench::dashboard::run(bench).await? {
                println!("{}", step.line());
            }
        }
        Some(Command::Bench {
            scenario: BenchScenario::Soak { duration, warmup, sample_every, no_pin },
        }) => {
            let bench =
                crate::bench::soak::SoakBench { duration, warmup, sample_every, pin: !no_pin };
            let report = crate::bench::soak::run(bench).await?;
            for line in report.lines() {
                println!("{line}");
            }
            if report.error_count() > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Some(Command::BasicClient { url, last_event_id, token }) => {
            let clean =
                basic::client::run(&url, last_event_id.as_deref(), token.as_deref(), shutdown)
                    .await;
            return Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Some(Command::BidiClient { server, client_id, protocol, work, token }) => {
            let client_id = client_id.unwrap_or_else(|| {
                format!("client_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
            });
            println!(
                "answering requests from {server} as client {client_id:?} ({protocol:?} protocol)"
            );
            bidi::client::run(ClientConfig { server, client_id, protocol, work, token }, shutdown)
                .await;
        }
        Some(Command::Trigger { server, client_id, message, count, concurrency, token }) => {
            let config =
                trigger::TriggerConfig { server, client_id, message, count, concurrency, token };
            // Ctrl-C drops the requests in flight: their connections close, and the server
            // cancels what it asked the client for (a native client hears of it).
            let summary = tokio::select! {
                summary = trigger::run(config) => summary,
                () = shutdown.cancelled() => {
                    eprintln!("interrupted: the requests in flight were abandoned");
                    return Ok(ExitCode::from(130));
                }
            };
            trigger::print_summary(&summary);
            return Ok(if summary.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a server subcommand serves, for its start-up line.
struct Program {
    what: &'static str,
    default_port: u16,
    /// The page the start-up link opens.
    home: &'static str,
    /// It includes an app that can change the machine (the dashboard's control actions).
    changes_machine: bool,
}

const ALL_APPS: Program =
    Program { what: "all apps", default_port: 8080, home: "/", changes_machine: true };
const CHAT: Program =
    Program { what: "chat", default_port: 8080, home: "/chat", changes_machine: false };
const SAMPLING: Program =
    Program { what: "MCP sampling", default_port: 8080, home: "/sampling", changes_machine: true };
const EXEC: Program =
    Program { what: "remote execution", default_port: 8080, home: "/exec", changes_machine: true };
const DASHBOARD: Program =
    Program { what: "dashboard", default_port: 8080, home: "/dashboard", changes_machine: true };
const BASIC_SERVER: Program =
    Program { what: "basic SSE server", default_port: 8081, home: "/", changes_machine: false };
const BENCH_TARGET: Program =
    Program { what: "bench target ours", default_port: 0, home: "/events", changes_machine: false };
const BIDI_SERVER: Program =
    Program { what: "bidirectional server", default_port: 8082, home: "/", changes_machine: false };

/// Serves one of the fan-out bench's servers.
async fn run_bench_target(
    target: Target,
    server: ServerArgs,
    commands: tokio::sync::mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use crate::bench::targets::{limit, naive, ours};
    if target == Target::Ours {
        let app = move |core: Core| Ok(ours::router(core, commands));
        return run_server(server, BENCH_TARGET, shutdown, app).await;
    }
    let addr = server.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener =
        server::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    println!(
        "sse-apps: bench target {} listening on http://{}",
        target.name(),
        listener.local_addr()?
    );
    let served = async {
        match target {
            Target::Limit => limit::serve(listener, commands).await,
            _ => naive::serve(listener, commands).await,
        }
    };
    tokio::select! {
        result = served => result?,
        () = shutdown.cancelled() => {}
    }
    Ok(())
}

/// The token a server was given: `--token` (or `SSE_APPS_TOKEN`; empty is none), or the first
/// line of `--token-file`, trimmed. A file that cannot be read or holds no token stops the start:
/// serving without the token meant, or with a made-up one, would be worse.
fn given_token(args: &ServerArgs) -> anyhow::Result<Option<String>> {
    let Some(path) = &args.token_file else {
        let token = args.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        return Ok(token.map(str::to_owned));
    };
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--token-file {shown}: cannot read it: {e}"))?;
    let token = text.lines().next().unwrap_or_default().trim();
    anyhow::ensure!(!token.is_empty(), "--token-file {shown}: its first line holds no token");
    Ok(Some(token.to_owned()))
}

/// Builds the core, binds, prints where to look, and serves until a signal.
async fn run_server(
    args: ServerArgs,
    program: Program,
    shutdown: CancellationToken,
    app: impl FnOnce(Core) -> anyhow::Result<Router>,
) -> anyhow::Result<()> {
    let given = given_token(&args)?;
    let Program { what, default_port, home, .. } = program;
    let addr = args.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], default_port)));
    let defaults = CoreConfig::default();
    let session = SessionConfig { max_sessions: args.max_sessions, ..defaults.session };
    let core = Core::new(CoreConfig { keep_alive: args.keep_alive, session, ..defaults });
    if let Some(url) = &args.redis {
        let cluster = sse_core::cluster::Cluster::connect(url)
            .map_err(|e| anyhow::anyhow!("--redis {url}: {e}"))?;
        core.join(&cluster);
        tracing::info!(instance = cluster.instance(), "one instance of a cluster sharing {url}");
    }
    // Servers whose apps can change the machine always need a token: one is made up if none
    // was given, and the link printed below carries it.
    let token = match given {
        Some(secret) => Token::required(secret),
        None if program.changes_machine => Token::required(Token::generate()),
        None => Token::open(),
    };
    let hosts = HostPolicy::for_bind(addr, &args.allow_hosts, &args.allow_origins);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let token = if tls.is_some() { token.over_https() } else { token };
    let header = match args.forwarded_header {
        ForwardedHeaderName::XForwardedFor => ForwardedHeader::XForwardedFor,
        ForwardedHeaderName::Forwarded => ForwardedHeader::Forwarded,
    };
    let proxies = TrustedProxies::new(args.trusted_proxies.clone()).reading(header);
    let rate = RateLimit::new(args.rate_limit, args.rate_limit.saturating_mul(2))
        .map(|rate| rate.behind(proxies.clone()));
    if let Some(rate) = &rate {
        rate.forget_idle_every_minute(core.shutdown_token());
    }
    let listener =
        server::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    // The port bound, not the one asked for (which may be 0), names the token's cookie.
    let token = token.on_port(args.cookie_port.unwrap_or(local.port()));
    if core.cluster().is_some() && token.is_required() && args.cookie_port.is_none() {
        tracing::warn!(
            "--redis without --cookie-port: a browser's login holds on this instance only; give \
             every instance the same --cookie-port"
        );
    }
    let guards = Guards {
        token: token.clone(),
        rate,
        streams: StreamCap::new(args.max_streams_per_client)
            .map(|cap| cap.behind(proxies).sparing_loopback()),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = server::finish(app(core.clone())?, &core, hosts, guards);
    let link = match token.secret() {
        Some(secret) => format!("{scheme}://{local}{home}?token={secret}"),
        None => format!("{scheme}://{local}{home}"),
    };
    // Not `println!`: a server must not die because whoever started it closed its stdout.
    if let Some(cluster) = core.cluster() {
        let own = args.advertise_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
        if args.advertise_url.is_none() && local.ip().is_unspecified() {
            tracing::warn!(
                "--redis with --addr {local}: give --advertise-url so other instances can reach \
                 this one"
            );
        }
        // Not awaited: a Redis that is down must not hold up the start.
        let cluster = cluster.clone();
        tokio::spawn(async move { cluster.advertise(&own).await });
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "sse-apps: {what} listening on {scheme}://{local}\n  open {link}");
    let _ = out.flush();
    drop(out);
    let streams = core.shutdown_token();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        streams.cancel();
    });
    let settings = ConnectionSettings {
        tls,
        pending: pending_caps(args.max_pending, args.max_pending_per_client),
        metrics: Some(core.metrics.clone()),
        ..ConnectionSettings::default()
    };
    let served = sse_core::edge::connections::serve(listener, app, shutdown.clone(), settings);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        result = served => result?,
        () = deadline => tracing::warn!("requests still open 5 s after the signal; exiting anyway"),
    }
    Ok(())
}
