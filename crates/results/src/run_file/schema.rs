//! What `run.json` holds ([`RunFile`] and the records inside it), and
//! reading and writing it.

use crate::machine::{Environment, ProcSample};
use crate::scenario::Scenario;
use crate::wire::{on_wire_bytes, WireSnapshot};
use crate::Transport;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The schema name and version of `run.json`.
pub const SCHEMA: &str = "chatbench-run/1";

/// A new run folder name: UTC time and the process id.
pub fn new_run_id() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:04x}", std::process::id() & 0xffff)
}

/// Why a run folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// `run.json`.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not the JSON this schema describes.
    #[error("{path}: {source}")]
    Json {
        /// `run.json`.
        path: std::path::PathBuf,
        /// Where and why.
        source: serde_json::Error,
    },
    /// Another schema or version.
    #[error("{path}: schema is {found}, this chatbench reads {SCHEMA}")]
    Schema {
        /// `run.json`.
        path: std::path::PathBuf,
        /// The `schema` it holds.
        found: String,
    },
}

/// Everything `run.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    /// [`SCHEMA`].
    pub schema: String,
    /// The run folder's name.
    pub run_id: String,
    /// When the run started (RFC 3339, UTC).
    pub created: String,
    /// The command line.
    pub command: Vec<String>,
    /// Machine and build.
    pub environment: Environment,
    /// The resolved scenario (after command-line overrides).
    pub scenario: Scenario,
    /// `spawned` or `external`.
    pub server_mode: String,
    /// How `[network]` was applied, when some sweep point sets a link
    /// (`"emulated in the load generator's sockets"`); absent on loopback
    /// as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// The QUIC stack, when some run used QUIC (HTTP/3, WebTransport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<QuicStack>,
    /// CPU sets the server and the load generator were pinned to.
    pub cpus: CpuPlacement,
    /// False when a run ended early.
    pub complete: bool,
    /// What went wrong, in words.
    pub problems: Vec<String>,
    /// One entry per transport and repetition, in run order.
    pub runs: Vec<TransportRun>,
    /// One entry per transport: medians over repetitions.
    pub summary: Vec<TransportSummary>,
    /// For a folder made by `chatbench merge`: the run ids it joined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// A run spread over machines (`chatbench run --shard I/N`): in one
    /// shard's partial folder its own entry, in the folder `chatbench merge`
    /// made of them every shard's. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardInfo>,
}

/// One shard of a run spread over machines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Its index, from 0.
    pub index: u32,
    /// How many shards the run has.
    pub of: u32,
    /// The agreed start (`--start-at`), µs since the epoch on the server's
    /// clock.
    pub start_at_unix_us: u64,
    /// Its run id (its partial folder's name).
    pub run_id: String,
    /// Its host, from the environment it ran in.
    pub host: String,
    /// Its clock against the server's, estimated before the run.
    pub clock: ClockEstimate,
}

/// A clock offset to the server's clock, estimated NTP-style from
/// exchanges with its `GET /time`: each exchange reads the local clock
/// before (`t0`) and after (`t1`) and the server's `now_us` between; the
/// exchange with the shortest round trip gives the offset
/// `now_us - (t0 + t1) / 2`, within half that round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockEstimate {
    /// Server clock minus local clock, µs; added to every local reading.
    pub offset_us: i64,
    /// How far off `offset_us` can be, µs: half the best round trip.
    pub uncertainty_us: u64,
    /// Exchanges made.
    pub exchanges: u32,
}

/// Where a run was made: its machine and build, how the server ran, how
/// the network was applied, and the CPUs each side was pinned to. A merged
/// run keeps the setting of the first run it joins.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Machine and build.
    pub environment: Environment,
    /// See [`RunFile::server_mode`].
    pub server_mode: String,
    /// See [`RunFile::network_mode`].
    pub network_mode: Option<String>,
    /// See [`RunFile::quic`].
    pub quic: Option<QuicStack>,
    /// See [`RunFile::cpus`].
    pub cpus: CpuPlacement,
}

impl RunFile {
    /// A run file's header, created now, with no runs yet: `complete`
    /// until a problem says otherwise. Every `run.json` starts here, the
    /// run's own and the ones `chatbench merge` writes.
    pub fn begin(
        run_id: String,
        command: Vec<String>,
        scenario: Scenario,
        setting: Setting,
    ) -> RunFile {
        RunFile {
            schema: SCHEMA.into(),
            run_id,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            command,
            environment: setting.environment,
            scenario,
            server_mode: setting.server_mode,
            network_mode: setting.network_mode,
            quic: setting.quic,
            cpus: setting.cpus,
            complete: true,
            problems: Vec::new(),
            runs: Vec::new(),
            summary: Vec::new(),
            merged_from: Vec::new(),
            shards: Vec::new(),
        }
    }

    /// This run's [`Setting`].
    pub fn setting(&self) -> Setting {
        Setting {
            environment: self.environment.clone(),
            server_mode: self.server_mode.clone(),
            network_mode: self.network_mode.clone(),
            quic: self.quic.clone(),
            cpus: self.cpus.clone(),
        }
    }

    /// True for one shard's partial folder, which `chatbench merge` joins
    /// with the others into a run.
    pub fn is_shard_part(&self) -> bool {
        self.shards.len() == 1 && self.merged_from.is_empty()
    }
}

/// The QUIC stack both sides ran (`RunFile::quic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuicStack {
    /// The QUIC and HTTP/3 implementations.
    pub implementation: String,
    /// The congestion controller both sides' connections use (set
    /// explicitly, so that a library's default changing cannot move it).
    pub congestion_control: String,
}

/// Where processes ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuPlacement {
    /// The server's CPU list, when pinned.
    pub server: Option<String>,
    /// The load generator's CPU list, when pinned.
    pub loadgen: Option<String>,
    /// The CPUs were held out of idle states for the run (`chatbench run
    /// --hold-cpus-awake`: `/dev/cpu_dma_latency` held at 0), so no latency
    /// includes waking a halted CPU.
    #[serde(default)]
    pub awake: bool,
}

/// Percentiles of a histogram of microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

/// The delivery audit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Messages sent in the measured window.
    pub sent: u64,
    /// Deliveries expected: each sent message times the receivers in its room.
    pub expected: u64,
    /// First receipts of measured messages.
    pub delivered: u64,
    /// Expected but not delivered by the end of the grace period.
    pub lost: u64,
    /// Receipts of a message already received.
    pub duplicated: u64,
    /// Receipts after a later message.
    pub reordered: u64,
    /// Messages the server reported as skipped by retention.
    pub missed: u64,
    /// Failed requests, connects and publishes.
    pub errors: u64,
}

/// Wire overhead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WireResult {
    /// Counters over the measured window.
    pub measured: WireSnapshot,
    /// Counters over the whole run (ramp to teardown).
    pub total: WireSnapshot,
    /// Per delivered message, measured window.
    pub per_msg: PerMessage,
}

/// Costs per delivered message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerMessage {
    /// Client-to-server bytes.
    pub bytes_up: f64,
    /// Server-to-client bytes.
    pub bytes_down: f64,
    /// Both directions.
    pub bytes: f64,
    /// HTTP requests.
    pub requests: f64,
    /// TCP segments or UDP datagrams, both directions: over TCP from the
    /// whole run (segments are read at close) scaled by the measured
    /// window's share of its bytes; over UDP the measured window's own.
    pub segments: f64,
    /// Estimated on-wire bytes including IPv4 and TCP or UDP headers
    /// (over TCP from the whole run, as `segments`).
    pub on_wire_bytes: f64,
    /// Mean size of the message itself (its JSON), whole run: everything
    /// else in `bytes` is framing, headers and requests.
    #[serde(default)]
    pub payload_bytes: f64,
}

impl WireResult {
    /// Derives per-message figures for packets in `carrier`.
    pub fn new(
        measured: WireSnapshot,
        total: WireSnapshot,
        delivered: u64,
        payload_bytes: f64,
        carrier: crate::wire::Carrier,
    ) -> WireResult {
        let d = delivered.max(1) as f64;
        let bytes = |w: &WireSnapshot| w.bytes_up + w.bytes_down;
        let segs = |w: &WireSnapshot| w.segs_in + w.segs_out;
        let (segments, on_wire) = match carrier {
            // TCP's segments are only known per connection at close, so the
            // per-message figure uses the whole run, scaled by the measured
            // window's share of its bytes.
            crate::wire::Carrier::Tcp => {
                let share = if bytes(&total) == 0 {
                    1.0
                } else {
                    bytes(&measured) as f64 / bytes(&total) as f64
                };
                let on_wire = on_wire_bytes(bytes(&total), segs(&total), carrier.headers());
                (segs(&total) as f64 * share, on_wire as f64 * share)
            }
            // Datagrams are counted as they pass. The whole run's count
            // would not do: its QUIC handshakes are many bytes in few
            // datagrams, so scaling by bytes would undercount.
            crate::wire::Carrier::Udp => {
                let on_wire = on_wire_bytes(bytes(&measured), segs(&measured), carrier.headers());
                (segs(&measured) as f64, on_wire as f64)
            }
        };
        WireResult {
            measured,
            total,
            per_msg: PerMessage {
                bytes_up: measured.bytes_up as f64 / d,
                bytes_down: measured.bytes_down as f64 / d,
                bytes: bytes(&measured) as f64 / d,
                requests: measured.requests as f64 / d,
                segments: segments / d,
                on_wire_bytes: on_wire / d,
                payload_bytes,
            },
        }
    }
}

/// What joining a room cost the clients of another stack's profile,
/// summed over them: from the first connection until the client was
/// subscribed (Socket.IO: the Engine.IO handshake, the namespace's
/// connect, the upgrade when there is one, and the `join`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCounts {
    /// Clients that joined.
    pub clients: u64,
    /// Bytes both ways on every connection the joins used.
    pub bytes: u64,
    /// HTTP requests the joins made (a WebSocket's opening is one).
    pub requests: u64,
    /// Time from each client's first connect to its join's answer,
    /// summed, µs.
    pub time_us: u64,
    /// The longest of those, µs.
    pub max_time_us: u64,
}

impl std::ops::AddAssign for JoinCounts {
    fn add_assign(&mut self, o: JoinCounts) {
        self.clients += o.clients;
        self.bytes += o.bytes;
        self.requests += o.requests;
        self.time_us += o.time_us;
        self.max_time_us = self.max_time_us.max(o.max_time_us);
    }
}

/// The run.json entry of [`JoinCounts`]: per client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// Clients that joined.
    pub clients: u64,
    /// Bytes per join, both ways.
    pub bytes_per_client: f64,
    /// HTTP requests per join.
    pub requests_per_client: f64,
    /// Mean time from a client's first connect to its join's answer, µs
    /// (the clients connect during the ramp, before traffic).
    pub mean_time_us: f64,
    /// The longest, µs.
    pub max_time_us: u64,
}

impl Join {
    /// Per client, from the sums.
    pub fn of(c: JoinCounts) -> Join {
        let n = c.clients.max(1) as f64;
        Join {
            clients: c.clients,
            bytes_per_client: c.bytes as f64 / n,
            requests_per_client: c.requests as f64 / n,
            mean_time_us: c.time_us as f64 / n,
            max_time_us: c.max_time_us,
        }
    }
}

/// Connection drops (`network.drop_every`) and what resuming from them
/// What the clients counted of connection drops (`network.drop_every`),
/// whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DropCounts {
    /// Drops: each cuts one client's connections.
    pub drops: u64,
    /// TCP connections opened to resume after a drop.
    pub reconnects: u64,
    /// Bytes the server sent into cut connections after the cut (read, and
    /// thrown away).
    pub bytes_after_cut: u64,
    /// Bytes of each resuming request and its response head (WebSocket:
    /// the upgrade and its 101; SSE: the GET with `Last-Event-ID` and its
    /// head; polls: the first poll on the new connection and its head).
    pub resume_bytes: u64,
    /// Messages that arrived on a cut connection, thrown away and fetched
    /// again after the resume.
    pub discarded: u64,
}

impl std::ops::AddAssign for DropCounts {
    fn add_assign(&mut self, o: DropCounts) {
        self.drops += o.drops;
        self.reconnects += o.reconnects;
        self.bytes_after_cut += o.bytes_after_cut;
        self.resume_bytes += o.resume_bytes;
        self.discarded += o.discarded;
    }
}

/// cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Drops {
    /// Drops: each cut one client's connections (its receiving one, and
    /// its publishing one when it has a second).
    pub drops: u64,
    /// TCP connections opened to resume.
    pub reconnects: u64,
    /// Bytes the server sent into cut connections after the cut.
    pub bytes_after_cut: u64,
    /// Bytes of the resuming requests and their response heads.
    pub resume_bytes: u64,
    /// Messages that arrived on cut connections and were fetched again.
    pub discarded: u64,
    /// `(bytes_after_cut + resume_bytes) / drops`.
    pub bytes_per_drop: f64,
    /// TCP handshakes per drop: `reconnects / drops`.
    pub handshakes_per_drop: f64,
    /// Latency of the measured messages sent while their receiver was
    /// away (from the cut until its resuming request left).
    pub away_latency_us: Percentiles,
}

impl Drops {
    /// The run.json entry of the clients' counts and the away latencies.
    pub fn of(c: DropCounts, away: &Histogram<u64>) -> Drops {
        let per = |x: u64| x as f64 / c.drops.max(1) as f64;
        Drops {
            drops: c.drops,
            reconnects: c.reconnects,
            bytes_after_cut: c.bytes_after_cut,
            resume_bytes: c.resume_bytes,
            discarded: c.discarded,
            bytes_per_drop: per(c.bytes_after_cut + c.resume_bytes),
            handshakes_per_drop: per(c.reconnects),
            away_latency_us: Percentiles::of(away),
        }
    }
}

/// Client counts against the server's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossCheck {
    /// Server `bytes_written` delta, every label but `other`.
    pub server_bytes_written: u64,
    /// Client bytes read, whole run.
    pub client_bytes_down: u64,
    /// Server `messages_delivered` delta.
    pub server_delivered: u64,
    /// Client message receipts, whole run.
    pub client_receipts: u64,
    /// The byte counts agree.
    pub bytes_match: bool,
    /// The message counts agree.
    pub delivered_match: bool,
}

/// Server process cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCost {
    /// RSS before any client connected.
    pub rss_baseline: u64,
    /// RSS once all clients were connected, before traffic.
    pub rss_before_traffic: u64,
    /// Largest RSS seen.
    pub rss_peak: u64,
    /// RSS growth from the baseline to before traffic, per connection:
    /// the memory cost of an idle connection.
    pub rss_per_connection: f64,
    /// CPU ms (user + system) in the measured window.
    pub cpu_ms_measured: f64,
    /// Precision of `cpu_ms_measured`, ms: 0.001 from schedstat, 10 from
    /// `stat` ticks (older runs say 0: ticks).
    #[serde(default)]
    pub cpu_precision_ms: f64,
    /// CPU ms per 1,000 delivered messages.
    pub cpu_ms_per_1k_msgs: f64,
    /// Most threads.
    pub threads_peak: u64,
    /// Most file descriptors.
    pub fds_peak: u64,
    /// Samples, about one a second (summed over the processes).
    pub samples: Vec<ProcSample>,
    /// With several server processes (`[server] processes`), each one's
    /// share; the figures above are their sums. Empty for one process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ServerProcess>,
    /// Under `server.cpu_quota`: how often the server used up its quota in
    /// the measured window (None without a quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_periods: Option<QuotaPeriods>,
}

/// The CPU quota's 10 ms periods in a measured window (the cgroup's
/// `cpu.stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QuotaPeriods {
    /// Periods in which the server ran.
    pub ran: u64,
    /// Of those, the ones in which it used up its quota and waited for the
    /// next period.
    pub throttled: u64,
}

impl QuotaPeriods {
    /// The counts since `start`, an earlier reading of the same cgroup.
    pub fn since(&self, start: &QuotaPeriods) -> QuotaPeriods {
        QuotaPeriods {
            ran: self.ran.saturating_sub(start.ran),
            throttled: self.throttled.saturating_sub(start.throttled),
        }
    }

    /// The throttled periods' share of those it ran in, 0 to 1.
    pub fn share(&self) -> f64 {
        self.throttled as f64 / self.ran.max(1) as f64
    }
}

/// One of several server processes of a transport run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerProcess {
    /// Its index: it owns the rooms whose `crc32(name) % processes` is this.
    pub index: u32,
    /// Rooms it owned.
    pub rooms: u64,
    /// Client connections routed to it (its rooms' receivers, plus the
    /// publish connections of their senders on the HTTP transports).
    pub connections: u64,
    /// RSS before any client connected.
    pub rss_baseline: u64,
    /// RSS once all clients were connected, before traffic.
    pub rss_before_traffic: u64,
    /// Largest RSS seen.
    pub rss_peak: u64,
    /// CPU ms (user + system) in the measured window.
    pub cpu_ms_measured: f64,
    /// Messages it delivered over the run, from its `/metrics`.
    pub delivered: u64,
    /// Bytes it wrote to clients over the run, from its `/metrics`.
    pub bytes_written: u64,
}

/// The load generator's own CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadgenCost {
    /// CPU ms in the measured window.
    pub cpu_ms_measured: f64,
    /// Precision of `cpu_ms_measured`, ms (see [`ServerCost`]).
    #[serde(default)]
    pub cpu_precision_ms: f64,
    /// Share of the CPUs it may use (0..1).
    pub cpu_share: f64,
    /// Its processes (shards); 0 in runs that predate the count.
    #[serde(default)]
    pub processes: usize,
    /// Its memory, summed over its processes; absent in runs that predate
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss: Option<LoadgenRss>,
}

/// The load generator's resident memory over a transport run, summed over
/// its processes, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadgenRss {
    /// Before any client of the run was started.
    pub baseline: u64,
    /// When traffic started, every client connected.
    pub before_traffic: u64,
    /// The largest seen, each process sampled every 250 ms (a sum of each
    /// process's peak).
    pub peak: u64,
    /// `(before_traffic - baseline) / clients`. With one process, a
    /// transport run after the first can reuse memory an earlier one
    /// freed, so this reads low there; worker processes start fresh.
    pub per_client: f64,
}

/// One second of traffic (warm-up included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds after traffic began, by intended send time; seconds below the
    /// scenario's `warmup` are warm-up.
    pub second: u64,
    /// Deliveries of messages sent in that second.
    pub delivered: u64,
    /// Messages received in that second (by receive time).
    pub received: u64,
    /// Their p99 latency, µs.
    pub p99_us: u64,
}

/// One transport, one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportRun {
    /// The transport.
    pub transport: Transport,
    /// Sweep point (0 without a sweep).
    #[serde(default)]
    pub point: usize,
    /// 0-based repetition.
    pub repetition: u32,
    /// False when it ended early.
    pub complete: bool,
    /// `saturated`, `incomplete`, `not_ready`, `crosscheck_mismatch`.
    pub flags: Vec<String>,
    /// Why the run is `saturated`: which side ran out (the load generator's
    /// send lag or CPU, or the server's CPU), with the figure and the limit.
    /// Empty when not saturated, and in files written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saturation: Vec<String>,
    /// Connections opened.
    pub connections: u64,
    /// Length of the measured window, s.
    pub measured_seconds: f64,
    /// Start of the measured window, ms since the UNIX epoch (0 in runs made
    /// before it was recorded); the `.hlog` interval's start time.
    #[serde(default)]
    pub measured_from_unix_ms: u64,
    /// Delivery latency.
    pub latency_us: Percentiles,
    /// Send lag (actual minus intended send time).
    pub send_lag_us: Percentiles,
    /// Connect time.
    pub connect_us: Percentiles,
    /// Poll round trip (polling transports).
    pub request_us: Percentiles,
    /// Delivery audit.
    pub audit: Audit,
    /// Wire overhead.
    pub wire: WireResult,
    /// Against the server's metrics, when it could be scraped.
    pub crosscheck: Option<CrossCheck>,
    /// Server cost, when its pid is known.
    pub server: Option<ServerCost>,
    /// Load-generator cost.
    pub loadgen: LoadgenCost,
    /// Per-second deliveries and p99, warm-up included.
    pub timeline: Vec<Second>,
    /// Where each delivery's latency went, on the host clock the server's
    /// `server_at` stamp shares (None in runs made before it existed).
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
    /// The load generator's own receive time per delivery: from the end of
    /// the delivery (see [`Breakdown::receipt`]) to the end of its parsing,
    /// waiting behind the other clients on the same CPU included. With
    /// `send_lag_us`, the instrument's error bar.
    #[serde(default)]
    pub receive_us: Percentiles,
    /// Short polls: how late each poll left after its scheduled tick (a
    /// tick that passed while the previous poll was out counts how late it
    /// was when that poll returned).
    #[serde(default)]
    pub poll_lag_us: Percentiles,
    /// The readiness barrier before traffic.
    #[serde(default)]
    pub ready: Option<Readiness>,
    /// `audit.errors` by cause: what failed (`connect`, `poll`, `publish`,
    /// `sse`, `websocket`, ...) and why (the OS error, the HTTP status and
    /// the server's reason, hyper's or tungstenite's message). At most
    /// [`MAX_ERROR_CAUSES`] causes per process; later new ones count under
    /// `"<what>: other causes"`. Empty (and left out) when nothing failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors_by_cause: BTreeMap<String, u64>,
    /// Connection drops and their cost, in runs with `network.drop_every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<Drops>,
    /// What the packet-level link did, in runs with `network.mode =
    /// "packet"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkReport>,
    /// TCP's view of the run's connections (absent in files that predate
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<crate::tcp::TcpView>,
    /// What joining a room cost, for the clients of another stack's
    /// profile (`target.profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,
    /// What the clients' traffic would cost a phone's LTE radio
    /// ([`crate::energy`]; absent in files that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio: Option<crate::energy::Radio>,
    /// Why there is no `crosscheck`, when the server has none to give
    /// (another stack's server counts no bytes of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_crosscheck: Option<String>,
    /// The reverse proxy in front of the server (`[path] proxy`): its cost
    /// and the bytes of both legs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyCost>,
    /// How the streams fared: the first message on each client's first
    /// stream, streams that delivered nothing, and connections cut. None
    /// for a polling run that had no cut, and in files that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Streams>,
}

/// How a run's streams fared: what a buffering proxy or an idle timeout
/// does shows here before it shows in the latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Streams {
    /// Each client's first stream (SSE, WebSocket): from the server's
    /// stamp of the first message it delivered to that message's arrival,
    /// µs. Directly, a delivery's down leg; a proxy that buffers the
    /// stream holds it until its buffer fills.
    pub first_event_us: Percentiles,
    /// Clients whose first stream delivered no message at all (held in a
    /// buffer that never filled, or refused).
    pub silent: u64,
    /// Connections the server's side ended while their client still
    /// wanted them (an idle timeout; a proxy's 502 or 504 in place of a
    /// poll's answer): how long each had lived, µs; `count` is how many.
    pub cut_lived_us: Percentiles,
}

impl Streams {
    /// The record of a run: for a push transport always, for a polling
    /// one only when a connection was cut.
    pub fn of(
        push: bool,
        first_event: &Histogram<u64>,
        silent: u64,
        cut_lived: &Histogram<u64>,
    ) -> Option<Streams> {
        (push || !cut_lived.is_empty()).then(|| Streams {
            first_event_us: Percentiles::of(first_event),
            silent,
            cut_lived_us: Percentiles::of(cut_lived),
        })
    }
}

/// What a reverse proxy cost over the measured window, and the bytes on
/// each side of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyCost {
    /// Its CPU over the measured window, ms (all its processes).
    pub cpu_ms_measured: f64,
    /// Per 1,000 delivered messages, ms.
    pub cpu_ms_per_1k: f64,
    /// Its memory at the end of the window, bytes (all its processes).
    pub rss_bytes: u64,
    /// Bytes the server wrote to the proxy over the whole run (its
    /// `/metrics`): the server's leg.
    pub server_leg_bytes_down: u64,
    /// Bytes the clients read from the proxy over the whole run: the
    /// clients' leg.
    pub client_leg_bytes_down: u64,
    /// In an HTTP/2 run, the WebSockets went over HTTP/1.1, each on a TLS
    /// connection of its own: the proxy's HTTP/2 does not allow extended
    /// CONNECT (RFC 8441), and a browser falls back the same way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub websocket_h1: bool,
}

/// What the packet-level link did over one transport run, from the start
/// of its clients' connects to the end of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    /// Client to server.
    pub up: LinkDirection,
    /// Server to client.
    pub down: LinkDirection,
    /// The forwarder thread's CPU, ms: the instrument's own, charged to
    /// neither the server nor the load generator's clients.
    pub forwarder_cpu_ms: f64,
}

/// One direction of the packet-level link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDirection {
    /// IP packets offered to it.
    pub offered: u64,
    /// Lost by the loss model (`network.loss`).
    pub lost: u64,
    /// Dropped at the full queue (`network.queue_bytes`).
    pub queue_drops: u64,
    /// Delivered.
    pub delivered: u64,
    /// Bytes delivered, IP headers included.
    pub delivered_bytes: u64,
}

/// The parts of delivery latency. For every delivery
/// `up_leg + poll_wait + down_leg = latency` exactly, so the means add up
/// to the latency's mean within the histograms' precision (3 significant
/// digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// `one_host`: sender, server and receiver stamp with one host's
    /// `CLOCK_REALTIME`, so the parts are exact. A breakdown across hosts
    /// would need clock offsets, and says so here.
    pub clock: String,
    /// Where a delivery ends. `socket_arrival`: when its last bytes reached
    /// the client's socket, from the kernel's receive stamp
    /// (`SO_TIMESTAMPNS`; where the kernel gives none, when the read
    /// returned). `parsed` (files written before 2026-12-01): when the load
    /// generator had parsed it, so the time it spent on the other clients it
    /// simulates on the same CPU was in the latency.
    #[serde(default = "parsed")]
    pub receipt: String,
    /// Intended send time to the server's `server_at` stamp (send lag
    /// included; it is shown apart in `send_lag_us`).
    pub up_leg_us: Percentiles,
    /// Polls: `server_at` to the send of the poll that fetched the message
    /// (0 when a poll was already waiting). Streams: always 0.
    pub poll_wait_us: Percentiles,
    /// The later of `server_at` and the fetching poll's send, to receipt.
    pub down_leg_us: Percentiles,
    /// Measured deliveries left out because their stamps were out of order
    /// (clocks that differ); 0 on one host.
    pub skewed: u64,
}

fn parsed() -> String {
    "parsed".into()
}

/// How many distinct error causes one process keeps (see
/// [`TransportRun::errors_by_cause`]).
pub const MAX_ERROR_CAUSES: usize = 32;

/// How the clients came up before traffic started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// Connections that had to be up and subscribed (receivers, plus the
    /// publish connections of HTTP senders).
    pub expected: u64,
    /// How many were when traffic started.
    pub ready: u64,
    /// From the first connect to the last client ready, ms.
    pub ramp_ms: u64,
}

/// Median, min and max over repetitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// One transport over all its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportSummary {
    /// The transport.
    pub transport: Transport,
    /// Sweep point (0 without a sweep).
    #[serde(default)]
    pub point: usize,
    /// The swept value at this point, as written.
    #[serde(default)]
    pub point_label: Option<String>,
    /// Repetitions run.
    pub repetitions: u32,
    /// Latency p50, µs.
    pub p50_us: Stat,
    /// Latency p90, µs.
    pub p90_us: Stat,
    /// Latency p99, µs.
    pub p99_us: Stat,
    /// Latency p99.9, µs.
    pub p999_us: Stat,
    /// Latency max, µs.
    pub max_us: Stat,
    /// Send lag p50, µs: the instrument's error on the send side.
    #[serde(default)]
    pub send_lag_p50_us: Stat,
    /// Send lag p99, µs.
    #[serde(default)]
    pub send_lag_p99_us: Stat,
    /// The load generator's receive time p50, µs: its error on the
    /// receive side.
    #[serde(default)]
    pub receive_p50_us: Stat,
    /// Mean up-leg, µs (see [`Breakdown`]).
    #[serde(default)]
    pub up_leg_mean_us: Stat,
    /// Mean poll wait, µs.
    #[serde(default)]
    pub poll_wait_mean_us: Stat,
    /// Mean down-leg, µs.
    #[serde(default)]
    pub down_leg_mean_us: Stat,
    /// Bytes per delivered message, both directions.
    pub bytes_per_msg: Stat,
    /// Client-to-server bytes per message.
    pub bytes_up_per_msg: Stat,
    /// Server-to-client bytes per message.
    pub bytes_down_per_msg: Stat,
    /// Requests per delivered message.
    pub requests_per_msg: Stat,
    /// TCP segments per delivered message.
    pub segments_per_msg: Stat,
    /// Deliveries per second.
    pub delivered_per_s: Stat,
    /// Bytes per second on all client sockets, both directions.
    pub bytes_per_s: Stat,
    /// HTTP requests per second.
    pub requests_per_s: Stat,
    /// Mean size of a message as delivered (its JSON), bytes.
    pub payload_bytes: Stat,
    /// Server CPU ms per 1,000 messages, when known.
    pub server_cpu_ms_per_1k: Option<Stat>,
    /// Server RSS per connection, bytes, when known.
    pub rss_per_connection: Option<Stat>,
    /// Lost, over all repetitions.
    pub lost: u64,
    /// Duplicated, over all repetitions.
    pub duplicated: u64,
    /// Reordered, over all repetitions.
    pub reordered: u64,
    /// Errors, over all repetitions.
    pub errors: u64,
    /// Every flag any repetition had.
    pub flags: Vec<String>,
    /// The analytic model's p50 at this point (`chatbench_results::model`),
    /// µs; absent in files written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_p50_us: Option<f64>,
    /// With drops: bytes per drop (after the cut, and to resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_drop: Option<Stat>,
    /// With drops: TCP handshakes per drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshakes_per_drop: Option<Stat>,
    /// With drops: p50 latency of messages sent while their receiver was
    /// away, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away_p50_us: Option<Stat>,
    /// Radio energy per client-hour, J ([`crate::energy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio_j_per_client_hour: Option<Stat>,
    /// The share of the time the radio was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio_on_share: Option<Stat>,
    /// The share of the radio energy the transport's own traffic caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio_overhead_share: Option<Stat>,
}

impl RunFile {
    /// Writes `run.json` into `dir` (through a temporary file, so a reader
    /// never sees half a file).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("run.json.tmp");
        std::fs::write(&tmp, super::layout::to_vec(self)?)?;
        std::fs::rename(tmp, dir.join("run.json"))
    }

    /// Reads `run.json` from a run folder.
    pub fn read(dir: &Path) -> Result<RunFile, ReadError> {
        let path = dir.join("run.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ReadError::Io {
            path: path.clone(),
            source,
        })?;
        let json = |source| ReadError::Json {
            path: path.clone(),
            source,
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(json)?;
        if v["schema"] != SCHEMA {
            return Err(ReadError::Schema {
                found: v["schema"].to_string(),
                path,
            });
        }
        serde_json::from_value(v).map_err(json)
    }
}

#[cfg(test)]
mod tests {
    use super::QuotaPeriods;

    #[test]
    fn quota_periods_are_the_counts_since_an_earlier_reading() {
        let at = |ran, throttled| QuotaPeriods { ran, throttled };
        let p = at(160, 40).since(&at(100, 10));
        assert_eq!(p, at(60, 30));
        assert_eq!(p.share(), 0.5);
        // A window without a period ran is not a division by zero.
        assert_eq!(at(7, 3).since(&at(7, 3)).share(), 0.0);
    }
}
