//! `chatbench export --csv`: one row per transport run, and the JSON
//! summary of `chatbench run --json`.

use super::schema::*;
use crate::Transport;
use serde::Serialize;
use std::path::Path;

/// One row of `chatbench export --csv`: a transport at a sweep point in one
/// repetition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CsvRow {
    /// The run.
    pub run_id: String,
    /// The scenario.
    pub scenario: String,
    /// The transport.
    pub transport: Transport,
    /// Sweep point.
    pub point: usize,
    /// The swept value there, if the scenario sweeps.
    pub point_label: String,
    /// Repetition, from 0.
    pub repetition: u32,
    /// The repetition ran to its end.
    pub complete: bool,
    /// Flags, `;`-separated.
    pub flags: String,
    /// Latency, µs.
    pub latency_p50_us: u64,
    /// Latency, µs.
    pub latency_p90_us: u64,
    /// Latency, µs.
    pub latency_p99_us: u64,
    /// Latency, µs.
    pub latency_p999_us: u64,
    /// Latency, µs.
    pub latency_max_us: u64,
    /// Latency, µs.
    pub latency_mean_us: f64,
    /// Breakdown means, µs (empty when the run has none).
    pub up_leg_mean_us: Option<f64>,
    /// Breakdown means, µs.
    pub poll_wait_mean_us: Option<f64>,
    /// Breakdown means, µs.
    pub down_leg_mean_us: Option<f64>,
    /// The instrument's send lag, µs.
    pub send_lag_p50_us: u64,
    /// The instrument's send lag, µs.
    pub send_lag_p99_us: u64,
    /// The instrument's receive time, µs.
    pub receive_p50_us: u64,
    /// Bytes per delivered message, both directions.
    pub bytes_per_msg: f64,
    /// Client-to-server bytes per message.
    pub bytes_up_per_msg: f64,
    /// Server-to-client bytes per message.
    pub bytes_down_per_msg: f64,
    /// Requests per delivered message.
    pub requests_per_msg: f64,
    /// TCP segments per delivered message.
    pub segments_per_msg: f64,
    /// Deliveries in the measured window.
    pub delivered: u64,
    /// The audit.
    pub lost: u64,
    /// The audit.
    pub duplicated: u64,
    /// The audit.
    pub reordered: u64,
    /// Client errors.
    pub errors: u64,
    /// Server CPU ms per 1,000 delivered messages.
    pub server_cpu_ms_per_1k: Option<f64>,
    /// Server RSS per idle connection, bytes.
    pub rss_per_connection: Option<f64>,
    /// The load generator's CPU share.
    pub loadgen_cpu_share: f64,
}

impl RunFile {
    /// One [`CsvRow`] per transport run.
    pub fn csv_rows(&self) -> Vec<CsvRow> {
        self.runs
            .iter()
            .map(|r| {
                let b = r.breakdown.as_ref();
                CsvRow {
                    run_id: self.run_id.clone(),
                    scenario: self.scenario.name.clone(),
                    transport: r.transport,
                    point: r.point,
                    point_label: self.scenario.point_label(r.point).unwrap_or_default(),
                    repetition: r.repetition,
                    complete: r.complete,
                    flags: r.flags.join(";"),
                    latency_p50_us: r.latency_us.p50,
                    latency_p90_us: r.latency_us.p90,
                    latency_p99_us: r.latency_us.p99,
                    latency_p999_us: r.latency_us.p999,
                    latency_max_us: r.latency_us.max,
                    latency_mean_us: r.latency_us.mean,
                    up_leg_mean_us: b.map(|b| b.up_leg_us.mean),
                    poll_wait_mean_us: b.map(|b| b.poll_wait_us.mean),
                    down_leg_mean_us: b.map(|b| b.down_leg_us.mean),
                    send_lag_p50_us: r.send_lag_us.p50,
                    send_lag_p99_us: r.send_lag_us.p99,
                    receive_p50_us: r.receive_us.p50,
                    bytes_per_msg: r.wire.per_msg.bytes,
                    bytes_up_per_msg: r.wire.per_msg.bytes_up,
                    bytes_down_per_msg: r.wire.per_msg.bytes_down,
                    requests_per_msg: r.wire.per_msg.requests,
                    segments_per_msg: r.wire.per_msg.segments,
                    delivered: r.audit.delivered,
                    lost: r.audit.lost,
                    duplicated: r.audit.duplicated,
                    reordered: r.audit.reordered,
                    errors: r.audit.errors,
                    server_cpu_ms_per_1k: r.server.as_ref().map(|s| s.cpu_ms_per_1k_msgs),
                    rss_per_connection: r.server.as_ref().map(|s| s.rss_per_connection),
                    loadgen_cpu_share: r.loadgen.cpu_share,
                }
            })
            .collect()
    }

    /// The run as CSV with a header row: one line per transport run.
    pub fn write_csv(&self, out: impl std::io::Write) -> Result<(), csv::Error> {
        let mut w = csv::Writer::from_writer(out);
        for row in self.csv_rows() {
            w.serialize(row)?;
        }
        w.flush()?;
        Ok(())
    }

    /// The summary document `chatbench run --json` prints.
    pub fn json_summary(&self, dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "schema": SCHEMA,
            "run_id": self.run_id,
            "dir": dir,
            "scenario": self.scenario.name,
            "complete": self.complete,
            "problems": self.problems,
            "summary": self.summary,
        })
    }
}
