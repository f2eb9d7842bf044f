//! The run's display: reads the library's [`Progress`] messages from a
//! channel and draws them with indicatif on stderr, in the style of cargo:
//! one bar for the transport run in progress above an overall bar with an
//! ETA across every repetition, sweep point and transport. When a transport
//! run ends its bar is replaced by one line saying how it went, so no stale
//! bars are left behind, and a log (stderr not a terminal, where indicatif
//! draws nothing) still gets that line as each run finishes.

use chatbench_loadgen::engine::Progress;
use chatbench_results::fmt::fmt_us;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Where the whole run is, in milliseconds of planned phases: the finished
/// transport runs' plans, plus the current one's elapsed time (at most its
/// plan, since teardown and server starts are not in the plan).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Overall {
    /// Planned ms of the transport runs that ended.
    pub done_ms: u64,
    /// Planned ms of the one in progress.
    pub current_ms: u64,
    /// Its elapsed ms.
    pub elapsed_ms: u64,
}

impl Overall {
    /// The overall bar's position.
    pub fn position(&self) -> u64 {
        self.done_ms + self.elapsed_ms.min(self.current_ms)
    }

    fn start(&mut self, total: Duration) {
        self.current_ms = total.as_millis() as u64;
        self.elapsed_ms = 0;
    }

    fn finish(&mut self) {
        self.done_ms += self.current_ms;
        self.current_ms = 0;
        self.elapsed_ms = 0;
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Draws progress until the sending side is dropped.
pub async fn display(mut rx: UnboundedReceiver<Progress>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    // The transport run's bar and the overall one live for the whole run
    // and are reset between transport runs: inserting and removing bars
    // left copies of the overall bar behind in tmux.
    let mut bars: Option<(ProgressBar, ProgressBar)> = None;
    let mut at = Overall::default();
    let mut runs = (0usize, 0usize);
    while let Some(p) = rx.recv().await {
        match p {
            Progress::Plan { runs: n, total } => {
                runs = (0, n);
                let current = multi.add(ProgressBar::new(1));
                current.set_style(style("{prefix:>14} [{bar:20}] {elapsed:>3} {msg}"));
                let overall = multi.add(ProgressBar::new(total.as_millis() as u64));
                overall.set_style(style(
                    "{prefix:>14} [{bar:20}] {elapsed:>3} {msg} eta {eta}",
                ));
                overall.set_prefix("overall");
                overall.set_message(format!("run 0/{n}"));
                bars = Some((current, overall));
            }
            Progress::Started { label, total } => {
                at.start(total);
                runs.0 += 1;
                if let Some((current, overall)) = &bars {
                    current.reset();
                    current.set_length(total.as_millis() as u64);
                    current.set_prefix(label);
                    current.set_message("connecting");
                    overall.set_message(format!("run {}/{}", runs.0, runs.1));
                }
            }
            Progress::Tick {
                elapsed,
                phase,
                msgs_per_s,
                p99_us,
                errors,
            } => {
                at.elapsed_ms = elapsed.as_millis() as u64;
                if let Some((current, overall)) = &bars {
                    overall.set_position(at.position());
                    current.set_position(elapsed.as_millis() as u64);
                    let errors = if errors > 0 {
                        format!(" err {errors}")
                    } else {
                        String::new()
                    };
                    current.set_message(format!(
                        "{:<7} {msgs_per_s:>7.0} msg/s p99 {}{errors}",
                        phase.as_str(),
                        fmt_us(p99_us),
                    ));
                }
            }
            Progress::Finished {
                label,
                p50_us,
                p99_us,
                lost,
                errors,
                top_error,
            } => {
                at.finish();
                if let Some((current, overall)) = &bars {
                    overall.set_position(at.position());
                    current.set_prefix("");
                    current.set_message("");
                    current.reset();
                }
                let errors = match top_error {
                    Some((cause, n)) => format!(", errors {errors} (most: {n} × {cause})"),
                    None => String::new(),
                };
                let line = format!(
                    "{label:>14}  done: p50 {}, p99 {}, lost {lost}{errors}",
                    fmt_us(p50_us),
                    fmt_us(p99_us)
                );
                // Printed above the bars when they are drawn (the bars are
                // cleared, the line printed, the bars drawn again); plainly
                // when stderr is not a terminal.
                multi.suspend(|| eprintln!("{line}"));
            }
        }
    }
    if let Some((current, overall)) = bars {
        current.finish_and_clear();
        overall.finish_and_clear();
    }
    let _ = multi.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overall_position_adds_finished_plans_and_caps_the_current_run() {
        let mut at = Overall::default();
        at.start(Duration::from_secs(10));
        at.elapsed_ms = 4_000;
        assert_eq!(at.position(), 4_000);
        // Teardown runs past the plan: the bar does not run ahead.
        at.elapsed_ms = 12_000;
        assert_eq!(at.position(), 10_000);
        at.finish();
        assert_eq!(at.position(), 10_000);
        at.start(Duration::from_secs(5));
        at.elapsed_ms = 1_000;
        assert_eq!(at.position(), 11_000);
        at.finish();
        assert_eq!(
            at,
            Overall {
                done_ms: 15_000,
                current_ms: 0,
                elapsed_ms: 0
            }
        );
    }
}
