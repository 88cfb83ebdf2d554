//! The dependency rules of ARCHITECTURE.md, checked against the code: each module's `crate::`
//! paths (comments aside), read from the source files. A module that reaches one it must not
//! fails this test, naming the file and the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure core: no I/O, nothing above it.
const PURE: &[&str] = &[
    "ids",
    "errors",
    "strict_json",
    "settings",
    "request",
    "ledger",
    "claim",
    "instance_hold",
    "instance_plan",
    "report",
    "preflight",
    "hold",
    "drill",
    "drill_report",
    "workflow",
    "metrics",
    "fit",
    "policy",
    "approval",
    "pause",
    "verify",
];

/// Module -> the modules it must not reach (`crate::<name>` paths; `ecs::client` and the like
/// name a part of a module).
fn forbidden() -> BTreeMap<&'static str, Vec<&'static str>> {
    let above_core = [
        "cli", "lambda", "fc", "answer", "handler", "triggers", "rollback", "poller", "sim",
        "startup", "operate", "notify", "startup", "operate", "probe",
    ];
    let io_of_ecs = [
        "ecs::client",
        "ecs::transport",
        "ecs::EcsClient",
        "ecs::ReqwestTransport",
    ];
    let mut rules = BTreeMap::new();
    for m in PURE {
        let mut f: Vec<&str> = above_core.to_vec();
        f.extend(io_of_ecs);
        rules.insert(*m, f);
    }
    rules.insert("triggers", [&above_core[..], &io_of_ecs[..]].concat());
    rules.insert(
        "rollback",
        vec![
            "cli", "lambda", "fc", "answer", "handler", "triggers", "sim",
        ],
    );
    rules.insert(
        "poller",
        vec![
            "cli", "lambda", "fc", "answer", "handler", "rollback", "sim",
        ],
    );
    // The probe opens connections to a rolled-back instance's own address, nothing else.
    rules.insert(
        "probe",
        vec![
            "cli", "lambda", "fc", "answer", "handler", "triggers", "rollback", "sim", "ecs",
        ],
    );
    rules.insert("handler", vec!["cli", "lambda", "fc", "answer", "sim"]);
    rules.insert(
        "notify",
        vec![
            "cli", "lambda", "fc", "answer", "handler", "rollback", "triggers", "sim", "ecs",
        ],
    );
    rules.insert(
        "answer",
        vec!["cli", "lambda", "fc", "rollback", "triggers", "sim"],
    );
    rules.insert("startup", vec!["cli", "lambda", "fc", "answer", "operate"]);
    rules.insert(
        "operate",
        vec!["cli", "lambda", "fc", "answer", "rollback", "triggers"],
    );
    // The front doors never import each other.
    rules.insert("lambda", vec!["cli", "fc", "sim"]);
    rules.insert("fc", vec!["cli", "lambda", "sim"]);
    // The simulator sees only the transport port of the client (so a signing bug of the
    // client cannot hide behind shared code); the client sees nothing above it.
    // Every module above the client, derived so a new module cannot be left out.
    let everything: Vec<&str> = above_core
        .iter()
        .chain(PURE)
        .copied()
        .filter(|m| *m != "sim")
        .collect();
    rules.insert(
        "sim",
        [
            &everything[..],
            &[
                "ecs::client",
                "ecs::signer",
                "ecs::signer_v3",
                "ecs::credentials",
                "ecs::model",
            ][..],
        ]
        .concat(),
    );
    rules.insert("ecs", [&everything[..], &["sim"][..]].concat());
    rules
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::` paths of a source text, comments aside: `crate::a::b` gives `a::b`, and
/// `crate::{a, b::c}` gives `a` and `b::c`.
fn crate_paths(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_owned()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            out.extend(
                inner
                    .split(',')
                    .map(|p| ident(p.trim()))
                    .filter(|p| !p.is_empty()),
            );
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// The top-level module a file belongs to: `src/x.rs` is `x`, `src/x/…` is `x`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

fn read_graph() -> BTreeMap<String, BTreeSet<(String, PathBuf)>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut graph: BTreeMap<String, BTreeSet<(String, PathBuf)>> = BTreeMap::new();
    for f in all {
        if f.ends_with("layers.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let m = module_of(&src, &f);
        let entry = graph.entry(m.clone()).or_default();
        for p in crate_paths(&text) {
            if p.split("::").next() != Some(m.as_str()) {
                entry.insert((p, f.clone()));
            }
        }
    }
    graph
}

#[test]
fn no_module_reaches_one_it_must_not() {
    let graph = read_graph();
    let mut broken = Vec::new();
    for (module, bans) in forbidden() {
        for (path, file) in graph.get(module).into_iter().flatten() {
            if let Some(ban) = bans
                .iter()
                .find(|b| path == *b || path.starts_with(&format!("{b}::")))
            {
                broken.push(format!(
                    "{}: crate::{path} ({module} must not reach {ban})",
                    file.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_modules_form_no_cycle() {
    let graph = read_graph();
    let edges: BTreeMap<&str, BTreeSet<&str>> = graph
        .iter()
        .map(|(m, paths)| {
            (
                m.as_str(),
                paths
                    .iter()
                    .filter_map(|(p, _)| p.split("::").next())
                    .filter(|t| graph.contains_key(*t))
                    .collect(),
            )
        })
        .collect();
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m);
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m);
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m);
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        let cycle = visit(m, &edges, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "an import cycle: {cycle:?}");
    }
}

#[test]
fn the_reader_of_paths_sees_through_groups_and_comments() {
    let text = "use crate::{ledger::Phase, report};\n// crate::sim in a comment\nlet x = crate::ecs::client::Action::ALL;";
    assert_eq!(
        crate_paths(text),
        ["ledger::Phase", "report", "ecs::client::Action::ALL"]
    );
    // A rule that is broken is seen: the test above would name it.
    let bans = &forbidden()["ledger"];
    assert!(bans.contains(&"rollback") && bans.contains(&"ecs::client"));
}
