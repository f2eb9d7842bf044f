//! `chatbench check`, `compare` and `report` through the binary, on the
//! report crate's fixture runs.

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
fn compare_prints_ratios() {
    let (code, out, _) = chatbench(&[
        "compare",
        fixture("run-a").to_str().unwrap(),
        fixture("run-b").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    let ws = out
        .lines()
        .find(|l| l.starts_with("websocket") && l.contains("bytes_per_msg"))
        .unwrap();
    assert!(ws.trim_end().ends_with("2.00  <-- changed"), "{ws}");
    assert!(
        out.trim_end()
            .ends_with("2 change(s) beyond x1.25 either way"),
        "{out}"
    );
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
