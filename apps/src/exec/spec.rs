//! What a run request may ask for, checked into a [`RunSpec`].

use std::time::Duration;

use super::error::ExecError;
use serde::Deserialize;
use sse_core::edge::numbers::saturating_u64;

/// Most bytes of code a request may carry.
pub const MAX_CODE: usize = 256 * 1024;
/// Most arguments in an `argv` request, and most bytes in each.
const MAX_ARGS: usize = 256;
const MAX_ARG: usize = 16 * 1024;

/// The body of `POST /exec/runs`, before it is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// `sh`, `bash` or `python3` (or `python`), with `code`.
    pub language: Option<String>,
    /// The program text for `language`.
    pub code: Option<String>,
    /// Or a command line to run as is.
    pub argv: Option<Vec<String>>,
    /// Run in a terminal (a PTY) instead of plain pipes.
    #[serde(default)]
    pub pty: bool,
    /// The terminal's rows (default 24).
    #[serde(default, deserialize_with = "saturating_u64")]
    pub rows: Option<u64>,
    /// The terminal's columns (default 80).
    #[serde(default, deserialize_with = "saturating_u64")]
    pub cols: Option<u64>,
    /// Wall-clock limit in seconds (default from the server's config, at most 1800).
    #[serde(default, deserialize_with = "saturating_u64")]
    pub timeout_s: Option<u64>,
}

/// A checked request: the command line and its wall-clock limit.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    /// Program and arguments, as run inside the sandbox.
    pub argv: Vec<String>,
    /// What the list of runs shows: the language or the program.
    pub label: String,
    /// Killed after this long.
    pub timeout: Duration,
    /// A terminal of this size (rows, columns), or plain pipes.
    pub terminal: Option<(u16, u16)>,
}

/// Checks a terminal size: 1 to 500 rows and columns.
pub fn check_size(rows: u64, cols: u64) -> Result<(u16, u16), ExecError> {
    let fits = |n: u64| u16::try_from(n).ok().filter(|n| (1..=500).contains(n));
    match (fits(rows), fits(cols)) {
        (Some(rows), Some(cols)) => Ok((rows, cols)),
        _ => Err(invalid("invalid_size", "rows and cols must be 1 to 500")),
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ExecError {
    ExecError::invalid(code, message)
}

impl RunRequest {
    /// Checks the request. `default_timeout` applies when none is asked; `max_timeout` caps it.
    pub fn check(
        self,
        default_timeout: Duration,
        max_timeout: Duration,
    ) -> Result<RunSpec, ExecError> {
        let terminal = match (self.pty, self.rows, self.cols) {
            (true, rows, cols) => Some(check_size(rows.unwrap_or(24), cols.unwrap_or(80))?),
            (false, None, None) => None,
            (false, ..) => return Err(invalid("invalid_size", "rows and cols need pty:true")),
        };
        let timeout = match self.timeout_s {
            None => default_timeout,
            Some(0) => return Err(invalid("timeout_out_of_range", "timeout_s must be at least 1")),
            Some(s) if Duration::from_secs(s) > max_timeout => {
                return Err(invalid(
                    "timeout_out_of_range",
                    format!("timeout_s may be at most {}", max_timeout.as_secs()),
                ));
            }
            Some(s) => Duration::from_secs(s),
        };
        let (argv, label) = match (self.language, self.code, self.argv) {
            (Some(language), Some(code), None) => {
                if code.len() > MAX_CODE {
                    return Err(invalid(
                        "code_too_long",
                        format!("code may be at most {MAX_CODE} bytes"),
                    ));
                }
                if code.contains('\0') {
                    return Err(invalid("invalid_code", "code may not contain NUL bytes"));
                }
                let program = match language.as_str() {
                    "sh" => vec!["/bin/sh".to_owned(), "-c".to_owned(), code],
                    "bash" => vec!["/bin/bash".to_owned(), "-c".to_owned(), code],
                    // `python` is what people type; there is only Python 3.
                    "python3" | "python" => {
                        vec!["/usr/bin/python3".to_owned(), "-u".to_owned(), "-c".to_owned(), code]
                    }
                    other => {
                        return Err(invalid(
                            "unknown_language",
                            format!(
                                "unknown language {other:?}; use sh, bash or python3 (or argv)"
                            ),
                        ));
                    }
                };
                let label = if language == "python" { "python3".to_owned() } else { language };
                (program, label)
            }
            (None, None, Some(argv)) => {
                if argv.is_empty() || argv[0].is_empty() {
                    return Err(invalid("empty_argv", "argv needs at least a program"));
                }
                if argv.len() > MAX_ARGS || argv.iter().any(|a| a.len() > MAX_ARG) {
                    return Err(invalid("argv_too_long", "at most 256 arguments of 16 KiB each"));
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(invalid("invalid_argv", "arguments may not contain NUL bytes"));
                }
                let label = argv[0].clone();
                (argv, label)
            }
            _ => {
                return Err(invalid(
                    "invalid_run",
                    "send either language and code, or argv (not both)",
                ));
            }
        };
        Ok(RunSpec { argv, label, timeout, terminal })
    }
}
