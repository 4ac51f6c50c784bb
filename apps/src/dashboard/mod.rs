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
//! | [`audit`] | the on-disk record of every action |
//! | [`flags`] | the dashboard's flags, turned into a [`DashboardConfig`] |
//!
//! A tick flows sampler → board → topic → every viewer's stream; a control action flows
//! POST → checks → audit (synced) → `command_started` → 202, then runs, audits the outcome and
//! reports `command_completed` or `command_failed`: every event a viewer sees is on record first.
//!
//! The server that serves the dashboard always requires its token (one is generated and printed
//! when `--token` is not given), for viewing too: process lists are sensitive, and on a shared
//! machine every local user can reach a loopback port.

pub mod alerts;
pub mod audit;
pub mod board;
pub mod cgroup;
pub mod control;
mod elsewhere;
pub mod flags;
pub mod processes;
pub mod sample;
pub mod sampler;
pub mod system;

use std::net::SocketAddr;
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
use sse_core::edge::{ApiError, JsonBody, PathParams, QueryParams};
use sse_core::stream::LiveResponse;

use alerts::{AckError, AlertConfig};
use audit::{AuditLog, Entry};
use board::{Board, CommandRecord};
use control::{Command, CommandBody};
use sample::MetricSource;
use sampler::SamplerStats;
use system::unix_millis;

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
pub enum DashboardError {
    /// The audit log cannot be opened.
    #[error("cannot open the dashboard's audit log: {0}")]
    Audit(#[from] std::io::Error),
    /// The machine cannot be measured.
    #[error("cannot read system metrics: {0}")]
    System(#[from] sysinfo::Error),
}

#[derive(Clone, Debug)]
struct DashboardState {
    core: Core,
    board: Arc<Board>,
    audit: AuditLog,
    allow_control_all: bool,
    processes: Arc<processes::ProcessTable>,
}

/// The dashboard routes, mounted at `/dashboard`, measuring this machine.
pub fn router(core: Core, config: DashboardConfig) -> Result<Router, DashboardError> {
    let source = system::SystemSource::new()?;
    router_with_source(core, config, source)
}

/// The dashboard routes with ticks from `source` (tests drive alerts with their own).
pub fn router_with_source(
    core: Core,
    config: DashboardConfig,
    source: impl MetricSource,
) -> Result<Router, DashboardError> {
    let audit = AuditLog::open(&config.data_dir)?;
    let board = Arc::new(Board::new(core.hub.topic("dashboard"), config.interval, config.alerts));
    let stats = SamplerStats::register(&core.metrics);
    sampler::spawn(board.clone(), source, stats, core.shutdown_token());
    let processes = Arc::new(processes::ProcessTable::new(config.allow_control_all)?);
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
        .route("/dashboard/instances", get(elsewhere::instances))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), elsewhere::to_instance))
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

/// Who made a request, for the audit log: address and user agent.
pub fn who(addr: SocketAddr, headers: &HeaderMap) -> String {
    let agent = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let agent: String = agent.unwrap_or("no user agent").chars().take(120).collect();
    format!("{} ({agent})", addr.ip())
}

fn audit_unavailable(error: &std::io::Error) -> ApiError {
    tracing::error!(%error, "cannot write the dashboard audit log");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the audit log cannot be written, so no action is taken",
    )
    .retry_after(5)
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
) -> Result<Response, ApiError> {
    let who = who(addr, &headers);
    tokio::spawn(accept_command(state, who, body)).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the command failed",
        ))
    })
}

async fn accept_command(
    state: DashboardState,
    who: String,
    body: CommandBody,
) -> Result<Response, ApiError> {
    let entry = |command: Option<&str>, outcome: &str, detail: Value| Entry {
        at: unix_millis(),
        who: who.clone(),
        command: command.map(str::to_owned),
        action: body.action.clone(),
        params: body.params(),
        outcome: outcome.to_owned(),
        detail,
    };
    let checked = body.check().and_then(|command| {
        let pidfd = match command.target() {
            Some(pid) => Some(control::may_act_on(pid, state.allow_control_all)?),
            None => None,
        };
        Ok((command, pidfd))
    });
    let (command, pidfd) = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            let detail = json!({ "code": refusal.code, "message": refusal.message });
            state
                .audit
                .record(entry(None, "refused", detail))
                .await
                .map_err(|e| audit_unavailable(&e))?;
            return Err(refusal);
        }
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    state
        .audit
        .record(entry(Some(&id), "accepted", Value::Null))
        .await
        .map_err(|e| audit_unavailable(&e))?;
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
    let finished = entry(Some(&id), "", Value::Null);
    tokio::spawn(async move {
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
        // On disk first, as with the acceptance: an outcome a viewer has seen is always on
        // record, so an audit read after the event lists it.
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
    });
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": id, "state": "started" }))).into_response())
}

/// `POST /dashboard/alerts/{id}/ack`: marks the alert acknowledged for every viewer.
async fn acknowledge(
    State(state): State<DashboardState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request("invalid_alert_id", format!("{id:?} is not an alert id"))
    })?;
    let who = who(addr, &headers);
    let unknown = || ApiError::not_found("unknown_alert", format!("no alert has id {id}"));
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
    state.audit.record(entry).await.map_err(|e| audit_unavailable(&e))?;
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
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_out_of_range",
            "limit must be 1 to 1000",
        ));
    }
    let entries = state.audit.newest(limit);
    Ok(axum::Json(json!({ "entries": entries })).into_response())
}
