//! Connection drops (`[network] drop_every`): when each client loses its
//! connections, and the state its receiver and its sender share while it
//! is away.
//!
//! A drop cuts the client's connections ([`crate::wire::CutHandle`]): the
//! client writes nothing more on them, and throws away whatever arrives on
//! them after the cut (reading it to the end, so every byte and message the
//! server sent is counted). It stays offline for `drop_for`, then
//! reconnects and resumes from the last message it saw: polls with
//! `after`, SSE with `Last-Event-ID`, WebSocket by reconnecting with
//! `after`. The receiver makes the cuts on its schedule; an HTTP sender
//! finds its connection cut before its next publish (a publish in flight
//! at the cut completes first: a drop loses what the server sends, not a
//! publish the client already made).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The drop times of one client, µs from the start of traffic, until the
/// end of sending: exponential gaps of mean `every`, a pure function of
/// the scenario seed and the client.
#[derive(Debug, Clone)]
pub struct DropSchedule {
    rng: ChaCha8Rng,
    mean_us: f64,
    next_us: f64,
    end_us: f64,
}

/// Keeps drop times apart from send times drawn from the same seed.
const DROP_STREAM_SALT: u64 = 0xD809_5EED_0000_0000;

impl DropSchedule {
    /// Client `client`'s drops under `seed`, every `every` on average,
    /// until `end`.
    pub fn new(seed: u64, client: u64, every: Duration, end: Duration) -> DropSchedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ DROP_STREAM_SALT);
        rng.set_stream(client);
        let mean_us = every.as_micros() as f64;
        let mut s = DropSchedule {
            rng,
            mean_us,
            next_us: 0.0,
            end_us: end.as_micros() as f64,
        };
        s.next_us = s.gap();
        s
    }

    fn gap(&mut self) -> f64 {
        // 1 - U is in (0, 1], so the logarithm is finite.
        -(1.0 - self.rng.random::<f64>()).ln() * self.mean_us
    }
}

impl Iterator for DropSchedule {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next_us >= self.end_us {
            return None;
        }
        let at = self.next_us as u64;
        self.next_us += self.gap().max(1.0);
        Some(at)
    }
}

/// What a client's receiver and sender share about its drops.
#[derive(Debug, Default)]
pub struct Away {
    /// Drops so far.
    drops: AtomicU64,
    /// When the client may reconnect after the last drop, µs on the run
    /// clock.
    back_at_us: AtomicU64,
}

impl Away {
    /// Notes a drop at `now_us`, offline for `offline`.
    pub fn dropped(&self, now_us: u64, offline: Duration) {
        self.back_at_us
            .store(now_us + offline.as_micros() as u64, Relaxed);
        self.drops.fetch_add(1, Relaxed);
    }

    /// Drops so far: a connection opened when this was lower has been cut.
    pub fn drops(&self) -> u64 {
        self.drops.load(Relaxed)
    }

    /// When the client is back online after its last drop (run clock, µs).
    pub fn back_at_us(&self) -> u64 {
        self.back_at_us.load(Relaxed)
    }
}

/// The stretches of time a receiver was away: from each cut until its
/// resuming request left. A message sent in one is one "sent while away".
#[derive(Debug, Default)]
pub struct AwaySpans {
    closed: Vec<(u64, u64)>,
    open: Option<u64>,
}

impl AwaySpans {
    /// The client was cut at `at_us`.
    pub fn cut(&mut self, at_us: u64) {
        self.open.get_or_insert(at_us);
    }

    /// The resuming request left at `at_us`.
    pub fn resumed(&mut self, at_us: u64) {
        if let Some(from) = self.open.take() {
            self.closed.push((from, at_us.max(from)));
        }
    }

    /// True while cut and not yet resumed: what arrives is thrown away.
    pub fn is_away(&self) -> bool {
        self.open.is_some()
    }

    /// True when a message sent at `sent_us` was sent while away.
    pub fn covers(&self, sent_us: u64) -> bool {
        self.open.is_some_and(|from| sent_us >= from)
            || self
                .closed
                .iter()
                .rev()
                .any(|&(a, b)| sent_us >= a && sent_us < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_times_are_seeded_spread_around_the_mean_and_end_in_time() {
        let every = Duration::from_secs(2);
        let end = Duration::from_secs(20_000);
        let a: Vec<u64> = DropSchedule::new(7, 3, every, end).collect();
        assert_eq!(a, DropSchedule::new(7, 3, every, end).collect::<Vec<_>>());
        assert_ne!(a, DropSchedule::new(7, 4, every, end).collect::<Vec<_>>());
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(*a.last().unwrap() < 20_000_000_000);
        // 10,000 expected; a Poisson count's standard deviation is 100.
        assert!((9_600..=10_400).contains(&a.len()), "{}", a.len());
        // Exponential gaps: about 63% shorter than the mean.
        let short = a.windows(2).filter(|w| w[1] - w[0] < 2_000_000).count();
        let share = short as f64 / (a.len() - 1) as f64;
        assert!((0.60..0.66).contains(&share), "{share}");
        assert_eq!(DropSchedule::new(7, 3, every, Duration::ZERO).count(), 0);
    }

    #[test]
    fn away_spans_cover_what_was_sent_between_a_cut_and_the_resume() {
        let mut s = AwaySpans::default();
        assert!(!s.is_away() && !s.covers(5));
        s.cut(100);
        s.cut(150);
        assert!(s.is_away());
        assert!(s.covers(100) && s.covers(10_000) && !s.covers(99));
        s.resumed(300);
        assert!(!s.is_away());
        assert!(s.covers(299) && !s.covers(300) && !s.covers(99));
        s.cut(1000);
        s.resumed(1200);
        assert!(s.covers(120) && s.covers(1100) && !s.covers(500));
        let away = Away::default();
        away.dropped(1000, Duration::from_millis(2));
        assert_eq!((away.drops(), away.back_at_us()), (1, 3000));
    }
}
