//! An audit log: every action an app takes on someone's say-so, refused or carried out, as one
//! JSON line in a file of the data directory. The dashboard keeps its control actions in
//! `dashboard-audit.jsonl`; exec keeps its workflow approvals in `exec-approvals.jsonl`.
//!
//! A line is written and synced to disk before the request that caused it is answered, so an
//! action the server acknowledged is always on record; if the log cannot be written, the action
//! is refused. Reading returns the newest entries first, from the last 1,000 kept in memory (read
//! from the file's end at start), so a page asking often does not reparse a file that only grows.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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
    /// What the action belongs to: the dashboard's command id (`null` for a refusal, which
    /// never got one, and for an acknowledgement), or exec's workflow id.
    pub command: Option<String>,
    /// What was done. The dashboard: `terminate`, `renice`, `set_interval` (control actions)
    /// and `acknowledge` (an alert). Exec: `approval` (a workflow step's approval).
    pub action: String,
    /// The request's parameters: pid, nice, interval_ms…; an alert and its metric; a workflow,
    /// its step's index and name.
    pub params: Value,
    /// The dashboard: `refused`, `accepted`, `completed` or `failed`. Exec: `approved`,
    /// `rejected` or `expired` (nobody decided in time).
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
    /// Opens (creating) the log `file_name` in `data_dir`, each app its own.
    /// Like every data file it is 0600 and never opened through a symlink
    /// ([`crate::shared::data_dir`]).
    pub fn open(data_dir: &Path, file_name: &str) -> std::io::Result<AuditLog> {
        crate::shared::data_dir::create_dir(data_dir)?;
        let path = data_dir.join(file_name);
        let file =
            crate::shared::data_dir::open(&path, OpenOptions::new().create(true).append(true))?;
        let recent = if file.metadata()?.is_file() {
            read_tail(&mut crate::shared::data_dir::open(&path, OpenOptions::new().read(true))?)?
        } else {
            VecDeque::new()
        };
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
            // A pipe to a log shipper has no disk to sync (fdatasync fails there with EINVAL);
            // the line is recorded once the pipe took it.
            if file.metadata()?.is_file() { file.sync_data() } else { Ok(()) }
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

/// How much of the file's end is read at a time while looking for the last [`RECENT`] lines.
const CHUNK: u64 = 64 * 1024;

/// The last 1,000 entries of the log `file`. Lines that do not parse (a torn last line after a
/// crash) are skipped.
///
/// Read backwards from the end, a chunk at a time, until the chunks hold 1,000 whole lines: a
/// log only grows, and a start should not take longer for every year of it. A log that is not a
/// regular file (a pipe to a log shipper) is written but not read back ([`AuditLog::open`]
/// does not call this): there is nothing behind it to read, and reading a pipe would wait for a
/// writer.
fn read_tail(file: &mut File) -> std::io::Result<VecDeque<Entry>> {
    let mut start = file.metadata()?.len();
    let mut tail = Vec::new();
    let mut line_ends = 0;
    // One line end more than the lines wanted: the line before the last 1,000 ends there.
    while start > 0 && line_ends <= RECENT {
        let step = CHUNK.min(start);
        start -= step;
        let mut chunk = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        line_ends += memchr::memchr_iter(b'\n', &chunk).count();
        chunk.extend_from_slice(&tail);
        tail = chunk;
    }
    // Unless the file's start was reached, the first line read is only the end of one.
    let whole = match (start, memchr::memchr(b'\n', &tail)) {
        (0, _) => &tail[..],
        (_, Some(end)) => &tail[end + 1..],
        (_, None) => &[][..],
    };
    let mut recent = VecDeque::with_capacity(RECENT);
    for line in whole.split(|&b| b == b'\n') {
        if let Ok(entry) = serde_json::from_slice(line) {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(entry);
        }
    }
    Ok(recent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            at: n as u64,
            who: "tester".to_owned(),
            command: None,
            action: "renice".to_owned(),
            // Long enough that 1,000 lines span several chunks.
            params: serde_json::json!({ "padding": "x".repeat(200) }),
            outcome: "completed".to_owned(),
            detail: Value::Null,
        }
    }

    fn log_of(lines: impl IntoIterator<Item = String>) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            file.write_all(line.as_bytes()).unwrap();
        }
        file
    }

    fn line(n: usize) -> String {
        format!("{}\n", serde_json::to_string(&entry(n)).unwrap())
    }

    fn times(recent: &VecDeque<Entry>) -> Vec<u64> {
        recent.iter().map(|e| e.at).collect()
    }

    #[test]
    fn the_last_thousand_entries_are_read_from_a_long_log_in_order() {
        let mut file = log_of((0..2500).map(line));
        assert!(file.as_file().metadata().unwrap().len() > 4 * CHUNK, "the test spans chunks");
        let recent = read_tail(file.as_file_mut()).unwrap();
        assert_eq!(times(&recent), (1500..2500).collect::<Vec<_>>());
    }

    #[test]
    fn a_short_log_is_read_whole_and_a_torn_last_line_is_skipped() {
        let mut lines: Vec<String> = (0..3).map(line).collect();
        lines.push(line(3)[..40].to_owned());
        let recent = read_tail(log_of(lines).as_file_mut()).unwrap();
        assert_eq!(times(&recent), [0, 1, 2]);
    }

    /// A FIFO at `path`, and its read end.
    fn pipe_at(path: &Path) -> File {
        rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from(0o600)).unwrap();
        let flags = rustix::fs::OFlags::NONBLOCK.bits() as i32;
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new().read(true).custom_flags(flags).open(path).unwrap()
    }

    #[test]
    fn a_new_log_or_a_pipe_has_nothing_to_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), "new.jsonl").unwrap();
        assert!(log.newest(10).is_empty());
        assert!(dir.path().join("new.jsonl").is_file(), "created at once");
        // A pipe to a log shipper: reading it back would wait for ever.
        let _shipper = pipe_at(&dir.path().join("shipped.jsonl"));
        let log = AuditLog::open(dir.path(), "shipped.jsonl").unwrap();
        assert!(log.newest(10).is_empty());
    }

    #[test]
    fn a_pipe_nothing_reads_is_refused_at_once_rather_than_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unread.jsonl");
        rustix::fs::mkfifoat(rustix::fs::CWD, &path, rustix::fs::Mode::from(0o600)).unwrap();
        // On a thread of its own, under a watchdog: an open that waited for a reader fails the
        // test instead of hanging the suite.
        let (dir_path, (done, outcome)) = (dir.path().to_owned(), std::sync::mpsc::channel());
        std::thread::spawn(move || {
            let _ = done.send(AuditLog::open(&dir_path, "unread.jsonl").map(drop));
        });
        let watched = outcome.recv_timeout(std::time::Duration::from_secs(60));
        let error = watched.expect("not waited on").unwrap_err();
        assert!(error.to_string().contains("unread.jsonl is a named pipe that nothing reads"));
    }

    #[test]
    fn a_socket_in_place_of_the_log_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let _socket =
            std::os::unix::net::UnixListener::bind(dir.path().join("sock.jsonl")).unwrap();
        let error = AuditLog::open(dir.path(), "sock.jsonl").unwrap_err();
        assert!(error.to_string().contains("sock.jsonl is a socket, not a file"), "{error}");
    }

    #[tokio::test]
    async fn a_record_reaches_a_pipe_that_is_read_and_counts_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut shipper = pipe_at(&dir.path().join("shipped.jsonl"));
        let log = AuditLog::open(dir.path(), "shipped.jsonl").unwrap();
        log.record(entry(7)).await.expect("a pipe has no disk to sync: the write is the record");
        let mut received = String::new();
        std::io::Read::read_to_string(&mut shipper, &mut received).ok();
        assert_eq!(received.lines().count(), 1, "{received}");
        assert_eq!(log.newest(10).len(), 1, "listed once on record");
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_written_is_an_error_and_is_not_kept() {
        // A pipe whose reader has gone: the open succeeds and every write fails (EPIPE).
        let dir = tempfile::tempdir().unwrap();
        let reader = pipe_at(&dir.path().join("broken.jsonl"));
        let log = AuditLog::open(dir.path(), "broken.jsonl").unwrap();
        drop(reader);
        let error = log.record(entry(1)).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
        assert!(log.newest(10).is_empty(), "only what is on record is listed");
    }

    #[tokio::test]
    async fn a_symlink_in_place_of_the_log_is_refused_and_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("root-owned.txt");
        std::fs::write(&target, "untouched\n").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("dashboard-audit.jsonl")).unwrap();
        let error = AuditLog::open(dir.path(), "dashboard-audit.jsonl").unwrap_err();
        assert!(error.to_string().contains("dashboard-audit.jsonl is a symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    }
}
