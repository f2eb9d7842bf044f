//! Charts, `REPORT.md`, rule checks and comparisons, built from result files
//! alone (`run.json` and the `.hlog` histograms), so a run made anywhere can
//! be re-plotted anywhere.
//!
//! Main entry points: [`report`] (charts plus `REPORT.md`), [`check::check`]
//! (the scenario's `[[expect]]` rules) and [`compare::compare`] (two runs
//! side by side).
#![deny(missing_docs)]

mod battery;
pub mod capacity;
pub mod charts;
pub mod check;
pub mod compare;
mod markdown;
mod network;
mod proxies;
mod stacks;

use chatbench_results::run_file::{histogram_name, read_hlog, RunFile};
use chatbench_results::Transport;
use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run folder could not be read.
    #[error(transparent)]
    Run(#[from] chatbench_results::run_file::ReadError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("cannot draw {path}: {reason}")]
    Chart {
        /// The chart file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What [`report`] wrote.
#[derive(Debug)]
pub struct Written {
    /// Chart files (SVG and PNG).
    pub charts: Vec<PathBuf>,
    /// `REPORT.md`.
    pub report: PathBuf,
}

/// Each transport's merged latency histogram.
pub type TransportHistograms = Vec<(Transport, Histogram<u64>)>;

/// Reads a run folder: `run.json` and each transport's merged histogram at
/// the first sweep point (from its `.hlog`; empty when the file is missing).
pub fn load(dir: &Path) -> Result<(RunFile, TransportHistograms), ReportError> {
    let run = RunFile::read(dir).map_err(ReportError::Run)?;
    let hists = run
        .at_point(0)
        .map(|s| {
            let name = histogram_name(&run.scenario, s.transport, 0);
            let path = dir.join(format!("{name}.hlog"));
            let h = read_hlog(&path).unwrap_or_else(|_| chatbench_results::hist::new_histogram());
            (s.transport, h)
        })
        .collect();
    Ok((run, hists))
}

/// Writes `charts/*.svg|png` and `REPORT.md` into the run folder `dir`.
pub fn report(dir: &Path) -> Result<Written, ReportError> {
    let (run, hists) = load(dir)?;
    let charts = charts::draw_all(&run, &hists, &dir.join("charts"))?;
    let report = dir.join("REPORT.md");
    std::fs::write(&report, markdown::render(&run)).map_err(|source| ReportError::Io {
        path: report.clone(),
        source,
    })?;
    Ok(Written { charts, report })
}
