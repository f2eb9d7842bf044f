//! `chatbench advise` through the binary: on the committed reference runs
//! under results/ (workloads whose answer those runs give), outside them,
//! with bad flags, and with `--measure` on this machine.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn results() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results")
}

fn advise(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .arg("advise")
        .args(args)
        .arg("--results")
        .arg(results())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn advise_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = advise(&all);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

fn transport<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["transport"] == name)
        .unwrap_or_else(|| panic!("no {name} in {answer:#}"))
}

fn fit(answer: &Value) -> Vec<&str> {
    answer["fit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect()
}

/// A room of ten that hears a message a minute, on phones: the committed
/// battery run's quiet point. Polling every 5 s keeps the radio on all the
/// time; WebSocket's pings every 30 s and long polls' re-polls let it
/// sleep about half of it; the model over a synthetic hour agrees within
/// 5% with what the battery run measured on every packet (within 3% when
/// this test was written).
#[test]
fn a_very_quiet_room_on_phones_costs_polling_its_radio() {
    let a = advise_json(&[
        "--clients",
        "100",
        "--rooms",
        "10",
        "--rate",
        "0.0166667",
        "--mobile",
        // The battery run's intervals.
        "--poll-interval",
        "5s",
        "--long-poll-wait",
        "25s",
    ]);
    assert_eq!(a["schema"], "chatbench-advise/1");
    assert_eq!(a["outside"].as_array().unwrap().len(), 0, "{a:#}");
    let order = fit(&a);
    assert_eq!(order.len(), 4);
    assert_eq!(order[3], "short_poll", "{order:?}");
    let j = |t: &str| {
        transport(&a, t)["radio"]["j_per_client_hour"]
            .as_f64()
            .unwrap()
    };
    assert!(j("short_poll") > 1.8 * j("websocket"), "{a:#}");
    assert!(j("short_poll") > 1.8 * j("long_poll"), "{a:#}");
    assert!(
        transport(&a, "short_poll")["radio"]["on_share"]
            .as_f64()
            .unwrap()
            > 0.99
    );
    for t in ["short_poll", "long_poll", "sse", "websocket"] {
        let radio = &transport(&a, t)["radio"];
        let measured = radio["measured"]["value"].as_f64().unwrap();
        assert!(
            radio["measured"]["source"]
                .as_str()
                .unwrap()
                .contains("results/battery/"),
            "{radio:#}"
        );
        assert!(
            (j(t) / measured - 1.0).abs() < 0.05,
            "{t}: model {} measured {measured}",
            j(t)
        );
    }
    // Latency: the model plus what the battery run measured beyond it.
    let p99 = transport(&a, "websocket")["p99_ms"].clone();
    assert!(
        p99["source"].as_str().unwrap().contains("results/battery/"),
        "{p99:#}"
    );
    assert!(
        (50.0..60.0).contains(&p99["value"].as_f64().unwrap()),
        "{p99:#}"
    );
    // Every figure names a run or a model.
    for t in a["transports"].as_array().unwrap() {
        for f in [
            "p50_ms",
            "p99_ms",
            "bytes_per_msg",
            "requests_per_msg",
            "server_cpu_cores",
        ] {
            assert!(!t[f]["source"].as_str().unwrap().is_empty(), "{t:#}");
        }
    }
    let cited: Vec<&str> = a["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert!(
        cited.iter().any(|k| k.contains("results/battery/")),
        "{cited:?}"
    );
}

/// A busy room on a link that loses 2% of its packets, with a p99 limit:
/// the committed loss sweep measured WebSocket's tail at 334 ms there and
/// SSE's and long polling's above 500 ms, so only WebSocket fits.
#[test]
fn a_busy_room_on_a_lossy_link_leaves_websocket() {
    let args = [
        "--clients",
        "100",
        "--rooms",
        "4",
        "--rate",
        "10",
        "--loss",
        "2%",
        "--max-p99",
        "400ms",
    ];
    let a = advise_json(&args);
    assert_eq!(fit(&a), ["websocket"], "{a:#}");
    for t in ["short_poll", "long_poll", "sse", "websocket"] {
        let p99 = &transport(&a, t)["p99_ms"];
        assert!(
            p99["source"]
                .as_str()
                .unwrap()
                .contains("results/loss-sweep/")
                && p99["source"].as_str().unwrap().contains("point 0.02"),
            "{t}: {p99:#}"
        );
    }
    let sse = transport(&a, "sse");
    assert_eq!(sse["fits"], false);
    let why = sse["breaks"][0].as_str().unwrap();
    assert!(
        why.starts_with("p99 ") && why.ends_with("ms is above --max-p99 400 ms"),
        "{why}"
    );
    // The text says the same, with the references numbered.
    let (code, text, _) = advise(&args);
    assert_eq!(code, Some(0));
    assert!(text.contains("Answer: websocket fit;"), "{text}");
    assert!(text.contains("  sse does not fit: p99 "), "{text}");
    let cited = text.split("\nReferences:\n").nth(1).unwrap();
    assert!(
        cited.starts_with("  [1] ") && cited.contains("results/loss-sweep/"),
        "{text}"
    );
}

/// Two million clients in one room at 500 messages a second: more than
/// any reference ran, and the answer says so on each count.
#[test]
fn a_workload_outside_every_measurement_says_so() {
    let a = advise_json(&["--clients", "2000000", "--rate", "500"]);
    let outside: Vec<&str> = a["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(outside.len(), 4, "{outside:#?}");
    assert!(
        outside[0].starts_with("clients 2,000,000 is above the most any reference measured ("),
        "{outside:#?}"
    );
    assert!(
        outside[1].starts_with("room size 2,000,000 is above"),
        "{outside:#?}"
    );
    assert!(
        outside[2].starts_with("rate 500 msg/s a room is above"),
        "{outside:#?}"
    );
    assert!(
        outside[3].starts_with("deliveries 1,000,000,000/s is above"),
        "{outside:#?}"
    );
    let (_, text, _) = advise(&["--clients", "2000000", "--rate", "500"]);
    assert!(
        text.contains(
            "\nOutside what was measured (these figures are extrapolated):\n  - clients 2,000,000"
        ),
        "{text}"
    );
    // A lossy link beyond the loss sweep's 5%.
    let a = advise_json(&[
        "--clients",
        "100",
        "--rooms",
        "4",
        "--rate",
        "10",
        "--loss",
        "20%",
    ]);
    assert_eq!(
        a["outside"][0], "loss 20% is above the most any reference measured (5%)",
        "{a:#}"
    );
}

#[test]
fn bad_workloads_get_a_reason_and_no_answer() {
    let (code, out, err) = advise(&["--clients", "100", "--rooms", "200", "--rate", "1"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err.trim(),
        "chatbench: error: --rooms: must be between 1 and --clients (100), got 200"
    );
    let (code, _, err) = advise(&["--clients", "100", "--rate", "1", "--loss", "lots"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("expected a share such as 1% or 0.01, got \"lots\""),
        "{err}"
    );
    let (code, _, err) = advise(&[
        "--clients",
        "100",
        "--rooms",
        "2",
        "--room-size",
        "5",
        "--rate",
        "1",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args([
            "advise",
            "--clients",
            "10",
            "--rate",
            "1",
            "--results",
            "/nonexistent-results",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read the results folder /nonexistent-results"),
        "{err}"
    );
}

/// `--measure` runs the workload on this machine (a spawned server, the
/// four transports) and answers from that run alone.
#[test]
fn measure_answers_from_a_calibration_run_on_this_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .args([
            "advise",
            "--clients",
            "20",
            "--rooms",
            "2",
            "--rate",
            "5",
            "--rtt",
            "10ms",
        ])
        .args([
            "--measure",
            "--measure-duration",
            "2s",
            "--json",
            "--measure-out",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.starts_with("calibrating: 2 rooms of 10 on this machine, 2 s a transport\n"),
        "{err}"
    );
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = std::fs::read_dir(tmp.path().join("advise-calibration"))
        .unwrap()
        .count();
    assert_eq!(runs, 1);
    let cited = a["references"].as_array().unwrap();
    assert!(!cited.is_empty());
    let root = tmp.path().join("advise-calibration").display().to_string();
    for c in cited {
        assert!(c["key"].as_str().unwrap().starts_with(&root), "{c:#}");
    }
    assert_eq!(a["transports"].as_array().unwrap().len(), 4, "{a:#}");
    // A calibration of 20 clients gives no memory per connection.
    assert!(transport(&a, "websocket")
        .get("memory_per_connection_kib")
        .is_none());
}
