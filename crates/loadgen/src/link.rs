//! A network link emulated in the load generator's sockets, for kernels
//! without netem (`[network]` in a scenario).
//!
//! Each direction of a connection delays every chunk by half the round
//! trip, plus or minus a uniform jitter, like toxiproxy's latency toxic;
//! a chunk never leaves before the one ahead of it, so bytes are not
//! reordered. A bandwidth, when set, serialises each direction's chunks one
//! after another at that rate before their delay starts. Connection setup
//! pays one round trip.
//!
//! Downstream, bytes are read from the socket as soon as they arrive (their
//! kernel receive stamp is the arrival) and handed to the client at their
//! release time, which is the receipt a latency ends at. Upstream, writes
//! are queued and a task per connection writes each chunk at its release
//! time. Times come from [`crate::clock::unix_now_us`] and waits from a
//! process-wide [`SendTimer`], whose thread fires deadlines to the
//! microsecond rather than to tokio's millisecond.

use crate::clock::{unix_now_us, SendTimer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

/// What one emulated link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    /// Round-trip time added.
    pub rtt: Duration,
    /// Each one-way delay varies uniformly within ± this.
    pub jitter: Duration,
    /// Bits per second of each direction; None for unlimited.
    pub bandwidth_bps: Option<u64>,
}

impl LinkSpec {
    /// The scenario's link, None when it changes nothing.
    pub fn of(n: &crate::scenario::Network) -> Option<LinkSpec> {
        if n.is_loopback() || n.mode == crate::scenario::NetworkMode::Packet {
            return None;
        }
        Some(LinkSpec {
            rtt: n.rtt,
            jitter: n.jitter,
            bandwidth_bps: n.bandwidth_bps().ok().flatten(),
        })
    }

    /// How `run.json` names the mode.
    pub const MODE: &'static str = "emulated in the load generator's sockets";
}

/// The timer every emulated link waits on (started on first use, never
/// stopped).
pub fn timer() -> &'static SendTimer {
    static TIMER: OnceLock<SendTimer> = OnceLock::new();
    TIMER.get_or_init(|| SendTimer::start().expect("cannot start the link timer thread"))
}

/// One direction of one connection: when each chunk may be delivered.
#[derive(Debug)]
pub struct Direction {
    spec: LinkSpec,
    /// When the link finishes sending what it has been given, µs.
    free_at_us: u64,
    /// The latest release so far, µs: nothing is released before it.
    last_release_us: u64,
    rng: ChaCha8Rng,
}

impl Direction {
    /// A direction whose jitter draws from its own seeded stream.
    pub fn new(spec: LinkSpec) -> Direction {
        static STREAM: AtomicU64 = AtomicU64::new(0);
        Direction {
            spec,
            free_at_us: 0,
            last_release_us: 0,
            rng: ChaCha8Rng::seed_from_u64(0x6c69_6e6b ^ STREAM.fetch_add(1, Relaxed)),
        }
    }

    /// The latest release so far, µs.
    pub fn last_release_us(&self) -> u64 {
        self.last_release_us
    }

    /// The release time of `len` bytes that reached this direction at
    /// `arrival_us`: after the bytes ahead of them are through the link,
    /// after their own serialisation at the bandwidth, after half the round
    /// trip ± jitter, and never before an earlier chunk's release.
    pub fn release_us(&mut self, arrival_us: u64, len: usize) -> u64 {
        let serialise = self.spec.bandwidth_bps.map_or(0, |bps| {
            (len as u128 * 8 * 1_000_000).div_ceil(bps as u128) as u64
        });
        let done = arrival_us.max(self.free_at_us) + serialise;
        self.free_at_us = done;
        let half = self.spec.rtt.as_micros() as i64 / 2;
        let j = self.spec.jitter.as_micros() as i64;
        let delay = if j > 0 {
            half + self.rng.random_range(-j..=j)
        } else {
            half
        };
        let release = (done as i64 + delay.max(0)) as u64;
        let release = release.max(self.last_release_us);
        self.last_release_us = release;
        release
    }
}

/// Waits (on the link timer) until `unix_now_us()` reaches `at_us`.
pub async fn wait_until(at_us: u64) {
    if unix_now_us() < at_us {
        timer().wait_until_unix(at_us).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rtt_ms: u64, jitter_ms: u64, bps: Option<u64>) -> LinkSpec {
        LinkSpec {
            rtt: Duration::from_millis(rtt_ms),
            jitter: Duration::from_millis(jitter_ms),
            bandwidth_bps: bps,
        }
    }

    #[test]
    fn a_chunk_waits_half_the_round_trip() {
        let mut d = Direction::new(spec(100, 0, None));
        assert_eq!(d.release_us(1_000_000, 10), 1_050_000);
        assert_eq!(d.release_us(1_070_000, 10), 1_120_000);
    }

    #[test]
    fn jitter_stays_in_its_band_and_never_reorders() {
        // Chunks 100 ms apart, further than the ±20 ms band is wide: each
        // delay is its own draw, and the draws reach both edges.
        let mut d = Direction::new(spec(100, 20, None));
        let (mut lo, mut hi) = (u64::MAX, 0);
        for i in 0..10_000u64 {
            let at = 1_000_000 + i * 100_000;
            let delay = d.release_us(at, 100) - at;
            assert!((30_000..=70_000).contains(&delay), "{delay}");
            lo = lo.min(delay);
            hi = hi.max(delay);
        }
        assert!(lo <= 30_100 && hi >= 69_900, "{lo}..{hi}");
        // Chunks 1 ms apart: a chunk drawn shorter than the one ahead of it
        // waits for it, so none leaves first, and none waits past the band.
        let mut d = Direction::new(spec(100, 20, None));
        let mut last = 0;
        for i in 0..10_000u64 {
            let at = 1_000_000 + i * 1_000;
            let r = d.release_us(at, 100);
            assert!(r >= last, "chunk {i} released before the one ahead of it");
            assert!(r - at <= 70_000, "{}", r - at);
            last = r;
        }
    }

    #[test]
    fn bandwidth_serialises_chunks_one_after_another() {
        // 1 Mbit/s: 1,250 bytes take 10 ms on the link.
        let mut d = Direction::new(spec(0, 0, Some(1_000_000)));
        assert_eq!(d.release_us(0, 1_250), 10_000);
        // The next arrives while the link is busy: it waits its turn.
        assert_eq!(d.release_us(5_000, 1_250), 20_000);
        // After an idle gap it starts at once.
        assert_eq!(d.release_us(100_000, 125), 101_000);
        // With a round trip, the delay comes after the serialisation.
        let mut d = Direction::new(spec(40, 0, Some(1_000_000)));
        assert_eq!(d.release_us(0, 1_250), 30_000);
    }
}
