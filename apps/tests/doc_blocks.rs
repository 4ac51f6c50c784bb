//! Every shell block in the docs runs as pasted, and prints what the docs show.
//!
//! The docs (`README.md`, `CONCEPTS.md`, `use-cases/*.md`) are where people start, and a block
//! that fails as pasted costs a newcomer most. So each ```` ```sh ```` block is run here, one at a
//! time, and its standard output is compared with the ```` ```text ```` block right after it, if
//! there is one. Three parts, each small:
//!
//! - **The parser** ([`parse`]) finds the blocks. On the line right before a block's fence,
//!   HTML comments (invisible on a rendered page) tell the test about it:
//!   `<!-- doc-test: skip (REASON) -->` for a block that cannot run unattended (an API key, a
//!   second terminal, systemd), printed with its reason on every run, and
//!   `<!-- doc-test: needs PROGRAM… -->` for the programs it needs (`bwrap`, `redis-server`,
//!   `nginx`, `openssl`, or `root` for exec's cgroups). A needed program that is missing skips
//!   the block with a NOTICE outside CI and fails it in CI (`CI` set), like every other test
//!   here. A ```` ```text ```` block that does not follow a ```` ```sh ```` block, an unterminated
//!   fence, a doc-test comment that is not right above a ```` ```sh ```` fence, or a skip without
//!   a reason is an error in the document, not something to guess around.
//! - **The matcher** ([`matches`]) compares loosely where runs differ: a line that is only `…`
//!   stands for any number of lines (none included); a `…` inside a line stands for any text in
//!   that line; a run of digits stands for any run of digits, so ids, times, durations and
//!   counts are written as one run printed them. Trailing spaces and trailing blank lines do not
//!   count. Everything else must be equal.
//! - **The runner** ([`run`]) runs a block with `bash FILE` in a fresh scratch directory (the
//!   block's working directory, with `HOME` and `XDG_DATA_HOME` inside it, so the default data
//!   directory is new; the checkout's `deploy/` is linked there, as a block run from the
//!   checkout sees it), standard input closed, in a process group of its own. The block fails
//!   when bash exits non-zero, when it has not finished within two minutes, or when any
//!   process of its group is still running 30 s after bash ended (a background
//!   server it did not stop); the group is killed whatever happened, so nothing outlives the
//!   block. Blocks run one at a time, because they use the documented fixed ports; a port
//!   already taken fails the block at once, since another server would answer in its place.
//!   Run as root (as CI is), the scratch directory is 0700 like `/root`, so exec's block also
//!   holds the README's word that its data directory may be one no run uid can reach.
//!
//! **`cargo` in a block is the binary under test.** A person runs `cargo run --release -- ARGS`
//! in the checkout; here `PATH` starts with a small `cargo` script that execs this test's
//! `sse-apps` binary with `ARGS` and refuses anything else, with a message. This is the same
//! program: on Unix `cargo run` builds and then replaces itself with the binary (cargo's
//! `exec_replace`), so `%1` in a block is the server either way. It is built from the same
//! sources in the test profile instead of release, which changes speed, not behaviour, and it
//! saves each block a release build.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// How long a block may run, and then how long its processes may take to stop.
#[derive(Clone, Copy)]
struct Limits {
    run: Duration,
    stop: Duration,
}

/// The limits of a doc block: the slowest streams a basic-server's ten events (20 s), and a
/// server drains its connections after `kill %1`.
const DOC_BLOCK: Limits = Limits { run: Duration::from_secs(120), stop: Duration::from_secs(30) };

/// The repository's root (this package lives in `apps/`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// The parser

/// A ```` ```sh ```` block of a document.
#[derive(Debug, Default, PartialEq)]
struct Block {
    /// The line of its opening fence, from 1.
    line: usize,
    code: String,
    /// Why it is not run, from a `doc-test: skip (…)` comment.
    skip: Option<String>,
    /// The programs it needs, from a `doc-test: needs …` comment.
    needs: Vec<String>,
    /// The ```` ```text ```` block right after it: its fence's line and its text.
    expected: Option<(usize, String)>,
}

/// The ```` ```sh ```` blocks of `markdown`, or what is wrong with the document.
fn parse(markdown: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks: Vec<Block> = Vec::new();
    // The comments above the next fence, and where the last sh block closed.
    let mut pending = Block::default();
    let mut pending_comment_line = None;
    let mut last_sh_end: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if let Some(directive) = line.strip_prefix("<!-- doc-test:") {
            let directive = directive
                .strip_suffix("-->")
                .ok_or_else(|| format!("line {}: a doc-test comment must end on its line", i + 1))?
                .trim();
            directive_into(directive, &mut pending).map_err(|e| format!("line {}: {e}", i + 1))?;
            pending_comment_line.get_or_insert(i + 1);
            i += 1;
            continue;
        }
        let Some(info) = line.strip_prefix("```") else {
            if let Some(comment) = pending_comment_line {
                return Err(misplaced(comment));
            }
            i += 1;
            continue;
        };
        let info = info.trim();
        let close = (i + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .ok_or_else(|| format!("line {}: the ```{info} fence is never closed", i + 1))?;
        let body: String = lines[i + 1..close].iter().map(|l| format!("{l}\n")).collect();
        if info != "sh"
            && let Some(comment) = pending_comment_line
        {
            return Err(misplaced(comment));
        }
        match info {
            "bash" | "shell" | "console" | "zsh" => {
                return Err(format!(
                    "line {}: shell blocks are ```sh (which this test runs)",
                    i + 1
                ));
            }
            "sh" => {
                let mut block = std::mem::take(&mut pending);
                pending_comment_line = None;
                block.line = i + 1;
                block.code = body;
                blocks.push(block);
                last_sh_end = Some(close);
            }
            "text" => {
                let follows_sh = last_sh_end
                    .is_some_and(|end| lines[end + 1..i].iter().all(|l| l.trim().is_empty()));
                let block = blocks.last_mut().filter(|b| follows_sh && b.expected.is_none());
                let Some(block) = block else {
                    return Err(format!(
                        "line {}: a ```text block with no ```sh block right before it (```text \
                         is the output of the block above it; use ``` for other text)",
                        i + 1
                    ));
                };
                block.expected = Some((i + 1, body));
            }
            _ => {}
        }
        i = close + 1;
    }
    if let Some(comment) = pending_comment_line {
        return Err(misplaced(comment));
    }
    Ok(blocks)
}

fn misplaced(comment_line: usize) -> String {
    format!("line {comment_line}: a doc-test comment must stand on the line before a ```sh fence")
}

/// Reads one comment's directive (`skip (REASON)` or `needs PROGRAM…`) into `block`.
fn directive_into(directive: &str, block: &mut Block) -> Result<(), String> {
    if let Some(reason) = directive.strip_prefix("skip") {
        let reason = reason.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')'));
        match reason.map(str::trim) {
            Some(reason) if !reason.is_empty() => block.skip = Some(reason.to_owned()),
            _ => return Err("a skip says why: `doc-test: skip (REASON)`".to_owned()),
        }
    } else if let Some(programs) = directive.strip_prefix("needs ") {
        block.needs.extend(programs.split_whitespace().map(str::to_owned));
    } else {
        return Err(format!("unknown doc-test comment {directive:?} (skip or needs)"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The matcher

/// A piece of an expected line.
#[derive(Clone, Copy, PartialEq)]
enum Piece {
    Char(char),
    /// A run of digits: matches any run of digits.
    Digits,
    /// `…`: any text.
    Any,
}

/// The line `…` alone: any number of lines.
const ANY_LINES: &str = "…";

/// Whether `actual` is what `expected` shows, under the loose rule of the module's docs.
fn matches(expected: &str, actual: &str) -> bool {
    parting(expected, actual).is_none()
}

/// `None` when `actual` matches `expected`; else the index of the furthest expected line that
/// any way of matching reached and could not match: where the two part.
fn parting(expected: &str, actual: &str) -> Option<usize> {
    let expected = significant_lines(expected);
    let actual = significant_lines(actual);
    let mut furthest = 0;
    if lines_match(&expected, &actual, 0, &mut furthest) { None } else { Some(furthest) }
}

/// The lines without trailing spaces, without the blank lines at the end.
fn significant_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

fn lines_match(expected: &[&str], actual: &[&str], at: usize, furthest: &mut usize) -> bool {
    *furthest = (*furthest).max(at);
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&ANY_LINES, rest)) => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..], at + 1, furthest))
        }
        Some((line, rest)) => {
            actual.first().is_some_and(|first| line_matches(&pieces(line), first))
                && lines_match(rest, &actual[1..], at + 1, furthest)
        }
    }
}

fn pieces(line: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for c in line.chars() {
        match c {
            '…' => pieces.push(Piece::Any),
            '0'..='9' if pieces.last() == Some(&Piece::Digits) => {}
            '0'..='9' => pieces.push(Piece::Digits),
            c => pieces.push(Piece::Char(c)),
        }
    }
    pieces
}

fn line_matches(pieces: &[Piece], actual: &str) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return actual.is_empty();
    };
    match first {
        Piece::Any => actual
            .char_indices()
            .map(|(i, _)| i)
            .chain([actual.len()])
            .any(|i| line_matches(rest, &actual[i..])),
        Piece::Digits => {
            let digits =
                actual.len() - actual.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            digits > 0 && line_matches(rest, &actual[digits..])
        }
        Piece::Char(c) => actual.strip_prefix(*c).is_some_and(|tail| line_matches(rest, tail)),
    }
}

/// The expected and actual output side by side, numbered, with where they part marked.
fn difference(expected: &str, actual: &str) -> String {
    let at = parting(expected, actual).unwrap_or(0);
    let mut out = String::from("expected (… any lines or text, digits any digits):\n");
    let expected = significant_lines(expected);
    for (n, line) in expected.iter().enumerate() {
        let mark = if n == at { ">>" } else { "  " };
        let _ = writeln!(out, "{mark} {:3} | {line}", n + 1);
    }
    if at == expected.len() {
        let _ = writeln!(out, ">>     | (the end: the actual output goes on)");
    }
    let _ = writeln!(out, "actual:");
    for (n, line) in significant_lines(actual).iter().enumerate() {
        let _ = writeln!(out, "   {:3} | {line}", n + 1);
    }
    let _ = writeln!(out, "(>> marks the first expected line no way of matching got past)");
    out
}

// ---------------------------------------------------------------------------------------------
// The runner

/// What a block printed on stdout, or why it failed.
fn run(code: &str, limits: Limits) -> Result<String, String> {
    let harness = tempfile::tempdir().unwrap();
    let work = harness.path().join("work");
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(repository().join("deploy"), work.join("deploy")).unwrap();
    let bin = harness.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    write_cargo_shim(&bin.join("cargo"));
    let script = harness.path().join("block.sh");
    std::fs::write(&script, code).unwrap();
    let stdout_path = harness.path().join("stdout");
    let stderr_path = harness.path().join("stderr");

    let mut bash = Command::new("bash");
    bash.arg(&script)
        .current_dir(&work)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                bin.display()
            ),
        )
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0);
    let mut child = bash.spawn().unwrap();
    let mut group = Group { id: Pid::from_child(&child), empty: false };
    let output = || {
        let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        (out, err)
    };

    let finished = wait_for_exit(&[group.id], Instant::now() + limits.run);
    if !finished {
        group.kill();
    }
    // Bash has ended, by itself or killed: reap it.
    let status = child.wait().unwrap();
    if !finished {
        let (out, err) = output();
        return Err(format!(
            "it did not finish within {:?}\nstdout:\n{out}\nstderr:\n{err}",
            limits.run
        ));
    }
    let leftovers = group.wait_until_empty(Instant::now() + limits.stop);
    let (out, err) = output();
    if !leftovers.is_empty() {
        return Err(format!(
            "it left processes running (killed now): {leftovers:?}\nstdout:\n{out}\nstderr:\n{err}"
        ));
    }
    if !status.success() {
        return Err(format!("bash exited with {status}\nstdout:\n{out}\nstderr:\n{err}"));
    }
    Ok(out)
}

/// A `cargo` for blocks: `cargo run --release [-- ARGS]` execs the binary under test with
/// ARGS, as cargo itself ends up doing; anything else is refused, so a block needing more
/// fails loudly.
fn write_cargo_shim(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let binary = env!("CARGO_BIN_EXE_sse-apps");
    let script = format!(
        r#"#!/bin/sh
# The doc-block test's stand-in for cargo: the binary under test, already built.
if [ "$1" = run ] && [ "$2" = --release ]; then
  shift 2
  if [ "$#" -eq 0 ] || [ "$1" = -- ]; then
    [ "$#" -gt 0 ] && shift
    exec '{binary}' "$@"
  fi
fi
echo "doc-block test: only 'cargo run --release [-- ARGS]' runs in a block, not 'cargo $*'" >&2
exit 2
"#
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A block's process group (bash leads it, its background jobs stay in it), killed when
/// dropped so that nothing outlives the block, even a failed assertion. Once it is known to be
/// empty it is left alone: its id may then be reused by another process group.
struct Group {
    id: Pid,
    empty: bool,
}

impl Group {
    fn kill(&self) {
        if !self.empty {
            let _ = rustix::process::kill_process_group(self.id, Signal::KILL);
        }
    }

    /// The group's live members (`pid command`), not counting zombies.
    fn members(&self) -> Vec<(Pid, String)> {
        let mut members = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
            let Some((comm, fields)) = stat.rsplit_once(") ") else { continue };
            let fields: Vec<&str> = fields.split_whitespace().collect();
            let in_group = fields.get(2).and_then(|g| g.parse::<i32>().ok())
                == Some(self.id.as_raw_nonzero().get());
            if in_group && fields.first() != Some(&"Z") {
                let name = comm.split_once(" (").map_or(comm, |(_, c)| c).to_owned();
                members.extend(Pid::from_raw(pid).map(|p| (p, name)));
            }
        }
        members
    }

    /// Waits until the group has no live member, at most until `deadline`; returns those still
    /// running then (after killing them).
    fn wait_until_empty(&mut self, deadline: Instant) -> Vec<String> {
        loop {
            let members = self.members();
            if members.is_empty() {
                self.empty = true;
                return Vec::new();
            }
            let pids: Vec<Pid> = members.iter().map(|(p, _)| *p).collect();
            if !wait_for_exit(&pids, deadline) {
                let still = self.members();
                self.kill();
                return still
                    .into_iter()
                    .map(|(p, name)| format!("{} {name}", p.as_raw_nonzero()))
                    .collect();
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until every process of `pids` has exited (its pidfd turns readable), at most until
/// `deadline`; false if one is still running then.
fn wait_for_exit(pids: &[Pid], deadline: Instant) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    for &pid in pids {
        // A process that is already gone has nothing to wait for.
        let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
            continue;
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = Timespec::try_from(left).unwrap();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return false,
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => panic!("poll on a pidfd: {e}"),
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The documents

/// The documents whose blocks run: the README, the concepts and every use-case document.
fn documents() -> Vec<PathBuf> {
    let root = repository();
    let mut documents = vec![root.join("README.md"), root.join("CONCEPTS.md")];
    let mut use_cases: Vec<PathBuf> = std::fs::read_dir(root.join("use-cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    use_cases.sort();
    documents.extend(use_cases);
    documents
}

/// Writes a line to stderr past the test harness's capture (which takes only `eprintln!`), so
/// that the blocks skipped, and why, show on every run, passing or not.
fn report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The loopback ports a block names (`127.0.0.1:8080`): its servers will listen there, and a
/// server already there would answer in their place.
fn ports_named(code: &str) -> Vec<u16> {
    code.split("127.0.0.1:")
        .skip(1)
        .filter_map(|rest| {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            rest[..digits].parse().ok()
        })
        .collect()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Whether the `needs` of a block are here: in CI they must be (a failure names them), outside
/// it a missing one skips the block with a notice.
fn needs_met(needs: &[String], place: &str) -> bool {
    let (root, programs): (Vec<&str>, Vec<&str>) =
        needs.iter().map(String::as_str).partition(|n| *n == "root");
    if !root.is_empty() && !rustix::process::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "{place}: CI runs as root (exec's cgroups)");
        report(&format!(
            "NOTICE: skipping {place}: it runs exec, which needs root or a delegated cgroup"
        ));
        return false;
    }
    sse_core::testing::programs::installed(&programs, "the packages README.md's Requirements list")
}

#[test]
fn every_shell_block_in_the_docs_runs_as_shown() {
    let root = repository();
    let mut failures = Vec::new();
    let mut ran = 0;
    for document in documents() {
        let name = document.strip_prefix(&root).unwrap().display().to_string();
        let blocks = parse(&std::fs::read_to_string(&document).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for block in blocks {
            let place = format!("{name}:{}", block.line);
            if let Some(reason) = &block.skip {
                report(&format!("doc block skipped, {place}: {reason}"));
                continue;
            }
            if !needs_met(&block.needs, &place) {
                continue;
            }
            report(&format!("doc block running, {place}"));
            ran += 1;
            if let Some(port) = ports_named(&block.code).into_iter().find(|&p| !port_free(p)) {
                failures.push(format!(
                    "{place}: port {port} is in use before the block ran: the blocks use the \
                     documented ports, so stop what listens there"
                ));
                continue;
            }
            match run(&block.code, DOC_BLOCK) {
                Err(why) => failures.push(format!("{place}: {why}")),
                Ok(out) => {
                    if let Some((line, expected)) = &block.expected
                        && !matches(expected, &out)
                    {
                        failures.push(format!(
                            "{place}: its output is not the ```text block at line {line}\n{}",
                            difference(expected, &out)
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} blocks failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(ran > 0, "no block ran");
}

// ---------------------------------------------------------------------------------------------
// The parser's and the matcher's own tests

#[test]
fn the_parser_finds_sh_blocks_their_comments_and_expected_output() {
    let doc = "# Title\n\n```sh\necho hi\n```\n\n```text\nhi\n```\n\n```\nplain\n```\n\n\
               <!-- doc-test: skip (needs a key) -->\n```sh\nsecret\n```\n\n\
               <!-- doc-test: needs bwrap root -->\n```sh\nexec\n```\n";
    let blocks = parse(doc).unwrap();
    assert_eq!(
        blocks,
        vec![
            Block {
                line: 3,
                code: "echo hi\n".into(),
                expected: Some((7, "hi\n".into())),
                ..Block::default()
            },
            Block {
                line: 16,
                code: "secret\n".into(),
                skip: Some("needs a key".into()),
                ..Block::default()
            },
            Block {
                line: 21,
                code: "exec\n".into(),
                needs: vec!["bwrap".into(), "root".into()],
                ..Block::default()
            },
        ]
    );
}

#[test]
fn the_parser_refuses_what_it_would_have_to_guess() {
    let cases = [
        ("```sh\necho hi\n", "line 1: the ```sh fence is never closed"),
        ("```sh\necho\n```\n\nsome words\n\n```text\nhi\n```\n", "line 7: a ```text block"),
        ("```text\nhi\n```\n", "line 1: a ```text block"),
        ("```sh\na\n```\n```text\n1\n```\n```text\n2\n```\n", "line 7: a ```text block"),
        ("<!-- doc-test: skip -->\n```sh\na\n```\n", "line 1: a skip says why"),
        ("<!-- doc-test: skip () -->\n```sh\na\n```\n", "line 1: a skip says why"),
        ("<!-- doc-test: maybe -->\n```sh\na\n```\n", "line 1: unknown doc-test comment"),
        ("<!-- doc-test: skip (x) -->\n\n```sh\na\n```\n", "line 1: a doc-test comment must"),
        ("<!-- doc-test: skip (x) -->\n```text\na\n```\n", "line 1: a doc-test comment must"),
        ("text\n<!-- doc-test: skip (x) -->\n", "line 2: a doc-test comment must"),
        ("<!-- doc-test: skip (x)\n```sh\na\n```\n", "line 1: a doc-test comment must end"),
        ("```bash\necho\n```\n", "line 1: shell blocks are ```sh"),
    ];
    for (doc, error) in cases {
        let got = parse(doc).expect_err(doc);
        assert!(got.starts_with(error), "{doc:?}: {got:?} should start with {error:?}");
    }
}

#[test]
fn the_matcher_lets_digits_and_ellipses_vary_and_nothing_else() {
    // Digits stand for digits.
    assert!(matches("id: 1795814956483354\n", "id: 1795818700000004\n"));
    assert!(matches("#1 6.0 ms\n", "#1 12.25 ms\n"));
    assert!(!matches("id: 1\n", "id: x\n"));
    assert!(!matches("id: 1\n", "id: \n"));
    assert!(!matches("id 1\n", "id 1a\n"));
    // `…` in a line: any text there, none included.
    assert!(matches("{\"id\":\"…\"}\n", "{\"id\":\"3f2a\"}\n"));
    assert!(matches("a…b\n", "ab\n"));
    assert!(!matches("a…b\n", "a\nb\n"));
    // `…` alone: any lines, none included.
    assert!(matches("first\n…\nlast\n", "first\nx\ny\nlast\n"));
    assert!(matches("first\n…\nlast\n", "first\nlast\n"));
    assert!(matches("…\n", ""));
    assert!(!matches("first\n…\nlast\n", "first\nx\n"));
    // Lines must be there, in order, and no more.
    assert!(!matches("a\nb\n", "b\na\n"));
    assert!(!matches("a\n", "a\nb\n"));
    assert!(!matches("a\nb\n", "a\n"));
    // Trailing spaces and blank lines at the end do not count; blank lines inside do.
    assert!(matches("a\n\nb\n", "a  \n\nb\n\n\n"));
    assert!(!matches("a\n\nb\n", "a\nb\n"));
}

#[test]
fn the_ports_a_block_names_are_found() {
    let code = "curl http://127.0.0.1:8080/x\nredis://127.0.0.1:6379 127.0.0.1:$port 127.0.0.1:\n";
    assert_eq!(ports_named(code), vec![8080, 6379]);
}

#[test]
fn a_mismatch_is_shown_where_it_starts() {
    assert_eq!(parting("a\nb\nc\n", "a\nx\nc\n"), Some(1));
    assert_eq!(parting("a\n…\nc\n", "a\nb\nd\n"), Some(2));
    let shown = difference("a\nb\n", "a\nc\n");
    assert!(shown.contains(">>   2 | b"), "{shown}");
    assert!(shown.contains("     2 | c"), "{shown}");
    assert_eq!(parting("a\n", "a\nmore\n"), Some(1));
    let shown = difference("a\n", "a\nmore\n");
    assert!(shown.contains(">>     | (the end: the actual output goes on)"), "{shown}");
}

/// Short limits for the runner's own tests.
const QUICK: Limits = Limits { run: Duration::from_secs(5), stop: Duration::from_secs(1) };

#[test]
fn the_runner_gives_stdout_and_fails_a_block_that_fails_hangs_or_leaves_a_process() {
    assert_eq!(run("echo hi; echo err >&2", QUICK).unwrap(), "hi\n");
    // As pasted: a failing command does not stop the block, only its last status counts.
    assert_eq!(run("false\necho after", QUICK).unwrap(), "after\n");
    let failed = run("echo before\nfalse", QUICK).unwrap_err();
    assert!(failed.starts_with("bash exited with exit status: 1"), "{failed}");
    let hung = run("sleep 30", QUICK).unwrap_err();
    assert!(hung.starts_with("it did not finish within 5s"), "{hung}");
    let left = run("sleep 300 &\necho started", QUICK).unwrap_err();
    assert!(left.starts_with("it left processes running (killed now): [\""), "{left}");
    assert!(left.contains(" sleep\""), "{left}");
    // A job stopped as the docs stop it is not left over.
    assert_eq!(run("sleep 300 &\nkill %1", QUICK).unwrap(), "");
}

#[test]
fn cargo_in_a_block_is_the_binary_under_test_and_nothing_else() {
    let version = run("cargo run --release -- --version", QUICK).unwrap();
    assert!(version.starts_with("sse-apps "), "{version}");
    let refused = run("cargo build --release", QUICK).unwrap_err();
    assert!(refused.contains("only 'cargo run --release [-- ARGS]' runs in a block"), "{refused}");
    // HOME and the data directory are the scratch directory's own.
    let home = run("echo \"$HOME $XDG_DATA_HOME $PWD\"", QUICK).unwrap();
    let [home, data, work]: [&str; 3] =
        home.split_whitespace().collect::<Vec<_>>().try_into().unwrap();
    assert!(home.starts_with(work) && data.starts_with(home), "{home} {data} {work}");
}
