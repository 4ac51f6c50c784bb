//! Where log lines go and in what shape: stderr, as text for people or one JSON object a line for
//! log collectors, filtered by `RUST_LOG` (else at `default_level`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object a line: timestamp, level, target, fields, and the spans it is in.
    Json,
}

/// Installs the process's log subscriber.
pub(crate) fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A log line that cannot be written (stderr closed: `sse-apps | head`) is dropped in silence:
    // the subscriber's own report of it would panic on that same stderr, inside whatever task
    // was logging.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).init(),
    }
}
