//! One direction of the packet-level link, as a pure function of the
//! packets offered to it: what Mahimahi's `mm-loss`, `mm-link` and
//! `mm-delay` shells do in a row, packet by packet.
//!
//! A packet offered at time `t`:
//! 1. may be lost: independently with probability `loss`, or in bursts
//!    (a Gilbert-Elliott chain whose bad state loses every packet, with the
//!    same mean loss and the given mean burst length);
//! 2. joins the bottleneck queue, unless the queue is full (drop-tail, in
//!    bytes or packets);
//! 3. leaves the queue at the link's pace: a fixed rate, or a trace's
//!    delivery opportunities (1,500 bytes each; an opportunity with nothing
//!    queued is lost, a packet larger than what is left of one waits for
//!    the next, as in Mahimahi's link queue);
//! 4. arrives one propagation delay later, plus a uniform jitter that
//!    never reorders packets, unless `reorder` is set (then a packet whose
//!    jitter drew short may overtake one that drew long, as with netem).
//!
//! Everything is computed when the packet is offered, so the forwarder only
//! waits for each packet's arrival time.

use chatbench_results::trace::{Trace, OPPORTUNITY_BYTES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::sync::Arc;

/// How fast the bottleneck drains.
#[derive(Debug, Clone, PartialEq)]
pub enum Capacity {
    /// No bottleneck: a packet leaves when it arrives.
    Unlimited,
    /// A fixed rate, bits per second.
    Rate(u64),
    /// A trace's delivery opportunities, from the link's start.
    Trace(Arc<Trace>),
}

/// How packets are lost before the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// None.
    None,
    /// Each packet independently with this probability.
    Independent(f64),
    /// A Gilbert-Elliott chain: in its bad state every packet is lost; the
    /// long-run share of lost packets is `rate`, and a run of losses is
    /// `mean_burst` packets long on average.
    Bursty {
        /// The mean loss rate.
        rate: f64,
        /// The mean number of packets lost in a row.
        mean_burst: f64,
    },
}

/// The bottleneck queue's limit (drop-tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// No limit.
    Unbounded,
    /// At most this many bytes waiting.
    Bytes(u64),
    /// At most this many packets waiting.
    Packets(u64),
}

/// One direction's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionSpec {
    /// Propagation delay, µs.
    pub delay_us: u64,
    /// Uniform jitter of the delay, ± µs (at most `delay_us`).
    pub jitter_us: u64,
    /// The jitter may reorder packets.
    pub reorder: bool,
    /// Loss before the queue.
    pub loss: Loss,
    /// The queue's limit.
    pub queue: QueueLimit,
    /// The drain.
    pub capacity: Capacity,
}

/// What became of an offered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Lost on the link (the loss model).
    Lost,
    /// Dropped at the full queue.
    QueueFull,
    /// Delivered at this time, µs (on the clock of the offers).
    Arrives(u64),
}

/// Counts of what one direction did: run.json's own record of it.
pub use chatbench_results::run_file::LinkDirection as DirectionStats;

/// One direction of the link.
#[derive(Debug)]
pub struct Direction {
    spec: DirectionSpec,
    rng: ChaCha8Rng,
    /// The Gilbert-Elliott chain is in its bad state.
    bad: bool,
    /// Packets in the queue: (when each leaves it, its bytes).
    queued: VecDeque<(u64, u64)>,
    queued_bytes: u64,
    /// A fixed rate: when the link has sent everything given to it, µs.
    free_at_us: u64,
    /// A trace: the opportunity in use, and the bytes of it already used.
    opportunity: u64,
    used: u64,
    /// The latest arrival so far, µs: nothing arrives before it.
    last_arrival_us: u64,
    /// When the link started, µs (a trace's time 0).
    start_us: u64,
    stats: DirectionStats,
}

impl Direction {
    /// A direction that starts at `start_us`, drawing from the stream
    /// `seed`.
    pub fn new(spec: DirectionSpec, start_us: u64, seed: u64) -> Direction {
        Direction {
            spec,
            rng: ChaCha8Rng::seed_from_u64(seed),
            bad: false,
            queued: VecDeque::new(),
            queued_bytes: 0,
            free_at_us: start_us,
            opportunity: 0,
            used: 0,
            last_arrival_us: start_us,
            start_us,
            stats: DirectionStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> DirectionStats {
        self.stats
    }

    /// Offers a packet of `bytes` at `now_us`.
    pub fn offer(&mut self, now_us: u64, bytes: u64) -> Fate {
        self.stats.offered += 1;
        if self.lose() {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        while self.queued.front().is_some_and(|&(at, _)| at <= now_us) {
            if let Some((_, b)) = self.queued.pop_front() {
                self.queued_bytes -= b;
            }
        }
        let full = match self.spec.queue {
            QueueLimit::Unbounded => false,
            QueueLimit::Bytes(max) => self.queued_bytes + bytes > max,
            QueueLimit::Packets(max) => self.queued.len() as u64 >= max,
        };
        if full {
            self.stats.queue_drops += 1;
            return Fate::QueueFull;
        }
        let leaves = self.leave_time(now_us, bytes);
        if leaves > now_us {
            self.queued.push_back((leaves, bytes));
            self.queued_bytes += bytes;
        }
        let jitter = if self.spec.jitter_us > 0 {
            self.rng
                .random_range(-(self.spec.jitter_us as i64)..=self.spec.jitter_us as i64)
        } else {
            0
        };
        let mut arrives = (leaves + self.spec.delay_us)
            .saturating_add_signed(jitter)
            .max(leaves);
        if !self.spec.reorder {
            arrives = arrives.max(self.last_arrival_us);
        }
        self.last_arrival_us = self.last_arrival_us.max(arrives);
        self.stats.delivered += 1;
        self.stats.delivered_bytes += bytes;
        Fate::Arrives(arrives)
    }

    /// Draws the loss model for one packet.
    fn lose(&mut self) -> bool {
        match self.spec.loss {
            Loss::None => false,
            Loss::Independent(p) => self.rng.random_bool(p.clamp(0.0, 1.0)),
            Loss::Bursty { rate, mean_burst } => {
                // Leave the bad state with 1 / mean_burst, so a burst lasts
                // mean_burst packets on average; enter it so that the share
                // of time in it is `rate`: p_gb = rate / (mean_burst (1 - rate)).
                let rate = rate.clamp(0.0, 0.999_999);
                let p_bg = (1.0 / mean_burst.max(1.0)).min(1.0);
                let p_gb = (rate * p_bg / (1.0 - rate)).min(1.0);
                let flip = if self.bad { p_bg } else { p_gb };
                if self.rng.random_bool(flip) {
                    self.bad = !self.bad;
                }
                self.bad
            }
        }
    }

    /// When a packet of `bytes` that joins the queue at `now_us` leaves it.
    fn leave_time(&mut self, now_us: u64, bytes: u64) -> u64 {
        match &self.spec.capacity {
            Capacity::Unlimited => now_us,
            Capacity::Rate(bps) => {
                let start = self.free_at_us.max(now_us);
                let send_us = (bytes * 8 * 1_000_000).div_ceil((*bps).max(1));
                self.free_at_us = start + send_us;
                self.free_at_us
            }
            Capacity::Trace(trace) => {
                let since = now_us.saturating_sub(self.start_us);
                // Opportunities that passed with nothing queued are lost.
                let first = trace.first_at_or_after(since);
                if first > self.opportunity {
                    self.opportunity = first;
                    self.used = 0;
                }
                let mut left = bytes;
                loop {
                    let room = OPPORTUNITY_BYTES - self.used;
                    if left <= room {
                        self.used += left;
                        break;
                    }
                    left -= room;
                    self.opportunity += 1;
                    self.used = 0;
                }
                let at = self.start_us + trace.at_us(self.opportunity);
                if self.used == OPPORTUNITY_BYTES {
                    self.opportunity += 1;
                    self.used = 0;
                }
                at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(loss: Loss, queue: QueueLimit, capacity: Capacity) -> DirectionSpec {
        DirectionSpec {
            delay_us: 0,
            jitter_us: 0,
            reorder: false,
            loss,
            queue,
            capacity,
        }
    }

    /// With independent loss p over n packets, the count lost is within
    /// four standard deviations of the binomial's mean.
    #[test]
    fn independent_loss_is_binomial() {
        let n = 100_000u64;
        for p in [0.005, 0.02, 0.05] {
            let mut d = Direction::new(
                spec(
                    Loss::Independent(p),
                    QueueLimit::Unbounded,
                    Capacity::Unlimited,
                ),
                0,
                7,
            );
            for i in 0..n {
                d.offer(i * 10, 1500);
            }
            let lost = d.stats().lost as f64;
            let mean = n as f64 * p;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (lost - mean).abs() < 4.0 * sd,
                "p {p}: lost {lost}, mean {mean} ± {sd}"
            );
        }
    }

    /// A Gilbert-Elliott setting loses its rate on average, in runs of its
    /// mean burst length.
    #[test]
    fn bursty_loss_has_its_rate_and_mean_burst() {
        let n = 400_000u64;
        let (rate, mean_burst) = (0.02, 4.0);
        let mut d = Direction::new(
            spec(
                Loss::Bursty { rate, mean_burst },
                QueueLimit::Unbounded,
                Capacity::Unlimited,
            ),
            0,
            11,
        );
        let (mut bursts, mut in_burst) = (0u64, false);
        for i in 0..n {
            let lost = d.offer(i, 100) == Fate::Lost;
            if lost && !in_burst {
                bursts += 1;
            }
            in_burst = lost;
        }
        let lost = d.stats().lost as f64;
        let measured_rate = lost / n as f64;
        let measured_burst = lost / bursts as f64;
        assert!(
            (measured_rate - rate).abs() < 0.1 * rate,
            "rate {measured_rate}"
        );
        assert!(
            (measured_burst - mean_burst).abs() < 0.1 * mean_burst,
            "mean burst {measured_burst}"
        );
    }

    /// A trace-driven link carries the trace's bytes per second: 10 s of
    /// saturating offers deliver the trace's capacity within 3%.
    #[test]
    fn a_trace_link_carries_the_traces_rate() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scenarios/traces/Verizon-LTE-short.down"
        ))
        .unwrap();
        let trace = Arc::new(Trace::parse(&text, "verizon").unwrap());
        let mut d = Direction::new(
            spec(
                Loss::None,
                QueueLimit::Unbounded,
                Capacity::Trace(trace.clone()),
            ),
            0,
            1,
        );
        let horizon_us = 10_000_000;
        let (mut t, mut carried) = (0u64, 0u64);
        // Offer far more than the link carries, a 1,500-byte packet every
        // 50 µs (240 Mbit/s), and count what leaves within 10 s.
        while t < horizon_us {
            if let Fate::Arrives(at) = d.offer(t, 1500) {
                if at <= horizon_us {
                    carried += 1500;
                }
            }
            t += 50;
        }
        let expected: u64 = (0..)
            .map(|n| trace.at_us(n))
            .take_while(|&at| at <= horizon_us)
            .count() as u64
            * OPPORTUNITY_BYTES;
        let ratio = carried as f64 / expected as f64;
        assert!(
            (ratio - 1.0).abs() < 0.03,
            "carried {carried} of {expected}"
        );
    }

    /// A queue of N bytes caps the delay it adds at N / capacity.
    #[test]
    fn a_byte_queue_caps_the_added_delay() {
        let bps = 1_000_000;
        let limit = 15_000;
        let mut d = Direction::new(
            spec(Loss::None, QueueLimit::Bytes(limit), Capacity::Rate(bps)),
            0,
            1,
        );
        let cap_us = limit * 8 * 1_000_000 / bps;
        let mut worst = 0;
        let mut drops = 0;
        for i in 0..10_000u64 {
            // 10 Mbit/s offered into 1 Mbit/s.
            let now = i * 1_200;
            match d.offer(now, 1500) {
                Fate::Arrives(at) => worst = worst.max(at - now),
                Fate::QueueFull => drops += 1,
                Fate::Lost => unreachable!("no loss model"),
            }
        }
        assert!(drops > 8_000, "{drops}");
        assert!(worst <= cap_us, "worst {worst} µs over the cap {cap_us}");
        assert!(worst >= cap_us - 12_000, "the queue filled: {worst}");
    }

    /// Packets in a packet-limited queue: at most N wait.
    #[test]
    fn a_packet_queue_holds_at_most_n() {
        let mut d = Direction::new(
            spec(Loss::None, QueueLimit::Packets(3), Capacity::Rate(12_000)),
            0,
            1,
        );
        // 1,500 bytes at 12 kbit/s take 1 s each: all offered at once.
        let fates: Vec<Fate> = (0..5).map(|_| d.offer(0, 1500)).collect();
        assert_eq!(
            fates,
            [
                Fate::Arrives(1_000_000),
                Fate::Arrives(2_000_000),
                Fate::Arrives(3_000_000),
                Fate::QueueFull,
                Fate::QueueFull,
            ]
        );
        assert_eq!(d.offer(1_000_000, 1500), Fate::Arrives(4_000_000));
    }

    /// Jitter never reorders, and the delay is added after the queue.
    #[test]
    fn jitter_keeps_the_order() {
        let mut d = Direction::new(
            DirectionSpec {
                delay_us: 25_000,
                jitter_us: 10_000,
                reorder: false,
                loss: Loss::None,
                queue: QueueLimit::Unbounded,
                capacity: Capacity::Unlimited,
            },
            0,
            3,
        );
        let mut last = 0;
        for i in 0..10_000u64 {
            let Fate::Arrives(at) = d.offer(i * 100, 100) else {
                panic!("no loss")
            };
            assert!(at >= last && at >= i * 100 + 15_000, "{at}");
            last = at;
        }
    }

    /// With `reorder`, a packet overtakes another when its jitter drew
    /// shorter by more than the gap between them: with ±10 ms of jitter and
    /// a packet every 0.1 ms, most do, and every delay stays within the
    /// jitter's band.
    #[test]
    fn reorder_lets_jitter_overtake() {
        let mut d = Direction::new(
            DirectionSpec {
                delay_us: 25_000,
                jitter_us: 10_000,
                reorder: true,
                loss: Loss::None,
                queue: QueueLimit::Unbounded,
                capacity: Capacity::Unlimited,
            },
            0,
            3,
        );
        let (mut last, mut overtaken) = (0, 0);
        for i in 0..10_000u64 {
            let Fate::Arrives(at) = d.offer(i * 100, 100) else {
                panic!("no loss")
            };
            let sent = i * 100;
            assert!((sent + 15_000..=sent + 35_000).contains(&at), "{at}");
            if at < last {
                overtaken += 1;
            }
            last = last.max(at);
        }
        assert!(
            overtaken > 5_000,
            "{overtaken} of 10,000 arrived before an earlier one"
        );
    }
}
