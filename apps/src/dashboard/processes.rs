//! `GET /dashboard/processes`: every process, searched, sorted and paged on the server, with
//! whether this server may act on each.
//!
//! The live stream carries only the busiest and the largest processes, because every viewer gets
//! every tick. Finding one process among hundreds (the `sleep 600` a user started) is a question
//! one page asks now and then, so it is a plain GET over the whole table. The table is refreshed
//! at most once a second whoever asks, which bounds its cost under many viewers and gives each
//! CPU figure at least a second to average over (a process's CPU % needs two refreshes: it is
//! `null` the first time a process is seen).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sse_core::edge::QueryParams;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind, Users};

use super::DashboardState;
use super::control::would_act_on;
use super::error::DashboardError;

/// How old the table may be before a request refreshes it.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// The longest search text.
const MAX_QUERY: usize = 100;
/// Rows per page at most, and by default.
const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;

/// One row of the list.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProcessRow {
    /// Process id.
    pub pid: u32,
    /// Executable name.
    pub name: String,
    /// Owner's user name (or uid, when it has no name).
    pub user: Option<String>,
    /// CPU busy, % of one core; `null` the first time the process is seen.
    pub cpu: Option<f64>,
    /// Resident memory in bytes.
    pub memory: u64,
    /// Whether this server may terminate or renice it (each action is checked again).
    pub actionable: bool,
}

/// Where the list's rows come from: the machine ([`ProcessTable`]), or a test's script.
pub trait ProcessSource: std::fmt::Debug + Send + Sync + 'static {
    /// Every process now.
    fn rows(&self) -> Arc<Vec<ProcessRow>>;
}

/// The machine's process table, refreshed on demand.
#[derive(Debug)]
pub struct ProcessTable {
    allow_all: bool,
    state: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    system: System,
    users: Users,
    seen: HashSet<Pid>,
    refreshed: Option<Instant>,
    rows: Arc<Vec<ProcessRow>>,
}

impl ProcessTable {
    /// An empty table; the first request fills it. `allow_all` is `--allow-control-all`.
    pub fn new(allow_all: bool) -> Result<ProcessTable, sysinfo::Error> {
        let table = Table {
            system: System::new()?,
            users: Users::new_with_refreshed_list()?,
            seen: HashSet::new(),
            refreshed: None,
            rows: Arc::default(),
        };
        Ok(ProcessTable { allow_all, state: Mutex::new(table) })
    }
}

impl ProcessSource for ProcessTable {
    /// Every process now (refreshed if the table is older than a second).
    fn rows(&self) -> Arc<Vec<ProcessRow>> {
        let mut table = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if table.refreshed.is_none_or(|at| at.elapsed() >= FRESH_FOR) {
            table.refresh(self.allow_all);
        }
        table.rows.clone()
    }
}

impl Table {
    fn refresh(&mut self, allow_all: bool) {
        let what = ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            // Always: a process may change its user (a daemon dropping root), and the list must
            // say whose it is now.
            .with_user(UpdateKind::Always);
        self.system.refresh_processes_specifics(ProcessesToUpdate::All, true, what);
        let cpu_ready = self.refreshed.is_some();
        let rows = self
            .system
            .processes()
            .values()
            .filter(|p| p.thread_kind().is_none())
            .map(|p| {
                let owner = p.user_id().map(|uid| **uid);
                ProcessRow {
                    pid: p.pid().as_u32(),
                    name: p.name().to_string_lossy().into_owned(),
                    user: p.user_id().map(|uid| match self.users.get_user_by_id(uid) {
                        Some(user) => user.name().to_owned(),
                        None => uid.to_string(),
                    }),
                    cpu: (cpu_ready && self.seen.contains(&p.pid()))
                        .then(|| f64::from(p.cpu_usage())),
                    memory: p.memory(),
                    actionable: would_act_on(p.pid().as_u32(), owner, allow_all),
                }
            })
            .collect();
        self.seen = self.system.processes().keys().copied().collect();
        self.rows = Arc::new(rows);
        self.refreshed = Some(Instant::now());
    }
}

/// The column to sort by.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SortKey {
    #[default]
    Cpu,
    Memory,
    Pid,
    Name,
    User,
}

/// `?q=&mine=&sort=&order=&offset=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProcessQuery {
    /// Matches a name or user containing it (any case), or a pid starting with it.
    #[serde(default)]
    q: String,
    /// Only the processes this server may act on.
    #[serde(default)]
    mine: bool,
    #[serde(default)]
    sort: SortKey,
    /// `asc` or `desc` (the default: busiest, largest, highest first; names A to Z).
    order: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
    /// The access token may ride in the query (it is checked by the server's middleware).
    #[allow(dead_code)]
    token: Option<String>,
}

/// `GET /dashboard/processes`: `{"total","matched","offset","limit","processes":[…]}`.
pub(super) async fn list(
    State(state): State<DashboardState>,
    QueryParams(query): QueryParams<ProcessQuery>,
) -> Result<Response, DashboardError> {
    let invalid = |code: &'static str, message: String| DashboardError::Invalid { code, message };
    if query.q.chars().count() > MAX_QUERY {
        return Err(invalid("query_too_long", format!("q may be at most {MAX_QUERY} characters")));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit_out_of_range", format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let descending = match query.order.as_deref() {
        None => !matches!(query.sort, SortKey::Name | SortKey::User),
        Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(invalid("invalid_order", format!("order is asc or desc, not {other:?}")));
        }
    };
    let table = state.processes.clone();
    let rows = tokio::task::spawn_blocking(move || table.rows())
        .await
        .map_err(|_| DashboardError::Internal)?;
    let needle = query.q.trim().to_lowercase();
    let mut matched: Vec<&ProcessRow> = rows
        .iter()
        .filter(|row| !query.mine || row.actionable)
        .filter(|row| needle.is_empty() || matches(row, &needle))
        .collect();
    sort(&mut matched, query.sort, descending);
    let page: Vec<&ProcessRow> = matched.iter().skip(query.offset).take(limit).copied().collect();
    Ok(axum::Json(json!({
        "total": rows.len(),
        "matched": matched.len(),
        "offset": query.offset,
        "limit": limit,
        "processes": page,
    }))
    .into_response())
}

/// Whether `row` matches the lowercased search text `needle`.
fn matches(row: &ProcessRow, needle: &str) -> bool {
    row.pid.to_string().starts_with(needle)
        || row.name.to_lowercase().contains(needle)
        || row.user.as_deref().is_some_and(|user| user.to_lowercase().contains(needle))
}

fn sort(rows: &mut [&ProcessRow], key: SortKey, descending: bool) {
    if let SortKey::Name = key {
        // Each name lowercased once, not once per comparison.
        rows.sort_by_cached_key(|row| (row.name.to_lowercase(), row.pid));
        if descending {
            rows.reverse();
        }
        return;
    }
    rows.sort_by(|a, b| {
        let order = match key {
            SortKey::Cpu => a.cpu.unwrap_or(-1.0).total_cmp(&b.cpu.unwrap_or(-1.0)),
            SortKey::Memory => a.memory.cmp(&b.memory),
            SortKey::Pid => a.pid.cmp(&b.pid),
            SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            SortKey::User => a.user.cmp(&b.user),
        }
        // Ties in a stable order, so paging neither repeats nor skips a row.
        .then(a.pid.cmp(&b.pid));
        if descending { order.reverse() } else { order }
    });
}
