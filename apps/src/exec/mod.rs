//! Remote execution: programs run in a sandbox, their output streamed over SSE with exact
//! replay, their stdin and signals sent by POST, and every end explained.
//!
//! | part | job |
//! |---|---|
//! | [`spec`] | what a run request may ask |
//! | [`sandbox`] | bubblewrap (or `unshare`) and rlimits: the command line a run executes |
//! | [`output`] | the run's event log: ids, replay, the output cap and `dropped` |
//! | [`run`] | the child process: pipes, stdin, signals, timeout, the exit reason |
//! | [`journal`] | `exec-runs.jsonl`: every run's start and end, so a restart reports what it stopped |
//! | `elsewhere` | with several instances: requests for a run or workflow go to the instance that has it |
//!
//! A run's events (`stdout`, `stderr`, `dropped`, `exit`) are numbered from 1 and all kept, up to
//! the output cap, so a page that reconnects or a second viewer gets the whole output from the
//! start or from its `Last-Event-ID`; after `exit` the stream ends and a reconnect that has seen
//! everything gets `204 No Content`, which stops the browser. The `exit` event is the last thing a
//! run does: its end is recorded (the list says `finished`, signals get 409), its sandbox slot given
//! back and its journal line written first, so what a viewer of `exit` asks next finds it done.

mod elsewhere;
pub mod journal;
pub mod output;
pub mod run;
pub mod sandbox;
pub mod spec;
pub mod workflow;
mod workflows;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_core::Core;
use sse_core::edge::{ApiError, JsonBody, PathParams};
use sse_core::hub::lock;
use sse_core::stream::{LastEventId, LiveResponse, sse_response, with_prelude};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::dashboard::audit::AuditLog;
use journal::{Journal, PastRun};
use output::Output;
use run::{Run, StdinError, UserSignal};
use sandbox::{Isolation, Limits, Placement};
use spec::{RunRequest, RunSpec};

/// Settings of the exec app.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Where runs' scratch directories go (`<data_dir>/exec/<run id>`).
    pub data_dir: PathBuf,
    /// How runs are isolated; `None` when no sandbox can be set up (runs are then refused).
    pub isolation: Option<Isolation>,
    /// Limits of every run.
    pub limits: Limits,
    /// Wall-clock limit when a request asks none.
    pub timeout: Duration,
    /// The most a request may ask.
    pub max_timeout: Duration,
    /// Runs at once; more are refused with 429.
    pub max_concurrent: usize,
    /// Output bytes kept per run.
    pub output_cap: u64,
    /// Finished runs kept for the list and replay.
    pub kept_runs: usize,
}

impl ExecConfig {
    /// Defaults: 30 s (up to 30 min), 4 runs at once, 4 MiB of output each, 100 runs kept.
    pub fn new(data_dir: PathBuf, isolation: Option<Isolation>) -> ExecConfig {
        ExecConfig {
            data_dir,
            isolation,
            limits: Limits::default(),
            timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(1800),
            max_concurrent: 4,
            output_cap: 4 << 20,
            kept_runs: 100,
        }
    }
}

/// The first uid given to runs when the server is root (one per concurrent slot).
const RUN_UID_BASE: u32 = 200_000;

#[derive(Clone, Debug)]
struct ExecState {
    core: Core,
    config: Arc<ExecConfig>,
    runs: Arc<Mutex<VecDeque<Arc<Run>>>>,
    slots: Arc<Semaphore>,
    free_uids: Arc<Mutex<Vec<u32>>>,
    workflows: Arc<Mutex<VecDeque<Arc<workflow::Workflow>>>>,
    /// Where approval decisions are recorded.
    approvals: AuditLog,
    /// Where runs' starts and ends are recorded.
    journal: Journal,
}

/// The exec routes, mounted at `/exec`, with the runs from before this start listed (those that
/// were running when the server stopped, as `interrupted`). Fails only if the approvals log or
/// the run journal cannot be opened.
pub fn router(core: Core, config: ExecConfig) -> std::io::Result<Router> {
    let approvals = AuditLog::open_named(&config.data_dir, "exec-approvals.jsonl")?;
    let (journal, past) = Journal::open(&config.data_dir, config.kept_runs)?;
    let runs = restore(&core, &config, past);
    let slots = Arc::new(Semaphore::new(config.max_concurrent));
    let uids = (0..config.max_concurrent as u32).map(|slot| RUN_UID_BASE + slot).collect();
    let state = ExecState {
        core,
        config: Arc::new(config),
        runs: Arc::new(Mutex::new(runs)),
        slots,
        free_uids: Arc::new(Mutex::new(uids)),
        workflows: Arc::default(),
        approvals,
        journal,
    };
    Ok(Router::new()
        .route("/exec", get(page))
        .route("/exec/", get(page))
        .route("/exec/runs", get(list).post(start))
        .route("/exec/runs/{id}/events", get(events))
        .route("/exec/runs/{id}/stdin", post(stdin))
        .route("/exec/runs/{id}/signal", post(signal))
        .route("/exec/runs/{id}/resize", post(resize))
        .route("/exec/workflows", get(workflows::list).post(workflows::start))
        .route("/exec/workflows/{id}/events", get(workflows::events))
        .route("/exec/workflows/{id}/approvals/{step}", post(workflows::decide))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), elsewhere::to_owner))
        .with_state(state))
}

#[derive(Template, WebTemplate)]
#[template(path = "exec.html")]
struct ExecPage {
    isolation: &'static str,
}

async fn page(State(state): State<ExecState>) -> ExecPage {
    ExecPage { isolation: sandbox_name(state.config.isolation) }
}

/// The runs from before this start, newest first. An interrupted run's scratch directory is
/// left from its sandbox and removed here; the others' went when they ended.
fn restore(core: &Core, config: &ExecConfig, past: Vec<PastRun>) -> VecDeque<Arc<Run>> {
    past.into_iter()
        .map(|past| {
            if past.interrupted {
                let _ = std::fs::remove_dir_all(config.data_dir.join("exec").join(&past.id));
            }
            Arc::new(Run::restored(past, core.metrics.clone()))
        })
        .collect()
}

fn sandbox_name(isolation: Option<Isolation>) -> &'static str {
    isolation.map_or("unavailable: runs are refused", Isolation::name)
}

impl ExecState {
    fn find(&self, id: &str) -> Result<Arc<Run>, ApiError> {
        lock(&self.runs)
            .iter()
            .find(|run| run.id == id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("unknown_run", format!("no run has id {id:?}")))
    }
}

fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// `POST /exec/runs`: checks, takes a slot, starts the run; 201 with its id.
async fn start(
    State(state): State<ExecState>,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<Response, ApiError> {
    let isolation = state.isolation()?;
    let spec = state.check(request)?;
    let permit = state.slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_runs",
            format!(
                "{} runs are already running; wait for one to end",
                state.config.max_concurrent
            ),
        )
        .retry_after(1)
    })?;
    let run = state.launch(&spec, isolation, permit).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": run.id }))).into_response())
}

impl ExecState {
    /// The sandbox, or 503 when there is none.
    fn isolation(&self) -> Result<Isolation, ApiError> {
        self.config.isolation.ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox_unavailable",
                "no sandbox can be set up here (install bubblewrap), and the server was not \
                 started with --no-sandbox",
            )
        })
    }

    /// Checks a run request against this server's limits and what is installed.
    fn check(&self, request: RunRequest) -> Result<RunSpec, ApiError> {
        let spec = request.check(self.config.timeout, self.config.max_timeout)?;
        if spec.label == "python3" && !std::path::Path::new("/usr/bin/python3").exists() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "language_unavailable",
                "python3 is not installed on this server",
            ));
        }
        Ok(spec)
    }

    /// Starts a run of `spec` in the slot `permit` holds: its start journaled (503 if that
    /// fails: a run the server cannot account for after a crash is not started), a uid, a scratch
    /// directory, the child (spawned before this returns, so stdin sent right after finds the
    /// program), and the task that supervises it, journals its end and cleans up.
    async fn launch(
        &self,
        spec: &RunSpec,
        isolation: Isolation,
        permit: OwnedSemaphorePermit,
    ) -> Result<Arc<Run>, ApiError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let run = Arc::new(Run::new(id, spec, self.config.output_cap, self.core.metrics.clone()));
        elsewhere::own(self, elsewhere::RUN, &run.id).await;
        if let Err(error) = self.journal.started(&run.id, &run.label, run.started_at).await {
            tracing::error!(%error, "cannot write the run journal; the run is refused");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_unavailable",
                "the server cannot record the run in its journal, so it does not start it",
            ));
        }
        let id = &run.id;
        // Returned to the pool when the run's task ends, however it ends.
        let uid = UidLease::take(&self.free_uids);
        let scratch = self.config.data_dir.join("exec").join(id);
        let prepared = match uid.uid {
            // A root server never runs a program as root: no free uid, no run.
            None if is_root() => Err(std::io::Error::other("no run uid is free")),
            uid => prepare_scratch(&scratch, uid),
        };
        {
            let mut runs = lock(&self.runs);
            runs.push_front(run.clone());
            // The oldest finished runs go first; running ones are never forgotten.
            forget_oldest(&mut runs, self.config.kept_runs, |r| r.exit().is_some());
        }
        let placement = Placement { scratch: scratch.clone(), uid: uid.uid };
        let terminal = spec.terminal.is_some();
        let command =
            sandbox::command(isolation, &self.config.limits, &placement, &spec.argv, terminal);
        let child = match prepared {
            Ok(()) => run.spawn(command.into(), spec.terminal),
            Err(error) => {
                run.fail(&format!("cannot prepare the scratch directory: {error}"));
                None
            }
        };
        let (supervised, timeout, journal) = (run.clone(), spec.timeout, self.journal.clone());
        tokio::spawn(async move {
            if let Some(child) = child {
                supervised.clone().supervise(child, timeout).await;
            }
            let _ = tokio::fs::remove_dir_all(&scratch).await;
            drop((uid, permit));
            let exit = supervised.finished().await;
            if let Err(error) = journal.ended(&supervised.id, &exit).await {
                // The end is still shown; after a restart this run would read as interrupted.
                tracing::error!(%error, run = %supervised.id, "cannot journal a run's end");
            }
            // Last: whoever sees `exit` may act on it at once (list, signal, start another).
            supervised.announce_end(&exit);
        });
        Ok(run)
    }
}

/// Drops the oldest entries for which `finished` holds until at most `kept` remain (or only
/// unfinished ones are left over).
fn forget_oldest<T>(list: &mut VecDeque<T>, kept: usize, finished: impl Fn(&T) -> bool) {
    let mut excess = list.len().saturating_sub(kept);
    let mut index = list.len();
    while excess > 0 && index > 0 {
        index -= 1;
        if finished(&list[index]) {
            list.remove(index);
            excess -= 1;
        }
    }
}

/// A run uid taken from the pool (when the server is root), given back on drop.
#[derive(Debug)]
struct UidLease {
    uid: Option<u32>,
    pool: Arc<Mutex<Vec<u32>>>,
}

impl UidLease {
    fn take(pool: &Arc<Mutex<Vec<u32>>>) -> UidLease {
        let uid = if is_root() { lock(pool).pop() } else { None };
        UidLease { uid, pool: pool.clone() }
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        if let Some(uid) = self.uid {
            lock(&self.pool).push(uid);
        }
    }
}

/// A private directory for one run, owned by the uid it runs as.
fn prepare_scratch(scratch: &std::path::Path, uid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(scratch)?;
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o700))?;
    if let Some(uid) = uid {
        std::os::unix::fs::chown(scratch, Some(uid), Some(uid))?;
    }
    Ok(())
}

/// `GET /exec/runs`: the runs kept, newest first.
async fn list(State(state): State<ExecState>, headers: axum::http::HeaderMap) -> Response {
    let ours: Vec<Value> = lock(&state.runs)
        .iter()
        .map(|run| {
            json!({
                "id": run.id,
                "label": run.label,
                "started_at": run.started_at,
                "state": if run.exit().is_some() { "finished" } else { "running" },
                "exit": run.exit(),
            })
        })
        .collect();
    let theirs = elsewhere::others(&state, &headers, "/exec/runs", "runs").await;
    let runs = elsewhere::merged(ours, theirs);
    axum::Json(json!({ "runs": runs, "sandbox": sandbox_name(state.config.isolation) }))
        .into_response()
}

/// `GET /exec/runs/{id}/events`: the output from the start or after `Last-Event-ID`, then live.
async fn events(
    State(state): State<ExecState>,
    PathParams(id): PathParams<String>,
    last_event_id: LastEventId,
) -> Result<Response, ApiError> {
    let run = state.find(&id)?;
    Ok(replay(&state, &run.output, last_event_id))
}

/// An event log as a stream: from the start, or after `Last-Event-ID` (an id that is not one of
/// the log's replays everything: a viewer never misses output), live until the log ends; 204 for
/// a viewer of an ended log that has seen all of it, which stops a browser's reconnects.
fn replay(state: &ExecState, log: &Output, LastEventId(last_event_id): LastEventId) -> Response {
    let after = last_event_id.and_then(|text| text.parse::<u64>().ok()).unwrap_or(0);
    let (last, finished) = log.position();
    let after = if after > last { 0 } else { after };
    if finished && after == last {
        return StatusCode::NO_CONTENT.into_response();
    }
    let replay = log.replay_after(after);
    let (streams, metrics) = (&state.core.streams, &state.core.metrics);
    match replay.live {
        Some(live) => {
            LiveResponse::new(live).prelude(replay.frames).into_response(streams, metrics)
        }
        None => {
            let ended = Box::pin(futures_util::stream::empty());
            sse_response(with_prelude(replay.frames, ended), streams, metrics)
        }
    }
}

impl ExecState {
    fn find_workflow(&self, id: &str) -> Result<Arc<workflow::Workflow>, ApiError> {
        lock(&self.workflows).iter().find(|w| w.id == id).cloned().ok_or_else(|| {
            ApiError::not_found("unknown_workflow", format!("no workflow has id {id:?}"))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinBody {
    /// Text to write.
    #[serde(default)]
    data: String,
    /// Close stdin after writing.
    #[serde(default)]
    eof: bool,
}

/// `POST /exec/runs/{id}/stdin`: `{"data":"…","eof":false}`.
async fn stdin(
    State(state): State<ExecState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<StdinBody>,
) -> Result<Response, ApiError> {
    let run = state.find(&id)?;
    match run.write_stdin(body.data.as_bytes(), body.eof).await {
        Ok(()) => {
            Ok(axum::Json(json!({ "written": body.data.len(), "eof": body.eof })).into_response())
        }
        Err(StdinError::Closed) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "stdin_closed",
            "the run has ended or its input is closed",
        )),
        Err(StdinError::NotReading { written }) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stdin_full",
            format!(
                "the program has not read its input for 5 s; it took the first {written} bytes"
            ),
        )
        .retry_after(1)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalBody {
    signal: String,
}

/// `POST /exec/runs/{id}/signal`: `{"signal":"interrupt"|"terminate"|"kill"}`.
async fn signal(
    State(state): State<ExecState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<Response, ApiError> {
    let run = state.find(&id)?;
    let signal = match body.signal.as_str() {
        "interrupt" => UserSignal::Interrupt,
        "terminate" => UserSignal::Terminate,
        "kill" => UserSignal::Kill,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_signal",
                format!("unknown signal {other:?}; use interrupt, terminate or kill"),
            ));
        }
    };
    if !run.signal(signal) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_finished",
            "the run has already ended",
        ));
    }
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "signal": body.signal }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResizeBody {
    #[serde(deserialize_with = "sse_core::edge::numbers::saturating_u64")]
    rows: Option<u64>,
    #[serde(deserialize_with = "sse_core::edge::numbers::saturating_u64")]
    cols: Option<u64>,
}

/// `POST /exec/runs/{id}/resize`: `{"rows":24,"cols":80}` for a run in a terminal.
async fn resize(
    State(state): State<ExecState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<ResizeBody>,
) -> Result<Response, ApiError> {
    let run = state.find(&id)?;
    // `null` is no size, as zero is none.
    let (rows, cols) = spec::check_size(body.rows.unwrap_or(0), body.cols.unwrap_or(0))?;
    match run.resize(rows, cols).await {
        Ok(true) => Ok(axum::Json(json!({ "rows": rows, "cols": cols })).into_response()),
        Ok(false) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_terminal",
            "the run has no terminal (start it with pty:true), or has ended",
        )),
        Err(error) => Err(ApiError::new(StatusCode::CONFLICT, "resize_failed", error.to_string())),
    }
}
