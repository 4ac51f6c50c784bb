//! The README's code map stays true: every path it names exists, and every module folder of the
//! core and every app folder is named in it.
//!
//! The map is where a newcomer starts reading, so a stale row costs them most: a file that moved
//! sends them nowhere, and a new module nobody added is one they never find. Plain file reads,
//! no server: this runs in milliseconds.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::{Path, PathBuf};

/// The repository's root (this package lives in `apps/`).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The table rows of the README's "## Code map" section, up to the next section.
fn code_map_rows() -> Vec<String> {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let section = readme
        .split("\n## Code map\n")
        .nth(1)
        .expect("README.md has a \"## Code map\" section")
        .split("\n## ")
        .next()
        .unwrap();
    let rows: Vec<String> = section
        .lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .map(str::to_owned)
        .collect();
    assert!(rows.len() > 10, "the code map's tables are missing or nearly empty: {rows:?}");
    rows
}

/// The repository paths a row names: each backticked `core/…` or `apps/…`, and each backticked
/// bare file name (`event.rs`), read in the last folder the row named before it, as the map
/// writes a folder and then its files: `core/src/wire/` (`event.rs`, `parser.rs`).
fn named_paths(row: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut folder: Option<String> = None;
    // Between backticks are the odd-numbered pieces.
    for quoted in row.split('`').skip(1).step_by(2) {
        if quoted.starts_with("core/") || quoted.starts_with("apps/") {
            if quoted.ends_with('/') {
                folder = Some(quoted.to_owned());
            }
            paths.push(quoted.to_owned());
        } else if quoted.ends_with(".rs") && !quoted.contains(['/', ' ']) {
            let folder = folder
                .as_deref()
                .unwrap_or_else(|| panic!("`{quoted}` has no folder before it in: {row}"));
            paths.push(format!("{folder}{quoted}"));
        }
    }
    paths
}

#[test]
fn every_path_the_code_map_names_exists() {
    let root = repository();
    let missing: Vec<String> = code_map_rows()
        .iter()
        .flat_map(|row| named_paths(row))
        .filter(|path| {
            let on_disk = root.join(path);
            // A name written as a folder must be one; a file name must be a file.
            if path.ends_with('/') { !on_disk.is_dir() } else { !on_disk.is_file() }
        })
        .collect();
    assert!(missing.is_empty(), "the README's code map names paths that do not exist: {missing:?}");
}

#[test]
fn every_core_module_folder_and_every_app_folder_is_in_the_code_map() {
    let root = repository();
    let named: Vec<String> = code_map_rows().iter().flat_map(|row| named_paths(row)).collect();
    let mut unnamed = Vec::new();
    for parent in ["core/src", "apps/src"] {
        for entry in std::fs::read_dir(root.join(parent)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                let folder = format!("{parent}/{}/", entry.file_name().to_string_lossy());
                if !named.contains(&folder) {
                    unnamed.push(folder);
                }
            }
        }
    }
    assert!(unnamed.is_empty(), "folders missing from the README's code map: {unnamed:?}");
}

#[test]
fn a_bare_file_name_is_read_in_the_folder_named_before_it() {
    assert_eq!(
        named_paths("| `wire` | `core/src/wire/` (`event.rs`, `parser.rs`) | frames; `Event` |"),
        ["core/src/wire/", "core/src/wire/event.rs", "core/src/wire/parser.rs"]
    );
    assert_eq!(
        named_paths("| `apps/src/exec/` | runs, their cgroup (`cgroup.rs`), `static/` |"),
        ["apps/src/exec/", "apps/src/exec/cgroup.rs"]
    );
}
