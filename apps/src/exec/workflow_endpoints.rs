//! The workflow endpoints (`/exec/workflows...`: start, list, stream, decide an approval) and the
//! task that runs a workflow's steps; what a workflow is and how it keeps its state is
//! [`super::workflow_state`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sse_core::edge::{JsonBody, PathParams};
use sse_core::stream::LastEventId;

use super::error::ExecError;
use super::workflow_state::{DecideError, Decision, Definition, Settled, Workflow};
use super::{ExecState, lock, replay};
use crate::shared::audit::Entry;
use crate::shared::clock::unix_millis;

/// Workflows running at once; more are refused with 429.
const MAX_RUNNING: usize = 16;

/// `POST /exec/workflows`: a definition (JSON or TOML) checked and started; 201 with its id.
pub(super) async fn start(
    State(state): State<ExecState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ExecError> {
    let body = body.map_err(|rejection| sse_core::edge::bytes_rejection(&rejection))?;
    let sandbox = state.sandbox()?;
    let media = sse_core::edge::media_type(&headers);
    let definition: Definition = super::workflow_state::parse(&body, &media)?;
    let (name, steps) = definition.check(|request| state.check(request))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let workflow = Arc::new(Workflow::new(id.clone(), name, steps, state.core.metrics.clone()));
    {
        // Counted and added under one lock, so concurrent requests cannot pass the cap together.
        let mut workflows = lock(&state.workflows);
        if workflows.iter().filter(|w| w.outcome().is_none()).count() >= MAX_RUNNING {
            return Err(ExecError::TooManyWorkflows(MAX_RUNNING));
        }
        workflows.push_front(workflow.clone());
        super::forget_oldest(&mut workflows, state.config.kept_runs, |w| w.outcome().is_some());
    }
    let names: Vec<&str> = workflow.steps.iter().map(|s| s.name.as_str()).collect();
    workflow.events.event("workflow_started", &json!({ "name": workflow.name, "steps": names }));
    super::owner::own(&state, super::owner::WORKFLOW, &id).await;
    tokio::spawn(run_steps(state, workflow, sandbox));
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response())
}

/// Runs the steps in order; stops at the first rejection, expiry or failure.
async fn run_steps(state: ExecState, workflow: Arc<Workflow>, sandbox: super::Sandbox) {
    for (index, step) in workflow.steps.iter().enumerate() {
        if let Some((prompt, expiry)) = &step.approval {
            let decision = workflow.ask(index, prompt, *expiry).await;
            // On record first, then told: see the module doc of `workflow`. A decision that is
            // not on record is not acted on.
            if let Err(error) = record(&state, &workflow, index, decision.as_ref()).await {
                tracing::error!(%error, workflow = %workflow.id, "cannot record an approval decision");
                workflow.unrecorded(index);
                let why =
                    format!("the decision on step {:?} could not be recorded: {error}", step.name);
                return workflow.finish("failed", Some(index), why);
            }
            workflow.announce_decision(index, decision.as_ref());
            match decision {
                Some(decision) if decision.approve => {}
                Some(decision) => {
                    let why = format!(
                        "step {:?} was rejected by {}: {}",
                        step.name, decision.by, decision.comment
                    );
                    return workflow.finish("rejected", Some(index), why);
                }
                None => {
                    let why = format!("the approval of step {:?} expired", step.name);
                    return workflow.finish("expired", Some(index), why);
                }
            }
        }
        let Some(spec) = &step.run else { continue };
        // A workflow waits for a free slot rather than failing when runs are busy.
        let Ok(permit) = state.slots.clone().acquire_owned().await else { return };
        let run = match state.launch(spec, &sandbox, permit).await {
            Ok(run) => run,
            Err(error) => {
                let why = format!("step {:?} could not start: {}", step.name, error);
                return workflow.finish("failed", Some(index), why);
            }
        };
        let started = json!({ "step": index, "name": step.name, "run": run.id });
        workflow.events.event("step_started", &started);
        let exit = run.finished().await;
        let finished = json!({ "step": index, "name": step.name, "run": run.id, "exit": exit });
        workflow.events.event("step_finished", &finished);
        if exit["reason"] != "exited" || exit["code"] != 0 {
            let why = format!("step {:?} ended with {}", step.name, exit["reason"]);
            return workflow.finish("failed", Some(index), why);
        }
    }
    workflow.finish("succeeded", None, "every step succeeded".to_owned());
}

/// Writes a decision (or an expiry) to `exec-approvals.jsonl`, synced.
async fn record(
    state: &ExecState,
    workflow: &Workflow,
    index: usize,
    decision: Option<&Decision>,
) -> std::io::Result<()> {
    let (outcome, who, comment) = match decision {
        Some(d) => {
            (if d.approve { "approved" } else { "rejected" }, d.by.clone(), d.comment.clone())
        }
        None => ("expired", "nobody".to_owned(), String::new()),
    };
    let entry = Entry {
        at: unix_millis(),
        who,
        command: Some(workflow.id.clone()),
        action: "approval".to_owned(),
        params: json!({ "workflow": workflow.name, "step": index, "name": workflow.steps[index].name }),
        outcome: outcome.to_owned(),
        detail: json!({ "comment": comment }),
    };
    state.approvals.record(entry).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionBody {
    decision: String,
    #[serde(default)]
    comment: String,
}

/// `POST /exec/workflows/{id}/approvals/{step}`: `{"decision":"approve"|"reject","comment":"…"}`.
pub(super) async fn decide(
    State(state): State<ExecState>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    PathParams((id, step)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Response, ExecError> {
    let workflow = state.find_workflow(&id)?;
    let index: usize = step
        .parse()
        .ok()
        .filter(|i| *i < workflow.steps.len())
        .ok_or(ExecError::UnknownStep(step))?;
    let approve = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ExecError::invalid(
                "unknown_decision",
                format!("unknown decision {other:?}; use approve or reject"),
            ));
        }
    };
    if body.comment.chars().count() > 1000 {
        return Err(ExecError::invalid(
            "comment_too_long",
            "a comment may have at most 1000 characters",
        ));
    }
    let by = crate::shared::who::who(addr, &headers);
    let decision = Decision { approve, by: by.clone(), comment: body.comment.clone() };
    workflow.decide(index, decision).map_err(|DecideError::NotWaiting| ExecError::NotWaiting)?;
    // Answered once the decision is in the approvals log and its event is out.
    let not_recorded = match workflow.settled(index, Duration::from_secs(10)).await {
        Settled::Recorded => None,
        Settled::NotRecorded => {
            Some("the decision could not be recorded, so the workflow stopped without acting on it")
        }
        Settled::Pending => {
            Some("the decision was taken but is not recorded yet; see the workflow's events")
        }
    };
    if let Some(message) = not_recorded {
        return Err(ExecError::NotRecorded(message));
    }
    let decided = if approve { "approved" } else { "rejected" };
    Ok(axum::Json(json!({ "step": index, "decision": decided, "by": by, "comment": body.comment }))
        .into_response())
}

/// `GET /exec/workflows`: the workflows kept, newest first.
pub(super) async fn list(State(state): State<ExecState>, headers: HeaderMap) -> Response {
    let ours: Vec<Value> = lock(&state.workflows)
        .iter()
        .map(|w| {
            let steps: Vec<&str> = w.steps.iter().map(|s| s.name.as_str()).collect();
            json!({
                "id": w.id,
                "name": w.name,
                "steps": steps,
                "started_at": w.started_at,
                "state": if w.outcome().is_some() { "finished" } else { "running" },
                "outcome": w.outcome(),
            })
        })
        .collect();
    let theirs = super::owner::others(&state, &headers, "/exec/workflows", "workflows").await;
    let workflows = super::owner::merged(ours, theirs);
    axum::Json(json!({ "workflows": workflows })).into_response()
}

/// `GET /exec/workflows/{id}/events`: its progress from the start or after `Last-Event-ID`.
pub(super) async fn events(
    State(state): State<ExecState>,
    PathParams(id): PathParams<String>,
    last_event_id: LastEventId,
) -> Result<Response, ExecError> {
    let workflow = state.find_workflow(&id)?;
    Ok(replay(&state, &workflow.events, last_event_id))
}
