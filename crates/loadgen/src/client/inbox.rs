//! The [`Inbox`] every receiver hands its messages to: latency, the
//! delivery audit, and the end-of-run signal.

use super::context::{RunCtx, STOP_FROM};
use crate::clock::unix_now_us;
use crate::drops::AwaySpans;
use crate::record::{Delivery, Metric, Parts, Receipt, SeqTracker};
use chatbench_proto::{Message, Notice};
use std::collections::HashMap;
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
    /// Another stack's profile: what each sender's numbers have shown.
    senders: HashMap<String, SeqTracker>,
    /// The client's first stream, while it has delivered nothing: when it
    /// was requested (run clock, µs).
    first_stream: FirstStream,
    /// The client's radio, told of each message as the one packet an ideal
    /// transport would spend on it.
    radio: Arc<crate::radio::ClientRadio>,
}

/// Where a client's first stream is ([`Inbox::stream_opened`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstStream {
    /// None opened yet.
    NotYet,
    /// Requested at this time (run clock, µs), nothing delivered yet.
    Waiting(u64),
    /// It delivered, or ended without.
    Over,
}

impl Inbox {
    pub(super) fn new(ctx: Arc<RunCtx>, key: u64) -> Inbox {
        let radio = ctx.dial.radios().client(key);
        Inbox {
            radio,
            ctx,
            key,
            seqs: SeqTracker::starting_at(1),
            stopped: false,
            read_at: None,
            spans: AwaySpans::default(),
            own: None,
            senders: HashMap::new(),
            first_stream: FirstStream::NotYet,
        }
    }

    /// A stream (SSE, WebSocket) requested at `requested` (run clock, µs)
    /// opened: the client's first one is watched until its first message
    /// ([`crate::record::Metric::FirstEvent`]). From the request, not the
    /// answer: a proxy that buffers may hold the answer's head too.
    pub(super) fn stream_opened(&mut self, requested: u64) {
        if self.first_stream == FirstStream::NotYet {
            self.first_stream = FirstStream::Waiting(requested);
        }
    }

    /// A stream ended: when it was the client's first and it delivered
    /// nothing, it counts as silent.
    pub(super) fn stream_ended(&mut self) {
        if let FirstStream::Waiting(_) = self.first_stream {
            self.first_stream = FirstStream::Over;
            self.ctx.rec.audit.silent_streams.fetch_add(1, Relaxed);
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
        let Some(arrival) = self.arrival() else {
            return;
        };
        if m.from == STOP_FROM {
            self.stopped = true;
            return;
        }
        let receipt = self.seqs.see(m.seq);
        if self.audited(receipt) {
            self.deliver(
                m.from.as_ref(),
                m.sent_at,
                Some(m.server_at),
                poll_at,
                arrival,
            );
        }
    }

    /// Takes a chat message of another stack's profile: its sender, its
    /// number when the profile has one (each sender numbers its messages
    /// from 1, and the audit follows each sender's numbers), and its send
    /// time. Such messages carry no server time stamp.
    pub(super) fn chat(&mut self, from: &str, id: Option<u64>, sent_at: Option<u64>) {
        let Some(arrival) = self.arrival() else {
            return;
        };
        let receipt = match id {
            // A sender's name is copied once, at its first message.
            Some(id) => match self.senders.get_mut(from) {
                Some(seen) => seen.see(id),
                None => {
                    let mut seen = SeqTracker::starting_at(1);
                    let receipt = seen.see(id);
                    self.senders.insert(from.to_owned(), seen);
                    receipt
                }
            },
            None => Receipt::InOrder,
        };
        if self.audited(receipt) {
            self.deliver(from, sent_at, None, None, arrival);
        }
    }

    /// When the message being taken arrived: the receive stamp and the
    /// time now, both µs since the UNIX epoch. None when it came on a cut
    /// connection, to be fetched again after the resume.
    fn arrival(&mut self) -> Option<(Option<u64>, u64)> {
        let unix_now = unix_now_us();
        // A delivery ends when its bytes reach the client's socket (the
        // kernel's receive stamp): the load generator simulates many clients
        // on one CPU, and the time this one waited for the others to be
        // handled is the instrument's, reported apart as its receive time.
        let stamped = self
            .read_at
            .as_ref()
            .map(|r| r.load(Relaxed))
            .filter(|&at| at > 0 && at <= unix_now);
        self.ctx.rec.audit.receipts.fetch_add(1, Relaxed);
        if self.spans.is_away() {
            self.ctx.rec.drops.discarded.fetch_add(1, Relaxed);
            return None;
        }
        Some((stamped, unix_now))
    }

    /// Counts a duplicate or reordered receipt; false for a duplicate,
    /// which is not delivered again.
    fn audited(&self, receipt: Receipt) -> bool {
        let audit = &self.ctx.rec.audit;
        match receipt {
            Receipt::Duplicate => {
                audit.duplicated.fetch_add(1, Relaxed);
                false
            }
            Receipt::Reordered => {
                audit.reordered.fetch_add(1, Relaxed);
                true
            }
            Receipt::InOrder => true,
        }
    }

    /// Records one delivery of a message `from` sent at `sent_at` (run
    /// clock), stamped by the server at `server_at` (UNIX µs) when the
    /// profile has it.
    fn deliver(
        &mut self,
        from: &str,
        sent_at: Option<u64>,
        server_at: Option<u64>,
        poll_at: Option<u64>,
        (stamped, unix_now): (Option<u64>, u64),
    ) {
        self.radio.message(stamped.unwrap_or(unix_now), 0, 0);
        let Some(sent) = sent_at else { return };
        let clock = self.ctx.run_clock();
        let arrived = stamped.unwrap_or(unix_now).saturating_sub(clock.t0_unix_us);
        if let Some((name, seen)) = &self.own {
            if from == name.as_str() {
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
        let server = server_at.and_then(|at| clock.from_unix(at));
        let parts = server.and_then(|server| Parts::split(sent, server, poll_at, arrived));
        if let FirstStream::Waiting(opened) = self.first_stream {
            self.first_stream = FirstStream::Over;
            // From the later of its stamp and the stream's request: a
            // message from before the stream is not held by it.
            if let Some(server) = server {
                let held = arrived.saturating_sub(server.max(opened));
                self.ctx.rec.record(self.key, Metric::FirstEvent, held);
            }
        }
        let audit = &self.ctx.rec.audit;
        if measured {
            audit.delivered.fetch_add(1, Relaxed);
            audit.live_delivered.fetch_add(1, Relaxed);
            if parts.is_none() && server_at.is_some() {
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
        self.stopped || self.ctx.abort.is_cancelled() || self.ctx.finish.is_cancelled()
    }
}
