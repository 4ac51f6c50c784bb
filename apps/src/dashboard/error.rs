//! Every way a dashboard request is refused or fails, and, in one place, the status and code each
//! one answers with (the JSON shape is the core's [`ApiError`]).
//!
//! Handlers and checks return a [`DashboardError`] and pass it on with `?`; a refused control
//! action is written to the audit log with the same code and message its answer carries.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sse_core::edge::ApiError;

/// Why a dashboard request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A control action's values are wrong: 422 with the check's own code (`missing_pid`,
    /// `nice_out_of_range`, `unknown_action`…).
    #[error("{message}")]
    Invalid {
        /// The code.
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// The audit page's `limit` is out of range.
    #[error("limit must be 1 to 1000")]
    LimitOutOfRange,
    /// pid 1 or the server itself.
    #[error("{0}")]
    Protected(&'static str),
    /// No such process (or it exited while being checked).
    #[error("no process has pid {0}")]
    UnknownPid(i32),
    /// Another user's process, without `--allow-control-all`.
    #[error(
        "pid {0} belongs to another user; start the server with --allow-control-all to allow \
         this"
    )]
    ForeignProcess(i32),
    /// A server run as root, and a process it neither started nor shares a session with.
    #[error(
        "the server runs as root, so it acts only on processes it started or started from its \
         own session (its terminal or script), and pid {0} is neither; start it with \
         --allow-control-all to allow this"
    )]
    NotStartedHere(i32),
    /// The process table cannot be read.
    #[error("{0}")]
    ProcessTable(String),
    /// The audit log cannot be written, so nothing is done.
    #[error("the audit log cannot be written, so no action is taken")]
    AuditUnavailable(#[source] std::io::Error),
    /// The command's task failed.
    #[error("the command failed")]
    Internal,
    /// An alert id that is not a number.
    #[error("{0:?} is not an alert id")]
    InvalidAlertId(String),
    /// No alert has this id.
    #[error("no alert has id {0}")]
    UnknownAlert(u64),
    /// `?instance=` names no live instance.
    #[error("no live instance is called {0:?}; see /dashboard/instances")]
    UnknownInstance(String),
}

impl DashboardError {
    /// The status and the stable code it answers with.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            DashboardError::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            DashboardError::LimitOutOfRange => {
                (StatusCode::UNPROCESSABLE_ENTITY, "limit_out_of_range")
            }
            DashboardError::Protected(_) => (StatusCode::FORBIDDEN, "protected_process"),
            DashboardError::UnknownPid(_) => (StatusCode::NOT_FOUND, "unknown_pid"),
            DashboardError::ForeignProcess(_) | DashboardError::NotStartedHere(_) => {
                (StatusCode::FORBIDDEN, "foreign_process")
            }
            DashboardError::ProcessTable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "process_table_unavailable")
            }
            DashboardError::AuditUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable")
            }
            DashboardError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            DashboardError::InvalidAlertId(_) => (StatusCode::BAD_REQUEST, "invalid_alert_id"),
            DashboardError::UnknownAlert(_) => (StatusCode::NOT_FOUND, "unknown_alert"),
            DashboardError::UnknownInstance(_) => (StatusCode::NOT_FOUND, "unknown_instance"),
        }
    }

    /// The stable code alone, as the audit log records a refusal.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }
}

impl From<DashboardError> for ApiError {
    fn from(error: DashboardError) -> ApiError {
        let (status, code) = error.status_and_code();
        let answer = ApiError::new(status, code, error.to_string());
        match &error {
            DashboardError::AuditUnavailable(cause) => {
                tracing::error!(error = %cause, "cannot write the dashboard audit log");
                // A full disk or a failing one may recover; a client may ask again shortly.
                answer.retry_after(5)
            }
            _ => answer,
        }
    }
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
