//! One transport run: ramp, warm-up, measure, drain, teardown (how a run
//! measures: docs/running.md and docs/instrument.md).
//!
//! The engine is the same for every transport; only the client driver
//! differs ([`crate::client`]). Teardown publishes a control message to every
//! room: receivers read up to it and close cleanly, so every byte the server
//! wrote has been read and the byte cross-check can be exact.

use crate::client::STOP_FROM;
use crate::clock::unix_now_us;
use crate::record::Histograms;
use crate::resources::{ProcSample, Sampler};
use crate::results::{QuotaPeriods, ServerCost, ServerProcess, TransportRun};
use crate::scenario::Scenario;
use crate::server::{control_counted, RunningServer, ServerCounters, ServerProbe};
use crate::wire::WireStats;
use crate::worker::{FromWorker, ToWorker, WorkerEvent, WorkerSet, WorkerTask};
use crate::Transport;
use chatbench_proto::RoomOwner;
use chatbench_results::measurement::{Measurement, ServerSide};
use std::sync::Arc;
use std::time::Duration;
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
    /// In a run spread over machines: this machine's measurement as one
    /// JSON line, for its partial folder.
    pub measurement_json: Option<String>,
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
    /// This machine's share of a run spread over machines, if it is one.
    pub machine: Option<MachineShard>,
    /// In packet mode, the clients' network namespace.
    pub netns: Option<&'a str>,
}

/// One machine's share of a transport run spread over machines
/// (`chatbench run --shard I/N`). With no barrier across machines, every
/// machine keeps to one schedule: the ramp starts at `ramp_start_unix_us`
/// (µs on the server's clock, to which this process's clock is adjusted)
/// and traffic [`SHARD_SETTLE`] after the ramp ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineShard {
    /// This machine's shard, from 0.
    pub index: u32,
    /// How many machines share the run.
    pub of: u32,
    /// When this transport run's ramp starts.
    pub ramp_start_unix_us: u64,
}

/// In a run spread over machines: from the end of the ramp to the start of
/// traffic, for the last clients to connect (there is no barrier across
/// machines).
pub const SHARD_SETTLE: Duration = Duration::from_secs(2);

/// The longest the drain waits past `grace` for senders whose last publish
/// has not reached the server (a lossy link's retransmissions): then the
/// rooms end anyway, and what arrives later counts as lost.
pub const SENDS_WAIT: Duration = Duration::from_secs(10);

/// In a run spread over machines: the time after the drain kept free for
/// teardown before the next transport run's ramp. Clients end within
/// milliseconds of the end-of-run message; a teardown that overruns (a
/// stuck client is aborted after 10 s) makes the next transport run start
/// late, which its folder records as a problem.
pub const SHARD_TEARDOWN: Duration = Duration::from_secs(5);

/// How long one transport run takes in a run spread over machines, from
/// the start of its ramp to the start of the next one's.
pub fn shard_slot(s: &Scenario) -> Duration {
    s.clients.ramp + SHARD_SETTLE + s.warmup + s.duration + s.grace + SHARD_TEARDOWN
}

/// The monotonic instant of a `unix_now_us` reading.
fn instant_of(unix_us: u64) -> Instant {
    let now = unix_now_us();
    if unix_us >= now {
        Instant::now() + Duration::from_micros(unix_us - now)
    } else {
        Instant::now()
            .checked_sub(Duration::from_micros(now - unix_us))
            .unwrap_or_else(Instant::now)
    }
}

/// The load generator's side of a transport run: its CPUs, and the
/// executable whose `worker` subcommand runs a worker in its own process.
#[derive(Debug, Clone)]
pub struct Loadgen {
    /// CPUs the load generator may use (all its processes together).
    pub cpus: usize,
    /// `chatbench` itself, for `chatbench worker`.
    pub exe: std::path::PathBuf,
    /// CPUs the server may use, when chatbench started it (its pinning, or
    /// its CPU quota): the base of its CPU share, for the `saturated` flag.
    pub server_cpus: Option<f64>,
}

/// Runs `transport` once against `server`.
pub async fn run_transport(
    server: &mut RunningServer,
    scenario: &Arc<Scenario>,
    transport: Transport,
    slot: Slot<'_>,
    loadgen: &Loadgen,
    progress: Option<&ProgressTx>,
) -> std::io::Result<Outcome> {
    let (point, repetition, stop, machine) = (slot.point, slot.repetition, slot.stop, slot.machine);
    if let Some(m) = machine {
        tokio::select! {
            _ = tokio::time::sleep_until(instant_of(m.ramp_start_unix_us)) => {}
            _ = stop.cancelled() => {}
        }
    }
    let s = scenario.clone();
    let rooms = room_names(
        slot.room_prefix,
        transport,
        point,
        repetition,
        s.clients.rooms,
    );
    // Across machines, the server's counters and process are shared with
    // the other machines' clients: only machine 0 reads its process, and
    // nobody its counters.
    let probe = Some(server.probe()).filter(|_| machine.is_none_or(|m| m.index == 0));
    let before = match machine {
        None => server.scrape().await.ok(),
        Some(_) => None,
    };
    let rss_baseline = read_server(probe.as_ref()).await;
    let tasks = worker_tasks(&s, transport, &slot, server, &rooms);
    let expected: u64 = tasks.iter().map(WorkerTask::expected_ready).sum();
    let ramp_start = Instant::now();
    let sampler = probe.clone().map(sample_server);
    let mut server_died = false;

    let mut workers = Workers::new(WorkerSet::start(tasks, &loadgen.exe)?, machine.is_none());
    // Across machines, traffic starts on the schedule; on one machine, a
    // short settle after the barrier. Either way on one clock for every
    // client of every worker.
    let scheduled_t0 =
        machine.map(|m| m.ramp_start_unix_us + (s.clients.ramp + SHARD_SETTLE).as_micros() as u64);
    let alive = workers
        .await_ready(
            server,
            expected,
            scheduled_t0.map_or(ramp_start + s.clients.ramp + READY_TIMEOUT, instant_of),
            stop,
        )
        .await;
    server_died |= !alive;
    let settle = Duration::from_millis(300);
    let t0_unix_us = scheduled_t0.unwrap_or_else(|| unix_now_us() + settle.as_micros() as u64);
    let t0 = instant_of(t0_unix_us);
    workers.set.send_all(ToWorker::Start { t0_unix_us });
    tokio::time::sleep_until(t0).await;
    let rss_before = read_server(probe.as_ref()).await;

    let watched = workers
        .watch_phases(server, &s, t0, ramp_start, stop, progress)
        .await;
    let interrupted = watched.interrupted;
    server_died |= watched.server_died;
    // Across machines, machine 0 alone ends the rooms: one control message
    // each, which every machine's receivers read.
    let send_stops = machine.is_none_or(|m| m.index == 0);
    let torn = workers
        .teardown(
            server,
            &rooms,
            server_died || interrupted,
            send_stops,
            s.target.is_chatbench(),
        )
        .await;
    server_died |= torn.server_died;
    // No cross-check for a run stopped from outside: its clients were
    // aborted mid-read, so their byte counts cannot match the server's
    // (the flaky `crosscheck_mismatch` of an interrupted run, seen in CI).
    let after = if server_died || interrupted || machine.is_some() {
        None
    } else {
        scrape_chatbench(server).await
    };
    server_died |= !server.is_alive().await;
    let ticks = sampler.map(Sampler::finish).unwrap_or_default();

    // Results: what the workers measured, combined, then its run.json entry
    // with the server side's figures.
    let mut measurement = torn.measurement;
    // Set even when no worker handed in a measurement.
    measurement.transport = Some(transport);
    (measurement.point, measurement.repetition) = (point, repetition);
    // The workers share this host's CPUs.
    measurement.loadgen_cpus = loadgen.cpus;
    measurement.ended_early |= server_died || torn.stuck || interrupted;
    // Per server process, when several share the rooms.
    let deltas = deltas_of(before.as_deref(), after.as_deref());
    // Through a proxy the server's bytes are the proxy's leg, not the
    // clients': reported beside them, not set against them.
    let proxied = server.proxy_probe().is_some();
    let counters = deltas
        .as_deref()
        .filter(|_| !proxied)
        .map(|d| client_counts(d, torn.control_bytes_down));
    let server_tcp = server_tcp(server, before.as_deref().filter(|_| after.is_some())).await;
    let window = watched
        .server_at_start
        .clone()
        .zip(watched.server_at_end.clone());
    let cost = server_cost(ServerReadings {
        baseline: rss_baseline,
        before_traffic: rss_before,
        window,
        ticks: &ticks,
        connections: measurement.wire_total.connections,
        delivered: measurement.audit.delivered,
        rooms: &rooms,
        scenario: &s,
        transport,
        deltas: deltas.as_deref(),
        quota_periods: watched
            .quota_at_start
            .zip(watched.quota_at_end)
            .map(|(a, b)| b.since(&a)),
    });
    let mut run = measurement.summarize(
        &s,
        ServerSide {
            counters,
            cost,
            cpus: loadgen.server_cpus,
            tcp: server_tcp,
        },
    );
    let measured_whole = !(server_died || interrupted) && machine.is_none();
    run.no_crosscheck = no_crosscheck(&s, after.is_none(), proxied).filter(|_| measured_whole);
    let websocket_h1 = server.websocket_h1() && transport == Transport::WebSocket;
    run.proxy = proxied
        .then(|| proxy_cost(&watched, deltas.as_deref(), &measurement, websocket_h1))
        .flatten();
    // Serializing plain numbers and base64 strings cannot fail.
    let measurement_json = machine.and_then(|_| serde_json::to_string(&measurement).ok());
    Ok(Outcome {
        run,
        histograms: measurement.histograms,
        server_died,
        interrupted,
        measurement_json,
    })
}

/// The worker tasks of one transport run: `clients.processes` of them, on
/// this machine's share of a run spread over machines (machine I's
/// processes are workers I*P.. of N*P).
fn worker_tasks(
    s: &Scenario,
    transport: Transport,
    slot: &Slot<'_>,
    server: &RunningServer,
    rooms: &[String],
) -> Vec<WorkerTask> {
    let processes = s.clients.processes.max(1);
    let (first, of) = slot
        .machine
        .map_or((0, processes), |m| (m.index * processes, m.of * processes));
    (0..processes)
        .map(|index| WorkerTask {
            scenario: s.clone(),
            transport,
            point: slot.point,
            repetition: slot.repetition,
            rooms: rooms.to_vec(),
            servers: server.client_addrs(),
            clock_adjust_us: crate::clock::clock_adjust_us(),
            ca_pems: server.ca_pems(),
            websocket_h1: server.websocket_h1(),
            netns: slot.netns.map(str::to_owned),
            index: first + index,
            of,
        })
        .collect()
}

/// Reads the server's processes through `probe` at its period, for the
/// resources chart.
fn sample_server(probe: ServerProbe) -> Sampler {
    let period = probe.period();
    let probe = Arc::new(probe);
    Sampler::spawn(period, move |t| {
        let probe = probe.clone();
        async move { probe.read(t).await }
    })
}

/// The server's counters after a run, when they are chatbench's own: only
/// those can be set against the clients' counts (another stack's
/// `/metrics` may give process figures alone).
async fn scrape_chatbench(server: &RunningServer) -> Option<Vec<ServerCounters>> {
    server
        .scrape()
        .await
        .ok()
        .filter(|a| a.iter().all(|c| c.chatbench))
}

/// Bytes the server wrote to the clients (less `control_bytes` written in
/// answer to control messages) and messages it delivered, over `deltas`.
fn client_counts(deltas: &[ServerCounters], control_bytes: u64) -> (u64, u64) {
    let d = ServerCounters::sum(deltas);
    (
        ServerCounters::client_total(&d.bytes_written).saturating_sub(control_bytes),
        ServerCounters::client_total(&d.delivered),
    )
}

/// The server's counters over the run, per process: `after − before`.
fn deltas_of(
    before: Option<&[ServerCounters]>,
    after: Option<&[ServerCounters]>,
) -> Option<Vec<ServerCounters>> {
    let (b, a) = (before?, after?);
    Some(a.iter().zip(b).map(|(a, b)| a.delta(b)).collect())
}

/// Why a run has no byte cross-check, when that is the server's doing
/// rather than the run's: a server with no chatbench metrics, or a proxy
/// between it and the clients.
fn no_crosscheck(s: &Scenario, no_metrics: bool, proxied: bool) -> Option<String> {
    if proxied {
        return Some(format!(
            "through {}: the server's bytes are the proxy's leg (proxy.server_leg_bytes_down), not the clients'",
            s.path.label()
        ));
    }
    no_metrics.then(|| {
        format!(
            "the server ({}) has no chatbench /metrics: its bytes and deliveries were not counted on its side",
            s.target.label()
        )
    })
}

/// The proxy's CPU and memory over the measured window, and the bytes of
/// both legs; `websocket_h1` when the run's WebSockets fell back to
/// HTTP/1.1.
fn proxy_cost(
    w: &Watched,
    deltas: Option<&[ServerCounters]>,
    m: &Measurement,
    websocket_h1: bool,
) -> Option<crate::results::ProxyCost> {
    let (a, b) = (w.proxy_at_start.as_ref()?, w.proxy_at_end.as_ref()?);
    let (cpu, _) = ProcSample::cpu_between(&ProcSample::sum(a), &ProcSample::sum(b));
    let server_leg = deltas.map_or(0, |d| {
        ServerCounters::client_total(&ServerCounters::sum(d).bytes_written)
    });
    Some(crate::results::ProxyCost {
        cpu_ms_measured: cpu,
        // 0 when nothing was delivered (a proxy that refused the transport).
        cpu_ms_per_1k: if m.audit.delivered == 0 {
            0.0
        } else {
            cpu * 1000.0 / m.audit.delivered as f64
        },
        rss_bytes: b.iter().map(|x| x.rss_bytes).sum(),
        server_leg_bytes_down: server_leg,
        client_leg_bytes_down: m.wire_total.bytes_down,
        websocket_h1,
    })
}

/// What [`Workers::watch_phases`] saw.
struct Watched {
    /// The server's processes at the start and end of the measured window.
    server_at_start: Option<Vec<ProcSample>>,
    server_at_end: Option<Vec<ProcSample>>,
    /// The reverse proxy's processes at the same edges, when there is one.
    proxy_at_start: Option<Vec<ProcSample>>,
    proxy_at_end: Option<Vec<ProcSample>>,
    /// The server's CPU quota's periods at the same edges, when it has a
    /// quota.
    quota_at_start: Option<QuotaPeriods>,
    quota_at_end: Option<QuotaPeriods>,
    server_died: bool,
    interrupted: bool,
}

/// What [`Workers::teardown`] saw.
struct TornDown {
    /// The workers' measurements, combined.
    measurement: Measurement,
    /// Bytes the server wrote in answer to the control messages, which no
    /// client reads: left out of the cross-check.
    control_bytes_down: u64,
    /// A worker had to be aborted, or failed.
    stuck: bool,
    /// The server was found dead.
    server_died: bool,
}

/// The engine's view of its workers: what each last said.
struct Workers {
    set: WorkerSet,
    ready: Vec<u64>,
    progress: Vec<(u64, u64, u64)>,
    done: Vec<Option<Box<Measurement>>>,
    /// Workers whose senders are done ([`FromWorker::SendsDone`]).
    sends_done: Vec<bool>,
    /// Workers that ended without a measurement, and why.
    failed: Vec<(usize, String)>,
}

impl Workers {
    /// The workers of `set`; with `await_senders`, the drain waits for
    /// their `SendsDone`. (Across machines the schedule is fixed,
    /// `shard_slot`, and machine 0 cannot hear the others' senders: there
    /// the drain is `grace` alone.)
    fn new(set: WorkerSet, await_senders: bool) -> Workers {
        let n = set.len();
        Workers {
            set,
            ready: vec![0; n],
            progress: vec![(0, 0, 0); n],
            done: (0..n).map(|_| None).collect(),
            sends_done: vec![!await_senders; n],
            failed: Vec::new(),
        }
    }

    fn take(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Said(i, FromWorker::Ready { ready }) => self.ready[i] = ready,
            WorkerEvent::Said(
                i,
                FromWorker::Progress {
                    delivered,
                    errors,
                    p99_us,
                },
            ) => self.progress[i] = (delivered, errors, p99_us),
            WorkerEvent::Said(i, FromWorker::SendsDone) => self.sends_done[i] = true,
            WorkerEvent::Said(i, FromWorker::Done(m)) => self.done[i] = Some(m),
            WorkerEvent::Failed(i, why) => {
                if self.done[i].is_none() {
                    tracing::warn!("load-generator shard {i}: {why}");
                    self.failed.push((i, why));
                }
            }
        }
    }

    fn settled(&self) -> bool {
        self.done
            .iter()
            .enumerate()
            .all(|(i, d)| d.is_some() || self.failed.iter().any(|(f, _)| *f == i))
    }

    /// The barrier: waits until `expected` connections are up and
    /// subscribed across the workers, the server dies, a worker fails, or
    /// `deadline` passes. False when the server died.
    async fn await_ready(
        &mut self,
        server: &mut RunningServer,
        expected: u64,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> bool {
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            let ready: u64 = self.ready.iter().sum();
            if ready >= expected
                || Instant::now() >= deadline
                || stop.is_cancelled()
                || !self.failed.is_empty()
            {
                return true;
            }
            tokio::select! {
                Some(ev) = self.set.events.recv() => self.take(ev),
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = check.tick() => {
                    if !server.is_alive().await {
                        return false;
                    }
                }
            }
        }
    }

    /// Warm-up, measure and drain: reads the server at the edges of the
    /// measured window, watches the server, the workers and the stop
    /// signal, and reports progress.
    async fn watch_phases(
        &mut self,
        server: &mut RunningServer,
        s: &Scenario,
        t0: Instant,
        ramp_start: Instant,
        stop: &CancellationToken,
        progress: Option<&ProgressTx>,
    ) -> Watched {
        let probe = server.probe();
        let proxy = server.proxy_probe();
        let measure_start = t0 + s.warmup;
        let measure_end = measure_start + s.duration;
        let drain_end = measure_end + s.grace;
        let mut w = Watched {
            server_at_start: None,
            server_at_end: None,
            proxy_at_start: None,
            proxy_at_end: None,
            quota_at_start: None,
            quota_at_end: None,
            server_died: false,
            interrupted: false,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep_until(measure_start), if w.server_at_start.is_none() => {}
                _ = tokio::time::sleep_until(measure_end), if w.server_at_end.is_none() => {}
                Some(ev) = self.set.events.recv() => {
                    self.take(ev);
                    continue;
                }
            }
            if stop.is_cancelled() {
                w.interrupted = true;
                break;
            }
            let now = Instant::now();
            if w.server_at_start.is_none() && now >= measure_start {
                w.proxy_at_start = read_server(proxy.as_ref()).await;
                w.server_at_start = probe.read(0).await;
                w.quota_at_start = server.quota_periods();
            }
            if w.server_at_end.is_none() && now >= measure_end {
                w.proxy_at_end = read_server(proxy.as_ref()).await;
                w.server_at_end = probe.read(0).await;
                w.quota_at_end = server.quota_periods();
            }
            if !server.is_alive().await {
                w.server_died = true;
                break;
            }
            if !self.failed.is_empty() {
                break;
            }
            if let Some(tx) = progress {
                let delivered: u64 = self.progress.iter().map(|p| p.0).sum();
                let rate = delivered.saturating_sub(last.1) as f64
                    / now.duration_since(last.0).as_secs_f64().max(1e-3);
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
                    // The worst worker's: a bound on the whole run's.
                    p99_us: self.progress.iter().map(|p| p.2).max().unwrap_or(0),
                    errors: self.progress.iter().map(|p| p.1).sum(),
                });
            }
            // The drain lasts `grace` at least, and until every sender's
            // last publish reached the server, for at most SENDS_WAIT more.
            let senders_out = !self.sends_done.iter().all(|&d| d);
            if now >= drain_end && (!senders_out || now >= drain_end + SENDS_WAIT) {
                break;
            }
        }
        w
    }

    /// Teardown: a control message to every room ends each receiver after
    /// what it read, so every byte the server wrote has been read (unless
    /// the run is ending early, `abandon`, when the workers are told to
    /// abort); workers get 10 s to hand in their measurements, then are
    /// aborted. Returns the measurements combined.
    async fn teardown(
        mut self,
        server: &mut RunningServer,
        rooms: &[String],
        abandon: bool,
        send_stops: bool,
        end_message: bool,
    ) -> TornDown {
        let control_wire = Arc::new(WireStats::default());
        let mut server_died = false;
        let abandon = abandon || !self.failed.is_empty();
        if abandon {
            self.set.send_all(ToWorker::Abort);
        } else if !end_message {
            self.set.send_all(ToWorker::Finish);
        } else if send_stops {
            let body = serde_json::json!({"from": STOP_FROM, "body": ""}).to_string();
            for room in rooms {
                let path = format!("/rooms/{room}/messages");
                let sent = control_counted(
                    server.owner_of(room),
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
        let mut stuck = !self.failed.is_empty();
        let mut deadline = Instant::now() + Duration::from_secs(10);
        let mut aborted = abandon;
        while !self.settled() {
            tokio::select! {
                ev = self.set.events.recv() => match ev {
                    Some(ev) => self.take(ev),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if aborted {
                        break;
                    }
                    // Clients still out after 10 s: abort them, and give
                    // the workers a moment to hand in what they measured.
                    stuck = true;
                    aborted = true;
                    self.set.send_all(ToWorker::Abort);
                    deadline = Instant::now() + Duration::from_secs(3);
                }
            }
        }
        let mut measurement: Option<Measurement> = None;
        let mut lost_workers = Vec::new();
        for (i, m) in self.done.iter_mut().enumerate() {
            match m.take() {
                Some(m) => match &mut measurement {
                    None => measurement = Some(*m),
                    Some(all) => {
                        if let Err(e) = all.combine(&m) {
                            lost_workers.push((i, e.to_string()));
                        }
                    }
                },
                None => {
                    let why = self
                        .failed
                        .iter()
                        .find(|(f, _)| *f == i)
                        .map(|(_, why)| why.clone())
                        .unwrap_or_else(|| "it handed in no measurement in time".into());
                    lost_workers.push((i, why));
                }
            }
        }
        let mut measurement = measurement.unwrap_or_default();
        for (i, why) in lost_workers {
            stuck = true;
            measurement.audit.errors += 1;
            *measurement
                .error_causes
                // The words run.json has always used for a lost worker.
                .entry(format!("load-generator shard {i}: {why}"))
                .or_default() += 1;
        }
        self.set.reap().await;
        TornDown {
            measurement,
            control_bytes_down: control_wire.snapshot().bytes_down,
            stuck,
            server_died,
        }
    }
}

/// The server's processes as read during a transport run, each list in
/// process order.
struct ServerReadings<'a> {
    /// Before any client connected.
    baseline: Option<Vec<ProcSample>>,
    /// Once every client was connected, before traffic.
    before_traffic: Option<Vec<ProcSample>>,
    /// At the start and end of the measured window.
    window: Option<(Vec<ProcSample>, Vec<ProcSample>)>,
    /// Every ~100 ms of the run.
    ticks: &'a [Vec<ProcSample>],
    /// Client connections measured.
    connections: u64,
    /// Deliveries measured.
    delivered: u64,
    rooms: &'a [String],
    scenario: &'a Scenario,
    transport: Transport,
    /// Each process's `/metrics` over the run.
    deltas: Option<&'a [ServerCounters]>,
    /// The CPU quota's periods over the measured window, under one.
    quota_periods: Option<QuotaPeriods>,
}

/// The server's TCP sums over a transport run, read once it has closed the
/// run's connections ([`RunningServer::scrape_settled`]); None when it
/// cannot be read.
async fn server_tcp(
    server: &RunningServer,
    before: Option<&[ServerCounters]>,
) -> Option<chatbench_results::tcp::ServerTcp> {
    let before = before?;
    let settled = server.scrape_settled(before).await.ok()?;
    let deltas: Vec<ServerCounters> = settled
        .iter()
        .zip(before)
        .map(|(a, b)| a.delta(b))
        .collect();
    Some(ServerCounters::sum(&deltas).tcp())
}

/// The server's CPU and memory: summed over its processes, and per process
/// when there are several. None without the processes' ids.
fn server_cost(r: ServerReadings<'_>) -> Option<ServerCost> {
    let (a, b) = r.window?;
    let n = a.len();
    let before_traffic = r
        .before_traffic
        .unwrap_or_else(|| vec![ProcSample::default(); n]);
    let baseline = r.baseline.unwrap_or_else(|| before_traffic.clone());
    let rss = |v: &[ProcSample]| v.iter().map(|x| x.rss_bytes).sum::<u64>();
    let summed: Vec<ProcSample> = r.ticks.iter().map(|t| ProcSample::sum(t)).collect();
    let (a_all, b_all) = (ProcSample::sum(&a), ProcSample::sum(&b));
    let (cpu, precision) = ProcSample::cpu_between(&a_all, &b_all);
    let peak_of = |i: usize| {
        r.ticks
            .iter()
            .filter_map(|t| t.get(i).map(|x| x.rss_bytes))
            .max()
            .unwrap_or(b[i].rss_bytes)
    };
    let processes = if n > 1 {
        let http = !r.transport.is_duplex();
        let c = &r.scenario.clients;
        let per_room = c.clients_per_room as u64 + if http { c.senders_per_room as u64 } else { 0 };
        (0..n)
            .map(|i| {
                let rooms = r
                    .rooms
                    .iter()
                    .filter(|room| RoomOwner::owner(room, n as u32) as usize == i)
                    .count() as u64;
                let d = r.deltas.and_then(|d| d.get(i));
                ServerProcess {
                    index: i as u32,
                    rooms,
                    connections: rooms * per_room,
                    rss_baseline: baseline[i].rss_bytes,
                    rss_before_traffic: before_traffic[i].rss_bytes,
                    rss_peak: peak_of(i),
                    cpu_ms_measured: ProcSample::cpu_between(&a[i], &b[i]).0,
                    delivered: d.map_or(0, |d| ServerCounters::client_total(&d.delivered)),
                    bytes_written: d.map_or(0, |d| ServerCounters::client_total(&d.bytes_written)),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let rss_before = rss(&before_traffic);
    let base = rss(&baseline);
    Some(ServerCost {
        rss_baseline: base,
        rss_before_traffic: rss_before,
        rss_peak: summed
            .iter()
            .map(|x| x.rss_bytes)
            .max()
            .unwrap_or(b_all.rss_bytes),
        rss_per_connection: rss_before.saturating_sub(base) as f64 / r.connections.max(1) as f64,
        cpu_ms_measured: cpu,
        cpu_precision_ms: precision,
        cpu_ms_per_1k_msgs: per_1k(cpu, r.delivered),
        threads_peak: summed
            .iter()
            .map(|x| x.threads)
            .max()
            .unwrap_or(b_all.threads),
        fds_peak: summed.iter().map(|x| x.fds).max().unwrap_or(b_all.fds),
        samples: downsample(&summed, 1000),
        processes,
        quota_periods: r.quota_periods,
    })
}

/// How long the barrier waits beyond the ramp for the last clients.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Sent first: the whole run's transport runs (repetitions × sweep
    /// points × transports) and about how long their phases take in all.
    Plan {
        /// Transport runs.
        runs: usize,
        /// Their ramps, warm-ups, measured windows and drains, summed.
        total: Duration,
    },
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

/// The rooms of one transport run: named apart from every other run's on
/// the same server by the run's prefix, the transport, the sweep point and
/// the repetition.
fn room_names(
    prefix: &str,
    transport: Transport,
    point: usize,
    repetition: u32,
    rooms: u32,
) -> Vec<String> {
    (0..rooms)
        .map(|r| format!("{prefix}-{}-{point}-{repetition}-{r}", transport.short()))
        .collect()
}

/// The sending end of a run's progress.
pub type ProgressTx = tokio::sync::mpsc::UnboundedSender<Progress>;

/// The server's processes now, through `probe` when there is one.
async fn read_server(probe: Option<&crate::server::ServerProbe>) -> Option<Vec<ProcSample>> {
    probe?.read(0).await
}
