//! `REPORT.md`: environment, scenario in words, summary, charts, audit, flags.

use chatbench_loadgen::results::{RunFile, Stat};
use std::fmt::Write;

fn us(v: f64) -> String {
    let v = v as u64;
    if v < 1_000 {
        format!("{v} µs")
    } else if v < 1_000_000 {
        format!("{:.1} ms", v as f64 / 1e3)
    } else {
        format!("{:.2} s", v as f64 / 1e6)
    }
}

fn spread(s: &Stat, f: &dyn Fn(f64) -> String, reps: u32) -> String {
    if reps > 1 {
        format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
    } else {
        f(s.median)
    }
}

pub(crate) fn render(run: &RunFile) -> String {
    let s = &run.scenario;
    let mut o = String::new();
    let _ = writeln!(o, "# chatbench: {}\n", s.name);
    let flagged: Vec<String> = run
        .summary
        .iter()
        .filter(|x| !x.flags.is_empty())
        .map(|x| format!("**{}**: {}", x.transport, x.flags.join(", ")))
        .collect();
    if !run.complete || !flagged.is_empty() {
        let _ = writeln!(o, "> [!WARNING]");
        if !run.complete {
            let _ = writeln!(
                o,
                "> **This run is incomplete.** {}",
                run.problems.join("; ")
            );
        }
        for f in &flagged {
            let _ = writeln!(o, "> Flagged {f}.");
        }
        let _ = writeln!(
            o,
            "> `saturated` means the load generator, not the server, was the limit; `incomplete` means the run ended early; `crosscheck_mismatch` means client and server counts disagree.\n"
        );
    }
    if !s.description.is_empty() {
        let _ = writeln!(o, "{}\n", s.description.trim());
    }
    let _ = writeln!(o, "## Scenario\n");
    let senders = s.clients.senders_per_room;
    let _ = writeln!(
        o,
        "{} rooms of {} clients each ({} in all); in each room {} client{} send{} {} messages per second on average ({:?} arrivals{}), with {}-byte bodies. \
Every client receives every message of its room. Clients connect over {}, then traffic runs {} of warm-up and {} measured, with {} to drain. \
Short pollers poll every {}; long polls wait up to {}. Seed {}, {} repetition{} per transport, interleaved.\n",
        s.clients.rooms,
        s.clients.clients_per_room,
        s.total_clients(),
        senders,
        if senders == 1 { "" } else { "s" },
        if senders == 1 { "s" } else { "" },
        s.messages.rate,
        s.messages.arrival,
        if matches!(s.messages.arrival, chatbench_loadgen::scenario::Arrival::Burst) {
            format!(", bursts of {}", s.messages.burst_size)
        } else {
            String::new()
        },
        s.messages.body_bytes,
        humantime::format_duration(s.clients.ramp),
        humantime::format_duration(s.warmup),
        humantime::format_duration(s.duration),
        humantime::format_duration(s.grace),
        humantime::format_duration(s.short_poll.interval),
        humantime::format_duration(s.long_poll.wait),
        s.seed,
        s.repeat,
        if s.repeat == 1 { "" } else { "s" },
    );
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(
        o,
        "| transport | p50 | p99 | p99.9 | max | bytes/msg (up + down) | requests/msg | segments/msg | server CPU-ms/1k msgs | RSS/idle conn | delivered msg/s | flags |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for x in &run.summary {
        let r = x.repetitions;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {:.0} ({:.0} + {:.0}) | {:.4} | {:.2} | {} | {} | {:.0} | {} |",
            x.transport,
            spread(&x.p50_us, &us, r),
            spread(&x.p99_us, &us, r),
            spread(&x.p999_us, &us, r),
            spread(&x.max_us, &us, r),
            x.bytes_per_msg.median,
            x.bytes_up_per_msg.median,
            x.bytes_down_per_msg.median,
            x.requests_per_msg.median,
            x.segments_per_msg.median,
            x.server_cpu_ms_per_1k.map(|v| format!("{:.1}", v.median)).unwrap_or_else(|| "n/a".into()),
            x.rss_per_connection
                .map(|v| format!("{:.1} KiB", v.median / 1024.0))
                .unwrap_or_else(|| "n/a".into()),
            x.delivered_per_s.median,
            if x.flags.is_empty() { "—".into() } else { x.flags.join(", ") },
        );
    }
    if run.scenario.repeat > 1 {
        let _ = writeln!(
            o,
            "\nLatencies show the median over repetitions, with min–max in brackets."
        );
    }
    let _ = writeln!(o, "\n## Charts\n");
    for (file, what) in [
        ("latency", "Latency by percentile: each line is one transport; further right is rarer. Lower is better."),
        ("overhead", "Bytes and HTTP requests per delivered message, headers and framing included."),
        ("server-cost", "What the server spends: CPU per 1,000 delivered messages, and memory per idle connection."),
        ("timeline", "Delivered messages per second and p99 latency for each second of traffic; the grey band is warm-up."),
    ] {
        let _ = writeln!(o, "{what}\n\n![{file}](charts/{file}.png)\n");
    }
    let _ = writeln!(o, "## Delivery audit\n");
    let _ = writeln!(
        o,
        "Expected deliveries are the messages sent in the measured window times the receivers in their room. The server columns come from its `/metrics`, counted over the whole run.\n"
    );
    let _ = writeln!(
        o,
        "| transport | rep | sent | expected | delivered | lost | duplicated | reordered | missed | errors | server bytes = client bytes | server deliveries = client receipts |"
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for r in &run.runs {
        let a = r.audit;
        let (b, d) = match r.crosscheck {
            Some(c) => (
                format!(
                    "{} {} {}",
                    c.server_bytes_written,
                    if c.bytes_match { "=" } else { "≠" },
                    c.client_bytes_down
                ),
                format!(
                    "{} {} {}",
                    c.server_delivered,
                    if c.delivered_match { "=" } else { "≠" },
                    c.client_receipts
                ),
            ),
            None => ("n/a".into(), "n/a".into()),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.transport,
            r.repetition + 1,
            a.sent,
            a.expected,
            a.delivered,
            a.lost,
            a.duplicated,
            a.reordered,
            a.missed,
            a.errors,
            b,
            d
        );
    }
    let e = &run.environment;
    let _ = writeln!(o, "\n## Environment\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| run | `{}` ({}) |", run.run_id, run.created);
    let _ = writeln!(o, "| command | `{}` |", run.command.join(" "));
    let _ = writeln!(o, "| commit | `{}` |", e.commit);
    let _ = writeln!(o, "| chatbench | {} ({}) |", e.chatbench_version, e.rustc);
    let _ = writeln!(o, "| OS, kernel | {}, {} |", e.os, e.kernel);
    let _ = writeln!(o, "| CPU | {} × {} |", e.cpus, e.cpu_model);
    let _ = writeln!(
        o,
        "| memory | {:.1} GiB |",
        e.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(
        o,
        "| server | {}, CPUs {} (load generator CPUs {}) |",
        run.server_mode,
        run.cpus.server.as_deref().unwrap_or("not pinned"),
        run.cpus.loadgen.as_deref().unwrap_or("not pinned")
    );
    o
}
