//! REPORT.md's "Stacks" section, for a run that sweeps `target`: every
//! stack's latency, overhead and server cost beside chatbench's own, what
//! joining a room costs (the Socket.IO upgrade's price), and how far each
//! server is from chatbench's on CPU per delivered message.

use chatbench_results::run_file::{RunFile, TransportSummary};
use chatbench_results::target::Target;
use chatbench_results::Transport;
use std::fmt::Write;

/// The target at each sweep point (None for a point that cannot be read).
fn targets(run: &RunFile) -> Vec<Option<Target>> {
    let s = &run.scenario;
    (0..s.points())
        .map(|p| s.at_point(p).ok().map(|at| at.target))
        .collect()
}

/// The sweep point of chatbench's own contract on its own server.
fn chatbench_point(targets: &[Option<Target>]) -> Option<usize> {
    targets
        .iter()
        .position(|t| t.as_ref().is_some_and(|t| t.label() == "chatbench"))
}

fn summary(run: &RunFile, p: usize, t: Transport) -> Option<&TransportSummary> {
    run.at_point(p).find(|x| x.transport == t)
}

/// Server CPU per 1,000 messages at point `p` over `t`, against
/// chatbench's at point `base` over the same transport.
fn cpu_ratio(run: &RunFile, p: usize, base: usize, t: Transport) -> Option<f64> {
    let cpu = |p| {
        summary(run, p, t)?
            .server_cpu_ms_per_1k
            .as_ref()
            .map(|c| c.median)
    };
    let (x, b) = (cpu(p)?, cpu(base)?);
    (b > 0.0).then(|| x / b)
}

/// The section; nothing unless the run sweeps `target`.
pub(crate) fn stacks(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    if s.sweep.as_ref().is_none_or(|sw| sw.parameter != "target") {
        return;
    }
    let targets = targets(run);
    let base = chatbench_point(&targets);
    let _ = writeln!(
        o,
        "\n## Stacks\n\nThe same workload on each stack's server, driven by its profile (docs/targets.md): chatbench's own, and the example servers of `peers/`. Their messages differ in size (chatbench's carry their room, sequence number and server stamp; Socket.IO's are an event name and the sender's object), so **overhead** is what a message cost beyond itself, both directions. Server CPU is per 1,000 delivered messages, and **× chatbench** divides it by chatbench's over the same transport in this run. Another stack's server counts no bytes of its own, so its runs have no byte cross-check (`no_crosscheck` in run.json says so).\n"
    );
    let _ = writeln!(
        o,
        "| target | transport | p50 | p99 | overhead bytes/msg | requests/msg | server CPU-ms/1k msgs | × chatbench | RSS/idle conn | lost | flags |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for x in &run.summary {
        let label = x.point_label.clone().unwrap_or_default();
        let ratio = base
            .filter(|&b| b != x.point)
            .and_then(|b| cpu_ratio(run, x.point, b, x.transport))
            .map_or("—".to_owned(), |r| format!("{r:.2}×"));
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {:.0} | {:.3} | {} | {ratio} | {} | {} | {} |",
            x.transport,
            chatbench_results::fmt::fmt_us(x.p50_us.median as u64),
            chatbench_results::fmt::fmt_us(x.p99_us.median as u64),
            (x.bytes_per_msg.median - x.payload_bytes.median).max(0.0),
            x.requests_per_msg.median,
            x.server_cpu_ms_per_1k
                .as_ref()
                .map_or("—".to_owned(), |c| format!("{:.1}", c.median)),
            x.rss_per_connection
                .as_ref()
                .map_or("—".to_owned(), |r| format!(
                    "{:.1} KiB",
                    r.median / 1024.0
                )),
            x.lost,
            if x.flags.is_empty() {
                "—".to_owned()
            } else {
                x.flags.join(", ")
            },
        );
    }
    joins(o, run, &targets);
    cpu_sentence(o, run, &targets, base);
}

/// Mean join cost over the repetitions at point `p` over `t`: requests,
/// bytes and time (µs) per client.
fn join_at(run: &RunFile, p: usize, t: Transport) -> Option<(f64, f64, f64)> {
    let js: Vec<_> = run
        .runs
        .iter()
        .filter(|r| r.point == p && r.transport == t)
        .filter_map(|r| r.join)
        .collect();
    let n = js.len() as f64;
    (!js.is_empty()).then(|| {
        (
            js.iter().map(|j| j.requests_per_client).sum::<f64>() / n,
            js.iter().map(|j| j.bytes_per_client).sum::<f64>() / n,
            js.iter().map(|j| j.mean_time_us).sum::<f64>() / n,
        )
    })
}

/// "Joining a room": per stack and transport, and the upgrade's price.
fn joins(o: &mut String, run: &RunFile, targets: &[Option<Target>]) {
    let rows: Vec<_> = run
        .summary
        .iter()
        .filter_map(|x| join_at(run, x.point, x.transport).map(|j| (x, j)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n### Joining a room\n\nWhat a client of another stack's profile spent from its first connection until its room's join was acknowledged, before traffic (chatbench's own clients subscribe in their first request, so they have no separate join): requests (a WebSocket's opening is one), bytes both ways, and time (mean over clients and repetitions).\n\n| target | transport | requests | bytes | time |\n|---|---|---:|---:|---:|"
    );
    for (x, (req, bytes, time)) in &rows {
        let _ = writeln!(
            o,
            "| {} | {} | {req:.1} | {bytes:.0} | {} |",
            x.point_label.clone().unwrap_or_default(),
            x.transport,
            chatbench_results::fmt::fmt_us(*time as u64)
        );
    }
    // The upgrade against a WebSocket from the start, on the same server.
    let find = |upgrade: bool| {
        targets.iter().position(|t| {
            t.as_ref().is_some_and(|t| {
                t.profile == chatbench_results::target::Profile::Socketio && t.upgrade == upgrade
            })
        })
    };
    let (Some(up), Some(direct)) = (find(true), find(false)) else {
        return;
    };
    let (Some(u), Some(d)) = (
        join_at(run, up, Transport::WebSocket),
        join_at(run, direct, Transport::WebSocket),
    ) else {
        return;
    };
    let _ = writeln!(
        o,
        "\n**What the Socket.IO upgrade costs a client.** Starting on Engine.IO polling and upgrading, as the official client does in a browser, a client's join took {:.0} requests, {:.0} bytes and {} here, against {:.0} request, {:.0} bytes and {} for a WebSocket from the start: {:.1}× the bytes and {:.1}× the time, paid once per connection. Once upgraded, its messages cost what a WebSocket's do (the websocket rows above).",
        u.0,
        u.1,
        chatbench_results::fmt::fmt_us(u.2 as u64),
        d.0,
        d.1,
        chatbench_results::fmt::fmt_us(d.2 as u64),
        u.1 / d.1.max(1.0),
        u.2 / d.2.max(1.0),
    );
}

/// How far each stack's server is from chatbench's on CPU per message.
fn cpu_sentence(o: &mut String, run: &RunFile, targets: &[Option<Target>], base: Option<usize>) {
    let Some(base) = base else { return };
    let mut parts = Vec::new();
    for (p, t) in targets.iter().enumerate() {
        let Some(t) = t.as_ref().filter(|_| p != base) else {
            continue;
        };
        let per: Vec<String> = run
            .at_point(p)
            .filter_map(|x| {
                cpu_ratio(run, p, base, x.transport)
                    .map(|r| format!("{r:.1}× over {}", x.transport))
            })
            .collect();
        if !per.is_empty() {
            parts.push(format!("{}: {}", t.label(), per.join(", ")));
        }
    }
    if parts.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n**Server CPU per delivered message against chatbench's**, over the same transport in this run: {}. (Node.js runs its chat on one thread; chatbench's server is pinned to the same CPUs.)",
        parts.join("; ")
    );
}
