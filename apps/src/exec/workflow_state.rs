//! What a workflow is and the state it keeps: named steps run one after another, each a run in
//! the sandbox, where a step may first need a person's approval. Its endpoints, and the task that
//! runs its steps, are `workflow_endpoints`.
//!
//! A workflow has its own numbered event log (the same [`Output`] a run has), so its progress
//! replays exactly like a run's output: `workflow_started`, then per step `approval_requested`
//! and `approval_decided` (for steps that need approval), `step_started` (with the run's id,
//! whose own stream has the output) and `step_finished`, and last `workflow_finished`. An
//! approval asks every viewer; the first decision POSTed wins; one that does not come in time
//! expires. A rejected or expired approval, or a step that does not exit 0, stops the workflow
//! with that reason. Every decision (and expiry) is also a line in `exec-approvals.jsonl`, written
//! before `approval_decided` goes out and before the decision's POST is answered, so a decision
//! anyone has been told of is on record. A decision the log cannot take (a full disk, an I/O
//! error) is never acted on: the workflow stops as `failed`, no `approval_decided` goes out, and
//! the decision's POST is answered `503 not_recorded`.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sse_core::metrics::Metrics;
use tokio::sync::Notify;

use super::error::ExecError;
use super::output::Output;
use super::spec::{RunRequest, RunSpec};
use crate::shared::clock::unix_millis;

/// Most steps in a workflow.
const MAX_STEPS: usize = 32;
/// How long an approval waits unless the definition says (at most a day).
const DEFAULT_EXPIRY: Duration = Duration::from_secs(600);
const MAX_EXPIRY: Duration = Duration::from_secs(86_400);

/// A workflow as submitted (JSON, or TOML with `Content-Type: application/toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Its name.
    pub name: String,
    /// Its steps, in order.
    pub steps: Vec<StepDefinition>,
}

/// One step: a program to run (as in `POST /exec/runs`), an approval to ask first, or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDefinition {
    /// Its name, unique in the workflow.
    pub name: String,
    /// Ask a person before running the step.
    pub approval: Option<ApprovalDefinition>,
    /// `sh`, `bash` or `python3`, with `code`.
    pub language: Option<String>,
    /// The program text.
    pub code: Option<String>,
    /// Or a command line.
    pub argv: Option<Vec<String>>,
    /// The step's wall-clock limit.
    pub timeout_s: Option<u64>,
}

/// What to ask, and for how long.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDefinition {
    /// The question shown to viewers.
    pub prompt: Option<String>,
    /// Seconds before the request expires (default 600, at most 86400).
    pub expires_s: Option<u64>,
}

/// A checked step.
#[derive(Clone, Debug)]
pub struct Step {
    /// Its name.
    pub name: String,
    /// The approval it needs first: prompt and expiry.
    pub approval: Option<(String, Duration)>,
    /// What it runs.
    pub run: Option<RunSpec>,
}

fn invalid(code: &'static str, message: impl Into<String>) -> ExecError {
    ExecError::invalid(code, message)
}

/// Reads a definition from a request body: JSON, or TOML when the media type (lowercase, see
/// [`sse_core::edge::media_type`]) says so.
pub fn parse(body: &[u8], media: &str) -> Result<Definition, ExecError> {
    let text = std::str::from_utf8(body).map_err(|_| ExecError::DefinitionNotUtf8)?;
    match media {
        "application/json" => {
            serde_json::from_str(text).map_err(|e| ExecError::InvalidDefinition(e.to_string()))
        }
        "application/toml" | "text/x-toml" => {
            toml::from_str(text).map_err(|e| ExecError::InvalidDefinition(e.to_string()))
        }
        _ => Err(ExecError::UnsupportedMediaType),
    }
}

impl Definition {
    /// Checks every step; `check_run` checks a step's program as a run request would be.
    pub fn check(
        self,
        check_run: impl Fn(RunRequest) -> Result<RunSpec, ExecError>,
    ) -> Result<(String, Vec<Step>), ExecError> {
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err(invalid("invalid_name", "a workflow needs a name of 1 to 64 bytes"));
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(invalid("invalid_steps", "a workflow needs 1 to 32 steps"));
        }
        let mut steps: Vec<Step> = Vec::new();
        for (index, step) in self.steps.into_iter().enumerate() {
            let name = step.name.trim().to_owned();
            if name.is_empty() || name.len() > 64 || steps.iter().any(|s| s.name == name) {
                return Err(invalid(
                    "invalid_step_name",
                    format!("step {index}: names must be 1 to 64 bytes and unique"),
                ));
            }
            let approval = match step.approval {
                None => None,
                Some(approval) => {
                    let expiry = approval.expires_s.map_or(DEFAULT_EXPIRY, Duration::from_secs);
                    if expiry.is_zero() || expiry > MAX_EXPIRY {
                        return Err(invalid(
                            "invalid_expiry",
                            format!("step {name:?}: expires_s must be 1 to 86400"),
                        ));
                    }
                    let prompt = approval.prompt.unwrap_or_else(|| format!("Run step {name:?}?"));
                    Some((prompt.chars().take(500).collect(), expiry))
                }
            };
            let has_program = step.language.is_some() || step.code.is_some() || step.argv.is_some();
            let run = if has_program {
                let request = RunRequest {
                    language: step.language,
                    code: step.code,
                    argv: step.argv,
                    pty: false,
                    rows: None,
                    cols: None,
                    timeout_s: step.timeout_s,
                };
                let in_step = |e| ExecError::InStep { step: name.clone(), error: Box::new(e) };
                Some(check_run(request).map_err(in_step)?)
            } else {
                None
            };
            if run.is_none() && approval.is_none() {
                return Err(invalid(
                    "empty_step",
                    format!("step {name:?} has neither a program nor an approval"),
                ));
            }
            steps.push(Step { name, approval, run });
        }
        Ok((self.name, steps))
    }
}

/// A decision on an approval.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Approved (or rejected).
    pub approve: bool,
    /// Who: address and user agent.
    pub by: String,
    /// Their comment.
    pub comment: String,
}

/// Why a decision was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum DecideError {
    /// The step is not waiting for approval (not reached, decided, or expired).
    NotWaiting,
}

/// A workflow being run (or finished).
#[derive(Debug)]
pub struct Workflow {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Ms since the epoch.
    pub started_at: u64,
    /// Its steps.
    pub steps: Vec<Step>,
    /// Its event log.
    pub events: Output,
    state: Mutex<State>,
    decided: Notify,
    /// The last step whose decision was settled, and whether it is on record: what a decision's
    /// POST waits for.
    settled: tokio::sync::watch::Sender<Option<(usize, bool)>>,
}

/// What became of a decision, as its POST learns it from [`Workflow::settled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// On record and announced: the workflow acts on it.
    Recorded,
    /// The approvals log refused it, so the workflow stopped without acting on it.
    NotRecorded,
    /// Not settled within the patience given (the approvals log is stuck).
    Pending,
}

#[derive(Debug, Default)]
struct State {
    /// The step waiting for approval, if any, and the decision once taken.
    waiting: Option<(usize, Option<Decision>)>,
    outcome: Option<Value>,
}

impl Workflow {
    /// A workflow about to run.
    pub fn new(id: String, name: String, steps: Vec<Step>, metrics: Metrics) -> Workflow {
        Workflow {
            id,
            name,
            started_at: unix_millis(),
            steps,
            // Progress events are small; the cap only guards against a runaway.
            events: Output::new(1 << 20, metrics),
            state: Mutex::default(),
            decided: Notify::new(),
            settled: tokio::sync::watch::Sender::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `workflow_finished` event's data, once finished.
    pub fn outcome(&self) -> Option<Value> {
        self.lock().outcome.clone()
    }

    /// Takes a decision on step `step`'s approval, if it is waiting for one.
    pub fn decide(&self, step: usize, decision: Decision) -> Result<(), DecideError> {
        let mut state = self.lock();
        match &mut state.waiting {
            Some((waiting, slot @ None)) if *waiting == step => *slot = Some(decision),
            _ => return Err(DecideError::NotWaiting),
        }
        drop(state);
        self.decided.notify_waiters();
        Ok(())
    }

    /// Asks for approval of step `index` and waits for the decision; `None` when it expires.
    /// Nobody is told of the decision yet: record it, then [`Workflow::announce_decision`] (or,
    /// if it cannot be recorded, [`Workflow::unrecorded`]).
    pub async fn ask(&self, index: usize, prompt: &str, expiry: Duration) -> Option<Decision> {
        let expires_at = unix_millis() + expiry.as_millis() as u64;
        self.lock().waiting = Some((index, None));
        let step = &self.steps[index].name;
        let request =
            json!({ "step": index, "name": step, "prompt": prompt, "expires_at": expires_at });
        self.events.event("approval_requested", &request);
        let wait = async {
            loop {
                let decided = self.decided.notified();
                if let Some((_, Some(decision))) = &self.lock().waiting {
                    return decision.clone();
                }
                decided.await;
            }
        };
        let decision = tokio::time::timeout(expiry, wait).await.ok();
        // Under the lock, so a decision that races the expiry either counts or gets 409.
        let mut state = self.lock();
        let decision = decision.or_else(|| state.waiting.take().and_then(|(_, d)| d));
        state.waiting = None;
        drop(state);
        decision
    }

    /// Tells the viewers how step `index`'s approval was decided (`approval_decided`), and the
    /// decision's POST, waiting in [`Workflow::settled`], that it is on record.
    pub fn announce_decision(&self, index: usize, decision: Option<&Decision>) {
        let (label, by, comment) = match decision {
            Some(d) => {
                (if d.approve { "approved" } else { "rejected" }, json!(d.by), json!(d.comment))
            }
            None => ("expired", Value::Null, Value::Null),
        };
        let step = &self.steps[index].name;
        let decided = json!({ "step": index, "name": step, "decision": label, "by": by, "comment": comment, "at": unix_millis() });
        self.events.event("approval_decided", &decided);
        self.settled.send_replace(Some((index, true)));
    }

    /// Tells the decision's POST that step `index`'s decision could not be recorded. The caller
    /// then stops the workflow without acting on it.
    pub fn unrecorded(&self, index: usize) {
        self.settled.send_replace(Some((index, false)));
    }

    /// Waits until step `step`'s decision is settled: on record and announced, or refused by the
    /// log. [`Settled::Pending`] if that takes longer than `patience` (the log is stuck).
    pub async fn settled(&self, step: usize, patience: Duration) -> Settled {
        let mut settled = self.settled.subscribe();
        let reached = settled.wait_for(|last| last.is_some_and(|(last, _)| last >= step));
        match tokio::time::timeout(patience, reached).await {
            Ok(Ok(last)) => match *last {
                // A later step settled means this one was recorded: the workflow went on.
                Some((last, recorded)) if last > step || recorded => Settled::Recorded,
                _ => Settled::NotRecorded,
            },
            // The sender lives in the workflow itself, which this borrows: it cannot be gone.
            Ok(Err(_)) | Err(_) => Settled::Pending,
        }
    }

    /// Ends the workflow with `outcome` (`succeeded`, `failed`, `rejected`, `expired`).
    pub fn finish(&self, outcome: &str, step: Option<usize>, message: String) {
        let data = json!({
            "outcome": outcome,
            "step": step,
            "message": message,
            "duration_ms": unix_millis().saturating_sub(self.started_at),
        });
        self.lock().outcome = Some(data.clone());
        self.events.last_event("workflow_finished", &data);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every event the workflow's log holds, as text.
    fn logged(workflow: &Workflow) -> String {
        let frames = workflow.events.replay_after(0).frames;
        frames.iter().map(|f| String::from_utf8_lossy(f.as_bytes()).into_owned()).collect()
    }

    fn workflow_of(steps: usize) -> Workflow {
        let steps = (0..steps)
            .map(|i| Step { name: format!("step{i}"), approval: None, run: None })
            .collect();
        Workflow::new("w1".to_owned(), "test".to_owned(), steps, Metrics::default())
    }

    fn decision() -> Decision {
        Decision { approve: true, by: "tester".to_owned(), comment: String::new() }
    }

    #[tokio::test]
    async fn a_decision_on_record_settles_as_recorded_and_is_announced() {
        let workflow = workflow_of(1);
        workflow.announce_decision(0, Some(&decision()));
        assert_eq!(workflow.settled(0, Duration::from_secs(10)).await, Settled::Recorded);
        let events = logged(&workflow);
        assert!(events.contains("approval_decided"), "{events}");
    }

    #[tokio::test]
    async fn a_decision_the_log_refused_settles_as_not_recorded_and_is_not_announced() {
        let workflow = workflow_of(1);
        workflow.unrecorded(0);
        assert_eq!(workflow.settled(0, Duration::from_secs(10)).await, Settled::NotRecorded);
        let events = logged(&workflow);
        assert!(!events.contains("approval_decided"), "{events}");
    }

    #[tokio::test]
    async fn a_waiter_is_answered_when_the_decision_settles_after_it_began_waiting() {
        let workflow = std::sync::Arc::new(workflow_of(1));
        let waiter = tokio::spawn({
            let workflow = workflow.clone();
            async move { workflow.settled(0, Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        workflow.unrecorded(0);
        assert_eq!(waiter.await.unwrap(), Settled::NotRecorded);
    }

    #[tokio::test]
    async fn a_decision_that_never_settles_is_pending_once_patience_runs_out() {
        let workflow = workflow_of(2);
        assert_eq!(workflow.settled(0, Duration::from_millis(10)).await, Settled::Pending);
        // Step 0 settling says nothing of step 1.
        workflow.announce_decision(0, None);
        assert_eq!(workflow.settled(1, Duration::from_millis(10)).await, Settled::Pending);
    }

    #[tokio::test]
    async fn a_later_step_settled_means_an_earlier_one_was_recorded() {
        let workflow = workflow_of(3);
        workflow.announce_decision(0, Some(&decision()));
        workflow.unrecorded(2);
        assert_eq!(workflow.settled(0, Duration::from_secs(10)).await, Settled::Recorded);
        assert_eq!(workflow.settled(2, Duration::from_secs(10)).await, Settled::NotRecorded);
    }
}
