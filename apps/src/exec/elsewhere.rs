//! Runs on other instances, when several share a Redis (`--redis`).
//!
//! A run is a child process of the instance that started it and stays there; what moves is the
//! requests for it. Starting a run records this instance as its owner in Redis
//! (`sse:owner:exec-run:<id>`); a request for a run this instance does not have (its stream,
//! stdin, signal or resize) is forwarded to the owner ([`crate::forward`]), so a page behind a
//! load balancer watches and controls its run whichever instance each request reaches. The list
//! of runs merges every live instance's.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::ExecState;
use crate::forward;

/// What the owner records are called in Redis.
const KIND: &str = "exec-run";
/// How long an owner record outlives its run's start: longer than any run (30 min at most) and
/// its kept output is useful.
const OWNED_FOR: Duration = Duration::from_secs(24 * 3600);

/// Records this instance as the owner of run `id`, if it is one of several.
pub async fn own(state: &ExecState, id: &str) {
    let Some(cluster) = state.core.cluster() else { return };
    if let Err(error) = cluster.own(KIND, id, OWNED_FOR).await {
        // The run goes on here; only requests for it that reach other instances will miss it.
        tracing::warn!(%error, run = id, "cannot record the run's owner in Redis");
    }
}

/// The run id in `/exec/runs/{id}/...`.
fn run_id_in(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/exec/runs/")?;
    let (id, _) = rest.split_once('/')?;
    (!id.is_empty()).then_some(id)
}

/// Middleware: a request for a run another instance owns goes to that instance.
pub async fn to_owner(State(state): State<ExecState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.core.cluster() else { return next.run(request).await };
    let Some(id) = run_id_in(request.uri().path()).map(str::to_owned) else {
        return next.run(request).await;
    };
    if forward::is_forwarded(request.headers()) || state.find(&id).is_ok() {
        return next.run(request).await;
    }
    match cluster.owner(KIND, &id).await {
        Ok(Some(owner)) if owner != cluster.instance() => match cluster.address_of(&owner).await {
            Some(base) => forward::forward(&base, "this run", request).await,
            None => forward::unreachable("this run"),
        },
        // Nobody else owns it: this instance answers (404 unknown_run, or a restored run).
        Ok(_) => next.run(request).await,
        Err(error) => {
            tracing::warn!(%error, "cannot look up a run's owner in Redis");
            forward::unreachable("this run")
        }
    }
}

/// The runs of every other live instance (JSON, as their `GET /exec/runs` lists them), asked
/// with this request's headers; an instance that does not answer is left out and logged.
pub async fn other_runs(state: &ExecState, headers: &axum::http::HeaderMap) -> Vec<Value> {
    let Some(cluster) = state.core.cluster() else { return Vec::new() };
    if forward::is_forwarded(headers) {
        return Vec::new();
    }
    let mut runs = Vec::new();
    for base in cluster.other_addresses().await {
        let mut request = forward::client().get(format!("{base}/exec/runs"));
        for name in [axum::http::header::AUTHORIZATION, axum::http::header::COOKIE] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        let answer = request.header(forward::FORWARDED, "1").timeout(Duration::from_secs(2));
        match answer.send().await.and_then(reqwest::Response::error_for_status) {
            Ok(answer) => match answer.json::<Value>().await {
                Ok(mut listed) => {
                    if let Some(Value::Array(theirs)) = listed.get_mut("runs").map(Value::take) {
                        runs.extend(theirs);
                    }
                }
                Err(error) => tracing::warn!(%error, base, "unreadable run list from an instance"),
            },
            Err(error) => tracing::warn!(%error, base, "an instance did not list its runs"),
        }
    }
    runs
}

/// Our runs and theirs in one list, newest first like each instance's own.
pub fn merged(mut ours: Vec<Value>, theirs: Vec<Value>) -> Vec<Value> {
    ours.extend(theirs);
    ours.sort_by_key(|run| std::cmp::Reverse(run["started_at"].as_u64().unwrap_or(0)));
    ours
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_run_id_in_a_path() {
        assert_eq!(super::run_id_in("/exec/runs/abc/events"), Some("abc"));
        assert_eq!(super::run_id_in("/exec/runs/abc/signal"), Some("abc"));
        assert_eq!(super::run_id_in("/exec/runs"), None);
        assert_eq!(super::run_id_in("/exec/runs//events"), None);
        assert_eq!(super::run_id_in("/exec/workflows/abc/events"), None);
    }
}
