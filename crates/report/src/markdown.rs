//! `REPORT.md`: environment, scenario in words, summary, charts, audit, flags.

use chatbench_results::fmt::fmt_us;
use chatbench_results::run_file::{RunFile, Stat};
use chatbench_results::scenario::Arrival;
use std::fmt::Write;

fn us(v: f64) -> String {
    chatbench_results::fmt::fmt_us_sep(v as u64, " ")
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
    warnings(&mut o, run);
    if !s.description.is_empty() {
        let _ = writeln!(o, "{}\n", s.description.trim());
    }
    scenario(&mut o, run);
    summary(&mut o, run);
    breakdown(&mut o, run);
    against_model(&mut o, run);
    drops(&mut o, run);
    crate::network::loss(&mut o, run);
    crate::network::below_tcp(&mut o, run);
    protocols(&mut o, run);
    webtransport(&mut o, run);
    crate::stacks::stacks(&mut o, run);
    crate::proxies::proxies(&mut o, run);
    break_even(&mut o, run);
    crate::battery::battery(&mut o, run);
    if s.report.kaazing {
        kaazing(&mut o, run);
    }
    charts(&mut o, run);
    audit(&mut o, run);
    server_processes(&mut o, run);
    load_generator(&mut o, run);
    environment(&mut o, run);
    o
}

/// A warning box when the run is incomplete, flagged or saturated.
fn warnings(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
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
        for r in run.runs.iter().filter(|r| !r.saturation.is_empty()) {
            let _ = writeln!(
                o,
                "> Saturated, {} repetition {}: {}.",
                r.label(s),
                r.repetition + 1,
                r.saturation.join("; ")
            );
        }
        let _ = writeln!(
            o,
            "> `saturated` means a side ran out: the load generator (its send lag or CPU over `[limits]`), so latencies include its own delay, or the server (its CPU over `limits.server_cpu`), so latencies include its queueing; `incomplete` means the run ended early; `crosscheck_mismatch` means client and server counts disagree.\n"
        );
    }
}

/// The scenario in words.
fn scenario(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    let _ = writeln!(o, "## Scenario\n");
    let senders = s.clients.senders_per_room;
    let _ = writeln!(
        o,
        "{} rooms of {} clients each ({} in all); in each room {} client{} send{} {} message{} per second on average ({}), with {}-byte bodies. \
Every client receives every message of its room. Clients connect over {}, then traffic runs {} of warm-up and {} measured, with {} to drain. \
Short pollers poll every {}; long polls wait up to {}. Seed {}, {} repetition{} per transport, interleaved.\n",
        s.clients.rooms,
        s.clients.clients_per_room,
        s.total_clients(),
        senders,
        if senders == 1 { "" } else { "s" },
        if senders == 1 { "s" } else { "" },
        s.messages.rate,
        if s.messages.rate == 1.0 { "" } else { "s" },
        match s.messages.arrival {
            Arrival::Poisson => "Poisson arrivals".to_string(),
            Arrival::Constant => "evenly spaced".to_string(),
            Arrival::Burst => format!("in bursts of {}", s.messages.burst_size),
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
}

/// The summary table, one row per transport (and sweep point).
fn summary(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    let _ = writeln!(o, "## Summary\n");
    let sweep = s.sweep.as_ref();
    if let Some(sw) = sweep {
        let _ = writeln!(
            o,
            "This run sweeps `{}` over {} values; each row is one transport at one value.\n",
            sw.parameter,
            sw.values.len()
        );
    }
    let first_col = sweep.map_or(String::new(), |sw| format!("| {} ", sw.parameter));
    let _ = writeln!(
        o,
        "{first_col}| transport | p50 | p99 | p99.9 | max | bytes/msg (up + down) | requests/msg | segments/msg | bytes/s | requests/s | server CPU-ms/1k msgs | RSS/idle conn | delivered msg/s | flags |"
    );
    let _ = writeln!(
        o,
        "{}|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        if sweep.is_some() { "|---" } else { "" }
    );
    for x in &run.summary {
        let r = x.repetitions;
        if sweep.is_some() {
            let _ = write!(o, "| {} ", x.point_label.as_deref().unwrap_or(""));
        }
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {:.0} ({:.0} + {:.0}) | {:.4} | {:.2} | {:.0} | {:.1} | {} | {} | {:.0} | {} |",
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
            x.bytes_per_s.median,
            x.requests_per_s.median,
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
    quota_periods(o, run);
}

/// Under `server.cpu_quota`: how often each transport run's server used
/// up its quota and waited for the next period.
fn quota_periods(o: &mut String, run: &RunFile) {
    let Some(q) = run.scenario.server.cpu_quota else {
        return;
    };
    let each: Vec<String> = run
        .runs
        .iter()
        .filter_map(|r| {
            let p = r.server.as_ref()?.quota_periods?;
            let mut at = String::new();
            if let Some(sweep) = &run.scenario.sweep {
                let label = run
                    .summary
                    .iter()
                    .find(|x| x.transport == r.transport && x.point == r.point)
                    .and_then(|x| x.point_label.clone())
                    .unwrap_or_else(|| r.point.to_string());
                at = format!(" at {} {label}", sweep.parameter);
            }
            if run.scenario.repeat > 1 {
                at.push_str(&format!(", repetition {}", r.repetition + 1));
            }
            Some(format!(
                "{}{at}: {} of {} ({:.0}%)",
                r.transport,
                p.throttled,
                p.ran,
                p.share() * 100.0
            ))
        })
        .collect();
    if each.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nThe server ran under a CPU quota of {} (`server.cpu_quota`). The 10 ms periods of the measured window in which it used up its quota and waited for the next: {}.",
        chatbench_results::fmt::cpus(q),
        each.join("; ")
    );
}

/// The charts this run has, each with what it shows.
fn charts(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    let _ = writeln!(o, "\n## Charts\n");
    if let Some(sw) = s.sweep.as_ref() {
        let _ = writeln!(
            o,
            "Each metric against `{}`, one line per transport; a black ring marks a point flagged `saturated`. The charts after it show the first value, {}.\n\n![sweep](charts/sweep.png)\n",
            sw.parameter,
            s.point_label(0).unwrap_or_default()
        );
    }
    for (file, what) in [
        ("latency", "Latency by percentile: each line is one transport; further right is rarer. Lower is better."),
        ("breakdown", "Where the latency goes, mean per delivery: up-leg (intended send to the server's stamp), poll wait (the message waiting at the server for the next poll) and down-leg (to receipt). Each panel has its own scale."),
        ("overhead", "Bytes and HTTP requests per delivered message, headers and framing included."),
        ("server-cost", "What the server spends: CPU per 1,000 delivered messages, and memory per idle connection."),
        ("timeline", "Messages received per second and p99 latency for each second of traffic; the grey band is warm-up. Lines that coincide are drawn over each other."),
        ("resources", "The server's CPU (% of one CPU) and memory each second, from the clients' first connects to the end (first repetition)."),
        ("model", "Measured p50 and mean latency against the round trip added, with the model's (see \"Against the model\") dashed in the same colour."),
        ("battery", "Radio energy per client-hour by the LTE model (see \"Battery\"): the clients' messages alone, and what the transport's own traffic adds; and the share of the time the radio was on."),
        ("pareto", "Every transport and setting (each sweep point, labelled): p50 latency against bytes per message. The dashed line joins the combinations that no other beats on both; anything above and right of it pays more for less."),
    ] {
        if file == "model"
            && s
                .sweep
                .as_ref()
                .is_none_or(|sw| sw.parameter != "network.rtt")
        {
            continue;
        }
        if file == "pareto" && run.summary.iter().filter(|x| x.bytes_per_msg.median > 0.0).count() < 2 {
            continue;
        }
        if file == "battery" && run.summary.iter().all(|x| x.radio_j_per_client_hour.is_none()) {
            continue;
        }
        if file == "breakdown" && run.runs.iter().all(|r| r.breakdown.is_none()) {
            continue;
        }
        if file == "resources"
            && run
                .runs
                .iter()
                .all(|r| r.server.as_ref().is_none_or(|c| c.samples.len() < 2))
        {
            continue;
        }
        let _ = writeln!(o, "{what}\n\n![{file}](charts/{file}.png)\n");
    }
}

/// The delivery audit per run, and its errors by cause.
fn audit(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
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
            r.label(s),
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
    if run.runs.iter().any(|r| !r.errors_by_cause.is_empty()) {
        let _ = writeln!(o, "\n### Errors by cause\n");
        let _ = writeln!(
            o,
            "| transport | rep | count | what failed, and why |\n|---|---:|---:|---|"
        );
        for r in &run.runs {
            let mut causes: Vec<_> = r.errors_by_cause.iter().collect();
            causes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (cause, n) in causes {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} |",
                    r.label(s),
                    r.repetition + 1,
                    n,
                    cause.replace('|', "\\|").replace('\n', " ")
                );
            }
        }
    }
}

/// Where and how the run was made.
fn environment(o: &mut String, run: &RunFile) {
    let e = &run.environment;
    let _ = writeln!(o, "\n## Environment\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| run | `{}` ({}) |", run.run_id, run.created);
    let _ = writeln!(o, "| command | `{}` |", run.command.join(" "));
    if !run.merged_from.is_empty() {
        let _ = writeln!(
            o,
            "| merged from | {} (repetitions renumbered in this order; not interleaved across them) |",
            run.merged_from
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        o,
        "| commit | `{}`{} |",
        e.commit,
        if e.dirty {
            " (dirty: built with uncommitted changes)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "| chatbench | {} ({}{}) |",
        e.chatbench_version,
        e.rustc,
        if e.profile.is_empty() {
            String::new()
        } else {
            format!(", {} build for {}", e.profile, e.target)
        }
    );
    let _ = writeln!(o, "| OS, kernel | {}, {} |", e.os, e.kernel);
    let _ = writeln!(o, "| CPU | {} × {} |", e.cpus, e.cpu_model);
    let _ = writeln!(
        o,
        "| memory | {:.1} GiB |",
        e.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(
        o,
        "| server | {}, CPUs {}{} (load generator CPUs {}) |",
        run.server_mode,
        run.cpus.server.as_deref().unwrap_or("not pinned"),
        run.scenario
            .server
            .cpu_quota
            .map_or(String::new(), |q| format!(
                ", a quota of {} (`server.cpu_quota`)",
                chatbench_results::fmt::cpus(q)
            )),
        run.cpus.loadgen.as_deref().unwrap_or("not pinned")
    );
    let _ = writeln!(
        o,
        "| CPU idle | {} |",
        if run.cpus.awake {
            "held awake for the run (`--hold-cpus-awake`): no latency includes a wake-up from idle"
        } else {
            "free to idle: at low load, latencies include waking a halted CPU"
        }
    );
}

/// The latency breakdown and the instrument's own error bar, per run.
/// Each server process's share, when several shared the rooms.
fn server_processes(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    if run
        .runs
        .iter()
        .all(|r| r.server.as_ref().is_none_or(|c| c.processes.is_empty()))
    {
        return;
    }
    let _ = writeln!(o, "\n## Server processes\n");
    let _ = writeln!(
        o,
        "Each room lived on one server process, `crc32(room) % processes` (`chatbench-server --room-shard I/K`); the figures elsewhere are summed over the processes. RSS per connection is the growth from before any client to before traffic, over the connections routed to the process; CPU is the measured window's, deliveries and bytes the whole run's (`/metrics`).\n"
    );
    let _ = writeln!(
        o,
        "| transport | rep | process | rooms | connections | RSS before traffic | RSS per connection | RSS peak | CPU ms | CPU share | delivered | bytes written |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &run.runs {
        let Some(cost) = &r.server else { continue };
        let cpu_all: f64 = cost.processes.iter().map(|p| p.cpu_ms_measured).sum();
        for p in &cost.processes {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {:.1} MiB | {:.1} KiB | {:.1} MiB | {:.0} | {:.0}% | {} | {} |",
                r.label(s),
                r.repetition + 1,
                p.index,
                p.rooms,
                p.connections,
                p.rss_before_traffic as f64 / 1_048_576.0,
                p.rss_before_traffic.saturating_sub(p.rss_baseline) as f64
                    / p.connections.max(1) as f64
                    / 1024.0,
                p.rss_peak as f64 / 1_048_576.0,
                p.cpu_ms_measured,
                100.0 * p.cpu_ms_measured / cpu_all.max(1e-9),
                p.delivered,
                p.bytes_written
            );
        }
    }
}

/// Measured latency beside the analytic model's (chatbench_results::model),
/// for runs over an emulated link.
fn against_model(o: &mut String, run: &RunFile) {
    let Some(mode) = &run.network_mode else {
        return;
    };
    let _ = writeln!(o, "\n## Against the model\n");
    let _ = writeln!(
        o,
        "The network here is {mode}: each direction delays every chunk by half the round trip (± jitter), in order, paced by the bandwidth, and each connection's setup pays one round trip. \
The model expects, from the round trip and the scenario alone: **short poll** `rtt + P/2`, P the interval stretched to a whole number of intervals when a poll's round trip outlasts it; **long poll** `rtt` for a message that finds the poll armed, plus up to one more `rtt` for the share `q` that arrives while it re-arms (`λ·rtt / (1 + λ·rtt)` for λ messages per second into a room arriving as a Poisson stream; `1 − (1 − rate·rtt)^(senders − 1)` for evenly spaced senders); **SSE and WebSocket** `rtt`, half up and half down. \
It leaves out the server's and the load generator's processing (the whole latency at a round trip of 0: about a millisecond on loopback here), bandwidth, and a sender's queueing behind its own previous request.\n"
    );
    let _ = writeln!(
        o,
        "| transport | point | model p50 | measured p50 | model mean | measured mean | measured − model (p50) | where they part (`p50_model_error`) |\n|---|---|---:|---:|---:|---:|---:|---|"
    );
    let mut notes = Vec::new();
    for row in run.against_model() {
        let (x, m, mean) = (row.summary, row.model, row.mean_us);
        let p50 = x.p50_us.median;
        let diff = p50 - m.p50_us;
        let error = x.p50_model_error().unwrap_or(0.0);
        let why = if x.flags.iter().any(|f| f == "saturated") {
            "flagged saturated: queueing the model leaves out".to_owned()
        } else if error == 0.0 {
            "within the 2 ms of processing the model leaves out".to_owned()
        } else if error <= 0.15 {
            format!("{:.0}% beyond those 2 ms", error * 100.0)
        } else {
            let note = format!(
                "{} at {}: measured {} against {}, with a send lag of {} at the median and {} at p99 (the time a message waited to leave its sender, inside its latency)",
                x.transport,
                x.point_label.as_deref().unwrap_or("this run"),
                fmt_us(p50 as u64),
                fmt_us(m.p50_us as u64),
                fmt_us(x.send_lag_p50_us.median as u64),
                fmt_us(x.send_lag_p99_us.median as u64)
            );
            notes.push(note);
            format!("{:.0}% beyond those 2 ms, see below", error * 100.0)
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            x.transport,
            x.point_label.as_deref().unwrap_or("—"),
            fmt_us(m.p50_us as u64),
            fmt_us(p50 as u64),
            fmt_us(m.mean_us as u64),
            fmt_us(mean as u64),
            if diff < 0.0 {
                format!("−{}", fmt_us(diff.abs() as u64))
            } else {
                format!("+{}", fmt_us(diff as u64))
            },
            why
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(
            o,
            "\nWhere the measurement and the model part by more than 2 ms and then 15% (of the model's p50, or of 2 ms where that is smaller): {}. \
A send lag near the gap is a sender's queue, which the model leaves out: an HTTP sender publishes over one connection, one request at a time, so over a long round trip a burst's later messages wait for the earlier ones' answers (a WebSocket sender does not wait). For short polling, the model's poll period assumes polls leave exactly on their ticks and answers come back in one round trip; for long polling, it assumes the messages into a room arrive as a Poisson stream, which a few evenly spaced or bursty senders are not. A measured figure above the model by about the same amount at every round trip is processing the model leaves out; one that grows with the round trip is a wait the model does not have.",
            notes.join("; ")
        );
    }
}

/// Seconds, as a duration.
fn secs(v: f64) -> String {
    fmt_us((v * 1e6) as u64)
}

/// Where short polling starts to cost more bytes than WebSocket, and long
/// polling more requests than short polling
/// ([`chatbench_results::break_even`]).
fn break_even(o: &mut String, run: &RunFile) {
    let b = chatbench_results::break_even::BreakEven::of(run);
    if b.bytes.is_empty() && b.requests.is_empty() {
        return;
    }
    let s = &run.scenario;
    let at = |point: usize| s.point_label(point).unwrap_or_else(|| "—".into());
    let _ = writeln!(o, "\n## Break-even points\n");
    if !b.bytes.is_empty() {
        let _ = writeln!(
            o,
            "**Short polling against WebSocket, in bytes.** Per delivered message, short polling at interval P costs `N·C/(P·D) + r`: N pollers each paying C bytes per poll besides the messages in it (its request, the answer's head and JSON envelope, measured), D deliveries a second, and r the rest per delivery (the message inside an answer, a share of the publishes), which P does not change. It equals WebSocket's w at `P* = N·C / (D·(w − r))`; when r alone is above w, short polling costs more bytes than WebSocket at any interval. Bytes and deliveries are both counted as read in the measured window.\n"
        );
        let _ = writeln!(
            o,
            "| point | interval | short poll, bytes per delivery | WebSocket | C (bytes per poll) | r | D (deliveries/s) | break-even interval P* |\n|---|---:|---:|---:|---:|---:|---:|---|"
        );
        for p in &b.bytes {
            let _ = writeln!(
                o,
                "| {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {} |",
                at(p.point),
                secs(p.interval_s),
                p.short_poll,
                p.websocket,
                p.poll_bytes,
                p.rest,
                p.deliveries_per_s,
                match p.break_even_s {
                    Some(v) => format!(
                        "{} (polling every {} or faster costs more)",
                        secs(v),
                        secs(v)
                    ),
                    None => format!(
                        "none: r alone is {:.1} bytes above WebSocket's w",
                        p.rest - p.websocket
                    ),
                }
            );
        }
        match b.bytes_crossing_s {
            Some(x) => {
                let model: Vec<String> = b
                    .bytes
                    .iter()
                    .filter_map(|p| p.break_even_s)
                    .map(secs)
                    .collect();
                let _ = writeln!(
                    o,
                    "\nThe sweep crosses it: the measured bytes per delivery of short polling and WebSocket are equal at an interval of **{}** (interpolated in 1/P between the two sweep points around it), against P* = {} from each point's own figures.",
                    secs(x),
                    model.join(" / ")
                );
            }
            None if s
                .sweep
                .as_ref()
                .is_some_and(|sw| sw.parameter == "short_poll.interval") =>
            {
                let _ = writeln!(
                    o,
                    "\nThe sweep does not cross it: short polling's bytes per delivery stay on one side of WebSocket's at every interval swept."
                );
            }
            None => {}
        }
    }
    if !b.requests.is_empty() {
        let _ = writeln!(
            o,
            "{}**Long polling against short polling, in requests.** A long poll is answered at the first message after it is armed (or at its wait), then re-arms in a round trip; messages arriving meanwhile are answered as soon as it is back. With messages reaching a room at λ per second (Poisson), a receiver's long polls per second are `1 / (rtt + e^(−λ·rtt)·(1 − e^(−λ·wait))/λ)`; short polling makes `1/P`. Long polling makes more requests once λ passes the rate λ* where the two are equal.\n",
            if b.bytes.is_empty() { "" } else { "\n" }
        );
        let _ = writeln!(
            o,
            "| point | interval | messages/s into a room (as sent) | short polls/s per receiver | long polls/s per receiver | model | break-even rate λ* |\n|---|---:|---:|---:|---:|---:|---|"
        );
        for p in &b.requests {
            let _ = writeln!(
                o,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
                at(p.point),
                secs(p.interval_s),
                p.room_rate,
                p.short_poll,
                p.long_poll,
                p.long_poll_model,
                match p.break_even_rate {
                    Some(l) => format!("{l:.3} messages/s into a room"),
                    None => "none at this interval".into(),
                }
            );
        }
        if let Some(x) = b.requests_crossing_rate {
            let model: Vec<String> = b
                .requests
                .iter()
                .filter_map(|p| p.break_even_rate)
                .map(|l| format!("{l:.3}"))
                .collect();
            let _ = writeln!(
                o,
                "\nThe sweep crosses it: the measured polls per second per receiver of long and short polling are equal at **{x:.3} messages/s** into a room (interpolated between the two sweep points around it), against the model's λ* = {}.",
                model.join(" / ")
            );
        }
    }
}

/// Connection drops and what resuming from them cost, in runs with
/// `network.drop_every`.
fn drops(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    let Some(every) = s.network.drop_every else {
        return;
    };
    let _ = writeln!(o, "\n## Connection drops\n");
    let _ = writeln!(
        o,
        "Each client lost its connections at random times, {} apart on average (exponential gaps), stayed offline for {}, then resumed from the last message it had seen: polls with `after`, SSE with `Last-Event-ID` on the same URL, as EventSource does, WebSocket by reconnecting with `after`. \
What arrived on a cut connection was read to its end (the server closes it on the client's FIN) and thrown away, so the audit below counts each message once, from the resumed connection. \
**Bytes per drop** are those the server sent into cut connections after the cut, plus each resuming request and its response head (the upgrade and its 101; the SSE request and its head; the first poll on the new connection and its head); **handshakes per drop** are the TCP connections opened to resume (an HTTP client with a publishing connection opens two). \
**Away** is the latency of the measured messages sent while their receiver was away, from the cut until its resuming request left. \
The server learns of a drop at once here (the client's FIN); a phone that loses its network sends nothing, and the server keeps the connection until a write or a keep-alive fails.\n",
        fmt_us(every.as_micros() as u64),
        fmt_us(s.network.drop_for.as_micros() as u64),
    );
    let _ = writeln!(
        o,
        "| transport | rep | drops | handshakes per drop | bytes per drop | of which after the cut | messages thrown away | p50 | p50 away | p99 away | lost | duplicated |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &run.runs {
        let Some(d) = r.drops else { continue };
        let away = |v: u64| {
            if d.away_latency_us.count == 0 {
                "—".to_owned()
            } else {
                fmt_us(v)
            }
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.label(s),
            r.repetition + 1,
            d.drops,
            d.handshakes_per_drop,
            d.bytes_per_drop,
            d.bytes_after_cut as f64 / d.drops.max(1) as f64,
            d.discarded,
            fmt_us(r.latency_us.p50),
            away(d.away_latency_us.p50),
            away(d.away_latency_us.p99),
            r.audit.lost,
            r.audit.duplicated,
        );
    }
}

/// HTTP/1.1 against HTTP/2, plain and over TLS, when the run has more
/// than one stack (a sweep over `protocol`) or a stack other than plain
/// HTTP/1.1.
fn protocols(o: &mut String, run: &RunFile) {
    use chatbench_results::Transport::*;
    let s = &run.scenario;
    let stack = |p: usize| s.at_point(p).map(|a| a.protocol).unwrap_or(s.protocol);
    let stacks: Vec<_> = (0..s.points()).map(stack).collect();
    if stacks.iter().all(|p| *p == Default::default()) {
        return;
    }
    let _ = writeln!(
        o,
        "
## Protocols
"
    );
    let _ = writeln!(
        o,
        "The same traffic over HTTP/1.1 (`h1`), HTTP/1.1 over TLS (`h1+tls`), HTTP/2 with prior knowledge (`h2c`) and HTTP/2 over TLS with ALPN (`h2+tls`). Over HTTP/2 a client's publishes and its polls or stream share one connection, as a browser tab's do, and WebSocket runs over extended CONNECT (RFC 8441) on a stream; over HTTP/1.1 a client that sends keeps a second connection for its publishes. Bytes are counted on the sockets, below TLS: they are the ciphertext a packet capture sees. A TLS handshake's bytes and time run from the TCP connect to the handshake's end (TLS 1.3, ECDSA P-256, one round trip; no session tickets or resumption).\n"
    );
    let _ = writeln!(
        o,
        "| transport | stack | p50 | bytes/msg | requests/msg | connections per client | server CPU ms per 1,000 msgs | TLS handshake bytes | TLS handshake time |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let clients = s.total_clients().max(1) as f64;
    let per_point = |t, p: usize| {
        run.summary
            .iter()
            .find(|x| x.transport == t && x.point == p)
    };
    let runs_at = |t, p: usize| {
        run.runs
            .iter()
            .filter(move |r| r.transport == t && r.point == p)
    };
    for &t in &s.transports {
        for (p, stack) in stacks.iter().enumerate() {
            let Some(x) = per_point(t, p) else { continue };
            let (mut conns, mut hs, mut hs_bytes, mut hs_us) = (0u64, 0u64, 0u64, 0u64);
            let mut reps = 0u64;
            for r in runs_at(t, p) {
                conns += r.connections;
                hs += r.wire.total.tls_handshakes;
                hs_bytes += r.wire.total.tls_handshake_bytes;
                hs_us += r.wire.total.tls_handshake_us;
                reps += 1;
            }
            let handshake = |v: u64| {
                if hs == 0 {
                    "—".to_owned()
                } else {
                    format!("{:.0}", v as f64 / hs as f64)
                }
            };
            let _ = writeln!(
                o,
                "| {t} | {} | {} | {:.0} | {:.3} | {:.2} | {} | {} | {} |",
                stack.label(),
                fmt_us(x.p50_us.median as u64),
                x.bytes_per_msg.median,
                x.requests_per_msg.median,
                conns as f64 / (reps.max(1) as f64 * clients),
                x.server_cpu_ms_per_1k
                    .as_ref()
                    .map_or("n/a".to_owned(), |c| format!("{:.1}", c.median)),
                handshake(hs_bytes),
                hs_us.checked_div(hs).map_or("—".to_owned(), fmt_us),
            );
        }
    }
    http3(o, run, &stacks);
    tcp_handshakes(o, run, &stacks);
    // What each step costs or saves, per message, from this run's figures,
    // for each header profile the run has.
    let bytes = |t, p: usize| per_point(t, p).map(|x| x.bytes_per_msg.median);
    let mut profiles: Vec<String> = Vec::new();
    for p in &stacks {
        let suffix = p.label()[p.stack().len()..].to_owned();
        if !profiles.contains(&suffix) {
            profiles.push(suffix);
        }
    }
    let mut lines = Vec::new();
    for suffix in &profiles {
        let find = |stack: &str| {
            stacks
                .iter()
                .position(|p| p.label() == format!("{stack}{suffix}"))
        };
        let headers = if suffix.is_empty() {
            "minimal headers".to_owned()
        } else {
            format!("headers:{suffix}")
        };
        for t in [ShortPoll, LongPoll, Sse, WebSocket] {
            if !s.transports.contains(&t) {
                continue;
            }
            let diff = |a: &str, b: &str| {
                find(a)
                    .and_then(|a| bytes(t, a))
                    .zip(find(b).and_then(|b| bytes(t, b)))
                    .map(|(a, b)| b - a)
            };
            let mut parts = Vec::new();
            if let Some(d) = diff("h1", "h2c") {
                parts.push(format!(
                    "HTTP/2 instead of HTTP/1.1 {} {:.0} bytes per message",
                    if d <= 0.0 { "saves" } else { "adds" },
                    d.abs()
                ));
            }
            if let Some(d) = diff("h1+tls", "h2+tls") {
                parts.push(format!(
                    "{} {:.0} over TLS",
                    if d <= 0.0 { "saves" } else { "adds" },
                    d.abs()
                ));
            }
            if let Some(d) = diff("h1", "h1+tls") {
                parts.push(format!("TLS adds {d:.0} to HTTP/1.1"));
            }
            if let Some(d) = diff("h2c", "h2+tls") {
                parts.push(format!("{d:.0} to HTTP/2"));
            }
            if !parts.is_empty() {
                lines.push(format!("- **{t}** ({headers}): {}.", parts.join("; ")));
            }
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(o, "\n{}\n", lines.join("\n"));
    }
    let _ = writeln!(
        o,
        "Where HPACK helps, and where it does not. HTTP/2 compresses header fields against a table both ends keep per connection: a header sent before (`content-type`, `accept`, a cookie that has not changed, the `:authority`) costs one or two bytes the next time. That is exactly polling's overhead, the same request and response heads over and over, so polls and publishes shrink most. It does not help the first request on a connection, which sends every field in full to fill the table, nor a field whose value changes each time: the `:path` of a poll carries its cursor (`after=N`), and a cookie that changes is sent again as a literal. It does nothing for a stream's messages: an SSE event or a WebSocket frame is data, and over HTTP/2 each message also pays a 9-byte DATA frame header, so push transports gain nothing and WebSocket over HTTP/2 costs more than over HTTP/1.1. TLS adds a 5-byte record header, a 16-byte tag and a content-type byte (22 bytes in all, TLS 1.3 with AES-GCM) to every record, that is to every write of a poll's answer or a pushed message, plus one handshake per connection.\n"
    );
}

/// WebTransport's runs: how they are made and counted, each point's mode,
/// and the two modes side by side when the run has both.
fn webtransport(o: &mut String, run: &RunFile) {
    use chatbench_results::scenario::WebTransportMode;
    use chatbench_results::Transport::WebTransport;
    let s = &run.scenario;
    let rows: Vec<_> = run
        .summary
        .iter()
        .filter(|x| x.transport == WebTransport)
        .map(|x| {
            let mode = s
                .at_point(x.point)
                .map_or(s.webtransport.mode, |a| a.webtransport.mode);
            (x, mode)
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n## WebTransport\n\nEach client opens a WebTransport session over a QUIC connection of its own (HTTP/3's SETTINGS, then an extended CONNECT to `/rooms/{{room}}/wt`), receives the room's messages on the unidirectional streams the server opens, a line each, and publishes a line at a time on one bidirectional stream it opens. In `stream` mode the server sends every message on one stream, as a WebSocket does on its connection; in `stream-per-message` mode each message goes on a stream of its own, which costs a stream's header and frame per message but lets QUIC deliver each message as it arrives, without waiting for an earlier one that was lost (such a message may overtake another: the audit counts it reordered). Bytes are counted at the UDP sockets, as over HTTP/3.\n\n| point | mode | p50 | p99 | p99.9 | bytes/msg | server CPU ms per 1,000 msgs | reordered |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (x, mode) in &rows {
        let _ = writeln!(
            o,
            "| {} | `{}` | {} | {} | {} | {:.0} | {} | {} |",
            x.point_label.as_deref().unwrap_or("—"),
            mode.as_str(),
            fmt_us(x.p50_us.median as u64),
            fmt_us(x.p99_us.median as u64),
            fmt_us(x.p999_us.median as u64),
            x.bytes_per_msg.median,
            x.server_cpu_ms_per_1k
                .as_ref()
                .map_or("n/a".to_owned(), |c| format!("{:.1}", c.median)),
            x.reordered
        );
    }
    let of = |m: WebTransportMode| rows.iter().find(|(_, mode)| *mode == m).map(|(x, _)| *x);
    if let (Some(a), Some(b)) = (
        of(WebTransportMode::Stream),
        of(WebTransportMode::StreamPerMessage),
    ) {
        let _ = writeln!(
            o,
            "\nA stream per message against one stream: p99 {} against {} ({:.2}×), {:.0} bytes per message against {:.0}.",
            fmt_us(b.p99_us.median as u64),
            fmt_us(a.p99_us.median as u64),
            b.p99_us.median / a.p99_us.median.max(1.0),
            b.bytes_per_msg.median,
            a.bytes_per_msg.median
        );
    }
}

/// The TCP runs' TLS handshakes in round trips, over an emulated round trip.
fn tcp_handshakes(o: &mut String, run: &RunFile, stacks: &[chatbench_results::scenario::Protocol]) {
    let s = &run.scenario;
    // Round trips of a handshake over TCP, over an emulated round trip.
    let rtt_us = s.network.rtt.as_micros() as f64;
    let mean = mean_handshake_us(run.runs.iter().filter(|r| {
        !stacks[r.point.min(stacks.len() - 1)].is_http3()
            && r.transport != chatbench_results::Transport::WebTransport
    }));
    if let (true, Some(mean)) = (rtt_us > 0.0, mean) {
        let _ = writeln!(
            o,
            "\nOver the emulated {} round trip a TLS handshake took {} on average from the TCP connect: {:.2} round trips, of which the TCP connect is one.",
            fmt_us(rtt_us as u64),
            fmt_us(mean as u64),
            mean / rtt_us
        );
    }
}

/// The mean TLS (or QUIC) handshake time of `runs`, µs; None without one.
fn mean_handshake_us<'a>(
    runs: impl Iterator<Item = &'a chatbench_results::run_file::TransportRun>,
) -> Option<f64> {
    let (n, us) = runs.fold((0u64, 0u64), |(n, us), r| {
        (
            n + r.wire.total.tls_handshakes,
            us + r.wire.total.tls_handshake_us,
        )
    });
    (n > 0).then(|| us as f64 / n as f64)
}

/// What an HTTP/3 point adds to the Protocols section: how QUIC is counted,
/// its handshake, and on a link that drops packets, its tail against
/// HTTP/2's (one TCP connection) for the transports that share a
/// connection.
fn http3(o: &mut String, run: &RunFile, stacks: &[chatbench_results::scenario::Protocol]) {
    let Some(h3) = stacks.iter().position(|p| p.is_http3()) else {
        return;
    };
    let _ = writeln!(
            o,
            "HTTP/3 (`h3`) runs over QUIC, on UDP (quinn 0.11 on both sides, with CUBIC congestion control as over TCP here, named in run.json's `quic`): each client's publishes and its polls or stream share one QUIC connection, whose handshake (TLS 1.3 inside QUIC's Initial and Handshake packets) is the TLS handshake counted. Its bytes are counted at the UDP sockets: QUIC's packet headers, frames and encryption are in them, and the on-wire figure adds IPv4 and UDP headers (28 bytes per datagram, against 52 per TCP segment). WebSocket is not carried over HTTP/3 here (RFC 9220 is not served), so in an `h3` run it goes over HTTP/1.1 with TLS on TCP, as a browser opens it. The h3 crate (0.0.8) on both sides encodes header fields with QPACK's static table and literals only, without a dynamic table, so unlike HPACK it does not shrink a poll's repeated headers (Chromium's QPACK keeps a dynamic table: a browser's polls over HTTP/3 cost less than these).\n"
        );
    let s = &run.scenario;
    let mean = mean_handshake_us(
        run.runs
            .iter()
            .filter(|r| r.point == h3 && r.transport != chatbench_results::Transport::WebSocket),
    );
    let rtt_us = s.network.rtt.as_micros() as f64;
    if let (true, Some(mean)) = (rtt_us > 0.0, mean) {
        let _ = writeln!(
            o,
            "Over the emulated {} round trip a QUIC handshake (transport and TLS at once) took {} on average: {:.2} round trips.\n",
            fmt_us(rtt_us as u64),
            fmt_us(mean as u64),
            mean / rtt_us
        );
    }
    let h2 = stacks.iter().position(|p| p.is_http2() && p.tls);
    let (Some(h2), true) = (h2, s.network.drops_packets()) else {
        return;
    };
    let p99 = |t, p: usize| {
        run.summary
            .iter()
            .find(|x| x.transport == t && x.point == p)
            .map(|x| x.p99_us.median as u64)
    };
    let mut lines = Vec::new();
    for &t in &s.transports {
        if t == chatbench_results::Transport::WebSocket {
            continue;
        }
        if let (Some(a), Some(b)) = (p99(t, h2), p99(t, h3)) {
            lines.push(format!(
                "- **{t}**: p99 {} over HTTP/2 with TLS, {} over HTTP/3 ({:.2}×).",
                fmt_us(a),
                fmt_us(b),
                b as f64 / a.max(1) as f64
            ));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(
            o,
            "On this link, which drops packets: a client's publishes and its poll or stream share one connection over HTTP/2 and over HTTP/3, but a lost TCP segment holds every stream behind it until it is retransmitted, where QUIC delivers each stream's data as it arrives. The tail of each transport that shares its connection:\n\n{}\n",
            lines.join("\n")
        );
    }
}

/// The load generator's own CPU and memory, per run, when it recorded its
/// memory.
fn load_generator(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    if run.runs.iter().all(|r| r.loadgen.rss.is_none()) {
        return;
    }
    let _ = writeln!(o, "\n## The load generator\n");
    let _ = writeln!(
        o,
        "What the instrument itself cost, summed over its processes. RSS per client is the growth from before the run's first client to the start of traffic, over the clients; with one process, a transport run after the first may reuse memory an earlier one freed and read low.\n"
    );
    let _ = writeln!(
        o,
        "| transport | rep | processes | CPU ms | CPU share | RSS before traffic | RSS per client | RSS peak |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &run.runs {
        let Some(m) = r.loadgen.rss else { continue };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} | {:.0}% | {:.1} MiB | {:.1} KiB | {:.1} MiB |",
            r.label(s),
            r.repetition + 1,
            r.loadgen.processes,
            r.loadgen.cpu_ms_measured,
            100.0 * r.loadgen.cpu_share,
            m.before_traffic as f64 / 1_048_576.0,
            m.per_client / 1024.0,
            m.peak as f64 / 1_048_576.0,
        );
    }
}

fn breakdown(o: &mut String, run: &RunFile) {
    if run.runs.iter().all(|r| r.breakdown.is_none()) {
        return;
    }
    let _ = writeln!(
        o,
        "\n## Where the latency goes, and the instrument's floor\n"
    );
    let _ = writeln!(
        o,
        "Each delivery's latency is split with the server's `server_at` stamp, on the host clock that the load generator and the server share: \
**up-leg** is intended send time to the server's stamp (it includes the send lag); **poll wait** is the time the message waited at the server for the poll that fetched it (0 on streams, and when a poll was already waiting); \
**down-leg** is from then to receipt (for polls, the poll's round trip). The parts add up to the latency exactly, so their means add up to the mean. \
**Send lag** (actual minus intended send time), **poll tick lag** (short polls: actual poll time minus its tick) and **receive** (from receipt to the end of the message's parsing) are the load generator's own error on each side.\n"
    );
    let parsed = run
        .runs
        .iter()
        .filter_map(|r| r.breakdown.as_ref())
        .any(|b| b.receipt == "parsed");
    let _ = writeln!(
        o,
        "{}\n",
        if parsed {
            "Receipt here is when the load generator had parsed the message (this run predates arrival stamps): the time it spent on the other clients it simulates on the same CPU is inside the latency and the down-leg, not in **receive**."
        } else {
            "Receipt is when the message's last bytes reached the client's socket, from the kernel's receive stamp. The load generator simulates many clients on one CPU, and a message reaches a room's receivers at once; the time one client waits while the others are handled is the instrument's, not the transport's, and is in **receive**, beside the latency rather than inside it."
        }
    );
    let _ = writeln!(
        o,
        "| transport | rep | latency mean | up-leg mean (p50 / p99) | poll wait mean (p50 / p99) | down-leg mean (p50 / p99) | sum of means | send lag p50 / p99 | poll tick lag p50 / p99 | receive p50 / p99 | deliveries left out |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let m = |v: f64| us(v.round());
    let pp = |p: &chatbench_results::run_file::Percentiles| {
        format!(
            "{} ({} / {})",
            m(p.mean),
            us(p.p50 as f64),
            us(p.p99 as f64)
        )
    };
    let mut unstamped = Vec::new();
    for r in &run.runs {
        let Some(b) = &r.breakdown else { continue };
        if b.up_leg_us.count == 0 && r.audit.delivered > 0 {
            unstamped.push(format!(
                "{} (repetition {})",
                r.label(&run.scenario),
                r.repetition + 1
            ));
            continue;
        }
        let sum = b.up_leg_us.mean + b.poll_wait_us.mean + b.down_leg_us.mean;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} | {} |",
            r.label(&run.scenario),
            r.repetition + 1,
            m(r.latency_us.mean),
            pp(&b.up_leg_us),
            pp(&b.poll_wait_us),
            pp(&b.down_leg_us),
            m(sum),
            us(r.send_lag_us.p50 as f64),
            us(r.send_lag_us.p99 as f64),
            if r.poll_lag_us.count > 0 {
                format!(
                    "{} / {}",
                    us(r.poll_lag_us.p50 as f64),
                    us(r.poll_lag_us.p99 as f64)
                )
            } else {
                "—".into()
            },
            us(r.receive_us.p50 as f64),
            us(r.receive_us.p99 as f64),
            if b.clock == "one_host" {
                b.skewed.to_string()
            } else {
                format!("{} (clocks of {})", b.skewed, b.clock)
            },
        );
    }
    if !unstamped.is_empty() {
        let _ = writeln!(
            o,
            "\nNot split, because another stack's messages carry no server stamp: {}.",
            unstamped.join(", ")
        );
    }
}

/// The paper's figures: header bytes per poll and per WebSocket frame, and
/// the resulting Mbps (Mbit = 2^20 bits) at 1,000, 10,000 and 100,000
/// clients that each poll, or receive one message, per second.
const KAAZING_POLL_BYTES: f64 = 871.0;
const KAAZING_WS_BYTES: f64 = 2.0;
const KAAZING_CLIENTS: [u64; 3] = [1_000, 10_000, 100_000];
const KAAZING_POLL_MBPS: [&str; 3] = ["6.6", "66", "665"];
const KAAZING_WS_MBPS: [&str; 3] = ["0.015", "0.153", "1.526"];

fn mbps(bytes_per_client_s: f64, clients: u64) -> f64 {
    bytes_per_client_s * 8.0 * clients as f64 / (1u64 << 20) as f64
}

fn kaazing(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    let measured_clients = s.total_clients();
    let _ = writeln!(
        o,
        "\n## Against \"HTML5 Web Sockets: A Quantum Leap in Scalability for the Web\"\n"
    );
    let _ = writeln!(
        o,
        "The paper (Lubbers and Greco, Kaazing, 2010) counted 871 bytes of HTTP headers per poll and 2 bytes per WebSocket frame (pre-RFC framing; RFC 6455 frames are 2 bytes from server to client and 6 from client to server), \
for clients that each poll, or receive one message, per second. chatbench's columns use its *measured* overhead per delivered message: all bytes on the client sockets, both directions, minus the message itself ({:.0} bytes here). \
Each client here receives one message per second. This run measured {} clients: that row is measured, and the rows for other counts scale this run's per-message overhead linearly, which is the same assumption the paper makes (the committed kaazing, kaazing-10k and kaazing-100k runs measure each row; README.md gathers them). A transport this run flagged `saturated` has no Mbps here: it did not keep up, and a poll or stream that falls behind carries many messages per answer, so its overhead per message understates what it costs at the offered rate; the README's table extrapolates such a row from a run that kept up, and says so. Mbps are 2^20 bits per second, as in the paper.\n",
        run.at_point(0).next().map_or(0.0, |x| x.payload_bytes.median),
        measured_clients
    );
    let get = |t: chatbench_results::Transport| run.at_point(0).find(|x| x.transport == t);
    use chatbench_results::Transport::*;
    // WebTransport's column when the run has it: overhead beyond the
    // message over QUIC (the paper had no such column).
    let wt = get(WebTransport).is_some();
    let overhead = |t| get(t).map(|x| (x.bytes_per_msg.median - x.payload_bytes.median).max(0.0));
    let _ = writeln!(
        o,
        "| | paper: polling | short_poll | long_poll | sse | paper: WebSocket | websocket |{}",
        if wt { " webtransport |" } else { "" }
    );
    let _ = writeln!(
        o,
        "|---|---:|---:|---:|---:|---:|---:|{}",
        if wt { "---:|" } else { "" }
    );
    let saturated = |t| get(t).is_some_and(|x| x.flags.iter().any(|f| f == "saturated"));
    let cell = |t, n| {
        if saturated(t) {
            return "saturated".to_owned();
        }
        overhead(t).map_or("n/a".to_owned(), |b| format!("{:.3}", mbps(b, n)))
    };
    let bytes = |t, digits: usize| {
        overhead(t).map_or("n/a".to_owned(), |b| {
            let note = if saturated(t) { " (saturated)" } else { "" };
            format!("{b:.digits$}{note}")
        })
    };
    let wt_cell = |text: String| {
        if wt {
            format!(" {text} |")
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        o,
        "| overhead bytes per message | {KAAZING_POLL_BYTES:.0} | {} | {} | {} | {KAAZING_WS_BYTES:.0} | {} |{}",
        bytes(ShortPoll, 0),
        bytes(LongPoll, 0),
        bytes(Sse, 0),
        bytes(WebSocket, 1),
        wt_cell(bytes(WebTransport, 1)),
    );
    let mut rows: Vec<(u64, Option<usize>)> = KAAZING_CLIENTS
        .iter()
        .copied()
        .zip((0..3).map(Some))
        .collect();
    if !KAAZING_CLIENTS.contains(&measured_clients) {
        rows.push((measured_clients, None));
    }
    for (n, paper) in rows {
        let note = if n == measured_clients {
            " (measured)"
        } else {
            " (extrapolated)"
        };
        let (poll, ws) = match paper {
            Some(i) => (
                KAAZING_POLL_MBPS[i].to_owned(),
                KAAZING_WS_MBPS[i].to_owned(),
            ),
            None => (
                format!("{:.3}", mbps(KAAZING_POLL_BYTES, n)),
                format!("{:.3}", mbps(KAAZING_WS_BYTES, n)),
            ),
        };
        let _ = writeln!(
            o,
            "| {n} clients, Mbps{note} | {poll} | {} | {} | {} | {ws} | {} |{}",
            cell(ShortPoll, n),
            cell(LongPoll, n),
            cell(Sse, n),
            cell(WebSocket, n),
            wt_cell(cell(WebTransport, n)),
        );
    }
    kaazing_by_stack(o, run);
}

/// With a sweep over `protocol`: the Kaazing overhead of every stack (the
/// HTTP/2 columns of the comparison), measured at this run's client count.
fn kaazing_by_stack(o: &mut String, run: &RunFile) {
    use chatbench_results::Transport::*;
    let s = &run.scenario;
    if s.points() < 2
        || s.sweep.as_ref().is_none_or(|sw| {
            !sw.parameter.starts_with("protocol") && !sw.parameter.starts_with("target")
        })
    {
        return;
    }
    let n = s.total_clients();
    let wt = run.summary.iter().any(|x| x.transport == WebTransport);
    let _ = writeln!(
        o,
        "\nOver each stack of the sweep: overhead bytes per message beyond the message itself, and in brackets the Mbps of overhead at this run's {n} clients (the paper: {KAAZING_POLL_BYTES:.0} bytes and {:.3} Mbps for polling, {KAAZING_WS_BYTES:.0} and {:.3} for WebSocket). `browser` sends the headers headless Chromium sends, with a cookie of the size given.\n",
        mbps(KAAZING_POLL_BYTES, n),
        mbps(KAAZING_WS_BYTES, n),
    );
    let _ = writeln!(
        o,
        "| stack | short_poll | long_poll | sse | websocket |{}\n|---|---:|---:|---:|---:|{}",
        if wt { " webtransport |" } else { "" },
        if wt { "---:|" } else { "" }
    );
    for p in 0..s.points() {
        let label = s.point_label(p).unwrap_or_default();
        let cell = |t| {
            run.at_point(p)
                .find(|x| x.transport == t)
                .map_or("n/a".to_owned(), |x| {
                    let b = (x.bytes_per_msg.median - x.payload_bytes.median).max(0.0);
                    let note = if x.flags.iter().any(|f| f == "saturated") {
                        ", saturated"
                    } else {
                        ""
                    };
                    format!("{b:.0} ({:.3}{note})", mbps(b, n))
                })
        };
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {} |{}",
            cell(ShortPoll),
            cell(LongPoll),
            cell(Sse),
            cell(WebSocket),
            if wt {
                format!(" {} |", cell(WebTransport))
            } else {
                String::new()
            }
        );
    }
}
