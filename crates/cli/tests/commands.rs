//! `chatbench check`, `compare` and `report` through the binary, on the
//! report crate's fixture runs.

use crate::util::only_run;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../report/tests/fixtures")
        .join(name)
}

fn chatbench(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of fixture run-a whose scenario carries `rules`.
fn run_with_rules(rules: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("run-a").join("run.json")).unwrap())
            .unwrap();
    let doc: serde_json::Value = serde_json::from_str(rules).unwrap();
    run["scenario"]["expect"] = doc;
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    (tmp, dir)
}

#[test]
fn check_exits_0_when_every_rule_holds() {
    let (_t, dir) = run_with_rules(
        r#"[{"metric":"lost","max":0},{"metric":"requests_per_msg","ratio":["short_poll","websocket"],"min":10}]"#,
    );
    let (code, out, _) = chatbench(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("PASS  lost <= 0 for every transport"),
        "{out}"
    );
    assert!(out.ends_with("2 passed, 0 failed\n"), "{out}");
}

#[test]
fn check_exits_1_when_a_rule_fails() {
    let (_t, dir) = run_with_rules(
        r#"[{"metric":"lost","max":0},{"metric":"p50_latency","transport":"websocket","min":"1s"}]"#,
    );
    let (code, out, _) = chatbench(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  p50_latency >= 1.00s for websocket  (websocket 1.7ms)"),
        "{out}"
    );
    assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");
}

#[test]
fn check_names_a_bad_rule() {
    let (_t, dir) = run_with_rules(r#"[{"metric":"lost"}]"#);
    let (code, _, err) = chatbench(&["check", dir.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "chatbench: error: expect[0].metric: a rule needs `order`, `ratio`, `min` or `max`"
    );
}

#[test]
fn compare_judges_changes_against_the_spread_and_gates_on_regressions() {
    let tmp = tempfile::tempdir().unwrap();
    let a = fixture("run-a");
    // B: WebSocket sends twice the bytes (worse) at half the p50 (better) in
    // both repetitions; SSE's p50 moves 30% in one repetition only, so the
    // ranges overlap (noise).
    let b = tmp.path().join("b");
    copy_run("run-a", &b, |r| {
        r["run_id"] = "fixture-b2".into();
        for run in r["runs"].as_array_mut().unwrap() {
            if run["transport"] == "websocket" {
                let bytes = run["wire"]["per_msg"]["bytes"].as_f64().unwrap();
                run["wire"]["per_msg"]["bytes"] = (bytes * 2.0).into();
                let p50 = run["latency_us"]["p50"].as_u64().unwrap();
                run["latency_us"]["p50"] = (p50 / 2).into();
            }
            if run["transport"] == "sse" && run["repetition"] == 1 {
                let p50 = run["latency_us"]["p50"].as_u64().unwrap();
                run["latency_us"]["p50"] = (p50 * 13 / 10).into();
            }
        }
    });
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, out, _) = chatbench(&["compare", a, b]);
    assert_eq!(code, Some(0), "{out}");
    let line = |t: &str, m: &str| {
        out.lines()
            .find(|l| l.starts_with(t) && l.contains(m))
            .unwrap_or_else(|| panic!("{t} {m}: {out}"))
            .to_owned()
    };
    let ws_bytes = line("websocket", "bytes_per_msg");
    assert!(
        ws_bytes.contains("2.00  WORSE   ranges apart"),
        "{ws_bytes}"
    );
    assert!(ws_bytes.contains(" B "), "human units: {ws_bytes}");
    let ws_p50 = line("websocket", "p50_latency");
    assert!(ws_p50.contains("BETTER"), "{ws_p50}");
    assert!(ws_p50.contains("ms ") || ws_p50.contains("µs "), "{ws_p50}");
    let sse_p50 = line("sse", "p50_latency");
    assert!(sse_p50.contains("same    ranges overlap"), "{sse_p50}");
    assert!(
        out.trim_end()
            .ends_with("1 worse, 1 better beyond the noise (minimum change 10%)"),
        "{out}"
    );
    // As a gate: a regression fails the command.
    let (code, _, err) = chatbench(&["compare", a, b, "--fail-on", "regression"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("1 metric(s) got worse beyond the noise"),
        "{err}"
    );
    // A run against itself: nothing got worse.
    let (code, _, _) = chatbench(&["compare", a, a, "--fail-on", "regression"]);
    assert_eq!(code, Some(0));
    // JSON for machines.
    let (code, json, _) = chatbench(&["compare", a, b, "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let worse: Vec<_> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "worse")
        .collect();
    assert_eq!(worse.len(), 1);
    assert_eq!(worse[0]["transport"], "websocket");
    assert_eq!(worse[0]["metric"], "bytes_per_msg");
    // Different builds are named.
    let (_, out, _) = chatbench(&["compare", a, fixture("run-b").to_str().unwrap()]);
    assert!(
        out.contains("warning: different builds: commit 06c85a801c and bbbbbbbbbb"),
        "{out}"
    );
}

/// CI's guard: a run whose long polls cost 16 KiB more server memory per
/// idle connection than the reference fails, naming the figure; a 1%
/// change of bytes per message passes; a changed scenario is refused.
#[test]
fn compare_fail_on_drift_names_the_figure_that_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let a = fixture("run-a");
    let b = tmp.path().join("b");
    copy_run("run-a", &b, |r| {
        r["run_id"] = "fixture-drift".into();
        for run in r["runs"].as_array_mut().unwrap() {
            let bytes = run["wire"]["per_msg"]["bytes"].as_f64().unwrap();
            run["wire"]["per_msg"]["bytes"] = (bytes * 1.01).into();
            if run["transport"] == "long_poll" {
                let rss = run["server"]["rss_per_connection"].as_f64().unwrap();
                run["server"]["rss_per_connection"] = (rss + 16384.0).into();
            }
        }
    });
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, _, err) = chatbench(&["compare", a, a, "--fail-on", "drift"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("within their tolerance"), "{err}");
    let (code, _, err) = chatbench(&["compare", a, b, "--fail-on", "drift"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("1 guarded figure(s) moved beyond their tolerance"),
        "{err}"
    );
    assert!(
        err.contains("  long_poll rss_per_connection: 12.8 KiB in the reference, 28.8 KiB now (+125.0%; allowed ±30%)"),
        "{err}"
    );
    let c = tmp.path().join("c");
    copy_run("run-a", &c, |r| {
        r["scenario"]["seed"] = 99.into();
    });
    let (code, _, err) = chatbench(&["compare", a, c.to_str().unwrap(), "--fail-on", "drift"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("commit a new reference"), "{err}");
}

#[test]
fn check_no_loss_fails_on_a_lost_message() {
    let (_t, dir) = run_with_rules("[]");
    let (code, out, _) = chatbench(&["check", "--no-loss", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "PASS  no message lost or duplicated, every run complete  (8 transport runs clean)\n1 passed, 0 failed\n");
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    run["runs"][5]["audit"]["lost"] = 3.into();
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    let (code, out, _) = chatbench(&["check", "--no-loss", dir.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("FAIL  no message lost or duplicated, every run complete  (long_poll rep 2: lost 3, duplicated 0)"), "{out}");
}

/// A copy of fixture `name` at `dir`, with `edit` applied to its run.json and
/// only the histogram logs of the transports it still lists.
fn copy_run(name: &str, dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    std::fs::create_dir_all(dir).unwrap();
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("run.json")).unwrap())
            .unwrap();
    edit(&mut run);
    for t in run["scenario"]["transports"].as_array().unwrap() {
        let f = format!("{}.hlog", t.as_str().unwrap());
        std::fs::copy(fixture(name).join(&f), dir.join(&f)).unwrap();
    }
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
}

fn hlog_tags(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("Tag="))
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect()
}

fn hgrm_total(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| l.contains("Total count")).unwrap();
    line.rsplit('=')
        .next()
        .unwrap()
        .trim_end_matches(']')
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn merge_joins_repetitions_and_transports_run_separately() {
    let tmp = tempfile::tempdir().unwrap();
    // A: only sse and websocket (as with --transports sse,websocket);
    // B: all four. Each has 2 repetitions of 2025 latencies per transport.
    let a = tmp.path().join("a");
    copy_run("run-a", &a, |r| {
        r["scenario"]["transports"] = serde_json::json!(["websocket", "sse"]);
        let runs = r["runs"].as_array_mut().unwrap();
        runs.retain(|x| x["transport"] == "sse" || x["transport"] == "websocket");
    });
    let b = tmp.path().join("b");
    copy_run("run-a", &b, |r| r["run_id"] = "fixture-a2".into());
    let out = tmp.path().join("merged");
    let (code, stdout, stderr) = merge(&a, &b, &out);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let dir = only_run(&out, "quick");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["merged_from"],
        serde_json::json!(["fixture-a", "fixture-a2"])
    );
    assert_eq!(
        run["scenario"]["transports"],
        serde_json::json!(["short_poll", "long_poll", "sse", "websocket"])
    );
    assert_eq!(run["scenario"]["repeat"], 4);
    let reps = |t: &str| -> Vec<u64> {
        run["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["transport"] == t)
            .map(|x| x["repetition"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(reps("sse"), vec![0, 1, 2, 3]);
    assert_eq!(reps("websocket"), vec![0, 1, 2, 3]);
    assert_eq!(reps("short_poll"), vec![0, 1]);
    let summary = |t: &str| {
        run["summary"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["transport"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(summary("sse")["repetitions"], 4);
    assert_eq!(summary("long_poll")["repetitions"], 2);
    // Histograms are merged as histograms: every interval kept, renumbered.
    assert_eq!(
        hlog_tags(&dir.join("sse.hlog")),
        ["rep0", "rep1", "rep2", "rep3"]
    );
    assert_eq!(hlog_tags(&dir.join("short_poll.hlog")), ["rep0", "rep1"]);
    assert_eq!(hgrm_total(&dir.join("sse.hgrm")), 4 * 2025);
    assert_eq!(hgrm_total(&dir.join("short_poll.hgrm")), 2 * 2025);
    let report = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(
        report.contains(
            "| merged from | `fixture-a`, `fixture-a2` (repetitions renumbered in this order; not interleaved across them) |"
        ),
        "{report}"
    );
    assert!(dir.join("charts/latency.png").exists());
}

/// `chatbench merge a b --out out`: exit code, stdout and stderr.
fn merge(a: &Path, b: &Path, out: &Path) -> (Option<i32>, String, String) {
    chatbench(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// `chatbench merge a b --out out`, expected to be refused: its stderr.
fn refused_merge(a: &Path, b: &Path, out: &Path) -> String {
    let (code, _, stderr) = merge(a, b, out);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!out.exists(), "nothing is written when a merge is refused");
    stderr
}

#[test]
fn merge_refuses_runs_of_another_scenario_build_or_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let a = fixture("run-a");
    let seed = tmp.path().join("seed");
    copy_run("run-a", &seed, |r| r["scenario"]["seed"] = 43.into());
    assert_eq!(
        refused_merge(&a, &seed, &out).trim_end(),
        format!(
            "chatbench: error: cannot merge {} into {}: their scenarios differ in seed (42 against 43) (only transports and repeat may differ)",
            seed.display(),
            a.display()
        )
    );
    // run-b was made at another commit.
    let stderr = refused_merge(&a, &fixture("run-b"), &out);
    assert!(
        stderr.contains("they ran on different builds or machines (environment commit (\"06c85a801c87dc650a96c6f6160551d3e288d727\" against \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\")); put them side by side with `chatbench compare` instead"),
        "{stderr}"
    );
    // The same run twice would claim repetitions that never ran.
    assert_eq!(
        refused_merge(&a, &a, &out).trim_end(),
        format!(
            "chatbench: error: {} is the same run as {} (run id fixture-a): merging it twice would claim repetitions that never ran",
            a.display(),
            a.display()
        )
    );
    // One folder is not a merge.
    let (code, _, stderr) = chatbench(&["merge", a.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn run_refuses_bad_overrides_with_the_scenario_files_messages() {
    let out = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quick.toml");
    let scenario = scenario.to_str().unwrap();
    let o = out.path().to_str().unwrap();
    for (flag, value, message) in [
        (
            "--duration",
            "0s",
            "field `duration` (set by --duration): must be longer than 0s",
        ),
        (
            "--transports",
            "sse,sse",
            "field `transports` (set by --transports): names sse twice",
        ),
        (
            "--repeat",
            "0",
            "field `repeat` (set by --repeat): must be between 1 and 1000, got 0",
        ),
        (
            "--repeat",
            "4000000000",
            "field `repeat` (set by --repeat): must be between 1 and 1000, got 4000000000",
        ),
        (
            "--duration",
            "400000000000y",
            "field `duration` (set by --duration): must be at most 1day, got 400000000000years",
        ),
    ] {
        let (code, _, err) = chatbench(&["run", scenario, "--out", o, flag, value]);
        assert_eq!(code, Some(1), "{flag} {value}: {err}");
        assert!(err.contains(message), "{flag} {value}: {err}");
    }
    // Nothing ran, so no run folder was made.
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none());
}

/// `chatbench run scenarios/quick.toml --duration 1s --json` into `out`,
/// with `extra` flags.
fn run_quick(out: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quick.toml");
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--duration",
        "1s",
        "--json",
    ];
    args.extend_from_slice(extra);
    chatbench(&args)
}

#[test]
fn run_json_prints_only_json_on_stdout_and_export_writes_a_csv_row_per_run() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_quick(
        out.path(),
        &["--transports", "sse,websocket", "--no-report"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(v["schema"], "chatbench-run/1");
    assert_eq!(v["complete"], true);
    assert_eq!(v["summary"].as_array().unwrap().len(), 2);
    assert_eq!(v["summary"][1]["transport"], "websocket");
    assert!(stderr.contains("results: "), "{stderr}");
    let dir = v["dir"].as_str().unwrap();
    let (code, csv, err) = chatbench(&["export", dir, "--csv"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[0].starts_with("run_id,scenario,transport,point,point_label,repetition,complete,")
    );
    assert!(lines[1].contains(",quick,sse,0,,0,true,"), "{}", lines[1]);
    assert!(
        lines[2].contains(",quick,websocket,0,,0,true,"),
        "{}",
        lines[2]
    );
}

/// `--hold-cpus-awake` is recorded in run.json and REPORT.md; where the
/// PM QoS device cannot be held (not root), the run is refused naming it.
#[test]
fn run_holds_the_cpus_awake_and_says_so() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_quick(
        out.path(),
        &["--transports", "websocket", "--hold-cpus-awake"],
    );
    let can_hold = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .is_ok();
    if !can_hold {
        assert_ne!(code, Some(0));
        assert!(
            stderr.contains("--hold-cpus-awake: cannot hold /dev/cpu_dma_latency at 0"),
            "{stderr}"
        );
        return;
    }
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let dir = Path::new(v["dir"].as_str().unwrap());
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["cpus"]["awake"], true);
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(md.contains("| CPU idle | held awake for the run"), "{md}");
}

/// `--quiet` leaves only the results folder on stderr: no progress, no
/// per-transport lines, no table.
#[test]
fn run_quiet_prints_only_the_results_folder() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_quick(
        out.path(),
        &["--transports", "websocket", "--no-report", "--quiet"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![format!("results: {}", v["dir"].as_str().unwrap())],
        "{stderr}"
    );
}

#[test]
fn man_pages_are_printed_for_chatbench_and_each_subcommand() {
    let (code, top, stderr) = chatbench(&["man"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(top.contains(".TH chatbench 1"), "{top}");
    // Every visible subcommand is listed, the internal worker is not.
    for sub in [
        "run",
        "serve",
        "report",
        "check",
        "compare",
        "advise",
        "capacity",
        "floor",
        "merge",
        "completions",
    ] {
        assert!(
            top.contains(&format!("chatbench\\-{sub}(1)")),
            "lacks {sub}: {top}"
        );
    }
    assert!(!top.contains("worker"), "{top}");
    let (code, run, _) = chatbench(&["man", "run"]);
    assert_eq!(code, Some(0));
    assert!(run.contains(".TH chatbench-run 1"), "{run}");
    assert!(run.contains("\\-\\-hold\\-cpus\\-awake"), "{run}");
    let (code, out, stderr) = chatbench(&["man", "worker"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert_eq!(
        stderr.trim_end(),
        "chatbench: error: no subcommand \"worker\"; chatbench has run, serve, report, check, compare, export, advise, capacity, floor, merge, completions, man"
    );
}

#[test]
fn completions_are_printed_for_each_shell_and_an_unknown_shell_is_refused() {
    let (code, bash, stderr) = chatbench(&["completions", "bash"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(bash.contains("_chatbench()"), "{bash}");
    assert!(bash.contains("complete -F _chatbench"), "{bash}");
    // Subcommands and their flags are in it (clap_complete's bash script
    // also lists the hidden `worker`).
    for word in [
        "run",
        "compare",
        "merge",
        "--hold-cpus-awake",
        "--transports",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let (code, zsh, _) = chatbench(&["completions", "zsh"]);
    assert_eq!(code, Some(0));
    assert!(zsh.starts_with("#compdef chatbench"), "{zsh}");
    let (code, fish, _) = chatbench(&["completions", "fish"]);
    assert_eq!(code, Some(0));
    assert!(fish.contains("complete -c chatbench"), "{fish}");
    let (code, out, stderr) = chatbench(&["completions", "tcsh"]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty());
    assert!(
        stderr.contains("invalid value 'tcsh' for '<SHELL>'"),
        "{stderr}"
    );
}
