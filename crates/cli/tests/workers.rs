//! `[clients] processes`: clients spread over `chatbench worker` children
//! measure what one process measures, and a worker that cannot run says
//! why.

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_spread_over_worker_processes_measure_what_one_process_does() {
    let (addr, _stop) = in_process_server().await;
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    let mut runs = Vec::new();
    for processes in [1, 2] {
        let out = tempfile::tempdir().unwrap();
        let mut scenario = tiny(all);
        scenario.clients.processes = processes;
        let done = run_against(addr, scenario, out.path()).await;
        assert!(done.file.complete, "{processes} processes");
        assert_eq!(done.file.scenario.clients.processes, processes);
        runs.push(done.file.runs);
    }
    let (one, two) = (&runs[0], &runs[1]);
    for (a, b) in one.iter().zip(two) {
        let t = b.transport;
        assert_eq!(a.transport, t);
        // The same seeded schedules, so the same sends.
        assert!(b.audit.sent > 0, "{t}");
        assert_eq!(b.audit.sent, a.audit.sent, "{t}");
        // The audit adds up across processes: each message reaches the 4
        // clients of its room, whichever process holds them.
        assert_eq!(b.audit.expected, b.audit.sent * 4, "{t}");
        assert_eq!(b.audit.delivered, b.audit.expected, "{t}: {:?}", b.audit);
        assert_eq!(
            (
                b.audit.lost,
                b.audit.duplicated,
                b.audit.reordered,
                b.audit.errors
            ),
            (0, 0, 0, 0),
            "{t}: {:?}",
            b.errors_by_cause
        );
        assert_eq!(b.latency_us.count, b.audit.delivered, "{t}");
        // The second run has rooms of its own: when both runs of this
        // process shared room names, its clients read the first run's
        // messages (same seed, so the same counts) seconds late.
        assert!(b.latency_us.max < 1_000_000, "{t}: {:?}", b.latency_us);
        assert_eq!(b.connections, a.connections, "{t}");
        assert_eq!(
            b.ready,
            a.ready.map(|r| chatbench_loadgen::results::Readiness {
                ramp_ms: b.ready.unwrap().ramp_ms,
                ..r
            }),
            "{t}"
        );
        // Every process's bytes are in: the cross-check with the server holds.
        let cc = b.crosscheck.expect("metrics were scraped");
        assert_eq!(cc.server_bytes_written, cc.client_bytes_down, "{t}: {cc:?}");
        assert_eq!(cc.server_delivered, cc.client_receipts, "{t}: {cc:?}");
        // Both workers' CPU is counted.
        assert!(b.loadgen.cpu_ms_measured > 0.0, "{t}: {:?}", b.loadgen);
        // One clock for every process: the breakdown's parts add up.
        let br = b.breakdown.as_ref().expect("breakdown");
        assert_eq!(br.skewed, 0, "{t}");
        assert_eq!(br.up_leg_us.count, b.audit.delivered, "{t}");
    }
}

#[test]
fn a_worker_without_a_task_says_why_and_fails() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
        .arg("worker")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not a task\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("chatbench: error: worker: the first stdin line is not a shard task: expected ident at line 1 column 2"),
        "{err}"
    );
}
