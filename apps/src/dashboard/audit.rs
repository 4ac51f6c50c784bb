//! The audit log: every control action, refused or carried out, as one JSON line in
//! `dashboard-audit.jsonl` under the data directory.
//!
//! A line is written and synced to disk before the request that caused it is answered, so an
//! action the server acknowledged is always on record; if the log cannot be written, the action
//! is refused. Reading returns the newest entries first, from the last 1,000 kept in memory (read
//! from the file's end at start), so a page asking often does not reparse a file that only grows.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When, ms since the epoch.
    pub at: u64,
    /// Who: the client's address and user agent.
    pub who: String,
    /// The command id (`null` for a refusal, which never got one).
    pub command: Option<String>,
    /// `terminate`, `renice`, `set_interval`.
    pub action: String,
    /// The request's parameters (pid, nice, interval_ms…).
    pub params: Value,
    /// `refused`, `accepted`, `completed` or `failed`.
    pub outcome: String,
    /// The error code or the result.
    pub detail: Value,
}

/// The log file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    file: Arc<Mutex<File>>,
    recent: Arc<Mutex<VecDeque<Entry>>>,
}

/// Entries kept in memory for reading.
const RECENT: usize = 1000;

impl AuditLog {
    /// Opens (creating) the dashboard's log in `data_dir`.
    pub fn open(data_dir: &Path) -> std::io::Result<AuditLog> {
        AuditLog::open_named(data_dir, "dashboard-audit.jsonl")
    }

    /// Opens (creating) the log `file_name` in `data_dir` (other apps keep their records in the
    /// same shape).
    pub fn open_named(data_dir: &Path, file_name: &str) -> std::io::Result<AuditLog> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(file_name);
        let recent = read_tail(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(AuditLog { file: Arc::new(Mutex::new(file)), recent: Arc::new(Mutex::new(recent)) })
    }

    /// Appends `entry` and syncs it to disk (on a blocking thread).
    pub async fn record(&self, entry: Entry) -> std::io::Result<()> {
        let file = self.file.clone();
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(entry);
        Ok(())
    }

    /// The newest `limit` entries (at most 1,000), newest first.
    pub fn newest(&self, limit: usize) -> Vec<Entry> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().rev().take(limit).cloned().collect()
    }
}

/// The last 1,000 entries of the file at `path` (none if it does not exist yet). Lines that do
/// not parse (a torn last line after a crash) are skipped.
fn read_tail(path: &Path) -> std::io::Result<VecDeque<Entry>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(error) => return Err(error),
    };
    let mut recent = VecDeque::with_capacity(RECENT);
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if let Ok(entry) = serde_json::from_str(&line) {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(entry);
        }
    }
    Ok(recent)
}
