//! `[network]`: a whole run over the emulated link measures what the
//! analytic model expects, and says how the network was made.

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_an_emulated_round_trip_measures_what_the_model_expects() {
    let (addr, _stop) = in_process_server().await;
    let out = tempfile::tempdir().unwrap();
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    let src = tiny_toml("net", all)
        .replace("rate = 10.0", "rate = 2.0")
        .replace("arrival = \"poisson\"", "arrival = \"constant\"")
        .replace("interval = \"100ms\"", "interval = \"200ms\"")
        + "\n[network]\nrtt = \"40ms\"\n";
    let scenario =
        chatbench_loadgen::scenario::Scenario::parse(&src, std::path::Path::new("net.toml"))
            .unwrap();
    let done = run_against(addr, scenario, out.path()).await;
    let run = &done.file;
    assert!(run.complete);
    assert_eq!(
        run.network_mode.as_deref(),
        Some("emulated in the load generator's sockets")
    );
    for r in &run.runs {
        let t = r.transport;
        assert_eq!(
            (r.audit.lost, r.audit.duplicated, r.audit.errors),
            (0, 0, 0),
            "{t}: {:?}",
            r.errors_by_cause
        );
        assert!(r.audit.delivered > 0, "{t}");
        // No latency beats the round trip: half up, half down.
        assert!(r.latency_us.min >= 40_000, "{t}: {:?}", r.latency_us);
    }
    // Each p50 within 2 ms plus 15% of the model's (40 ms for the push
    // transports and a long poll that is armed; 40 + 100 ms for short
    // polls every 200 ms).
    for x in &run.summary {
        let model = x.model_p50_us.expect("a model figure");
        let want = if x.transport == chatbench_loadgen::Transport::ShortPoll {
            140_000.0
        } else {
            40_000.0
        };
        assert_eq!(model, want, "{}", x.transport);
        let err = x.p50_model_error().unwrap();
        assert!(
            err <= 0.15,
            "{}: p50 {} µs against the model's {model} µs (error {err})",
            x.transport,
            x.p50_us.median
        );
    }
    chatbench_report::report(&done.dir).unwrap();
    let report = std::fs::read_to_string(done.dir.join("REPORT.md")).unwrap();
    assert!(report.contains("\n## Against the model\n"), "{report}");
    assert!(report.contains("emulated in the load generator's sockets"));
}

/// `network.drop_every`: clients lose their connections again and again
/// and resume; every message still arrives exactly once, and client and
/// server still agree on every byte and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_keep_losing_their_connections_resume_without_loss_or_duplicates() {
    let (addr, _stop) = in_process_server().await;
    let out = tempfile::tempdir().unwrap();
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    let src = tiny_toml("drops", all).replace("grace = \"500ms\"", "grace = \"2s\"")
        + "\n[network]\nrtt = \"20ms\"\ndrop_every = \"400ms\"\ndrop_for = \"100ms\"\n";
    let scenario =
        chatbench_loadgen::scenario::Scenario::parse(&src, std::path::Path::new("drops.toml"))
            .unwrap();
    let done = run_against(addr, scenario, out.path()).await;
    let run = &done.file;
    assert!(run.complete);
    for r in &run.runs {
        let t = r.transport;
        assert_eq!(
            (r.audit.lost, r.audit.duplicated, r.audit.errors),
            (0, 0, 0),
            "{t}: {:?}",
            r.errors_by_cause
        );
        assert!(r.audit.delivered > 100, "{t}: {:?}", r.audit);
        let c = r.crosscheck.expect("the server was scraped");
        assert!(c.bytes_match && c.delivered_match, "{t}: {c:?}");
        let d = r.drops.expect("drop counts");
        // 8 clients, 2.5 s of traffic, a drop every 0.4 s: about 50.
        assert!((20..=90).contains(&d.drops), "{t}: {d:?}");
        // One TCP handshake per drop, two for a client that also publishes
        // over HTTP (its publishing connection was cut too).
        let most = if t == chatbench_loadgen::Transport::WebSocket {
            1.0
        } else {
            2.0
        };
        assert!(
            d.handshakes_per_drop >= 1.0 && d.handshakes_per_drop <= most,
            "{t}: {d:?}"
        );
        assert!(d.resume_bytes > 0 && d.bytes_per_drop > 50.0, "{t}: {d:?}");
        // Messages sent while a receiver was away waited for it.
        assert!(d.away_latency_us.count > 0, "{t}: {d:?}");
        assert!(
            d.away_latency_us.p50 > r.latency_us.p50,
            "{t}: away {:?} against {:?}",
            d.away_latency_us,
            r.latency_us
        );
    }
    let x = &run.summary[0];
    assert!(x.bytes_per_drop.is_some() && x.handshakes_per_drop.is_some());
    chatbench_report::report(&done.dir).unwrap();
    let report = std::fs::read_to_string(done.dir.join("REPORT.md")).unwrap();
    assert!(report.contains("\n## Connection drops\n"), "{report}");
    assert!(report.contains("| websocket | 1 | "), "{report}");
}

/// With no drain at all (`grace = "0s"`) over a 150 ms round trip, the
/// publishes sent in the window's last moments are still on their way when
/// the window ends: the rooms end only once every sender's last publish
/// has reached the server (an HTTP publish answered, a WebSocket frame
/// back in its room), so nothing is counted lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_end_only_after_the_last_publishes_arrive() {
    let (addr, _stop) = in_process_server().await;
    let out = tempfile::tempdir().unwrap();
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    let src = tiny_toml("no-drain", all).replace("grace = \"500ms\"", "grace = \"0s\"")
        + "\n[network]\nrtt = \"150ms\"\n";
    let scenario =
        chatbench_loadgen::scenario::Scenario::parse(&src, std::path::Path::new("no-drain.toml"))
            .unwrap();
    assert!(scenario.grace.is_zero());
    let done = run_against(addr, scenario, out.path()).await;
    let run = &done.file;
    assert!(run.complete);
    for r in &run.runs {
        let t = r.transport;
        assert!(r.audit.sent > 20, "{t}: {:?}", r.audit);
        assert_eq!(
            (r.audit.lost, r.audit.duplicated, r.audit.errors),
            (0, 0, 0),
            "{t}: {:?}",
            r.audit
        );
        let c = r.crosscheck.expect("the server was scraped");
        assert!(c.bytes_match && c.delivered_match, "{t}: {c:?}");
    }
}
