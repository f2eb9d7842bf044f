//! The run's display: reads the library's [`Progress`] messages from a
//! channel and draws them with indicatif on stderr. One bar for the
//! transport run in progress; when it ends, the bar is replaced by one line
//! saying how it went, so no stale bars are left behind and a log (stderr
//! not a terminal, where indicatif draws nothing) still shows each run.

use chatbench_loadgen::engine::{fmt_us, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

/// Draws progress until the sending side is dropped.
pub async fn display(mut rx: UnboundedReceiver<Progress>) {
    let mut bar: Option<ProgressBar> = None;
    while let Some(p) = rx.recv().await {
        match p {
            Progress::Started { label, total } => {
                let pb = ProgressBar::with_draw_target(
                    Some(total.as_millis() as u64),
                    ProgressDrawTarget::stderr(),
                );
                pb.set_style(
                    ProgressStyle::with_template("{prefix:>18} [{bar:24}] {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                pb.set_prefix(label);
                bar = Some(pb);
            }
            Progress::Tick {
                elapsed,
                phase,
                msgs_per_s,
                p99_us,
                errors,
            } => {
                if let Some(pb) = &bar {
                    pb.set_position(elapsed.as_millis() as u64);
                    pb.set_message(format!(
                        "{:<8} {msgs_per_s:>8.0} msg/s  p99 {:>8}  errors {errors}",
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
                if let Some(pb) = bar.take() {
                    pb.finish_and_clear();
                }
                let errors = match top_error {
                    Some((cause, n)) => format!(", errors {errors} (most: {n} × {cause})"),
                    None => String::new(),
                };
                eprintln!(
                    "{label:>18}  done: p50 {}, p99 {}, lost {lost}{errors}",
                    fmt_us(p50_us),
                    fmt_us(p99_us)
                );
            }
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}
