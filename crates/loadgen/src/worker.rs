//! Workers: one transport run's clients spread over load-generator
//! processes (`[clients] processes`).
//!
//! A worker runs every `of`-th client from `index` ([`WorkerTask`]), connects
//! them on the run's global ramp, reports how many are ready, starts traffic
//! at the instant the engine sends ([`ToWorker::Start`], on
//! `CLOCK_REALTIME`, which every process on a host shares), and when its
//! clients have read the end-of-run control message hands back its
//! [`Measurement`], which the engine combines with the others'. A worker is
//! either a task in this process ([`WorkerSet`] with one worker) or a
//! `chatbench worker` child speaking JSON lines on its stdin and stdout
//! ([`worker_main`]); both run [`run_worker`].
//!
//! Latency stays exact across processes: every timestamp is on the shared
//! host clock, from the one start instant. The audit stays exact: a sender
//! counts its room's whole membership as expected deliveries, and each
//! receiver counts its own, so the workers' counts add up to the room's.

use crate::client::{run_client, ClientSpec, RunCtx};
use crate::clock::{unix_now_us, RunClock, SendThread, SendTimer};
use crate::dial::Dialer;
use crate::record::Recorder;
use crate::resources::{self, ProcSample};
use crate::results::Readiness;
use crate::scenario::Scenario;
use crate::wire::{WireSnapshot, WireStats};
use crate::Transport;
use chatbench_proto::RoomOwner;
use chatbench_results::measurement::{Measurement, RssEdges};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What one worker runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerTask {
    /// The scenario (at its sweep point).
    pub scenario: Scenario,
    /// The transport.
    pub transport: Transport,
    /// Sweep point.
    pub point: usize,
    /// Repetition.
    pub repetition: u32,
    /// Room names, by room index.
    pub rooms: Vec<String>,
    /// The server processes, by index; a room lives on process
    /// `crc32(name) % servers.len()`.
    pub servers: Vec<SocketAddr>,
    /// The clock adjustment of the process that made the task
    /// ([`crate::clock::clock_adjust_us`]), which a worker takes on so that
    /// every process of a machine's shard (`--shard`) stamps on the same clock.
    #[serde(default)]
    pub clock_adjust_us: i64,
    /// The CA certificates (PEM) of the servers' TLS, when the scenario
    /// uses TLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_pems: Vec<String>,
    /// A WebSocket goes over HTTP/1.1 even in an HTTP/2 run (the proxy in
    /// front does not allow extended CONNECT).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub websocket_h1: bool,
    /// In packet mode, the clients' network namespace
    /// ([`crate::packet::forwarder::PacketLink`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// This worker's number, from 0.
    pub index: u32,
    /// How many workers there are.
    pub of: u32,
}

impl WorkerTask {
    /// Global ids of this worker's clients: every `of`-th from `index`, so
    /// each worker has its share of every room and of the senders.
    pub fn client_ids(&self) -> impl Iterator<Item = u64> {
        (self.index as u64..self.scenario.total_clients()).step_by(self.of.max(1) as usize)
    }

    /// Connections of this worker that must be up before traffic: every
    /// receiver, plus the publish connection of each sender on the HTTP
    /// transports (WebSocket and WebTransport senders publish on their own
    /// connection). A
    /// client of another stack's profile is ready once, when it has joined.
    pub fn expected_ready(&self) -> u64 {
        let http = !self.transport.is_duplex() && self.scenario.target.is_chatbench();
        self.client_ids()
            .map(|id| 1 + u64::from(http && ClientSpec::nth(&self.scenario, id).sender.is_some()))
            .sum()
    }
}

/// From the engine to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    /// Start traffic at this instant, µs since the UNIX epoch.
    Start {
        /// The start of traffic.
        t0_unix_us: u64,
    },
    /// End now: the run is stopped, the server died, or teardown timed out.
    Abort,
    /// The drain is over: receivers of a profile without chatbench's
    /// end-of-run message end after what they have read.
    Finish,
}

/// From a worker to the engine.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromWorker {
    /// Connections up and subscribed so far.
    Ready {
        /// How many.
        ready: u64,
    },
    /// About every 250 ms after the start.
    Progress {
        /// Measured deliveries so far.
        delivered: u64,
        /// Client errors so far.
        errors: u64,
        /// This worker's p99 latency so far, µs.
        p99_us: u64,
    },
    /// The measured window is over and every sender's last publish has
    /// reached the server (an HTTP publish answered, a WebSocket
    /// publish seen back in its room): the rooms may end.
    SendsDone,
    /// The worker's clients are done: what it measured.
    Done(Box<Measurement>),
}

/// Readings at the edges of the measured window: this process and its
/// clients' wire counters.
type Edge = (Option<ProcSample>, WireSnapshot);

fn edge(wire: &WireStats) -> Edge {
    (resources::read(std::process::id(), 0), wire.snapshot())
}

/// This process's resident memory over a worker's run: at its start, when
/// traffic starts, and the largest seen between.
struct RssWatch {
    baseline: Option<u64>,
    before_traffic: Option<u64>,
    peak: u64,
}

impl RssWatch {
    fn start() -> RssWatch {
        resources::release_freed();
        let baseline = resident_bytes();
        RssWatch {
            baseline,
            before_traffic: None,
            peak: baseline.unwrap_or(0),
        }
    }

    fn sample(&mut self) -> Option<u64> {
        let now = resident_bytes()?;
        self.peak = self.peak.max(now);
        Some(now)
    }

    fn at_start(&mut self) {
        self.before_traffic = self.sample();
    }

    fn finish(mut self) -> Option<RssEdges> {
        self.sample();
        Some(RssEdges {
            baseline: self.baseline?,
            before_traffic: self.before_traffic?,
            peak: self.peak,
        })
    }
}

/// This process's resident set, bytes, from `/proc/self/statm` (cheaper
/// than a full [`resources::read`], which counts open files).
fn resident_bytes() -> Option<u64> {
    let statm = procfs::process::Process::myself().ok()?.statm().ok()?;
    Some(statm.resident * procfs::page_size())
}

/// Runs one worker: ramp, ready reports, traffic from the start instant,
/// then its measurement. Ends early on [`ToWorker::Abort`] or when `cmds`
/// closes.
pub async fn run_worker(
    task: WorkerTask,
    mut cmds: UnboundedReceiver<ToWorker>,
    events: UnboundedSender<FromWorker>,
) -> std::io::Result<()> {
    if task.servers.is_empty() {
        return Err(std::io::Error::other("the worker task names no server"));
    }
    let ctx = context(&task)?;
    let s = ctx.scenario.clone();
    let mut rss = RssWatch::start();
    let ramp_start = Instant::now();
    let mut ids = task.client_ids().peekable();
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    let clock = ramp(&ctx, &task, &mut ids, &mut clients, &mut cmds, &events).await;
    let readiness = Readiness {
        expected: task.expected_ready(),
        ready: ctx.ready.load(Relaxed),
        ramp_ms: ramp_start.elapsed().as_millis() as u64,
    };
    let mut window = Window {
        aborted: clock.is_none(),
        at_start: None,
        at_end: None,
    };
    if let Some(clock) = clock {
        // A start before the ramp ended (the engine's barrier timed out):
        // the rest connect now.
        for id in ids {
            clients.push(tokio::spawn(run_client(
                ctx.clone(),
                ClientSpec::nth(&s, id),
            )));
        }
        rss.at_start();
        let from = clock.t0_unix_us + s.warmup.as_micros() as u64;
        ctx.dial
            .radios()
            .start(from, from + s.duration.as_micros() as u64);
        let _ = ctx.clock.set(clock);
        ctx.start.send_replace(true);
        window = traffic(&ctx, clock, &mut clients, &mut cmds, &events, &mut rss).await;
    }
    if window.aborted {
        ctx.abort.cancel();
        // Only the clients still running: a handle that traffic's wait
        // already joined must not be awaited again (tokio panics on it).
        let wait = async {
            for c in clients.iter_mut().filter(|c| !c.is_finished()) {
                let _ = c.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .is_err()
        {
            for c in &clients {
                c.abort();
            }
        }
    }
    let measurement = measure(&task, &ctx, window, rss, readiness);
    let _ = events.send(FromWorker::Done(Box::new(measurement)));
    Ok(())
}

/// What a worker's clients share, for `task`.
fn context(task: &WorkerTask) -> std::io::Result<Arc<RunCtx>> {
    let s = Arc::new(task.scenario.clone());
    let (start, _) = watch::channel(false);
    let wire = Arc::new(WireStats::default());
    let rec = Arc::new(Recorder::new(16));
    let room_servers = task
        .rooms
        .iter()
        .map(|r| task.servers[RoomOwner::owner(r, task.servers.len() as u32) as usize])
        .collect();
    let dial = Dialer::new(
        &s,
        room_servers,
        &task.servers,
        &task.ca_pems,
        wire.clone(),
        rec.clone(),
        task.netns.as_deref(),
    )?
    .with_websocket_h1(task.websocket_h1);
    Ok(Arc::new(RunCtx {
        transport: task.transport,
        scenario: s.clone(),
        rooms: task.rooms.clone(),
        clock: OnceLock::new(),
        start,
        ready: AtomicU64::new(0),
        ready_changed: Notify::new(),
        timer: SendTimer::start()?,
        sends: SendThread::start()?,
        wire,
        rec,
        abort: CancellationToken::new(),
        finish: CancellationToken::new(),
        body: "x".repeat(s.messages.body_bytes),
        dial,
        sending: AtomicU64::new(0),
    }))
}

/// Connects this worker's clients on the run's global ramp (each at its
/// share of `clients.ramp`), reporting how many are ready, until the
/// engine's start: its clock, or None on an abort.
async fn ramp(
    ctx: &Arc<RunCtx>,
    task: &WorkerTask,
    ids: &mut std::iter::Peekable<impl Iterator<Item = u64>>,
    clients: &mut Vec<JoinHandle<()>>,
    cmds: &mut UnboundedReceiver<ToWorker>,
    events: &UnboundedSender<FromWorker>,
) -> Option<RunClock> {
    let s = &task.scenario;
    let total = s.total_clients().max(1);
    let ramp_start = Instant::now();
    let mut sent_ready = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let next_at = ids
            .peek()
            .map(|&id| ramp_start + s.clients.ramp.mul_f64(id as f64 / total as f64));
        tokio::select! {
            _ = tokio::time::sleep_until(next_at.unwrap_or(ramp_start)), if next_at.is_some() => {
                if let Some(id) = ids.next() {
                    clients.push(tokio::spawn(run_client(ctx.clone(), ClientSpec::nth(s, id))));
                }
                continue;
            }
            cmd = cmds.recv() => match cmd {
                Some(ToWorker::Start { t0_unix_us }) => return Some(RunClock::starting_at(t0_unix_us)),
                Some(ToWorker::Abort) | None => return None,
                Some(ToWorker::Finish) => {}
            },
            _ = ctx.ready_changed.notified() => {}
            _ = tick.tick() => {}
        }
        let ready = ctx.ready.load(Relaxed);
        if sent_ready != Some(ready) {
            sent_ready = Some(ready);
            let _ = events.send(FromWorker::Ready { ready });
        }
    }
}

/// How traffic went: whether it was aborted, and the readings at the edges
/// of the measured window that it reached.
struct Window {
    aborted: bool,
    at_start: Option<Edge>,
    at_end: Option<Edge>,
}

/// Runs traffic from `clock`'s start until the clients are done or the
/// engine aborts, reading the edges of the measured window and reporting
/// progress every 250 ms.
async fn traffic(
    ctx: &RunCtx,
    clock: RunClock,
    clients: &mut [JoinHandle<()>],
    cmds: &mut UnboundedReceiver<ToWorker>,
    events: &UnboundedSender<FromWorker>,
    rss: &mut RssWatch,
) -> Window {
    let s = &ctx.scenario;
    let mut w = Window {
        aborted: false,
        at_start: None,
        at_end: None,
    };
    let instant_of = |unix_us: u64| {
        Instant::now() + Duration::from_micros(unix_us.saturating_sub(unix_now_us()))
    };
    let measure_start = instant_of(clock.t0_unix_us + s.warmup.as_micros() as u64);
    let measure_end = measure_start + s.duration;
    let mut done = std::pin::pin!(async {
        for c in clients.iter_mut() {
            let _ = c.await;
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut sends_done = false;
    loop {
        tokio::select! {
            _ = &mut done => break,
            cmd = cmds.recv() => match cmd {
                Some(ToWorker::Abort) | None => {
                    w.aborted = true;
                    break;
                }
                Some(ToWorker::Finish) => ctx.finish.cancel(),
                Some(ToWorker::Start { .. }) => {}
            },
            _ = tokio::time::sleep_until(measure_start), if w.at_start.is_none() => {}
            _ = tokio::time::sleep_until(measure_end), if w.at_end.is_none() => {}
            _ = tick.tick() => {
                rss.sample();
            }
        }
        let now = Instant::now();
        if w.at_start.is_none() && now >= measure_start {
            w.at_start = Some(edge(&ctx.wire));
        }
        if w.at_end.is_none() && now >= measure_end {
            w.at_end = Some(edge(&ctx.wire));
        }
        if !sends_done && now >= measure_end && ctx.sending.load(Relaxed) == 0 {
            sends_done = true;
            let _ = events.send(FromWorker::SendsDone);
        }
        let _ = events.send(FromWorker::Progress {
            delivered: ctx.rec.audit.live_delivered.load(Relaxed),
            errors: ctx.rec.audit.errors.load(Relaxed),
            p99_us: ctx.rec.live_p99(),
        });
    }
    w
}

/// What the worker measured.
fn measure(
    task: &WorkerTask,
    ctx: &RunCtx,
    window: Window,
    rss: RssWatch,
    readiness: Readiness,
) -> Measurement {
    let s = &ctx.scenario;
    let aborted = window.aborted;
    let (at_start, at_end) = (window.at_start, window.at_end);
    ctx.timer.close();
    let total_wire = ctx.wire.snapshot();
    let (lg0, w0) = at_start.unwrap_or((None, WireSnapshot::default()));
    let (lg1, w1) = at_end.unwrap_or((None, total_wire));
    let cpu = lg0.zip(lg1).map(|(a, b)| ProcSample::cpu_between(&a, &b));
    let radio = ctx.dial.radios().finish();
    Measurement {
        transport: Some(task.transport),
        point: task.point,
        repetition: task.repetition,
        measured_from_unix_ms: ctx
            .clock
            .get()
            .map_or(0, |c| (c.t0_unix_us + s.warmup.as_micros() as u64) / 1000),
        measured_seconds: s.duration.as_secs_f64(),
        histograms: ctx.rec.merged(),
        audit: ctx.rec.audit.counts(),
        wire_measured: w1 - w0,
        wire_total: total_wire,
        tcp: ctx.wire.tcp.totals(),
        loadgen_cpu_ms: cpu.map(|c| c.0),
        loadgen_cpu_precision_ms: cpu.map_or(0.0, |c| c.1),
        loadgen_cpus: 0,
        loadgen_rss: rss.finish(),
        loadgen_processes: 1,
        ready: readiness,
        ended_early: aborted,
        error_causes: ctx.rec.audit.causes(),
        drops: s
            .network
            .drop_every
            .is_some()
            .then(|| ctx.rec.drops.counts()),
        join: ctx.rec.join.counts(),
        radio: radio.0,
        radio_messages: radio.1,
    }
}

/// What the engine hears from its workers: a worker's message, or that a
/// worker ended without its measurement.
#[derive(Debug)]
pub enum WorkerEvent {
    /// Worker `0` said this.
    Said(usize, FromWorker),
    /// Worker `0` ended without a measurement, for this reason.
    Failed(usize, String),
}

/// The workers of one transport run, as the engine drives them.
#[derive(Debug)]
pub struct WorkerSet {
    cmds: Vec<UnboundedSender<ToWorker>>,
    /// Everything the workers say, tagged with their number.
    pub events: UnboundedReceiver<WorkerEvent>,
    children: Vec<tokio::process::Child>,
}

impl WorkerSet {
    /// Starts one worker per task: in this process when there is one,
    /// otherwise each in a `worker` child of `exe`.
    pub fn start(tasks: Vec<WorkerTask>, exe: &Path) -> std::io::Result<WorkerSet> {
        let (tx, events) = unbounded_channel();
        let mut set = WorkerSet {
            cmds: Vec::new(),
            events,
            children: Vec::new(),
        };
        let local = tasks.len() == 1;
        for (i, task) in tasks.into_iter().enumerate() {
            let (cmd_tx, cmd_rx) = unbounded_channel();
            set.cmds.push(cmd_tx);
            if local {
                let (ev_tx, mut ev_rx) = unbounded_channel();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let run = tokio::spawn(run_worker(task, cmd_rx, ev_tx));
                    let mut done = false;
                    while let Some(ev) = ev_rx.recv().await {
                        done |= matches!(ev, FromWorker::Done(_));
                        let _ = tx.send(WorkerEvent::Said(i, ev));
                    }
                    let why = match run.await {
                        Ok(Ok(())) if done => return,
                        Ok(Ok(())) => "it ended without a measurement".to_string(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("it panicked: {e}"),
                    };
                    let _ = tx.send(WorkerEvent::Failed(i, why));
                });
            } else {
                set.children
                    .push(spawn_worker(exe, i, task, cmd_rx, tx.clone())?);
            }
        }
        Ok(set)
    }

    /// Sends `cmd` to every worker (a worker that is gone is skipped).
    pub fn send_all(&self, cmd: ToWorker) {
        for c in &self.cmds {
            let _ = c.send(cmd);
        }
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Waits for the worker processes to exit (killing any that has not
    /// within 2 s).
    pub async fn reap(mut self) {
        self.cmds.clear();
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(2), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }
}

/// Starts a `worker` child for worker `i`: the task on its first stdin
/// line, then commands; its stdout lines become events.
fn spawn_worker(
    exe: &Path,
    i: usize,
    task: WorkerTask,
    mut cmds: UnboundedReceiver<ToWorker>,
    events: UnboundedSender<WorkerEvent>,
) -> std::io::Result<tokio::process::Child> {
    let mut child = tokio::process::Command::new(exe)
        .arg("worker")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let first = serde_json::to_string(&task).map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let mut line = first;
        loop {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            match cmds.recv().await {
                Some(cmd) => line = serde_json::to_string(&cmd).unwrap_or_default(),
                // Closing stdin tells the worker to abort.
                None => return,
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let why = loop {
            match lines.next_line().await {
                Ok(Some(line)) => match serde_json::from_str::<FromWorker>(&line) {
                    Ok(ev) => {
                        let done = matches!(ev, FromWorker::Done(_));
                        let _ = events.send(WorkerEvent::Said(i, ev));
                        if done {
                            return;
                        }
                    }
                    Err(e) => {
                        break format!("worker {i} wrote a line that is not a worker message: {e}")
                    }
                },
                Ok(None) => break format!("worker {i} exited without its measurement"),
                Err(e) => break format!("cannot read worker {i}: {e}"),
            }
        };
        let _ = events.send(WorkerEvent::Failed(i, why));
    });
    Ok(child)
}

/// `chatbench worker`: reads a [`WorkerTask`] from the first stdin line,
/// runs it, and writes [`FromWorker`] lines to stdout. Later stdin lines
/// are [`ToWorker`] commands; the end of stdin aborts.
pub async fn worker_main() -> std::io::Result<()> {
    let _stamps = crate::wire::ArrivalStamps::hold();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no task on stdin")
    })?;
    let task: WorkerTask = serde_json::from_str(&first).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the first stdin line is not a worker task: {e}"),
        )
    })?;
    crate::clock::set_clock_adjust_us(task.clock_adjust_us);
    let (cmd_tx, cmd_rx) = unbounded_channel();
    let (ev_tx, mut ev_rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<ToWorker>(&line) {
                Ok(cmd) => {
                    if cmd_tx.send(cmd).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("worker: ignoring a stdin line that is not a command: {e}")
                }
            }
        }
        let _ = cmd_tx.send(ToWorker::Abort);
    });
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(ev) = ev_rx.recv().await {
            let mut line = serde_json::to_string(&ev).map_err(std::io::Error::other)?;
            line.push('\n');
            out.write_all(line.as_bytes()).await?;
            out.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });
    run_worker(task, cmd_rx, ev_tx).await?;
    writer.await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(of: u32, index: u32, transport: Transport) -> WorkerTask {
        WorkerTask {
            scenario: Scenario::parse(
                "name='t'\ntransports=['sse']\nduration='2s'\n[clients]\nrooms=3\nclients_per_room=5\nsenders_per_room=2\n[messages]\nrate=1.0\n",
                std::path::Path::new("t.toml"),
            )
            .unwrap(),
            transport,
            point: 0,
            repetition: 0,
            rooms: vec![],
            servers: vec!["127.0.0.1:1".parse().unwrap()],
            clock_adjust_us: 0,
            ca_pems: vec![],
            websocket_h1: false,
            netns: None,
            index,
            of,
        }
    }

    #[test]
    fn workers_split_the_clients_and_their_readiness() {
        for t in [Transport::Sse, Transport::WebSocket] {
            let workers: Vec<WorkerTask> = (0..4).map(|i| task(4, i, t)).collect();
            let mut ids: Vec<u64> = workers.iter().flat_map(|s| s.client_ids()).collect();
            ids.sort_unstable();
            assert_eq!(ids, (0..15).collect::<Vec<_>>());
            let ready: u64 = workers.iter().map(WorkerTask::expected_ready).sum();
            // 15 receivers, and on HTTP the publish connections of 6 senders.
            assert_eq!(ready, if t == Transport::Sse { 21 } else { 15 });
        }
        assert_eq!(task(1, 0, Transport::Sse).expected_ready(), 21);
    }

    #[test]
    fn messages_between_engine_and_worker_are_json_lines() {
        let t = task(2, 1, Transport::LongPoll);
        let back: WorkerTask = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            serde_json::to_string(&ToWorker::Start { t0_unix_us: 5 }).unwrap(),
            r#"{"start":{"t0_unix_us":5}}"#
        );
        assert_eq!(
            serde_json::to_string(&ToWorker::Abort).unwrap(),
            r#""abort""#
        );
        let ev = serde_json::to_string(&FromWorker::Ready { ready: 3 }).unwrap();
        assert_eq!(ev, r#"{"ready":{"ready":3}}"#);
    }
}
