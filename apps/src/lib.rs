//! # sse-apps
//!
//! Apps and learning programs built on [`sse_core`]. Each app is a module with
//! `pub fn router(...) -> axum::Router` mounted at its own prefix; [`server::build`] assembles a
//! server around one (the core, its cluster, the token, TLS, the guards, `/healthz`, `/metrics`,
//! static files, Host checks, graceful shutdown), for the binary and the tests alike, and [`cli`]
//! turns the command line into one of them.
//!
//! | module | what |
//! |---|---|
//! | [`chat`] | rooms, presence, typing, SQLite history, gap-free resume |
//! | [`exec`] | sandboxed runs: output streamed with exact replay, stdin and signals by POST |
//! | [`sampling`] | MCP tools answered by the clients' models (`sampling/createMessage`) |
//! | [`dashboard`] | live system metrics from one sampler, alerts, audited control actions |
//! | [`shared`] | what apps share: the audit log, the clock, who-did-it, the data directory |
//! | [`forward`] | handing a request to another instance over HTTP, its answer streamed back |
//! | [`owner_routing`] | the middleware that finds the instance owning what a request names and forwards it there |
//! | [`basic`] | the one-way SSE server and its browser test page; the printing client |
//! | [`bidi`] | the bidirectional server (Go-compatible wire format and the core's native one), its client |
//! | [`bench`] | load scenarios against a real server pinned to one core |
//! | [`trigger`] | sends requests through `/trigger` and reports round-trip times |
//! | [`index`] | the page that links every app |

// A function that does several steps is split into one per step (threshold in clippy.toml).
#![warn(clippy::too_many_lines)]

pub mod assets;
pub mod basic;
// The load scenarios script whole runs, step after step; they are measured, not read first.
#[allow(clippy::too_many_lines)]
pub mod bench;
pub mod bidi;
pub mod chat;
pub mod cli;
pub mod dashboard;
pub mod exec;
pub mod forward;
pub mod front_door;
pub mod http_metrics;
pub mod index;
pub mod owner_routing;
pub mod sampling;
pub mod server;
pub mod shared;
pub mod tls;
pub mod trigger;

use axum::Router;
use axum::routing::get;
use sse_core::Core;

/// Every POST endpoint of [`all_apps`] (the Go-compatible `/bidi/trigger` and `/bidi/response`
/// included), with plausible path parameters: what the body fuzz target (`fuzz/`) and the
/// property test `apps/tests/bodies.rs` feed arbitrary bodies to.
pub const POST_ENDPOINTS: &[&str] = &[
    "/chat/rooms/lobby/join",
    "/chat/rooms/lobby/messages",
    "/chat/rooms/lobby/typing",
    "/dashboard/commands",
    "/dashboard/alerts/cpu/ack",
    "/exec/runs",
    "/exec/runs/r1/stdin",
    "/exec/runs/r1/signal",
    "/exec/runs/r1/resize",
    "/exec/workflows",
    "/exec/workflows/w1/approvals/s1",
    "/sampling/mcp",
    "/sampling/messages?sessionId=s1",
    "/sampling/requests",
    "/bidi/response",
    "/bidi/trigger?client_id=nobody&message=m",
    "/bidi/rpc/responses",
];

/// Every app on one port, with the index page at `/` (what `sse-apps` serves by default).
pub fn all_apps(core: Core, config: AllApps) -> anyhow::Result<Router> {
    Ok(Router::new()
        .route("/", get(index::page))
        .merge(chat::router(core.clone(), &config.chat)?)
        .merge(dashboard::router(core.clone(), config.dashboard)?)
        .merge(exec::router(core.clone(), config.exec)?)
        .merge(sampling::router(core.clone(), sampling::SamplingConfig::default()))
        .merge(basic::mounted(core.clone(), basic::BasicConfig::default()))
        .merge(bidi::mounted(core, bidi::BidiConfig::default())))
}

/// The settings of every app, for [`all_apps`].
#[derive(Clone, Debug)]
pub struct AllApps {
    /// The chat's.
    pub chat: chat::ChatConfig,
    /// The dashboard's.
    pub dashboard: dashboard::DashboardConfig,
    /// Remote execution's.
    pub exec: exec::ExecConfig,
}

impl AllApps {
    /// Every app's defaults, with data in `data_dir`.
    pub fn new(data_dir: &std::path::Path) -> AllApps {
        AllApps {
            chat: chat::ChatConfig::new(data_dir.to_owned()),
            dashboard: dashboard::DashboardConfig::new(data_dir.to_owned()),
            exec: exec::ExecConfig::checked(data_dir.to_owned()),
        }
    }
}

/// `basic-server`: the test page and stream at the root (as the Go original), and under `/basic`.
pub fn basic_server(core: Core, config: basic::BasicConfig) -> Router {
    basic::router(core.clone(), config).merge(basic::mounted(core, config))
}

/// `bidi-server`: the endpoints at the root (as the Go original), and under `/bidi`.
pub fn bidi_server(core: Core, config: bidi::BidiConfig) -> Router {
    bidi::router(core.clone(), config).merge(bidi::mounted(core, config))
}
