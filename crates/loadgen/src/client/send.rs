//! The open-loop send loop: each sender publishes at its schedule's
//! intended times, late sends are recorded as send lag, and a publish the
//! server accepted counts its room's expected deliveries.

use super::context::RunCtx;
use super::dropper::finish_cut;
use crate::clock::RunClock;
use crate::dial::SharedH2;
use crate::drops::Away;
use crate::profile::Kind;
use crate::record::Metric;
use crate::schedule::SendSchedule;
use chatbench_proto::PublishRequest;
use http::StatusCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The JSON body of client `id`'s publish for intended time `at_us`.
pub(super) fn publish_body(ctx: &RunCtx, id: u64, at_us: u64) -> String {
    serde_json::to_string(&PublishRequest {
        from: format!("c{id}").into(),
        body: ctx.body.as_str().into(),
        sent_at: Some(at_us),
    })
    .unwrap_or_default()
}

/// Counts a publish the server accepted.
pub(super) fn sent_ok(ctx: &RunCtx, at_us: u64) {
    if ctx.in_window(at_us) {
        let a = &ctx.rec.audit;
        a.sent.fetch_add(1, Relaxed);
        a.expected
            .fetch_add(ctx.scenario.clients.clients_per_room as u64, Relaxed);
    }
}

/// Waits for `at_us` on the run clock, spinning the last microseconds
/// ([`SendTimer::wait_until_spinning`]): for tasks on the send thread.
/// False when the run aborted first.
async fn wait_until_spinning(ctx: &RunCtx, clock: &RunClock, at_us: u64) -> bool {
    tokio::select! {
        _ = ctx.timer.wait_until_spinning(clock, at_us) => !ctx.abort.is_cancelled(),
        _ = ctx.abort.cancelled() => false,
    }
}

/// Waits for the next intended send time; returns it (µs after the start
/// of traffic) and records the lag of the actual send behind it, or None
/// when the schedule is over or the run aborted.
///
/// `resumed_us` is when the sender last got its connection back after a
/// drop (0 without drops): a message due while it was offline is late by
/// the network's doing, so its lag counts from then.
pub(super) async fn next_send(
    ctx: &RunCtx,
    clock: &RunClock,
    key: u64,
    schedule: &mut SendSchedule,
    resumed_us: u64,
) -> Option<u64> {
    let at_us = schedule.next()?.as_micros() as u64;
    if !wait_until_spinning(ctx, clock, at_us).await {
        return None;
    }
    let lag = clock.now_us().saturating_sub(at_us.max(resumed_us));
    if ctx.in_window(at_us) {
        ctx.rec.record(key, Metric::SendLag, lag);
    }
    // The publish, as the one packet an ideal transport would send.
    ctx.dial
        .radios()
        .client(key)
        .message(crate::clock::unix_now_us(), 0, 0);
    Some(at_us)
}

pub(super) fn schedule_for(ctx: &RunCtx, sender: u64) -> SendSchedule {
    SendSchedule::new(
        ctx.scenario.seed,
        sender,
        &ctx.scenario.messages,
        ctx.send_end(),
    )
}

/// Publishes client `id`'s messages by POST on a keep-alive connection
/// of its own (over HTTP/2, the client's shared one), following sender
/// `sender`'s schedule and the client's drops.
pub(super) async fn http_sender(
    ctx: Arc<RunCtx>,
    id: u64,
    sender: u64,
    room: &str,
    away: &Away,
    h2: &SharedH2,
) {
    let target = format!("/rooms/{room}/messages");
    let mut schedule = schedule_for(&ctx, sender);
    // Connected before the start, as a browser's page is: the first send
    // must not pay a connect.
    let Some((c, clock)) = ctx.connected_then_started(id, h2).await else {
        return;
    };
    let mut conn = Some(c);
    // The client's drops when the connection was opened: a later drop cut
    // it (noticed here, before the next publish).
    let mut opened_at_drop = 0;
    let mut resumed_us = 0;
    while let Some(at_us) = next_send(&ctx, &clock, id, &mut schedule, resumed_us).await {
        let dropped = away.drops() > opened_at_drop;
        if let Some(cut) = conn.take_if(|_| dropped) {
            cut.handles.cut.cut();
            finish_cut(&ctx, cut).await;
        }
        if let Some(stale) = conn.take_if(|c| c.is_closed()) {
            stale.close().await;
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                if dropped && !ctx.back_online(&clock, away).await {
                    break;
                }
                opened_at_drop = away.drops();
                match ctx.dial.http(id, h2).await {
                    Ok(c) => {
                        if dropped {
                            ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
                            resumed_us = clock.now_us();
                        }
                        c
                    }
                    Err(e) => {
                        ctx.count_error("connect", e);
                        continue;
                    }
                }
            }
        };
        let body = publish_body(&ctx, id, at_us);
        match c
            .call(Kind::Publish, "POST", &target, body.as_bytes())
            .await
        {
            Ok((StatusCode::CREATED, _, _)) => {
                sent_ok(&ctx, at_us);
                conn = Some(c);
            }
            Ok((status, b, _)) => {
                ctx.count_error(
                    "publish",
                    format!("{status} {}", String::from_utf8_lossy(&b)),
                );
                conn = Some(c);
            }
            Err(e) => {
                ctx.count_error("publish", e);
                c.close().await;
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}
