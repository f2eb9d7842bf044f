//! `[clients] processes`: clients spread over `chatbench worker` children
//! measure what one process measures, and a worker that cannot run says
//! why. `[server] processes`: rooms spread over server processes, each
//! room's clients routed to its owner, and the server's figures summed.

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
        // The second run also connects from three source addresses
        // (127.0.0.1 to 127.0.0.3), which must change nothing measured.
        scenario.clients.source_addresses = if processes == 2 { 3 } else { 1 };
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
        // Each side's memory: one process in the first run, two workers
        // (each a whole process, so at least a MiB resident) in the second.
        assert_eq!((a.loadgen.processes, b.loadgen.processes), (1, 2), "{t}");
        let rss = b.loadgen.rss.expect("workers read their memory");
        assert!(
            rss.baseline > 2 << 20 && rss.before_traffic >= rss.baseline / 2,
            "{t}: {rss:?}"
        );
        assert!(rss.peak >= rss.before_traffic, "{t}: {rss:?}");
        assert_eq!(
            rss.per_client,
            rss.before_traffic.saturating_sub(rss.baseline) as f64
                / b.ready.unwrap().expected as f64,
            "{t}"
        );
        // One clock for every process: the breakdown's parts add up.
        let br = b.breakdown.as_ref().expect("breakdown");
        assert_eq!(br.skewed, 0, "{t}");
        assert_eq!(br.up_leg_us.count, b.audit.delivered, "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_server_processes_are_routed_to_their_owners_and_summed() {
    use chatbench_loadgen::server::ServerTarget;
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    let out = tempfile::tempdir().unwrap();
    let mut scenario = tiny(all);
    scenario.clients.rooms = 6;
    scenario.clients.processes = 2;
    scenario.server.processes = 3;
    let target = ServerTarget::Spawn {
        exe: env!("CARGO_BIN_EXE_chatbench").into(),
        args: vec!["serve".into()],
        cpus: None,
        log: None,
    };
    let done = chatbench_loadgen::run::run(options(scenario, out.path(), target))
        .await
        .unwrap();
    assert!(done.file.complete);
    assert_eq!(done.file.scenario.server.processes, 3);
    assert_eq!(done.file.runs.len(), 4);
    for r in &done.file.runs {
        let t = r.transport;
        // Every room answered: a client sent to a process that does not own
        // its room gets 421, which would show here as errors and losses.
        assert_eq!(r.audit.expected, r.audit.sent * 4, "{t}");
        assert_eq!(
            (r.audit.delivered, r.audit.lost, r.audit.errors),
            (r.audit.expected, 0, 0),
            "{t}: {:?}",
            r.errors_by_cause
        );
        // The cross-check adds up the three processes' /metrics.
        let cc = r.crosscheck.expect("metrics were scraped");
        assert!(cc.bytes_match && cc.delivered_match, "{t}: {cc:?}");
        let cost = r.server.as_ref().expect("spawned servers have pids");
        assert_eq!(cost.processes.len(), 3, "{t}");
        let per_room = if t == chatbench_loadgen::Transport::WebSocket {
            4
        } else {
            6
        };
        let rooms: u64 = cost.processes.iter().map(|p| p.rooms).sum();
        assert_eq!(rooms, 6, "{t}");
        for (i, p) in cost.processes.iter().enumerate() {
            assert_eq!(p.index, i as u32, "{t}");
            assert_eq!(p.connections, p.rooms * per_room, "{t}: {p:?}");
            assert!(
                p.rss_before_traffic > 0 && p.rss_peak >= p.rss_before_traffic,
                "{t}: {p:?}"
            );
            // A process that owns a room did the work of its deliveries.
            if p.rooms > 0 {
                assert!(p.delivered > 0 && p.cpu_ms_measured > 0.0, "{t}: {p:?}");
            } else {
                assert_eq!(p.delivered, 0, "{t}: {p:?}");
            }
        }
        assert_eq!(
            cost.processes.iter().map(|p| p.connections).sum::<u64>(),
            r.connections,
            "{t}"
        );
        assert_eq!(
            cost.processes.iter().map(|p| p.delivered).sum::<u64>(),
            cc.server_delivered,
            "{t}"
        );
        // The totals are the processes' sums.
        let cpu: f64 = cost.processes.iter().map(|p| p.cpu_ms_measured).sum();
        assert!(
            (cost.cpu_ms_measured - cpu).abs() < 1e-6 * cpu.max(1.0),
            "{t}: {cost:?}"
        );
        let rss: u64 = cost.processes.iter().map(|p| p.rss_before_traffic).sum();
        assert_eq!(cost.rss_before_traffic, rss, "{t}");
    }
    chatbench_report::report(&done.dir).unwrap();
    let report = std::fs::read_to_string(done.dir.join("REPORT.md")).unwrap();
    assert!(report.contains("\n## Server processes\n"), "{report}");
    assert!(report.contains("\n## The load generator\n"), "{report}");
    // One row per transport run, naming the two worker processes.
    let rows = report
        .lines()
        .skip_while(|l| *l != "## The load generator")
        .filter(|l| l.starts_with("| ") && l.contains(" | 1 | 2 | "))
        .count();
    assert_eq!(rows, 4, "{report}");
}

#[test]
fn several_server_processes_and_a_cpu_quota_need_a_server_chatbench_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.toml");
    let refused = |server: &str| {
        let src = format!("name = \"k\"\ntransports = [\"sse\"]\nduration = \"1s\"\n[clients]\nrooms = 2\nclients_per_room = 2\nsenders_per_room = 1\n[messages]\nrate = 1.0\n[server]\n{server}\n");
        std::fs::write(&file, src).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench"))
            .args([
                "run",
                file.to_str().unwrap(),
                "--server",
                "http://127.0.0.1:1",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
    };
    assert_eq!(
        refused("processes = 2"),
        format!(
            "chatbench: error: {}: field `server.processes`: is 2, but --server names one server process; several are only for servers chatbench starts",
            file.display()
        )
    );
    assert_eq!(
        refused("cpu_quota = 0.5"),
        format!(
            "chatbench: error: {}: field `server.cpu_quota`: --server names a running server; a CPU quota is only for servers chatbench starts",
            file.display()
        )
    );
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
        err.starts_with("chatbench: error: worker: the first stdin line is not a worker task: expected ident at line 1 column 2"),
        "{err}"
    );
}
