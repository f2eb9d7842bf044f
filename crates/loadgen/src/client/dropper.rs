//! A client's connection drops (`network.drop_every`): when they come, and
//! what a cut connection leaves to read.

use super::context::RunCtx;
use super::inbox::Inbox;
use crate::dial::HttpConn;
use crate::drops::{Away, DropSchedule};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// A client's connection drops (`network.drop_every`), made by its
/// receiver on the client's [`DropSchedule`].
pub(super) struct Dropper {
    schedule: Option<DropSchedule>,
    next_us: Option<u64>,
    away: Arc<Away>,
}

impl Dropper {
    pub(super) fn new(ctx: &RunCtx, id: u64, away: Arc<Away>) -> Dropper {
        let mut schedule = ctx
            .scenario
            .network
            .drop_every
            .map(|every| DropSchedule::new(ctx.scenario.seed, id, every, ctx.send_end()));
        let next_us = schedule.as_mut().and_then(Iterator::next);
        Dropper {
            schedule,
            next_us,
            away,
        }
    }

    /// Waits for the next drop; never ends without one.
    pub(super) async fn due(&self, ctx: &RunCtx) {
        let Some(at) = self.next_us else {
            return std::future::pending().await;
        };
        let clock = match ctx.clock.get() {
            Some(c) => *c,
            None => match ctx.started().await {
                Some(c) => c,
                None => return std::future::pending().await,
            },
        };
        ctx.timer.wait_until(&clock, at).await
    }

    /// Drops the client now, cutting `conn` when it has one. A drop that
    /// comes while the client is still away from the last one is skipped.
    pub(super) fn drop_now(
        &mut self,
        ctx: &RunCtx,
        inbox: &mut Inbox,
        conn: Option<&crate::wire::CutHandle>,
    ) {
        let now = ctx.run_clock().now_us();
        while self.next_us.is_some_and(|at| at <= now) {
            self.next_us = self.schedule.as_mut().and_then(Iterator::next);
        }
        if inbox.spans.is_away() {
            return;
        }
        if let Some(c) = conn {
            c.cut();
        }
        inbox.spans.cut(now);
        self.away.dropped(now, ctx.scenario.network.drop_for);
        ctx.rec.drops.drops.fetch_add(1, Relaxed);
    }
}

/// Reads a cut connection to its end (the server closes it on the
/// client's FIN) and counts the bytes that came after the cut.
pub(super) async fn finish_cut(ctx: &RunCtx, c: HttpConn) {
    let cut = c.handles.cut.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.drain()).await;
    ctx.rec
        .drops
        .bytes_after_cut
        .fetch_add(cut.bytes_after_cut(), Relaxed);
}
