//! REPORT.md's "Proxies" section, for a run that sweeps `path`: what each
//! reverse proxy adds in latency and CPU per message over each transport,
//! against clients that reach the server directly in the same run, and
//! what breaks with a proxy's default settings.

use chatbench_results::path::Path as ProxyPath;
use chatbench_results::run_file::{RunFile, TransportRun, TransportSummary};
use std::fmt::Write;

/// The `[path]` at each sweep point.
fn paths(run: &RunFile) -> Vec<Option<ProxyPath>> {
    let s = &run.scenario;
    (0..s.points())
        .map(|p| s.at_point(p).ok().map(|at| at.path))
        .collect()
}

/// The repetitions of `x`'s point and transport.
fn runs_at<'a>(
    run: &'a RunFile,
    x: &'a TransportSummary,
) -> impl Iterator<Item = &'a TransportRun> + 'a {
    run.runs
        .iter()
        .filter(move |r| r.point == x.point && r.transport == x.transport)
}

/// Mean of the proxy's CPU per 1,000 messages and memory over the
/// repetitions at a point and transport.
fn proxy_at(run: &RunFile, x: &TransportSummary) -> Option<(f64, f64)> {
    let ps: Vec<_> = runs_at(run, x).filter_map(|r| r.proxy.as_ref()).collect();
    let n = ps.len() as f64;
    (!ps.is_empty()).then(|| {
        (
            ps.iter().map(|p| p.cpu_ms_per_1k).sum::<f64>() / n,
            ps.iter().map(|p| p.rss_bytes as f64).sum::<f64>() / n,
        )
    })
}

/// How the streams fared at a point and transport, over its repetitions.
#[derive(Debug, Default, PartialEq)]
struct Fates {
    /// Mean over the repetitions of the first events' p50, µs (None when
    /// no first stream delivered).
    first_event_p50: Option<f64>,
    /// Clients whose first stream delivered nothing, summed.
    silent: u64,
    /// Connections cut, summed.
    cuts: u64,
    /// Mean over the repetitions with cuts of how long a cut one lived,
    /// p50, µs.
    lived_p50: f64,
}

fn fates_at(run: &RunFile, x: &TransportSummary) -> Fates {
    let st: Vec<_> = runs_at(run, x).filter_map(|r| r.streams.as_ref()).collect();
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let first: Vec<f64> = st
        .iter()
        .filter(|s| s.first_event_us.count > 0)
        .map(|s| s.first_event_us.p50 as f64)
        .collect();
    let lived: Vec<f64> = st
        .iter()
        .filter(|s| s.cut_lived_us.count > 0)
        .map(|s| s.cut_lived_us.p50 as f64)
        .collect();
    Fates {
        first_event_p50: mean(first),
        silent: st.iter().map(|s| s.silent).sum(),
        cuts: st.iter().map(|s| s.cut_lived_us.count).sum(),
        lived_p50: mean(lived).unwrap_or(0.0),
    }
}

/// What went wrong at a point and transport, in words; None when nothing.
fn broke(
    x: &TransportSummary,
    direct: Option<&TransportSummary>,
    fates: &Fates,
    direct_fates: Option<&Fates>,
) -> Option<String> {
    let fmt_us = |us: f64| chatbench_results::fmt::fmt_us(us as u64);
    let mut why = Vec::new();
    if fates.silent > 0 {
        why.push(format!(
            "{} first streams delivered nothing (buffered)",
            fates.silent
        ));
    }
    // A stream's first message held: at least 50 ms and ten times direct.
    if let (Some(f), Some(d)) = (
        fates.first_event_p50,
        direct_fates.and_then(|d| d.first_event_p50),
    ) {
        if f > 50_000.0 && f > 10.0 * d {
            why.push(format!(
                "first message on a stream held {} (p50) against {} direct (buffered)",
                fmt_us(f),
                fmt_us(d)
            ));
        }
    }
    if fates.cuts > 0 {
        why.push(format!(
            "{} connections cut after {} (p50)",
            fates.cuts,
            fmt_us(fates.lived_p50)
        ));
    }
    if x.errors > 0 {
        why.push(format!("{} client errors", x.errors));
    }
    if x.lost > 0 {
        why.push(format!("{} lost", x.lost));
    }
    if x.flags.iter().any(|f| f == "not_ready") {
        why.push("clients could not connect".into());
    }
    if let Some(d) = direct {
        // Held back: at least 50 ms and ten times the direct p50.
        let (p, q) = (x.p50_us.median, d.p50_us.median);
        if p > 50_000.0 && p > 10.0 * q {
            why.push(format!(
                "p50 {} against {} direct (held in a buffer or behind a timer)",
                chatbench_results::fmt::fmt_us(p as u64),
                chatbench_results::fmt::fmt_us(q as u64)
            ));
        }
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// The section; nothing unless the run sweeps `path`.
pub(crate) fn proxies(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    if s.sweep.as_ref().is_none_or(|sw| sw.parameter != "path") {
        return;
    }
    let paths = paths(run);
    let direct = paths
        .iter()
        .position(|p| p.as_ref().is_some_and(|p| p.is_direct()));
    let direct_of = |x: &TransportSummary| {
        direct.and_then(|d| run.at_point(d).find(|y| y.transport == x.transport))
    };
    let _ = writeln!(
        o,
        "\n## Proxies\n\nEach client reached the server through the reverse proxy of its row, spawned by chatbench on loopback and pinned to the server's CPU, with the configuration saved beside this report (`proxy-<point>/`): **default** is the package's defaults plus the minimum to route, **streaming** what the proxy's documentation gives for WebSocket, SSE and long polling (docs/proxies.md). **Added** is the p50 minus the direct p50 over the same transport in this run. The proxy's CPU is per 1,000 delivered messages, its memory at the end of the measured window.\n"
    );
    let _ = writeln!(
        o,
        "| path | transport | p50 | p99 | added p50 | proxy CPU-ms/1k msgs | proxy RSS | server CPU-ms/1k msgs | what broke |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut broken = Vec::new();
    for x in &run.summary {
        let label = x.point_label.clone().unwrap_or_default();
        let d = direct_of(x).filter(|d| d.point != x.point);
        // Nothing delivered: no latency to add, no cost per message.
        let delivered = x.delivered_per_s.median > 0.0;
        let added = d.filter(|_| delivered).map_or("—".to_owned(), |d| {
            let a = x.p50_us.median - d.p50_us.median;
            let sign = if a < 0.0 { "−" } else { "+" };
            format!("{sign}{}", chatbench_results::fmt::fmt_us(a.abs() as u64))
        });
        let (cpu, rss) = proxy_at(run, x).map_or(("—".to_owned(), "—".to_owned()), |(c, r)| {
            let cpu = if delivered {
                format!("{c:.1}")
            } else {
                "—".to_owned()
            };
            (cpu, format!("{:.1} MiB", r / (1u64 << 20) as f64))
        });
        let direct_fates = d.map(|d| fates_at(run, d));
        let what = broke(x, d, &fates_at(run, x), direct_fates.as_ref());
        if let Some(w) = &what {
            broken.push(format!("{label} over {}: {w}", x.transport));
        }
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {added} | {cpu} | {rss} | {} | {} |",
            x.transport,
            chatbench_results::fmt::fmt_us(x.p50_us.median as u64),
            chatbench_results::fmt::fmt_us(x.p99_us.median as u64),
            x.server_cpu_ms_per_1k
                .as_ref()
                .map_or("—".to_owned(), |c| format!("{:.1}", c.median)),
            what.as_deref().unwrap_or("—"),
        );
    }
    // In an HTTP/2 run, the proxies whose HTTP/2 does not carry WebSockets.
    let h1: Vec<String> = run
        .summary
        .iter()
        .filter(|x| runs_at(run, x).any(|r| r.proxy.as_ref().is_some_and(|p| p.websocket_h1)))
        .filter_map(|x| x.point_label.clone())
        .collect();
    if !h1.is_empty() {
        let _ = writeln!(
            o,
            "\nWebSockets went over HTTP/1.1, each on a TLS connection of its own, through {}: that proxy's HTTP/2 does not take extended CONNECT (RFC 8441), and browsers fall back the same way.",
            h1.join(", ")
        );
    }
    if broken.is_empty() {
        let _ = writeln!(
            o,
            "\nNothing broke: every path delivered every message without errors, none held back."
        );
    } else {
        let _ = writeln!(o, "\n**What broke:** {}.", broken.join("; "));
    }
}
