//! The module graph of `src/` has no cycles (issue 10: `server.rs` was the hub of a 10-file
//! import cycle). Reads every `src/**/*.rs`, collects each module's `crate::…` references and
//! checks that the graph of top-level modules is acyclic; `ARCHITECTURE.md` ("Layers") lists
//! the resulting order. A folder module (`src/cache/`, `src/upstream/`) is one node: its files
//! are one family behind its `mod.rs`. Test-only code (`#[cfg(test)]` modules) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level module a file belongs to: `src/a.rs` and `src/a/b.rs` → `a`.
fn node_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    let first = first.unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// The code of a file without comments and without its `#[cfg(test)]` tail (test modules sit
/// at the end of a file in this codebase).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The top-level names after each `crate::` in `code`: `crate::a::b` → `a`,
/// `crate::{a, b::c}` → `a`, `b`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `my_crate::…`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => item.push(c),
                }
            }
            items.push(item);
            for item in items {
                refs.insert(ident(item.trim()));
            }
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty());
    refs
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Modules `main.rs` declares only under `#[cfg(test)]`.
fn test_only_modules(main: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cfg_test = false;
    for line in main.lines().map(str::trim) {
        if line == "#[cfg(test)]" {
            cfg_test = true;
            continue;
        }
        if cfg_test {
            if let Some(m) = line.strip_prefix("mod ") {
                out.insert(ident(m));
            }
        }
        cfg_test = false;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The graph of `src/`: module → the modules it refers to (`main` is the crate root).
fn src_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let main = std::fs::read_to_string(src.join("main.rs")).unwrap();
    let test_only = test_only_modules(&main);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in &files {
        let node = node_of(file.strip_prefix(&src).unwrap());
        if test_only.contains(&node) {
            continue;
        }
        graph.entry(node.clone()).or_default();
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for file in &files {
        let node = node_of(file.strip_prefix(&src).unwrap());
        if test_only.contains(&node) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for r in crate_refs(&code) {
            // `crate::name` of something defined in main.rs itself refers to the root.
            let target = if modules.contains(&r) {
                r
            } else {
                "main".to_string()
            };
            if target != node {
                graph.entry(node.clone()).or_default().insert(target);
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the list of modules along it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit(
        n: &str,
        graph: &Graph,
        mark: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match mark.get(n).copied().unwrap_or(0) {
            2 => return None,
            1 => {
                let start = path.iter().position(|p| p == n).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        mark.insert(n.to_string(), 1);
        path.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, mark, path) {
                return Some(c);
            }
        }
        path.pop();
        mark.insert(n.to_string(), 2);
        None
    }
    let mut mark = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut mark, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn graph(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (a, b) in edges {
        g.entry(a.to_string()).or_default().insert(b.to_string());
        g.entry(b.to_string()).or_default();
    }
    g
}

#[test]
fn the_cycle_finder_finds_cycles_and_only_cycles() {
    let check = |edges: &[(&str, &str)], cyclic: bool| {
        assert_eq!(find_cycle(&graph(edges)).is_some(), cyclic, "{edges:?}");
    };
    check(&[("a", "b"), ("b", "c"), ("a", "c")], false);
    check(&[("a", "b"), ("b", "c"), ("c", "a")], true);
    check(&[("a", "b"), ("b", "a")], true);
    check(&[("x", "y"), ("a", "b"), ("b", "c"), ("c", "b")], true);
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn crate_references_are_read_from_use_lists_and_paths() {
    let code = code_of(
        "use crate::a::B;\nuse crate::{c, d::{E, F}, g};\nfn f() { crate::h::go(); my_crate::x(); }\n\
         // crate::comment\n#[cfg(test)]\nmod tests { use crate::t; }\n",
    );
    let got: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(got, ["a", "c", "d", "g", "h"]);
}

#[test]
fn src_modules_import_each_other_without_cycles() {
    let graph = src_graph();
    assert!(
        graph.len() > 15 && graph.values().map(BTreeSet::len).sum::<usize>() > 20,
        "the scan of src/ found too little to judge: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle among src/ modules: {}\n(the full graph: {graph:#?})",
            cycle.join(" → ")
        );
    }
}

/// Modules at the bottom of the layers: they import nothing of the relay but each other, so
/// every layer above can read them (issue 20: `answer`, the one `Usage` type and the wire
/// formats' readers that the meter, the cache and translation share; issue 19: `sse_frame`, the
/// SSE framing and the relay loop's `Tap`/`Translate` seams, `http_head`, the one response head
/// writer, `json`, the one JSON parse from bytes, and `client_headers`, the view of a request's
/// headers that the pipeline, the cache's plan and the upstream client read).
const BOTTOM: &[&str] = &["answer", "sse_frame", "http_head", "json", "client_headers"];

#[test]
fn bottom_modules_import_nothing_of_the_relay() {
    let graph = src_graph();
    for module in BOTTOM {
        let refs = graph
            .get(*module)
            .unwrap_or_else(|| panic!("src/{module}.rs is gone; update BOTTOM"));
        let above: Vec<&String> = refs
            .iter()
            .filter(|r| !BOTTOM.contains(&r.as_str()))
            .collect();
        assert!(
            above.is_empty(),
            "src/{module}.rs is a bottom layer but imports {above:?}"
        );
    }
    // `json` is the floor: not even the other bottom modules
    assert!(
        graph.get("json").is_some_and(BTreeSet::is_empty),
        "src/json.rs imports {:?}",
        graph.get("json")
    );
    // `api` sits right above it and imports only it
    let api = graph.get("api").unwrap();
    assert!(
        api.iter().all(|m| BOTTOM.contains(&m.as_str())),
        "src/api imports {api:?}"
    );
}

/// The modules of `forbidden` that `module` imports.
fn imported(graph: &Graph, module: &str, forbidden: &[&str]) -> Vec<String> {
    let refs = graph
        .get(module)
        .unwrap_or_else(|| panic!("src/{module} is gone; update tests/code_layers.rs"));
    forbidden
        .iter()
        .filter(|f| refs.contains(**f))
        .map(|f| f.to_string())
        .collect()
}

/// Issue 19: the cache returns what to send and the pipeline sends it; it implements the relay
/// loop's `Tap` from `sse_frame`, never from the loop itself.
#[test]
fn the_cache_writes_no_http_and_knows_no_relay_loop() {
    let graph = src_graph();
    let bad = imported(&graph, "cache", &["exchange", "sse_out", "sse"]);
    assert!(bad.is_empty(), "src/cache/ imports {bad:?}");
}

/// Issue 19: translation is pure (JSON and SSE bytes in and out): it knows neither the relay
/// loop, the client connection, the exchange nor the pipeline that calls it.
#[test]
fn translation_knows_no_relay_loop_connection_or_pipeline() {
    let graph = src_graph();
    let bad = imported(
        &graph,
        "translate",
        &["sse", "sse_out", "exchange", "pipeline"],
    );
    assert!(bad.is_empty(), "src/translate/ imports {bad:?}");
}
