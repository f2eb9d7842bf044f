//! What receivers and senders record: latency histograms, the timeline, and
//! the delivery audit.
//!
//! Clients record into a small fixed number of shards (each a histogram set
//! behind a `std::sync::Mutex`, taken for a few hundred nanoseconds), which
//! are merged at the end. Memory depends on the shard count and the run's
//! length in seconds, not on the number of messages.

use hdrhistogram::Histogram;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

/// Latency range: 1 µs to 1 h, 3 significant digits.
pub const HIST_MAX_US: u64 = 3_600_000_000;

/// A histogram of microseconds, 1 µs to 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static bounds are valid")
}

fn timeline_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 2).expect("static bounds are valid")
}

/// One shard's histograms.
#[derive(Debug)]
pub struct Histograms {
    /// Delivery latency: receive time minus intended send time.
    pub latency: Histogram<u64>,
    /// Send lag: actual send time minus intended send time.
    pub send_lag: Histogram<u64>,
    /// TCP connect plus handshake time of each connection.
    pub connect: Histogram<u64>,
    /// Round trip of each poll request (short and long).
    pub request: Histogram<u64>,
    /// Per second since traffic started (warm-up included): delivery latency
    /// by intended send time (2 significant digits).
    pub timeline: Vec<Histogram<u64>>,
    /// Per second since traffic started: messages received in that second.
    pub received: Vec<u64>,
}

impl Histograms {
    fn new() -> Histograms {
        Histograms {
            latency: new_histogram(),
            send_lag: new_histogram(),
            connect: new_histogram(),
            request: new_histogram(),
            timeline: Vec::new(),
            received: Vec::new(),
        }
    }

    fn merge(&mut self, o: &Histograms) {
        // Same bounds everywhere, so add cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.send_lag.add(&o.send_lag);
        let _ = self.connect.add(&o.connect);
        let _ = self.request.add(&o.request);
        for (i, h) in o.timeline.iter().enumerate() {
            while self.timeline.len() <= i {
                self.timeline.push(timeline_histogram());
            }
            let _ = self.timeline[i].add(h);
        }
        if self.received.len() < o.received.len() {
            self.received.resize(o.received.len(), 0);
        }
        for (i, n) in o.received.iter().enumerate() {
            self.received[i] += n;
        }
    }
}

/// Which histogram a value goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Send lag.
    SendLag,
    /// Connect time.
    Connect,
    /// Poll round trip.
    Request,
}

/// Shared recording state of one transport run.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Histograms>>,
    /// Audit counters.
    pub audit: AuditCounters,
}

/// Counters of the delivery audit, shared by all clients.
#[derive(Debug, Default)]
pub struct AuditCounters {
    /// Messages sent in the measured window (accepted by the server).
    pub sent: AtomicU64,
    /// Expected deliveries: for each sent message, the receivers in its room.
    pub expected: AtomicU64,
    /// First receipts of measured messages.
    pub delivered: AtomicU64,
    /// Receipts of a sequence number a receiver had already seen.
    pub duplicated: AtomicU64,
    /// Receipts below a sequence number the receiver had already seen.
    pub reordered: AtomicU64,
    /// Messages the server reported as `missed` (fell out of retention).
    pub missed: AtomicU64,
    /// Every message receipt, warm-up and control messages included (for the
    /// cross-check against the server's `messages_delivered`).
    pub receipts: AtomicU64,
    /// Failed requests, connects and publishes.
    pub errors: AtomicU64,
    /// Sum of the JSON sizes of received chat messages (not control ones).
    pub payload_bytes: AtomicU64,
    /// How many sizes `payload_bytes` sums.
    pub payload_count: AtomicU64,
    /// Receipts in the measured window so far (for the progress bar).
    pub live_delivered: AtomicU64,
}

impl Recorder {
    /// A recorder with `shards` shards.
    pub fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Histograms::new()))
                .collect(),
            audit: AuditCounters::default(),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Histograms> {
        self.shards[(key % self.shards.len() as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a delivery latency of `us` in measured second `second`.
    pub fn latency(&self, key: u64, us: u64, second: usize) {
        let v = us.clamp(1, HIST_MAX_US);
        let mut h = self.shard(key);
        let _ = h.latency.record(v);
        while h.timeline.len() <= second {
            h.timeline.push(timeline_histogram());
        }
        let _ = h.timeline[second].record(v);
    }

    /// Counts a receipt in second `second` of receive time.
    pub fn received(&self, key: u64, second: usize) {
        let mut h = self.shard(key);
        if h.received.len() <= second {
            h.received.resize(second + 1, 0);
        }
        h.received[second] += 1;
    }

    /// Records a warm-up latency in the timeline only.
    pub fn timeline(&self, key: u64, us: u64, second: usize) {
        let v = us.clamp(1, HIST_MAX_US);
        let mut h = self.shard(key);
        while h.timeline.len() <= second {
            h.timeline.push(timeline_histogram());
        }
        let _ = h.timeline[second].record(v);
    }

    /// Records `us` into the histogram `m`.
    pub fn record(&self, key: u64, m: Metric, us: u64) {
        let v = us.clamp(1, HIST_MAX_US);
        let mut h = self.shard(key);
        let _ = match m {
            Metric::SendLag => h.send_lag.record(v),
            Metric::Connect => h.connect.record(v),
            Metric::Request => h.request.record(v),
        };
    }

    /// All shards merged.
    pub fn merged(&self) -> Histograms {
        let mut out = Histograms::new();
        for s in &self.shards {
            out.merge(&s.lock().unwrap_or_else(PoisonError::into_inner));
        }
        out
    }

    /// p99 of the latency recorded so far, in µs (for the progress bar).
    pub fn live_p99(&self) -> u64 {
        let mut h = new_histogram();
        for s in &self.shards {
            let _ = h.add(&s.lock().unwrap_or_else(PoisonError::into_inner).latency);
        }
        h.value_at_quantile(0.99)
    }
}

/// What one receiver has seen of its room's sequence numbers: everything
/// below `next` plus a sparse set above it. In-order delivery keeps the set
/// empty, so memory stays flat however long the run.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    next: u64,
    above: BTreeSet<u64>,
    max: u64,
    started: bool,
}

/// How one receipt relates to what was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First receipt, in order.
    InOrder,
    /// First receipt, but after a higher sequence number.
    Reordered,
    /// Seen before.
    Duplicate,
}

impl SeqTracker {
    /// A tracker whose first expected sequence number is `first`.
    pub fn starting_at(first: u64) -> SeqTracker {
        SeqTracker {
            next: first,
            above: BTreeSet::new(),
            max: 0,
            started: true,
        }
    }

    /// Notes a receipt of `seq`.
    pub fn see(&mut self, seq: u64) -> Receipt {
        if !self.started {
            *self = SeqTracker::starting_at(seq);
        }
        if seq < self.next || self.above.contains(&seq) {
            return Receipt::Duplicate;
        }
        let reordered = seq < self.max;
        self.max = self.max.max(seq);
        if seq == self.next {
            self.next += 1;
            while self.above.remove(&self.next) {
                self.next += 1;
            }
        } else {
            self.above.insert(seq);
        }
        if reordered {
            Receipt::Reordered
        } else {
            Receipt::InOrder
        }
    }

    /// Skips sequence numbers reported as `missed`: continue after `next`.
    pub fn skip_to(&mut self, next: u64) {
        if !self.started {
            *self = SeqTracker::starting_at(next + 1);
        }
        while self.next <= next {
            self.above.remove(&self.next);
            self.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_classifies_receipts() {
        let mut t = SeqTracker::starting_at(1);
        assert_eq!(t.see(1), Receipt::InOrder);
        assert_eq!(t.see(2), Receipt::InOrder);
        assert_eq!(t.see(2), Receipt::Duplicate);
        assert_eq!(t.see(4), Receipt::InOrder);
        assert_eq!(t.see(3), Receipt::Reordered);
        assert_eq!(t.see(4), Receipt::Duplicate);
        assert_eq!(t.see(5), Receipt::InOrder);
        assert!(t.above.is_empty(), "{:?}", t.above);
        assert_eq!(t.next, 6);
        t.skip_to(9);
        assert_eq!(t.see(10), Receipt::InOrder);
        assert_eq!(t.see(8), Receipt::Duplicate);
    }

    #[test]
    fn recorder_merges_shards() {
        let r = Recorder::new(4);
        for i in 0..100u64 {
            r.latency(i, 1000 + i, (i / 50) as usize);
            r.record(i, Metric::SendLag, 5);
        }
        let h = r.merged();
        assert_eq!(h.latency.len(), 100);
        assert_eq!(h.send_lag.len(), 100);
        assert_eq!(h.timeline.len(), 2);
        assert_eq!(h.timeline[0].len() + h.timeline[1].len(), 100);
        assert_eq!(h.latency.min(), 1000);
    }
}
