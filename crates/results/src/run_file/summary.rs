//! A run's summaries: each transport over its repetitions, and the
//! analytic model beside the measurement.

use super::schema::*;
use crate::Transport;

impl Stat {
    /// Of the values (all zero when none).
    pub fn of(mut v: Vec<f64>) -> Stat {
        if v.is_empty() {
            return Stat::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

impl TransportRun {
    /// The run's row label in reports: its transport, and its sweep value
    /// if any (`sse @ 0.02`).
    pub fn label(&self, s: &crate::scenario::Scenario) -> String {
        match s.point_label(self.point) {
            Some(v) => format!("{} @ {v}", self.transport),
            None => self.transport.to_string(),
        }
    }
}

impl TransportSummary {
    /// How far the measured p50 is from the model's: `(|measured − model|
    /// − 2 ms) / max(model, 2 ms)`, and 0 within the 2 ms of processing the
    /// model leaves out. Relative to the model's p50, or to those 2 ms
    /// where the model's is smaller (a push transport on loopback, whose
    /// model p50 is 0). None without a model figure.
    pub fn p50_model_error(&self) -> Option<f64> {
        let model = self.model_p50_us?;
        let off = ((self.p50_us.median - model).abs() - MODEL_SLACK_US).max(0.0);
        Some(off / model.max(MODEL_SLACK_US))
    }

    /// Summarizes the runs of `t` at sweep point `point`; None when there
    /// are none.
    pub fn of(t: Transport, point: usize, runs: &[TransportRun]) -> Option<TransportSummary> {
        let rs: Vec<&TransportRun> = runs
            .iter()
            .filter(|r| r.transport == t && r.point == point)
            .collect();
        if rs.is_empty() {
            return None;
        }
        let st = |f: &dyn Fn(&TransportRun) -> f64| Stat::of(rs.iter().map(|r| f(r)).collect());
        let opt = |f: &dyn Fn(&TransportRun) -> Option<f64>| {
            let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| Stat::of(v))
        };
        let mut flags: Vec<String> = rs.iter().flat_map(|r| r.flags.iter().cloned()).collect();
        flags.sort();
        flags.dedup();
        Some(TransportSummary {
            transport: t,
            point,
            point_label: None,
            bytes_per_s: st(&|r| {
                (r.wire.measured.bytes_up + r.wire.measured.bytes_down) as f64
                    / r.measured_seconds.max(1e-9)
            }),
            requests_per_s: st(&|r| r.wire.measured.requests as f64 / r.measured_seconds.max(1e-9)),
            payload_bytes: st(&|r| r.wire.per_msg.payload_bytes),
            repetitions: rs.len() as u32,
            p50_us: st(&|r| r.latency_us.p50 as f64),
            p90_us: st(&|r| r.latency_us.p90 as f64),
            p99_us: st(&|r| r.latency_us.p99 as f64),
            p999_us: st(&|r| r.latency_us.p999 as f64),
            max_us: st(&|r| r.latency_us.max as f64),
            send_lag_p50_us: st(&|r| r.send_lag_us.p50 as f64),
            send_lag_p99_us: st(&|r| r.send_lag_us.p99 as f64),
            receive_p50_us: st(&|r| r.receive_us.p50 as f64),
            up_leg_mean_us: st(&|r| r.breakdown.as_ref().map_or(0.0, |b| b.up_leg_us.mean)),
            poll_wait_mean_us: st(&|r| r.breakdown.as_ref().map_or(0.0, |b| b.poll_wait_us.mean)),
            down_leg_mean_us: st(&|r| r.breakdown.as_ref().map_or(0.0, |b| b.down_leg_us.mean)),
            bytes_per_msg: st(&|r| r.wire.per_msg.bytes),
            bytes_up_per_msg: st(&|r| r.wire.per_msg.bytes_up),
            bytes_down_per_msg: st(&|r| r.wire.per_msg.bytes_down),
            requests_per_msg: st(&|r| r.wire.per_msg.requests),
            segments_per_msg: st(&|r| r.wire.per_msg.segments),
            delivered_per_s: st(&|r| r.audit.delivered as f64 / r.measured_seconds.max(1e-9)),
            server_cpu_ms_per_1k: opt(&|r| r.server.as_ref().map(|s| s.cpu_ms_per_1k_msgs)),
            rss_per_connection: opt(&|r| r.server.as_ref().map(|s| s.rss_per_connection)),
            lost: rs.iter().map(|r| r.audit.lost).sum(),
            duplicated: rs.iter().map(|r| r.audit.duplicated).sum(),
            reordered: rs.iter().map(|r| r.audit.reordered).sum(),
            errors: rs.iter().map(|r| r.audit.errors).sum(),
            flags,
            model_p50_us: None,
            bytes_per_drop: opt(&|r| r.drops.map(|d| d.bytes_per_drop)),
            handshakes_per_drop: opt(&|r| r.drops.map(|d| d.handshakes_per_drop)),
            away_p50_us: opt(&|r| {
                r.drops
                    .filter(|d| d.away_latency_us.count > 0)
                    .map(|d| d.away_latency_us.p50 as f64)
            }),
            radio_j_per_client_hour: opt(&|r| r.radio.as_ref().map(|x| x.j_per_client_hour)),
            radio_on_share: opt(&|r| r.radio.as_ref().map(|x| x.on_share)),
            radio_overhead_share: opt(&|r| r.radio.as_ref().map(|x| x.overhead_share)),
        })
    }
}

/// One transport at one point, measured and modelled
/// ([`RunFile::against_model`]).
#[derive(Debug, Clone, Copy)]
pub struct ModelRow<'a> {
    /// The measured summary (p50 as `summary.p50_us.median`).
    pub summary: &'a TransportSummary,
    /// The model's p50 and mean at the summary's point.
    pub model: crate::model::Prediction,
    /// Measured mean latency, µs.
    pub mean_us: f64,
}

/// Processing the model leaves out, µs: a measured p50 within this of the
/// model's counts as agreeing (about twice loopback's whole latency here).
pub const MODEL_SLACK_US: f64 = 2_000.0;

impl RunFile {
    /// Recomputes `summary` from `runs`: one entry per sweep point and
    /// transport.
    pub fn summarize(&mut self) {
        let mut out = Vec::new();
        for p in 0..self.scenario.points() {
            // A point's target may run transports of its own.
            let transports = self
                .scenario
                .at_point(p)
                .map(|at| at.run_transports().to_vec())
                .unwrap_or_else(|_| self.scenario.transports.clone());
            for t in transports {
                if let Some(mut s) = TransportSummary::of(t, p, &self.runs) {
                    s.point_label = self.scenario.point_label(p);
                    s.model_p50_us = self
                        .scenario
                        .at_point(p)
                        .ok()
                        .map(|at| crate::model::predict(&at, t).p50_us);
                    out.push(s);
                }
            }
        }
        self.summary = out;
    }

    /// Each summary beside the analytic model's prediction at its point,
    /// with the measured mean latency (the mean of its repetitions'): what
    /// REPORT.md's "Against the model" and the model chart show.
    pub fn against_model(&self) -> Vec<ModelRow<'_>> {
        self.summary
            .iter()
            .filter_map(|x| {
                let at = self.scenario.at_point(x.point).ok()?;
                let runs: Vec<&TransportRun> = self
                    .runs
                    .iter()
                    .filter(|r| r.transport == x.transport && r.point == x.point)
                    .collect();
                let mean_us =
                    runs.iter().map(|r| r.latency_us.mean).sum::<f64>() / runs.len().max(1) as f64;
                Some(ModelRow {
                    summary: x,
                    model: crate::model::predict(&at, x.transport),
                    mean_us,
                })
            })
            .collect()
    }

    /// The summaries of sweep point `p`.
    pub fn at_point(&self, p: usize) -> impl Iterator<Item = &TransportSummary> {
        self.summary.iter().filter(move |s| s.point == p)
    }
}

#[cfg(test)]
mod model_error_tests {
    use super::{RunFile, Stat};

    #[test]
    fn the_model_error_allows_2_ms_then_counts_relative_to_the_model() {
        let run = RunFile::read(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../report/tests/fixtures/run-a"),
        )
        .unwrap();
        let mut s = run.summary[0].clone();
        let at = |s: &mut super::TransportSummary, p50: f64, model: Option<f64>| {
            s.p50_us = Stat {
                median: p50,
                min: p50,
                max: p50,
            };
            s.model_p50_us = model;
            s.p50_model_error()
        };
        // Files from before the model have none.
        assert_eq!(at(&mut s, 1_000.0, None), None);
        // Within 2 ms either way: 0.
        assert_eq!(at(&mut s, 101_900.0, Some(100_000.0)), Some(0.0));
        assert_eq!(at(&mut s, 98_500.0, Some(100_000.0)), Some(0.0));
        // 17 ms over at 100 ms: 15 beyond the allowance, 15%.
        assert_eq!(at(&mut s, 117_000.0, Some(100_000.0)), Some(0.15));
        // A model of 0 (a push transport on loopback): relative to 2 ms.
        assert_eq!(at(&mut s, 2_200.0, Some(0.0)), Some(0.1));
    }
}
