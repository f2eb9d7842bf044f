use crate::*;

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn every_chart_is_written_as_valid_svg_and_png() {
    let (_tmp, dir) = copy_fixture("run-a");
    let written = chatbench_report::report(&dir).unwrap();
    let mut names: Vec<String> = written
        .charts
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "latency.json",
            "latency.png",
            "latency.svg",
            "overhead.json",
            "overhead.png",
            "overhead.svg",
            "pareto.json",
            "pareto.png",
            "pareto.svg",
            "resources.json",
            "resources.png",
            "resources.svg",
            "server-cost.json",
            "server-cost.png",
            "server-cost.svg",
            "timeline.json",
            "timeline.png",
            "timeline.svg"
        ]
    );
    for p in &written.charts {
        let bytes = std::fs::read(p).unwrap();
        if p.extension().unwrap() == "json" {
            // Read in every_chart_draws_what_run_json_holds.
            continue;
        }
        if p.extension().unwrap() == "png" {
            assert_eq!(png_size(&bytes), (1000, 560), "{}", p.display());
            // A blank image compresses to almost nothing.
            assert!(
                bytes.len() > 20_000,
                "{} is only {} bytes",
                p.display(),
                bytes.len()
            );
        } else {
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
                "{}",
                p.display()
            );
            // Text names the font it was laid out with.
            assert!(
                text.contains("font-family=\"DejaVu Sans, sans-serif\"")
                    && !text.contains("font-family=\"sans-serif\""),
                "{}",
                p.display()
            );
            // Titles, axis labels and the legend are there as text.
            for t in ["short_poll", "long_poll", "sse", "websocket"] {
                assert!(text.contains(t), "{} lacks {t}", p.display());
            }
            // No text runs off the canvas (1000 px wide): a centred label
            // spans about 0.3 em per character each side of its x.
            for (x, size, label) in centred_texts(&text) {
                let half = 0.3 * size * label.chars().count() as f64;
                assert!(
                    x - half >= 0.0 && x + half <= 1000.0,
                    "{}: {label:?} at x {x} (±{half:.0}) is clipped",
                    p.display()
                );
            }
        }
    }
    // Requests per message are on a log scale: dots, not bars, one per
    // transport, WebSocket's zero hollow on the floor and labelled.
    let overhead = std::fs::read_to_string(dir.join("charts/overhead.svg")).unwrap();
    assert_eq!(overhead.matches("<circle").count(), 4);
    assert!(overhead.contains("0, below the axis"));
    let svg = std::fs::read_to_string(dir.join("charts/latency.svg")).unwrap();
    // Where each line's percentiles rest on fewer than 10 samples is marked.
    assert!(svg.contains("bar on a line: under 10 samples to its right"));
    for label in [
        "Delivery latency by percentile",
        "99.9%",
        "Latency (ms, log scale)",
    ] {
        assert!(svg.contains(label), "latency.svg lacks {label:?}");
    }
    // The same colour for the same transport in every chart: websocket green.
    for chart in ["latency", "overhead", "server-cost", "timeline"] {
        let svg = std::fs::read_to_string(dir.join(format!("charts/{chart}.svg"))).unwrap();
        assert!(
            svg.contains("#2CA02C"),
            "{chart}.svg has no websocket green"
        );
    }
}

#[test]
fn report_md_has_every_section() {
    let (_tmp, dir) = copy_fixture("run-a");
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    for needle in [
        "# chatbench: quick",
        "## Scenario",
        "4 rooms of 25 clients each (100 in all)",
        "## Summary",
        "| websocket | 1.7 ms (1.7 ms–1.7 ms) | 4.2 ms (2.9 ms–5.6 ms)",
        "![latency](charts/latency.png)",
        "![overhead](charts/overhead.png)",
        "![server-cost](charts/server-cost.png)",
        "![timeline](charts/timeline.png)",
        "## Delivery audit",
        "## Environment",
        "| commit |",
    ] {
        assert!(md.contains(needle), "REPORT.md lacks {needle:?}\n{md}");
    }
    assert!(!md.contains("[!WARNING]"), "a clean run has no warning");
    // One audit row per transport and repetition.
    assert_eq!(md.lines().filter(|l| l.starts_with("| sse | ")).count(), 3);
}

#[test]
fn flags_and_incomplete_runs_are_shown_prominently() {
    let (_tmp, dir) = copy_fixture("run-a");
    let mut run = chatbench_results::run_file::RunFile::read(&dir).unwrap();
    run.complete = false;
    run.problems = vec!["sse 2/2: the server died during the run".into()];
    run.summary[2].flags = vec!["incomplete".into(), "saturated".into()];
    run.write(&dir).unwrap();
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    let head: String = md.lines().take(6).collect::<Vec<_>>().join("\n");
    assert!(
        head.contains("> **This run is incomplete.** sse 2/2: the server died during the run"),
        "{head}"
    );
    assert!(
        head.contains("> Flagged **sse**: incomplete, saturated."),
        "{head}"
    );
}

#[test]
fn a_missing_run_folder_is_a_clear_error() {
    let e = chatbench_report::report(std::path::Path::new("/nonexistent/run")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nonexistent/run/run.json: No such file or directory (os error 2)"
    );
}

#[test]
fn the_report_crate_compiles_no_runtime_network_or_load_generator() {
    // A report needs result files alone (ARCHITECTURE.md): its dependencies
    // say so. `cargo tree` over normal (non-dev) dependencies.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "-p",
            "chatbench-report",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: std::collections::BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains("chatbench-results") && names.contains("plotters"));
    for forbidden in [
        "chatbench-loadgen",
        "chatbench-server",
        "tokio",
        "hyper",
        "tungstenite",
        "procfs",
        "indicatif",
    ] {
        assert!(
            !names.contains(forbidden),
            "chatbench-report depends on {forbidden}:\n{tree}"
        );
    }
}

/// REPORT.md says where a delivery ends: at the socket (arrival stamps), or,
/// for runs made before them, once the load generator had parsed it.
#[test]
fn the_breakdown_says_where_receipt_is() {
    for (receipt, needle) in [
        (
            Some("socket_arrival"),
            "Receipt is when the message's last bytes reached the client's socket",
        ),
        (None, "this run predates arrival stamps"),
    ] {
        let (_tmp, dir) = copy_fixture("run-a");
        let path = dir.join("run.json");
        let mut run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let parts = serde_json::json!({"count": 1, "min": 1, "mean": 1.0, "p50": 1, "p90": 1, "p99": 1, "p999": 1, "p9999": 1, "max": 1});
        let mut b = serde_json::json!({
            "clock": "one_host",
            "up_leg_us": parts, "poll_wait_us": parts, "down_leg_us": parts, "skewed": 0
        });
        if let Some(r) = receipt {
            b["receipt"] = r.into();
        }
        for r in run["runs"].as_array_mut().unwrap() {
            r["breakdown"] = b.clone();
        }
        std::fs::write(&path, serde_json::to_string(&run).unwrap()).unwrap();
        let back = RunFile::read(&dir).unwrap();
        let want = receipt.unwrap_or("parsed");
        assert!(back
            .runs
            .iter()
            .all(|r| r.breakdown.as_ref().unwrap().receipt == want));
        chatbench_report::report(&dir).unwrap();
        let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
        assert!(md.contains(needle), "REPORT.md lacks {needle:?}");
    }
}

/// Every `text-anchor="middle"` text of an SVG: its x, font size and text.
fn centred_texts(svg: &str) -> Vec<(f64, f64, String)> {
    let attr = |tag: &str, name: &str| -> Option<f64> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + tag[start..].find('"')?;
        tag[start..end].parse().ok()
    };
    let mut out = Vec::new();
    for piece in svg.split("<text ").skip(1) {
        let Some((tag, rest)) = piece.split_once('>') else {
            continue;
        };
        // Every attribute, the first included, after a space.
        let tag = &format!(" {tag}");
        // Rotated text (a y-axis title) runs along y, not x.
        if !tag.contains("text-anchor=\"middle\"") || tag.contains("rotate(") {
            continue;
        }
        let label = rest
            .split("</text>")
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if let (Some(x), Some(size)) = (attr(tag, "x"), attr(tag, "font-size")) {
            out.push((x, size, label));
        }
    }
    out
}

#[test]
fn saturation_reasons_and_a_saturated_kaazing_column_are_shown() {
    let (_tmp, dir) = copy_fixture("run-a");
    let mut run = chatbench_results::run_file::RunFile::read(&dir).unwrap();
    run.scenario.report.kaazing = true;
    let sse = run
        .summary
        .iter()
        .position(|s| s.transport.as_str() == "sse")
        .unwrap();
    run.summary[sse].flags = vec!["saturated".into()];
    let r = run
        .runs
        .iter()
        .position(|r| r.transport.as_str() == "sse")
        .unwrap();
    run.runs[r].flags = vec!["saturated".into()];
    run.runs[r].saturation = vec!["server: CPU 96% of its 1 CPU over the limit of 90%".into()];
    run.write(&dir).unwrap();
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(
        md.contains(&format!(
            "> Saturated, sse repetition {}: server: CPU 96% of its 1 CPU over the limit of 90%.",
            run.runs[r].repetition + 1
        )),
        "{md}"
    );
    // The Kaazing table gives a saturated transport no Mbps in any row, and
    // marks its overhead.
    let rows: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with("| | paper: polling"))
        .take(6)
        .collect();
    assert_eq!(rows.len(), 6, "{md}");
    assert!(rows[2].contains(" (saturated) |"), "{}", rows[2]);
    for row in &rows[3..] {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | label | paper | short_poll | long_poll | sse | paper ws | websocket |
        assert_eq!(cells[5], "saturated", "{row}");
        assert_ne!(cells[7], "saturated", "{row}");
    }
}

#[test]
fn the_kaazing_table_has_a_webtransport_column_only_when_the_run_has_it() {
    let (_tmp, dir) = copy_fixture("run-a");
    let mut run = chatbench_results::run_file::RunFile::read(&dir).unwrap();
    run.scenario.report.kaazing = true;
    run.write(&dir).unwrap();
    chatbench_report::report(&dir).unwrap();
    let header = |md: &str| {
        md.lines()
            .find(|l| l.starts_with("| | paper: polling"))
            .unwrap()
            .to_owned()
    };
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(!header(&md).contains("webtransport"), "{md}");
    // A WebTransport summary whose messages cost 20.5 bytes beyond
    // themselves.
    let ws = run
        .summary
        .iter()
        .find(|s| s.transport.as_str() == "websocket")
        .unwrap();
    let mut wt = ws.clone();
    wt.transport = chatbench_results::Transport::WebTransport;
    wt.bytes_per_msg.median = wt.payload_bytes.median + 20.5;
    run.summary.push(wt);
    run.write(&dir).unwrap();
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert_eq!(
        header(&md),
        "| | paper: polling | short_poll | long_poll | sse | paper: WebSocket | websocket | webtransport |"
    );
    let rows: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with("| | paper: polling"))
        .take(6)
        .collect();
    let cells =
        |row: &str| -> Vec<String> { row.split('|').map(|c| c.trim().to_owned()).collect() };
    assert_eq!(cells(rows[2])[8], "20.5", "{}", rows[2]);
    // 20.5 bytes a second from each of 1,000 clients, in Mbit/s.
    assert_eq!(
        cells(rows[3])[8],
        format!("{:.3}", 20.5 * 8.0 * 1000.0 / 1048576.0),
        "{}",
        rows[3]
    );
    assert_eq!(cells(rows[3]).len(), 10, "{}", rows[3]);
}

/// The series of one chart's sidecar, by (panel, name).
fn chart_data(
    dir: &std::path::Path,
    chart: &str,
) -> std::collections::BTreeMap<(String, String), Vec<[f64; 2]>> {
    let text = std::fs::read_to_string(dir.join(format!("charts/{chart}.json"))).unwrap();
    let data: chatbench_report::charts::ChartData = serde_json::from_str(&text).unwrap();
    assert_eq!(data.chart, chart);
    data.series
        .into_iter()
        .map(|s| ((s.panel, s.name), s.points))
        .collect()
}

/// Each chart's sidecar holds exactly what run.json (and the histogram
/// logs) say, series by series: the picture cannot drift from the numbers.
#[test]
fn every_chart_draws_what_run_json_holds() {
    let (_tmp, dir) = copy_fixture("run-a");
    chatbench_report::report(&dir).unwrap();
    let run = RunFile::read(&dir).unwrap();
    let transports = ["short_poll", "long_poll", "sse", "websocket"];

    let overhead = chart_data(&dir, "overhead");
    let cost = chart_data(&dir, "server-cost");
    for (i, x) in run.at_point(0).enumerate() {
        let t = x.transport.as_str();
        assert_eq!(t, transports[i]);
        let bar = |d: &std::collections::BTreeMap<_, Vec<[f64; 2]>>, panel: &str, name: String| {
            d[&(panel.to_owned(), name)].clone()
        };
        let bytes = "bytes per message (both directions)";
        assert_eq!(
            bar(&overhead, bytes, format!("{t} client to server")),
            [[i as f64, x.bytes_up_per_msg.median]]
        );
        assert_eq!(
            bar(&overhead, bytes, format!("{t} server to client")),
            [[i as f64, x.bytes_down_per_msg.median]]
        );
        assert_eq!(
            bar(
                &overhead,
                "HTTP requests per message (log scale)",
                format!("{t} requests")
            ),
            [[i as f64, x.requests_per_msg.median]]
        );
        assert_eq!(
            bar(
                &cost,
                "server CPU-ms per 1,000 delivered messages",
                format!("{t} cpu")
            ),
            [[i as f64, x.server_cpu_ms_per_1k.unwrap().median]]
        );
        assert_eq!(
            bar(
                &cost,
                "server memory per idle connection",
                format!("{t} rss")
            ),
            [[i as f64, x.rss_per_connection.unwrap().median / 1024.0]]
        );
    }
    assert_eq!(overhead.len(), 4 * 3);

    // Latency: a line per transport over both repetitions' histograms,
    // rising, ending at the largest latency of either repetition.
    let latency = chart_data(&dir, "latency");
    assert_eq!(latency.len(), 4);
    for t in transports {
        let pts = &latency[&("latency".to_owned(), t.to_owned())];
        let max = run
            .runs
            .iter()
            .filter(|r| r.transport.as_str() == t)
            .map(|r| r.latency_us.max)
            .max()
            .unwrap();
        assert_eq!(pts.last().unwrap()[1], max as f64 / 1000.0, "{t}");
        assert!(pts.windows(2).all(|w| w[1][1] >= w[0][1]), "{t}: {pts:?}");
        assert_eq!(pts[0][0], 0.0, "{t}: starts at the 0th percentile");
    }

    // Timeline and resources: the first repetition's seconds and samples.
    let timeline = chart_data(&dir, "timeline");
    let resources = chart_data(&dir, "resources");
    let mut thin_seconds = 0;
    for t in transports {
        let r = run
            .runs
            .iter()
            .find(|r| r.transport.as_str() == t && r.repetition == 0)
            .unwrap();
        let want: Vec<[f64; 2]> = r
            .timeline
            .iter()
            .map(|x| [x.second as f64, x.received as f64])
            .collect();
        assert!(!want.is_empty());
        assert_eq!(timeline[&("msg/s".to_owned(), t.to_owned())], want, "{t}");
        let p99: Vec<[f64; 2]> = r
            .timeline
            .iter()
            .map(|x| [x.second as f64, x.p99_us as f64 / 1000.0])
            .collect();
        assert_eq!(timeline[&("p99 ms".to_owned(), t.to_owned())], p99, "{t}");
        // Ringed: the seconds whose p99 rests on under 10 samples beyond.
        let thin: Vec<[f64; 2]> = r
            .timeline
            .iter()
            .filter(|x| x.delivered > 0 && x.delivered < 1000)
            .map(|x| [x.second as f64, x.p99_us as f64 / 1000.0])
            .collect();
        assert_eq!(
            timeline[&("p99 ms, under 10 samples beyond".to_owned(), t.to_owned())],
            thin,
            "{t}"
        );
        thin_seconds += thin.len();
        let samples = &r.server.as_ref().unwrap().samples;
        let rss: Vec<[f64; 2]> = samples[1..]
            .iter()
            .map(|x| [x.t_ms as f64 / 1000.0, x.rss_bytes as f64 / 1_048_576.0])
            .collect();
        assert_eq!(resources[&("RSS MiB".to_owned(), t.to_owned())], rss, "{t}");
    }
    // Pareto: one point per transport (bytes per message, p50 ms), and the
    // frontier: those no other beats on both, by bytes.
    let pareto = chart_data(&dir, "pareto");
    for x in run.at_point(0) {
        assert_eq!(
            pareto[&(String::new(), x.transport.as_str().to_owned())],
            [[x.bytes_per_msg.median, x.p50_us.median / 1000.0]]
        );
    }
    let frontier = &pareto[&(String::new(), "Pareto frontier".to_owned())];
    assert!(!frontier.is_empty());
    for w in frontier.windows(2) {
        assert!(w[1][0] >= w[0][0] && w[1][1] < w[0][1], "{frontier:?}");
    }
    for x in run.at_point(0) {
        let (b, l) = (x.bytes_per_msg.median, x.p50_us.median / 1000.0);
        let on = frontier.contains(&[b, l]);
        let beaten = run
            .at_point(0)
            .any(|y| y.bytes_per_msg.median <= b && y.p50_us.median / 1000.0 < l);
        assert_eq!(on, !beaten, "{}", x.transport);
    }
    // The fixture (quick, about 960 deliveries a second) has such seconds,
    // and the chart says what its rings mean.
    assert!(thin_seconds > 0);
    let svg = std::fs::read_to_string(dir.join("charts/timeline.svg")).unwrap();
    assert!(svg.contains("ring: a second with under 1,000 deliveries"));
}

/// A sweep's chart holds each point's summary, per transport and panel.
#[test]
fn the_sweep_chart_draws_each_points_summary() {
    let (_tmp, dir) = copy_fixture("run-a");
    let mut run = RunFile::read(&dir).unwrap();
    // Make the fixture a two-point sweep: the second point is the first
    // with every latency doubled.
    run.scenario.sweep =
        Some(toml::from_str("parameter = \"messages.rate\"\nvalues = [2.0, 4.0]").unwrap());
    let second: Vec<_> = run
        .summary
        .iter()
        .cloned()
        .map(|mut s| {
            s.point = 1;
            s.point_label = Some("4".into());
            s.p50_us.median *= 2.0;
            s
        })
        .collect();
    run.summary.extend(second);
    run.write(&dir).unwrap();
    chatbench_report::report(&dir).unwrap();
    let sweep = chart_data(&dir, "sweep");
    for x in &run.summary[..4] {
        let t = x.transport.as_str().to_owned();
        assert_eq!(
            sweep[&("p50 latency (ms, log)".to_owned(), t.clone())],
            [
                [0.0, x.p50_us.median / 1000.0],
                [1.0, x.p50_us.median / 500.0]
            ]
        );
        assert_eq!(
            sweep[&("HTTP requests/s (log)".to_owned(), t)],
            [
                [0.0, x.requests_per_s.median],
                [1.0, x.requests_per_s.median]
            ]
        );
    }
}

/// REPORT.md's break-even points: short polling's bytes against
/// WebSocket's from the run's own poll costs, and long polling's requests
/// against short polling's from the model, each as the library computes.
#[test]
fn the_report_gives_the_break_even_points() {
    let (_tmp, dir) = copy_fixture("run-a");
    let mut run = RunFile::read(&dir).unwrap();
    for r in run
        .runs
        .iter_mut()
        .filter(|r| r.transport == chatbench_results::Transport::ShortPoll)
    {
        let w = &mut r.wire.measured;
        w.answered_polls = w.requests - r.audit.sent;
        w.poll_overhead_bytes = w.answered_polls * 250;
    }
    run.write(&dir).unwrap();
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    let b = chatbench_results::break_even::BreakEven::of(&run);
    assert_eq!(b.bytes.len(), 1);
    assert_eq!(b.bytes[0].poll_bytes, 250.0);
    assert!(md.contains("\n## Break-even points\n"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| — | 500.0ms | "))
        .expect("the bytes row");
    let want = match b.bytes[0].break_even_s {
        Some(p) => format!(
            "{} (polling every",
            chatbench_results::fmt::fmt_us((p * 1e6) as u64)
        ),
        None => "none: r alone is".to_owned(),
    };
    assert!(row.contains(&want) && row.contains("| 250 |"), "{row}");
    // Short polls every 500 ms against long polls: the model's rate.
    let l = b.requests[0].break_even_rate.unwrap();
    assert!((l - 2.0).abs() < 0.01, "{l}");
    assert!(
        md.contains(&format!("| {l:.3} messages/s into a room |")),
        "{md}"
    );
}

#[test]
fn the_loss_and_below_tcp_sections_show_what_tcp_saw() {
    use chatbench_results::run_file::LinkReport;
    use chatbench_results::tcp::{ServerTcp, TcpTotals, TcpView};
    let (_tmp, dir) = copy_fixture("run-a");
    let mut run = RunFile::read(&dir).unwrap();
    // Before: a clean loopback run has neither section.
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(
        !md.contains("## Below TCP") && !md.contains("## Loss"),
        "{md}"
    );

    // Repetition 1 becomes loss 0 and repetition 2 loss 2%.
    run.scenario.sweep = Some(chatbench_results::scenario::Sweep {
        parameter: "network.loss".into(),
        values: vec![toml::Value::Float(0.0), toml::Value::Float(0.02)],
    });
    for r in &mut run.runs {
        let lossy = r.repetition == 1;
        assert!(r.repetition < 2, "run-a has two repetitions");
        (r.point, r.repetition) = (r.repetition as usize, 0);
        r.latency_us.p50 = if lossy { 60_000 } else { 50_000 };
        r.latency_us.p99 = if lossy { 900_000 } else { 90_000 };
        r.latency_us.p999 = if lossy { 1_200_000 } else { 100_000 };
        let b = r
            .breakdown
            .get_or_insert_with(|| chatbench_results::run_file::Breakdown {
                clock: "one_host".into(),
                receipt: "socket_arrival".into(),
                up_leg_us: Default::default(),
                poll_wait_us: Default::default(),
                down_leg_us: Default::default(),
                skewed: 0,
            });
        b.up_leg_us.p99 = if lossy { 600_000 } else { 30_000 };
        b.down_leg_us.p99 = if lossy { 300_000 } else { 30_000 };
        let client = TcpTotals {
            sockets: 10,
            retrans_segs: if lossy { 7 } else { 0 },
            rto: if lossy { 2 } else { 0 },
            rto_known: true,
            srtt_us_sum: 10 * 52_000,
            srtt_us_max: 61_000,
            min_cwnd: 10,
            max_in_flight_bytes: 1448,
        };
        let server = ServerTcp {
            sockets: 12,
            retrans_segs: if lossy { 13 } else { 0 },
            rto: if lossy { 3 } else { 0 },
            still_open: 0,
        };
        r.tcp = Some(TcpView::new(
            &client,
            Some(server),
            1000,
            250.0,
            (if lossy { 40 } else { 0 }, 1000),
        ));
        r.link = Some(LinkReport::default());
        if lossy {
            let l = r.link.as_mut().unwrap();
            (l.up.lost, l.down.lost) = (9, 12);
        }
    }
    run.write(&dir).unwrap();
    chatbench_report::report(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    for needle in [
        "\n## Loss\n",
        "| sse | 0.0% | 50.0ms | 90.0ms | 100.0ms | 30.0ms | 30.0ms | 0.0 |",
        "| sse | 2.0% | 60.0ms | 900.0ms | 1.20s | 600.0ms | 300.0ms | 20.0 |",
        "- **websocket**: from 0.0% to 2.0% loss, p50 50.0ms → 60.0ms (×1.20), p99 90.0ms → 900.0ms (×10.0), p99.9 100.0ms → 1.20s (×12.0); publish p99 ×20.0, delivery p99 ×10.0.",
        "\n## Below TCP\n",
        "| long_poll @ 0.02 | 1 | 9 / 12 | 0 / 0 | 7 / 13 | 20.0 | 2 / 3 | 52.0 ms (61 ms) | 4.00% | 60.0ms | 900.0ms | 1.20s |",
        "| long_poll @ 0.0 | 1 | 0 / 0 | 0 / 0 | 0 / 0 | 0.0 | 0 / 0 | 52.0 ms (61 ms) | 0.00% | 50.0ms | 90.0ms | 100.0ms |",
    ] {
        assert!(md.contains(needle), "REPORT.md lacks {needle:?}\n{md}");
    }
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| sse | 0.0% |"))
            .count(),
        1
    );
    assert!(!md.contains("were still open on the server"), "{md}");
}
