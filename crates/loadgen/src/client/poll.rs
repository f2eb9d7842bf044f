//! The short and long polling receiver: `GET /rooms/{room}/messages` with
//! the cursor of the last answer, paced at the interval (short polling) or
//! at once again after each answer (long polling).

use super::context::{ClientSpec, RunCtx, STOP_FROM};
use super::dropper::{finish_cut, Dropper};
use super::inbox::Inbox;
use crate::clock::RunClock;
use crate::dial::{HttpConn, SharedH2};
use crate::drops::Away;
use crate::profile::Kind;
use crate::record::Metric;
use crate::Transport;
use chatbench_proto::{Notice, PollResponse};
use http::StatusCode;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;

/// What the wait for a short poll's next tick ended with.
enum Tick {
    /// Time to poll.
    Due,
    /// A drop came first; wait again.
    Dropped,
    /// The run aborted.
    Cancelled,
}

/// A short poller's schedule: a fixed interval with a per-client phase, as
/// browsers on independent timers would keep, on tokio's timer. That timer
/// rounds a deadline up to its next millisecond, so a poll leaves up to a
/// millisecond after its tick (recorded as poll lag; a browser's
/// `setInterval` is coarser still), but the worker that sleeps until it
/// wakes itself, and ticks due in the same millisecond go out together.
/// On the precise send timer each poll cost the timer thread a wake-up and
/// the runtime an unpark: 100 pollers every 2 ms made 2.5 times fewer
/// requests per CPU-second than back-to-back ones (results/README.md,
/// "Paced polls").
struct Ticks {
    interval_us: u64,
    next_us: u64,
}

impl Ticks {
    fn new(ctx: &RunCtx, id: u64) -> Ticks {
        let interval_us = (ctx.scenario.short_poll.interval.as_micros() as u64).max(1);
        let phase_us = (interval_us as f64 * (id as f64 * 0.618_033_988_75).fract()) as u64;
        Ticks {
            interval_us,
            next_us: phase_us,
        }
    }

    /// Waits for the next tick; a drop that comes first cuts the idle
    /// connection.
    async fn wait(
        &self,
        ctx: &RunCtx,
        clock: &RunClock,
        dropper: &mut Dropper,
        inbox: &mut Inbox,
        conn: &mut Option<HttpConn>,
        cancelled: &mut Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Tick {
        // On the epoch clock, not `clock.now_us()`, which stays 0 until
        // traffic starts: a poller that waits before then (a shard waits
        // for its start time) would otherwise sleep from the wrong origin.
        let at = clock.t0_unix_us + self.next_us;
        let wait = Duration::from_micros(at.saturating_sub(crate::clock::unix_now_us()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => Tick::Due,
            _ = dropper.due(ctx) => {
                // A drop between polls: the idle connection goes.
                let cut = conn.as_ref().map(|c| c.handles.cut.clone());
                dropper.drop_now(ctx, inbox, cut.as_ref());
                if let Some(c) = conn.take_if(|_| cut.is_some_and(|h| h.is_cut())) {
                    finish_cut(ctx, c).await;
                }
                Tick::Dropped
            }
            _ = cancelled => Tick::Cancelled,
        }
    }

    /// Records the lag behind the tick just due, and moves to the next;
    /// ticks missed while a poll was out are skipped, as a browser's
    /// setInterval does.
    fn advance(&mut self, ctx: &RunCtx, clock: &RunClock, id: u64) {
        let now = clock.now_us();
        if ctx.in_window(self.next_us) {
            ctx.rec
                .record(id, Metric::PollLag, now.saturating_sub(self.next_us));
        }
        self.next_us += self.interval_us;
        if self.next_us <= now {
            self.next_us +=
                (now - self.next_us) / self.interval_us * self.interval_us + self.interval_us;
        }
    }
}

/// Receives client `spec`'s room by polling until the run ends.
pub(super) async fn poll_receiver(
    ctx: Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    away: Arc<Away>,
    h2: &SharedH2,
) {
    let long = ctx.transport == Transport::LongPoll;
    let mut dropper = Dropper::new(&ctx, spec.id, away.clone());
    let wait_ms = ctx.scenario.long_poll.wait.as_millis();
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    let mut cursor = 0u64;
    let mut ticks = Ticks::new(&ctx, spec.id);
    let Some((c, clock)) = ctx.connected_then_started(spec.id, h2).await else {
        return;
    };
    let mut conn = Some(c);
    let mut target: Option<(u64, String)> = None;
    // One cancellation future for the client's life: a new one per request
    // locked the token's shared mutex twice per poll.
    let cancelled = ctx.abort.cancelled();
    tokio::pin!(cancelled);
    // An interval of 0 polls back to back: a closed loop, as wrk runs.
    let paced = !long && !ctx.scenario.short_poll.interval.is_zero();
    while !inbox.done() {
        if paced {
            let waited = ticks
                .wait(
                    &ctx,
                    &clock,
                    &mut dropper,
                    &mut inbox,
                    &mut conn,
                    &mut cancelled,
                )
                .await;
            match waited {
                Tick::Due => ticks.advance(&ctx, &clock, spec.id),
                Tick::Dropped => continue,
                Tick::Cancelled => break,
            }
        }
        if let Some(stale) = conn.take_if(|c| c.is_closed()) {
            stale.close().await;
        }
        let resuming = inbox.spans.is_away();
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                if resuming && !ctx.back_online(&clock, &away).await {
                    break;
                }
                match ctx.dial.http(spec.id, h2).await {
                    Ok(c) => {
                        if resuming {
                            ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
                        }
                        c
                    }
                    Err(e) => {
                        ctx.count_error("connect", e);
                        ctx.backoff().await;
                        continue;
                    }
                }
            }
        };
        if !inbox
            .read_at
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &c.handles.read_at))
        {
            inbox.read_at = Some(c.handles.read_at.clone());
        }
        // The target is written again only when the cursor moved: an
        // empty short poll repeats the last one.
        if target.as_ref().is_none_or(|(at, _)| *at != cursor) {
            target = Some((
                cursor,
                if long {
                    format!("/rooms/{room}/messages?after={cursor}&wait_ms={wait_ms}")
                } else {
                    format!("/rooms/{room}/messages?after={cursor}")
                },
            ));
        }
        let Some((_, this_target)) = &target else {
            break;
        };
        let start = Instant::now();
        let poll_at = clock.now_us();
        if resuming {
            inbox.spans.resumed(poll_at);
        }
        let cut = c.handles.cut.clone();
        let result = {
            let call = c.call(Kind::Poll, "GET", this_target, b"");
            tokio::pin!(call);
            loop {
                tokio::select! {
                    r = &mut call => break Some(r),
                    // A drop with the poll out: its answer, if it comes,
                    // is read and thrown away.
                    _ = dropper.due(&ctx) => {
                        dropper.drop_now(&ctx, &mut inbox, Some(&cut));
                    }
                    _ = &mut cancelled => break None,
                }
            }
        };
        let Some(result) = result else { break };
        if resuming {
            if let Ok((_, body, _)) = &result {
                ctx.rec
                    .drops
                    .resume_bytes
                    .fetch_add(c.first_exchange_bytes(body.len()), Relaxed);
            }
        }
        let away_now = inbox.spans.is_away();
        match result {
            Ok((StatusCode::OK, body, exchange)) => {
                ctx.rec.since(spec.id, Metric::Request, start);
                let taken = take_answer(&ctx, &mut inbox, &body, exchange, poll_at, away_now);
                if let Some(next) = taken {
                    cursor = next;
                }
                conn = Some(c);
            }
            Ok((status, b, _)) => {
                // A proxy answered in the server's place (its timeout).
                if [StatusCode::BAD_GATEWAY, StatusCode::GATEWAY_TIMEOUT].contains(&status) {
                    ctx.rec.since(spec.id, Metric::CutLived, start);
                }
                ctx.count_error("poll", format!("{status} {}", String::from_utf8_lossy(&b)));
                conn = Some(c);
                ctx.backoff().await;
            }
            // The server closed the connection it saw cut.
            Err(_) if cut.is_cut() => finish_cut(&ctx, c).await,
            Err(e) => {
                ctx.rec.since(spec.id, Metric::CutLived, start);
                ctx.count_error("poll", e);
                c.close().await;
                ctx.backoff().await;
            }
        }
        if let Some(c) = conn.take_if(|_| cut.is_cut()) {
            finish_cut(&ctx, c).await;
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

/// Hands a poll's answer (`body`, which cost `exchange` bytes both ways,
/// sent at `poll_at`) to `inbox`, and counts what it cost besides its
/// messages. Returns the cursor to poll from next, unless the client was
/// away (`away_now`: the answer came on a cut connection).
fn take_answer(
    ctx: &RunCtx,
    inbox: &mut Inbox,
    body: &[u8],
    exchange: u64,
    poll_at: u64,
    away_now: bool,
) -> Option<u64> {
    let p = match serde_json::from_slice::<PollResponse<'_>>(body) {
        Ok(p) => p,
        Err(e) => {
            ctx.count_error("poll answer", e);
            return None;
        }
    };
    if p.messages.is_empty() {
        ctx.wire.empty_polls.fetch_add(1, Relaxed);
    }
    // The answer is `{"messages":[m1,..,mn],"next":N,"missed":K}`: what the
    // poll costs besides its messages is the exchange less what is between
    // the brackets.
    let envelope = envelope_len(p.next, p.missed);
    let inside = (body.len() as u64).saturating_sub(envelope);
    ctx.wire.answered_polls.fetch_add(1, Relaxed);
    ctx.wire
        .poll_overhead_bytes
        .fetch_add(exchange.saturating_sub(inside), Relaxed);
    if p.missed > 0 {
        inbox.missed(&Notice {
            missed: p.missed,
            next: p.next - p.messages.len() as u64,
        });
    }
    // Around the messages' own bytes: what is left after the envelope and
    // commas is their exact size.
    let chat = p.messages.iter().filter(|m| m.from != STOP_FROM).count() as u64;
    if chat == p.messages.len() as u64 && chat > 0 && !away_now {
        inbox.payload(inside - (chat - 1), chat);
    }
    for m in &p.messages {
        inbox.message(m, Some(poll_at));
    }
    (!away_now).then_some(p.next)
}

/// The length of a poll answer's JSON without its messages,
/// `{"messages":[],"next":N,"missed":K}`, counted rather than written: it
/// is on the per-poll path.
fn envelope_len(next: u64, missed: u64) -> u64 {
    let digits = |v: u64| v.checked_ilog10().map_or(1, |d| d as u64 + 1);
    r#"{"messages":[],"next":,"missed":}"#.len() as u64 + digits(next) + digits(missed)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_answers_envelope_is_counted_as_it_would_be_written() {
        for (next, missed) in [(0, 0), (9, 10), (10, 99), (123_456, 0), (u64::MAX, 7)] {
            let written = format!("{{\"messages\":[],\"next\":{next},\"missed\":{missed}}}");
            assert_eq!(
                envelope_len(next, missed),
                written.len() as u64,
                "{written}"
            );
        }
    }
}
