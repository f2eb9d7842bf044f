//! The code keeps the shape ARCHITECTURE.md describes: no two files of a
//! crate import each other around a loop, every connection the load
//! generator opens is opened by its dialer, no function outside the tests
//! is longer than 150 lines, and the server depends on the wire types only.
//!
//! These read the source as text. A file's code is what comes before its
//! first `#[cfg(test)]` (tests may reach anywhere), comment lines aside.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One file of a crate: its module path (`dial::http`; `dial` for
/// `dial/mod.rs`; `lib` or `main` for a root), where it is, and its code.
struct SourceFile {
    module: String,
    path: PathBuf,
    code: String,
}

/// The code of a file: before `#[cfg(test)]`, without comment lines.
fn code_of(text: &str) -> String {
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file under `src`, recursively.
fn source_files(src: &Path) -> Vec<SourceFile> {
    fn walk(dir: &Path, src: &Path, out: &mut Vec<SourceFile>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, src, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.len() > 1 && parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.push(SourceFile {
                module: parts.join("::"),
                path: path.clone(),
                code: code_of(&text),
            });
        }
    }
    let mut out = Vec::new();
    walk(src, src, &mut out);
    out
}

/// Every crate's `src` folder.
fn crate_sources() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The paths that follow each `prefix` (`crate::`, `super::`) in `code`:
/// `a::b::C` gives `["a","b","C"]`; a group `a::{b::X, c}` gives one path
/// per member.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    fn read(rest: &str, base: &[String], out: &mut Vec<Vec<String>>) {
        let mut segs = base.to_vec();
        let mut s = rest;
        loop {
            if let Some(group) = s.strip_prefix('{') {
                // One path per member, split at the group's top-level commas.
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            read(group[start..i].trim(), &segs, out);
                            return;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            read(group[start..i].trim(), &segs, out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            let name: String = s
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            segs.push(name.clone());
            s = &s[name.len()..];
            match s.strip_prefix("::") {
                Some(after) if !name.is_empty() => s = after,
                _ => break,
            }
        }
        out.push(segs);
    }
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        read(rest, &[], &mut out);
    }
    out
}

/// The longest module of `modules` that `segs` starts with.
fn resolve(segs: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Which files of one crate each file imports.
fn import_graph(files: &[SourceFile]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.iter().map(|f| f.module.clone()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let me = &f.module;
        let mut deps = BTreeSet::new();
        for segs in paths_after(&f.code, "crate::") {
            deps.extend(resolve(&segs, &modules));
        }
        // `super::` from `a::b` starts at `a`.
        if let Some((parent, _)) = me.rsplit_once("::") {
            let base: Vec<String> = parent.split("::").map(String::from).collect();
            for segs in paths_after(&f.code, "super::") {
                let full: Vec<String> = base.iter().cloned().chain(segs).collect();
                deps.extend(resolve(&full, &modules));
            }
        }
        // A folder's `mod.rs` names its children by relative paths.
        if f.path.file_name().is_some_and(|n| n == "mod.rs") {
            for child in modules.iter().filter_map(|m| {
                m.strip_prefix(&format!("{me}::"))
                    .filter(|c| !c.contains("::"))
            }) {
                for segs in paths_after(&f.code, &format!("{child}::")) {
                    let full: Vec<String> = std::iter::once(me.clone())
                        .chain(std::iter::once(child.to_owned()))
                        .chain(segs)
                        .flat_map(|s| s.split("::").map(String::from).collect::<Vec<_>>())
                        .collect();
                    deps.extend(resolve(&full, &modules));
                }
            }
        }
        deps.remove(me);
        graph.insert(me.clone(), deps);
    }
    graph
}

/// The cycles of `graph`, each as `a -> b -> a`.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == n) {
            found.push(format!("{} -> {n}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(n.to_owned()) {
            return;
        }
        path.push(n.to_owned());
        for d in graph.get(n).into_iter().flatten() {
            visit(d, graph, path, done, found);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for n in graph.keys() {
        visit(n, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

/// No two files of one crate import each other, directly or around a
/// loop: a file's imports are the `crate::` paths in its code, its
/// `super::` paths in a folder, and a folder's `mod.rs` paths into its
/// children. What several files share sits below them (the server's
/// `app.rs`, the results crate's `fmt.rs`, the clients' `context.rs`).
#[test]
fn no_file_cycles_within_a_crate() {
    let mut found = Vec::new();
    for src in crate_sources() {
        for c in cycles(&import_graph(&source_files(&src))) {
            found.push(format!("{}: {c}", src.display()));
        }
    }
    assert!(found.is_empty(), "file cycles:\n{}", found.join("\n"));
}

/// The graph reader sees what the test above relies on: `crate::` paths
/// and groups, `super::` from a folder's file, and a `mod.rs` naming its
/// children; and the cycle finder finds a loop through a folder.
#[test]
fn the_import_reader_sees_groups_supers_and_children() {
    let file = |module: &str, path: &str, code: &str| SourceFile {
        module: module.into(),
        path: path.into(),
        code: code_of(code),
    };
    let files = [
        file("lib", "lib.rs", "pub mod a;\npub mod d;"),
        file(
            "a",
            "a.rs",
            "use crate::{d::X, b::{c::Y, Z}};\n// use crate::e;",
        ),
        file(
            "b",
            "b/mod.rs",
            "mod c;\npub use c::Y;\nfn f() { crate::a::g() }",
        ),
        file("b::c", "b/c.rs", "use super::Z;"),
        file("d", "d.rs", "fn x() -> crate::b::c::Y { todo!() }"),
        file("e", "e.rs", ""),
    ];
    let g = import_graph(&files);
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(g["a"], set(&["b", "b::c", "d"]));
    assert_eq!(g["b"], set(&["a", "b::c"]));
    assert_eq!(g["b::c"], set(&["b"]));
    assert_eq!(g["d"], set(&["b::c"]));
    assert_eq!(g["e"], set(&[]));
    assert_eq!(
        cycles(&g),
        vec!["a -> b -> a".to_string(), "b -> b::c -> b".to_string()]
    );
}

/// What opens a connection or starts a protocol's handshake on one.
const DIALING: &[&str] = &[
    "TcpStream::connect",
    "TcpSocket::new",
    "tcp::open(",
    "tcp::counted(",
    "WireCounter::new(",
    "TlsConnector",
    "H2Conn::handshake(",
    "H3Conn::handshake(",
    "UdpSocket::bind",
    "Endpoint::new",
    "connect_with(",
    "ws::handshake(",
    "http1::handshake(",
    "http2::handshake(",
];

/// The load generator's dial seam: outside `crates/loadgen/src/dial/`, no
/// code of the load generator opens a socket (TCP, or UDP for QUIC) or
/// starts TLS, QUIC, HTTP/2, HTTP/3 or a WebSocket on one (the control connection's HTTP/1.1 client over a
/// socket the dialer opened is the one exception: it is not a client's).
#[test]
fn only_the_dialer_opens_connections() {
    let src = repo().join("crates/loadgen/src");
    let mut found = Vec::new();
    for f in source_files(&src) {
        if f.module == "dial" || f.module.starts_with("dial::") {
            continue;
        }
        for line in f.code.lines() {
            for what in DIALING {
                // The control connection's client, and the socket that
                // only holds the kernel's arrival stamping on (it sends
                // nothing).
                let allowed = (f.module == "server" && *what == "http1::handshake(")
                    || (f.module == "wire" && *what == "UdpSocket::bind");
                if line.contains(what) && !allowed {
                    found.push(format!("{}: {what}: {}", f.path.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "connections opened outside crates/loadgen/src/dial/:\n{}",
        found.join("\n")
    );
    // The dialer does open them: the check reads the right files.
    let dial = std::fs::read_to_string(src.join("dial/tcp.rs")).unwrap();
    assert!(dial.contains("TcpStream::connect"));
    let quic = std::fs::read_to_string(src.join("dial/quic.rs")).unwrap();
    assert!(quic.contains("connect_with("));
}

/// Each function's length in lines, from its `fn` line to its closing
/// brace at the same indentation; signatures without a body are skipped.
fn function_lengths(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let after_vis = t
            .strip_prefix("pub ")
            .or_else(|| {
                t.strip_prefix("pub(")
                    .and_then(|r| r.split_once(") ").map(|x| x.1))
            })
            .unwrap_or(t);
        let sig = after_vis
            .trim_start_matches("const ")
            .trim_start_matches("async ")
            .trim_start_matches("unsafe ");
        let Some(name) = sig.strip_prefix("fn ") else {
            continue;
        };
        let name: String = name
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body opens on the first line that ends with `{` (before any
        // `;` that would end a bodiless signature).
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = (open..lines.len()).find(|&j| lines[j].trim_end() == close) {
            out.push((name, i + 1, end - i + 1));
        }
    }
    out
}

#[test]
fn the_function_length_reader_counts_bodies_not_signatures() {
    let code = "fn a() {\n    x();\n}\n\ntrait T {\n    fn b(&self);\n    fn c(&self) {\n        y();\n        z();\n    }\n}\npub(crate) async fn d(\n    p: u8,\n) -> u8 {\n    p\n}\n";
    assert_eq!(
        function_lengths(code),
        vec![
            ("a".to_string(), 1, 3),
            ("c".to_string(), 7, 4),
            ("d".to_string(), 12, 5)
        ]
    );
}

/// A function is at most 150 lines outside the tests, so that it reads on
/// a screen or two: a long job is split into its steps.
#[test]
fn no_function_over_150_lines_outside_tests() {
    let mut long = Vec::new();
    for src in crate_sources() {
        for f in source_files(&src) {
            for (name, line, len) in function_lengths(&f.code) {
                if len > 150 {
                    long.push(format!(
                        "{}:{line}: {name} is {len} lines",
                        f.path.display()
                    ));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over 150 lines:\n{}",
        long.join("\n")
    );
}

/// The server's dependencies are its job: the wire types (proto), not the
/// result model with its CSV and console tables.
#[test]
fn the_server_depends_on_proto_not_on_the_results_crate() {
    let manifest = std::fs::read_to_string(repo().join("crates/server/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|d| d.split("\n[").next())
        .unwrap_or("");
    assert!(deps.contains("chatbench-proto"), "{deps}");
    for wrong in ["chatbench-results", "csv", "comfy-table"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(wrong)),
            "chatbench-server depends on {wrong}"
        );
    }
}
