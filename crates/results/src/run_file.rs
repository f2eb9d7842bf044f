//! The result files: `run.json` (schema [`SCHEMA`]), histogram logs, and the
//! console table.

use crate::machine::{Environment, ProcSample};
use crate::scenario::Scenario;
use crate::wire::{on_wire_bytes, WireSnapshot};
use crate::Transport;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
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
            cpus: self.cpus.clone(),
        }
    }

    /// True for one shard's partial folder, which `chatbench merge` joins
    /// with the others into a run.
    pub fn is_shard_part(&self) -> bool {
        self.shards.len() == 1 && self.merged_from.is_empty()
    }
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
    /// TCP segments, both directions (whole run, as segments are read at close).
    pub segments: f64,
    /// Estimated on-wire bytes including IPv4 and TCP headers (whole run).
    pub on_wire_bytes: f64,
    /// Mean size of the message itself (its JSON), whole run: everything
    /// else in `bytes` is framing, headers and requests.
    #[serde(default)]
    pub payload_bytes: f64,
}

impl WireResult {
    /// Derives per-message figures.
    pub fn new(
        measured: WireSnapshot,
        total: WireSnapshot,
        delivered: u64,
        payload_bytes: f64,
    ) -> WireResult {
        let d = delivered.max(1) as f64;
        let segs = total.segs_in + total.segs_out;
        // Segments are only known per connection at close, so the per-message
        // figure uses the whole run and the whole run's deliveries scale.
        let total_share = if total.bytes_up + total.bytes_down == 0 {
            1.0
        } else {
            (measured.bytes_up + measured.bytes_down) as f64
                / (total.bytes_up + total.bytes_down) as f64
        };
        WireResult {
            measured,
            total,
            per_msg: PerMessage {
                bytes_up: measured.bytes_up as f64 / d,
                bytes_down: measured.bytes_down as f64 / d,
                bytes: (measured.bytes_up + measured.bytes_down) as f64 / d,
                requests: measured.requests as f64 / d,
                segments: segs as f64 * total_share / d,
                on_wire_bytes: on_wire_bytes(total.bytes_up + total.bytes_down, segs) as f64
                    * total_share
                    / d,
                payload_bytes,
            },
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

impl Stat {
    /// Of the values (all zero when none).
    pub fn of(mut v: Vec<f64>) -> Stat {
        if v.is_empty() {
            return Stat::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
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
}

impl TransportSummary {
    /// How far the measured p50 is from the model's: `(|measured − model|
    /// − 2 ms) / max(model, 2 ms)`, and 0 within the 2 ms of processing the
    /// model leaves out. Relative to the model's p50, or to those 2 ms
    /// where the model's is smaller (a push transport on loopback, whose
    /// model p50 is 0). None without a model figure.
    pub fn p50_model_error(&self) -> Option<f64> {
        let model = self.model_p50_us?;
        let off = ((self.p50_us.median - model).abs() - MODEL_SLACK_US).max(0.0);
        Some(off / model.max(MODEL_SLACK_US))
    }

    /// Summarizes the runs of `t` at sweep point `point`; None when there
    /// are none.
    pub fn of(t: Transport, point: usize, runs: &[TransportRun]) -> Option<TransportSummary> {
        let rs: Vec<&TransportRun> = runs
            .iter()
            .filter(|r| r.transport == t && r.point == point)
            .collect();
        if rs.is_empty() {
            return None;
        }
        let st = |f: &dyn Fn(&TransportRun) -> f64| Stat::of(rs.iter().map(|r| f(r)).collect());
        let opt = |f: &dyn Fn(&TransportRun) -> Option<f64>| {
            let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| Stat::of(v))
        };
        let mut flags: Vec<String> = rs.iter().flat_map(|r| r.flags.iter().cloned()).collect();
        flags.sort();
        flags.dedup();
        Some(TransportSummary {
            transport: t,
            point,
            point_label: None,
            bytes_per_s: st(&|r| {
                (r.wire.measured.bytes_up + r.wire.measured.bytes_down) as f64
                    / r.measured_seconds.max(1e-9)
            }),
            requests_per_s: st(&|r| r.wire.measured.requests as f64 / r.measured_seconds.max(1e-9)),
            payload_bytes: st(&|r| r.wire.per_msg.payload_bytes),
            repetitions: rs.len() as u32,
            p50_us: st(&|r| r.latency_us.p50 as f64),
            p90_us: st(&|r| r.latency_us.p90 as f64),
            p99_us: st(&|r| r.latency_us.p99 as f64),
            p999_us: st(&|r| r.latency_us.p999 as f64),
            max_us: st(&|r| r.latency_us.max as f64),
            send_lag_p50_us: st(&|r| r.send_lag_us.p50 as f64),
            send_lag_p99_us: st(&|r| r.send_lag_us.p99 as f64),
            receive_p50_us: st(&|r| r.receive_us.p50 as f64),
            up_leg_mean_us: st(&|r| r.breakdown.as_ref().map_or(0.0, |b| b.up_leg_us.mean)),
            poll_wait_mean_us: st(&|r| r.breakdown.as_ref().map_or(0.0, |b| b.poll_wait_us.mean)),
            down_leg_mean_us: st(&|r| r.breakdown.as_ref().map_or(0.0, |b| b.down_leg_us.mean)),
            bytes_per_msg: st(&|r| r.wire.per_msg.bytes),
            bytes_up_per_msg: st(&|r| r.wire.per_msg.bytes_up),
            bytes_down_per_msg: st(&|r| r.wire.per_msg.bytes_down),
            requests_per_msg: st(&|r| r.wire.per_msg.requests),
            segments_per_msg: st(&|r| r.wire.per_msg.segments),
            delivered_per_s: st(&|r| r.audit.delivered as f64 / r.measured_seconds.max(1e-9)),
            server_cpu_ms_per_1k: opt(&|r| r.server.as_ref().map(|s| s.cpu_ms_per_1k_msgs)),
            rss_per_connection: opt(&|r| r.server.as_ref().map(|s| s.rss_per_connection)),
            lost: rs.iter().map(|r| r.audit.lost).sum(),
            duplicated: rs.iter().map(|r| r.audit.duplicated).sum(),
            reordered: rs.iter().map(|r| r.audit.reordered).sum(),
            errors: rs.iter().map(|r| r.audit.errors).sum(),
            flags,
            model_p50_us: None,
            bytes_per_drop: opt(&|r| r.drops.map(|d| d.bytes_per_drop)),
            handshakes_per_drop: opt(&|r| r.drops.map(|d| d.handshakes_per_drop)),
            away_p50_us: opt(&|r| {
                r.drops
                    .filter(|d| d.away_latency_us.count > 0)
                    .map(|d| d.away_latency_us.p50 as f64)
            }),
        })
    }
}

/// One transport at one point, measured and modelled
/// ([`RunFile::against_model`]).
#[derive(Debug, Clone, Copy)]
pub struct ModelRow<'a> {
    /// The measured summary (p50 as `summary.p50_us.median`).
    pub summary: &'a TransportSummary,
    /// The model's p50 and mean at the summary's point.
    pub model: crate::model::Prediction,
    /// Measured mean latency, µs.
    pub mean_us: f64,
}

/// Processing the model leaves out, µs: a measured p50 within this of the
/// model's counts as agreeing (about twice loopback's whole latency here).
pub const MODEL_SLACK_US: f64 = 2_000.0;

impl RunFile {
    /// Recomputes `summary` from `runs`: one entry per sweep point and
    /// transport.
    pub fn summarize(&mut self) {
        let mut out = Vec::new();
        for p in 0..self.scenario.points() {
            for &t in &self.scenario.transports {
                if let Some(mut s) = TransportSummary::of(t, p, &self.runs) {
                    s.point_label = self.scenario.point_label(p);
                    s.model_p50_us = self
                        .scenario
                        .at_point(p)
                        .ok()
                        .map(|at| crate::model::predict(&at, t).p50_us);
                    out.push(s);
                }
            }
        }
        self.summary = out;
    }

    /// Each summary beside the analytic model's prediction at its point,
    /// with the measured mean latency (the mean of its repetitions'): what
    /// REPORT.md's "Against the model" and the model chart show.
    pub fn against_model(&self) -> Vec<ModelRow<'_>> {
        self.summary
            .iter()
            .filter_map(|x| {
                let at = self.scenario.at_point(x.point).ok()?;
                let runs: Vec<&TransportRun> = self
                    .runs
                    .iter()
                    .filter(|r| r.transport == x.transport && r.point == x.point)
                    .collect();
                let mean_us =
                    runs.iter().map(|r| r.latency_us.mean).sum::<f64>() / runs.len().max(1) as f64;
                Some(ModelRow {
                    summary: x,
                    model: crate::model::predict(&at, x.transport),
                    mean_us,
                })
            })
            .collect()
    }

    /// The summaries of sweep point `p`.
    pub fn at_point(&self, p: usize) -> impl Iterator<Item = &TransportSummary> {
        self.summary.iter().filter(move |s| s.point == p)
    }

    /// Writes `run.json` into `dir` (through a temporary file, so a reader
    /// never sees half a file).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("run.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
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

    /// The console table at any width: one row per transport, every
    /// column, then the legend.
    pub fn table(&self) -> String {
        self.table_fitting(None)
    }

    /// The console table for a terminal `width` columns wide: columns
    /// that do not fit are left out, least telling first (max, p99.9, the
    /// load generator's receive time, requests per message, RSS per
    /// connection), and the legend says which. Then a legend of the units,
    /// in lines that fit 80 columns.
    pub fn table_fitting(&self, width: Option<u16>) -> String {
        use comfy_table::{CellAlignment, ColumnConstraint, Table};
        let mut out = String::new();
        if let Some(sweep) = &self.scenario.sweep {
            let _ = writeln!(out, "sweep over {}", sweep.parameter);
        }
        let sweeps = self.summary.iter().any(|s| s.point_label.is_some());
        let mut header: Vec<&str> = Vec::new();
        if sweeps {
            header.push("at");
        }
        header.extend([
            "transport",
            "p50",
            "p99",
            "p99.9",
            "max",
            "send lag",
            "recv50",
            "bytes/msg",
            "req/msg",
            "cpu-ms/1k",
            "rss/conn",
            "lost",
            "flags",
        ]);
        let mut table = Table::new();
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_header(header.clone());
        for s in &self.summary {
            let opt = |o: Option<Stat>, f: &dyn Fn(f64) -> String| {
                o.map(|x| f(x.median)).unwrap_or_else(|| "n/a".into())
            };
            let us = |v: f64| crate::fmt::fmt_us(v as u64);
            let mut row: Vec<String> = Vec::new();
            if sweeps {
                row.push(s.point_label.clone().unwrap_or_default());
            }
            row.extend([
                s.transport.as_str().to_owned(),
                us(s.p50_us.median),
                us(s.p99_us.median),
                us(s.p999_us.median),
                us(s.max_us.median),
                format!(
                    "{}/{}",
                    us(s.send_lag_p50_us.median),
                    us(s.send_lag_p99_us.median)
                ),
                us(s.receive_p50_us.median),
                format!("{:.0}", s.bytes_per_msg.median),
                format!("{:.3}", s.requests_per_msg.median),
                opt(s.server_cpu_ms_per_1k, &|v| format!("{v:.1}")),
                opt(s.rss_per_connection, &|v| format!("{:.1}KiB", v / 1024.0)),
                s.lost.to_string(),
                if s.flags.is_empty() {
                    "-".to_owned()
                } else {
                    s.flags.join(",")
                },
            ]);
            table.add_row(row);
        }
        let first_number = if sweeps { 2 } else { 1 };
        for (i, column) in table.column_iter_mut().enumerate() {
            // One space between columns; numbers right-aligned.
            column.set_padding((0, 1));
            if i >= first_number && i < header.len() - 1 {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut hidden = Vec::new();
        let widest = |t: &Table| t.lines().map(|l| l.trim_end().chars().count()).max();
        if let Some(width) = width {
            for name in ["max", "p99.9", "recv50", "req/msg", "rss/conn"] {
                if widest(&table).unwrap_or(0) <= width as usize {
                    break;
                }
                if let Some(c) = header
                    .iter()
                    .position(|h| *h == name)
                    .and_then(|i| table.column_mut(i))
                {
                    c.set_constraint(ColumnConstraint::Hidden);
                    hidden.push(name);
                }
            }
        }
        for line in table.lines() {
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "latency: intended send to arrival at the client's socket; send lag p50/p99;"
        );
        let _ = writeln!(
            out,
            "recv50: the load generator's own receive time, p50; bytes and requests per"
        );
        let _ = writeln!(
            out,
            "message, both directions; cpu-ms/1k: server CPU ms per 1,000 messages;"
        );
        let _ = writeln!(out, "rss/conn: server memory per idle connection.");
        if !hidden.is_empty() {
            let _ = writeln!(
                out,
                "Not shown at {} columns: {} (run.json has them).",
                width.unwrap_or(0),
                hidden.join(", ")
            );
        }
        out
    }
}

/// The file stem of a transport's histograms at a sweep point: `sse`, or
/// `sse-p2` when the scenario sweeps (even over one value). It depends on the
/// scenario alone, so writers and readers agree whatever points a partial run
/// reached.
pub fn histogram_name(scenario: &Scenario, t: Transport, point: usize) -> String {
    if scenario.sweep.is_some() {
        format!("{t}-p{point}")
    } else {
        t.to_string()
    }
}

/// One repetition's delivery-latency histogram: transport, sweep point,
/// repetition and the histogram.
pub type LatencyRep = (Transport, usize, u32, Histogram<u64>);

/// Writes the latency files of a run folder: for each transport (in the
/// scenario's order) and sweep point that has repetitions, `<name>.hlog` with
/// one interval per repetition and `<name>.hgrm` with them merged.
pub fn write_latency_histograms(
    dir: &Path,
    scenario: &Scenario,
    reps: &[LatencyRep],
    runs: &[TransportRun],
) -> std::io::Result<()> {
    for point in 0..scenario.points() {
        for &t in &scenario.transports {
            let mine: Vec<HlogInterval<'_>> = reps
                .iter()
                .filter(|(x, p, _, _)| *x == t && *p == point)
                .map(|(_, _, r, h)| {
                    let run = runs
                        .iter()
                        .find(|x| x.transport == t && x.point == point && x.repetition == *r);
                    HlogInterval {
                        repetition: *r,
                        start_unix_s: run.map_or(0.0, |x| x.measured_from_unix_ms as f64 / 1000.0),
                        length_s: run.map_or(0.0, |x| x.measured_seconds),
                        histogram: h,
                    }
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut merged = crate::hist::new_histogram();
            for iv in &mine {
                merged
                    .add(iv.histogram)
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            }
            let name = histogram_name(scenario, t, point);
            write_hgrm(&dir.join(format!("{name}.hgrm")), &merged)?;
            write_hlog(&dir.join(format!("{name}.hlog")), &mine)?;
        }
    }
    Ok(())
}

/// Writes `<name>.hgrm`: HdrHistogram's percentile distribution, in
/// milliseconds, as `outputPercentileDistribution` prints it (5 ticks per
/// half distance, cumulative TotalCount, `1/(1-Percentile)`, the last row
/// at percentile 1 without it), so HdrHistogram's own plotter reads it.
pub fn write_hgrm(path: &Path, h: &Histogram<u64>) -> std::io::Result<()> {
    std::fs::write(path, hgrm_text(h))
}

/// The text [`write_hgrm`] writes.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if !h.is_empty() {
        let mut total = 0u64;
        let mut last_q = -1.0f64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            // The iterator can yield one quantile twice at a bucket edge;
            // the Java writer prints each step once.
            if q <= last_q {
                continue;
            }
            last_q = q;
            let value = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len(),
        h.buckets(),
        // As Java's subBucketCount: 2^ceil(log2(2 * 10^digits)).
        (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil().exp2() as u64
    );
    out
}

/// One `.hlog` interval: a repetition's histogram and when it was measured.
#[derive(Debug, Clone, Copy)]
pub struct HlogInterval<'a> {
    /// The repetition, for the interval's tag (`rep<N>`).
    pub repetition: u32,
    /// Start of the measured window, s since the UNIX epoch (0 when unknown).
    pub start_unix_s: f64,
    /// Length of the measured window, s.
    pub length_s: f64,
    /// The latencies.
    pub histogram: &'a Histogram<u64>,
}

/// Writes `<name>.hlog`: an HdrHistogram V2 interval log with one interval
/// per repetition, tagged `rep<N>`, stamped with the measured window's real
/// start (absolute, s since the epoch) and length. Histograms merge;
/// percentiles do not.
pub fn write_hlog(path: &Path, reps: &[HlogInterval<'_>]) -> std::io::Result<()> {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment("chatbench delivery latency, microseconds; one interval per repetition")
            .begin_log_with(&mut buf, &mut ser)
            .map_err(std::io::Error::other)?;
        for iv in reps {
            let tag = format!("rep{}", iv.repetition);
            w.write_histogram(
                iv.histogram,
                std::time::Duration::from_secs_f64(iv.start_unix_s.max(0.0)),
                std::time::Duration::from_secs_f64(iv.length_s.max(0.0)),
                Tag::new(&tag),
            )
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
    }
    std::fs::write(path, buf)
}

/// Reads every interval of an `.hlog` file and merges them.
pub fn read_hlog(path: &Path) -> std::io::Result<Histogram<u64>> {
    let mut merged = crate::hist::new_histogram();
    for (_, h) in read_hlog_intervals(path)? {
        merged
            .add(&h)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    }
    Ok(merged)
}

/// Reads the intervals of an `.hlog` file, each with its tag (`rep<N>`).
pub fn read_hlog_intervals(path: &Path) -> std::io::Result<Vec<(String, Histogram<u64>)>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let data = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&data) {
        let entry = entry.map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        if let LogEntry::Interval(iv) = entry {
            let bytes = base64_decode(iv.encoded_histogram())
                .ok_or_else(|| std::io::Error::other("bad base64"))?;
            let h: Histogram<u64> = de
                .deserialize(&mut std::io::Cursor::new(bytes))
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            let tag = iv.tag().map(|t| t.as_str().to_owned()).unwrap_or_default();
            out.push((tag, h));
        }
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// One row of `chatbench export --csv`: a transport at a sweep point in one
/// repetition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CsvRow {
    /// The run.
    pub run_id: String,
    /// The scenario.
    pub scenario: String,
    /// The transport.
    pub transport: Transport,
    /// Sweep point.
    pub point: usize,
    /// The swept value there, if the scenario sweeps.
    pub point_label: String,
    /// Repetition, from 0.
    pub repetition: u32,
    /// The repetition ran to its end.
    pub complete: bool,
    /// Flags, `;`-separated.
    pub flags: String,
    /// Latency, µs.
    pub latency_p50_us: u64,
    /// Latency, µs.
    pub latency_p90_us: u64,
    /// Latency, µs.
    pub latency_p99_us: u64,
    /// Latency, µs.
    pub latency_p999_us: u64,
    /// Latency, µs.
    pub latency_max_us: u64,
    /// Latency, µs.
    pub latency_mean_us: f64,
    /// Breakdown means, µs (empty when the run has none).
    pub up_leg_mean_us: Option<f64>,
    /// Breakdown means, µs.
    pub poll_wait_mean_us: Option<f64>,
    /// Breakdown means, µs.
    pub down_leg_mean_us: Option<f64>,
    /// The instrument's send lag, µs.
    pub send_lag_p50_us: u64,
    /// The instrument's send lag, µs.
    pub send_lag_p99_us: u64,
    /// The instrument's receive time, µs.
    pub receive_p50_us: u64,
    /// Bytes per delivered message, both directions.
    pub bytes_per_msg: f64,
    /// Client-to-server bytes per message.
    pub bytes_up_per_msg: f64,
    /// Server-to-client bytes per message.
    pub bytes_down_per_msg: f64,
    /// Requests per delivered message.
    pub requests_per_msg: f64,
    /// TCP segments per delivered message.
    pub segments_per_msg: f64,
    /// Deliveries in the measured window.
    pub delivered: u64,
    /// The audit.
    pub lost: u64,
    /// The audit.
    pub duplicated: u64,
    /// The audit.
    pub reordered: u64,
    /// Client errors.
    pub errors: u64,
    /// Server CPU ms per 1,000 delivered messages.
    pub server_cpu_ms_per_1k: Option<f64>,
    /// Server RSS per idle connection, bytes.
    pub rss_per_connection: Option<f64>,
    /// The load generator's CPU share.
    pub loadgen_cpu_share: f64,
}

impl RunFile {
    /// One [`CsvRow`] per transport run.
    pub fn csv_rows(&self) -> Vec<CsvRow> {
        self.runs
            .iter()
            .map(|r| {
                let b = r.breakdown.as_ref();
                CsvRow {
                    run_id: self.run_id.clone(),
                    scenario: self.scenario.name.clone(),
                    transport: r.transport,
                    point: r.point,
                    point_label: self.scenario.point_label(r.point).unwrap_or_default(),
                    repetition: r.repetition,
                    complete: r.complete,
                    flags: r.flags.join(";"),
                    latency_p50_us: r.latency_us.p50,
                    latency_p90_us: r.latency_us.p90,
                    latency_p99_us: r.latency_us.p99,
                    latency_p999_us: r.latency_us.p999,
                    latency_max_us: r.latency_us.max,
                    latency_mean_us: r.latency_us.mean,
                    up_leg_mean_us: b.map(|b| b.up_leg_us.mean),
                    poll_wait_mean_us: b.map(|b| b.poll_wait_us.mean),
                    down_leg_mean_us: b.map(|b| b.down_leg_us.mean),
                    send_lag_p50_us: r.send_lag_us.p50,
                    send_lag_p99_us: r.send_lag_us.p99,
                    receive_p50_us: r.receive_us.p50,
                    bytes_per_msg: r.wire.per_msg.bytes,
                    bytes_up_per_msg: r.wire.per_msg.bytes_up,
                    bytes_down_per_msg: r.wire.per_msg.bytes_down,
                    requests_per_msg: r.wire.per_msg.requests,
                    segments_per_msg: r.wire.per_msg.segments,
                    delivered: r.audit.delivered,
                    lost: r.audit.lost,
                    duplicated: r.audit.duplicated,
                    reordered: r.audit.reordered,
                    errors: r.audit.errors,
                    server_cpu_ms_per_1k: r.server.as_ref().map(|s| s.cpu_ms_per_1k_msgs),
                    rss_per_connection: r.server.as_ref().map(|s| s.rss_per_connection),
                    loadgen_cpu_share: r.loadgen.cpu_share,
                }
            })
            .collect()
    }

    /// The run as CSV with a header row: one line per transport run.
    pub fn write_csv(&self, out: impl std::io::Write) -> Result<(), csv::Error> {
        let mut w = csv::Writer::from_writer(out);
        for row in self.csv_rows() {
            w.serialize(row)?;
        }
        w.flush()?;
        Ok(())
    }

    /// The summary document `chatbench run --json` prints.
    pub fn json_summary(&self, dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "schema": SCHEMA,
            "run_id": self.run_id,
            "dir": dir,
            "scenario": self.scenario.name,
            "complete": self.complete,
            "problems": self.problems,
            "summary": self.summary,
        })
    }
}

#[cfg(test)]
mod table_tests {
    use super::RunFile;

    fn fixture() -> RunFile {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../report/tests/fixtures/run-a");
        RunFile::read(&dir).unwrap()
    }

    #[test]
    fn the_table_fits_80_columns_and_says_what_it_left_out() {
        let run = fixture();
        let full = run.table();
        let widest = |t: &str| t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest(&full) > 80, "the full table is wider:\n{full}");
        assert!(full.lines().next().unwrap().starts_with("transport"));
        for col in ["p99.9", "max", "recv50", "req/msg", "rss/conn"] {
            assert!(full.lines().next().unwrap().contains(col), "{col}");
        }
        assert!(!full.contains("Not shown"));
        let narrow = run.table_fitting(Some(80));
        assert!(widest(&narrow) <= 80, "wider than 80:\n{narrow}");
        let head = narrow.lines().next().unwrap();
        for kept in [
            "transport",
            "p50",
            "p99",
            "send lag",
            "bytes/msg",
            "cpu-ms/1k",
            "lost",
            "flags",
        ] {
            assert!(head.contains(kept), "{kept} missing:\n{narrow}");
        }
        assert!(!head.contains("p99.9") && !head.contains("max"), "{head}");
        let note = narrow.lines().last().unwrap();
        assert_eq!(
            note,
            "Not shown at 80 columns: max, p99.9, recv50, req/msg (run.json has them)."
        );
        // One row per transport, in the file's order.
        let rows: Vec<&str> = narrow
            .lines()
            .skip(1)
            .take(4)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(rows, ["short_poll", "long_poll", "sse", "websocket"]);
        // Wide enough, nothing is left out.
        assert_eq!(run.table_fitting(Some(400)), full);
    }
}

#[cfg(test)]
mod model_error_tests {
    use super::{RunFile, Stat};

    #[test]
    fn the_model_error_allows_2_ms_then_counts_relative_to_the_model() {
        let run = RunFile::read(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../report/tests/fixtures/run-a"),
        )
        .unwrap();
        let mut s = run.summary[0].clone();
        let at = |s: &mut super::TransportSummary, p50: f64, model: Option<f64>| {
            s.p50_us = Stat {
                median: p50,
                min: p50,
                max: p50,
            };
            s.model_p50_us = model;
            s.p50_model_error()
        };
        // Files from before the model have none.
        assert_eq!(at(&mut s, 1_000.0, None), None);
        // Within 2 ms either way: 0.
        assert_eq!(at(&mut s, 101_900.0, Some(100_000.0)), Some(0.0));
        assert_eq!(at(&mut s, 98_500.0, Some(100_000.0)), Some(0.0));
        // 17 ms over at 100 ms: 15 beyond the allowance, 15%.
        assert_eq!(at(&mut s, 117_000.0, Some(100_000.0)), Some(0.15));
        // A model of 0 (a push transport on loopback): relative to 2 ms.
        assert_eq!(at(&mut s, 2_200.0, Some(0.0)), Some(0.1));
    }
}
