//! What a run's clients share ([`RunCtx`]), and which client is which
//! ([`ClientSpec`]).

use crate::clock::{RunClock, SendThread, SendTimer};
use crate::dial::{Dialer, HttpConn, SharedH2};
use crate::drops::Away;
use crate::record::Recorder;
use crate::scenario::Scenario;
use crate::wire::WireStats;
use crate::Transport;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// `from` of the control message that tells receivers the run is over.
pub const STOP_FROM: &str = "chatbench-stop";

/// Everything the clients of one transport run share.
#[derive(Debug)]
pub struct RunCtx {
    /// Transport under test.
    pub transport: Transport,
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Room names, by room index.
    pub rooms: Vec<String>,
    /// Start of traffic, set by the engine once every client is ready;
    /// intended send times are offsets from it.
    pub clock: OnceLock<RunClock>,
    /// Tells waiting clients that [`RunCtx::clock`] is set.
    pub start: watch::Sender<bool>,
    /// Clients connected and subscribed so far.
    pub ready: AtomicU64,
    /// Notified when a client becomes ready.
    pub ready_changed: Notify,
    /// Wakes senders and short pollers at their intended times.
    pub timer: SendTimer,
    /// Where sender tasks run.
    pub sends: SendThread,
    /// Client-side counters.
    pub wire: Arc<WireStats>,
    /// Histograms and audit counters.
    pub rec: Arc<Recorder>,
    /// Fired when the run must end now (server died, or teardown timed out).
    pub abort: CancellationToken,
    /// Fired when the drain is over, for profiles whose rooms have no
    /// end-of-run message (another stack's server cannot be told to send
    /// one): receivers end after what they have read.
    pub finish: CancellationToken,
    /// Message body, shared by all senders.
    pub body: String,
    /// Makes the clients' connections.
    pub dial: Dialer,
    /// Sender tasks still publishing ([`Sending`]). After the measured
    /// window the worker tells the engine once it is 0, and the engine
    /// ends the rooms only then: a publish that a lossy link held past the
    /// drain would otherwise reach the server after the end-of-run message,
    /// which its receivers stop at.
    pub sending: AtomicU64,
}

impl RunCtx {
    /// The run clock (zero at a far-future instant before the start).
    pub fn run_clock(&self) -> RunClock {
        self.clock
            .get()
            .copied()
            .unwrap_or(RunClock::starting_at(u64::MAX))
    }

    /// Marks one client as connected and subscribed.
    pub(super) fn client_ready(&self) {
        self.ready.fetch_add(1, Relaxed);
        self.ready_changed.notify_one();
    }

    /// Waits for the start of traffic; None when the run aborted first.
    pub(super) async fn started(&self) -> Option<RunClock> {
        let mut rx = self.start.subscribe();
        tokio::select! {
            r = rx.wait_for(|s| *s) => r.ok().and_then(|_| self.clock.get().copied()),
            _ = self.abort.cancelled() => None,
        }
    }

    pub(super) fn window_us(&self) -> (u64, u64) {
        let start = self.scenario.warmup.as_micros() as u64;
        (start, start + self.scenario.duration.as_micros() as u64)
    }

    pub(super) fn in_window(&self, at_us: u64) -> bool {
        let (a, b) = self.window_us();
        at_us >= a && at_us < b
    }

    /// End of sending, as an offset from `t0`.
    pub fn send_end(&self) -> Duration {
        self.scenario.warmup + self.scenario.duration
    }

    pub(super) fn count_error(&self, what: &str, e: impl std::fmt::Display) {
        let why = e.to_string();
        tracing::debug!("{} {what}: {why}", self.transport.as_str());
        self.rec.audit.error(what, &why);
    }

    /// Waits until a client cut by a drop is back online (at once when it
    /// was not cut); false when the run aborted first.
    pub(super) async fn back_online(&self, clock: &RunClock, away: &Away) -> bool {
        let back = away.back_at_us();
        if back > clock.now_us() {
            tokio::select! {
                _ = self.timer.wait_until(clock, back) => {}
                _ = self.abort.cancelled() => return false,
            }
        }
        !self.abort.is_cancelled()
    }

    /// Resolves once the run is over for receivers of a profile without
    /// an end-of-run message: aborted, or finished by the engine.
    pub(super) async fn over(&self) {
        tokio::select! {
            _ = self.abort.cancelled() => {}
            _ = self.finish.cancelled() => {}
        }
    }

    pub(super) async fn backoff(&self) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = self.abort.cancelled() => {}
        }
    }

    /// Client `key`'s HTTP connection ([`Dialer::http`]), retrying until
    /// it works or the run aborts.
    pub(super) async fn http_retrying(&self, key: u64, h2: &SharedH2) -> Option<HttpConn> {
        loop {
            match self.dial.http(key, h2).await {
                Ok(c) => return Some(c),
                Err(e) => {
                    self.count_error("connect", e);
                    if self.abort.is_cancelled() {
                        return None;
                    }
                    self.backoff().await;
                }
            }
        }
    }

    /// Connects (retrying), reports ready, and waits for the start of
    /// traffic; None when the run aborted first.
    pub(super) async fn connected_then_started(
        &self,
        key: u64,
        h2: &SharedH2,
    ) -> Option<(HttpConn, RunClock)> {
        let c = self.http_retrying(key, h2).await?;
        self.client_ready();
        match self.started().await {
            Some(clock) => Some((c, clock)),
            None => {
                c.close().await;
                None
            }
        }
    }
}

/// One client: `id` is global, its room is `id / clients_per_room`.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpec {
    /// Global client number.
    pub id: u64,
    /// Room index.
    pub room: usize,
    /// Global sender number (its schedule stream), when the client sends.
    pub sender: Option<u64>,
}

impl ClientSpec {
    /// The `id`-th client of `s`.
    pub fn nth(s: &Scenario, id: u64) -> ClientSpec {
        let cpr = s.clients.clients_per_room as u64;
        let room = id / cpr;
        let i = id % cpr;
        ClientSpec {
            id,
            room: room as usize,
            sender: (i < s.clients.senders_per_room as u64)
                .then_some(room * s.clients.senders_per_room as u64 + i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_specs_split_rooms_and_senders() {
        let s = crate::scenario::Scenario::parse(
            "name='t'\ntransports=['sse']\nduration='1s'\n[clients]\nrooms=2\nclients_per_room=3\nsenders_per_room=2\n[messages]\nrate=1.0\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let specs: Vec<_> = (0..6).map(|i| ClientSpec::nth(&s, i)).collect();
        assert_eq!(
            specs.iter().map(|c| c.room).collect::<Vec<_>>(),
            vec![0, 0, 0, 1, 1, 1]
        );
        assert_eq!(
            specs.iter().map(|c| c.sender).collect::<Vec<_>>(),
            vec![Some(0), Some(1), None, Some(2), Some(3), None]
        );
    }
}

/// Counts a sender task in [`RunCtx::sending`] from before it is spawned
/// until it ends.
#[derive(Debug)]
pub struct Sending(Arc<RunCtx>);

impl Sending {
    /// One more sender task of `ctx`.
    pub fn new(ctx: &Arc<RunCtx>) -> Sending {
        ctx.sending
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Sending(ctx.clone())
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0
            .sending
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
