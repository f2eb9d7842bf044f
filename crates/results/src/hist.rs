//! The histogram every latency goes into.

use hdrhistogram::Histogram;

/// Latency range: 1 µs to 1 h, 3 significant digits.
pub const HIST_MAX_US: u64 = 3_600_000_000;

/// A histogram of microseconds, 1 µs to 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // The lowest discernible value is 1 µs, but values of 0 are recorded
    // as they are (HdrHistogram keeps a 0 bucket), so breakdown parts that
    // are exactly 0 (a poll already waiting) add up.
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static bounds are valid")
}
