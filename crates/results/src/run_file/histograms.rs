//! The latency histogram files of a run folder: `<name>.hlog` with one
//! interval per repetition, `<name>.hgrm` with them merged.

use super::schema::*;
use crate::scenario::Scenario;
use crate::Transport;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::path::Path;

/// The file stem of a transport's histograms at a sweep point: `sse`, or
/// `sse-p2` when the scenario sweeps (even over one value). It depends on the
/// scenario alone, so writers and readers agree whatever points a partial run
/// reached.
pub fn histogram_name(scenario: &Scenario, t: Transport, point: usize) -> String {
    if scenario.sweep.is_some() {
        format!("{t}-p{point}")
    } else {
        t.to_string()
    }
}

/// One repetition's delivery-latency histogram: transport, sweep point,
/// repetition and the histogram.
pub type LatencyRep = (Transport, usize, u32, Histogram<u64>);

/// Writes the latency files of a run folder: for each transport (in the
/// scenario's order) and sweep point that has repetitions, `<name>.hlog` with
/// one interval per repetition and `<name>.hgrm` with them merged.
pub fn write_latency_histograms(
    dir: &Path,
    scenario: &Scenario,
    reps: &[LatencyRep],
    runs: &[TransportRun],
) -> std::io::Result<()> {
    for point in 0..scenario.points() {
        for &t in &scenario.transports {
            let mine: Vec<HlogInterval<'_>> = reps
                .iter()
                .filter(|(x, p, _, _)| *x == t && *p == point)
                .map(|(_, _, r, h)| {
                    let run = runs
                        .iter()
                        .find(|x| x.transport == t && x.point == point && x.repetition == *r);
                    HlogInterval {
                        repetition: *r,
                        start_unix_s: run.map_or(0.0, |x| x.measured_from_unix_ms as f64 / 1000.0),
                        length_s: run.map_or(0.0, |x| x.measured_seconds),
                        histogram: h,
                    }
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut merged = crate::hist::new_histogram();
            for iv in &mine {
                merged
                    .add(iv.histogram)
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            }
            let name = histogram_name(scenario, t, point);
            write_hgrm(&dir.join(format!("{name}.hgrm")), &merged)?;
            write_hlog(&dir.join(format!("{name}.hlog")), &mine)?;
        }
    }
    Ok(())
}

/// Writes `<name>.hgrm`: HdrHistogram's percentile distribution, in
/// milliseconds, as `outputPercentileDistribution` prints it (5 ticks per
/// half distance, cumulative TotalCount, `1/(1-Percentile)`, the last row
/// at percentile 1 without it), so HdrHistogram's own plotter reads it.
pub fn write_hgrm(path: &Path, h: &Histogram<u64>) -> std::io::Result<()> {
    std::fs::write(path, hgrm_text(h))
}

/// The text [`write_hgrm`] writes.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if !h.is_empty() {
        let mut total = 0u64;
        let mut last_q = -1.0f64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            // The iterator can yield one quantile twice at a bucket edge;
            // the Java writer prints each step once.
            if q <= last_q {
                continue;
            }
            last_q = q;
            let value = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len(),
        h.buckets(),
        // As Java's subBucketCount: 2^ceil(log2(2 * 10^digits)).
        (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil().exp2() as u64
    );
    out
}

/// One `.hlog` interval: a repetition's histogram and when it was measured.
#[derive(Debug, Clone, Copy)]
pub struct HlogInterval<'a> {
    /// The repetition, for the interval's tag (`rep<N>`).
    pub repetition: u32,
    /// Start of the measured window, s since the UNIX epoch (0 when unknown).
    pub start_unix_s: f64,
    /// Length of the measured window, s.
    pub length_s: f64,
    /// The latencies.
    pub histogram: &'a Histogram<u64>,
}

/// Writes `<name>.hlog`: an HdrHistogram V2 interval log with one interval
/// per repetition, tagged `rep<N>`, stamped with the measured window's real
/// start (absolute, s since the epoch) and length. Histograms merge;
/// percentiles do not.
pub fn write_hlog(path: &Path, reps: &[HlogInterval<'_>]) -> std::io::Result<()> {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment("chatbench delivery latency, microseconds; one interval per repetition")
            .begin_log_with(&mut buf, &mut ser)
            .map_err(std::io::Error::other)?;
        for iv in reps {
            let tag = format!("rep{}", iv.repetition);
            w.write_histogram(
                iv.histogram,
                std::time::Duration::from_secs_f64(iv.start_unix_s.max(0.0)),
                std::time::Duration::from_secs_f64(iv.length_s.max(0.0)),
                Tag::new(&tag),
            )
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
    }
    std::fs::write(path, buf)
}

/// Reads every interval of an `.hlog` file and merges them.
pub fn read_hlog(path: &Path) -> std::io::Result<Histogram<u64>> {
    let mut merged = crate::hist::new_histogram();
    for (_, h) in read_hlog_intervals(path)? {
        merged
            .add(&h)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    }
    Ok(merged)
}

/// Reads the intervals of an `.hlog` file, each with its tag (`rep<N>`).
pub fn read_hlog_intervals(path: &Path) -> std::io::Result<Vec<(String, Histogram<u64>)>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let data = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&data) {
        let entry = entry.map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        if let LogEntry::Interval(iv) = entry {
            let bytes = base64_decode(iv.encoded_histogram())
                .ok_or_else(|| std::io::Error::other("bad base64"))?;
            let h: Histogram<u64> = de
                .deserialize(&mut std::io::Cursor::new(bytes))
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            let tag = iv.tag().map(|t| t.as_str().to_owned()).unwrap_or_default();
            out.push((tag, h));
        }
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}
