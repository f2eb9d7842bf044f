//! A tiny scenario on each transport against an in-process server: the
//! audit must be exact and the bytes must agree with the server's metrics.

use crate::util::*;
use chatbench_loadgen::results::{read_hlog, RunFile};
use chatbench_loadgen::run::{run, Finished};
use chatbench_loadgen::scenario::Sweep;
use chatbench_loadgen::server::ServerTarget;
use chatbench_loadgen::Transport;

async fn one(transport: Transport) {
    let (addr, _stop) = in_process_server().await;
    let out = tempfile::tempdir().unwrap();
    let scenario = tiny(&format!("\"{}\"", transport.as_str()));
    let done = run_against(addr, scenario, out.path()).await;
    let r = &done.file.runs[0];
    let a = r.audit;
    assert!(a.sent > 0, "{transport}: nothing sent");
    // Every message reaches all 4 clients of its room.
    assert_eq!(a.expected, a.sent * 4, "{transport}");
    assert_eq!(a.delivered, a.expected, "{transport}: {a:?}");
    assert_eq!(
        (a.lost, a.duplicated, a.reordered, a.missed, a.errors),
        (0, 0, 0, 0, 0),
        "{transport}"
    );
    assert_eq!(
        r.latency_us.count, a.delivered,
        "{transport}: one latency per delivery"
    );
    assert!(r.latency_us.p50 > 0);
    let cc = r.crosscheck.expect("metrics were scraped");
    assert_eq!(
        cc.server_bytes_written, cc.client_bytes_down,
        "{transport}: {cc:?}"
    );
    assert_eq!(
        cc.server_delivered, cc.client_receipts,
        "{transport}: {cc:?}"
    );
    assert!(
        r.flags.is_empty() || r.flags == ["saturated"],
        "{transport}: {:?}",
        r.flags
    );
    assert!(r.complete);
    // The barrier: every receiver, and each HTTP sender's publish
    // connection, was up before traffic.
    let ready = r.ready.expect("readiness recorded");
    let senders = 4; // tiny(): 2 rooms, 2 senders each
    let expected = 8 + if transport == Transport::WebSocket {
        0
    } else {
        senders
    };
    assert_eq!(
        (ready.expected, ready.ready),
        (expected, expected),
        "{transport}"
    );
    // The breakdown: one set of parts per delivery, on one clock, adding up
    // to the latency (means agree within the histograms' 3 digits).
    let b = r.breakdown.as_ref().expect("breakdown recorded");
    assert_eq!(b.clock, "one_host");
    assert_eq!(b.receipt, "socket_arrival");
    assert_eq!(b.skewed, 0, "{transport}: one host, one clock");
    for part in [&b.up_leg_us, &b.poll_wait_us, &b.down_leg_us] {
        assert_eq!(part.count, a.delivered, "{transport}: {b:?}");
    }
    let sum = b.up_leg_us.mean + b.poll_wait_us.mean + b.down_leg_us.mean;
    assert!(
        (sum - r.latency_us.mean).abs() <= r.latency_us.mean * 2e-3 + 1.0,
        "{transport}: parts {sum} vs latency {}",
        r.latency_us.mean
    );
    match transport {
        Transport::Sse | Transport::WebSocket | Transport::WebTransport => {
            assert_eq!(b.poll_wait_us.max, 0)
        }
        // A short poller fetches most messages after they arrived.
        Transport::ShortPoll => {
            assert!(b.poll_wait_us.mean > 0.0, "{b:?}");
            // 8 pollers, a tick each 100 ms, over the 2 s window.
            assert!(r.poll_lag_us.count >= 100, "{:?}", r.poll_lag_us);
        }
        Transport::LongPoll => {}
    }
    assert_eq!(r.receive_us.count, a.delivered, "{transport}: receive time");
    assert_eq!(
        r.send_lag_us.count, a.sent,
        "{transport}: one send lag per send"
    );
    // Result files: run.json reads back, histograms are there and merge.
    let back = RunFile::read(&done.dir).unwrap();
    assert_eq!(back, done.file);
    let h = read_hlog(&done.dir.join(format!("{transport}.hlog"))).unwrap();
    assert_eq!(h.len(), a.delivered);
    let hgrm = std::fs::read_to_string(done.dir.join(format!("{transport}.hgrm"))).unwrap();
    assert!(
        hgrm.contains(&format!("Total count    = {:>12}", a.delivered)),
        "{hgrm}"
    );
    // HdrHistogram's percentile format: cumulative TotalCount, rising
    // percentiles, the last row at percentile 1 holding every count.
    let rows: Vec<Vec<&str>> = hgrm
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() > 10, "{hgrm}");
    for w in rows.windows(2) {
        let (q0, q1): (f64, f64) = (w[0][1].parse().unwrap(), w[1][1].parse().unwrap());
        let (c0, c1): (u64, u64) = (w[0][2].parse().unwrap(), w[1][2].parse().unwrap());
        assert!(q1 > q0 && c1 >= c0, "{hgrm}");
        assert_eq!(w[0].len(), 4, "{hgrm}");
    }
    let last = rows.last().unwrap();
    assert_eq!((last[1], last.len()), ("1.000000000000", 3), "{hgrm}");
    assert_eq!(last[2].parse::<u64>().unwrap(), a.delivered, "{hgrm}");
    // The interval log, read by hand: one interval, its real start and
    // length, and every delivery in it.
    let ivs = read_hlog_by_hand(&done.dir.join(format!("{transport}.hlog")));
    assert_eq!(ivs.len(), 1, "{ivs:?}");
    assert_eq!(ivs[0].tag, "rep0");
    assert_eq!(ivs[0].total_count, a.delivered);
    assert_eq!(ivs[0].significant_digits, 3);
    assert_eq!(ivs[0].length_s, 2.0);
    assert_eq!(ivs[0].start_s, r.measured_from_unix_ms as f64 / 1000.0);
    assert!(ivs[0].start_s > 1.7e9, "a real time: {}", ivs[0].start_s);
    // Requests per message follow the transport's shape.
    let w = r.wire.total;
    // (4 receivers per message: one POST per message is 0.25 per delivery.)
    let per_msg = r.wire.per_msg.requests;
    match transport {
        Transport::WebSocket | Transport::WebTransport => {
            assert_eq!(w.requests, 8, "one handshake per client")
        }
        Transport::Sse => {
            assert!(
                w.requests >= 8 + a.sent,
                "a GET per client plus a POST per message: {w:?}"
            );
            assert!((0.2..0.3).contains(&per_msg), "{per_msg}");
        }
        // Polls add requests on top of the POSTs.
        _ => assert!(per_msg > 0.3, "{per_msg}"),
    }
    assert!(w.segs_in > 0 && w.segs_out > 0, "TCP_INFO segments: {w:?}");
    radio(transport, r);
}

/// The radio model over the tiny run: 8 clients, each with packets and
/// messages every few tens of ms from the warm-up on, so every client's
/// radio is connected for the whole 2 s window and never promotes in it:
/// 1,060 mW for the hour, plus the bytes' transfer power above it.
fn radio(transport: Transport, r: &chatbench_loadgen::results::TransportRun) {
    let x = r.radio.as_ref().expect("radio figures");
    assert_eq!(x.time.clients, 8, "{transport}");
    assert_eq!(x.time.window_us, 8 * 2_000_000, "{transport}");
    assert_eq!(x.time.promotions, 0, "{transport}: {x:?}");
    assert_eq!(x.time.promotion_us, 0, "{transport}: {x:?}");
    assert_eq!(x.time.connected_us, x.time.window_us, "{transport}: {x:?}");
    assert_eq!(x.on_share, 1.0, "{transport}");
    assert_eq!(
        x.messages_only.connected_us, x.time.window_us,
        "{transport}: {x:?}"
    );
    // 1,060 mW the whole window, plus each direction's bytes at the
    // paper's median throughput and transfer power, above the tail's
    // (Table 4: 438.39 mW per Mbit/s up at 6, 51.97 down at 13, 1,288.04
    // base).
    let up_mj = (438.39 * 6.0 + 1288.04 - 1060.0) * x.time.up_bytes as f64 * 8.0 / 6e6;
    let down_mj = (51.97 * 13.0 + 1288.04 - 1060.0) * x.time.down_bytes as f64 * 8.0 / 13e6;
    let want = (1060.0 * 16.0 + up_mj + down_mj) / 1000.0 * 3600.0 / 16.0;
    assert!(
        (x.j_per_client_hour - want).abs() < 1e-6 * want,
        "{transport}: {} J per client-hour against {want}",
        x.j_per_client_hour
    );
    // The messages alone keep the radio connected too, and carry no
    // bytes: 1,060 mW for the hour; the rest is the transport's.
    assert!(
        (x.messages_only_j_per_client_hour - 3816.0).abs() < 1e-6,
        "{transport}: {x:?}"
    );
    assert!(
        (x.overhead_share - (1.0 - 3816.0 / x.j_per_client_hour)).abs() < 1e-9,
        "{transport}: {x:?}"
    );
    // The meters saw what the counters counted in the window (give or take
    // what straddles its edges).
    let m = r.wire.measured;
    for (seen, counted) in [
        (x.time.up_bytes, m.bytes_up),
        (x.time.down_bytes, m.bytes_down),
    ] {
        let ratio = seen as f64 / counted.max(1) as f64;
        assert!(
            (0.8..1.2).contains(&ratio),
            "{transport}: {seen} against {counted}"
        );
    }
    assert!(
        (x.mj_per_message * r.audit.delivered as f64 / 1000.0
            - x.j_per_client_hour * 8.0 * 2.0 / 3600.0)
            .abs()
            < 1e-6,
        "{transport}: {x:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_poll() {
    one(Transport::ShortPoll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll() {
    one(Transport::LongPoll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse() {
    one(Transport::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket() {
    one(Transport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_server_reports_server_cost_and_interleaves_repetitions() {
    let out = tempfile::tempdir().unwrap();
    let mut scenario = tiny("\"sse\", \"websocket\"");
    scenario.repeat = 2;
    let target = ServerTarget::Spawn {
        exe: env!("CARGO_BIN_EXE_chatbench").into(),
        args: vec!["serve".into()],
        cpus: None,
        log: None,
    };
    let done = run(options(scenario, out.path(), target)).await.unwrap();
    let order: Vec<(Transport, u32)> = done
        .file
        .runs
        .iter()
        .map(|r| (r.transport, r.repetition))
        .collect();
    assert_eq!(
        order,
        vec![
            (Transport::Sse, 0),
            (Transport::WebSocket, 0),
            (Transport::Sse, 1),
            (Transport::WebSocket, 1)
        ]
    );
    for r in &done.file.runs {
        let cost = r.server.as_ref().expect("a spawned server has a pid");
        assert!(cost.rss_before_traffic > 0 && cost.rss_peak >= cost.rss_before_traffic);
        assert!(cost.threads_peak >= 1 && cost.fds_peak >= 8, "{cost:?}");
        // CPU from schedstat, in ns, not 10 ms ticks: a real fraction of a ms.
        assert_eq!(cost.cpu_precision_ms, 0.001, "{cost:?}");
        assert!(
            cost.cpu_ms_measured > 0.0 && cost.cpu_ms_measured.fract() != 0.0,
            "{cost:?}"
        );
        assert_eq!(r.loadgen.cpu_precision_ms, 0.001, "{:?}", r.loadgen);
        assert_eq!(r.audit.lost, 0);
    }
    assert_eq!(done.file.summary.len(), 2);
    assert_eq!(done.file.summary[0].repetitions, 2);
    assert!(done.dir.join("server.log").exists());
}

/// A 1-second tiny scenario on `transport` with `sweep`, against an
/// in-process server. Keep the temporary folder alive while reading the run
/// folder.
async fn sweep_run(transport: &str, sweep: Sweep) -> (Finished, tempfile::TempDir) {
    let (addr, _stop) = in_process_server().await;
    let out = tempfile::tempdir().unwrap();
    let mut scenario = tiny(&format!("\"{transport}\""));
    scenario.duration = std::time::Duration::from_secs(1);
    scenario.sweep = Some(sweep);
    let done = run_against(addr, scenario, out.path()).await;
    (done, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_run_every_point_and_chart_them() {
    let sweep = Sweep {
        parameter: "short_poll.interval".into(),
        values: vec!["40ms".into(), "200ms".into()],
    };
    let (done, _out) = sweep_run("short_poll", sweep).await;
    let points: Vec<(usize, Option<&str>)> = done
        .file
        .summary
        .iter()
        .map(|s| (s.point, s.point_label.as_deref()))
        .collect();
    assert_eq!(points, vec![(0, Some("40ms")), (1, Some("200ms"))]);
    let (fast, slow) = (&done.file.summary[0], &done.file.summary[1]);
    assert_eq!(fast.lost + slow.lost, 0);
    // Short-poll latency grows with the interval; requests per second fall.
    assert!(
        slow.p50_us.median > fast.p50_us.median,
        "{} vs {}",
        slow.p50_us.median,
        fast.p50_us.median
    );
    assert!(slow.requests_per_s.median < fast.requests_per_s.median);
    assert!(
        done.dir.join("short_poll-p0.hlog").exists()
            && done.dir.join("short_poll-p1.hgrm").exists()
    );
    let written = chatbench_report::report(&done.dir).unwrap();
    assert!(written.charts.iter().any(|p| p.ends_with("sweep.png")));
    let md = std::fs::read_to_string(&written.report).unwrap();
    assert!(
        md.contains("This run sweeps `short_poll.interval` over 2 values"),
        "{md}"
    );
    assert!(md.contains("| 200ms | short_poll |"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_value_sweep_names_its_files_as_a_sweep_and_the_report_reads_them() {
    // Histogram file names follow the scenario (does it sweep?), not how
    // many points the run reached, so the report finds them.
    let sweep = Sweep {
        parameter: "messages.rate".into(),
        values: vec![2.0.into()],
    };
    let (done, _out) = sweep_run("websocket", sweep).await;
    let delivered = done.file.runs[0].audit.delivered;
    assert!(delivered > 0);
    assert!(done.dir.join("websocket-p0.hlog").exists());
    assert!(!done.dir.join("websocket.hlog").exists());
    let (_, hists) = chatbench_report::load(&done.dir).unwrap();
    assert_eq!(hists.len(), 1);
    assert_eq!(hists[0].1.len(), delivered);
    // WebSocket makes no HTTP request in the measured window: on the sweep
    // chart's log axis that zero sits on a line labelled 0, not on the
    // floor's decade.
    assert_eq!(done.file.summary[0].requests_per_s.median, 0.0);
    chatbench_report::report(&done.dir).unwrap();
    let svg = std::fs::read_to_string(done.dir.join("charts/sweep.svg")).unwrap();
    assert!(
        svg.contains("HTTP requests/s (log); bottom line: 0"),
        "{svg}"
    );
    assert_eq!(
        svg.matches(">\n0\n</text>").count(),
        1,
        "one line labelled 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_closed_by_the_server_are_replaced() {
    // The server closes keep-alive connections idle for 150 ms; senders send
    // about every 500 ms, so most publishes find their connection closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = chatbench_server::Config {
        header_read_timeout: std::time::Duration::from_millis(150),
        ..chatbench_server::Config::default()
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(chatbench_server::run(listener, config, async {
        let _ = stopped.await;
    }));
    let out = tempfile::tempdir().unwrap();
    let mut scenario = tiny("\"sse\"");
    scenario.messages.rate = 2.0;
    let done = run_against(addr, scenario, out.path()).await;
    let r = &done.file.runs[0];
    assert_eq!((r.audit.errors, r.audit.lost), (0, 0), "{:?}", r.audit);
    assert_eq!(r.audit.delivered, r.audit.expected);
    // 8 SSE streams, plus the senders' POST connections, reopened often.
    assert!(r.wire.total.connections > 8 + 4 * 2, "{:?}", r.wire.total);
}

/// The display's plan: every transport run, and their phases summed, come
/// first; then each run starts with its own planned length and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_announces_the_whole_plan_then_each_run() {
    use chatbench_loadgen::engine::Progress;
    use std::time::Duration;
    let (addr, _stop) = in_process_server().await;
    let out = tempfile::tempdir().unwrap();
    let mut scenario = tiny("\"sse\"");
    scenario.repeat = 2;
    scenario.duration = Duration::from_secs(1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut opts = options(
        scenario,
        out.path(),
        ServerTarget::External {
            addr,
            pid: None,
            ca: None,
        },
    );
    opts.progress = Some(tx);
    let done = run(opts).await.unwrap();
    assert!(done.file.complete);
    let mut seen = Vec::new();
    while let Ok(p) = rx.try_recv() {
        if !matches!(p, Progress::Tick { .. }) {
            seen.push(p);
        }
    }
    // ramp 200 ms + warm-up 500 ms + 1 s + grace 500 ms, twice.
    let one = Duration::from_millis(2_200);
    assert_eq!(
        seen.first(),
        Some(&Progress::Plan {
            runs: 2,
            total: one * 2
        })
    );
    let starts: Vec<(String, Duration)> = seen
        .iter()
        .filter_map(|p| match p {
            Progress::Started { label, total } => Some((label.clone(), *total)),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [("sse 1/2".to_string(), one), ("sse 2/2".to_string(), one)]
    );
    let finished = seen
        .iter()
        .filter(|p| matches!(p, Progress::Finished { lost: 0, .. }))
        .count();
    assert_eq!((seen.len(), finished), (5, 2), "{seen:?}");
}
