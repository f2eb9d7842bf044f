//! What receivers and senders record: latency histograms, the timeline, and
//! the delivery audit.
//!
//! Clients record into a small fixed number of shards (each a histogram set
//! behind a `std::sync::Mutex`, taken for a few hundred nanoseconds), which
//! are merged at the end. Memory depends on the shard count and the run's
//! length in seconds, not on the number of messages.

use chatbench_results::run_file::MAX_ERROR_CAUSES;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

pub use chatbench_results::hist::{new_histogram, HIST_MAX_US};

pub use chatbench_results::measurement::{timeline_histogram, Histograms};

/// Which histogram a value goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Send lag.
    SendLag,
    /// Connect time.
    Connect,
    /// Poll round trip.
    Request,
    /// Short-poll tick lag.
    PollLag,
    /// A client's first stream: its first message's server stamp to
    /// arrival.
    FirstEvent,
    /// How long a connection the other side ended had lived.
    CutLived,
}

/// The parts of one delivery's latency, in µs, on one clock. They add up to
/// the latency exactly: `up + wait + down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Intended send time to the server stamp.
    pub up: u64,
    /// Server stamp to the send of the poll that fetched the message.
    pub wait: u64,
    /// From there to receipt.
    pub down: u64,
}

impl Parts {
    /// Splits a delivery of a message intended at `sent`, stamped by the
    /// server at `server` and received at `received` (µs on the run clock),
    /// fetched by a poll sent at `poll` (None for streams). None when the
    /// stamps are out of order, which only differing clocks produce.
    pub fn split(sent: u64, server: u64, poll: Option<u64>, received: u64) -> Option<Parts> {
        let fetch = poll.map_or(server, |p| p.max(server));
        (sent <= server && fetch <= received).then_some(Parts {
            up: server - sent,
            wait: fetch - server,
            down: received - fetch,
        })
    }
}

/// One receipt of a chat message, as a receiver records it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// Receipt time minus intended send time, µs.
    pub latency: u64,
    /// Second of the intended send time, from the start of traffic.
    pub sent_second: usize,
    /// Second of the receipt, from the start of traffic.
    pub received_second: usize,
    /// Sent in the measured window (else warm-up: timeline only).
    pub measured: bool,
    /// The breakdown, when the stamps allow one.
    pub parts: Option<Parts>,
    /// The load generator's own receive time, µs, when known.
    pub receive: Option<u64>,
}

/// Shared recording state of one transport run.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Histograms>>,
    /// Audit counters.
    pub audit: AuditCounters,
    /// Connection drops and resumes.
    pub drops: DropCounters,
    /// What joining cost the clients of another stack's profile.
    pub join: JoinCounters,
}

/// What joining a room cost, summed over the clients that joined; see
/// [`chatbench_results::run_file::JoinCounts`].
#[derive(Debug, Default)]
pub struct JoinCounters {
    clients: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
    time_us: AtomicU64,
    max_time_us: AtomicU64,
}

impl JoinCounters {
    /// One client joined, at the cost of `bytes` (both ways) and
    /// `requests`, `time_us` after its first connect.
    pub fn joined(&self, bytes: u64, requests: u64, time_us: u64) {
        self.clients.fetch_add(1, Relaxed);
        self.time_us.fetch_add(time_us, Relaxed);
        self.max_time_us.fetch_max(time_us, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        self.requests.fetch_add(requests, Relaxed);
    }

    /// The sums, when some client joined.
    pub fn counts(&self) -> Option<chatbench_results::run_file::JoinCounts> {
        let clients = self.clients.load(Relaxed);
        (clients > 0).then(|| chatbench_results::run_file::JoinCounts {
            clients,
            bytes: self.bytes.load(Relaxed),
            requests: self.requests.load(Relaxed),
            time_us: self.time_us.load(Relaxed),
            max_time_us: self.max_time_us.load(Relaxed),
        })
    }
}

/// Counters of connection drops (`network.drop_every`), shared by all
/// clients; see [`chatbench_results::run_file::DropCounts`].
#[derive(Debug, Default)]
pub struct DropCounters {
    /// Drops made.
    pub drops: AtomicU64,
    /// TCP connections opened to resume.
    pub reconnects: AtomicU64,
    /// Bytes read on cut connections after the cut.
    pub bytes_after_cut: AtomicU64,
    /// Bytes of resuming requests and their response heads.
    pub resume_bytes: AtomicU64,
    /// Messages thrown away because they arrived on a cut connection.
    pub discarded: AtomicU64,
}

impl DropCounters {
    /// The counts now.
    pub fn counts(&self) -> chatbench_results::run_file::DropCounts {
        chatbench_results::run_file::DropCounts {
            drops: self.drops.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            bytes_after_cut: self.bytes_after_cut.load(Relaxed),
            resume_bytes: self.resume_bytes.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
        }
    }
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
    /// `errors` by cause ([`AuditCounters::error`]); errors are rare, so
    /// one lock is fine.
    pub causes: Mutex<BTreeMap<String, u64>>,
    /// Sum of the JSON sizes of received chat messages (not control ones).
    pub payload_bytes: AtomicU64,
    /// How many sizes `payload_bytes` sums.
    pub payload_count: AtomicU64,
    /// Receipts in the measured window so far (for the progress bar).
    pub live_delivered: AtomicU64,
    /// Measured deliveries whose stamps were out of order (server stamp
    /// before the intended send, or receipt before the fetch): the clocks
    /// of sender, server and receiver differ, and the breakdown leaves them
    /// out.
    pub clock_skewed: AtomicU64,
    /// Clients whose first stream delivered no message.
    pub silent_streams: AtomicU64,
}

impl AuditCounters {
    /// Counts an error: `what` failed (`connect`, `poll`, ...) because of
    /// `why`. The cause is `"<what>: <why>"`, cut to 160 bytes; past
    /// [`MAX_ERROR_CAUSES`] distinct causes, new ones count under
    /// `"<what>: other causes"`, so a flood of distinct messages cannot
    /// grow memory or run.json.
    pub fn error(&self, what: &str, why: &str) {
        self.errors.fetch_add(1, Relaxed);
        let mut cause = format!("{what}: {}", why.trim());
        cause.truncate(cause.floor_char_boundary(160));
        let mut causes = self.causes.lock().unwrap_or_else(PoisonError::into_inner);
        if !causes.contains_key(&cause) && causes.len() >= MAX_ERROR_CAUSES {
            cause = format!("{what}: other causes");
        }
        *causes.entry(cause).or_default() += 1;
    }

    /// The causes counted so far.
    pub fn causes(&self) -> BTreeMap<String, u64> {
        self.causes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The counts now, as plain numbers.
    pub fn counts(&self) -> chatbench_results::measurement::AuditCounts {
        chatbench_results::measurement::AuditCounts {
            sent: self.sent.load(Relaxed),
            expected: self.expected.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            missed: self.missed.load(Relaxed),
            receipts: self.receipts.load(Relaxed),
            errors: self.errors.load(Relaxed),
            payload_bytes: self.payload_bytes.load(Relaxed),
            payload_count: self.payload_count.load(Relaxed),
            clock_skewed: self.clock_skewed.load(Relaxed),
            silent_streams: self.silent_streams.load(Relaxed),
        }
    }
}

impl Recorder {
    /// A recorder with `shards` shards.
    pub fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Histograms::new()))
                .collect(),
            audit: AuditCounters::default(),
            drops: DropCounters::default(),
            join: JoinCounters::default(),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Histograms> {
        self.shards[(key % self.shards.len() as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one receipt under a single lock: the timeline always, the
    /// latency and its breakdown when it was measured.
    pub fn delivery(&self, key: u64, d: &Delivery) {
        let v = d.latency.clamp(1, HIST_MAX_US);
        let mut h = self.shard(key);
        if h.received.len() <= d.received_second {
            h.received.resize(d.received_second + 1, 0);
        }
        h.received[d.received_second] += 1;
        while h.timeline.len() <= d.sent_second {
            h.timeline.push(timeline_histogram());
        }
        let _ = h.timeline[d.sent_second].record(v);
        if !d.measured {
            return;
        }
        let _ = h.latency.record(v);
        // Parts are recorded as they are (0 included, which the histogram
        // holds), so their means add up to the latency's mean.
        if let Some(p) = d.parts {
            let _ = h.up_leg.record(p.up.min(HIST_MAX_US));
            let _ = h.poll_wait.record(p.wait.min(HIST_MAX_US));
            let _ = h.down_leg.record(p.down.min(HIST_MAX_US));
        }
        if let Some(r) = d.receive {
            let _ = h.receive.record(r.min(HIST_MAX_US));
        }
    }

    /// Records the latency of a measured message sent while its receiver
    /// was away (connection drops).
    pub fn away(&self, key: u64, us: u64) {
        let _ = self.shard(key).away.record(us.clamp(1, HIST_MAX_US));
    }

    /// Records `us` into the histogram `m`.
    pub fn record(&self, key: u64, m: Metric, us: u64) {
        let v = us.clamp(1, HIST_MAX_US);
        let mut h = self.shard(key);
        let _ = match m {
            Metric::SendLag => h.send_lag.record(v),
            Metric::Connect => h.connect.record(v),
            Metric::Request => h.request.record(v),
            Metric::FirstEvent => h.first_event.record(v),
            Metric::CutLived => h.cut_lived.record(v),
            // A tick can be exactly on time: keep the 0.
            Metric::PollLag => h.poll_lag.record(us.min(HIST_MAX_US)),
        };
    }

    /// Records the time since `start` into the histogram `m`.
    pub fn since(&self, key: u64, m: Metric, start: tokio::time::Instant) {
        self.record(key, m, start.elapsed().as_micros() as u64);
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

    /// The highest sequence number seen with every one before it seen (or
    /// skipped as missed); 0 before any.
    pub fn seen_through(&self) -> u64 {
        self.next.saturating_sub(1)
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
            r.delivery(
                i,
                &Delivery {
                    latency: 1000 + i,
                    sent_second: (i / 50) as usize,
                    received_second: (i / 50) as usize,
                    measured: true,
                    parts: Parts::split(0, 400, Some(600), 1000 + i),
                    receive: Some(3),
                },
            );
            r.record(i, Metric::SendLag, 5);
        }
        let h = r.merged();
        assert_eq!(h.latency.len(), 100);
        assert_eq!(h.send_lag.len(), 100);
        assert_eq!(h.timeline.len(), 2);
        assert_eq!(h.timeline[0].len() + h.timeline[1].len(), 100);
        assert_eq!(h.latency.min(), 1000);
        assert_eq!(h.up_leg.len(), 100);
        assert_eq!(h.poll_wait.min(), 200);
        assert_eq!(h.receive.max(), 3);
    }

    #[test]
    fn parts_add_up_and_refuse_out_of_order_stamps() {
        // A stream: no poll, so no wait.
        assert_eq!(
            Parts::split(100, 150, None, 190),
            Some(Parts {
                up: 50,
                wait: 0,
                down: 40
            })
        );
        // A poll sent after the message arrived at the server waited for it.
        let p = Parts::split(100, 150, Some(400), 450).unwrap();
        assert_eq!((p.up, p.wait, p.down), (50, 250, 50));
        assert_eq!(p.up + p.wait + p.down, 450 - 100);
        // A poll that was already waiting: no wait.
        assert_eq!(Parts::split(100, 150, Some(120), 170).unwrap().wait, 0);
        // A server stamp before the intended send: clocks differ.
        assert_eq!(Parts::split(100, 90, None, 190), None);
        assert_eq!(Parts::split(100, 150, None, 140), None);
    }

    #[test]
    fn errors_are_counted_by_cause_and_the_causes_are_bounded() {
        let a = AuditCounters::default();
        a.error("connect", "Connection refused (os error 111)");
        a.error("connect", "Connection refused (os error 111)");
        a.error("poll", &"x".repeat(500));
        for i in 0..100 {
            a.error("publish", &format!("503 reason {i}"));
        }
        let causes = a.causes();
        assert_eq!(a.errors.load(Relaxed), 103);
        assert_eq!(causes.values().sum::<u64>(), 103);
        assert_eq!(causes["connect: Connection refused (os error 111)"], 2);
        assert_eq!(causes[&format!("poll: {}", "x".repeat(154))], 1);
        // 2 causes above, then 30 publish causes, then the rest in one.
        assert_eq!(causes.len(), MAX_ERROR_CAUSES + 1);
        assert_eq!(causes["publish: other causes"], 70);
    }
}
