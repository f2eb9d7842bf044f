//! The [`Inbox`] every receiver hands its messages to: latency, the
//! delivery audit, and the end-of-run signal.

use super::context::{RunCtx, STOP_FROM};
use crate::clock::unix_now_us;
use crate::drops::AwaySpans;
use crate::record::{Delivery, Parts, Receipt, SeqTracker};
use chatbench_proto::{Message, Notice};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Takes a receiver's messages: latency, audit, and the end-of-run signal.
pub(super) struct Inbox {
    pub(super) ctx: Arc<RunCtx>,
    pub(super) key: u64,
    pub(super) seqs: SeqTracker,
    pub(super) stopped: bool,
    /// The current connection's last-read stamp ([`crate::wire::WireCounter::read_at`]).
    pub(super) read_at: Option<Arc<AtomicU64>>,
    /// When the client was away (connection drops); while it is, what
    /// arrives came on a cut connection and is thrown away.
    pub(super) spans: AwaySpans,
    /// A WebSocket sender's own name (`c<id>`), and where the latest
    /// intended send time of its own messages seen in the room goes: its
    /// sender waits for its last publish to come back before it ends.
    pub(super) own: Option<(String, tokio::sync::watch::Sender<u64>)>,
}

impl Inbox {
    pub(super) fn new(ctx: Arc<RunCtx>, key: u64) -> Inbox {
        Inbox {
            ctx,
            key,
            seqs: SeqTracker::starting_at(1),
            stopped: false,
            read_at: None,
            spans: AwaySpans::default(),
            own: None,
        }
    }

    /// The sequence number a resuming client asks to continue after: the
    /// last one it has seen with none missing before it.
    pub(super) fn resume_after(&self) -> u64 {
        self.seqs.seen_through()
    }

    /// Takes a message fetched by a poll sent at `poll_at` (run clock, µs),
    /// or pushed on a stream (`None`).
    pub(super) fn message(&mut self, m: &Message<'_>, poll_at: Option<u64>) {
        let unix_now = unix_now_us();
        let clock = self.ctx.run_clock();
        // A delivery ends when its bytes reach the client's socket (the
        // kernel's receive stamp): the load generator simulates many clients
        // on one CPU, and the time this one waited for the others to be
        // handled is the instrument's, reported apart as its receive time.
        let stamped = self
            .read_at
            .as_ref()
            .map(|r| r.load(Relaxed))
            .filter(|&at| at > 0 && at <= unix_now);
        let arrived = stamped.unwrap_or(unix_now).saturating_sub(clock.t0_unix_us);
        let audit = &self.ctx.rec.audit;
        audit.receipts.fetch_add(1, Relaxed);
        if self.spans.is_away() {
            // On a cut connection: fetched again after the resume.
            self.ctx.rec.drops.discarded.fetch_add(1, Relaxed);
            return;
        }
        if m.from == STOP_FROM {
            self.stopped = true;
            return;
        }
        match self.seqs.see(m.seq) {
            Receipt::Duplicate => {
                audit.duplicated.fetch_add(1, Relaxed);
                return;
            }
            Receipt::Reordered => {
                audit.reordered.fetch_add(1, Relaxed);
            }
            Receipt::InOrder => {}
        }
        let Some(sent) = m.sent_at else { return };
        if let Some((name, seen)) = &self.own {
            if m.from == name.as_str() {
                seen.send_if_modified(|v| {
                    let later = sent > *v;
                    *v = (*v).max(sent);
                    later
                });
            }
        }
        let (start, end) = self.ctx.window_us();
        if sent >= end {
            return;
        }
        // The timeline counts seconds from the start of traffic, warm-up
        // included; the histograms only take the measured window.
        let measured = sent >= start;
        let parts = clock
            .from_unix(m.server_at)
            .and_then(|server| Parts::split(sent, server, poll_at, arrived));
        if measured {
            audit.delivered.fetch_add(1, Relaxed);
            audit.live_delivered.fetch_add(1, Relaxed);
            if parts.is_none() {
                audit.clock_skewed.fetch_add(1, Relaxed);
            }
        }
        let receive = stamped.map(|at| unix_now - at);
        if measured && self.spans.covers(sent) {
            self.ctx.rec.away(self.key, arrived.saturating_sub(sent));
        }
        self.ctx.rec.delivery(
            self.key,
            &Delivery {
                latency: arrived.saturating_sub(sent),
                sent_second: (sent / 1_000_000) as usize,
                received_second: (arrived / 1_000_000) as usize,
                measured,
                parts,
                receive,
            },
        );
    }

    pub(super) fn missed(&mut self, n: &Notice) {
        if self.spans.is_away() {
            return;
        }
        self.ctx.rec.audit.missed.fetch_add(n.missed, Relaxed);
        self.seqs.skip_to(n.next);
    }

    pub(super) fn payload(&self, bytes: u64, count: u64) {
        let a = &self.ctx.rec.audit;
        a.payload_bytes.fetch_add(bytes, Relaxed);
        a.payload_count.fetch_add(count, Relaxed);
    }

    pub(super) fn json(&mut self, text: &[u8]) {
        if let Ok(m) = serde_json::from_slice::<Message<'_>>(text) {
            if m.from != STOP_FROM && !self.spans.is_away() {
                self.payload(text.len() as u64, 1);
            }
            self.message(&m, None);
        } else if let Ok(n) = serde_json::from_slice::<Notice>(text) {
            self.missed(&n);
        } else {
            self.ctx
                .count_error("unparseable message", String::from_utf8_lossy(text));
        }
    }

    pub(super) fn done(&self) -> bool {
        self.stopped || self.ctx.abort.is_cancelled()
    }
}
