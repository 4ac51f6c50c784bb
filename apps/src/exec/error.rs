//! Every way an exec request is refused or fails, and, in one place, the status and code each one
//! answers with (the JSON shape is the core's [`ApiError`]).
//!
//! Checks and handlers return an [`ExecError`] and pass it on with `?`; a run request's
//! refusal inside a workflow step keeps its status and code, its message naming the step.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sse_core::edge::ApiError;

/// Why an exec request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A run request, signal, decision or workflow definition breaks a rule: 422 with the
    /// check's own code (`unknown_language`, `timeout_out_of_range`, `invalid_steps`…).
    #[error("{message}")]
    Invalid {
        /// The code.
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// A refusal of a workflow step's program, named by the step.
    #[error("step {step:?}: {error}")]
    InStep {
        /// The step's name.
        step: String,
        /// The refusal, whose status and code are kept.
        error: Box<ExecError>,
    },
    /// A workflow definition that is not UTF-8.
    #[error("the definition is not UTF-8")]
    DefinitionNotUtf8,
    /// A workflow definition that does not parse.
    #[error("{0}")]
    InvalidDefinition(String),
    /// A workflow definition in neither JSON nor TOML.
    #[error("send the definition as application/json or application/toml")]
    UnsupportedMediaType,
    /// No run has this id (here, or on any instance that would have forwarded it).
    #[error("no run has id {0:?}")]
    UnknownRun(String),
    /// No workflow has this id.
    #[error("no workflow has id {0:?}")]
    UnknownWorkflow(String),
    /// The workflow has no such step.
    #[error("the workflow has no step {0:?}")]
    UnknownStep(String),
    /// Runs cannot be isolated on this machine; the reason says why.
    #[error("{0}")]
    SandboxUnavailable(String),
    /// Every run slot is taken.
    #[error("{0} runs are already running; wait for one to end")]
    TooManyRuns(usize),
    /// Every workflow slot is taken.
    #[error("{0} workflows are already running")]
    TooManyWorkflows(usize),
    /// The run's start cannot be journaled, so it does not start.
    #[error("the server cannot record the run in its journal, so it does not start it")]
    JournalUnavailable,
    /// Stdin is closed, or the run ended.
    #[error("the run has ended or its input is closed")]
    StdinClosed,
    /// The program stopped reading; it took this many bytes.
    #[error("the program has not read its input for 5 s; it took the first {0} bytes")]
    StdinFull(usize),
    /// A signal for a run that has ended.
    #[error("the run has already ended")]
    RunFinished,
    /// A resize for a run without a terminal.
    #[error("the run has no terminal (start it with pty:true), or has ended")]
    NotATerminal,
    /// The terminal could not be resized.
    #[error("{0}")]
    ResizeFailed(String),
    /// A decision for a step that is not waiting for one.
    #[error("this step is not waiting for approval (not reached yet, already decided, or expired)")]
    NotWaiting,
    /// A decision that is not (yet) in the approvals log.
    #[error("{0}")]
    NotRecorded(&'static str),
    /// An answer the core's own checks already made (an unreadable body).
    #[error("{}", .0.message)]
    Core(ApiError),
}

impl ExecError {
    /// A 422 refusal with its code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ExecError {
        ExecError::Invalid { code, message: message.into() }
    }

    /// The status, the stable code and the `Retry-After` seconds it answers with.
    fn answer(&self) -> (StatusCode, &'static str, Option<u64>) {
        use StatusCode as S;
        match self {
            ExecError::Invalid { code, .. } => (S::UNPROCESSABLE_ENTITY, code, None),
            ExecError::InStep { error, .. } => error.answer(),
            ExecError::DefinitionNotUtf8 => (S::BAD_REQUEST, "invalid_body", None),
            ExecError::InvalidDefinition(_) => (S::BAD_REQUEST, "invalid_definition", None),
            ExecError::UnsupportedMediaType => {
                (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None)
            }
            ExecError::UnknownRun(_) => (S::NOT_FOUND, "unknown_run", None),
            ExecError::UnknownWorkflow(_) => (S::NOT_FOUND, "unknown_workflow", None),
            ExecError::UnknownStep(_) => (S::NOT_FOUND, "unknown_step", None),
            ExecError::SandboxUnavailable(_) => {
                (S::SERVICE_UNAVAILABLE, "sandbox_unavailable", None)
            }
            ExecError::TooManyRuns(_) => (S::TOO_MANY_REQUESTS, "too_many_runs", Some(1)),
            ExecError::TooManyWorkflows(_) => (S::TOO_MANY_REQUESTS, "too_many_workflows", Some(5)),
            ExecError::JournalUnavailable => (S::SERVICE_UNAVAILABLE, "journal_unavailable", None),
            ExecError::StdinClosed => (S::CONFLICT, "stdin_closed", None),
            // The program may read again in a moment.
            ExecError::StdinFull(_) => (S::SERVICE_UNAVAILABLE, "stdin_full", Some(1)),
            ExecError::RunFinished => (S::CONFLICT, "run_finished", None),
            ExecError::NotATerminal => (S::CONFLICT, "not_a_terminal", None),
            ExecError::ResizeFailed(_) => (S::CONFLICT, "resize_failed", None),
            ExecError::NotWaiting => (S::CONFLICT, "not_waiting", None),
            ExecError::NotRecorded(_) => (S::SERVICE_UNAVAILABLE, "not_recorded", None),
            ExecError::Core(answer) => (answer.status, answer.code, answer.retry_after),
        }
    }
}

impl From<ApiError> for ExecError {
    fn from(answer: ApiError) -> ExecError {
        ExecError::Core(answer)
    }
}

impl From<ExecError> for ApiError {
    fn from(error: ExecError) -> ApiError {
        if let ExecError::Core(answer) = error {
            return answer;
        }
        let (status, code, retry_after) = error.answer();
        let answer = ApiError::new(status, code, error.to_string());
        match retry_after {
            Some(seconds) => answer.retry_after(seconds),
            None => answer,
        }
    }
}

impl IntoResponse for ExecError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
