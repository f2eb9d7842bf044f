//! `chatbench compare A B`: the same transports of two runs side by side,
//! each change judged against the spread over repetitions, so it can gate
//! CI (`--fail-on regression`).
//!
//! A metric changed when the two runs' values differ beyond the noise: with
//! at least [`RANK_TEST_MIN`] repetitions on each side, by a two-sided
//! Mann-Whitney rank test at p < 0.05; with fewer, when the ranges over
//! repetitions do not overlap. Either way the medians must also differ by
//! more than the minimum change (`--min-change`, default 10%) and by more
//! than the measurement's precision (CPU: 10 ms ticks in older runs). A lost
//! message is never noise.

use chatbench_results::fmt::fmt_us;
use chatbench_results::rules::Metric;
use chatbench_results::run_file::{RunFile, TransportRun};
use chatbench_results::Transport;
use serde::Serialize;
use std::fmt::Write;

/// Repetitions per side from which the rank test replaces range overlap.
pub const RANK_TEST_MIN: usize = 5;

/// The minimum relative change that counts, unless told otherwise.
pub const DEFAULT_MIN_CHANGE: f64 = 0.10;

/// What happened to a metric from A to B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No change beyond the noise.
    Same,
    /// Changed, in the good direction.
    Better,
    /// Changed, in the bad direction.
    Worse,
    /// One side has no figure.
    Unknown,
}

/// One metric of one transport in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Transport.
    pub transport: Transport,
    /// Sweep point.
    pub point: usize,
    /// Metric.
    pub metric: Metric,
    /// Median over A's repetitions.
    pub a: Option<f64>,
    /// Median over B's repetitions.
    pub b: Option<f64>,
    /// `b / a`, when both are known and `a` is not zero.
    pub ratio: Option<f64>,
    /// Repetitions on each side.
    pub repetitions: (usize, usize),
    /// How the change was judged: `rank test p=…`, `ranges overlap`, …
    pub test: String,
    /// The judgement.
    pub verdict: Verdict,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Run A's id.
    pub a: String,
    /// Run B's id.
    pub b: String,
    /// Differences between the runs that make the comparison weaker:
    /// machines, builds, scenarios.
    pub warnings: Vec<String>,
    /// The minimum relative change that counted.
    pub min_change: f64,
    /// Every metric of every transport and point in both runs.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Rows that got worse.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Worse)
    }
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

/// True when more of `m` is better.
fn higher_is_better(m: Metric) -> bool {
    m == Metric::DeliveredPerS
}

/// One repetition's figure for `m`.
pub fn run_value(r: &TransportRun, m: Metric) -> Option<f64> {
    Some(match m {
        Metric::P50Latency => r.latency_us.p50 as f64,
        Metric::P90Latency => r.latency_us.p90 as f64,
        Metric::P99Latency => r.latency_us.p99 as f64,
        Metric::P999Latency => r.latency_us.p999 as f64,
        Metric::MaxLatency => r.latency_us.max as f64,
        Metric::BytesPerMsg => r.wire.per_msg.bytes,
        Metric::BytesUpPerMsg => r.wire.per_msg.bytes_up,
        Metric::BytesDownPerMsg => r.wire.per_msg.bytes_down,
        Metric::RequestsPerMsg => r.wire.per_msg.requests,
        Metric::SegmentsPerMsg => r.wire.per_msg.segments,
        Metric::DeliveredPerS => r.audit.delivered as f64 / r.measured_seconds.max(1e-9),
        Metric::ServerCpuMsPer1k => r.server.as_ref()?.cpu_ms_per_1k_msgs,
        Metric::RssPerConnection => r.server.as_ref()?.rss_per_connection,
        // A property of the summary against the scenario, not compared
        // between runs.
        Metric::P50ModelError => return None,
        Metric::BytesPerDrop => r.drops?.bytes_per_drop,
        Metric::HandshakesPerDrop => r.drops?.handshakes_per_drop,
        Metric::AwayP50Latency => {
            r.drops
                .filter(|d| d.away_latency_us.count > 0)?
                .away_latency_us
                .p50 as f64
        }
        Metric::Lost => r.audit.lost as f64,
        Metric::Duplicated => r.audit.duplicated as f64,
        Metric::Reordered => r.audit.reordered as f64,
        Metric::Errors => r.audit.errors as f64,
    })
}

/// The precision of one repetition's figure, in the metric's unit: CPU per
/// 1,000 messages from 10 ms ticks is only good to 10 ms × 1000 / delivered.
fn precision(r: &TransportRun, m: Metric) -> f64 {
    match (m, &r.server) {
        (Metric::ServerCpuMsPer1k, Some(s)) => {
            let p = if s.cpu_precision_ms > 0.0 {
                s.cpu_precision_ms
            } else {
                10.0
            };
            // Two readings, each off by up to one step.
            2.0 * p * 1000.0 / r.audit.delivered.max(1) as f64
        }
        _ => 0.0,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Two-sided p-value of the Mann-Whitney U test (normal approximation with
/// tie correction; fine from about 5 values a side).
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|&x| (x, 0))
        .chain(b.iter().map(|&x| (x, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in ranks.iter_mut().take(j + 1).skip(i) {
            *k = r;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| x.1 == 0)
        .map(|(_, r)| r)
        .sum();
    let u = r1 - n1 * (n1 + 1.0) / 2.0;
    let nn = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = (u - n1 * n2 / 2.0).abs() / var.sqrt();
    erfc(z / std::f64::consts::SQRT_2).min(1.0)
}

/// The complementary error function (Numerical Recipes' erfcc, |error| <
/// 1.2e-7), for the rank test's p-value.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Judges one metric from the repetitions' values.
fn judge(m: Metric, a: &[f64], b: &[f64], prec: f64, min_change: f64) -> (Verdict, String) {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    let (ma, mb) = (median(&mut a), median(&mut b));
    let direction = |worse: bool| {
        if worse {
            Verdict::Worse
        } else {
            Verdict::Better
        }
    };
    let worse = if higher_is_better(m) {
        mb < ma
    } else {
        mb > ma
    };
    if m == Metric::Lost {
        return if ma == mb {
            (Verdict::Same, "exact".into())
        } else {
            (
                direction(worse),
                "exact: a lost message is never noise".into(),
            )
        };
    }
    let diff = (mb - ma).abs();
    if diff == 0.0 {
        return (Verdict::Same, "identical".into());
    }
    if diff <= prec {
        return (Verdict::Same, format!("within the precision ({prec:.3})"));
    }
    let rel = if ma != 0.0 {
        diff / ma.abs()
    } else {
        f64::INFINITY
    };
    let (beyond_noise, test) = if a.len() >= RANK_TEST_MIN && b.len() >= RANK_TEST_MIN {
        let p = mann_whitney_p(&a, &b);
        (p < 0.05, format!("rank test p={p:.3}"))
    } else {
        let (a0, a1) = (a[0], a[a.len() - 1]);
        let (b0, b1) = (b[0], b[b.len() - 1]);
        let apart = b0 > a1 || a0 > b1;
        let n = a.len().min(b.len());
        let what = if apart {
            "ranges apart"
        } else {
            "ranges overlap"
        };
        let test = if n == 1 {
            format!("{what} (1 repetition: no spread to judge by)")
        } else {
            what.to_owned()
        };
        (apart, test)
    };
    if !beyond_noise {
        return (Verdict::Same, test);
    }
    if rel <= min_change {
        return (
            Verdict::Same,
            format!("{test}, but within {:.0}%", min_change * 100.0),
        );
    }
    (direction(worse), test)
}

/// One transport's repetitions at one sweep point.
fn runs_of(f: &RunFile, t: Transport, point: usize) -> impl Iterator<Item = &TransportRun> {
    f.runs
        .iter()
        .filter(move |r| r.transport == t && r.point == point)
}

/// One metric's figure in each of those repetitions.
fn values(f: &RunFile, t: Transport, point: usize, m: Metric) -> Vec<f64> {
    runs_of(f, t, point)
        .filter_map(|r| run_value(r, m))
        .collect()
}

/// Compares every transport and point present in both runs.
pub fn compare(a: &RunFile, b: &RunFile, min_change: f64) -> Comparison {
    let mut rows = Vec::new();
    for sa in &a.summary {
        if !b
            .summary
            .iter()
            .any(|s| s.transport == sa.transport && s.point == sa.point)
        {
            continue;
        }
        for m in METRICS {
            let (va, vb) = (
                values(a, sa.transport, sa.point, m),
                values(b, sa.transport, sa.point, m),
            );
            let prec = runs_of(a, sa.transport, sa.point)
                .chain(runs_of(b, sa.transport, sa.point))
                .map(|r| precision(r, m))
                .fold(0.0, f64::max);
            let (mut sa_, mut sb_) = (va.clone(), vb.clone());
            let (ma, mb) = (
                (!va.is_empty()).then(|| median(&mut sa_)),
                (!vb.is_empty()).then(|| median(&mut sb_)),
            );
            let (verdict, test) = if va.is_empty() || vb.is_empty() {
                (Verdict::Unknown, "no figure".into())
            } else {
                judge(m, &va, &vb, prec, min_change)
            };
            rows.push(Row {
                transport: sa.transport,
                point: sa.point,
                metric: m,
                a: ma,
                b: mb,
                ratio: match (ma, mb) {
                    (Some(x), Some(y)) if x != 0.0 => Some(y / x),
                    _ => None,
                },
                repetitions: (va.len(), vb.len()),
                test,
                verdict,
            });
        }
    }
    Comparison {
        a: a.run_id.clone(),
        b: b.run_id.clone(),
        warnings: warnings(a, b),
        min_change,
        rows,
    }
}

fn warnings(a: &RunFile, b: &RunFile) -> Vec<String> {
    let (ea, eb) = (&a.environment, &b.environment);
    let mut w = Vec::new();
    // MemTotal moves by a few MB between boots of one machine type.
    let memory_differs = (ea.memory_bytes as f64 - eb.memory_bytes as f64).abs()
        > 0.02 * ea.memory_bytes.max(eb.memory_bytes) as f64;
    if (&ea.cpu_model, ea.cpus) != (&eb.cpu_model, eb.cpus) || memory_differs {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        w.push(format!(
            "different machines: A ran on {} × {} with {:.1} GiB, B on {} × {} with {:.1} GiB",
            ea.cpus,
            ea.cpu_model,
            gib(ea.memory_bytes),
            eb.cpus,
            eb.cpu_model,
            gib(eb.memory_bytes)
        ));
    }
    if ea.kernel != eb.kernel {
        w.push(format!(
            "different kernels: {} and {}",
            ea.kernel, eb.kernel
        ));
    }
    if ea.commit != eb.commit || ea.dirty || eb.dirty {
        w.push(format!(
            "different builds: commit {}{} and {}{}",
            short(&ea.commit),
            if ea.dirty { " (dirty)" } else { "" },
            short(&eb.commit),
            if eb.dirty { " (dirty)" } else { "" }
        ));
    }
    if a.scenario != b.scenario {
        w.push(if a.scenario.name != b.scenario.name {
            format!(
                "different scenarios: {} and {}",
                a.scenario.name, b.scenario.name
            )
        } else {
            format!(
                "scenario {} has different settings in the two runs",
                a.scenario.name
            )
        });
    }
    if (&a.cpus.server, &a.cpus.loadgen) != (&b.cpus.server, &b.cpus.loadgen) {
        w.push("different CPU placement of server and load generator".into());
    }
    if a.cpus.awake != b.cpus.awake {
        let held = |r: &RunFile| {
            if r.cpus.awake {
                "held awake"
            } else {
                "free to idle"
            }
        };
        w.push(format!(
            "CPUs {} in A and {} in B (--hold-cpus-awake): latency at low load differs by the wake-up from idle",
            held(a),
            held(b)
        ));
    }
    w
}

/// A figure in the metric's unit, for people.
pub fn show(m: Metric, v: f64) -> String {
    match m {
        m if m.is_latency() => fmt_us(v.round() as u64),
        Metric::BytesPerMsg | Metric::BytesUpPerMsg | Metric::BytesDownPerMsg => {
            format!("{v:.0} B")
        }
        Metric::RssPerConnection => format!("{:.1} KiB", v / 1024.0),
        Metric::ServerCpuMsPer1k => format!("{v:.2} ms"),
        Metric::DeliveredPerS => format!("{v:.0}/s"),
        Metric::RequestsPerMsg | Metric::SegmentsPerMsg => format!("{v:.3}"),
        _ => format!("{v:.0}"),
    }
}

/// The comparison as a text table.
pub fn render(a: &RunFile, b: &RunFile, c: &Comparison) -> String {
    let mut o = String::new();
    for (tag, r) in [("A", a), ("B", b)] {
        let _ = writeln!(
            o,
            "{tag}: {} ({}, commit {}, {} repetition{})",
            r.run_id,
            r.scenario.name,
            short(&r.environment.commit),
            r.scenario.repeat,
            if r.scenario.repeat == 1 { "" } else { "s" }
        );
    }
    for w in &c.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    let _ = writeln!(
        o,
        "{:<11} {:<22} {:>10} {:>10} {:>6}  {:<7} how judged",
        "transport", "metric", "A", "B", "B/A", "verdict"
    );
    for r in &c.rows {
        let f = |x: Option<f64>| x.map_or("n/a".into(), |x| show(r.metric, x));
        let label = match a.scenario.point_label(r.point) {
            Some(p) => format!("{} @{p}", r.transport),
            None => r.transport.to_string(),
        };
        let _ = writeln!(
            o,
            "{:<11} {:<22} {:>10} {:>10} {:>6}  {:<7} {}",
            label,
            r.metric.as_str(),
            f(r.a),
            f(r.b),
            r.ratio.map_or("n/a".into(), |x| format!("{x:.2}")),
            match r.verdict {
                Verdict::Same => "same",
                Verdict::Better => "BETTER",
                Verdict::Worse => "WORSE",
                Verdict::Unknown => "n/a",
            },
            r.test
        );
    }
    let worse = c.regressions().count();
    let better = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Better)
        .count();
    let _ = writeln!(
        o,
        "{worse} worse, {better} better beyond the noise (minimum change {:.0}%)",
        c.min_change * 100.0
    );
    o
}

/// The figures CI guards (`--fail-on drift`): those that do not depend on
/// the machine's speed, each with how far it may move either way from the
/// committed reference. Bytes and requests per message follow from the
/// seeded schedule and the protocol; only timing (a long poll that happens
/// to carry two messages, a message at the window's edge) moves them, by
/// 0.05% between the committed ci runs of one commit, so 2% catches a
/// 10-byte change in every long poll's answer. Memory per idle connection
/// comes in steps of the allocator's extents, hence 30%.
pub const GUARDED: [(Metric, f64); 3] = [
    (Metric::BytesPerMsg, 0.02),
    (Metric::RequestsPerMsg, 0.02),
    (Metric::RssPerConnection, 0.30),
];

/// A guarded figure that moved beyond its tolerance, or is missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// Transport.
    pub transport: Transport,
    /// Sweep point.
    pub point: usize,
    /// The sweep point's label (`h2+tls`, `rooms=50`), in a sweep.
    pub point_label: Option<String>,
    /// Metric.
    pub metric: Metric,
    /// The reference's median; None when the reference has no figure.
    pub reference: Option<f64>,
    /// The new run's median; None when it has no figure.
    pub now: Option<f64>,
    /// The relative change allowed either way.
    pub tolerance: f64,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |x: Option<f64>| x.map_or("no figure".into(), |x| show(self.metric, x));
        let at = self
            .point_label
            .as_ref()
            .map_or(String::new(), |p| format!(" @{p}"));
        write!(
            f,
            "{}{at} {}: {} in the reference, {} now",
            self.transport,
            self.metric.as_str(),
            shown(self.reference),
            shown(self.now)
        )?;
        if let (Some(a), Some(b)) = (self.reference, self.now) {
            if a != 0.0 {
                write!(f, " ({:+.1}%", (b / a - 1.0) * 100.0)?;
            } else {
                write!(f, " (from zero")?;
            }
            write!(f, "; allowed ±{:.0}%)", self.tolerance * 100.0)?;
        }
        Ok(())
    }
}

/// The guarded figures of `now` that moved beyond [`GUARDED`]'s tolerance
/// from `reference`, both directions, or that one side lacks (a transport
/// or point missing from either run counts), read from their comparison
/// `c` (`compare(reference, now, ..)`). An error when the two runs are not
/// of the same scenario settings: then nothing is comparable, and a
/// changed scenario needs a new reference.
pub fn drift(reference: &RunFile, now: &RunFile, c: &Comparison) -> Result<Vec<Drift>, String> {
    if reference.scenario != now.scenario {
        return Err(format!(
            "the reference is of scenario {} and the new run of {}{}: commit a new reference with the changed scenario",
            reference.scenario.name,
            now.scenario.name,
            if reference.scenario.name == now.scenario.name {
                " with other settings"
            } else {
                ""
            }
        ));
    }
    let drift = |transport, point, metric, a: Option<f64>, b: Option<f64>, tolerance: f64| {
        let moved = match (a, b) {
            (Some(0.0), Some(b)) => b != 0.0,
            (Some(a), Some(b)) => (b / a - 1.0).abs() > tolerance,
            (None, None) => false,
            _ => true,
        };
        moved.then(|| Drift {
            transport,
            point,
            point_label: now.scenario.point_label(point),
            metric,
            reference: a,
            now: b,
            tolerance,
        })
    };
    // What both runs have, as the comparison judged it.
    let mut out: Vec<Drift> = c
        .rows
        .iter()
        .filter_map(|r| {
            let (_, tolerance) = GUARDED.iter().find(|(m, _)| *m == r.metric)?;
            drift(r.transport, r.point, r.metric, r.a, r.b, *tolerance)
        })
        .collect();
    // What only one run has: the comparison leaves it out.
    let keys = |r: &RunFile| -> Vec<(Transport, usize)> {
        r.summary.iter().map(|s| (s.transport, s.point)).collect()
    };
    let (kr, kn) = (keys(reference), keys(now));
    let one_sided = kr
        .iter()
        .filter(|k| !kn.contains(k))
        .chain(kn.iter().filter(|k| !kr.contains(k)));
    for &(t, p) in one_sided {
        for (m, tolerance) in GUARDED {
            let median_of = |f: &RunFile| {
                let mut v = values(f, t, p, m);
                (!v.is_empty()).then(|| median(&mut v))
            };
            out.extend(drift(
                t,
                p,
                m,
                median_of(reference),
                median_of(now),
                tolerance,
            ));
        }
    }
    Ok(out)
}

fn short(c: &str) -> &str {
    &c[..c.len().min(10)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(a: &RunFile, b: &RunFile) -> Result<Vec<Drift>, String> {
        drift(a, b, &compare(a, b, DEFAULT_MIN_CHANGE))
    }

    fn fixture() -> RunFile {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-a");
        RunFile::read(&dir).unwrap()
    }

    #[test]
    fn drift_names_each_guarded_figure_that_moved_either_way() {
        let reference = fixture();
        assert_eq!(guard(&reference, &reference).unwrap(), vec![]);
        let mut now = reference.clone();
        let first = now.runs[0].clone();
        // 16 KiB more per idle connection, 1% more bytes (within 2%), 3%
        // fewer requests (beyond 2%, the good way still counts).
        for r in now
            .runs
            .iter_mut()
            .filter(|r| r.transport == first.transport && r.point == first.point)
        {
            r.server.as_mut().unwrap().rss_per_connection += 16384.0;
            r.wire.per_msg.bytes *= 1.01;
            r.wire.per_msg.requests *= 0.97;
        }
        let d = guard(&reference, &now).unwrap();
        let named: Vec<Metric> = d.iter().map(|d| d.metric).collect();
        assert_eq!(named, [Metric::RequestsPerMsg, Metric::RssPerConnection]);
        assert!(d.iter().all(|d| d.transport == first.transport));
        let line = d.last().unwrap().to_string();
        assert!(line.contains("rss_per_connection"), "{line}");
        assert!(line.contains("allowed ±30%"), "{line}");
    }

    #[test]
    fn drift_counts_a_missing_transport_and_refuses_another_scenario() {
        let reference = fixture();
        let mut now = reference.clone();
        let gone = now.summary[0].transport;
        now.runs.retain(|r| r.transport != gone);
        now.summary.retain(|s| s.transport != gone);
        let d = guard(&reference, &now).unwrap();
        assert!(!d.is_empty());
        assert!(d.iter().all(|d| d.transport == gone && d.now.is_none()));
        let mut other = reference.clone();
        other.scenario.name = "other".into();
        let e = guard(&reference, &other).unwrap_err();
        assert!(e.contains("commit a new reference"), "{e}");
    }

    #[test]
    fn rank_test_separates_shifted_samples_and_not_equal_ones() {
        let a = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0];
        let b = [20.0, 21.0, 22.0, 23.0, 24.0, 25.0];
        let p = mann_whitney_p(&a, &b);
        // Exact two-sided p for complete separation of 6 and 6 is 0.0022;
        // the normal approximation gives about 0.004.
        assert!(p < 0.01, "{p}");
        let p = mann_whitney_p(&a, &[10.5, 11.5, 12.5, 13.5, 14.5, 15.5]);
        assert!(p > 0.5, "{p}");
        assert_eq!(mann_whitney_p(&[1.0; 5], &[1.0; 5]), 1.0);
    }

    #[test]
    fn verdicts_follow_direction_noise_and_minimum_change() {
        let m = Metric::P50Latency;
        // Ranges apart and 50% slower: worse.
        assert_eq!(
            judge(m, &[100.0, 110.0], &[150.0, 160.0], 0.0, 0.1).0,
            Verdict::Worse
        );
        // Faster: better.
        assert_eq!(
            judge(m, &[150.0, 160.0], &[100.0, 110.0], 0.0, 0.1).0,
            Verdict::Better
        );
        // Ranges overlap: same.
        assert_eq!(
            judge(m, &[100.0, 160.0], &[110.0, 170.0], 0.0, 0.1).0,
            Verdict::Same
        );
        // Apart but by 5%: same.
        assert_eq!(judge(m, &[100.0], &[105.0], 0.0, 0.1).0, Verdict::Same);
        // Higher is better for throughput.
        assert_eq!(
            judge(Metric::DeliveredPerS, &[100.0], &[200.0], 0.0, 0.1).0,
            Verdict::Better
        );
        // CPU within its precision: same, however large the ratio.
        assert_eq!(
            judge(Metric::ServerCpuMsPer1k, &[1.0], &[3.0], 4.0, 0.1).0,
            Verdict::Same
        );
        // One lost message is worse.
        assert_eq!(
            judge(Metric::Lost, &[0.0], &[1.0], 0.0, 0.1).0,
            Verdict::Worse
        );
        assert!(erfc(0.0) > 0.999 && erfc(0.0) < 1.001);
    }
}
