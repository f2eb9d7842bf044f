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
