//! The core's top-level modules (`core/src/*`) depend on each other without circles, so each can
//! be read, and changed, knowing only the ones below it.
//!
//! A plain check with no build tooling: it reads the sources, collects each module's
//! `crate::<module>` references in code (`use` statements and paths, comments left out: a doc
//! may point anywhere), and looks for a cycle in that graph, printing it if there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file of the module at `path` (a file, or a folder with its files), with the
/// `name.rs` beside a `name/` folder counted in.
fn sources(path: &Path, into: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()))
            .map(|entry| entry.map(|e| e.path()).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        entries.sort();
        for entry in entries {
            sources(&entry, into);
        }
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        into.push(path.to_owned());
    }
}

/// The code of a source file without its comments (line comments, doc comments, and block
/// comments), so only real references count.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if rest.starts_with("\\\"") || rest.starts_with("\\\\") {
                out.push_str(&rest[..2]);
                rest = &rest[2..];
                continue;
            }
            if c == '"' {
                in_string = false;
            }
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |end| &rest[end..]);
            continue;
        } else if rest.starts_with("/*") {
            rest = rest.find("*/").map_or("", |end| &rest[end + 2..]);
            continue;
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules `code` names after `crate::`, including each of a `crate::{a, b::c}`
/// group.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue; // `sse_core::crate::` cannot happen; `$crate::` or `my_crate::` is not ours
        }
        let after = &code[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            for item in top_level_items(group) {
                found.insert(item);
            }
        } else {
            let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The first path segment of each item of a `{a, b::c, d::{e, f}}` group (`group` starts just
/// after the opening brace).
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    let mut taking = true;
    for c in group.chars() {
        match c {
            '{' => {
                depth += 1;
                taking = false;
            }
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !current.is_empty() {
                    items.push(std::mem::take(&mut current));
                }
                taking = true;
            }
            c if depth == 0 && taking && is_ident(c) => current.push(c),
            c if depth == 0 && !c.is_whitespace() => taking = false,
            _ => {}
        }
    }
    if !current.is_empty() {
        items.push(current);
    }
    items
}

/// Each top-level module of `core/src` and the other top-level modules it references.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap_or_else(|e| panic!("cannot list core/src: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if stem == "lib" || stem == "main" {
            continue; // the crate root assembles the modules; it is not one of them
        }
        sources(&path, files.entry(stem.to_owned()).or_default());
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .into_iter()
        .map(|(module, paths)| {
            let mut uses = BTreeSet::new();
            for path in paths {
                let text = fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                uses.extend(references(&code(&text)));
            }
            uses.retain(|used| used != &module && modules.contains(used));
            (module, uses)
        })
        .collect()
}

/// A cycle of `graph`, as the modules along it (the first repeated at the end), if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        OnPath,
        Done,
    }
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(module.to_owned(), Mark::OnPath);
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::Unseen) {
                Mark::OnPath => {
                    let start = path.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::Unseen => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(module.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for module in graph.keys() {
        if marks.get(module).copied().unwrap_or(Mark::Unseen) == Mark::Unseen
            && let Some(cycle) = visit(module, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_core_modules_depend_on_each_other_without_cycles() {
    let graph = module_graph();
    assert!(graph.len() > 5, "core/src's modules were not found: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> =
            graph.iter().map(|(m, uses)| format!("  {m} -> {uses:?}")).collect();
        panic!(
            "import cycle among core's modules: {}\nthe whole graph:\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}

#[test]
fn the_check_sees_paths_and_groups_but_not_comments() {
    let source = "use crate::hub::Topic;\nuse crate::{rpc, session::Session, wire::{Event, Frame}};\n\
                  // crate::edge in a comment\n/// [`crate::client`]\nlet x = crate::metrics::new();\n\
                  /* crate::cluster */ let s = \"// not a comment\"; crate::sync::lock(&m);";
    let found = references(&code(source));
    let expected: BTreeSet<String> = ["hub", "rpc", "session", "wire", "metrics", "sync"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
            .into_iter()
            .map(|(m, uses)| (m.to_owned(), uses.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let mut acyclic = graph.clone();
    acyclic.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&acyclic), None);
}
