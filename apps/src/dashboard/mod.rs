//! The live system dashboard: honest metrics streamed to every viewer from one sampler, alerts
//! with hysteresis, and control actions (terminate, renice, sampling interval) over POST,
//! protected and audited.
//!
//! | part | job |
//! |---|---|
//! | [`sample`] | what one tick measures; the [`MetricSource`](sample::MetricSource) trait |
//! | [`system`] | the real source, on `sysinfo`, with cgroup limits ([`cgroup`]) as 100% |
//! | [`sampler`] | the one task that samples, only while someone watches |
//! | [`board`] | state + event stream: history ring, snapshot, every event encoded once |
//! | [`alerts`] | thresholds with hysteresis, acknowledgements |
//! | [`control`] | checking and carrying out control actions |
//! | [`processes`] | every process, searched and paged, for the page's process list |
//! | [`flags`] | the dashboard's flags, turned into a [`DashboardConfig`] |
//! | [`error`] | every way a request is refused, and the status and code of each |
//! | `instances` | with several instances: which machine a viewer watches ([`crate::owner_routing`]) |
//!
//! A tick flows sampler → board → topic → every viewer's stream; a control action flows
//! POST → checks → audit (synced; [`crate::shared::audit`]) → `command_started` → 202, then
//! runs, audits the outcome and reports `command_completed` or `command_failed`: every event a
//! viewer sees is on record first.
//!
//! The server that serves the dashboard always requires its token (one is generated and printed
//! when `--token` is not given), for viewing too: process lists are sensitive, and on a shared
//! machine every local user can reach a loopback port.

pub mod alerts;
pub mod board;
pub mod cgroup;
pub mod control;
pub mod error;
pub mod flags;
mod instances;
pub mod processes;
pub mod sample;
pub mod sampler;
pub mod system;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_core::Core;
use sse_core::edge::{JsonBody, PathParams, QueryParams};
use sse_core::stream::LiveResponse;

use crate::shared::audit::{AuditLog, Entry};
use crate::shared::clock::unix_millis;
use crate::shared::who::who;
use alerts::{AckError, AlertConfig};
use board::{Board, CommandRecord};
use control::{Command, CommandBody};
use error::DashboardError;
use sample::MetricSource;
use sampler::SamplerStats;

/// Settings of the dashboard.
#[derive(Clone, Debug)]
pub struct DashboardConfig {
    /// Where the audit log lives.
    pub data_dir: PathBuf,
    /// Time between ticks at start (viewers can change it).
    pub interval: Duration,
    /// Alert thresholds.
    pub alerts: AlertConfig,
    /// Allow actions on other users' processes.
    pub allow_control_all: bool,
}

impl DashboardConfig {
    /// Defaults (1 s ticks, 50/70/90% alerts, own processes only) with data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> DashboardConfig {
        DashboardConfig {
            data_dir,
            interval: Duration::from_secs(1),
            alerts: AlertConfig::default(),
            allow_control_all: false,
        }
    }
}

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The audit log cannot be opened.
    #[error("cannot open the dashboard's audit log")]
    Audit(#[from] std::io::Error),
    /// The machine cannot be measured.
    #[error("cannot read system metrics")]
    System(#[from] sysinfo::Error),
}

#[derive(Clone, Debug)]
struct DashboardState {
    core: Core,
    board: Arc<Board>,
    audit: AuditLog,
    allow_control_all: bool,
    processes: Arc<dyn processes::ProcessSource>,
}

/// The dashboard routes, mounted at `/dashboard`, measuring this machine.
pub fn router(core: Core, config: DashboardConfig) -> Result<Router, StartError> {
    let source = system::SystemSource::new()?;
    router_with_source(core, config, source)
}

/// The dashboard routes with ticks from `source` (tests drive alerts with their own).
pub fn router_with_source(
    core: Core,
    config: DashboardConfig,
    source: impl MetricSource,
) -> Result<Router, StartError> {
    let table = processes::ProcessTable::new(config.allow_control_all)?;
    router_with_sources(core, config, source, table)
}

/// The dashboard routes with ticks from `source` and the process list from `processes` (tests
/// script both).
pub fn router_with_sources(
    core: Core,
    config: DashboardConfig,
    source: impl MetricSource,
    processes: impl processes::ProcessSource,
) -> Result<Router, StartError> {
    let audit = AuditLog::open(&config.data_dir, "dashboard-audit.jsonl")?;
    let board = Arc::new(Board::new(core.hub.topic("dashboard"), config.interval, config.alerts));
    let stats = SamplerStats::register(&core.metrics);
    sampler::spawn(board.clone(), source, stats, core.shutdown_token());
    let processes: Arc<dyn processes::ProcessSource> = Arc::new(processes);
    let allow_control_all = config.allow_control_all;
    let state = DashboardState { core, board, audit, allow_control_all, processes };
    Ok(Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/events", get(events))
        .route("/dashboard/commands", post(command))
        .route("/dashboard/alerts/{id}/ack", post(acknowledge))
        .route("/dashboard/audit", get(audit_log))
        .route("/dashboard/processes", get(processes::list))
        .route("/dashboard/instances", get(instances::instances))
        .route_layer(axum::middleware::map_request_with_state(
            state.clone(),
            instances::without_instance,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::owner_routing::route::<DashboardState>,
        ))
        .with_state(state))
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
struct DashboardPage;

async fn page() -> DashboardPage {
    DashboardPage
}

/// `GET /dashboard/events`: `snapshot` (history, alerts, commands), then live events.
async fn events(State(state): State<DashboardState>) -> Response {
    let (snapshot, subscription) = state.board.connect();
    LiveResponse::new(subscription)
        .prelude(vec![snapshot])
        .into_response(&state.core.streams, &state.core.metrics)
}

/// `POST /dashboard/commands`: checks, audits, starts; 202 with the command's id.
///
/// The work runs on its own task: a client that goes away mid-request must not leave an action
/// audited as accepted that then never starts.
async fn command(
    State(state): State<DashboardState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CommandBody>,
) -> Result<Response, DashboardError> {
    let who = who(addr, &headers);
    tokio::spawn(accept_command(state, who, body)).await.unwrap_or(Err(DashboardError::Internal))
}

/// Checks the command and its target, records the decision in the audit log (a refusal too),
/// and starts an accepted one; 202 with its id.
async fn accept_command(
    state: DashboardState,
    who: String,
    body: CommandBody,
) -> Result<Response, DashboardError> {
    let entry = |command: Option<&str>, outcome: &str, detail: Value| Entry {
        at: unix_millis(),
        who: who.clone(),
        command: command.map(str::to_owned),
        action: body.action.clone(),
        params: body.params(),
        outcome: outcome.to_owned(),
        detail,
    };
    let (command, pidfd) = match check_command(&state, &body) {
        Ok(checked) => checked,
        Err(refusal) => {
            let detail = json!({ "code": refusal.code(), "message": refusal.to_string() });
            let refused = entry(None, "refused", detail);
            state.audit.record(refused).await.map_err(DashboardError::AuditUnavailable)?;
            return Err(refusal);
        }
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let accepted = entry(Some(&id), "accepted", Value::Null);
    state.audit.record(accepted).await.map_err(DashboardError::AuditUnavailable)?;
    let record = CommandRecord {
        id: id.clone(),
        action: body.action.clone(),
        params: body.params(),
        state: "started",
        outcome: None,
        started_at: unix_millis(),
        finished_at: None,
    };
    state.board.command(record.clone());
    tokio::spawn(carry_out(state, command, pidfd, record, entry(Some(&id), "", Value::Null)));
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": id, "state": "started" }))).into_response())
}

/// The command, with a pidfd for its target process (checked: one this server may act on).
fn check_command(
    state: &DashboardState,
    body: &CommandBody,
) -> Result<(Command, Option<OwnedFd>), DashboardError> {
    let command = body.check()?;
    let pidfd = match command.target() {
        Some(pid) => Some(control::may_act_on(pid, state.allow_control_all)?),
        None => None,
    };
    Ok((command, pidfd))
}

/// Carries out an accepted command, then records its outcome: in the audit log (as `finished`
/// with the outcome filled in), then on the board, for every viewer.
async fn carry_out(
    state: DashboardState,
    command: Command,
    pidfd: Option<OwnedFd>,
    record: CommandRecord,
    finished: Entry,
) {
    let result = match command {
        Command::SetInterval(interval) => {
            state.board.interval.send_replace(interval);
            Ok(json!({ "interval_ms": interval.as_millis() as u64 }))
        }
        Command::Renice { pid, nice } => control::renice(pid, nice),
        Command::Terminate { pid, grace } => match pidfd {
            Some(pidfd) => control::terminate(pid, pidfd, grace).await,
            None => Err(control::Failure {
                code: "os_error",
                message: "no pidfd for the process".to_owned(),
            }),
        },
    };
    let (outcome, detail) = match result {
        Ok(done) => ("completed", done),
        Err(failure) => ("failed", failure.to_json()),
    };
    // On disk first, as with the acceptance: an outcome a viewer has seen is always on record,
    // so an audit read after the event lists it.
    let at = unix_millis();
    let entry = Entry { at, outcome: outcome.to_owned(), detail: detail.clone(), ..finished };
    if let Err(error) = state.audit.record(entry).await {
        tracing::error!(%error, "cannot write the outcome of a dashboard command to the audit log");
    }
    state.board.command(CommandRecord {
        state: outcome,
        outcome: Some(detail),
        finished_at: Some(at),
        ..record
    });
}

/// `POST /dashboard/alerts/{id}/ack`: marks the alert acknowledged for every viewer.
async fn acknowledge(
    State(state): State<DashboardState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Response, DashboardError> {
    let id: u64 = id.parse().map_err(|_| DashboardError::InvalidAlertId(id))?;
    let who = who(addr, &headers);
    let unknown = || DashboardError::UnknownAlert(id);
    let metric = state.board.alert(id).ok_or_else(unknown)?.metric;
    // On disk first: an acknowledgement every viewer sees is always on record.
    let entry = Entry {
        at: unix_millis(),
        who: who.clone(),
        command: None,
        action: "acknowledge".to_owned(),
        params: json!({ "alert": id, "metric": metric }),
        outcome: "completed".to_owned(),
        detail: Value::Null,
    };
    state.audit.record(entry).await.map_err(DashboardError::AuditUnavailable)?;
    let alert = state.board.acknowledge(id, who).map_err(|AckError::Unknown| unknown())?;
    Ok(axum::Json(alert).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
    /// The access token may ride in the query (it is checked by the server's middleware).
    #[allow(dead_code)]
    token: Option<String>,
}

/// `GET /dashboard/audit?limit=N`: the newest entries first (100 unless `limit`, at most 1000).
async fn audit_log(
    State(state): State<DashboardState>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Response, DashboardError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(DashboardError::LimitOutOfRange);
    }
    let entries = state.audit.newest(limit);
    Ok(axum::Json(json!({ "entries": entries })).into_response())
}
