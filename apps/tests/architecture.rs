//! No module of one app imports another app.
//!
//! An app is a folder under `apps/src/` that the server mounts as one: chat, dashboard, exec,
//! sampling, and the learning programs basic and bidi. What two of them need (the audit log, the
//! clock, the data directory, reaching the instance that owns a thing) lives outside every app,
//! in `apps/src/shared/`, `apps/src/forward.rs` and `apps/src/owner_routing.rs`, so an app can
//! be read, changed or removed without reading the others. The server, the command line and the
//! benchmarks assemble apps and are not apps themselves.
//!
//! A plain read of the source files, no compiler: a path `crate::<other app>` in an app's file
//! (in a `use`, an expression or a doc link) is a finding, reported with its file and line.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::{Path, PathBuf};

/// The apps: each one a folder of `apps/src/`.
const APPS: [&str; 6] = ["basic", "bidi", "chat", "dashboard", "exec", "sampling"];

/// Every `.rs` file under `dir`, sorted, so findings come in the same order every run.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The other apps that `line` names as `crate::<app>`, in a path or in a grouped import
/// (`crate::{chat, exec}`).
fn other_apps_named(line: &str, this_app: &str) -> Vec<&'static str> {
    let mut named = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        let inside_group =
            rest.strip_prefix('{').map(|group| group.split('}').next().unwrap_or(""));
        let candidates: Vec<&str> = match inside_group {
            Some(group) => group.split(',').map(|item| item.trim()).collect(),
            None => vec![rest],
        };
        for candidate in candidates {
            let name: String =
                candidate.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if let Some(app) = APPS.iter().find(|app| **app == name && **app != this_app) {
                named.push(*app);
            }
        }
    }
    named
}

#[test]
fn no_app_imports_another_app() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut findings = Vec::new();
    for app in APPS {
        let folder = source.join(app);
        assert!(folder.is_dir(), "the app {app} has no folder {}", folder.display());
        for file in rust_files(&folder) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (index, line) in text.lines().enumerate() {
                for other in other_apps_named(line, app) {
                    let file = file.strip_prefix(&source).unwrap_or(&file).display().to_string();
                    findings.push(format!(
                        "apps/src/{file}:{}: the {app} app imports the {other} app: {}",
                        index + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        findings.is_empty(),
        "apps import one another; move what they share to apps/src/shared/ (or a layer beside \
         forward.rs):\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_check_finds_paths_and_grouped_imports_and_nothing_else() {
    assert_eq!(other_apps_named("use crate::dashboard::audit::AuditLog;", "exec"), ["dashboard"]);
    assert_eq!(other_apps_named("let by = crate::dashboard::who(a, &h);", "exec"), ["dashboard"]);
    assert_eq!(other_apps_named("use crate::{chat, shared::clock};", "exec"), ["chat"]);
    assert_eq!(other_apps_named("/// see [`crate::sampling::router`]", "chat"), ["sampling"]);
    // Its own app, the shared modules and names that only begin like an app are not findings.
    assert!(other_apps_named("use crate::exec::run::Run;", "exec").is_empty());
    assert!(other_apps_named("use crate::shared::audit::Entry;", "exec").is_empty());
    assert!(other_apps_named("use crate::forward;", "exec").is_empty());
    assert!(other_apps_named("use crate::chatter::X;", "exec").is_empty());
}
