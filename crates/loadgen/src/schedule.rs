//! Open-loop send schedules.
//!
//! A [`SendSchedule`] yields a sender's intended send times, as offsets from
//! the start of traffic. It is a pure function of the scenario seed and the
//! sender's index, generated lazily so memory does not grow with the run.

use crate::scenario::{Arrival, Messages};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Intended send times of one sender, until `end`.
#[derive(Debug, Clone)]
pub struct SendSchedule {
    rng: ChaCha8Rng,
    arrival: Arrival,
    rate: f64,
    burst_size: u32,
    burst_left: u32,
    next: f64,
    end: f64,
}

impl SendSchedule {
    /// The schedule of sender number `sender` under `seed`.
    pub fn new(seed: u64, sender: u64, m: &Messages, end: Duration) -> SendSchedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // One independent stream per sender: adding senders does not change
        // the schedules of the others.
        rng.set_stream(sender);
        let mut s = SendSchedule {
            rng,
            arrival: m.arrival,
            rate: m.rate,
            burst_size: m.burst_size.max(1),
            burst_left: 0,
            next: 0.0,
            end: end.as_secs_f64(),
        };
        s.next = match s.arrival {
            // A random phase, so constant-rate senders do not fire in unison.
            Arrival::Constant => s.rng.random::<f64>() / s.rate,
            Arrival::Poisson => s.exp(s.rate),
            Arrival::Burst => s.exp(s.rate / s.burst_size as f64),
        };
        s
    }

    fn exp(&mut self, rate: f64) -> f64 {
        // 1 - U is in (0, 1], so the logarithm is finite.
        -(1.0 - self.rng.random::<f64>()).ln() / rate
    }
}

impl Iterator for SendSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next >= self.end {
            return None;
        }
        let at = self.next;
        self.next += match self.arrival {
            Arrival::Constant => 1.0 / self.rate,
            Arrival::Poisson => self.exp(self.rate),
            Arrival::Burst => {
                if self.burst_left == 0 {
                    self.burst_left = self.burst_size;
                }
                self.burst_left -= 1;
                if self.burst_left > 0 {
                    0.0
                } else {
                    self.exp(self.rate / self.burst_size as f64)
                }
            }
        };
        Some(Duration::from_secs_f64(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(arrival: Arrival, rate: f64) -> Messages {
        Messages {
            rate,
            arrival,
            burst_size: 5,
            body_bytes: 10,
        }
    }

    #[test]
    fn deterministic_per_seed_and_sender() {
        let m = msgs(Arrival::Poisson, 10.0);
        let end = Duration::from_secs(100);
        let a: Vec<_> = SendSchedule::new(7, 3, &m, end).collect();
        let b: Vec<_> = SendSchedule::new(7, 3, &m, end).collect();
        let c: Vec<_> = SendSchedule::new(8, 3, &m, end).collect();
        let d: Vec<_> = SendSchedule::new(7, 4, &m, end).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn rates_hold_over_a_long_horizon() {
        let end = Duration::from_secs(20_000);
        for arrival in [Arrival::Poisson, Arrival::Constant, Arrival::Burst] {
            let n = SendSchedule::new(1, 0, &msgs(arrival, 5.0), end).count() as f64;
            let expected = 5.0 * 20_000.0;
            assert!(
                (n - expected).abs() / expected < 0.02,
                "{arrival:?}: {n} vs {expected}"
            );
        }
    }

    #[test]
    fn schedules_are_sorted_and_bounded() {
        let end = Duration::from_secs(50);
        for arrival in [Arrival::Poisson, Arrival::Constant, Arrival::Burst] {
            let v: Vec<_> = SendSchedule::new(2, 1, &msgs(arrival, 3.0), end).collect();
            assert!(v.windows(2).all(|w| w[0] <= w[1]), "{arrival:?} not sorted");
            assert!(v.iter().all(|t| *t < end));
        }
    }

    #[test]
    fn constant_gaps_are_exact_and_bursts_come_in_groups() {
        let v: Vec<_> =
            SendSchedule::new(3, 0, &msgs(Arrival::Constant, 4.0), Duration::from_secs(10))
                .collect();
        for w in v.windows(2) {
            assert!(((w[1] - w[0]).as_secs_f64() - 0.25).abs() < 1e-9);
        }
        let v: Vec<_> =
            SendSchedule::new(3, 0, &msgs(Arrival::Burst, 4.0), Duration::from_secs(1000))
                .collect();
        // Burst size 5: each burst is five identical instants.
        for chunk in v.chunks_exact(5) {
            assert!(chunk.iter().all(|t| *t == chunk[0]));
        }
    }
}
