//! The run clock and the precise send timer.
//!
//! [`RunClock`] stamps every send and receipt in microseconds since the start
//! of traffic, read from `CLOCK_REALTIME`: the clock the server uses for its
//! `server_at` stamp, so the latency breakdown (up-leg, poll wait, down-leg)
//! subtracts stamps of one clock, and load-generator processes of one host
//! share it.
//!
//! [`SendTimer`] wakes tasks at their intended send time to within tens of
//! microseconds. tokio's timer wheel has 1 ms resolution and wakes about 1 ms
//! late on average, which put a millisecond of the tool's own error into every
//! latency it measured. The timer is one thread per run with its timer slack
//! at 1 ns: it sleeps on a condition variable (a futex with an hrtimer
//! timeout) until [`SPIN`] before the next deadline (unless deadlines come
//! closer together than that), then spins on the clock
//! with `sched_yield` between reads, so a load-generator thread that needs
//! the CPU still gets it, and fires the deadline's oneshot when it passes.
//! Deadlines never fire early: latency is still measured from the intended
//! send time, and the lag of the actual send behind it is recorded apart.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How long before a deadline the timer stops sleeping and starts spinning.
/// Waking from a sleep costs about 70 µs on these VMs (MACHINE-NOTES), so the
/// margin covers it with room to spare; spinning costs at most this much CPU
/// per send.
pub const SPIN: Duration = Duration::from_micros(100);

/// How early the timer thread wakes a task that waits with
/// [`SendTimer::wait_until`]: a tokio worker woken from another thread
/// starts running some tens of µs later (measured: send lag p50 40 to 60 µs
/// when firing on time), so the task is woken this much ahead and spins on
/// the clock for what is left. It costs at most this much CPU per send.
pub const WAKE_AHEAD: Duration = Duration::from_micros(60);

/// µs added to `CLOCK_REALTIME` in every reading this process takes
/// ([`unix_now_us`], and the kernel's arrival stamps through
/// [`adjust_stamp`]): 0, except in a shard of a run spread over machines
/// (`chatbench run --shard`), which sets it to its estimated offset to the
/// server's clock, so every process of the run stamps on the server's
/// clock. A test-only skew (`--clock-skew-us`) goes in here too.
static ADJUST_US: AtomicI64 = AtomicI64::new(0);

/// This process's clock adjustment, µs (see [`ADJUST_US`]).
pub fn clock_adjust_us() -> i64 {
    ADJUST_US.load(Relaxed)
}

/// Sets this process's clock adjustment, µs.
pub fn set_clock_adjust_us(us: i64) {
    ADJUST_US.store(us, Relaxed);
}

/// A `CLOCK_REALTIME` reading in µs, adjusted as [`unix_now_us`] is.
pub fn adjust_stamp(real_us: u64) -> u64 {
    real_us.saturating_add_signed(clock_adjust_us())
}

/// Microseconds since the UNIX epoch, from `CLOCK_REALTIME` (plus this
/// process's adjustment, normally 0).
pub fn unix_now_us() -> u64 {
    adjust_stamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0),
    )
}

/// The clock of one transport run: microseconds since the start of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunClock {
    /// The start of traffic, in µs since the UNIX epoch.
    pub t0_unix_us: u64,
}

impl RunClock {
    /// A clock whose zero is `t0_unix_us`.
    pub fn starting_at(t0_unix_us: u64) -> RunClock {
        RunClock { t0_unix_us }
    }

    /// µs since the start of traffic (0 before it).
    pub fn now_us(&self) -> u64 {
        unix_now_us().saturating_sub(self.t0_unix_us)
    }

    /// A server stamp (µs since the epoch) on this clock; None when it lies
    /// before the start of traffic, which only a clock that differs from the
    /// server's can produce.
    pub fn from_unix(&self, unix_us: u64) -> Option<u64> {
        unix_us.checked_sub(self.t0_unix_us)
    }
}

struct Entry {
    at_unix_us: u64,
    seq: u64,
    fire: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        (self.at_unix_us, self.seq) == (o.at_unix_us, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Entry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Entry) -> std::cmp::Ordering {
        (self.at_unix_us, self.seq).cmp(&(o.at_unix_us, o.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// A thread that fires deadlines precisely; see the module docs. [`close`]
/// (or dropping the timer) stops its thread; waits still pending then end at
/// once, and later ones do not wait.
///
/// [`close`]: SendTimer::close
pub struct SendTimer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SendTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTimer").finish_non_exhaustive()
    }
}

impl SendTimer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<SendTimer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("chatbench-send-timer".into())
            .spawn(move || timer_thread(&s))?;
        Ok(SendTimer {
            shared,
            thread: Some(thread),
        })
    }

    /// Waits until `CLOCK_REALTIME` reaches `at_unix_us`. Returns at once if
    /// it already has.
    pub async fn wait_until_unix(&self, at_unix_us: u64) {
        if unix_now_us() >= at_unix_us {
            return;
        }
        let (fire, fired) = oneshot::channel();
        {
            let mut q = self.lock();
            if q.closed {
                return;
            }
            q.seq += 1;
            let seq = q.seq;
            let earliest = q.heap.peek().is_none_or(|e| at_unix_us < e.0.at_unix_us);
            q.heap.push(Reverse(Entry {
                at_unix_us,
                seq,
                fire,
            }));
            if earliest {
                // Only a new head changes when the thread must wake.
                self.shared.changed.notify_one();
            }
        }
        // An error means the timer stopped: the run is ending.
        let _ = fired.await;
    }

    /// Waits until `at_us` on `clock`, woken by the timer thread at that
    /// instant; the runtime's wake-up latency comes on top. For tasks on a
    /// busy runtime, where spinning would hold up other tasks.
    pub async fn wait_until(&self, clock: &RunClock, at_us: u64) {
        self.wait_until_unix(clock.t0_unix_us + at_us).await
    }

    /// Waits until `at_us` on `clock`: the timer thread fires
    /// [`WAKE_AHEAD`] early, and the woken task spins the rest on the clock,
    /// so the runtime's own wake-up latency does not land in the send lag.
    /// For the send thread, whose runtime has nothing else to do.
    pub async fn wait_until_spinning(&self, clock: &RunClock, at_us: u64) {
        let at = clock.t0_unix_us + at_us;
        self.wait_until_unix(at.saturating_sub(WAKE_AHEAD.as_micros() as u64))
            .await;
        while unix_now_us() < at {
            std::hint::spin_loop();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl SendTimer {
    /// Stops the timer: every pending wait ends now.
    pub fn close(&self) {
        self.lock().closed = true;
        self.shared.changed.notify_one();
    }
}

impl Drop for SendTimer {
    fn drop(&mut self) {
        self.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_timer_slack_1ns() {
    // The default slack of 50 µs would let the kernel wake us that late.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_timerslack(1);
}

fn timer_thread(shared: &Shared) {
    // Real-time priority where allowed, like the send thread: on a CPU that
    // the receive workers keep busy, a timer at normal priority fired over
    // a millisecond late (fan-out scenario, WebSocket).
    set_realtime_priority();
    let spin_us = SPIN.as_micros() as u64;
    let mut due: Vec<oneshot::Sender<()>> = Vec::new();
    let mut last_fire = 0u64;
    let mut q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if q.closed {
            // Dropping the senders ends every pending wait.
            q.heap.clear();
            return;
        }
        let Some(head) = q.heap.peek().map(|e| e.0.at_unix_us) else {
            q = shared
                .changed
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        let now = unix_now_us();
        // Spin only before a deadline that stands apart from the last one.
        // Deadlines closer together than the spin (50,000 short polls a
        // second) find the CPU busy, where a sleep wakes on time anyway, and
        // spinning before each of them kept this thread on the CPU all the
        // time.
        let spin = if head >= last_fire + spin_us {
            spin_us
        } else {
            0
        };
        if head > now + spin {
            let sleep = Duration::from_micros(head - spin - now);
            q = shared
                .changed
                .wait_timeout(q, sleep)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        if head > now {
            // The last stretch: spin without the lock, so new waits can
            // register; yield so a runnable thread on this CPU can work.
            drop(q);
            while unix_now_us() < head {
                std::thread::yield_now();
            }
            q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        while q.heap.peek().is_some_and(|e| e.0.at_unix_us <= now) {
            if let Some(Reverse(e)) = q.heap.pop() {
                due.push(e.fire);
            }
        }
        last_fire = now;
        drop(q);
        for f in due.drain(..) {
            let _ = f.send(());
        }
        q = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    }
}

/// A thread of its own for the send side: a current-thread tokio runtime
/// that runs every sender task, so a send is not queued behind the receive
/// work of hundreds of receivers on the main runtime (that queue put up to
/// 300 µs into the quick scenario's send lag p99). The thread asks for
/// `SCHED_FIFO` priority 1, so that on a CPU it shares with the receive
/// workers it runs as soon as its timer fires; where that is not allowed it
/// runs at normal priority, and [`SendThread::realtime`] says which.
#[derive(Debug)]
pub struct SendThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    realtime: bool,
}

impl SendThread {
    /// Starts the thread and its runtime.
    pub fn start() -> std::io::Result<SendThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (told, realtime) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chatbench-send".into())
            .spawn(move || {
                let _ = told.send(set_realtime_priority());
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime here cancels senders still running.
            })?;
        let realtime = realtime.recv().unwrap_or(false);
        Ok(SendThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
            realtime,
        })
    }

    /// The runtime to spawn sender tasks on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// True when the thread got `SCHED_FIFO` priority.
    pub fn realtime(&self) -> bool {
        self.realtime
    }
}

impl Drop for SendThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            // A sender task that outlived its run (teardown aborted the
            // clients) may drop the last handle on this very thread: it
            // cannot wait for itself, and ends once the stop is read.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn set_realtime_priority() -> bool {
    set_timer_slack_1ns();
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: `param` is a valid sched_param; pid 0 is this thread.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_never_end_early_and_fire_in_order() {
        let timer = Arc::new(SendTimer::start().unwrap());
        let base = unix_now_us() + 20_000;
        // Registered out of order; each must end at or after its deadline.
        let offsets = [7_000u64, 1_000, 4_000, 4_000, 0, 12_000];
        let mut tasks = Vec::new();
        for off in offsets {
            let t = timer.clone();
            tasks.push(tokio::spawn(async move {
                t.wait_until_unix(base + off).await;
                (off, unix_now_us())
            }));
        }
        for task in tasks {
            let (off, woke) = task.await.unwrap();
            assert!(woke >= base + off, "woke {} µs early", base + off - woke);
        }
    }

    #[tokio::test]
    async fn a_past_deadline_returns_at_once_and_close_ends_pending_waits() {
        let timer = SendTimer::start().unwrap();
        timer.wait_until_unix(0).await;
        let timer = Arc::new(timer);
        let t = timer.clone();
        let pending = tokio::spawn(async move {
            t.wait_until_unix(unix_now_us() + 3_600_000_000).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        timer.close();
        tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .expect("the pending wait ended")
            .unwrap();
        // After close, waits return at once.
        timer.wait_until_unix(unix_now_us() + 3_600_000_000).await;
    }

    #[test]
    fn a_send_thread_dropped_on_itself_does_not_wait_for_itself() {
        let st = SendThread::start().unwrap();
        let handle = st.handle().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // The last handle goes away inside a task on the thread itself.
        handle.spawn(async move {
            drop(st);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the drop returned instead of joining its own thread");
    }

    #[test]
    fn run_clock_converts_server_stamps() {
        let c = RunClock::starting_at(1_000_000);
        assert_eq!(c.from_unix(1_000_250), Some(250));
        assert_eq!(c.from_unix(999_999), None);
    }
}
