//! Which instance owns a run or a workflow, when several share a Redis (`--redis`): exec's
//! answer to [`crate::owner_routing`].
//!
//! A run is a child process of the instance that started it and stays there, and so does a
//! workflow (it starts its steps' runs); what moves is the requests for them. Starting one
//! records this instance as its owner in Redis (`sse:owner:exec-run:<id>`,
//! `sse:owner:exec-workflow:<id>`); a request for one this instance does not have (a run's stream,
//! stdin, signal or resize; a workflow's stream or approvals) goes to the owner, so a page behind
//! a load balancer watches and controls it whichever instance each request reaches. The lists
//! merge every live instance's.

use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use serde_json::Value;
use sse_core::cluster::Cluster;

use super::ExecState;
use crate::forward;
use crate::owner_routing::{FindOwner, Owner};

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

impl FindOwner for ExecState {
    fn cluster(&self) -> Option<&Cluster> {
        self.core.cluster()
    }

    /// The owner Redis names for the run or workflow a path names, unless this instance has it.
    async fn owner(&self, cluster: &Cluster, uri: &Uri, _: &HeaderMap) -> Owner {
        let Some((kind, id)) = named_in(uri.path()) else { return Owner::Here };
        if self.holds(kind, id) {
            return Owner::Here;
        }
        let what = if kind == RUN { "this run" } else { "this workflow" };
        match cluster.owner(kind, id).await {
            Ok(Some(owner)) if owner != cluster.instance() => {
                Owner::instance(cluster, &owner, what).await
            }
            // Nobody else owns it: this instance answers (404, or one restored after a restart).
            Ok(_) => Owner::Here,
            Err(error) => {
                tracing::warn!(%error, kind, "cannot look up an owner in Redis");
                Owner::Answer(forward::unreachable(what))
            }
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
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
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
