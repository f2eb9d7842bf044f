use crate::*;
use chatbench_report::{check, compare};
use chatbench_results::Transport;

fn with_rules(rules: &str) -> chatbench_results::run_file::RunFile {
    let mut run = load("run-a");
    let doc: toml::Table = toml::from_str(rules).unwrap();
    run.scenario.expect = doc["expect"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_table().unwrap().clone())
        .collect();
    run
}

fn verdicts(rules: &str) -> Vec<(bool, String)> {
    check::check(&with_rules(rules))
        .unwrap()
        .into_iter()
        .map(|v| (v.pass, format!("{} ({})", v.rule, v.measured)))
        .collect()
}

#[test]
fn order_rules() {
    let v = verdicts(
        r#"
[[expect]]
metric = "bytes_per_msg"
order = ["websocket", "sse", "short_poll", "long_poll"]
[[expect]]
metric = "bytes_per_msg"
order = ["websocket", "sse", "long_poll", "short_poll"]
"#,
    );
    assert_eq!(v[0], (true, "bytes_per_msg: websocket < sse < short_poll < long_poll (websocket 177.1847, sse 205.9047, short_poll 257.4180, long_poll 479.8647)".into()));
    assert!(!v[1].0, "{:?}", v[1]);
}

#[test]
fn bound_rules() {
    let v = verdicts(
        r#"
[[expect]]
metric = "lost"
max = 0
[[expect]]
metric = "p50_latency"
transport = "short_poll"
min = "200ms"
[[expect]]
metric = "p50_latency"
transport = "websocket"
min = "200ms"
[[expect]]
metric = "requests_per_msg"
max = 0.5
"#,
    );
    assert_eq!(
        v[0],
        (
            true,
            "lost <= 0 for every transport (short_poll 0, long_poll 0, sse 0, websocket 0)".into()
        )
    );
    assert_eq!(
        v[1],
        (
            true,
            "p50_latency >= 200.0ms for short_poll (short_poll 246.8ms)".into()
        )
    );
    assert_eq!(
        v[2],
        (
            false,
            "p50_latency >= 200.0ms for websocket (websocket 1.7ms)".into()
        )
    );
    // long_poll makes about one request per message.
    assert!(!v[3].0, "{:?}", v[3]);
}

#[test]
fn ratio_rules() {
    let v = verdicts(
        r#"
[[expect]]
metric = "p50_latency"
ratio = ["short_poll", "sse"]
min = 10
[[expect]]
metric = "bytes_per_msg"
ratio = ["long_poll", "websocket"]
max = 2
[[expect]]
metric = "requests_per_msg"
ratio = ["short_poll", "websocket"]
min = 10
"#,
    );
    assert!(v[0].0, "{:?}", v[0]);
    assert!(
        v[0].1
            .starts_with("short_poll.p50_latency / sse.p50_latency >= 10 (246.8ms / 1.5ms = 162.5"),
        "{:?}",
        v[0]
    );
    assert_eq!(
        v[1],
        (
            false,
            "long_poll.bytes_per_msg / websocket.bytes_per_msg <= 2 (479.8647 / 177.1847 = 2.71)"
                .into()
        )
    );
    // WebSocket made no request in the window: the ratio is infinite and passes.
    assert_eq!(
        v[2],
        (
            true,
            "short_poll.requests_per_msg / websocket.requests_per_msg >= 10 (0.2375 / 0 = inf)"
                .into()
        )
    );
}

#[test]
fn rules_about_missing_transports_fail_and_render_counts() {
    let mut run = with_rules("[[expect]]\nmetric = \"lost\"\ntransport = \"sse\"\nmax = 0\n");
    run.summary.retain(|s| s.transport != Transport::Sse);
    let v = check::check(&run).unwrap();
    assert!(!v[0].pass);
    assert_eq!(v[0].measured, "sse n/a");
    assert_eq!(
        check::render(&v).lines().last().unwrap(),
        "0 passed, 1 failed"
    );
}

#[test]
fn compare_reads_repetitions_not_summaries_and_warns_of_other_builds() {
    // run-b differs from run-a only in its summary and its commit: the
    // repetitions are the same, so nothing changed.
    let (a, b) = (load("run-a"), load("run-b"));
    let c = compare::compare(&a, &b, compare::DEFAULT_MIN_CHANGE);
    assert_eq!(c.rows.len(), 4 * 10);
    assert!(
        c.rows.iter().all(|r| r.verdict == compare::Verdict::Same),
        "{c:?}"
    );
    assert!(c.rows.iter().all(|r| r.repetitions == (2, 2)));
    let ws = c
        .rows
        .iter()
        .find(|r| r.transport == Transport::WebSocket && r.metric.as_str() == "bytes_per_msg")
        .unwrap();
    assert_eq!(ws.ratio, Some(1.0));
    assert_eq!(ws.test, "identical");
    assert_eq!(
        c.warnings,
        ["different builds: commit 06c85a801c and bbbbbbbbbb"]
    );
    let text = compare::render(&a, &b, &c);
    assert!(
        text.trim_end()
            .ends_with("0 worse, 0 better beyond the noise (minimum change 10%)"),
        "{text}"
    );
}

/// The drop metrics read the summary's drop figures; a run without drops
/// has none, and a rule on them fails rather than passing unmeasured.
#[test]
fn drop_rules() {
    let rules = r#"
[[expect]]
metric = "bytes_per_drop"
order = ["sse", "websocket"]
[[expect]]
metric = "handshakes_per_drop"
max = 2
[[expect]]
metric = "away_p50_latency"
transport = "websocket"
max = "2s"
"#;
    let without = verdicts(rules);
    assert!(without.iter().all(|(pass, _)| !pass), "{without:?}");
    let mut run = with_rules(rules);
    for x in run.summary.iter_mut() {
        let stat = |v: f64| chatbench_results::run_file::Stat::of(vec![v]);
        let ws = x.transport == Transport::WebSocket;
        x.bytes_per_drop = Some(stat(if ws { 390.0 } else { 250.0 }));
        x.handshakes_per_drop = Some(stat(if ws { 1.0 } else { 1.03 }));
        x.away_p50_us = Some(stat(1_360_000.0));
    }
    let v: Vec<(bool, String)> = check::check(&run)
        .unwrap()
        .into_iter()
        .map(|v| (v.pass, format!("{} ({})", v.rule, v.measured)))
        .collect();
    assert!(v.iter().all(|(pass, _)| *pass), "{v:?}");
    assert!(v[2].1.contains("websocket 1.36s"), "{:?}", v[2]);
}
