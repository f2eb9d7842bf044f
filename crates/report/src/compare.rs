//! `chatbench compare A B`: the same transports of two runs side by side.

use crate::check::value;
use chatbench_results::rules::Metric;
use chatbench_results::run_file::RunFile;
use std::fmt::Write;

/// Ratios outside `[1/STANDS_OUT, STANDS_OUT]` are marked.
pub const STANDS_OUT: f64 = 1.25;

/// One metric of one transport in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Transport.
    pub transport: chatbench_results::Transport,
    /// Metric.
    pub metric: Metric,
    /// Value in run A.
    pub a: Option<f64>,
    /// Value in run B.
    pub b: Option<f64>,
    /// `b / a`, when both are known and `a` is not zero.
    pub ratio: Option<f64>,
    /// The change stands out.
    pub stands_out: bool,
}

const METRICS: [Metric; 10] = [
    Metric::P50Latency,
    Metric::P99Latency,
    Metric::P999Latency,
    Metric::BytesPerMsg,
    Metric::RequestsPerMsg,
    Metric::SegmentsPerMsg,
    Metric::ServerCpuMsPer1k,
    Metric::RssPerConnection,
    Metric::DeliveredPerS,
    Metric::Lost,
];

/// Compares every transport present in both runs.
pub fn compare(a: &RunFile, b: &RunFile) -> Vec<Row> {
    let mut rows = Vec::new();
    for sa in &a.summary {
        let Some(sb) = b
            .summary
            .iter()
            .find(|s| s.transport == sa.transport && s.point == sa.point)
        else {
            continue;
        };
        for m in METRICS {
            let (va, vb) = (value(sa, m), value(sb, m));
            let ratio = match (va, vb) {
                (Some(x), Some(y)) if x != 0.0 => Some(y / x),
                _ => None,
            };
            let stands_out = match (va, vb, ratio) {
                (_, _, Some(r)) => !(1.0 / STANDS_OUT..=STANDS_OUT).contains(&r),
                (Some(x), Some(y), None) => x != y,
                _ => false,
            };
            rows.push(Row {
                transport: sa.transport,
                metric: m,
                a: va,
                b: vb,
                ratio,
                stands_out,
            });
        }
    }
    rows
}

/// The comparison as a text table.
pub fn render(a: &RunFile, b: &RunFile, rows: &[Row]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "A: {} ({}, commit {})",
        a.run_id,
        a.scenario.name,
        short(&a.environment.commit)
    );
    let _ = writeln!(
        o,
        "B: {} ({}, commit {})",
        b.run_id,
        b.scenario.name,
        short(&b.environment.commit)
    );
    if a.scenario != b.scenario {
        let _ = writeln!(o, "note: the two runs used different scenario settings");
    }
    let _ = writeln!(
        o,
        "{:<11} {:<20} {:>12} {:>12} {:>8}",
        "transport", "metric", "A", "B", "B/A"
    );
    for r in rows {
        let f = |x: Option<f64>| {
            x.map_or("n/a".into(), |x| {
                if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    format!("{x:.3}")
                }
            })
        };
        let _ = writeln!(
            o,
            "{:<11} {:<20} {:>12} {:>12} {:>8}{}",
            r.transport.as_str(),
            r.metric.as_str(),
            f(r.a),
            f(r.b),
            r.ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
            if r.stands_out { "  <-- changed" } else { "" }
        );
    }
    let n = rows.iter().filter(|r| r.stands_out).count();
    let _ = writeln!(o, "{n} change(s) beyond x{STANDS_OUT} either way");
    o
}

fn short(c: &str) -> &str {
    &c[..c.len().min(10)]
}
