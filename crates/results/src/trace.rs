//! Mahimahi's link traces: one line per delivery opportunity, the time in
//! milliseconds from the trace's start at which one 1,500-byte packet may
//! cross the link; several opportunities in one millisecond repeat the
//! number, and at its end the trace repeats from its start (Netravali et
//! al., "Mahimahi: Accurate Record-and-Replay for HTTP", USENIX ATC 2015).

use std::path::Path;

/// Bytes one delivery opportunity carries.
pub const OPPORTUNITY_BYTES: u64 = 1500;

/// A link's capacity over time, read from a trace file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The delivery opportunities, ms from the start, non-decreasing.
    ms: Vec<u64>,
    /// The trace's period: its last opportunity's time (at least 1 ms).
    period_ms: u64,
}

impl Trace {
    /// Parses a trace's text; `name` is used in errors, which give the line.
    pub fn parse(text: &str, name: &str) -> Result<Trace, String> {
        let mut ms = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let t: u64 = line.parse().map_err(|_| {
                format!(
                    "{name}:{}: {line:?} is not a time in whole milliseconds",
                    i + 1
                )
            })?;
            if ms.last().is_some_and(|&prev| t < prev) {
                return Err(format!(
                    "{name}:{}: {t} comes after {}; a trace's times never go back",
                    i + 1,
                    ms.last().copied().unwrap_or(0)
                ));
            }
            ms.push(t);
        }
        let Some(&last) = ms.last() else {
            return Err(format!("{name}: the trace has no delivery opportunity"));
        };
        Ok(Trace {
            ms,
            period_ms: last.max(1),
        })
    }

    /// Reads and parses a trace file.
    pub fn read(path: &Path) -> Result<Trace, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the trace: {e}", path.display()))?;
        Trace::parse(&text, &path.display().to_string())
    }

    /// Opportunities per period.
    pub fn len(&self) -> usize {
        self.ms.len()
    }

    /// True for a trace with no opportunity (never: [`Trace::parse`]
    /// refuses one).
    pub fn is_empty(&self) -> bool {
        self.ms.is_empty()
    }

    /// The period, ms.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// The trace's mean capacity, bits per second.
    pub fn mean_bps(&self) -> f64 {
        (self.ms.len() as u64 * OPPORTUNITY_BYTES * 8) as f64 / (self.period_ms as f64 / 1000.0)
    }

    /// The time, µs from the trace's start, of opportunity `n` counted
    /// over the repeating trace.
    pub fn at_us(&self, n: u64) -> u64 {
        let len = self.ms.len() as u64;
        ((n / len) * self.period_ms + self.ms[(n % len) as usize]) * 1000
    }

    /// The first opportunity at or after `t_us` (µs from the start).
    pub fn first_at_or_after(&self, t_us: u64) -> u64 {
        let len = self.ms.len() as u64;
        let period_us = self.period_ms * 1000;
        let cycle = t_us / period_us;
        let within = t_us % period_us;
        let i = self.ms.partition_point(|&m| m * 1000 < within) as u64;
        cycle * len + i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_repeats_and_finds_its_next_opportunity() {
        let t = Trace::parse("0\n0\n3\n\n10\n", "t").unwrap();
        assert_eq!((t.len(), t.period_ms()), (4, 10));
        let times: Vec<u64> = (0..9).map(|n| t.at_us(n)).collect();
        assert_eq!(
            times,
            [0, 0, 3000, 10_000, 10_000, 10_000, 13_000, 20_000, 20_000]
        );
        assert_eq!(t.first_at_or_after(0), 0);
        assert_eq!(t.first_at_or_after(1), 2);
        assert_eq!(t.first_at_or_after(3000), 2);
        assert_eq!(t.first_at_or_after(3001), 3);
        assert_eq!(t.first_at_or_after(10_500), 6);
        // 4 packets of 1,500 bytes every 10 ms.
        assert_eq!(t.mean_bps(), 4.0 * 1500.0 * 8.0 * 100.0);
    }

    #[test]
    fn a_bad_trace_is_refused_with_its_line() {
        assert_eq!(
            Trace::parse("0\n5\n4\n", "x.up").unwrap_err(),
            "x.up:3: 4 comes after 5; a trace's times never go back"
        );
        assert_eq!(
            Trace::parse("0\n1.5\n", "x.up").unwrap_err(),
            "x.up:2: \"1.5\" is not a time in whole milliseconds"
        );
        assert_eq!(
            Trace::parse("\n\n", "x.up").unwrap_err(),
            "x.up: the trace has no delivery opportunity"
        );
    }
}
