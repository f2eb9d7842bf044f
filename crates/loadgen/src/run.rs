//! A whole run: every transport and repetition, interleaved, into one run
//! folder. `run.json` is rewritten after each transport run, so a run that
//! is stopped or whose server dies still leaves its partial results.

use crate::engine::{run_transport, shard_slot, Loadgen, MachineShard, Progress, ProgressTx, Slot};
use crate::merge::MEASUREMENTS;
use crate::packet::forwarder::PacketLink;
use crate::proxy::{ProxySpec, RunningProxy};
use crate::resources::detect_environment;
use crate::results::{
    write_latency_histograms, CpuPlacement, LatencyRep, RunFile, Setting, ShardInfo, TransportRun,
};
use crate::scenario::Scenario;
use crate::server::{RunningServer, ServerTarget};
use crate::Transport;
use chatbench_proto::RoomOwner;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Four hex digits that set this run's room names apart from those of
/// other runs against the same server: a random start per process, then
/// one more per run. They used to be the run id's suffix (the pid), so two
/// runs of one process shared rooms and the second read the first's
/// messages. Four digits, not more: room names are in every message, and a
/// longer prefix would move every bytes-per-message figure.
fn room_salt() -> u16 {
    static BASE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = *BASE.get_or_init(rand::random);
    base.wrapping_add(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// `GET /time` exchanges a shard makes to estimate the server's clock.
pub const CLOCK_EXCHANGES: u32 = 16;

/// What to run and where results go.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario, with overrides already applied.
    pub scenario: Scenario,
    /// Results root; the run folder is `<out>/<scenario>/<run-id>/`.
    pub out: PathBuf,
    /// The server.
    pub target: ServerTarget,
    /// Stop at the first server death (else go on with the next transport).
    pub keep_going: bool,
    /// CPU placement, as pinned by the caller.
    pub cpus: CpuPlacement,
    /// CPUs the load generator may use.
    pub loadgen_cpus: usize,
    /// CPUs the server may use, when chatbench starts it (its pinning, or
    /// every CPU); None for an external server. The base of the server's CPU
    /// share, for the `saturated` flag, unless the scenario gives the
    /// server a smaller `server.cpu_quota`.
    pub server_cpus: Option<usize>,
    /// The `chatbench` executable, whose `worker` subcommand runs a share
    /// of the clients when a scenario asks for `[clients] processes` > 1.
    pub worker_exe: PathBuf,
    /// The command line, for the record.
    pub command: Vec<String>,
    /// How the binary was built.
    pub build: crate::resources::BuildInfo,
    /// Where progress goes, if anywhere.
    pub progress: Option<ProgressTx>,
    /// Cancelled to stop the run now (the CLI cancels it on SIGINT and
    /// SIGTERM); the folder is then written with `complete: false`.
    pub stop: CancellationToken,
    /// This machine's part of a run spread over machines, if it is one.
    pub shard: Option<ShardOptions>,
}

/// One machine's part of a run spread over machines (`chatbench run
/// --shard I/N --start-at T`): it runs every N-th client of every room,
/// from shard I, on a schedule fixed by T, and writes a partial folder that
/// `chatbench merge` joins with the other shards'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardOptions {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards the run has.
    pub of: u32,
    /// When the first transport run's ramp starts, µs since the epoch on
    /// the server's clock.
    pub start_at_unix_us: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run folder could not be made or written.
    #[error("cannot write results to {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server could not be started or reached.
    #[error("{transport} repetition {repetition}: {source}; partial results are in {dir}")]
    Server {
        /// The transport.
        transport: Transport,
        /// The repetition.
        repetition: u32,
        /// Why.
        source: crate::server::ServerError,
        /// The run folder.
        dir: PathBuf,
    },
    /// A sweep point is not a valid scenario (scenario loading checks every
    /// point, so only a scenario built by hand gets here).
    #[error("a sweep point is not a valid scenario: {reason}; the run folder is {dir}")]
    Sweep {
        /// What is wrong with it.
        reason: String,
        /// The run folder.
        dir: PathBuf,
    },
    /// The run was stopped from outside before it finished.
    #[error("the run was interrupted during {transport}; partial results (complete: false) are in {dir}")]
    Interrupted {
        /// The transport run that was cut short.
        transport: String,
        /// The run folder.
        dir: PathBuf,
    },
    /// This machine's shard of a run spread over machines could not run.
    #[error("--shard: {reason}; the run folder is {dir}")]
    Shard {
        /// Why.
        reason: String,
        /// The run folder.
        dir: PathBuf,
    },
    /// The reverse proxy of `[path] proxy` could not start.
    #[error("path.proxy: {reason}; the run folder is {dir}")]
    Proxy {
        /// Why.
        reason: String,
        /// The run folder.
        dir: PathBuf,
    },
    /// The packet-level link could not start.
    #[error("network.mode = \"packet\": {reason}; the run folder is {dir}")]
    Network {
        /// Why.
        reason: String,
        /// The run folder.
        dir: PathBuf,
    },
    /// The server died during a run.
    #[error("the server died during {transports}; partial results are in {dir}")]
    ServerDied {
        /// Where it died.
        transports: String,
        /// The run folder.
        dir: PathBuf,
    },
}

/// The problem a run folder names while its run is still going.
const NOT_FINISHED: &str = "the run has not finished";

/// Writes the folder of an interrupted run: `complete: false`, the reason,
/// the partial results. Returns the error that names it.
fn finish_interrupted(
    file: &mut RunFile,
    dir: &Path,
    s: &Scenario,
    hists: &[LatencyRep],
    transport: String,
) -> Result<RunError, RunError> {
    let io = |source| RunError::Io {
        path: dir.to_owned(),
        source,
    };
    file.complete = false;
    file.problems.retain(|p| p != NOT_FINISHED);
    file.summarize();
    file.write(dir).map_err(io)?;
    write_latency_histograms(dir, s, hists, &file.runs).map_err(io)?;
    Ok(RunError::Interrupted {
        transport,
        dir: dir.to_owned(),
    })
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// The run folder.
    pub dir: PathBuf,
    /// Its contents.
    pub file: RunFile,
}

/// Runs the scenario and writes its run folder.
pub async fn run(opts: RunOptions) -> Result<Finished, RunError> {
    let s = Arc::new(opts.scenario.clone());
    let _stamps = crate::wire::ArrivalStamps::hold();
    let id = crate::results::new_run_id();
    let run_salt = room_salt();
    let dir = opts.out.join(&s.name).join(&id);
    std::fs::create_dir_all(dir.parent().unwrap_or(&opts.out)).map_err(io(&dir))?;
    // create_dir, not create_dir_all: a run folder is never reused.
    std::fs::create_dir(&dir).map_err(io(&dir))?;
    let target = match &opts.target {
        ServerTarget::Spawn {
            exe, args, cpus, ..
        } => ServerTarget::Spawn {
            exe: exe.clone(),
            args: args.clone(),
            cpus: cpus.clone(),
            log: Some(dir.join("server.log")),
        },
        t => t.clone(),
    };
    let mut file = begin_file(&opts, id.clone(), &target);
    file.write(&dir).map_err(io(&dir))?;
    if let Some(sh) = opts.shard {
        join_machines(sh, &target, &mut file, &dir).await?;
    }
    // The ramp start of the next transport run, in a run spread over machines.
    let mut slot_at = opts.shard.map(|sh| sh.start_at_unix_us);
    let mut hists: Vec<LatencyRep> = Vec::new();
    let mut died: Vec<String> = Vec::new();
    let points: Vec<Arc<Scenario>> = (0..s.points())
        .map(|p| s.at_point(p).map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(|reason| RunError::Sweep {
            reason,
            dir: dir.clone(),
        })?;
    if let Some(tx) = &opts.progress {
        let one_rep: std::time::Duration = points
            .iter()
            .map(|sp| phases(sp) * sp.run_transports().len() as u32)
            .sum::<std::time::Duration>();
        let runs: usize = points.iter().map(|sp| sp.run_transports().len()).sum();
        let _ = tx.send(Progress::Plan {
            runs: s.repeat as usize * runs,
            total: one_rep * s.repeat,
        });
    }
    'reps: for rep in 0..s.repeat {
        for (point, sp) in points.iter().enumerate() {
            for &t in sp.run_transports() {
                let at = s
                    .point_label(point)
                    .map(|v| format!(" @{v}"))
                    .unwrap_or_default();
                let label = format!("{t}{at} {}/{}", rep + 1, s.repeat);
                let (link, mut server, proxy) =
                    match start_path(sp, &target, rep, &dir.join(format!("proxy-{point}"))).await {
                        Ok(started) => started,
                        Err(e) => {
                            end_early(&mut file, &dir, &s, &hists, format!("{label}: {e}"))?;
                            return Err(e.into_run_error(t, rep, dir));
                        }
                    };
                if let Some(tx) = &opts.progress {
                    let _ = tx.send(Progress::Started {
                        label: label.clone(),
                        total: phases(sp),
                    });
                }
                let prefix = room_prefix(&opts, &s, run_salt);
                let machine = machine_slot(&opts, sp, &label, &mut slot_at, &mut file);
                let outcome = run_transport(
                    &mut server,
                    sp,
                    t,
                    Slot {
                        point,
                        repetition: rep,
                        room_prefix: &prefix,
                        stop: &opts.stop,
                        machine,
                        netns: link.as_ref().map(|l| l.netns_name()),
                    },
                    &Loadgen {
                        cpus: opts.loadgen_cpus,
                        exe: opts.worker_exe.clone(),
                        server_cpus: server_cpus(opts.server_cpus, sp),
                    },
                    opts.progress.as_ref(),
                )
                .await;
                if let Some(p) = proxy {
                    p.stop().await;
                }
                server.stop().await;
                let link = link.map(PacketLink::stop);
                let mut outcome = match outcome {
                    Ok(o) => o,
                    Err(source) => {
                        // Only the send timer's thread can fail to start.
                        let why = format!("{label}: cannot start the send timer: {source}");
                        end_early(&mut file, &dir, &s, &hists, why)?;
                        return Err(RunError::Io { path: dir, source });
                    }
                };
                outcome.run.link = link.and_then(Result::ok).map(crate::packet::report);
                if let Some(tx) = &opts.progress {
                    let _ = tx.send(finished(&label, &outcome.run));
                }
                if let Some(line) = &outcome.measurement_json {
                    append_measurement(&dir, line)?;
                }
                if outcome.interrupted {
                    file.problems
                        .push(format!("{label}: interrupted before it finished"));
                    file.runs.push(outcome.run);
                    hists.push((t, point, rep, outcome.histograms.latency));
                    return Err(finish_interrupted(&mut file, &dir, &s, &hists, label)?);
                }
                if outcome.server_died {
                    file.complete = false;
                    file.problems
                        .push(format!("{label}: the server died during the run"));
                    died.push(label);
                }
                file.runs.push(outcome.run);
                hists.push((t, point, rep, outcome.histograms.latency));
                file.summarize();
                file.write(&dir).map_err(io(&dir))?;
                if !died.is_empty() && !opts.keep_going {
                    break 'reps;
                }
            }
        }
    }
    file.problems.retain(|p| p != NOT_FINISHED);
    file.complete = died.is_empty();
    file.write(&dir).map_err(io(&dir))?;
    write_latency_histograms(&dir, &s, &hists, &file.runs).map_err(io(&dir))?;
    if !died.is_empty() {
        return Err(RunError::ServerDied {
            transports: died.join(", "),
            dir,
        });
    }
    Ok(Finished { dir, file })
}

/// The QUIC stack, when some sweep point uses HTTP/3 or WebTransport.
fn quic_stack(s: &Scenario) -> Option<chatbench_results::run_file::QuicStack> {
    let quic = (0..s.points()).filter_map(|p| s.at_point(p).ok()).any(|p| {
        p.protocol.is_http3() || p.run_transports().contains(&crate::Transport::WebTransport)
    });
    quic.then(|| chatbench_results::run_file::QuicStack {
        implementation: crate::dial::quic::IMPLEMENTATION.into(),
        congestion_control: crate::dial::quic::CONGESTION_CONTROL.into(),
    })
}

/// How `run.json` names the way `[network]` was applied: packet-level when
/// some sweep point asks for it, socket-level when some point sets a link,
/// None on loopback as it is.
fn network_mode(s: &Scenario) -> Option<String> {
    let points: Vec<Scenario> = (0..s.points()).filter_map(|p| s.at_point(p).ok()).collect();
    if points
        .iter()
        .any(|p| p.network.mode == crate::scenario::NetworkMode::Packet)
    {
        return Some(crate::packet::MODE.to_owned());
    }
    points
        .iter()
        .any(|p| !p.network.is_loopback())
        .then(|| crate::link::LinkSpec::MODE.to_owned())
}

/// Why a transport run's path (its packet link, its server) did not start.
#[derive(Debug, thiserror::Error)]
enum PathError {
    #[error("{0}")]
    Network(String),
    #[error("{0}")]
    Server(crate::server::ServerError),
    #[error("{0}")]
    Proxy(String),
}

impl PathError {
    /// The run's error, for transport `t`'s repetition `rep` in `dir`.
    fn into_run_error(self, t: Transport, rep: u32, dir: PathBuf) -> RunError {
        match self {
            PathError::Network(reason) => RunError::Network { reason, dir },
            PathError::Proxy(reason) => RunError::Proxy { reason, dir },
            PathError::Server(source) => RunError::Server {
                transport: t,
                repetition: rep,
                source,
                dir,
            },
        }
    }
}

/// Starts what one transport run measures through: its packet-level link
/// when it has one, then its server, listening on the link's server side
/// (on loopback without a link).
async fn start_path(
    sp: &Scenario,
    target: &ServerTarget,
    rep: u32,
    proxy_dir: &Path,
) -> Result<(Option<PacketLink>, RunningServer, Option<RunningProxy>), PathError> {
    let link = packet_link(sp, target, rep).map_err(PathError::Network)?;
    let listen = link
        .as_ref()
        .map_or(std::net::Ipv4Addr::LOCALHOST, |l| l.server_ip());
    let mut flags = sp.server.flags();
    if sp.protocol.is_http3()
        || sp
            .run_transports()
            .contains(&crate::Transport::WebTransport)
    {
        // QUIC on the listening port's number over UDP, beside TCP.
        flags.push("--http3".into());
    }
    let target = target
        .for_kind(sp.target.server)
        .map_err(PathError::Server)?
        .with_flags(flags);
    let server = RunningServer::start(
        &target,
        sp.server.processes,
        sp.busiest_server_connections(),
        // TLS ends at the proxy when there is one.
        sp.protocol.tls && sp.path.is_direct(),
        listen.into(),
        sp.server.cpu_quota,
    )
    .await
    .map_err(PathError::Server)?;
    let mut server = server;
    let proxy = match start_proxy(sp, &target, &server, proxy_dir).await {
        Ok(p) => p,
        Err(e) => {
            server.stop().await;
            return Err(PathError::Proxy(e));
        }
    };
    if let Some(p) = &proxy {
        server.set_front(p.front.clone());
    }
    Ok((link, server, proxy))
}

/// The reverse proxy of `[path] proxy`, in front of `server`, when the
/// scenario asks for one: only before a server chatbench spawned, pinned
/// to its CPUs, its configuration written into `dir`.
async fn start_proxy(
    sp: &Scenario,
    target: &ServerTarget,
    server: &RunningServer,
    dir: &Path,
) -> Result<Option<RunningProxy>, String> {
    if sp.path.is_direct() {
        return Ok(None);
    }
    let ServerTarget::Spawn { cpus, .. } = target else {
        return Err(
            "[path] proxy runs only in front of a server chatbench spawns, not with --server"
                .into(),
        );
    };
    let spec = ProxySpec {
        path: sp.path,
        listen: crate::proxy::free_loopback_port().map_err(|e| e.to_string())?,
        upstream: server.addrs()[0],
        max_connections: sp.busiest_server_connections(),
        dir: dir.to_owned(),
        // SAFETY: geteuid has no preconditions and cannot fail.
        root: unsafe { libc::geteuid() } == 0,
        protocol: sp.protocol,
    };
    RunningProxy::start(&spec, cpus.as_deref())
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The packet-level link of one transport run, when its sweep point asks
/// for one (`network.mode = "packet"`): a server chatbench spawns listens
/// on the link's server side. Its loss and jitter draw from the scenario's
/// seed and the repetition.
fn packet_link(
    sp: &Scenario,
    target: &ServerTarget,
    rep: u32,
) -> Result<Option<PacketLink>, String> {
    let Some(spec) = crate::packet::spec_of(&sp.network, sp.seed ^ (u64::from(rep) << 32)) else {
        return Ok(None);
    };
    let spec = spec?;
    if matches!(target, ServerTarget::External { .. }) {
        return Err("the packet-level link runs only in front of a server chatbench spawns, not with --server".into());
    }
    PacketLink::start(spec).map(Some).map_err(|e| {
        format!("cannot start the packet-level link (it needs root and iproute2's ip): {e}")
    })
}

/// The error of a failed write or read of `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.to_path_buf();
    move |source| RunError::Io { path, source }
}

/// One transport run's phases, at its sweep point.
fn phases(sp: &Scenario) -> std::time::Duration {
    sp.clients.ramp + sp.warmup + sp.duration + sp.grace
}

/// The run folder's `run.json` before its first transport run: until the
/// last transport run is in, it says it is not complete, so even a run
/// killed outright (SIGKILL) leaves an honest run.json.
fn begin_file(opts: &RunOptions, id: String, target: &ServerTarget) -> RunFile {
    let setting = Setting {
        environment: detect_environment(&opts.build),
        server_mode: match target {
            ServerTarget::Spawn { .. } => "spawned".into(),
            ServerTarget::External { pid: Some(_), .. } => "external".into(),
            // Its CPU and memory come from its `/metrics` (`process_*`).
            ServerTarget::External { pid: None, .. } => "external, measured by its /metrics".into(),
        },
        network_mode: network_mode(&opts.scenario),
        quic: quic_stack(&opts.scenario),
        cpus: opts.cpus.clone(),
    };
    let mut file = RunFile::begin(id, opts.command.clone(), opts.scenario.clone(), setting);
    file.complete = false;
    file.problems = vec![NOT_FINISHED.into()];
    file
}

/// This machine's part of a run spread over machines: from here on this
/// process stamps on the server's clock, as every other shard's does, and
/// `file` names its shard.
async fn join_machines(
    sh: ShardOptions,
    target: &ServerTarget,
    file: &mut RunFile,
    dir: &Path,
) -> Result<(), RunError> {
    let fail = |reason: String| RunError::Shard {
        reason,
        dir: dir.to_owned(),
    };
    let ServerTarget::External { addr, .. } = target else {
        return Err(fail(
            "a shard runs against a server it is given (--server)".into(),
        ));
    };
    let clock = crate::server::estimate_clock(*addr, CLOCK_EXCHANGES)
        .await
        .map_err(|e| fail(format!("cannot read the server's clock: {e}")))?;
    crate::clock::set_clock_adjust_us(crate::clock::clock_adjust_us() + clock.offset_us);
    let now = crate::clock::unix_now_us();
    if now + 500_000 > sh.start_at_unix_us {
        return Err(fail(format!(
            "--start-at is {:.1} s in the past on the server's clock (or less than 0.5 s ahead); give every shard a start a little in the future",
            now.saturating_sub(sh.start_at_unix_us) as f64 / 1e6
        )));
    }
    file.shards = vec![ShardInfo {
        index: sh.index,
        of: sh.of,
        start_at_unix_us: sh.start_at_unix_us,
        run_id: file.run_id.clone(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        clock,
    }];
    file.write(dir).map_err(io(dir))
}

/// In a run spread over machines, this machine's slot for the next
/// transport run (its ramp start), and the start of the one after it in
/// `slot_at`; a start reached more than a second late is a problem of the
/// run. None in a run on one machine.
fn machine_slot(
    opts: &RunOptions,
    sp: &Scenario,
    label: &str,
    slot_at: &mut Option<u64>,
    file: &mut RunFile,
) -> Option<MachineShard> {
    let machine = opts.shard.zip(*slot_at).map(|(sh, at)| MachineShard {
        index: sh.index,
        of: sh.of,
        ramp_start_unix_us: at,
    });
    if let Some(at) = slot_at.as_mut() {
        let late = crate::clock::unix_now_us().saturating_sub(*at);
        if late > 1_000_000 {
            file.problems.push(format!(
                "{label}: this shard reached its start {:.1} s late, so its clients connected late",
                late as f64 / 1e6
            ));
        }
        *at += shard_slot(sp).as_micros() as u64;
    }
    machine
}

/// The prefix of this transport run's room names. Every shard of a run
/// spread over machines names the rooms alike, from the scenario and the
/// start.
fn room_prefix(opts: &RunOptions, s: &Scenario, run_salt: u16) -> String {
    match opts.shard {
        Some(sh) => format!(
            "cb{:04x}",
            RoomOwner::owner(&format!("{}-{}", s.name, sh.start_at_unix_us), 1 << 16)
        ),
        None => format!("cb{run_salt:04x}"),
    }
}

/// Writes the folder of a run that cannot go on: `complete: false`, the
/// problem, and what it measured so far.
fn end_early(
    file: &mut RunFile,
    dir: &Path,
    s: &Scenario,
    hists: &[LatencyRep],
    problem: String,
) -> Result<(), RunError> {
    file.complete = false;
    file.problems.push(problem);
    file.summarize();
    file.write(dir).map_err(io(dir))?;
    write_latency_histograms(dir, s, hists, &file.runs).map_err(io(dir))
}

/// The progress report of a finished transport run.
fn finished(label: &str, run: &TransportRun) -> Progress {
    Progress::Finished {
        label: label.to_owned(),
        p50_us: run.latency_us.p50,
        p99_us: run.latency_us.p99,
        lost: run.audit.lost,
        errors: run.audit.errors,
        top_error: run
            .errors_by_cause
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, n)| (c.clone(), *n)),
    }
}

/// Appends a worker's measurement line to the run folder's
/// `measurements.jsonl` (a shard's part of a run spread over machines).
fn append_measurement(dir: &Path, line: &str) -> Result<(), RunError> {
    use std::io::Write;
    let p = dir.join(MEASUREMENTS);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(io(&p))
}

/// The CPUs a spawned server may use at a point: its pinning's, or its
/// `server.cpu_quota` when that is smaller.
pub fn server_cpus(pinned: Option<usize>, sp: &Scenario) -> Option<f64> {
    pinned.map(|n| {
        let n = n as f64;
        sp.server.cpu_quota.map_or(n, |q| q.min(n))
    })
}
