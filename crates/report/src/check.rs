//! `chatbench check`: evaluates a run's `[[expect]]` rules.

use chatbench_results::rules::{Metric, Rule, RuleKind};
use chatbench_results::run_file::{RunFile, TransportSummary};
use chatbench_results::Transport;
use std::fmt::Write;

/// One evaluated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The rule in words.
    pub rule: String,
    /// The measured values.
    pub measured: String,
    /// Whether it held.
    pub pass: bool,
}

/// The value of `m` for one transport: the median over repetitions, or for
/// audit counters the sum.
pub fn value(s: &TransportSummary, m: Metric) -> Option<f64> {
    Some(match m {
        Metric::P50Latency => s.p50_us.median,
        Metric::P90Latency => s.p90_us.median,
        Metric::P99Latency => s.p99_us.median,
        Metric::P999Latency => s.p999_us.median,
        Metric::MaxLatency => s.max_us.median,
        Metric::BytesPerMsg => s.bytes_per_msg.median,
        Metric::BytesUpPerMsg => s.bytes_up_per_msg.median,
        Metric::BytesDownPerMsg => s.bytes_down_per_msg.median,
        Metric::RequestsPerMsg => s.requests_per_msg.median,
        Metric::SegmentsPerMsg => s.segments_per_msg.median,
        Metric::DeliveredPerS => s.delivered_per_s.median,
        Metric::ServerCpuMsPer1k => s.server_cpu_ms_per_1k?.median,
        Metric::RssPerConnection => s.rss_per_connection?.median,
        Metric::P50ModelError => s.p50_model_error()?,
        Metric::BytesPerDrop => s.bytes_per_drop?.median,
        Metric::HandshakesPerDrop => s.handshakes_per_drop?.median,
        Metric::AwayP50Latency => s.away_p50_us?.median,
        Metric::Lost => s.lost as f64,
        Metric::Duplicated => s.duplicated as f64,
        Metric::Reordered => s.reordered as f64,
        Metric::Errors => s.errors as f64,
    })
}

fn show(m: Metric, v: f64) -> String {
    if m.is_latency() {
        if v >= 1_000_000.0 {
            format!("{:.2}s", v / 1e6)
        } else if v >= 1000.0 {
            format!("{:.1}ms", v / 1000.0)
        } else {
            format!("{v:.0}µs")
        }
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn bounds_text(m: Metric, min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("between {} and {}", show(m, a), show(m, b)),
        (Some(a), None) => format!(">= {}", show(m, a)),
        (None, Some(b)) => format!("<= {}", show(m, b)),
        (None, None) => String::new(),
    }
}

fn within(v: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|a| v >= a) && max.is_none_or(|b| v <= b)
}

/// A rule in a run's scenario that cannot be evaluated (run folders written
/// by hand or by another version; scenario loading refuses bad rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expect[{index}].{field}: {message}")]
pub struct RuleError {
    /// Which `[[expect]]` table, from 0.
    pub index: usize,
    /// The field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Evaluates every rule of the run's scenario. A rule about a transport or a
/// figure the run lacks fails.
pub fn check(run: &RunFile) -> Result<Vec<Verdict>, RuleError> {
    let mut out = Vec::new();
    // With a sweep, every rule is checked at every point.
    for point in 0..run.scenario.points() {
        let prefix = run
            .scenario
            .point_label(point)
            .map(|v| {
                format!(
                    "[{} = {v}] ",
                    run.scenario
                        .sweep
                        .as_ref()
                        .map_or("", |s| s.parameter.as_str())
                )
            })
            .unwrap_or_default();
        for mut v in check_point(run, point)? {
            v.rule = format!("{prefix}{}", v.rule);
            out.push(v);
        }
    }
    Ok(out)
}

fn check_point(run: &RunFile, point: usize) -> Result<Vec<Verdict>, RuleError> {
    let get = |t: Transport| run.at_point(point).find(|s| s.transport == t);
    let mut out = Vec::new();
    for (i, table) in run.scenario.expect.iter().enumerate() {
        let bad = |(field, message)| RuleError {
            index: i,
            field,
            message,
        };
        let rule = Rule::from_table(table).map_err(bad)?;
        let kind = rule.kind().map_err(bad)?;
        let m = rule.metric;
        let name = m.as_str();
        let v = |t: Transport| get(t).and_then(|s| value(s, m));
        let verdict = match kind {
            RuleKind::Order(order) => {
                let vals: Vec<Option<f64>> = order.iter().map(|t| v(*t)).collect();
                let pass = vals.iter().all(Option::is_some)
                    && vals
                        .windows(2)
                        .all(|w| w[0].unwrap_or(f64::NAN) < w[1].unwrap_or(f64::NAN));
                Verdict {
                    rule: format!(
                        "{name}: {}",
                        order
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(" < ")
                    ),
                    measured: order
                        .iter()
                        .zip(&vals)
                        .map(|(t, x)| format!("{t} {}", x.map_or("n/a".into(), |x| show(m, x))))
                        .collect::<Vec<_>>()
                        .join(", "),
                    pass,
                }
            }
            RuleKind::Bounds(t, min, max) => {
                let ts: Vec<Transport> = match t {
                    Some(t) => vec![t],
                    None => run.at_point(point).map(|s| s.transport).collect(),
                };
                let vals: Vec<Option<f64>> = ts.iter().map(|t| v(*t)).collect();
                Verdict {
                    rule: format!(
                        "{name} {} for {}",
                        bounds_text(m, min, max),
                        t.map_or("every transport".into(), |t| t.to_string())
                    ),
                    measured: ts
                        .iter()
                        .zip(&vals)
                        .map(|(t, x)| format!("{t} {}", x.map_or("n/a".into(), |x| show(m, x))))
                        .collect::<Vec<_>>()
                        .join(", "),
                    pass: !vals.is_empty()
                        && vals.iter().all(|x| x.is_some_and(|x| within(x, min, max))),
                }
            }
            RuleKind::Ratio(a, b, min, max) => {
                let r = match (v(a), v(b)) {
                    (Some(x), Some(y)) if y != 0.0 => Some(x / y),
                    (Some(x), Some(_)) if x > 0.0 => Some(f64::INFINITY),
                    _ => None,
                };
                let fmt = |x: Option<f64>| x.map_or("n/a".into(), |x| show(m, x));
                Verdict {
                    rule: format!(
                        "{a}.{name} / {b}.{name} {}",
                        match (min, max) {
                            (Some(x), Some(y)) => format!("between {x} and {y}"),
                            (Some(x), None) => format!(">= {x}"),
                            (None, Some(y)) => format!("<= {y}"),
                            (None, None) => String::new(),
                        }
                    ),
                    measured: format!(
                        "{} / {} = {}",
                        fmt(v(a)),
                        fmt(v(b)),
                        r.map_or("n/a".into(), |r| format!("{r:.2}"))
                    ),
                    pass: r.is_some_and(|r| within(r, min, max)),
                }
            }
        };
        out.push(verdict);
    }
    Ok(out)
}

/// "Nothing lost, duplicated or cut short": over every transport run (each
/// repetition and sweep point), lost = 0, duplicated = 0, and complete.
pub fn no_loss(run: &RunFile) -> Verdict {
    let bad: Vec<String> = run
        .runs
        .iter()
        .filter(|r| r.audit.lost > 0 || r.audit.duplicated > 0 || !r.complete)
        .map(|r| {
            format!(
                "{} rep {}{}: lost {}, duplicated {}{}",
                r.transport,
                r.repetition + 1,
                run.scenario
                    .point_label(r.point)
                    .map(|v| format!(" @ {v}"))
                    .unwrap_or_default(),
                r.audit.lost,
                r.audit.duplicated,
                if r.complete { "" } else { ", incomplete" }
            )
        })
        .collect();
    Verdict {
        rule: "no message lost or duplicated, every run complete".into(),
        measured: if bad.is_empty() {
            format!("{} transport runs clean", run.runs.len())
        } else {
            bad.join("; ")
        },
        pass: bad.is_empty() && !run.runs.is_empty(),
    }
}

/// The verdicts as text, one line each.
pub fn render(verdicts: &[Verdict]) -> String {
    let mut o = String::new();
    for v in verdicts {
        let _ = writeln!(
            o,
            "{}  {}  ({})",
            if v.pass { "PASS" } else { "FAIL" },
            v.rule,
            v.measured
        );
    }
    let failed = verdicts.iter().filter(|v| !v.pass).count();
    let _ = writeln!(o, "{} passed, {} failed", verdicts.len() - failed, failed);
    o
}
