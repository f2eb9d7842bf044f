//! The answer to a workload: each transport's figures, which fit the
//! limits and why, the break-even points that apply, and where the
//! workload lies outside what was measured.

use super::estimate::{bytes_reference, describe, estimate, key, Estimate, Figure};
use super::reference::Reference;
use super::workload::Workload;
use crate::break_even::{long_poll_request_break_even, short_poll_bytes_break_even};
use crate::fmt::sig3;
use crate::Transport;
use serde::Serialize;
use std::fmt::Write as _;

/// The answer's JSON schema.
pub const SCHEMA: &str = "chatbench-advise/1";

/// The four transports `advise` weighs, in the order it prints them.
pub const TRANSPORTS: [Transport; 4] = [
    Transport::ShortPoll,
    Transport::LongPoll,
    Transport::Sse,
    Transport::WebSocket,
];

/// One transport in the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Its figures.
    #[serde(flatten)]
    pub estimate: Estimate,
    /// It keeps every limit given.
    pub fits: bool,
    /// The limits it breaks, each with the figure.
    pub breaks: Vec<String>,
}

/// A break-even point that applies to the workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakEvenPoint {
    /// What is compared.
    pub what: String,
    /// Where the two cost the same (s for an interval, msg/s for a rate);
    /// None when they never do.
    pub at: Option<f64>,
    /// What it means for this workload.
    pub meaning: String,
    /// The model and the run its constants came from.
    pub source: String,
    /// The reference the source names, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The whole answer (`chatbench advise --json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// `chatbench-advise/1`.
    pub schema: &'static str,
    /// The workload asked about.
    pub workload: Workload,
    /// Transports that fit, best first.
    pub fit: Vec<Transport>,
    /// How `fit` is ordered.
    pub order: String,
    /// Every transport with references.
    pub transports: Vec<Verdict>,
    /// Transports no reference measured.
    pub unmeasured: Vec<Transport>,
    /// Break-even points.
    pub break_evens: Vec<BreakEvenPoint>,
    /// Where the workload lies outside the references; empty when inside.
    pub outside: Vec<String>,
    /// The references the figures name, and what each ran.
    pub references: Vec<Cited>,
}

/// A reference some figure names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cited {
    /// How sources name it: the run folder and the sweep point.
    pub key: String,
    /// The commit and the workload it ran.
    pub ran: String,
}

fn breaks(w: &Workload, e: &Estimate) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(max) = w.max_p99 {
        let max_ms = max.as_secs_f64() * 1e3;
        if e.p99_ms.value > max_ms {
            out.push(format!(
                "p99 {} ms is above --max-p99 {} ms",
                sig3(e.p99_ms.value),
                sig3(max_ms)
            ));
        }
    }
    if let Some(max) = w.max_server_cpu {
        match &e.server_cpu_cores {
            Some(c) if c.value > max => out.push(format!(
                "server CPU {} cores is above --max-server-cpu {}",
                sig3(c.value),
                sig3(max)
            )),
            Some(_) => {}
            None => out.push("no reference measured its server CPU for --max-server-cpu".into()),
        }
    }
    out
}

fn break_evens(w: &Workload, refs: &[Reference], ests: &[Estimate]) -> Vec<BreakEvenPoint> {
    let mut out = Vec::new();
    let p = w.poll_interval.as_secs_f64();
    let by = |t: Transport| ests.iter().find(|e| e.transport == t);
    let sp_ref = bytes_reference(w, Transport::ShortPoll, refs);
    if let (Some(r), Some(ws)) = (sp_ref, by(Transport::WebSocket)) {
        let (c, rest) = (
            r.poll_bytes.unwrap_or_default(),
            r.rest_per_delivery.unwrap_or_default(),
        );
        let at = short_poll_bytes_break_even(
            w.clients as f64,
            c,
            w.deliveries_per_s(),
            rest,
            ws.bytes_per_msg.value,
        );
        let meaning = match at {
            Some(s) if s <= p => format!(
                "short polling every {} s costs fewer bytes a message than WebSocket (it would from every {} s)",
                sig3(p),
                sig3(s)
            ),
            Some(s) => format!(
                "short polling costs more bytes a message than WebSocket at every interval below {} s, so at {} s too",
                sig3(s),
                sig3(p)
            ),
            None => "short polling costs more bytes a message than WebSocket at any interval: a message in a poll's answer and its HTTP publish cost more than a frame".into(),
        };
        out.push(BreakEvenPoint {
            what: "bytes: short polling against WebSocket (poll interval)".into(),
            at,
            meaning,
            source: format!(
                "break-even model with a poll's {} B and {} B a delivery besides from {}",
                sig3(c),
                sig3(rest),
                key(r)
            ),
            reference: Some(key(r)),
        });
    }
    let (rtt, wait) = (w.rtt.as_secs_f64(), w.long_poll_wait.as_secs_f64());
    let at = long_poll_request_break_even(p, rtt, wait);
    let meaning = match at {
        Some(rate) if w.rate < rate => format!(
            "long polling makes fewer requests than short polling every {} s below {} msg/s a room; this room's {} is below it",
            sig3(p),
            sig3(rate),
            sig3(w.rate)
        ),
        Some(rate) => format!(
            "long polling makes more requests than short polling every {} s above {} msg/s a room; this room's {} is above it",
            sig3(p),
            sig3(rate),
            sig3(w.rate)
        ),
        None if p <= rtt => "short polling at an interval no longer than the round trip always makes more requests".into(),
        None => "short polling this seldom makes fewer requests at any rate: a long poll is re-sent at least every wait".into(),
    };
    out.push(BreakEvenPoint {
        what: "requests: long polling against short polling (room rate)".into(),
        at,
        meaning,
        source: format!(
            "model of the long poll's cycle (re-arm {} ms, wait {} s) against a poll every {} s",
            sig3(rtt * 1e3),
            sig3(wait),
            sig3(p)
        ),
        reference: None,
    });
    out
}

/// Where `w` lies outside every reference, a sentence per dimension.
fn outside(w: &Workload, refs: &[Reference]) -> Vec<String> {
    const SLACK: f64 = 1.5;
    let mut out = Vec::new();
    let mut check = |what: &str, value: f64, unit: &str, get: &dyn Fn(&Reference) -> f64| {
        let (lo, hi) = refs
            .iter()
            .fold((None::<&Reference>, None::<&Reference>), |(lo, hi), r| {
                let v = get(r);
                (
                    if lo.is_some_and(|l| get(l) <= v) {
                        lo
                    } else {
                        Some(r)
                    },
                    if hi.is_some_and(|h| get(h) >= v) {
                        hi
                    } else {
                        Some(r)
                    },
                )
            });
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return;
        };
        if value > get(hi) * SLACK {
            out.push(format!(
                "{what} {}{unit} is above the most any reference measured ({}{unit}, in {})",
                sig3(value),
                sig3(get(hi)),
                hi.run
            ));
        } else if value * SLACK < get(lo) {
            out.push(format!(
                "{what} {}{unit} is below the least any reference measured ({}{unit}, in {})",
                sig3(value),
                sig3(get(lo)),
                lo.run
            ));
        }
    };
    check("clients", w.clients as f64, "", &|r| r.clients as f64);
    check("room size", w.room_size(), "", &|r| r.room_size);
    check("rate", w.rate, " msg/s a room", &|r| r.room_rate);
    check("deliveries", w.deliveries_per_s(), "/s", &|r| {
        r.delivered_per_s
    });
    check("round trip", w.rtt.as_secs_f64() * 1e3, " ms", &|r| {
        r.rtt_s * 1e3
    });
    let lossy: Vec<Reference> = refs.iter().filter(|r| r.loss > 0.0).cloned().collect();
    if w.loss > 0.0 && lossy.is_empty() {
        out.push(format!(
            "loss {}%: no reference ran on a lossy link",
            sig3(w.loss * 100.0)
        ));
    } else if w.loss > 0.0 {
        let most = lossy.iter().map(|r| r.loss).fold(0.0, f64::max);
        if w.loss > most * SLACK {
            out.push(format!(
                "loss {}% is above the most any reference measured ({}%)",
                sig3(w.loss * 100.0),
                sig3(most * 100.0)
            ));
        }
    }
    out
}

/// The answer for `w` from `refs`.
pub fn advise(w: &Workload, refs: &[Reference]) -> Answer {
    let ests: Vec<Estimate> = TRANSPORTS
        .iter()
        .filter_map(|&t| estimate(w, t, refs))
        .collect();
    let unmeasured = TRANSPORTS
        .iter()
        .copied()
        .filter(|t| !ests.iter().any(|e| e.transport == *t))
        .collect();
    let mut transports: Vec<Verdict> = ests
        .iter()
        .map(|e| {
            let breaks = breaks(w, e);
            Verdict {
                estimate: e.clone(),
                fits: breaks.is_empty(),
                breaks,
            }
        })
        .collect();
    let rank = |v: &Verdict| -> (f64, f64) {
        let cpu = v
            .estimate
            .server_cpu_cores
            .as_ref()
            .map_or(f64::MAX, |c| c.value);
        let primary = if w.mobile {
            v.estimate
                .radio
                .as_ref()
                .map_or(f64::MAX, |r| r.j_per_client_hour)
        } else {
            cpu
        };
        (primary, v.estimate.bytes_per_msg.value)
    };
    let mut ranked: Vec<&Verdict> = transports.iter().filter(|v| v.fits).collect();
    ranked.sort_by(|a, b| {
        rank(a)
            .partial_cmp(&rank(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let fit = ranked.iter().map(|v| v.estimate.transport).collect();
    let order = if w.mobile {
        "least radio energy per client-hour first, then fewest bytes a message"
    } else {
        "least server CPU first, then fewest bytes a message"
    };
    transports.sort_by_key(|v| TRANSPORTS.iter().position(|t| *t == v.estimate.transport));
    let break_evens = break_evens(w, refs, &ests);
    // Cited in the order the figures name them.
    let keys = sources(&transports)
        .into_iter()
        .filter_map(|(_, f)| f.reference.clone())
        .chain(break_evens.iter().filter_map(|b| b.reference.clone()));
    let mut references: Vec<Cited> = Vec::new();
    for k in keys {
        if references.iter().any(|c| c.key == k) {
            continue;
        }
        if let Some(r) = refs.iter().find(|r| key(r) == k) {
            references.push(Cited {
                key: k,
                ran: describe(r),
            });
        }
    }
    Answer {
        schema: SCHEMA,
        workload: w.clone(),
        fit,
        order: order.into(),
        transports,
        unmeasured,
        break_evens,
        outside: outside(w, refs),
        references,
    }
}

/// Every figure's name, source and reference, transport by transport.
fn sources(vs: &[Verdict]) -> Vec<(String, &Figure)> {
    let mut out = Vec::new();
    for v in vs {
        let e = &v.estimate;
        let t = e.transport.as_str();
        out.push((format!("{t} p50"), &e.p50_ms));
        out.push((format!("{t} p99"), &e.p99_ms));
        out.push((format!("{t} bytes"), &e.bytes_per_msg));
        out.push((format!("{t} requests"), &e.requests_per_msg));
        let optional = [
            ("server CPU", &e.server_cpu_cores),
            ("memory/connection", &e.memory_per_connection_kib),
            ("server memory", &e.server_memory_mib),
        ];
        for (name, f) in optional {
            if let Some(f) = f {
                out.push((format!("{t} {name}"), f));
            }
        }
        if let Some(m) = e.radio.as_ref().and_then(|r| r.measured.as_ref()) {
            out.push((format!("{t} radio, measured"), m));
        }
    }
    out
}

/// `source` with its reference's key replaced by its `[n]` in `refs`.
fn cite(source: &str, reference: Option<&String>, refs: &[Cited]) -> String {
    match reference.and_then(|k| refs.iter().position(|c| &c.key == k)) {
        Some(i) => source.replace(&refs[i].key, &format!("[{}]", i + 1)),
        None => source.to_owned(),
    }
}

/// The answer as text for a terminal: the workload, the verdict, a table
/// of figures, where each came from, and the break-even points.
pub fn text(a: &Answer) -> String {
    let w = &a.workload;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Workload: {} clients in {} rooms of {}, {} msg/s a room ({} deliveries/s), rtt {} ms, loss {}%{}",
        sig3(w.clients as f64),
        sig3(w.rooms as f64),
        sig3(w.room_size()),
        sig3(w.rate),
        sig3(w.deliveries_per_s()),
        sig3(w.rtt.as_secs_f64() * 1e3),
        sig3(w.loss * 100.0),
        if w.mobile { ", on phones (LTE)" } else { "" }
    );
    let _ = writeln!(
        s,
        "Settings: short polls every {} s, long polls wait {} s, SSE keep-alive {} s, WebSocket ping {} s\n",
        sig3(w.poll_interval.as_secs_f64()),
        sig3(w.long_poll_wait.as_secs_f64()),
        sig3(w.sse_keepalive.as_secs_f64()),
        sig3(w.ws_ping.as_secs_f64())
    );
    if a.fit.is_empty() {
        let _ = writeln!(s, "Answer: no transport fits the limits.");
    } else {
        let names: Vec<&str> = a.fit.iter().map(|t| t.as_str()).collect();
        let _ = writeln!(s, "Answer: {} fit; {}.", names.join(", "), a.order);
    }
    for v in a.transports.iter().filter(|v| !v.fits) {
        let _ = writeln!(
            s,
            "  {} does not fit: {}.",
            v.estimate.transport,
            v.breaks.join("; ")
        );
    }
    for t in &a.unmeasured {
        let _ = writeln!(s, "  {t}: no reference measured it.");
    }
    if !a.outside.is_empty() {
        let _ = writeln!(
            s,
            "\nOutside what was measured (these figures are extrapolated):"
        );
        for o in &a.outside {
            let _ = writeln!(s, "  - {o}");
        }
    }
    if !a.transports.is_empty() {
        s.push('\n');
        table(&mut s, a);
    }
    let _ = writeln!(s, "\nBreak-even points:");
    for b in &a.break_evens {
        let _ = writeln!(s, "  - {}: {}.", b.what, b.meaning);
    }
    let _ = writeln!(s, "\nWhere each figure comes from:");
    for v in &a.transports {
        for (name, f) in sources(std::slice::from_ref(v)) {
            let _ = writeln!(
                s,
                "  {name}: {}",
                cite(&f.source, f.reference.as_ref(), &a.references)
            );
        }
        if let Some(r) = &v.estimate.radio {
            let _ = writeln!(s, "  {} radio: {}", v.estimate.transport, r.source);
        }
    }
    for b in &a.break_evens {
        let _ = writeln!(
            s,
            "  break-even, {}: {}",
            b.what,
            cite(&b.source, b.reference.as_ref(), &a.references)
        );
    }
    let _ = writeln!(s, "\nReferences:");
    for (i, c) in a.references.iter().enumerate() {
        let _ = writeln!(s, "  [{}] {} ({})", i + 1, c.key, c.ran);
    }
    s
}

fn table(s: &mut String, a: &Answer) {
    let mobile = a.workload.mobile;
    let mut rows = vec![vec![
        "".to_owned(),
        "p50".into(),
        "p99".into(),
        "bytes/msg".into(),
        "requests/msg".into(),
        "server CPU".into(),
        "memory/conn".into(),
        "server memory".into(),
    ]];
    if mobile {
        rows[0].extend(["radio J/h".into(), "radio on".into()]);
    }
    let opt = |f: &Option<Figure>, unit: &str| {
        f.as_ref()
            .map_or("-".to_owned(), |f| format!("{}{unit}", sig3(f.value)))
    };
    for v in &a.transports {
        let e = &v.estimate;
        let mut row = vec![
            e.transport.as_str().to_owned(),
            format!("{} ms", sig3(e.p50_ms.value)),
            format!("{} ms", sig3(e.p99_ms.value)),
            sig3(e.bytes_per_msg.value),
            sig3(e.requests_per_msg.value),
            opt(&e.server_cpu_cores, " cores"),
            opt(&e.memory_per_connection_kib, " KiB"),
            opt(&e.server_memory_mib, " MiB"),
        ];
        if let Some(r) = e.radio.as_ref().filter(|_| mobile) {
            row.push(sig3(r.j_per_client_hour));
            row.push(format!("{}%", sig3(r.on_share * 100.0)));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |x| x.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
}
