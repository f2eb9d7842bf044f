//! One transport run: ramp, warm-up, measure, drain, teardown (DESIGN §3).
//!
//! The engine is the same for every transport; only the client driver
//! differs ([`crate::client`]). Teardown publishes a control message to every
//! room: receivers read up to it and close cleanly, so every byte the server
//! wrote has been read and the byte cross-check can be exact.

use crate::client::{run_client, ClientSpec, RunCtx, STOP_FROM};
use crate::clock::{unix_now_us, RunClock, SendThread, SendTimer};
use crate::record::{Histograms, Recorder};
use crate::resources::{self, ProcSample, Sampler};
use crate::results::{Readiness, ServerCost, TransportRun};
use crate::scenario::Scenario;
use crate::server::{control_counted, RunningServer, ServerCounters};
use crate::wire::WireStats;
use crate::Transport;
use chatbench_results::measurement::{Measurement, ServerSide};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a transport run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The results.
    pub run: TransportRun,
    /// Merged histograms.
    pub histograms: Histograms,
    /// Set when the server died during the run.
    pub server_died: bool,
    /// Set when the run was stopped from outside (SIGINT, SIGTERM).
    pub interrupted: bool,
}

/// Where one transport run sits in a whole run.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// Index of the sweep point (0 without a sweep).
    pub point: usize,
    /// Repetition, from 0.
    pub repetition: u32,
    /// Prefix of this run's room names, so runs against one server never share a room.
    pub room_prefix: &'a str,
    /// Cancelled when the whole run must stop now (SIGINT, SIGTERM).
    pub stop: &'a CancellationToken,
}

/// Runs `transport` once against `server`.
pub async fn run_transport(
    server: &mut RunningServer,
    scenario: &Arc<Scenario>,
    transport: Transport,
    slot: Slot<'_>,
    loadgen_cpus: usize,
    progress: Option<&ProgressTx>,
) -> std::io::Result<Outcome> {
    let Slot {
        point,
        repetition,
        room_prefix,
        stop,
    } = slot;
    let s = scenario.clone();
    let rooms: Vec<String> = (0..s.clients.rooms)
        .map(|r| {
            format!(
                "{room_prefix}-{}-{point}-{repetition}-{r}",
                transport.short()
            )
        })
        .collect();
    let before = ServerCounters::scrape(server.addr).await.ok();
    let rss_baseline = server
        .pid
        .and_then(|p| resources::read(p, 0))
        .map(|r| r.rss_bytes);
    let ramp_start = Instant::now();
    let (start, _) = watch::channel(false);
    let ctx = Arc::new(RunCtx {
        addr: server.addr,
        transport,
        scenario: s.clone(),
        rooms: rooms.clone(),
        clock: OnceLock::new(),
        start,
        ready: AtomicU64::new(0),
        ready_changed: Notify::new(),
        timer: SendTimer::start()?,
        sends: SendThread::start()?,
        wire: Arc::new(WireStats::default()),
        rec: Arc::new(Recorder::new(16)),
        abort: CancellationToken::new(),
        body: "x".repeat(s.messages.body_bytes),
    });

    let sampler = server.pid.map(Sampler::spawn);
    let proc_now = |pid: Option<u32>| pid.and_then(|p| resources::read(p, 0));
    let mut server_died = false;

    let clients = ramp(&ctx, &s, ramp_start, stop).await;
    let (readiness, alive) = await_ready(
        &ctx,
        server,
        expected_ready(&s, transport),
        ramp_start,
        stop,
    )
    .await;
    server_died |= !alive;
    // Traffic starts a short settle after the barrier, on one clock for
    // every client.
    let settle = Duration::from_millis(300);
    let t0 = Instant::now() + settle;
    let _ = ctx.clock.set(RunClock::starting_at(
        unix_now_us() + settle.as_micros() as u64,
    ));
    ctx.start.send_replace(true);
    tokio::time::sleep_until(t0).await;
    let rss_before = proc_now(server.pid);

    let watched = watch_phases(&ctx, server, t0, ramp_start, stop, progress).await;
    let interrupted = watched.interrupted;
    server_died |= watched.server_died;
    let (at_measure_start, at_measure_end) = (watched.at_measure_start, watched.at_measure_end);
    let torn = teardown(&ctx, server, &rooms, clients, server_died || interrupted).await;
    server_died |= torn.server_died;
    let stuck = torn.stuck;
    ctx.timer.close();
    let after = if server_died {
        None
    } else {
        ServerCounters::scrape(server.addr).await.ok()
    };
    server_died |= !server.is_alive().await;
    let samples = sampler.map(Sampler::finish).unwrap_or_default();

    // Results: what this process measured, then its run.json entry with
    // the server side's figures.
    let total = ctx.wire.snapshot();
    let (srv0, lg0, w0) = at_measure_start.unwrap_or((None, None, Default::default()));
    let (srv1, lg1, w1) = at_measure_end.unwrap_or((None, None, total));
    let loadgen_cpu = lg0.zip(lg1).map(|(a, b)| ProcSample::cpu_between(&a, &b));
    let measurement = Measurement {
        transport: Some(transport),
        point,
        repetition,
        measured_from_unix_ms: ctx
            .clock
            .get()
            .map_or(0, |c| (c.t0_unix_us + s.warmup.as_micros() as u64) / 1000),
        measured_seconds: s.duration.as_secs_f64(),
        histograms: ctx.rec.merged(),
        audit: ctx.rec.audit.counts(),
        wire_measured: w1 - w0,
        wire_total: total,
        loadgen_cpu_ms: loadgen_cpu.map(|c| c.0),
        loadgen_cpu_precision_ms: loadgen_cpu.map_or(0.0, |c| c.1),
        loadgen_cpus,
        ready: readiness,
        ended_early: server_died || stuck || interrupted,
        error_causes: ctx.rec.audit.causes(),
    };
    let counters = before.as_ref().zip(after.as_ref()).map(|(b, a)| {
        let d = a.delta(b);
        (
            ServerCounters::client_total(&d.bytes_written).saturating_sub(torn.control_bytes_down),
            ServerCounters::client_total(&d.delivered),
        )
    });
    let delivered = measurement.audit.delivered;
    let cost = match (server.pid, srv0, srv1) {
        (Some(_), Some(a), Some(b)) => {
            let (cpu, precision) = ProcSample::cpu_between(&a, &b);
            let rss_before = rss_before.map(|r| r.rss_bytes).unwrap_or(0);
            let baseline = rss_baseline.unwrap_or(rss_before);
            Some(ServerCost {
                rss_baseline: baseline,
                rss_before_traffic: rss_before,
                rss_peak: samples
                    .iter()
                    .map(|x| x.rss_bytes)
                    .max()
                    .unwrap_or(b.rss_bytes),
                rss_per_connection: rss_before.saturating_sub(baseline) as f64
                    / total.connections.max(1) as f64,
                cpu_ms_measured: cpu,
                cpu_precision_ms: precision,
                cpu_ms_per_1k_msgs: per_1k(cpu, delivered),
                threads_peak: samples.iter().map(|x| x.threads).max().unwrap_or(b.threads),
                fds_peak: samples.iter().map(|x| x.fds).max().unwrap_or(b.fds),
                samples: downsample(&samples, 1000),
            })
        }
        _ => None,
    };
    let run = measurement.summarize(&s, ServerSide { counters, cost });
    Ok(Outcome {
        run,
        histograms: measurement.histograms,
        server_died,
        interrupted,
    })
}

/// Readings at the edges of the measured window: the server's and our own
/// process, and the client wire counters.
type Edge = (
    Option<ProcSample>,
    Option<ProcSample>,
    crate::wire::WireSnapshot,
);

/// What [`watch_phases`] saw.
struct Watched {
    at_measure_start: Option<Edge>,
    at_measure_end: Option<Edge>,
    server_died: bool,
    interrupted: bool,
}

/// Warm-up, measure and drain: reads the edges of the measured window,
/// watches the server and the stop signal, and reports progress.
async fn watch_phases(
    ctx: &RunCtx,
    server: &mut RunningServer,
    t0: Instant,
    ramp_start: Instant,
    stop: &CancellationToken,
    progress: Option<&ProgressTx>,
) -> Watched {
    let s = &ctx.scenario;
    let pid = server.pid;
    let edge = || {
        (
            pid.and_then(|p| resources::read(p, 0)),
            resources::read(std::process::id(), 0),
            ctx.wire.snapshot(),
        )
    };
    let measure_start = t0 + s.warmup;
    let measure_end = measure_start + s.duration;
    let drain_end = measure_end + s.grace;
    let mut w = Watched {
        at_measure_start: None,
        at_measure_end: None,
        server_died: false,
        interrupted: false,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => {}
        }
        if stop.is_cancelled() {
            w.interrupted = true;
            ctx.abort.cancel();
            break;
        }
        let now = Instant::now();
        if w.at_measure_start.is_none() && now >= measure_start {
            w.at_measure_start = Some(edge());
        }
        if w.at_measure_end.is_none() && now >= measure_end {
            w.at_measure_end = Some(edge());
        }
        if !server.is_alive().await {
            w.server_died = true;
            ctx.abort.cancel();
            break;
        }
        if let Some(tx) = progress {
            let delivered = ctx.rec.audit.live_delivered.load(Relaxed);
            let rate =
                (delivered - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
            last = (now, delivered);
            let phase = if now < t0 {
                Phase::Ramp
            } else if now < measure_start {
                Phase::WarmUp
            } else if now < measure_end {
                Phase::Measure
            } else {
                Phase::Drain
            };
            // A display that went away does not stop the run.
            let _ = tx.send(Progress::Tick {
                elapsed: now.duration_since(ramp_start),
                phase,
                msgs_per_s: rate,
                p99_us: ctx.rec.live_p99(),
                errors: ctx.rec.audit.errors.load(Relaxed),
            });
        }
        if now >= drain_end {
            break;
        }
    }
    w
}

/// What [`teardown`] saw.
struct TornDown {
    /// Bytes the server wrote in answer to the control messages, which no
    /// client reads: left out of the cross-check.
    control_bytes_down: u64,
    /// Clients had to be aborted after 10 s.
    stuck: bool,
    /// The server was found dead.
    server_died: bool,
}

/// Teardown: a control message to every room ends each receiver after what
/// it read, so every byte the server wrote has been read (unless the run is
/// ending early, `abandon`); clients get 10 s to finish.
async fn teardown(
    ctx: &RunCtx,
    server: &mut RunningServer,
    rooms: &[String],
    mut clients: Vec<JoinHandle<()>>,
    abandon: bool,
) -> TornDown {
    let control_wire = Arc::new(WireStats::default());
    let mut server_died = false;
    if !abandon {
        let body = serde_json::json!({"from": STOP_FROM, "body": ""}).to_string();
        for room in rooms {
            let path = format!("/rooms/{room}/messages");
            let sent = control_counted(
                server.addr,
                "POST",
                &path,
                Some(body.clone()),
                &control_wire,
            )
            .await;
            if sent.is_err() {
                server_died = !server.is_alive().await;
            }
        }
    }
    let wait = async {
        for c in &mut clients {
            let _ = c.await;
        }
    };
    let stuck = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_err();
    if stuck {
        ctx.abort.cancel();
        for c in &clients {
            c.abort();
        }
    }
    TornDown {
        control_bytes_down: control_wire.snapshot().bytes_down,
        stuck,
        server_died,
    }
}

/// Connections that must be up and subscribed before traffic: every
/// receiver, plus the publish connection of each sender on the HTTP
/// transports (WebSocket senders publish on their own socket).
fn expected_ready(s: &Scenario, t: Transport) -> u64 {
    s.total_clients()
        + match t {
            Transport::WebSocket => 0,
            _ => s.total_senders(),
        }
}

/// Ramp: starts every client, evenly spread over the ramp.
async fn ramp(
    ctx: &Arc<RunCtx>,
    s: &Arc<Scenario>,
    ramp_start: Instant,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let n = s.total_clients();
    let mut clients = Vec::with_capacity(n as usize);
    for id in 0..n {
        let at = ramp_start + s.clients.ramp.mul_f64(id as f64 / n as f64);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.cancelled() => break,
        }
        clients.push(tokio::spawn(run_client(
            ctx.clone(),
            ClientSpec::nth(s, id),
        )));
    }
    clients
}

/// How long the barrier waits beyond the ramp for the last clients.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The barrier: waits until `expected` connections are up and subscribed,
/// the server dies, or [`READY_TIMEOUT`] passes after the ramp. Returns how
/// far it got, and false when the server died.
async fn await_ready(
    ctx: &RunCtx,
    server: &mut RunningServer,
    expected: u64,
    ramp_start: Instant,
    stop: &CancellationToken,
) -> (Readiness, bool) {
    let deadline = ramp_start + ctx.scenario.clients.ramp + READY_TIMEOUT;
    let mut alive = true;
    loop {
        let ready = ctx.ready.load(Relaxed);
        if ready >= expected || Instant::now() >= deadline || stop.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = ctx.ready_changed.notified() => {}
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if !server.is_alive().await {
                    alive = false;
                    break;
                }
            }
        }
    }
    let readiness = Readiness {
        expected,
        ready: ctx.ready.load(Relaxed),
        ramp_ms: ramp_start.elapsed().as_millis() as u64,
    };
    (readiness, alive)
}

fn per_1k(cpu_ms: f64, delivered: u64) -> f64 {
    if delivered == 0 {
        0.0
    } else {
        cpu_ms * 1000.0 / delivered as f64
    }
}

fn downsample(samples: &[ProcSample], every_ms: u64) -> Vec<ProcSample> {
    let mut out: Vec<ProcSample> = Vec::new();
    for s in samples {
        if out.last().is_none_or(|l| s.t_ms >= l.t_ms + every_ms) {
            out.push(*s);
        }
    }
    out
}

/// Where a transport run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Clients connecting, up to the readiness barrier.
    Ramp,
    /// Traffic, not recorded.
    WarmUp,
    /// Traffic, recorded.
    Measure,
    /// Waiting for in-flight messages.
    Drain,
}

impl Phase {
    /// Its name on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::WarmUp => "warm-up",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
        }
    }
}

/// What a run tells its display. The library measures; whoever holds the
/// receiving end (the CLI's progress bars) displays.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A transport run starts; its phases take about `total`.
    Started {
        /// `sse @100ms 1/3`: transport, sweep value, repetition.
        label: String,
        /// Ramp, warm-up, measured window and drain.
        total: Duration,
    },
    /// About every 250 ms during the current transport run.
    Tick {
        /// Since the ramp began.
        elapsed: Duration,
        /// The phase.
        phase: Phase,
        /// Measured deliveries per second lately.
        msgs_per_s: f64,
        /// p99 latency so far, µs.
        p99_us: u64,
        /// Client errors so far.
        errors: u64,
    },
    /// The current transport run ended.
    Finished {
        /// Its label.
        label: String,
        /// p50 latency, µs.
        p50_us: u64,
        /// p99 latency, µs.
        p99_us: u64,
        /// Lost messages.
        lost: u64,
        /// Client errors.
        errors: u64,
        /// The most frequent error cause and its count, if any failed.
        top_error: Option<(String, u64)>,
    },
}

/// The sending end of a run's progress.
pub type ProgressTx = tokio::sync::mpsc::UnboundedSender<Progress>;

pub use chatbench_results::fmt::{fmt_us, fmt_us_sep};
