//! `REPORT.md`'s sections on the network below TCP: what the packet-level
//! link did and what each side's TCP made of it ("Below TCP"), and, in a
//! run that sweeps `network.loss`, how each transport's tail grows with
//! loss ("Loss").

use chatbench_results::fmt::fmt_us;
use chatbench_results::run_file::RunFile;
use chatbench_results::tcp::RTO_FLOOR_MS;
use chatbench_results::Transport;
use std::fmt::Write;

/// Shown for packet-mode runs and any run whose TCP retransmitted.
pub(crate) fn below_tcp(o: &mut String, run: &RunFile) {
    let shown = run.runs.iter().any(|r| {
        r.link.is_some()
            || r.tcp
                .as_ref()
                .is_some_and(|t| t.client.retrans_segs + t.server.map_or(0, |s| s.retrans_segs) > 0)
    });
    if !shown {
        return;
    }
    let _ = writeln!(o, "\n## Below TCP\n");
    let _ = writeln!(
        o,
        "What the link did to the IP packets (in packet mode: **lost** by the loss model, **queue drops** at a full bottleneck queue), and what each side's TCP made of it, read from the kernel's `TCP_INFO` as each socket closed: the segments it **retransmitted** (the clients send the uplink, the server the downlink), its retransmission **timeouts** (RTOs), and its smoothed round trip. \
**Late** is the share of the measured deliveries later than the link's round trip plus one minimum RTO ({RTO_FLOOR_MS:.0} ms; plus the poll interval for short polling): those that waited on a retransmission timeout, and any late for another reason, such as a saturated side or a full queue.\n"
    );
    let _ = writeln!(
        o,
        "| run | rep | lost up / down | queue drops up / down | retransmitted client / server | per 1k msgs | RTOs client / server | sRTT mean (max) | late | p50 | p99 | p99.9 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &run.runs {
        if r.link.is_none() && r.tcp.is_none() {
            continue;
        }
        let (lost, drops) = match &r.link {
            Some(l) => (
                format!("{} / {}", l.up.lost, l.down.lost),
                format!("{} / {}", l.up.queue_drops, l.down.queue_drops),
            ),
            None => ("—".into(), "—".into()),
        };
        // Files written before TCP's view have the link's figures only.
        let tcp = match &r.tcp {
            Some(t) => {
                let server = |f: &dyn Fn(&chatbench_results::tcp::ServerTcp) -> u64| {
                    t.server.map_or("n/a".to_owned(), |s| f(&s).to_string())
                };
                format!(
                    "{} / {} | {:.1} | {} / {} | {:.1} ms ({:.0} ms) | {:.2}%",
                    t.client.retrans_segs,
                    server(&|s| s.retrans_segs),
                    t.retrans_per_1k_msgs,
                    t.client.rto.map_or("n/a".to_owned(), |n| n.to_string()),
                    server(&|s| s.rto),
                    t.client.srtt_ms_mean,
                    t.client.srtt_ms_max,
                    t.late_share * 100.0,
                )
            }
            None => "n/a | n/a | n/a | n/a | n/a".into(),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {lost} | {drops} | {tcp} | {} | {} | {} |",
            r.label(&run.scenario),
            r.repetition + 1,
            fmt_us(r.latency_us.p50),
            fmt_us(r.latency_us.p99),
            fmt_us(r.latency_us.p999),
        );
    }
    let still: u64 = run
        .runs
        .iter()
        .filter_map(|r| r.tcp.as_ref()?.server.map(|s| s.still_open))
        .sum();
    if still > 0 {
        let _ = writeln!(
            o,
            "\n{still} of the runs' connections were still open on the server 3 s after the clients closed them; their retransmissions are not in the server's figures."
        );
    }
}

/// One transport at one loss rate, from its first repetition.
#[derive(Debug, Clone, Copy)]
struct LossPoint {
    loss: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    /// p99 of the publish leg (sender to server) and of the delivery leg
    /// (server to receiver).
    up_p99: u64,
    down_p99: u64,
    retrans_per_1k: f64,
}

fn curve(run: &RunFile, t: Transport, losses: &[f64]) -> Vec<LossPoint> {
    run.runs
        .iter()
        .filter(|r| r.transport == t && r.repetition == 0)
        .filter_map(|r| {
            let l = &r.latency_us;
            let b = r.breakdown.as_ref();
            Some(LossPoint {
                loss: *losses.get(r.point)?,
                p50: l.p50,
                p99: l.p99,
                p999: l.p999,
                up_p99: b.map_or(0, |b| b.up_leg_us.p99),
                down_p99: b.map_or(0, |b| b.down_leg_us.p99),
                retrans_per_1k: r.tcp.as_ref().map_or(0.0, |t| t.retrans_per_1k_msgs),
            })
        })
        .collect()
}

/// Shown when the run sweeps `network.loss`.
pub(crate) fn loss(o: &mut String, run: &RunFile) {
    let s = &run.scenario;
    let Some(sweep) = s.sweep.as_ref().filter(|w| w.parameter == "network.loss") else {
        return;
    };
    let losses: Vec<f64> = sweep
        .values
        .iter()
        .map(|v| {
            v.as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .unwrap_or(0.0)
        })
        .collect();
    let _ = writeln!(o, "\n## Loss\n");
    let _ = writeln!(
        o,
        "Each transport at each loss rate, over a {} round trip, the loss applied to every packet in each direction below the kernel's TCP. Beside the latency, the p99 of its two legs: **publish** (from the intended send to the server's stamp: an HTTP POST, or a WebSocket frame) and **delivery** (from the server's stamp to the receiver's socket; for polls, after the wait for a poll to take it). The tail's growth is each figure at the highest loss over the same figure at the lowest.\n",
        fmt_us(s.network.rtt.as_micros() as u64)
    );
    let _ = writeln!(
        o,
        "| transport | loss | p50 | p99 | p99.9 | publish p99 | delivery p99 | retransmissions per 1k msgs |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut growth = Vec::new();
    for t in Transport::ALL {
        let c = curve(run, t, &losses);
        for p in &c {
            let _ = writeln!(
                o,
                "| {t} | {:.1}% | {} | {} | {} | {} | {} | {:.1} |",
                p.loss * 100.0,
                fmt_us(p.p50),
                fmt_us(p.p99),
                fmt_us(p.p999),
                fmt_us(p.up_p99),
                fmt_us(p.down_p99),
                p.retrans_per_1k,
            );
        }
        let lo = c.iter().min_by(|a, b| a.loss.total_cmp(&b.loss));
        let hi = c.iter().max_by(|a, b| a.loss.total_cmp(&b.loss));
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if hi.loss > lo.loss {
                growth.push((t, *lo, *hi));
            }
        }
    }
    if growth.is_empty() {
        return;
    }
    let _ = writeln!(o);
    for (t, lo, hi) in &growth {
        let x = |a: u64, b: u64| b as f64 / a.max(1) as f64;
        let _ = writeln!(
            o,
            "- **{t}**: from {:.1}% to {:.1}% loss, p50 {} → {} (×{:.2}), p99 {} → {} (×{:.1}), p99.9 {} → {} (×{:.1}); publish p99 ×{:.1}, delivery p99 ×{:.1}.",
            lo.loss * 100.0,
            hi.loss * 100.0,
            fmt_us(lo.p50),
            fmt_us(hi.p50),
            x(lo.p50, hi.p50),
            fmt_us(lo.p99),
            fmt_us(hi.p99),
            x(lo.p99, hi.p99),
            fmt_us(lo.p999),
            fmt_us(hi.p999),
            x(lo.p999, hi.p999),
            x(lo.up_p99, hi.up_p99),
            x(lo.down_p99, hi.down_p99),
        );
    }
    let _ = writeln!(
        o,
        "\nWhy the tails part ways: TCP hands bytes over in order, so on one long-lived connection (an SSE stream, a WebSocket) a lost segment holds back every message behind it until its retransmission arrives: after about one more round trip when later segments bring duplicate acknowledgements (fast retransmit), after a tail-loss probe or a retransmission timeout (at least {RTO_FLOOR_MS:.0} ms) when nothing follows it, which is the usual case for a quiet chat stream. \
A poll is a new request: one that starts after the loss is not behind it, but each poll is a round trip of its own that can lose its request or its answer, a long poll's answer is always the last segment on its connection (nothing follows it to trigger a fast retransmit), and a lost SYN on a new connection waits the initial timeout of 1 s. \
Over the three HTTP transports a message's latency also holds its publish, an HTTP POST that can lose its request or its answer like any other and that waits for the sender's previous one on its connection; a WebSocket sender's frames share its one connection. \
The table under **Below TCP** counts the retransmissions and timeouts behind these figures, side by side."
    );
}
