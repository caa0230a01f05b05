//! The rules of docs/architecture.md that a machine can check, over `src/` as text:
//! no import cycle among pbxtap's modules, `settings` a leaf, and nothing but `app` and
//! `main` importing `config`.
//!
//! Two levels are checked. Among top-level modules (`ami`, `sink`, `config`, ...), each
//! holding its submodules: `sink::nats` importing `config` is `sink` importing `config`.
//! And among the submodules of one module (`sink::nats`, `sink::mqtt`, `sink::health`):
//! siblings must not import each other in a circle either. An edge is a path to another
//! module's item in the code outside `#[cfg(test)]` (`use crate::x::...`, an inline
//! `crate::x::...`, or `super::...`). A submodule using its parent's items
//! (`super::Shared` in `sink/mqtt/driver.rs`) is inside the parent, not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file under `src/` belongs to, at most two levels deep: `sink/nats/link.rs`
/// is `sink::nats`, `ami/client.rs` is `ami::client`, `config.rs` is `config`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.truncate(2);
    parts
}

/// The code of a file without its test modules and comments.
fn code_outside_tests(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a file's code names: `crate::a::b` and `super::...` paths, resolved to
/// modules of at most two levels. `use crate::x::{a, b}` names `x::a` and `x::b` when
/// those are modules, else `x`.
fn referenced(
    code: &str,
    here: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let resolve = |path: Vec<String>, out: &mut BTreeSet<Vec<String>>| {
        let mut path = path;
        path.truncate(2);
        while !path.is_empty() && !modules.contains(&path) {
            path.pop();
        }
        if !path.is_empty() {
            out.insert(path);
        }
    };
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (start, prefix) in [
        ("crate::", Vec::new()),
        ("super::", here[..here.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            // `crate::` inside a longer name (`pbxtap_crate::`) is not a path.
            let before = rest[..i].chars().last();
            rest = &rest[i + start.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `use super::{a, b::c}`: each item is a path below the prefix.
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let mut p = prefix.clone();
                    p.extend(
                        item.trim()
                            .split("::")
                            .map(ident)
                            .filter(|n| !n.is_empty() && n != "self"),
                    );
                    resolve(p, &mut out);
                }
                continue;
            }
            let first = ident(rest);
            if first.is_empty() {
                continue;
            }
            let mut path = prefix.clone();
            path.push(first.clone());
            let after = &rest[first.len()..];
            if let Some(group) = after.strip_prefix("::{") {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let name = ident(item.trim().trim_start_matches("self as "));
                    let mut p = path.clone();
                    if !name.is_empty() && name != "self" {
                        p.push(name);
                    }
                    resolve(p, &mut out);
                }
            } else if let Some(next) = after.strip_prefix("::") {
                let mut p = path.clone();
                let second = ident(next);
                if !second.is_empty() {
                    p.push(second);
                }
                resolve(p, &mut out);
            } else {
                resolve(path, &mut out);
            }
        }
    }
    out
}

/// Module → the modules it names, over `src/`.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(&src).unwrap()))
        .filter(|m| !m.is_empty() && m[0] != "lib" && m[0] != "main")
        .collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let here = module_of(file.strip_prefix(&src).unwrap());
        let text = std::fs::read_to_string(file).unwrap();
        let edges = graph.entry(here.clone()).or_default();
        for to in referenced(&code_outside_tests(&text), &here, &modules) {
            // Inside one module, or a submodule using its own parent: not an edge.
            let nested = to.starts_with(&here) || here.starts_with(&to);
            if !nested {
                edges.insert(to);
            }
        }
    }
    graph
}

fn name(m: &[String]) -> String {
    m.join("::")
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    // Colours: absent white, 1 on the current path, 2 done.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        colour: &mut BTreeMap<Vec<String>, u8>,
        path: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        colour.insert(node.clone(), 1);
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match colour.get(next) {
                Some(1) => {
                    let at = path.iter().position(|p| p == next).unwrap();
                    let mut cycle: Vec<String> = path[at..].iter().map(|m| name(m)).collect();
                    cycle.push(name(next));
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, colour, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        colour.insert(node.clone(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for node in graph.keys() {
        if !colour.contains_key(node) {
            if let Some(c) = visit(node, graph, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// `graph` seen from `level`: with `None`, top-level modules, each holding its
/// submodules; with `Some(m)`, the submodules of `m` and the edges among them.
fn at_level(
    graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    level: Option<&str>,
) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let node = |m: &Vec<String>| -> Option<Vec<String>> {
        match level {
            None => Some(m[..1].to_vec()),
            Some(top) => (m.len() == 2 && m[0] == top).then(|| m.clone()),
        }
    };
    let mut out: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, to) in graph {
        let Some(from) = node(from) else { continue };
        let edges = out.entry(from.clone()).or_default();
        for t in to.iter().filter_map(node) {
            if t != from {
                edges.insert(t);
            }
        }
    }
    out
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let g = graph();
    let top = at_level(&g, None);
    assert!(top.len() > 12, "too few modules found: {:?}", top.keys());
    assert!(
        top[&vec!["config".to_string()]].contains(&vec!["sink".to_string()]),
        "the check sees no edge config -> sink: it is not reading the imports"
    );
    if let Some(cycle) = find_cycle(&top) {
        panic!(
            "import cycle among top-level modules: {}",
            cycle.join(" -> ")
        );
    }
    for parent in top.keys() {
        let below = at_level(&g, Some(&parent[0]));
        if let Some(cycle) = find_cycle(&below) {
            panic!("import cycle inside {}: {}", parent[0], cycle.join(" -> "));
        }
    }
}

#[test]
fn settings_is_a_leaf_and_only_app_imports_config() {
    let top = at_level(&graph(), None);
    let settings = vec!["settings".to_string()];
    assert!(
        top[&settings].is_empty(),
        "settings imports {:?}",
        top[&settings]
    );
    let config = vec!["config".to_string()];
    let importers: Vec<String> = top
        .iter()
        .filter(|(_, to)| to.contains(&config))
        .map(|(from, _)| name(from))
        .collect();
    assert_eq!(importers, ["app"], "only app (and main) may import config");
}

#[test]
fn the_check_finds_a_cycle_when_there_is_one() {
    let module = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let here = module("sink::nats");
    let modules: BTreeSet<_> = [
        "config",
        "sink",
        "sink::nats",
        "settings",
        "ami",
        "ami::session",
    ]
    .map(module)
    .into_iter()
    .collect();
    let code =
        "use crate::config::Config;\nuse super::{health, nats::link};\nuse crate::ami::session::backoff;\n\
                // use crate::ami::frame;\nfn f() { crate::settings::x(); }";
    let found = referenced(&code_outside_tests(code), &here, &modules);
    let expect: BTreeSet<_> = ["config", "sink", "sink::nats", "ami::session", "settings"]
        .map(module)
        .into_iter()
        .collect();
    assert_eq!(found, expect);
    // config -> sink (its mod.rs) and sink::nats -> config: a cycle once sink holds nats.
    let mut g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    g.entry(module("config"))
        .or_default()
        .insert(module("sink"));
    g.entry(module("sink")).or_default();
    g.entry(module("sink::nats"))
        .or_default()
        .insert(module("config"));
    assert_eq!(
        find_cycle(&at_level(&g, None)),
        Some(vec!["config".into(), "sink".into(), "config".into()])
    );
    // Siblings in a circle inside one module.
    let mut g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    g.entry(module("sink::nats"))
        .or_default()
        .insert(module("sink::mqtt"));
    g.entry(module("sink::mqtt"))
        .or_default()
        .insert(module("sink::nats"));
    assert!(find_cycle(&at_level(&g, Some("sink"))).is_some());
    assert_eq!(find_cycle(&at_level(&g, None)), None);
}
