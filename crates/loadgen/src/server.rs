//! The server under test: a spawned process per transport run, or an
//! external URL; plus `/healthz` and `/metrics` over a control connection
//! whose bytes are not counted as client traffic.

use crate::resources::ProcSample;
use crate::wire::WireStats;
use chatbench_proto::RoomOwner;
use chatbench_results::target::ServerKind;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the server comes from.
#[derive(Debug, Clone)]
pub enum ServerTarget {
    /// Spawn `exe args.. --listen 127.0.0.1:0 ..` for every transport run.
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// Arguments before the server flags (`["serve"]` for `chatbench`).
        args: Vec<String>,
        /// CPUs to pin the server to (`--cpus`), when pinning.
        cpus: Option<String>,
        /// Where the server's stderr goes.
        log: Option<PathBuf>,
    },
    /// A server that is already running.
    External {
        /// Its address.
        addr: SocketAddr,
        /// Its process id, for resource figures.
        pid: Option<u32>,
        /// The CA certificate (PEM file) its TLS certificate chains to,
        /// for scenarios with `protocol.tls`.
        ca: Option<PathBuf>,
    },
}

impl ServerTarget {
    /// The server of a transport run whose scenario names `kind`: a
    /// spawned chatbench server becomes the example server of that stack
    /// (`peers/<kind>/server.js` on Node.js, pinned to the same CPUs by
    /// `taskset`, which keeps the process id); a running server
    /// (`--server`) stays what it is.
    pub fn for_kind(&self, kind: ServerKind) -> Result<ServerTarget, ServerError> {
        let ServerTarget::Spawn { cpus, log, .. } = self else {
            return Ok(self.clone());
        };
        if kind == ServerKind::Chatbench {
            return Ok(self.clone());
        }
        let peers = peers_dir();
        let script = peers.join(kind.as_str()).join("server.js");
        if !script.is_file() {
            return Err(ServerError::Peer(format!(
                "target.server = {:?} needs {}, which is missing (set CHATBENCH_PEERS to the repository's peers/ folder)",
                kind.as_str(),
                script.display()
            )));
        }
        if !peers.join("node_modules").is_dir() {
            return Err(ServerError::Peer(format!(
                "target.server = {:?} needs its npm packages: run `npm ci --prefix {}`",
                kind.as_str(),
                peers.display()
            )));
        }
        let (exe, args) = pinned(cpus.as_deref(), "node", vec![script.display().to_string()]);
        Ok(ServerTarget::Spawn {
            exe: exe.into(),
            args,
            cpus: None,
            log: log.clone(),
        })
    }

    /// A spawned server with `flags` after its own arguments (the
    /// scenario's `[server]` settings); a running one as it is.
    pub fn with_flags(&self, flags: Vec<String>) -> ServerTarget {
        match self {
            ServerTarget::Spawn {
                exe,
                args,
                cpus,
                log,
            } => ServerTarget::Spawn {
                exe: exe.clone(),
                args: args.iter().cloned().chain(flags).collect(),
                cpus: cpus.clone(),
                log: log.clone(),
            },
            t => t.clone(),
        }
    }
}

/// `exe args` run under `taskset -c cpus` when `cpus` is given (which
/// keeps the process id): how a process other than chatbench's server
/// (an example server, a reverse proxy) is pinned to the server's CPUs.
pub fn pinned(cpus: Option<&str>, exe: &str, args: Vec<String>) -> (String, Vec<String>) {
    match cpus {
        Some(c) => (
            "taskset".into(),
            ["-c", c, exe]
                .map(String::from)
                .into_iter()
                .chain(args)
                .collect(),
        ),
        None => (exe.into(), args),
    }
}

/// The example servers of other stacks (`peers/`): `$CHATBENCH_PEERS`,
/// else `peers` in the working directory, else the repository's own.
pub fn peers_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CHATBENCH_PEERS") {
        return PathBuf::from(p);
    }
    let here = PathBuf::from("peers");
    if here.join("package.json").is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers")
}

/// Errors starting, reaching or scraping the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The executable could not be started.
    #[error("cannot start {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: String,
        /// Why.
        source: std::io::Error,
    },
    /// The spawned server did not say where it listens.
    #[error("the spawned server did not report its address: {0}")]
    NoAddress(String),
    /// Several server processes were asked of a server chatbench does not start.
    #[error("server.processes = {0} needs server processes that chatbench starts; --server names one process")]
    OneExternal(u32),
    /// `/healthz` did not answer in time.
    #[error("server at {0} is not healthy after {1:?}")]
    Unhealthy(SocketAddr, Duration),
    /// TLS was asked for and cannot be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// An example server of another stack cannot be started.
    #[error("{0}")]
    Peer(String),
    /// The CPU quota (`server.cpu_quota`) cannot be set up.
    #[error("{0}")]
    Quota(String),
    /// A control request failed.
    #[error("control request {path} to {addr} failed: {reason}")]
    Control {
        /// Server address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The server of a transport run: one process, or several that share the
/// rooms (`[server] processes`), each owning the rooms whose
/// `crc32(name) % K` is its index.
#[derive(Debug)]
pub struct RunningServer {
    procs: Vec<ServerProc>,
    /// A reverse proxy in front (`[path] proxy`).
    front: Option<Front>,
    /// The spawned processes' CPU quota (`server.cpu_quota`), removed
    /// after they stop.
    quota: Option<crate::quota::CpuQuota>,
}

/// A reverse proxy in front of the server (`[path] proxy`).
#[derive(Debug, Clone)]
pub struct Front {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its processes.
    pub pids: Vec<u32>,
    /// The CA of its TLS certificate (PEM), when it terminates TLS.
    pub ca_pem: Option<String>,
    /// A WebSocket goes over HTTP/1.1 even in an HTTP/2 run
    /// ([`crate::dial::Dialer::with_websocket_h1`]).
    pub websocket_h1: bool,
}

/// One server process.
#[derive(Debug)]
struct ServerProc {
    addr: SocketAddr,
    pid: Option<u32>,
    /// The CA its TLS certificate chains to (PEM), when it serves TLS.
    ca_pem: Option<String>,
    child: Option<Child>,
    health_failures: u32,
}

impl RunningServer {
    /// Starts `processes` server processes (or reaches the external one)
    /// and waits for each one's `/healthz`. Each holds at most
    /// `max_connections` client connections. Several processes are only
    /// for a spawned server; more than one with an external server is an
    /// error.
    ///
    /// With `tls`, a spawned process also serves TLS with a certificate it
    /// makes (`--tls`), and its CA is read back; an external server's CA
    /// comes from its file. With `cpu_quota`, spawned processes share that
    /// many CPUs' time ([`crate::quota`]); an external server has none.
    pub async fn start(
        target: &ServerTarget,
        processes: u32,
        max_connections: u64,
        tls: bool,
        listen: std::net::IpAddr,
        cpu_quota: Option<f64>,
    ) -> Result<RunningServer, ServerError> {
        let quota = match (target, cpu_quota) {
            (ServerTarget::Spawn { .. }, Some(cores)) => {
                Some(crate::quota::CpuQuota::create(cores).map_err(ServerError::Quota)?)
            }
            _ => None,
        };
        let procs = match target {
            ServerTarget::External { addr, pid, ca } => {
                if processes > 1 {
                    return Err(ServerError::OneExternal(processes));
                }
                let ca_pem = match (tls, ca) {
                    (false, _) => None,
                    (true, None) => return Err(ServerError::Tls(
                        "the scenario uses TLS; give the server's CA certificate with --server-ca"
                            .into(),
                    )),
                    (true, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                        ServerError::Tls(format!("--server-ca {}: {e}", path.display()))
                    })?),
                };
                vec![ServerProc {
                    addr: *addr,
                    pid: *pid,
                    ca_pem,
                    child: None,
                    health_failures: 0,
                }]
            }
            ServerTarget::Spawn { .. } => {
                let k = processes.max(1);
                let started = futures_util::future::join_all((0..k).map(|i| {
                    spawn_one(
                        target,
                        (k > 1).then_some((i, k)),
                        max_connections,
                        tls,
                        listen,
                    )
                }))
                .await;
                let mut procs = Vec::with_capacity(k as usize);
                let mut first_error = None;
                for p in started {
                    match p {
                        Ok(p) => procs.push(p),
                        Err(e) => first_error = first_error.or(Some(e)),
                    }
                }
                if let (Some(q), None) = (&quota, &first_error) {
                    for pid in procs.iter().filter_map(|p| p.pid) {
                        if let Err(e) = q.add(pid) {
                            first_error = Some(ServerError::Quota(e));
                            break;
                        }
                    }
                }
                if let Some(e) = first_error {
                    RunningServer {
                        procs,
                        front: None,
                        quota,
                    }
                    .stop()
                    .await;
                    return Err(e);
                }
                procs
            }
        };
        let server = RunningServer {
            procs,
            front: None,
            quota,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for p in &server.procs {
            loop {
                if let Ok((200, _)) = control(p.addr, "GET", "/healthz", None).await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    let addr = p.addr;
                    server.stop().await;
                    return Err(ServerError::Unhealthy(addr, Duration::from_secs(10)));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(server)
    }

    /// The processes' addresses, by process index.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.procs.iter().map(|p| p.addr).collect()
    }

    /// Puts a reverse proxy in front: clients connect to it (and trust its
    /// CA); control requests still go to the server.
    pub fn set_front(&mut self, front: Front) {
        self.front = Some(front);
    }

    /// A WebSocket goes over HTTP/1.1 even in an HTTP/2 run: the proxy
    /// in front does not allow extended CONNECT.
    pub fn websocket_h1(&self) -> bool {
        self.front.as_ref().is_some_and(|f| f.websocket_h1)
    }

    /// Where clients connect, by process index: the proxy when there is
    /// one, else the processes themselves.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        match &self.front {
            Some(f) => vec![f.addr],
            None => self.addrs(),
        }
    }

    /// Where the proxy's CPU and memory are read, when there is one.
    pub fn proxy_probe(&self) -> Option<ServerProbe> {
        self.front
            .as_ref()
            .map(|f| ServerProbe::Proc(f.pids.clone()))
    }

    /// The address of the process that owns `room`.
    pub fn owner_of(&self, room: &str) -> SocketAddr {
        let k = self.procs.len() as u32;
        self.procs[RoomOwner::owner(room, k) as usize].addr
    }

    /// The CA certificates (PEM) clients trust: the proxy's when it
    /// terminates TLS, else those of the processes that serve TLS.
    pub fn ca_pems(&self) -> Vec<String> {
        if let Some(ca) = self.front.as_ref().and_then(|f| f.ca_pem.clone()) {
            return vec![ca];
        }
        self.procs.iter().filter_map(|p| p.ca_pem.clone()).collect()
    }

    /// The processes' ids, by process index, when every one is known.
    pub fn pids(&self) -> Option<Vec<u32>> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// Where its CPU and memory are read: `/proc` when every process id is
    /// known, else each process's `/metrics`.
    pub fn probe(&self) -> ServerProbe {
        match self.pids() {
            Some(pids) => ServerProbe::Proc(pids),
            None => ServerProbe::Metrics(self.addrs()),
        }
    }

    /// False once any process is gone: a spawned one has exited, an
    /// external one's process has ended, or (without a pid) `/healthz`
    /// failed three times in a row.
    pub async fn is_alive(&mut self) -> bool {
        for p in &mut self.procs {
            if !p.is_alive().await {
                return false;
            }
        }
        true
    }

    /// `/metrics` of every process, by process index.
    pub async fn scrape(&self) -> Result<Vec<ServerCounters>, ServerError> {
        let all = futures_util::future::join_all(
            self.procs.iter().map(|p| ServerCounters::scrape(p.addr)),
        )
        .await;
        all.into_iter().collect()
    }

    /// Scrapes once every process has closed the connections opened since
    /// `before` (its `connections_open` back at most where it was), so that
    /// the TCP sums, which sockets add as they close, hold the run's
    /// connections; after at most 3 s it scrapes anyway, and the delta's
    /// `connections_open` says how many were still open.
    pub async fn scrape_settled(
        &self,
        before: &[ServerCounters],
    ) -> Result<Vec<ServerCounters>, ServerError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let now = self.scrape().await?;
            let settled = now
                .iter()
                .zip(before)
                .all(|(n, b)| n.connections_open <= b.connections_open);
            if tokio::time::Instant::now() >= deadline {
                return Ok(now);
            }
            if settled {
                // A socket's sums land as its task drops it, a moment
                // around the gauge's fall: read once more after it.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return self.scrape().await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The periods of its CPU quota the server has run in so far, and
    /// those in which it ran out (None without a quota).
    pub fn quota_periods(&self) -> Option<crate::results::QuotaPeriods> {
        self.quota.as_ref()?.periods()
    }

    /// Stops spawned processes with SIGTERM, then SIGKILL after 5 s, and
    /// removes their CPU quota's cgroup.
    pub async fn stop(self) {
        futures_util::future::join_all(self.procs.into_iter().map(ServerProc::stop)).await;
        drop(self.quota);
    }
}

/// Starts one server process; `shard` is its `--room-shard`.
async fn spawn_one(
    target: &ServerTarget,
    shard: Option<(u32, u32)>,
    max_connections: u64,
    tls: bool,
    listen: std::net::IpAddr,
) -> Result<ServerProc, ServerError> {
    let ServerTarget::Spawn {
        exe,
        args,
        cpus,
        log,
    } = target
    else {
        unreachable!("spawn_one is called for ServerTarget::Spawn only");
    };
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("--listen")
        .arg(std::net::SocketAddr::new(listen, 0).to_string())
        .arg("--max-connections")
        .arg((max_connections + 100).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if let Some(c) = cpus {
        cmd.args(["--cpus", c]);
    }
    if let Some((i, k)) = shard {
        cmd.arg("--room-shard").arg(format!("{i}/{k}"));
    }
    // The server writes its CA before it says where it listens.
    static SPAWNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ca_file = tls.then(|| {
        let n = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("chatbench-ca-{}-{n}.pem", std::process::id()))
    });
    if let Some(ca) = &ca_file {
        cmd.arg("--tls-ca-out").arg(ca);
        if !listen.is_loopback() {
            // The certificate must name the address clients reach.
            cmd.arg("--tls-name").arg(listen.to_string());
        }
    }
    match log.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
    }) {
        Some(Ok(f)) => {
            cmd.stderr(f);
        }
        _ => {
            cmd.stderr(Stdio::null());
        }
    }
    let mut child = cmd.spawn().map_err(|source| ServerError::Spawn {
        exe: exe.display().to_string(),
        source,
    })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ServerError::NoAddress("no stdout".into()))?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        let _ = child.kill().await;
        return Err(ServerError::NoAddress(format!("first line was {line:?}")));
    }
    let Some(addr) = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
    else {
        let _ = child.kill().await;
        return Err(ServerError::NoAddress(format!("first line was {line:?}")));
    };
    let ca_pem = match &ca_file {
        None => None,
        Some(path) => {
            let pem = std::fs::read_to_string(path);
            let _ = std::fs::remove_file(path);
            match pem {
                Ok(p) => Some(p),
                Err(e) => {
                    let _ = child.kill().await;
                    return Err(ServerError::Tls(format!(
                        "the spawned server's CA {}: {e}",
                        path.display()
                    )));
                }
            }
        }
    };
    Ok(ServerProc {
        addr,
        pid: child.id(),
        ca_pem,
        child: Some(child),
        health_failures: 0,
    })
}

impl ServerProc {
    async fn is_alive(&mut self) -> bool {
        if let Some(c) = self.child.as_mut() {
            return matches!(c.try_wait(), Ok(None));
        }
        if let Some(pid) = self.pid {
            return crate::resources::read(pid, 0).is_some();
        }
        match tokio::time::timeout(
            Duration::from_secs(1),
            control(self.addr, "GET", "/healthz", None),
        )
        .await
        {
            Ok(Ok((200, _))) => self.health_failures = 0,
            _ => self.health_failures += 1,
        }
        self.health_failures < 3
    }

    async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // The pid is our child's, and not yet reaped.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// One control request on its own connection; returns status and body.
pub async fn control(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), ServerError> {
    control_counted(addr, method, path, body, &Arc::new(WireStats::default())).await
}

/// [`control`], counting the connection's bytes into `wire`.
pub async fn control_counted(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
    wire: &Arc<WireStats>,
) -> Result<(u16, String), ServerError> {
    let fail = |reason: String| ServerError::Control {
        addr,
        path: path.to_owned(),
        reason,
    };
    let work = async {
        let stream = crate::dial::Dialer::control(addr, wire.clone())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        let resp = match body {
            Some(b) => {
                sender
                    .send_request(
                        req.header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from(b)).boxed())
                            .map_err(|e| fail(e.to_string()))?,
                    )
                    .await
            }
            None => {
                sender
                    .send_request(
                        req.body(Empty::new().map_err(|never| match never {}).boxed())
                            .map_err(|e| fail(e.to_string()))?,
                    )
                    .await
            }
        }
        .map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| fail("timed out after 5s".into()))?
}

/// The server's per-transport counters from `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerCounters {
    /// `chatbench_messages_delivered_total` by transport label.
    pub delivered: HashMap<String, u64>,
    /// `chatbench_messages_published_total` by transport label.
    pub published: HashMap<String, u64>,
    /// `chatbench_bytes_written_total` by transport label.
    pub bytes_written: HashMap<String, u64>,
    /// `chatbench_requests_total` by transport label.
    pub requests: HashMap<String, u64>,
    /// `chatbench_tcp_sockets_closed_total` by transport label.
    #[serde(default)]
    pub tcp_sockets: HashMap<String, u64>,
    /// `chatbench_tcp_retransmitted_segments_total` by transport label.
    #[serde(default)]
    pub tcp_retrans: HashMap<String, u64>,
    /// `chatbench_tcp_timeouts_total` by transport label.
    #[serde(default)]
    pub tcp_rto: HashMap<String, u64>,
    /// `chatbench_connections_open`: a gauge, so a delta keeps the later
    /// value less the earlier (0 when it fell).
    #[serde(default)]
    pub connections_open: u64,
    /// The `process_*` metrics, when the server gives them all.
    #[serde(default)]
    pub process: Option<ProcessMetrics>,
    /// The scrape had chatbench's own metrics: another stack's server may
    /// export Prometheus process metrics alone, which give its CPU and
    /// memory but no counts to cross-check.
    #[serde(default)]
    pub chatbench: bool,
}

/// A server process's own figures from its `/metrics` (the names of
/// Prometheus' process collector): what `/proc` gives when the server runs
/// on another host.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessMetrics {
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: u64,
    /// `process_threads`.
    pub threads: u64,
    /// `process_open_fds`.
    pub fds: u64,
}

impl ProcessMetrics {
    /// As a [`ProcSample`] taken `t_ms` into a run (CPU all in user time,
    /// which `/metrics` does not split; precise to the microsecond).
    pub fn sample(&self, t_ms: u64) -> ProcSample {
        let ns = (self.cpu_seconds * 1e9) as u64;
        ProcSample {
            t_ms,
            cpu_user_ms: ns / 1_000_000,
            cpu_system_ms: 0,
            rss_bytes: self.rss_bytes,
            threads: self.threads,
            fds: self.fds,
            cpu_ns: ns,
        }
    }
}

/// Where the server's CPU and memory are read.
#[derive(Debug, Clone)]
pub enum ServerProbe {
    /// `/proc` of its processes, on this host.
    Proc(Vec<u32>),
    /// Its processes' `/metrics` (`process_*`), wherever they run.
    Metrics(Vec<SocketAddr>),
}

impl ServerProbe {
    /// Every process's figures now, by process index; None when one is
    /// gone or does not say.
    pub async fn read(&self, t_ms: u64) -> Option<Vec<ProcSample>> {
        match self {
            ServerProbe::Proc(pids) => crate::resources::read_all(pids, t_ms),
            ServerProbe::Metrics(addrs) => {
                let mut out = Vec::with_capacity(addrs.len());
                for &a in addrs {
                    out.push(ServerCounters::scrape(a).await.ok()?.process?.sample(t_ms));
                }
                Some(out)
            }
        }
    }

    /// How often a sampler reads it: `/proc` every 100 ms; a scrape, which
    /// costs the server a request, every second.
    pub fn period(&self) -> Duration {
        match self {
            ServerProbe::Proc(_) => Duration::from_millis(100),
            ServerProbe::Metrics(_) => Duration::from_secs(1),
        }
    }
}

impl ServerCounters {
    /// Parses the Prometheus text exposition (with `prometheus-parse`).
    /// A counter's samples are added up per `transport` label, whatever
    /// other labels they carry and in whatever order; samples without a
    /// `transport` label and other metrics are ignored.
    pub fn parse(text: &str) -> ServerCounters {
        use prometheus_parse::{Scrape, Value};
        let mut c = ServerCounters::default();
        let Ok(scrape) = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))) else {
            return c;
        };
        let (mut cpu, mut rss, mut threads, mut fds) = (None, None, None, None);
        for sample in scrape.samples {
            c.chatbench |= sample.metric.starts_with("chatbench_");
            if let Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) = sample.value {
                match sample.metric.as_str() {
                    "process_cpu_seconds_total" => cpu = Some(v),
                    "process_resident_memory_bytes" => rss = Some(v as u64),
                    "process_threads" => threads = Some(v as u64),
                    "process_open_fds" => fds = Some(v as u64),
                    "chatbench_connections_open" => c.connections_open = v as u64,
                    _ => {}
                }
            }
            let map = match sample.metric.as_str() {
                "chatbench_messages_delivered_total" => &mut c.delivered,
                "chatbench_messages_published_total" => &mut c.published,
                "chatbench_bytes_written_total" => &mut c.bytes_written,
                "chatbench_requests_total" => &mut c.requests,
                "chatbench_tcp_sockets_closed_total" => &mut c.tcp_sockets,
                "chatbench_tcp_retransmitted_segments_total" => &mut c.tcp_retrans,
                "chatbench_tcp_timeouts_total" => &mut c.tcp_rto,
                _ => continue,
            };
            let (Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) = sample.value else {
                continue;
            };
            let Some(t) = sample.labels.get("transport") else {
                continue;
            };
            *map.entry(t.to_owned()).or_default() += v as u64;
        }
        if let (Some(cpu_seconds), Some(rss_bytes)) = (cpu, rss) {
            c.process = Some(ProcessMetrics {
                cpu_seconds,
                rss_bytes,
                threads: threads.unwrap_or(0),
                fds: fds.unwrap_or(0),
            });
        }
        c
    }

    /// Scrapes `/metrics`.
    pub async fn scrape(addr: SocketAddr) -> Result<ServerCounters, ServerError> {
        let (status, body) = control(addr, "GET", "/metrics", None).await?;
        if status != 200 {
            return Err(ServerError::Control {
                addr,
                path: "/metrics".into(),
                reason: format!("status {status}"),
            });
        }
        Ok(ServerCounters::parse(&body))
    }

    /// Sum over every label but `other` (the page, health and metrics).
    pub fn client_total(map: &HashMap<String, u64>) -> u64 {
        map.iter()
            .filter(|(k, _)| k.as_str() != "other")
            .map(|(_, v)| *v)
            .sum()
    }

    /// The sum of several processes' counters, label by label.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a ServerCounters>) -> ServerCounters {
        let mut total = ServerCounters::default();
        for c in all {
            for (into, from) in [
                (&mut total.delivered, &c.delivered),
                (&mut total.published, &c.published),
                (&mut total.bytes_written, &c.bytes_written),
                (&mut total.requests, &c.requests),
                (&mut total.tcp_sockets, &c.tcp_sockets),
                (&mut total.tcp_retrans, &c.tcp_retrans),
                (&mut total.tcp_rto, &c.tcp_rto),
            ] {
                for (k, v) in from {
                    *into.entry(k.clone()).or_default() += v;
                }
            }
            total.connections_open += c.connections_open;
        }
        total
    }

    /// `self - before`, label by label.
    pub fn delta(&self, before: &ServerCounters) -> ServerCounters {
        let d = |a: &HashMap<String, u64>, b: &HashMap<String, u64>| {
            a.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(*b.get(k).unwrap_or(&0))))
                .collect()
        };
        ServerCounters {
            delivered: d(&self.delivered, &before.delivered),
            published: d(&self.published, &before.published),
            bytes_written: d(&self.bytes_written, &before.bytes_written),
            requests: d(&self.requests, &before.requests),
            tcp_sockets: d(&self.tcp_sockets, &before.tcp_sockets),
            tcp_retrans: d(&self.tcp_retrans, &before.tcp_retrans),
            tcp_rto: d(&self.tcp_rto, &before.tcp_rto),
            connections_open: self
                .connections_open
                .saturating_sub(before.connections_open),
            process: self.process,
            chatbench: self.chatbench && before.chatbench,
        }
    }

    /// The TCP sums of a delta (see [`ServerCounters::delta`]).
    pub fn tcp(&self) -> chatbench_results::tcp::ServerTcp {
        chatbench_results::tcp::ServerTcp {
            sockets: Self::client_total(&self.tcp_sockets),
            retrans_segs: Self::client_total(&self.tcp_retrans),
            rto: Self::client_total(&self.tcp_rto),
            still_open: self.connections_open,
        }
    }
}

/// Estimates the offset of the server's clock from this process's
/// ([`crate::clock::unix_now_us`]), NTP-style: `exchanges` requests of
/// `GET /time` on one keep-alive connection, each timed on the local clock
/// before and after; the one with the shortest round trip gives the
/// offset, `now_us - (t0 + t1) / 2`, within half its round trip.
pub async fn estimate_clock(
    addr: SocketAddr,
    exchanges: u32,
) -> Result<chatbench_results::run_file::ClockEstimate, ServerError> {
    use crate::clock::unix_now_us;
    let fail = |reason: String| ServerError::Control {
        addr,
        path: "/time".into(),
        reason,
    };
    let work = async {
        let stream = crate::dial::Dialer::clock(addr)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut conn = crate::h1::H1Conn::new(stream, addr.to_string());
        let mut best: Option<(u64, i64)> = None;
        for _ in 0..exchanges.max(1) {
            let t0 = unix_now_us();
            let (status, body) = conn
                .call("GET", "/time", b"")
                .await
                .map_err(|e| fail(e.to_string()))?;
            let t1 = unix_now_us();
            if status != http::StatusCode::OK {
                return Err(fail(format!("status {status}")));
            }
            let now: u64 = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("now_us")?.as_u64())
                .ok_or_else(|| {
                    fail(format!(
                        "the answer {:?} holds no now_us",
                        String::from_utf8_lossy(&body)
                    ))
                })?;
            let rtt = t1.saturating_sub(t0);
            let offset = now as i64 - ((t0 + t1) / 2) as i64;
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, offset));
            }
        }
        let (rtt, offset_us) = best.unwrap_or((0, 0));
        Ok(chatbench_results::run_file::ClockEstimate {
            offset_us,
            // Half the round trip, plus the 1 µs of each stamp's rounding.
            uncertainty_us: rtt.div_ceil(2) + 1,
            exchanges: exchanges.max(1),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| fail("timed out after 10s".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_pinned_by_taskset_keeping_its_arguments() {
        let args = vec!["server.js".to_owned()];
        assert_eq!(
            pinned(Some("0"), "node", args.clone()),
            (
                "taskset".to_owned(),
                ["-c", "0", "node", "server.js"].map(String::from).to_vec()
            )
        );
        assert_eq!(
            pinned(None, "node", args.clone()),
            ("node".to_owned(), args)
        );
    }

    #[test]
    fn counters_are_read_whatever_the_labels() {
        let text = "\
# HELP chatbench_bytes_written Bytes written.
# TYPE chatbench_bytes_written counter
chatbench_bytes_written_total{transport=\"sse\"} 1200
chatbench_bytes_written_total{transport=\"websocket\"} 300
# TYPE chatbench_requests counter
chatbench_requests_total{status=\"200\",transport=\"long_poll\"} 7
chatbench_requests_total{transport=\"long_poll\",status=\"503\"} 2
chatbench_requests_total 99
chatbench_messages_delivered_total{transport=\"sse\"} 4.0e1
chatbench_connections_open 3
";
        let c = ServerCounters::parse(text);
        assert_eq!(
            c.bytes_written,
            [("sse".to_owned(), 1200), ("websocket".to_owned(), 300)].into()
        );
        assert_eq!(c.requests, [("long_poll".to_owned(), 9)].into());
        assert_eq!(c.delivered, [("sse".to_owned(), 40)].into());
        assert!(c.published.is_empty());
        assert_eq!(c.process, None, "no process_* metrics in it");
        assert_eq!(
            ServerCounters::parse("not prometheus {"),
            ServerCounters::default()
        );
        // The process collector's metrics: CPU to the microsecond.
        let c = ServerCounters::parse(&format!(
            "{text}# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 2.5000015\nprocess_resident_memory_bytes 8712192\nprocess_threads 3\nprocess_open_fds 15\n# EOF\n"
        ));
        let p = c.process.unwrap();
        assert_eq!((p.rss_bytes, p.threads, p.fds), (8_712_192, 3, 15));
        let s = p.sample(700);
        assert_eq!(
            (s.t_ms, s.cpu_ns, s.cpu_ms(), s.rss_bytes),
            (700, 2_500_001_500, 2500, 8_712_192)
        );
        assert!(c.chatbench);
        // CPU without memory is no process figure.
        let c = ServerCounters::parse("process_cpu_seconds_total 1\n");
        assert_eq!(c.process, None);
        // A server exporting Node's prom-client defaults alone: its CPU and
        // memory, and nothing to cross-check.
        let c = ServerCounters::parse(
            "process_cpu_seconds_total 0.5\nprocess_resident_memory_bytes 50000000\nnodejs_eventloop_lag_seconds 0.001\n",
        );
        assert!(!c.chatbench);
        assert_eq!(c.process.map(|p| p.rss_bytes), Some(50_000_000));
    }
}
