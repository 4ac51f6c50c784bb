//! Runs and workflows on other instances, when several share a Redis (`--redis`).
//!
//! A run is a child process of the instance that started it and stays there, and so does a
//! workflow (it starts its steps' runs); what moves is the requests for them. Starting one
//! records this instance as its owner in Redis (`sse:owner:exec-run:<id>`,
//! `sse:owner:exec-workflow:<id>`); a request for one this instance does not have (a run's stream,
//! stdin, signal or resize; a workflow's stream or approvals) is forwarded to the owner
//! ([`crate::forward`]), so a page behind a load balancer watches and controls it whichever
//! instance each request reaches. The lists merge every live instance's.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::ExecState;
use crate::forward;

/// What a run's owner record is called in Redis.
pub const RUN: &str = "exec-run";
/// What a workflow's owner record is called in Redis.
pub const WORKFLOW: &str = "exec-workflow";
/// How long an owner record lasts: longer than any run (30 min at most) and the while its kept
/// output stays useful.
const OWNED_FOR: Duration = Duration::from_secs(24 * 3600);

/// Records this instance as the owner of the `kind` thing `id`, if it is one of several.
pub async fn own(state: &ExecState, kind: &str, id: &str) {
    let Some(cluster) = state.core.cluster() else { return };
    if let Err(error) = cluster.own(kind, id, OWNED_FOR).await {
        // It goes on here; only requests for it that reach other instances will miss it.
        tracing::warn!(%error, kind, id, "cannot record the owner in Redis");
    }
}

/// The kind and id of what `/exec/runs/{id}/...` or `/exec/workflows/{id}/...` names.
fn named_in(path: &str) -> Option<(&'static str, &str)> {
    let (kind, rest) = if let Some(rest) = path.strip_prefix("/exec/runs/") {
        (RUN, rest)
    } else {
        (WORKFLOW, path.strip_prefix("/exec/workflows/")?)
    };
    let (id, _) = rest.split_once('/')?;
    (!id.is_empty()).then_some((kind, id))
}

impl ExecState {
    /// Whether this instance has the `kind` thing `id`.
    fn holds(&self, kind: &str, id: &str) -> bool {
        if kind == RUN {
            self.find(id).is_ok()
        } else {
            sse_core::sync::lock(&self.workflows).iter().any(|w| w.id == id)
        }
    }
}

/// Middleware: a request for a run or workflow another instance owns goes to that instance.
pub async fn to_owner(State(state): State<ExecState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.core.cluster() else { return next.run(request).await };
    let Some((kind, id)) = named_in(request.uri().path()).map(|(k, id)| (k, id.to_owned())) else {
        return next.run(request).await;
    };
    if forward::is_forwarded(request.headers()) || state.holds(kind, &id) {
        return next.run(request).await;
    }
    let what = if kind == RUN { "this run" } else { "this workflow" };
    match cluster.owner(kind, &id).await {
        Ok(Some(owner)) if owner != cluster.instance() => {
            forward::to_instance(cluster, &owner, what, request).await
        }
        // Nobody else owns it: this instance answers (404, or one restored after a restart).
        Ok(_) => next.run(request).await,
        Err(error) => {
            tracing::warn!(%error, kind, "cannot look up an owner in Redis");
            forward::unreachable(what)
        }
    }
}

/// The entries under `key` that every other live instance lists at `path` (see
/// [`forward::gather`]).
pub async fn others(state: &ExecState, headers: &HeaderMap, path: &str, key: &str) -> Vec<Value> {
    forward::gather(state.core.cluster(), headers, path, key).await
}

/// Our entries and theirs in one list, newest first like each instance's own.
pub fn merged(mut ours: Vec<Value>, theirs: Vec<Value>) -> Vec<Value> {
    ours.extend(theirs);
    ours.sort_by_key(|entry| std::cmp::Reverse(entry["started_at"].as_u64().unwrap_or(0)));
    ours
}

#[cfg(test)]
mod tests {
    use super::{RUN, WORKFLOW, named_in};

    #[test]
    fn finds_what_a_path_names() {
        assert_eq!(named_in("/exec/runs/abc/events"), Some((RUN, "abc")));
        assert_eq!(named_in("/exec/runs/abc/signal"), Some((RUN, "abc")));
        assert_eq!(named_in("/exec/workflows/w1/approvals/2"), Some((WORKFLOW, "w1")));
        assert_eq!(named_in("/exec/runs"), None);
        assert_eq!(named_in("/exec/runs//events"), None);
        assert_eq!(named_in("/exec/workflows"), None);
        assert_eq!(named_in("/exec/other/abc/events"), None);
    }

    #[test]
    fn merges_newest_first() {
        let entry = |id: &str, at: u64| serde_json::json!({ "id": id, "started_at": at });
        let merged = super::merged(vec![entry("a", 1), entry("c", 3)], vec![entry("b", 2)]);
        let ids: Vec<&str> = merged.iter().filter_map(|e| e["id"].as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
    }
}
