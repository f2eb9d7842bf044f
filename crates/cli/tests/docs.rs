//! The README and the manual in `docs/` stay true: every relative link
//! points at a file of the repository (and a heading there, for `#anchor`
//! links into Markdown), every repository path a command names exists, and
//! every `chatbench` command in a code block parses (it is run with
//! `--help` appended: clap refuses an unknown subcommand or flag before it
//! prints help). The README stays a door, not a manual: at most 200 lines.
//! The code's own layout is checked in `layout.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md, ARCHITECTURE.md, results/README.md, scenarios/README.md,
/// every page of docs/, and the READMEs of results/ab and results/peers.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "results/README.md",
        "scenarios/README.md",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 5, "docs/ holds the manual: {docs:?}");
    pages.extend(docs);
    // The A/B and peer comparisons the README and results/README cite.
    let mut ab: Vec<PathBuf> = std::fs::read_dir(root.join("results/ab"))
        .expect("results/ab exists")
        .map(|e| e.unwrap().path().join("README.md"))
        .filter(|p| p.exists())
        .collect();
    ab.sort();
    pages.extend(ab);
    pages.push(root.join("results/peers/README.md"));
    pages
}

/// GitHub's anchor for a heading: lower case, punctuation dropped except
/// `-` and `_`, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
            }
            !fenced && l.starts_with('#')
        })
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// The targets of `[text](target)` links outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", page.display()));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                if !headings.iter().any(|h| h == anchor) {
                    broken.push(format!("{}: {link} (no such heading)", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Shell lines of the fenced code blocks marked `sh`, `bash` or `shell`
/// (not diagrams or program output), continuations joined, comments and
/// redirections cut.
fn shell_lines(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fence: Option<bool> = None;
    let mut pending = String::new();
    for line in markdown.lines() {
        if let Some(info) = line.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(info.trim(), "sh" | "bash" | "shell")),
            };
            continue;
        }
        if fence != Some(true) {
            continue;
        }
        let line = line.trim();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let mut cmd = std::mem::take(&mut pending);
        for cut in [" #", " >", " |", " &&", " <"] {
            if let Some(i) = cmd.find(cut) {
                cmd.truncate(i);
            }
        }
        out.push(cmd.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    out
}

/// The arguments of a `chatbench` command line, or None for other programs
/// and for synopsis lines (`[--flag]`, `A|B`).
fn chatbench_args(line: &str) -> Option<Vec<String>> {
    let rest = line
        .strip_prefix("cargo run --release -p chatbench -- ")
        .or_else(|| line.strip_prefix("chatbench "))
        .map(str::to_owned)
        .or_else(|| {
            line.strip_prefix("cargo run --release -p chatbench-server -- ")
                .map(|r| format!("serve {r}"))
        })
        .or_else(|| (line == "cargo run --release -p chatbench-server").then(|| "serve".into()))?;
    if rest.contains('[') || rest.contains('|') {
        return None;
    }
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

#[test]
fn every_chatbench_command_in_the_docs_parses_and_names_existing_paths() {
    let root = repo();
    let mut checked = 0;
    let mut bad = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for line in shell_lines(&text) {
            // Repository paths a command names exist (placeholders aside).
            for word in line.split_whitespace() {
                let word = word
                    .trim_matches(|c| c == '\'' || c == '"' || c == '`')
                    .trim_end_matches([';', ',', ')']);
                let in_repo = ["scenarios/", "scripts/", "crates/", "deploy/", "docs/"]
                    .iter()
                    .any(|p| word.starts_with(p));
                if in_repo
                    && !word.contains('<')
                    && !word.contains('$')
                    && !root.join(word).exists()
                {
                    bad.push(format!(
                        "{}: `{line}` names {word}, which does not exist",
                        page.display()
                    ));
                }
            }
            let Some(mut args) = chatbench_args(&line) else {
                continue;
            };
            args.push("--help".into());
            let out = Command::new(env!("CARGO_BIN_EXE_chatbench"))
                .args(&args)
                .current_dir(&root)
                .output()
                .unwrap();
            checked += 1;
            if !out.status.success() {
                bad.push(format!(
                    "{}: `{line}` does not parse: {}",
                    page.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        checked >= 10,
        "only {checked} chatbench commands found in the docs"
    );
}

#[test]
fn the_readme_is_a_door_with_both_set_up_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; the manual belongs in docs/"
    );
    for command in [
        "cargo run --release -p chatbench -- run scenarios/quick.toml",
        "cargo test --workspace --release",
    ] {
        assert!(readme.contains(command), "README.md lacks `{command}`");
    }
}

#[test]
fn the_link_and_anchor_readers_read_what_github_renders() {
    assert_eq!(slug(" TLS and HTTP/2"), "tls-and-http2");
    assert_eq!(
        slug("Where an idle connection's memory goes"),
        "where-an-idle-connections-memory-goes"
    );
    assert_eq!(
        links("see [a](docs/a.md#x) and [b](../b.md)\n```\n[c](nope)\n```"),
        ["docs/a.md#x", "../b.md"]
    );
    assert_eq!(
        shell_lines("```sh\nchatbench run a.toml \\\n    --out x  # comment\nls > f\n```"),
        ["chatbench run a.toml --out x", "ls"]
    );
    assert_eq!(chatbench_args("chatbench report RUN_DIR [--x]"), None);
    assert_eq!(
        chatbench_args("cargo run --release -p chatbench-server -- --tls"),
        Some(vec!["serve".to_owned(), "--tls".to_owned()])
    );
}

/// `results/` stays small enough to clone: one committed reference folder
/// per scenario (plus the A/B and peer folders), at most 20 MiB in all.
/// Only what git tracks counts: `chatbench run` writes new folders beside
/// the committed ones, and those are the user's.
#[test]
fn results_keep_one_reference_per_scenario_within_20_mib() {
    let root = repo();
    let Ok(out) = Command::new("git")
        .args(["ls-files", "-z", "results"])
        .current_dir(&root)
        .output()
    else {
        eprintln!("skipping: git does not run here");
        return;
    };
    if !out.status.success() {
        eprintln!("skipping: not a git checkout");
        return;
    }
    let files: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    // What a checkout takes on disk, as `du` counts it: every file
    // rounded up to a 4 KiB block, and a block for every directory.
    let dirs: std::collections::BTreeSet<&str> = files
        .iter()
        .flat_map(|f| {
            f.char_indices()
                .filter(|&(_, c)| c == '/')
                .map(move |(i, _)| &f[..i])
        })
        .collect();
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(root.join(f)).ok())
        .map(|m| m.len().div_ceil(4096) * 4096)
        .sum::<u64>()
        + dirs.len() as u64 * 4096;
    assert!(
        total <= 20 << 20,
        "results/ takes {:.1} MiB on disk; keep one folder per scenario and compress its PNGs (results/README.md, \"Earlier runs\")",
        total as f64 / (1u64 << 20) as f64
    );
    // REPORT.md embeds the PNG charts; the SVG copies are drawn again by
    // `chatbench report` and stay out of the tree.
    let svgs: Vec<&String> = files.iter().filter(|f| f.ends_with(".svg")).collect();
    assert!(svgs.is_empty(), "SVG charts in results/: {svgs:?}");
    // So are the charts' data files, which hold what run.json holds.
    let sidecars: Vec<&String> = files
        .iter()
        .filter(|f| f.contains("/charts/") && f.ends_with(".json"))
        .collect();
    assert!(sidecars.is_empty(), "chart data in results/: {sidecars:?}");
    let mut runs: std::collections::BTreeMap<&str, usize> = Default::default();
    for f in &files {
        let parts: Vec<&str> = f.split('/').collect();
        if let ["results", scenario, _, "run.json"] = parts[..] {
            if scenario != "ab" && scenario != "peers" {
                *runs.entry(scenario).or_default() += 1;
            }
        }
    }
    assert!(runs.len() >= 20, "{runs:?}");
    let many: Vec<_> = runs.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        many.is_empty(),
        "keep one reference run per scenario: {many:?}"
    );
}

/// Every committed scenario loads (its traces included, which are read
/// relative to the scenario file).
#[test]
fn every_committed_scenario_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            chatbench_loadgen::scenario::Scenario::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 20, "{n} scenarios");
}
