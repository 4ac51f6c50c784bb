//! Remote execution: programs run in a sandbox, their output streamed over SSE with exact
//! replay, their stdin and signals sent by POST, and every end explained.
//!
//! | part | job |
//! |---|---|
//! | [`spec`] | what a run request may ask |
//! | [`sandbox`] | bubblewrap (or `unshare`) and rlimits: the command line a run executes |
//! | [`cgroup`] | a cgroup per run: its whole memory, its processes, its CPU share |
//! | [`run_uids`] | the uids runs get as root, outside every subordinate id range |
//! | [`output`] | the run's event log: ids, replay, the output cap and `dropped` |
//! | [`run`] | the child process: pipes, stdin, signals, timeout, the exit reason |
//! | [`flags`] | the exec flags, turned into an [`ExecConfig`] with the sandbox checked |
//! | [`journal`] | `exec-runs.jsonl`: every run's start and end, so a restart reports what it stopped |
//! | `owner` | with several instances: which one owns a run or workflow ([`crate::owner_routing`]) |
//! | [`workflow_state`] | what a workflow is: its steps, approvals and numbered event log |
//! | `workflow_endpoints` | the workflow endpoints and the task that runs a workflow's steps |
//!
//! A run's events (`stdout`, `stderr`, `dropped`, `exit`) are numbered from 1 and all kept, up to
//! the output cap, so a page that reconnects or a second viewer gets the whole output from the
//! start or from its `Last-Event-ID`; after `exit` the stream ends and a reconnect that has seen
//! everything gets `204 No Content`, which stops the browser. The `exit` event is the last thing a
//! run does: its end is recorded (the list says `finished`, signals get 409), its sandbox slot given
//! back and its journal line written first, so what a viewer of `exit` asks next finds it done.

pub mod cgroup;
pub mod error;
pub mod flags;
pub mod journal;
pub mod output;
mod owner;
pub mod run;
pub mod run_uids;
pub mod sandbox;
pub mod spec;
mod workflow_endpoints;
pub mod workflow_state;

use std::collections::VecDeque;
use std::ops::RangeInclusive;
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
use sse_core::edge::{JsonBody, PathParams};
use sse_core::stream::{LastEventId, LiveResponse, sse_response, with_prelude};
use sse_core::sync::lock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::shared::audit::AuditLog;
use cgroup::{RunGroup, RunGroups};
use error::ExecError;
use journal::{Journal, PastRun};
use output::Output;
use run::{Run, StdinError, UserSignal};
use sandbox::{Isolation, Limits, Placement};
use spec::{RunRequest, RunSpec};

/// A checked sandbox: the kind of isolation, and the cgroups runs are placed in.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// How runs are isolated.
    pub isolation: Isolation,
    /// The parent of the runs' cgroups; `None` only when started with `--no-cgroup`.
    pub groups: Option<Arc<RunGroups>>,
}

impl Sandbox {
    /// Sets up `isolation` (with a cgroup per run unless `no_cgroup`) and checks that a run can
    /// really start in it, by running `/bin/true` as a run would, as `probe_uid` when root. The
    /// error says what failed and what to do; nothing falls back to a weaker sandbox by itself.
    pub fn prepare(
        isolation: Isolation,
        no_cgroup: bool,
        probe_uid: Option<u32>,
    ) -> Result<Sandbox, String> {
        let groups = if no_cgroup {
            None
        } else if !is_root() && isolation != Isolation::Bubblewrap {
            // Runs would have the server's uid, which owns their groups' files, and see them:
            // a run could lift its own limits or leave its group.
            return Err(format!(
                "a cgroup cannot bind runs of the {} sandbox when the server is not root (they \
                 would share its uid, which owns the group); use bubblewrap, run as root, or \
                 start with --no-cgroup",
                isolation.name()
            ));
        } else {
            let groups = RunGroups::create().map_err(|why| {
                format!(
                    "no cgroup can be made for runs here ({why}); run the server as root, or \
                     as a user in a delegated cgroup (systemd-run --user -p Delegate=yes \
                     --scope ...), or start it with --no-cgroup to bound runs by rlimits only"
                )
            })?;
            Some(Arc::new(groups))
        };
        let probe_group = match &groups {
            Some(groups) => Some(
                groups
                    .run(&Limits::default())
                    .map_err(|e| format!("cannot make a cgroup for a run: {e}"))?,
            ),
            None => None,
        };
        isolation.probe(probe_uid, probe_group.as_ref()).map_err(|why| match isolation {
            Isolation::Bubblewrap => format!(
                "a run cannot start in bubblewrap here: {why}. Install it (apt-get install \
                 bubblewrap) and allow unprivileged user namespaces, or ask for a weaker \
                 sandbox with --sandbox unshare (the host's files stay readable) or \
                 --no-sandbox"
            ),
            _ => format!("a run cannot start in the {} sandbox here: {why}", isolation.name()),
        })?;
        Ok(Sandbox { isolation, groups })
    }

    /// Whether what was checked at start is still in place: the sandbox's program and the runs'
    /// parent cgroup (removed by hand, or by a cgroup manager, runs could no longer start).
    pub fn still_usable(&self) -> Result<(), String> {
        if self.isolation != Isolation::None {
            let program = self.isolation.program();
            let found = ["/usr/local/bin", "/usr/bin", "/bin"]
                .iter()
                .any(|dir| std::path::Path::new(dir).join(program).exists());
            if !found {
                return Err(format!("{program} is no longer installed"));
            }
        }
        match &self.groups {
            Some(groups) => groups.still_there(),
            None => Ok(()),
        }
    }

    /// As start-up, the page and `/metrics` name it, e.g. `bubblewrap, cgroup v1`.
    pub fn describe(&self) -> String {
        match &self.groups {
            Some(groups) => {
                format!("{}, cgroup {}", self.isolation.name(), groups.version().name())
            }
            None => format!("{}, no cgroup (rlimits only)", self.isolation.name()),
        }
    }
}

/// The uids for `slots` runs and the start-up probe (the one after them), from `base` when
/// given (which must be free of subordinate ranges), else from the first free stretch.
pub fn run_uid_range(base: Option<u32>, slots: u32) -> Result<(RangeInclusive<u32>, u32), String> {
    let ranges = run_uids::subordinate_ranges();
    let start = base.unwrap_or(run_uids::DEFAULT_BASE);
    let uids = run_uids::choose(start, slots + 1, base.is_some(), &ranges, run_uids::is_account)?;
    Ok((*uids.start()..=*uids.end() - 1, *uids.end()))
}

/// Settings of the exec app.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Where the journal and the approvals log are kept.
    pub data_dir: PathBuf,
    /// The sandbox, or why none can be used (runs are then refused with that reason).
    pub sandbox: Result<Sandbox, String>,
    /// The uids runs get when the server is root, one per concurrent run.
    pub run_uids: RangeInclusive<u32>,
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
    /// Defaults: 30 s (and at most that), 4 runs at once, 4 MiB of output each, 100 runs kept,
    /// run uids from [`run_uids::DEFAULT_BASE`] (for servers that choose their own, see
    /// [`run_uids::choose`]).
    pub fn new(data_dir: PathBuf, sandbox: Result<Sandbox, String>) -> ExecConfig {
        ExecConfig {
            data_dir,
            sandbox,
            run_uids: run_uids::DEFAULT_BASE..=run_uids::DEFAULT_BASE + 63,
            limits: Limits::default(),
            timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(30),
            max_concurrent: 4,
            output_cap: 4 << 20,
            kept_runs: 100,
        }
    }

    /// The defaults in bubblewrap with a cgroup per run, checked by a probe run (when that fails,
    /// runs are refused with the reason).
    pub fn checked(data_dir: PathBuf) -> ExecConfig {
        const SLOTS: u32 = 64;
        match run_uid_range(None, SLOTS) {
            Ok((uids, probe_uid)) => {
                let probe_uid = is_root().then_some(probe_uid);
                let sandbox = Sandbox::prepare(Isolation::Bubblewrap, false, probe_uid);
                ExecConfig { run_uids: uids, ..ExecConfig::new(data_dir, sandbox) }
            }
            Err(why) => ExecConfig::new(data_dir, Err(why)),
        }
    }
}

#[derive(Clone, Debug)]
struct ExecState {
    core: Core,
    config: Arc<ExecConfig>,
    runs: Arc<Mutex<VecDeque<Arc<Run>>>>,
    slots: Arc<Semaphore>,
    free_uids: Arc<Mutex<Vec<u32>>>,
    workflows: Arc<Mutex<VecDeque<Arc<workflow_state::Workflow>>>>,
    /// Where approval decisions are recorded.
    approvals: AuditLog,
    /// Where runs' starts and ends are recorded.
    journal: Journal,
    /// Where the scratch directories of runs outside bubblewrap go (bubblewrap's `/work` is a
    /// tmpfs): a directory of random name, removed with the server.
    scratch_root: Arc<Option<tempfile::TempDir>>,
}

/// The exec routes, mounted at `/exec`, with the runs from before this start listed (those that
/// were running when the server stopped, as `interrupted`). Fails only if the approvals log or
/// the run journal cannot be opened.
pub fn router(core: Core, config: ExecConfig) -> std::io::Result<Router> {
    let approvals = AuditLog::open(&config.data_dir, "exec-approvals.jsonl")?;
    let (journal, past) = Journal::open(&config.data_dir, config.kept_runs)?;
    let runs = restore(&core, past);
    let slots = Arc::new(Semaphore::new(config.max_concurrent));
    let uids = config.run_uids.clone().take(config.max_concurrent).collect();
    register_sandbox_info(&core, &config);
    register_sandbox_check(&core, &config);
    let scratch_root = match &config.sandbox {
        Ok(sandbox) if sandbox.isolation != Isolation::Bubblewrap => Some(scratch_root()?),
        _ => None,
    };
    let state = ExecState {
        core,
        config: Arc::new(config),
        runs: Arc::new(Mutex::new(runs)),
        slots,
        free_uids: Arc::new(Mutex::new(uids)),
        workflows: Arc::default(),
        approvals,
        journal,
        scratch_root: Arc::new(scratch_root),
    };
    Ok(Router::new()
        .route("/exec", get(page))
        .route("/exec/", get(page))
        .route("/exec/runs", get(list).post(start))
        .route("/exec/runs/{id}/events", get(events))
        .route("/exec/runs/{id}/stdin", post(stdin))
        .route("/exec/runs/{id}/signal", post(signal))
        .route("/exec/runs/{id}/resize", post(resize))
        .route("/exec/workflows", get(workflow_endpoints::list).post(workflow_endpoints::start))
        .route("/exec/workflows/{id}/events", get(workflow_endpoints::events))
        .route("/exec/workflows/{id}/approvals/{step}", post(workflow_endpoints::decide))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::owner_routing::route::<ExecState>,
        ))
        .with_state(state))
}

#[derive(Template, WebTemplate)]
#[template(path = "exec.html")]
struct ExecPage {
    isolation: String,
    max_timeout: u64,
}

async fn page(State(state): State<ExecState>) -> ExecPage {
    ExecPage {
        isolation: sandbox_name(&state.config.sandbox),
        max_timeout: state.config.max_timeout.as_secs(),
    }
}

/// The runs from before this start, newest first.
fn restore(core: &Core, past: Vec<PastRun>) -> VecDeque<Arc<Run>> {
    past.into_iter().map(|past| Arc::new(Run::restored(past, core.metrics.clone()))).collect()
}

fn sandbox_name(sandbox: &Result<Sandbox, String>) -> String {
    match sandbox {
        Ok(sandbox) => sandbox.describe(),
        Err(why) => format!("unavailable, runs are refused: {why}"),
    }
}

/// `sse_exec_sandbox_info{isolation, cgroup}` in `/metrics`, so an operator sees which sandbox
/// runs are in (or `unavailable`).
fn register_sandbox_info(core: &Core, config: &ExecConfig) {
    let (isolation, cgroup) = match &config.sandbox {
        Ok(sandbox) => (
            sandbox.isolation.name(),
            sandbox.groups.as_ref().map_or("none", |groups| groups.version().name()),
        ),
        Err(_) => ("unavailable", "none"),
    };
    let labels = vec![
        ("isolation".to_owned(), isolation.to_owned()),
        ("cgroup".to_owned(), cgroup.to_owned()),
    ];
    core.metrics.register(
        "exec_sandbox",
        "The sandbox exec's runs start in",
        prometheus_client::metrics::info::Info::new(labels),
    );
}

/// `/readyz`'s `exec_sandbox`: the sandbox checked at start is still there (its program, its
/// runs' parent cgroup), or why runs are refused.
fn register_sandbox_check(core: &Core, config: &ExecConfig) {
    let sandbox = config.sandbox.clone();
    core.ready.register("exec_sandbox", move || {
        let outcome = match &sandbox {
            Err(why) => Err(why.clone()),
            Ok(sandbox) => sandbox.still_usable(),
        };
        async move { outcome }
    });
}

/// The directory for the scratch directories of runs outside bubblewrap: random name, owned by
/// the server, 0711 so a run uid can reach its own 0700 directory in it but list nothing.
fn scratch_root() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::Builder::new().prefix("sse-apps-runs-").tempdir()?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711))?;
    Ok(root)
}

impl ExecState {
    fn find(&self, id: &str) -> Result<Arc<Run>, ExecError> {
        lock(&self.runs)
            .iter()
            .find(|run| run.id == id)
            .cloned()
            .ok_or_else(|| ExecError::UnknownRun(id.to_owned()))
    }
}

fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// `POST /exec/runs`: checks, takes a slot, starts the run; 201 with its id.
async fn start(
    State(state): State<ExecState>,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<Response, ExecError> {
    let sandbox = state.sandbox()?;
    let spec = state.check(request)?;
    let permit = state
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ExecError::TooManyRuns(state.config.max_concurrent))?;
    let run = state.launch(&spec, &sandbox, permit).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": run.id }))).into_response())
}

impl ExecState {
    /// The sandbox, or 503 saying why there is none.
    fn sandbox(&self) -> Result<Sandbox, ExecError> {
        self.config.sandbox.clone().map_err(ExecError::SandboxUnavailable)
    }

    /// Checks a run request against this server's limits and what is installed.
    fn check(&self, request: RunRequest) -> Result<RunSpec, ExecError> {
        let spec = request.check(self.config.timeout, self.config.max_timeout)?;
        if spec.label == "python3" && !std::path::Path::new("/usr/bin/python3").exists() {
            return Err(ExecError::invalid(
                "language_unavailable",
                "python3 is not installed on this server",
            ));
        }
        Ok(spec)
    }

    /// Starts a run of `spec` in the slot `permit` holds: its start journaled (503 if that
    /// fails: a run the server cannot account for after a crash is not started), a uid, its
    /// place (see [`ExecState::place`]), the child (spawned before this returns, so stdin sent right after finds the
    /// program), and the task that supervises it, journals its end and cleans up.
    async fn launch(
        &self,
        spec: &RunSpec,
        sandbox: &Sandbox,
        permit: OwnedSemaphorePermit,
    ) -> Result<Arc<Run>, ExecError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let run = Arc::new(Run::new(id, spec, self.config.output_cap, self.core.metrics.clone()));
        owner::own(self, owner::RUN, &run.id).await;
        if let Err(error) = self.journal.started(&run.id, &run.label, run.started_at).await {
            tracing::error!(%error, "cannot write the run journal; the run is refused");
            return Err(ExecError::JournalUnavailable);
        }
        // Returned to the pool when the run's task ends, however it ends.
        let uid = UidLease::take(&self.free_uids);
        {
            let mut runs = lock(&self.runs);
            runs.push_front(run.clone());
            // The oldest finished runs go first; running ones are never forgotten.
            forget_oldest(&mut runs, self.config.kept_runs, |r| r.exit().is_some());
        }
        let (child, placement, group) = match self.place(&run.id, uid.uid, sandbox) {
            Ok((placement, group)) => {
                let command = sandbox::command(
                    sandbox.isolation,
                    &self.config.limits,
                    &placement,
                    group.as_ref(),
                    &spec.argv,
                    spec.terminal.is_some(),
                );
                (run.spawn(command.into(), spec.terminal), Some(placement), group)
            }
            Err(why) => {
                run.fail(&why);
                (None, None, None)
            }
        };
        let (supervised, timeout, journal) = (run.clone(), spec.timeout, self.journal.clone());
        tokio::spawn(async move {
            if let Some(child) = child {
                supervised.clone().supervise(child, timeout, group.as_ref()).await;
            }
            if let Some(group) = group {
                group.remove().await;
            }
            if let Some(scratch) = placement.and_then(|p| p.scratch) {
                let _ = tokio::fs::remove_dir_all(&scratch).await;
            }
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

    /// Where run `id` happens: its uid, a scratch directory outside bubblewrap, its cgroup.
    fn place(
        &self,
        id: &str,
        uid: Option<u32>,
        sandbox: &Sandbox,
    ) -> Result<(Placement, Option<RunGroup>), String> {
        if is_root() && uid.is_none_or(|uid| uid == 0) {
            // A root server never runs a program as root: no free uid, no run.
            return Err("no run uid is free".to_owned());
        }
        let scratch = match self.scratch_root.as_ref() {
            Some(root) => {
                let dir = root.path().join(id);
                prepare_scratch(&dir, uid)
                    .map_err(|e| format!("cannot prepare the scratch directory: {e}"))?;
                Some(dir)
            }
            None => None,
        };
        let group = match &sandbox.groups {
            Some(groups) => Some(
                groups
                    .run(&self.config.limits)
                    .map_err(|e| format!("cannot make the run's cgroup: {e}"))?,
            ),
            None => None,
        };
        Ok((Placement { scratch, uid }, group))
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

/// A private directory for one run (0700), owned by the uid it runs as.
fn prepare_scratch(scratch: &std::path::Path, uid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(scratch)?;
    if let Some(uid) = uid {
        sandbox::give_to(scratch, uid)?;
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
                "terminal": run.terminal,
                "started_at": run.started_at,
                "state": if run.exit().is_some() { "finished" } else { "running" },
                "exit": run.exit(),
            })
        })
        .collect();
    let theirs = owner::others(&state, &headers, "/exec/runs", "runs").await;
    let runs = owner::merged(ours, theirs);
    let (isolation, cgroup) = match &state.config.sandbox {
        Ok(sandbox) => {
            (sandbox.isolation.name(), sandbox.groups.as_ref().map(|g| g.version().name()))
        }
        Err(_) => ("unavailable", None),
    };
    axum::Json(json!({ "runs": runs, "sandbox": isolation, "cgroup": cgroup })).into_response()
}

/// `GET /exec/runs/{id}/events`: the output from the start or after `Last-Event-ID`, then live.
async fn events(
    State(state): State<ExecState>,
    PathParams(id): PathParams<String>,
    last_event_id: LastEventId,
) -> Result<Response, ExecError> {
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
    fn find_workflow(&self, id: &str) -> Result<Arc<workflow_state::Workflow>, ExecError> {
        let workflows = lock(&self.workflows);
        let found = workflows.iter().find(|w| w.id == id).cloned();
        found.ok_or_else(|| ExecError::UnknownWorkflow(id.to_owned()))
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
) -> Result<Response, ExecError> {
    let run = state.find(&id)?;
    match run.write_stdin(body.data.as_bytes(), body.eof).await {
        Ok(()) => {
            Ok(axum::Json(json!({ "written": body.data.len(), "eof": body.eof })).into_response())
        }
        Err(StdinError::Closed) => Err(ExecError::StdinClosed),
        Err(StdinError::NotReading { written }) => Err(ExecError::StdinFull(written)),
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
) -> Result<Response, ExecError> {
    let run = state.find(&id)?;
    let signal = match body.signal.as_str() {
        "interrupt" => UserSignal::Interrupt,
        "terminate" => UserSignal::Terminate,
        "kill" => UserSignal::Kill,
        other => {
            return Err(ExecError::invalid(
                "unknown_signal",
                format!("unknown signal {other:?}; use interrupt, terminate or kill"),
            ));
        }
    };
    if !run.signal(signal) {
        return Err(ExecError::RunFinished);
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
) -> Result<Response, ExecError> {
    let run = state.find(&id)?;
    // `null` is no size, as zero is none.
    let (rows, cols) = spec::check_size(body.rows.unwrap_or(0), body.cols.unwrap_or(0))?;
    match run.resize(rows, cols).await {
        Ok(true) => Ok(axum::Json(json!({ "rows": rows, "cols": cols })).into_response()),
        Ok(false) => Err(ExecError::NotATerminal),
        Err(error) => Err(ExecError::ResizeFailed(error.to_string())),
    }
}
