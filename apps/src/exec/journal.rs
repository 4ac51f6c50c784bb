//! The run journal: `exec-runs.jsonl` in the data directory, one line when a run starts and one
//! when it ends, so that a restart can say what happened to every run it knew.
//!
//! The `started` line is synced before the run is acknowledged (201), so a run the server ever
//! answered for is on record. A run with a `started` line and no `ended` line was running when
//! the server stopped without ending it (kill -9, a crash, power lost): its sandbox died with the
//! server (`--die-with-parent`), and after the restart it is listed as ended with the reason
//! `interrupted`. Output is not journaled: after a restart, a past run's stream holds only its
//! `exit` event, marked `output_kept: false`.
//!
//! At start the journal is read, the runs worth keeping (the newest `kept`) are rewritten to a
//! fresh file (written aside, synced, renamed over the old one, so a crash mid-rewrite leaves one
//! whole journal or the other), and the file is then only appended to. A torn last line from a
//! crash mid-write does not parse and is skipped.
//!
//! Like every data file it is 0600, and a symlink in its place is refused, never read through
//! nor replaced ([`crate::shared::data_dir`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The journal's file name in the data directory.
pub const FILE_NAME: &str = "exec-runs.jsonl";

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Line {
    Started { id: String, label: String, started_at: u64 },
    Ended { id: String, exit: Value },
}

/// A run from before this start, as the journal tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    /// Its id.
    pub id: String,
    /// The language or program.
    pub label: String,
    /// Ms since the epoch.
    pub started_at: u64,
    /// Its `exit` event: as recorded, or `interrupted` when it never ended.
    pub exit: Value,
    /// It was still running when the server stopped.
    pub interrupted: bool,
}

/// The open journal. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Journal {
    file: Arc<Mutex<File>>,
}

impl Journal {
    /// Opens the journal in `data_dir` (creating it): returns it and the newest `kept` runs from
    /// before, newest first, the interrupted ones marked ended in the rewritten file.
    pub fn open(data_dir: &Path, kept: usize) -> std::io::Result<(Journal, Vec<PastRun>)> {
        crate::shared::data_dir::create_dir(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let past = read(&path, kept)?;
        rewrite(&path, &past)?;
        let file = crate::shared::data_dir::open_regular(
            &path,
            OpenOptions::new().create(true).append(true),
        )?;
        Ok((Journal { file: Arc::new(Mutex::new(file)) }, past))
    }

    /// Records that a run starts, synced to disk (on a blocking thread).
    pub async fn started(&self, id: &str, label: &str, started_at: u64) -> std::io::Result<()> {
        let line = Line::Started { id: id.to_owned(), label: label.to_owned(), started_at };
        self.append(line).await
    }

    /// Records how a run ended, synced to disk.
    pub async fn ended(&self, id: &str, exit: &Value) -> std::io::Result<()> {
        self.append(Line::Ended { id: id.to_owned(), exit: exit.clone() }).await
    }

    async fn append(&self, line: Line) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            file.write_all(&bytes)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The `exit` event of a run the server stopped under.
pub fn interrupted_exit() -> Value {
    json!({
        "reason": super::run::Reason::Interrupted,
        "code": null,
        "signal": null,
        "message": "the server stopped while this run was running (killed or crashed); the \
                    sandbox stopped with it",
        "duration_ms": null,
        "output_bytes": null,
        "dropped_bytes": null,
    })
}

/// The newest `kept` runs in the journal at `path`, newest first.
fn read(path: &Path, kept: usize) -> std::io::Result<Vec<PastRun>> {
    let file = match crate::shared::data_dir::open_regular(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut order = Vec::new();
    let mut runs: HashMap<String, PastRun> = HashMap::new();
    for text in BufReader::new(file).lines() {
        match serde_json::from_str::<Line>(&text?) {
            Ok(Line::Started { id, label, started_at }) => {
                order.push(id.clone());
                let exit = interrupted_exit();
                runs.insert(id.clone(), PastRun { id, label, started_at, exit, interrupted: true });
            }
            Ok(Line::Ended { id, exit }) => {
                if let Some(run) = runs.get_mut(&id) {
                    run.exit = exit;
                    run.interrupted = false;
                }
            }
            Err(_) => {} // a torn line from a crash mid-write
        }
    }
    Ok(order.iter().rev().filter_map(|id| runs.remove(id)).take(kept).collect())
}

/// Replaces the journal at `path` with `past` (oldest first), each run started and ended.
fn rewrite(path: &Path, past: &[PastRun]) -> std::io::Result<()> {
    let aside = PathBuf::from(format!("{}.new", path.display()));
    let mut file = crate::shared::data_dir::open_regular(
        &aside,
        OpenOptions::new().write(true).create(true).truncate(true),
    )?;
    let mut text = Vec::new();
    for run in past.iter().rev() {
        let started = Line::Started {
            id: run.id.clone(),
            label: run.label.clone(),
            started_at: run.started_at,
        };
        let ended = Line::Ended { id: run.id.clone(), exit: run.exit.clone() };
        for line in [started, ended] {
            serde_json::to_writer(&mut text, &line).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
    }
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::too_many_lines)] // a test may script a whole scenario, step after step
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lines(dir: &Path, text: &str) {
        std::fs::write(dir.join(FILE_NAME), text).unwrap();
    }

    #[test]
    fn a_run_that_never_ended_is_interrupted_and_stays_so_after_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        lines(
            dir.path(),
            concat!(
                r#"{"state":"started","id":"a","label":"sh","started_at":1}"#,
                "\n",
                r#"{"state":"ended","id":"a","exit":{"reason":"exited","code":0}}"#,
                "\n",
                r#"{"state":"started","id":"b","label":"python3","started_at":2}"#,
                "\n",
                r#"{"state":"ended","id":"b","ex"#, // torn by a crash
            ),
        );
        let (_journal, past) = Journal::open(dir.path(), 10).unwrap();
        assert_eq!(past.len(), 2);
        assert_eq!((past[0].id.as_str(), past[0].interrupted), ("b", true), "newest first");
        assert_eq!(past[0].exit["reason"], "interrupted");
        assert_eq!((past[1].id.as_str(), past[1].interrupted), ("a", false));
        assert_eq!(past[1].exit["reason"], "exited");

        // The rewrite recorded b's end, so the next start tells the same story.
        let (_journal, again) = Journal::open(dir.path(), 10).unwrap();
        assert_eq!(again[0].exit["reason"], "interrupted");
        assert!(!again[0].interrupted, "already reported once; now an ended run");
        assert_eq!(again[1], past[1]);
    }

    #[test]
    fn only_the_newest_kept_runs_survive_the_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..5 {
            text += &format!(
                "{{\"state\":\"started\",\"id\":\"r{i}\",\"label\":\"sh\",\"started_at\":{i}}}\n"
            );
        }
        lines(dir.path(), &text);
        let (_journal, past) = Journal::open(dir.path(), 2).unwrap();
        let ids: Vec<&str> = past.iter().map(|run| run.id.as_str()).collect();
        assert_eq!(ids, ["r4", "r3"]);
        let written = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(written.lines().count(), 4, "two runs, started and ended: {written}");
    }

    #[tokio::test]
    async fn runs_recorded_now_are_read_back_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, past) = Journal::open(dir.path(), 10).unwrap();
        assert!(past.is_empty());
        journal.started("x", "bash", 7).await.unwrap();
        journal.started("y", "sh", 8).await.unwrap();
        journal.ended("x", &json!({"reason": "timeout"})).await.unwrap();
        drop(journal);
        let (_journal, past) = Journal::open(dir.path(), 10).unwrap();
        assert_eq!(past[0].id, "y");
        assert!(past[0].interrupted);
        assert_eq!(past[1].exit, json!({"reason": "timeout"}));
        assert_eq!(past[1].label, "bash");
    }

    #[test]
    fn a_symlink_in_place_of_the_journal_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.txt");
        std::fs::write(&target, "untouched\n").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(FILE_NAME)).unwrap();
        let error = Journal::open(dir.path(), 10).unwrap_err();
        assert!(error.to_string().contains("exec-runs.jsonl is a symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
        assert!(dir.path().join(FILE_NAME).is_symlink(), "not replaced by the rewrite either");
    }
}
