//! Scenario files (TOML): what to compare and under which chat workload.
//!
//! [`Scenario::load`] parses with serde, rejects unknown fields, and then
//! validates; every error names the file, the line and the field
//! ([`ScenarioError`]). The format is documented in `docs/scenario-format.md`.

use crate::energy::RadioModel;
pub use crate::fmt::{parse_bandwidth, parse_duration};
pub use crate::target::Target;
use crate::Transport;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed and validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name; results go to `results/<name>/`.
    pub name: String,
    /// Which question the scenario answers, in a sentence or two.
    #[serde(default)]
    pub description: String,
    /// Transports to compare, in run order.
    pub transports: Vec<Transport>,
    /// Length of the measured window.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Traffic before the measured window that is not recorded.
    #[serde(with = "humantime_serde", default = "defaults::warmup")]
    pub warmup: Duration,
    /// Wait after the last send for in-flight messages (the drain).
    #[serde(with = "humantime_serde", default = "defaults::grace")]
    pub grace: Duration,
    /// Seed of every send schedule.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Repetitions of each transport, interleaved (A B C D A B C D).
    #[serde(default = "defaults::repeat")]
    pub repeat: u32,
    /// Who connects.
    pub clients: Clients,
    /// What is sent.
    pub messages: Messages,
    /// Short-poll settings.
    #[serde(default)]
    pub short_poll: ShortPoll,
    /// Long-poll settings.
    #[serde(default)]
    pub long_poll: LongPoll,
    /// WebTransport settings.
    #[serde(default, skip_serializing_if = "WebTransportOptions::is_default")]
    pub webtransport: WebTransportOptions,
    /// The server processes chatbench starts.
    #[serde(default)]
    pub server: ServerOptions,
    /// The network between each client and the server.
    #[serde(default)]
    pub network: Network,
    /// How clients reach the server: HTTP/1.1 or HTTP/2, plain or TLS.
    #[serde(default)]
    pub protocol: Protocol,
    /// When a run is flagged saturated.
    #[serde(default)]
    pub limits: Limits,
    /// Rules for `chatbench check`, kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<toml::Table>,
    /// Vary one field over a list of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// Raise the offered load step by step until a limit breaks
    /// (`chatbench capacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::search::Search>,
    /// Extra report sections.
    #[serde(default)]
    pub report: ReportOptions,
    /// The radio power model REPORT.md's battery figures use (the LTE
    /// model of Huang et al., MobiSys 2012, unless a field is set).
    #[serde(default, skip_serializing_if = "RadioModel::is_default")]
    pub energy: RadioModel,
    /// The chat stack measured: chatbench's own, Socket.IO, or a server
    /// described in the file (`docs/targets.md`).
    #[serde(default, skip_serializing_if = "Target::is_default")]
    pub target: Target,
    /// What stands between the clients and the server: a reverse proxy
    /// chatbench spawns (`docs/proxies.md`).
    #[serde(default, skip_serializing_if = "crate::path::Path::is_direct")]
    pub path: crate::path::Path,
}

/// `[sweep]`: run the scenario once per value of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Dotted field path, e.g. `short_poll.interval` or `clients.clients_per_room`.
    pub parameter: String,
    /// The values, written as the field would be.
    pub values: Vec<toml::Value>,
}

/// `[protocol]`: how every client reaches the server. Sweep it whole
/// (`parameter = "protocol"`, values such as `{ http = "2", tls = true }`)
/// to put the stacks side by side in one run, or one field of it
/// (`protocol.tls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// `"1.1"` (the default) or `"2"`. Over HTTP/2 a client's publishes and
    /// its polls or stream share one connection, and WebSocket runs over
    /// extended CONNECT (RFC 8441); without TLS, HTTP/2 is spoken with
    /// prior knowledge (h2c).
    #[serde(default)]
    pub http: HttpVersion,
    /// TLS (`https://`, `wss://`), with ALPN; a spawned server makes its own
    /// certificate and the clients trust its CA.
    #[serde(default)]
    pub tls: bool,
    /// The request headers clients send: `"minimal"` (the default: only
    /// what the request needs) or `"browser"` (what Chromium sends for
    /// `fetch`, `EventSource` and the WebSocket handshake, captured into
    /// `crates/loadgen/profiles/chromium.txt`).
    #[serde(default)]
    pub headers: HeaderProfile,
    /// With `headers = "browser"`, the `Cookie` header's value is this many
    /// bytes (0, the default: no cookie). At most 4096, a browser's limit
    /// for one cookie.
    #[serde(default)]
    pub cookie_bytes: u32,
}

/// Which request headers clients send (`protocol.headers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderProfile {
    /// Only what each request needs: `host`, and a body's type and length.
    #[default]
    Minimal,
    /// Headless Chromium's, as captured.
    Browser,
}

/// The HTTP version clients speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    /// HTTP/1.1: one request at a time per connection.
    #[default]
    #[serde(rename = "1.1")]
    Http1,
    /// HTTP/2: streams multiplexed on one connection.
    #[serde(rename = "2")]
    Http2,
    /// HTTP/3: streams multiplexed on one QUIC connection, over UDP.
    #[serde(rename = "3")]
    Http3,
}

impl Protocol {
    /// True for HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http == HttpVersion::Http2
    }

    /// True for HTTP/3 (QUIC, always with TLS).
    pub fn is_http3(&self) -> bool {
        self.http == HttpVersion::Http3
    }

    /// The stack's short name: `h1`, `h1+tls`, `h2c`, `h2+tls` or `h3`.
    pub fn stack(&self) -> &'static str {
        match (self.http, self.tls) {
            (HttpVersion::Http1, false) => "h1",
            (HttpVersion::Http1, true) => "h1+tls",
            (HttpVersion::Http2, false) => "h2c",
            (HttpVersion::Http2, true) => "h2+tls",
            (HttpVersion::Http3, _) => "h3",
        }
    }

    /// A short name: the stack, then ` browser` with the browser's
    /// headers, and ` cookie N` with a cookie of N bytes.
    pub fn label(&self) -> String {
        let mut l = self.stack().to_owned();
        if self.headers == HeaderProfile::Browser {
            l.push_str(" browser");
            if self.cookie_bytes > 0 {
                l.push_str(&format!(" cookie {}", self.cookie_bytes));
            }
        }
        l
    }
}

/// `[report]`: extra sections of `REPORT.md`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportOptions {
    /// Add the table of "HTML5 Web Sockets: A Quantum Leap in Scalability
    /// for the Web" (Lubbers and Greco) beside chatbench's measured figures.
    #[serde(default)]
    pub kaazing: bool,
}

/// `[clients]`: rooms, clients per room and senders per room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    /// Rooms.
    pub rooms: u32,
    /// Clients in each room; every client receives.
    pub clients_per_room: u32,
    /// Of those, how many also send.
    pub senders_per_room: u32,
    /// Time over which all clients connect.
    #[serde(with = "humantime_serde", default = "defaults::ramp")]
    pub ramp: Duration,
    /// Load-generator processes the clients are spread over (every
    /// `processes`-th client in each): 1 runs them all in `chatbench run`
    /// itself, more start `chatbench worker` children.
    #[serde(default = "defaults::processes")]
    pub processes: u32,
    /// Local addresses the clients connect from, 127.0.0.1 up to
    /// 127.0.0.N (client `i` uses the `i % N`-th): each has its own
    /// ephemeral ports toward one server address, about 28,000. Only
    /// toward a loopback server.
    #[serde(default = "defaults::source_addresses")]
    pub source_addresses: u32,
}

/// How send times are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Exponential gaps: a Poisson process at `rate`.
    Poisson,
    /// Even gaps of `1/rate`, each sender with its own random phase.
    Constant,
    /// Bursts of `burst_size` back-to-back messages; the bursts form a Poisson
    /// process so that the average stays `rate`.
    Burst,
}

/// `[messages]`: rate, arrival process and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Messages {
    /// Messages per second per sender (the average, for bursts).
    pub rate: f64,
    /// Arrival process.
    #[serde(default = "defaults::arrival")]
    pub arrival: Arrival,
    /// Messages per burst (`arrival = "burst"` only).
    #[serde(default = "defaults::burst_size")]
    pub burst_size: u32,
    /// Length of the message `body` in bytes.
    #[serde(default = "defaults::body_bytes")]
    pub body_bytes: usize,
}

/// `[short_poll]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortPoll {
    /// Time between polls, on a fixed schedule.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for ShortPoll {
    fn default() -> ShortPoll {
        ShortPoll {
            interval: Duration::from_secs(1),
        }
    }
}

/// `[long_poll]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongPoll {
    /// `wait_ms` of each long poll.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
}

/// `[webtransport]`: how the server sends a session's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebTransportOptions {
    /// `"stream"` (the default): every message on one unidirectional
    /// stream, WebSocket's shape; `"stream-per-message"`: each message on a
    /// stream of its own, which QUIC delivers independently.
    #[serde(default)]
    pub mode: WebTransportMode,
}

impl WebTransportOptions {
    /// True for the defaults (left out of run.json).
    pub fn is_default(&self) -> bool {
        *self == WebTransportOptions::default()
    }
}

/// How a WebTransport session's messages travel (`webtransport.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebTransportMode {
    /// One unidirectional stream for all of a session's messages.
    #[default]
    Stream,
    /// A unidirectional stream per message.
    StreamPerMessage,
}

impl WebTransportMode {
    /// The name in scenario files and in the session's URL (`mode=`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebTransportMode::Stream => "stream",
            WebTransportMode::StreamPerMessage => "stream-per-message",
        }
    }
}

impl Default for LongPoll {
    fn default() -> LongPoll {
        LongPoll {
            wait: Duration::from_secs(30),
        }
    }
}

/// `[server]`: how many server processes share the rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerOptions {
    /// Server processes started for each transport run. Each room is
    /// owned by one of them, process `crc32(room) % processes`
    /// (`chatbench-server --room-shard I/K`); the load generator routes
    /// each room's clients to its owner. Only with a server chatbench
    /// starts: `--server URL` is one process.
    #[serde(default = "defaults::processes")]
    pub processes: u32,
    /// The spawned chatbench server's SSE keep-alive interval
    /// (`--sse-keepalive`; its default, 15 s, when left out). Set above a
    /// proxy's idle timeout, it lets the proxy cut a quiet stream.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub sse_keepalive: Option<Duration>,
    /// Its WebSocket ping interval (`--ws-ping-interval`; 30 s when left
    /// out).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ws_ping_interval: Option<Duration>,
    /// A CPU quota for the spawned server, in CPUs (0.1 to 64): its
    /// processes together get this much CPU time per 10 ms period (a
    /// cgroup's CFS quota, as `docker run --cpus` gives), and the server's
    /// CPU share and the `saturated` flag count against it. So the server
    /// runs out before the load generator does on a machine too small to
    /// give the load generator more CPUs (`chatbench capacity`). None (the
    /// default): no quota. Needs a writable cgroup `cpu` controller (v1 or
    /// v2); only with a server chatbench starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<f64>,
}

impl ServerOptions {
    /// The flags these options add to a spawned chatbench server.
    pub fn flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        for (flag, value) in [
            ("--sse-keepalive", self.sse_keepalive),
            ("--ws-ping-interval", self.ws_ping_interval),
        ] {
            if let Some(d) = value {
                f.push(flag.to_owned());
                f.push(format!("{}ms", d.as_millis()));
            }
        }
        f
    }
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            processes: 1,
            sse_keepalive: None,
            ws_ping_interval: None,
            cpu_quota: None,
        }
    }
}

/// `[network]`: the link each client connection goes through, emulated in
/// the load generator's sockets (this kernel has no netem): every chunk
/// waits half the round trip in each direction, plus or minus the jitter,
/// without reordering bytes; the bandwidth paces each direction of each
/// connection; a connection's setup pays one round trip. All zero (the
/// default): loopback as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Round-trip time added to loopback's own.
    #[serde(with = "humantime_serde", default)]
    pub rtt: Duration,
    /// Each chunk's one-way delay varies uniformly by up to this much
    /// either way (at most half the round trip).
    #[serde(with = "humantime_serde", default)]
    pub jitter: Duration,
    /// Bandwidth of each direction of each connection: `"unlimited"`, or a
    /// rate such as `"1Mbit"`, `"256kbit"`, `"10Mbit/s"` (bits per second;
    /// k, M and G are powers of 1,000).
    #[serde(default = "defaults::bandwidth")]
    pub bandwidth: String,
    /// Cut each client's connections at random times, this far apart on
    /// average (exponential gaps, seeded by the scenario's seed and the
    /// client): the client then resumes as real ones do, from the last
    /// message it saw. None (the default): no drops.
    #[serde(with = "humantime_serde", default)]
    pub drop_every: Option<Duration>,
    /// How long a client stays offline after each drop before it
    /// reconnects.
    #[serde(with = "humantime_serde", default)]
    pub drop_for: Duration,
    /// Where the link is emulated: `"socket"` (the default: in the load
    /// generator's sockets, above TCP) or `"packet"` (IP packets between
    /// TUN devices, below the kernel's TCP; needs root).
    #[serde(default, skip_serializing_if = "NetworkMode::is_socket")]
    pub mode: NetworkMode,
    /// Packet mode: the share of packets lost each way (0 to 0.5).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub loss: f64,
    /// Packet mode: the mean number of packets lost in a row; above 1,
    /// losses come in bursts (a Gilbert-Elliott chain), at 1 (the
    /// default) each packet is lost on its own.
    #[serde(default = "defaults::loss_burst", skip_serializing_if = "is_one")]
    pub loss_burst: f64,
    /// Packet mode: the bottleneck queue of each direction holds at most
    /// this many bytes (drop-tail). None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_bytes: Option<u64>,
    /// Packet mode: the bottleneck queue of each direction holds at most
    /// this many packets (drop-tail), as Mahimahi's `--uplink-queue-args
    /// packets=N` does. None: no limit. Not with `queue_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_packets: Option<u64>,
    /// Packet mode: the uplink's capacity follows this Mahimahi trace
    /// (a path relative to the scenario file) instead of `bandwidth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_up: Option<String>,
    /// Packet mode: the downlink's trace, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_down: Option<String>,
    /// Packet mode: the uplink's one-way delay, when the round trip is not
    /// split evenly (a cellular uplink is often the slower half); the
    /// downlink's is `rtt` less this. None: half the round trip each way.
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delay_up: Option<Duration>,
    /// Packet mode: the jitter may reorder packets, as netem's does (a
    /// packet whose delay drew short overtakes one that drew long). false
    /// (the default): jitter never reorders.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reorder: bool,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// Where `[network]`'s link is emulated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// In the load generator's sockets, above TCP.
    #[default]
    Socket,
    /// IP packets between TUN devices, below the kernel's TCP.
    Packet,
}

impl NetworkMode {
    /// True for the default, socket mode (which run.json leaves out).
    pub fn is_socket(&self) -> bool {
        *self == NetworkMode::Socket
    }
}

impl Default for Network {
    fn default() -> Network {
        Network {
            rtt: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: defaults::bandwidth(),
            drop_every: None,
            drop_for: Duration::ZERO,
            mode: NetworkMode::Socket,
            loss: 0.0,
            loss_burst: defaults::loss_burst(),
            queue_bytes: None,
            queue_packets: None,
            trace_up: None,
            trace_down: None,
            delay_up: None,
            reorder: false,
        }
    }
}

impl Network {
    /// The one-way delays (up, down): `delay_up` and the rest of the round
    /// trip, or half of it each way.
    pub fn delays(&self) -> (Duration, Duration) {
        match self.delay_up {
            Some(up) => (up, self.rtt.saturating_sub(up)),
            None => (self.rtt / 2, self.rtt - self.rtt / 2),
        }
    }

    /// True when the packet-level link may drop packets: loss, a bounded
    /// queue, or a trace (whose queue is bounded too).
    pub fn drops_packets(&self) -> bool {
        self.mode == NetworkMode::Packet
            && (self.loss > 0.0
                || self.queue_bytes.is_some()
                || self.queue_packets.is_some()
                || self.trace_up.is_some()
                || self.trace_down.is_some())
    }

    /// Bits per second, None for unlimited.
    pub fn bandwidth_bps(&self) -> Result<Option<u64>, String> {
        parse_bandwidth(&self.bandwidth)
    }

    /// True when the link changes nothing (no delay, no limit; drops are
    /// not the link's).
    pub fn is_loopback(&self) -> bool {
        self.mode == NetworkMode::Socket
            && self.rtt.is_zero()
            && self.jitter.is_zero()
            && matches!(self.bandwidth_bps(), Ok(None))
    }
}

/// `[limits]`: when a side (the load generator or the server) ran out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Flag `saturated` when the p99 of send lag exceeds this.
    #[serde(with = "humantime_serde", default = "defaults::send_lag_p99")]
    pub send_lag_p99: Duration,
    /// Flag `saturated` when the load generator uses more than this share of
    /// the CPUs it may run on (0..1).
    #[serde(default = "defaults::loadgen_cpu")]
    pub loadgen_cpu: f64,
    /// Flag `saturated` when the server (all its processes) uses more than
    /// this share of the CPUs it may run on (0..1), in the measured window.
    #[serde(default = "defaults::server_cpu")]
    pub server_cpu: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            send_lag_p99: defaults::send_lag_p99(),
            loadgen_cpu: defaults::loadgen_cpu(),
            server_cpu: defaults::server_cpu(),
        }
    }
}

mod defaults {
    use super::Arrival;
    use std::time::Duration;
    pub fn loss_burst() -> f64 {
        1.0
    }
    pub fn bandwidth() -> String {
        "unlimited".into()
    }
    pub fn warmup() -> Duration {
        Duration::from_secs(2)
    }
    pub fn grace() -> Duration {
        Duration::from_secs(2)
    }
    pub fn ramp() -> Duration {
        Duration::from_secs(1)
    }
    pub fn processes() -> u32 {
        1
    }
    pub fn source_addresses() -> u32 {
        1
    }
    pub fn server_cpu() -> f64 {
        0.9
    }
    pub fn loadgen_cpu() -> f64 {
        0.9
    }
    pub fn send_lag_p99() -> Duration {
        Duration::from_millis(20)
    }
    pub fn seed() -> u64 {
        1
    }
    pub fn repeat() -> u32 {
        1
    }
    pub fn arrival() -> Arrival {
        Arrival::Poisson
    }
    pub fn burst_size() -> u32 {
        10
    }
    pub fn body_bytes() -> usize {
        64
    }
}

/// A scenario file that could not be used: where, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted field path, when known (`messages.rate`).
    pub field: Option<String>,
    /// The command-line flag that set the field, when one did.
    pub flag: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        if let Some(flag) = &self.flag {
            write!(f, " (set by {flag})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The most connections one process may hold (open-file limit 20,000, less
/// room for the runtime, files and the control connection).
pub const MAX_CONNECTIONS_PER_PROCESS: u64 = 19_000;

/// The most client source addresses, 127.0.0.1 to 127.0.0.254.
pub const MAX_SOURCE_ADDRESSES: u32 = 254;

/// The most load-generator processes a scenario may ask for.
pub const MAX_PROCESSES: u32 = 64;

/// The least `server.cpu_quota`, in CPUs: 1 ms in each 10 ms period, the
/// least quota the kernel takes.
pub const MIN_CPU_QUOTA: f64 = 0.1;

/// Values given on the command line in place of the scenario's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--transports`.
    pub transports: Option<Vec<Transport>>,
    /// `--repeat`.
    pub repeat: Option<u32>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--duration`.
    pub duration: Option<Duration>,
}

impl Overrides {
    /// The flag that sets scenario field `field`, if any.
    fn flag_of(&self, field: &str) -> Option<&'static str> {
        match field {
            "transports" if self.transports.is_some() => Some("--transports"),
            "repeat" if self.repeat.is_some() => Some("--repeat"),
            "seed" if self.seed.is_some() => Some("--seed"),
            "duration" if self.duration.is_some() => Some("--duration"),
            _ => None,
        }
    }
}

/// A check of a scenario: the field at fault and why.
type Check = Result<(), (&'static str, String)>;

impl Scenario {
    /// Applies command-line overrides and validates the result exactly as a
    /// scenario file's fields are validated, with the same messages; an
    /// error names the flag and the field it sets.
    pub fn with_overrides(mut self, o: &Overrides, path: &Path) -> Result<Scenario, ScenarioError> {
        if let Some(t) = &o.transports {
            self.transports = t.clone();
        }
        if let Some(r) = o.repeat {
            self.repeat = r;
        }
        if let Some(s) = o.seed {
            self.seed = s;
        }
        if let Some(d) = o.duration {
            self.duration = d;
        }
        let err = |field: &str, message: String| ScenarioError {
            file: path.to_owned(),
            line: None,
            field: Some(field.to_owned()),
            flag: o.flag_of(field).map(str::to_owned),
            message,
        };
        self.validate()
            .map_err(|(field, message)| err(field, message))?;
        for i in 0..self.points() {
            self.at_point(i)
                .map_err(|message| err("sweep.values", message))?;
        }
        Ok(self)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let src = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_owned(),
            line: None,
            field: None,
            flag: None,
            message: format!("cannot read: {e}"),
        })?;
        Scenario::parse(&src, path)
    }

    /// Parses and validates scenario text; `path` is used in errors.
    pub fn parse(src: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let err = |line, field: Option<String>, message: String| ScenarioError {
            file: path.to_owned(),
            line,
            field,
            flag: None,
            message,
        };
        let de = toml::de::Deserializer::parse(src).map_err(|e| {
            err(
                e.span().map(|s| line_of_offset(src, s.start)),
                None,
                e.message().trim().to_owned(),
            )
        })?;
        let mut scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.inner();
            let line = inner
                .span()
                .map(|s| line_of_offset(src, s.start))
                .or_else(|| line_of_field(src, &field));
            // An error about the whole document (a missing top-level field)
            // has no line worth naming.
            let (line, field) = if field == "." {
                (None, None)
            } else {
                (line, Some(field))
            };
            err(line, field, inner.message().trim().to_owned())
        })?;
        // Trace paths are written relative to the scenario file.
        let dir = path.parent().unwrap_or(Path::new(""));
        for p in [
            &mut scenario.network.trace_up,
            &mut scenario.network.trace_down,
        ]
        .into_iter()
        .flatten()
        {
            if Path::new(p.as_str()).is_relative() {
                *p = dir.join(p.as_str()).to_string_lossy().into_owned();
            }
        }
        scenario.validate().map_err(|(field, message)| {
            err(line_of_field(src, field), Some(field.to_owned()), message)
        })?;
        if let Some(sweep) = &scenario.sweep {
            if sweep.values.is_empty() {
                return Err(err(
                    line_of_field(src, "sweep.values"),
                    Some("sweep.values".into()),
                    "must list at least one value".into(),
                ));
            }
            for i in 0..sweep.values.len() {
                if let Err(message) = scenario.at_point(i) {
                    let line = line_of_field(src, &format!("sweep.values.{i}"));
                    return Err(err(line, Some(format!("sweep.values[{i}]")), message));
                }
            }
        }
        if let Some(search) = &scenario.search {
            if let Err(message) = scenario.at_search_value(search.start) {
                let line = line_of_field(src, "search.start");
                return Err(err(line, Some("search.start".into()), message));
            }
        }
        for (i, table) in scenario.expect.iter().enumerate() {
            if let Err((field, message)) = crate::rules::Rule::from_table(table) {
                let line = line_of_field(src, &format!("expect.{i}.{field}"));
                return Err(err(line, Some(format!("expect[{i}].{field}")), message));
            }
        }
        Ok(scenario)
    }

    /// Checks every table in the order a reader meets them; the first
    /// problem is returned as (field, message).
    fn validate(&self) -> Check {
        self.validate_top()?;
        self.validate_clients()?;
        self.validate_messages()?;
        self.validate_polls()?;
        self.validate_network()?;
        self.validate_protocol()?;
        self.validate_limits()?;
        self.energy.check()?;
        self.validate_target()?;
        self.validate_path()?;
        self.validate_search()
    }

    fn validate_search(&self) -> Check {
        let Some(search) = &self.search else {
            return Ok(());
        };
        search.check()?;
        if self.repeat != 1 {
            return Err((
                "repeat",
                format!("must be 1 with [search], got {}: each step runs once; run the search again to see the spread", self.repeat),
            ));
        }
        if self.sweep.is_some() {
            return Err((
                "search",
                "a scenario with [search] cannot also have [sweep]: the search sets the swept value".into(),
            ));
        }
        Ok(())
    }

    /// `[path]`: a proxy goes in front of one server process chatbench
    /// spawns, on loopback, for chatbench's own contract; HTTP/2 to it
    /// comes with TLS, which it terminates.
    fn validate_path(&self) -> Check {
        for (field, value) in [
            ("server.sse_keepalive", self.server.sse_keepalive),
            ("server.ws_ping_interval", self.server.ws_ping_interval),
        ] {
            if value.is_some_and(|d| d < Duration::from_millis(1) || d > MAX_PHASE) {
                return Err((field, "must be between 1ms and 1h".into()));
            }
            if value.is_some() && self.target.server != crate::target::ServerKind::Chatbench {
                return Err((
                    field,
                    "sets chatbench's server; the target's server is another".into(),
                ));
            }
        }
        if self.path.is_direct() {
            if self.path.timeout.is_some() {
                return Err(("path.timeout", "needs a path.proxy".into()));
            }
            return Ok(());
        }
        let refuse = |why: &str| {
            Err((
                "path.proxy",
                format!("{why}, which a proxy is not run with yet"),
            ))
        };
        if self.server.processes > 1 {
            return refuse("needs one server process (server.processes = 1)");
        }
        if self.network.mode == NetworkMode::Packet {
            return refuse(
                "is on loopback: network.mode = \"packet\" puts the server in another namespace",
            );
        }
        if self.protocol.is_http2() && !self.protocol.tls {
            return refuse(
                "speaks HTTP/2 only over TLS, as browsers do (protocol.http = \"2\" needs protocol.tls = true)",
            );
        }
        if !self.target.is_chatbench() || self.target.server != crate::target::ServerKind::Chatbench
        {
            return refuse("stands in front of chatbench's own server (target)");
        }
        if self
            .path
            .timeout
            .is_some_and(|t| t < Duration::from_secs(1))
        {
            return Err(("path.timeout", "must be at least 1s".into()));
        }
        Ok(())
    }

    /// `[target]`: what the profile runs, and the features only
    /// chatbench's server and contract have.
    fn validate_target(&self) -> Check {
        let chatbench_only = if self.protocol.is_http2() {
            Some("HTTP/2 (protocol.http = \"2\")")
        } else if self.protocol.is_http3() {
            Some("HTTP/3 (protocol.http = \"3\")")
        } else if self.protocol.tls {
            Some("TLS (protocol.tls)")
        } else if self.network.drop_every.is_some() {
            Some("resuming after a drop (network.drop_every)")
        } else if self.server.processes > 1 {
            Some("sharing rooms between server processes (server.processes)")
        } else {
            None
        };
        self.target.validate(&self.transports, chatbench_only)
    }

    /// The transports run (the target's list when it has one).
    pub fn run_transports(&self) -> &[Transport] {
        self.target.transports(&self.transports)
    }

    /// The scenario's own fields: name, transports, phases, repetitions.
    fn validate_top(&self) -> Check {
        let c = &self.clients;
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err((
                "name",
                format!(
                    "must be non-empty and use only A-Z, a-z, 0-9, '-' and '_', got {:?}",
                    self.name
                ),
            ));
        }
        if self.transports.is_empty() {
            return Err(("transports", "must name at least one transport".into()));
        }
        for (i, t) in self.transports.iter().enumerate() {
            if self.transports[..i].contains(t) {
                return Err(("transports", format!("names {} twice", t.as_str())));
            }
        }
        if self.duration.is_zero() {
            return Err(("duration", "must be longer than 0s".into()));
        }
        // Bounds that keep every instant the run computes representable,
        // and a run within a day per repetition.
        for (field, value, max) in [
            ("duration", self.duration, MAX_DURATION),
            ("warmup", self.warmup, MAX_PHASE),
            ("grace", self.grace, MAX_PHASE),
            ("clients.ramp", c.ramp, MAX_PHASE),
            ("short_poll.interval", self.short_poll.interval, MAX_PHASE),
        ] {
            if value > max {
                return Err((
                    field,
                    format!(
                        "must be at most {}, got {}",
                        humantime::format_duration(max),
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
        if self.repeat == 0 || self.repeat > MAX_REPEAT {
            return Err((
                "repeat",
                format!("must be between 1 and {MAX_REPEAT}, got {}", self.repeat),
            ));
        }
        Ok(())
    }

    /// `[clients]` and `[server]`: room sizes, processes, and the connections each process must hold.
    fn validate_clients(&self) -> Check {
        let c = &self.clients;
        if c.rooms == 0 {
            return Err(("clients.rooms", "must be at least 1".into()));
        }
        if c.clients_per_room == 0 {
            return Err(("clients.clients_per_room", "must be at least 1".into()));
        }
        if c.senders_per_room > c.clients_per_room {
            return Err((
                "clients.senders_per_room",
                format!(
                    "is {} but a room has only {} clients",
                    c.senders_per_room, c.clients_per_room
                ),
            ));
        }
        if !(1..=MAX_PROCESSES).contains(&c.processes) {
            return Err((
                "clients.processes",
                format!("must be 1 to {MAX_PROCESSES}, got {}", c.processes),
            ));
        }
        let conns = self.connections_needed();
        let per_process = conns.div_ceil(c.processes as u64);
        if per_process > MAX_CONNECTIONS_PER_PROCESS {
            return Err((
                "clients.clients_per_room",
                format!(
                    "the scenario needs up to {conns} connections, {per_process} for each of {} load-generator processes; one process can hold {MAX_CONNECTIONS_PER_PROCESS} (open-file limit 20,000): raise clients.processes",
                    c.processes
                ),
            ));
        }
        if !(1..=MAX_SOURCE_ADDRESSES).contains(&c.source_addresses) {
            return Err((
                "clients.source_addresses",
                format!(
                    "must be 1 to {MAX_SOURCE_ADDRESSES} (127.0.0.1 up to 127.0.0.{MAX_SOURCE_ADDRESSES}), got {}",
                    c.source_addresses
                ),
            ));
        }
        if !(1..=MAX_PROCESSES).contains(&self.server.processes) {
            return Err((
                "server.processes",
                format!(
                    "must be 1 to {MAX_PROCESSES}, got {}",
                    self.server.processes
                ),
            ));
        }
        if let Some(q) = self.server.cpu_quota {
            if !(MIN_CPU_QUOTA..=MAX_PROCESSES as f64).contains(&q) {
                return Err((
                    "server.cpu_quota",
                    format!("must be {MIN_CPU_QUOTA} to {MAX_PROCESSES} CPUs, got {q}"),
                ));
            }
        }
        // Each server process holds its rooms' connections, within its
        // open-file limit.
        let busiest = self.busiest_server_connections();
        if busiest > MAX_CONNECTIONS_PER_PROCESS {
            let k = self.server.processes;
            return Err((
                if k == 1 {
                    "clients.clients_per_room"
                } else {
                    "server.processes"
                },
                if k == 1 {
                    format!(
                        "the scenario needs up to {conns} connections; one server process can hold {MAX_CONNECTIONS_PER_PROCESS} (open-file limit 20,000): raise server.processes"
                    )
                } else {
                    format!(
                        "the scenario needs up to {conns} connections, and the busiest of {k} server processes may get {busiest} (rooms are placed by hash: mean plus four standard deviations); one process can hold {MAX_CONNECTIONS_PER_PROCESS} (open-file limit 20,000): raise server.processes"
                    )
                },
            ));
        }
        Ok(())
    }

    /// `[messages]`.
    fn validate_messages(&self) -> Check {
        let m = &self.messages;
        if !(m.rate.is_finite() && m.rate > 0.0 && m.rate <= MAX_RATE) {
            return Err((
                "messages.rate",
                format!(
                    "must be a number above 0 and at most {MAX_RATE} per sender per second, got {}",
                    if m.rate.abs() >= 1e9 {
                        format!("{:e}", m.rate)
                    } else {
                        m.rate.to_string()
                    }
                ),
            ));
        }
        if m.arrival == Arrival::Burst && !(1..=MAX_BURST).contains(&m.burst_size) {
            return Err((
                "messages.burst_size",
                format!("must be between 1 and {MAX_BURST}, got {}", m.burst_size),
            ));
        }
        if m.body_bytes > 60_000 {
            return Err((
                "messages.body_bytes",
                format!(
                    "must be at most 60000 (the server's body limit is 64 KiB), got {}",
                    m.body_bytes
                ),
            ));
        }
        Ok(())
    }

    /// `[short_poll]` and `[long_poll]`.
    fn validate_polls(&self) -> Check {
        let iv = self.short_poll.interval;
        if !iv.is_zero() && iv < Duration::from_millis(1) {
            return Err((
                "short_poll.interval",
                "must be at least 1ms, or 0s for back-to-back polls".into(),
            ));
        }
        if self.long_poll.wait > Duration::from_secs(120) {
            return Err((
                "long_poll.wait",
                "must be at most 120s (the server's limit)".into(),
            ));
        }
        Ok(())
    }

    /// `[network]`.
    fn validate_network(&self) -> Check {
        if let Err(m) = self.network.bandwidth_bps() {
            return Err(("network.bandwidth", m));
        }
        if self.network.rtt > Duration::from_secs(10) {
            return Err((
                "network.rtt",
                format!("must be at most 10s, got {:?}", self.network.rtt),
            ));
        }
        if let Some(up) = self.network.delay_up.filter(|&up| up > self.network.rtt) {
            return Err((
                "network.delay_up",
                format!(
                    "must be at most network.rtt ({:?}): the downlink's delay is the rest of the round trip; got {up:?}",
                    self.network.rtt
                ),
            ));
        }
        let (up, down) = self.network.delays();
        if self.network.delay_up.is_some() && self.network.jitter > up.min(down) {
            return Err((
                "network.jitter",
                format!(
                    "must be at most the shorter one-way delay ({:?}), so no delay goes below zero; got {:?}",
                    up.min(down),
                    self.network.jitter
                ),
            ));
        }
        if self.network.jitter * 2 > self.network.rtt {
            return Err((
                "network.jitter",
                format!(
                    "must be at most half of network.rtt ({:?}), so no one-way delay goes below zero; got {:?}",
                    self.network.rtt / 2,
                    self.network.jitter
                ),
            ));
        }
        if let Some(every) = self.network.drop_every {
            if every < Duration::from_millis(100) {
                return Err((
                    "network.drop_every",
                    format!("must be at least 100ms, got {every:?}"),
                ));
            }
            if self.network.drop_for >= every {
                return Err((
                    "network.drop_for",
                    format!(
                        "must be shorter than network.drop_every ({every:?}), got {:?}",
                        self.network.drop_for
                    ),
                ));
            }
        } else if !self.network.drop_for.is_zero() {
            return Err((
                "network.drop_for",
                "needs network.drop_every: how often the connections drop".into(),
            ));
        }
        self.validate_packet_link()
    }

    /// `[network]`'s packet-mode fields.
    fn validate_packet_link(&self) -> Check {
        let n = &self.network;
        if !(n.loss.is_finite() && (0.0..=0.5).contains(&n.loss)) {
            return Err((
                "network.loss",
                format!("must be a share from 0 to 0.5, got {}", n.loss),
            ));
        }
        if !(n.loss_burst.is_finite() && (1.0..=1000.0).contains(&n.loss_burst)) {
            return Err((
                "network.loss_burst",
                format!(
                    "must be a mean burst length from 1 (losses on their own) to 1000 packets, got {}",
                    n.loss_burst
                ),
            ));
        }
        if n.queue_packets == Some(0) {
            return Err((
                "network.queue_packets",
                "must hold at least one packet".into(),
            ));
        }
        if n.queue_bytes.is_some() && n.queue_packets.is_some() {
            return Err((
                "network.queue_packets",
                "is set with network.queue_bytes; a queue is limited in bytes or in packets, not both".into(),
            ));
        }
        if n.queue_bytes.is_some_and(|q| q < 1500) {
            return Err((
                "network.queue_bytes",
                "must hold at least one 1500-byte packet".into(),
            ));
        }
        for (field, path) in [
            ("network.trace_up", &n.trace_up),
            ("network.trace_down", &n.trace_down),
        ] {
            if let Some(p) = path {
                crate::trace::Trace::read(Path::new(p)).map_err(|m| (field, m))?;
            }
        }
        if n.reorder && n.jitter.is_zero() {
            return Err((
                "network.reorder",
                "needs network.jitter: packets reorder when their delays vary".into(),
            ));
        }
        if n.mode == NetworkMode::Packet {
            if self.clients.source_addresses > 1 {
                return Err((
                    "clients.source_addresses",
                    "must be 1 with network.mode = \"packet\": the clients have one address, in their own network namespace".into(),
                ));
            }
            return Ok(());
        }
        let lose_or_queue = "needs network.mode = \"packet\": the socket-level link has no packets to lose or queue";
        let packet_only = [
            ("network.loss", n.loss != 0.0, lose_or_queue),
            ("network.loss_burst", n.loss_burst != 1.0, lose_or_queue),
            ("network.queue_bytes", n.queue_bytes.is_some(), lose_or_queue),
            ("network.queue_packets", n.queue_packets.is_some(), lose_or_queue),
            ("network.trace_up", n.trace_up.is_some(), lose_or_queue),
            ("network.trace_down", n.trace_down.is_some(), lose_or_queue),
            ("network.delay_up", n.delay_up.is_some(), "needs network.mode = \"packet\": the socket-level link delays each direction by half the round trip"),
            ("network.reorder", n.reorder, "needs network.mode = \"packet\": the socket-level link hands over a connection's bytes in order"),
        ];
        match packet_only.iter().find(|(_, set, _)| *set) {
            Some((field, _, why)) => Err((field, (*why).into())),
            None => Ok(()),
        }
    }

    /// Why something that runs over QUIC (HTTP/3, WebTransport) cannot run
    /// in this scenario, if it cannot: `what` is how the reason starts,
    /// `encrypted` why it needs TLS, `goes` what reaches the server.
    fn quic_refusal(&self, what: &str, encrypted: &str, goes: &str) -> Option<String> {
        let n = &self.network;
        if !self.protocol.tls {
            Some(format!("{what} without protocol.tls = true: {encrypted}"))
        } else if n.drop_every.is_some() {
            Some(format!("{what} with network.drop_every, which chatbench does not run: connections are dropped over HTTP/1.1"))
        } else if n.mode == NetworkMode::Socket && !n.is_loopback() {
            Some(format!("{what} with the socket-level link, which emulates above TCP while QUIC runs over UDP: give network.mode = \"packet\""))
        } else if !self.path.is_direct() {
            Some(format!("{what} through a proxy, which chatbench does not run: {goes} to chatbench's server directly"))
        } else {
            None
        }
    }

    /// `[protocol]`, and what it cannot be run with.
    fn validate_protocol(&self) -> Check {
        if self.protocol.cookie_bytes > 4096 {
            return Err((
                "protocol.cookie_bytes",
                format!(
                    "must be at most 4096 (a browser's limit for one cookie), got {}",
                    self.protocol.cookie_bytes
                ),
            ));
        }
        if self.protocol.cookie_bytes > 0 && self.protocol.headers != HeaderProfile::Browser {
            return Err((
                "protocol.cookie_bytes",
                "needs protocol.headers = \"browser\": the minimal headers carry no cookie".into(),
            ));
        }
        if self.run_transports().contains(&Transport::WebTransport) {
            if let Some(why) = self.quic_refusal(
                "include webtransport",
                "WebTransport runs over HTTP/3, which is always encrypted",
                "WebTransport goes",
            ) {
                return Err(("transports", why));
            }
        }
        if self.protocol.is_http3() {
            if let Some(why) = self.quic_refusal(
                "is \"3\"",
                "QUIC is always encrypted, so HTTP/3 needs protocol.tls = true",
                "HTTP/3 goes",
            ) {
                return Err(("protocol.http", why));
            }
        }
        if self.network.drop_every.is_some() && self.protocol.is_http2() {
            return Err((
                "protocol.http",
                "is \"2\" with network.drop_every, which chatbench does not run: an HTTP/2 server drops the frames it has queued when a cut connection's FIN arrives, so its count of messages delivered could not match what arrived, and a WebSocket frame the stream took may not have reached the socket at the cut (run drops over HTTP/1.1)".into(),
            ));
        }
        Ok(())
    }

    /// `[limits]`.
    fn validate_limits(&self) -> Check {
        if !(self.limits.server_cpu > 0.0 && self.limits.server_cpu <= 1.0) {
            return Err((
                "limits.server_cpu",
                format!("must be in (0, 1], got {}", self.limits.server_cpu),
            ));
        }
        if !(self.limits.loadgen_cpu > 0.0 && self.limits.loadgen_cpu <= 1.0) {
            return Err((
                "limits.loadgen_cpu",
                format!("must be in (0, 1], got {}", self.limits.loadgen_cpu),
            ));
        }
        Ok(())
    }

    /// Sweep points (1 without a sweep).
    pub fn points(&self) -> usize {
        self.sweep.as_ref().map_or(1, |s| s.values.len())
    }

    /// The value of sweep point `i` as written (None without a sweep).
    pub fn point_label(&self, i: usize) -> Option<String> {
        let v = self.sweep.as_ref()?.values.get(i)?;
        Some(match v {
            toml::Value::String(s) => s.clone(),
            // A whole `[protocol]` table: its short name.
            toml::Value::Table(t) => match t.clone().try_into::<Protocol>() {
                Ok(p) => p.label(),
                // A whole `[target]` or `[path]` table: its short name.
                Err(_) => match t.clone().try_into::<Target>() {
                    Ok(target) => target.label(),
                    Err(_) => match t.clone().try_into::<crate::path::Path>() {
                        Ok(path) => path.label(),
                        Err(_) => v.to_string(),
                    },
                },
            },
            other => other.to_string(),
        })
    }

    /// The scenario at sweep point `i`: the swept field set to its value,
    /// validated, with no sweep of its own. Without a sweep, a copy.
    pub fn at_point(&self, i: usize) -> Result<Scenario, String> {
        let Some(sweep) = &self.sweep else {
            return Ok(self.clone());
        };
        let value = sweep
            .values
            .get(i)
            .ok_or_else(|| format!("no sweep point {i}"))?
            .clone();
        let mut base = self.clone();
        base.sweep = None;
        let mut doc = toml::Value::try_from(&base).map_err(|e| e.to_string())?;
        let not_a_field = || {
            format!(
                "sweep.parameter `{}` is not a field of this scenario",
                sweep.parameter
            )
        };
        let (tables, last) = match sweep.parameter.rsplit_once('.') {
            Some((tables, last)) => (Some(tables), last),
            None => (None, sweep.parameter.as_str()),
        };
        let mut slot = &mut doc;
        let mut absent = false;
        for part in tables.into_iter().flat_map(|t| t.split('.')) {
            // A table left out at its defaults (`[webtransport]`) is made.
            let table = slot.as_table_mut().ok_or_else(not_a_field)?;
            absent |= !table.contains_key(part);
            slot = table
                .entry(part)
                .or_insert_with(|| toml::Value::Table(Default::default()));
        }
        // The field itself may be absent: run.json leaves some out at their
        // defaults (`network.mode`). A name the scenario does not know is
        // refused when it is read back.
        let table = slot.as_table_mut().ok_or_else(not_a_field)?;
        absent |= !table.contains_key(last);
        table.insert(last.to_owned(), value);
        let at: Scenario = doc.try_into().map_err(|e: toml::de::Error| {
            if absent {
                not_a_field()
            } else {
                format!("`{}`: {}", sweep.parameter, e.message().trim())
            }
        })?;
        at.validate()
            .map_err(|(field, m)| format!("at this value, `{field}` {m}"))?;
        Ok(at)
    }

    /// The scenario at a capacity search's step: `[search] parameter` set
    /// to `value` (whole for a count), validated, as a one-point sweep so
    /// that the step's run is labelled with its value; no `[search]`.
    pub fn at_search_value(&self, value: f64) -> Result<Scenario, String> {
        let search = self.search.as_ref().ok_or("the scenario has no [search]")?;
        let v = if search.integer() {
            toml::Value::Integer(value.round() as i64)
        } else {
            toml::Value::Float(value)
        };
        let sweep = Sweep {
            parameter: search.parameter.clone(),
            values: vec![v],
        };
        let mut base = self.clone();
        base.search = None;
        base.sweep = Some(sweep.clone());
        let mut at = base.at_point(0)?;
        at.sweep = Some(sweep);
        Ok(at)
    }

    /// Clients in the whole scenario.
    pub fn total_clients(&self) -> u64 {
        self.clients.rooms as u64 * self.clients.clients_per_room as u64
    }

    /// Senders in the whole scenario.
    pub fn total_senders(&self) -> u64 {
        self.clients.rooms as u64 * self.clients.senders_per_room as u64
    }

    /// Connections the busiest transport needs: HTTP senders keep a second
    /// connection for publishing.
    pub fn connections_needed(&self) -> u64 {
        self.total_clients() + self.total_senders()
    }

    /// Connections the busiest of the server processes may hold. Rooms go
    /// to processes by a hash of their names, so a process's share of `n`
    /// rooms is binomial; this bounds it at the mean plus four standard
    /// deviations (exceeded with a chance below 1 in 30,000 per process),
    /// and is exact for one process.
    pub fn busiest_server_connections(&self) -> u64 {
        let k = self.server.processes.max(1) as f64;
        let n = self.clients.rooms as f64;
        let p = 1.0 / k;
        let rooms = if k <= 1.0 {
            n
        } else {
            (n * p + 4.0 * (n * p * (1.0 - p)).sqrt()).ceil().min(n)
        };
        // An Engine.IO polling client holds two connections (its GET and
        // its POSTs), whether it sends or not, and so does an upgrading one
        // until its WebSocket is up.
        let polls_twice = self.target.profile == crate::target::Profile::Socketio
            && (self.target.upgrade || self.run_transports().contains(&Transport::LongPoll));
        let per_room = if polls_twice {
            2 * self.clients.clients_per_room as u64
        } else {
            self.clients.clients_per_room as u64 + self.clients.senders_per_room as u64
        };
        rooms as u64 * per_room
    }
}

fn line_of_offset(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

/// The line where a dotted field (or its table) is written, if it is.
fn line_of_field(src: &str, field: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(src).ok()?;
    let mut parts = field.split('.');
    let first = parts.next()?;
    let mut cur = root.get_ref().get(first)?;
    let mut span = cur.span();
    for p in parts {
        let next = match p.parse::<usize>() {
            Ok(i) => cur.get_ref().get(i),
            Err(_) => cur.get_ref().get(p),
        };
        let Some(next) = next else {
            break;
        };
        cur = next;
        span = cur.span();
    }
    Some(line_of_offset(src, span.start))
}

/// The longest measured window of one repetition.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The longest warm-up, grace, ramp or short-poll interval.
pub const MAX_PHASE: Duration = Duration::from_secs(3600);
/// The most repetitions.
pub const MAX_REPEAT: u32 = 1000;
/// The highest message rate per sender: one message per microsecond, the
/// resolution of `sent_at`.
pub const MAX_RATE: f64 = 1e6;
/// The largest burst.
pub const MAX_BURST: u32 = 1_000_000;

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = r#"name = "p"
transports = ["sse"]
duration = "5s"
warmup = "1s"
repeat = 1

[clients]
rooms = 2
clients_per_room = 3
senders_per_room = 1
ramp = "1s"

[messages]
rate = 2.5
arrival = "poisson"
body_bytes = 100
burst_size = 1

[short_poll]
interval = "100ms"

[long_poll]
wait = "30s"
"#;

    /// Every field of BASE, with the line it is on.
    fn fields() -> Vec<(String, usize)> {
        let mut table = String::new();
        let mut out = Vec::new();
        for (i, line) in BASE.lines().enumerate() {
            if let Some(t) = line.strip_prefix('[') {
                table = format!("{}.", t.trim_end_matches(']'));
            } else if let Some((k, _)) = line.split_once(" = ") {
                out.push((format!("{table}{k}"), i + 1));
            }
        }
        out
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| format!("{v:?}")),
            "[a-z0-9 ]{0,12}".prop_map(|v| format!("{v:?}")),
            (
                0u64..u64::MAX,
                prop::sample::select(vec!["ns", "ms", "s", "m", "h", "y"])
            )
                .prop_map(|(n, u)| format!("\"{n}{u}\"")),
            Just("[]".to_owned()),
            Just("true".to_owned()),
        ]
    }

    proptest! {
        /// Any text is a scenario or an error that names the file; nothing
        /// panics.
        #[test]
        fn any_text_loads_or_names_the_file(src in "[ -~\n]{0,300}") {
            if let Err(e) = Scenario::parse(&src, Path::new("x.toml")) {
                prop_assert!(e.to_string().starts_with("x.toml"));
            }
        }

        /// Setting any field to any value gives a valid scenario or an error
        /// that names that field and its line.
        #[test]
        fn a_bad_value_names_its_field_and_line(
            index in any::<prop::sample::Index>(),
            v in value(),
        ) {
            let fields = fields();
            let (field, line) = index.get(&fields).clone();
            let key = field.rsplit('.').next().unwrap_or(&field).to_owned();
            let src: String = BASE
                .lines()
                .enumerate()
                .map(|(i, l)| if i + 1 == line { format!("{key} = {v}\n") } else { format!("{l}\n") })
                .collect();
            match Scenario::parse(&src, Path::new("s.toml")) {
                Ok(s) => {
                    // Whatever was accepted is within the bounds the engine relies on.
                    prop_assert!(s.duration <= MAX_DURATION && s.warmup <= MAX_PHASE);
                    prop_assert!(s.repeat >= 1 && s.repeat <= MAX_REPEAT);
                    prop_assert!(s.messages.rate > 0.0 && s.messages.rate <= MAX_RATE);
                }
                Err(e) => {
                    prop_assert_eq!(e.field.as_deref(), Some(field.as_str()), "{}", e);
                    prop_assert_eq!(e.line, Some(line), "{}", e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
transports = ["short_poll", "websocket"]
duration = "5s"

[clients]
rooms = 2
clients_per_room = 3
senders_per_room = 1

[messages]
rate = 2.5
"#;

    fn parse(src: &str) -> Result<Scenario, String> {
        Scenario::parse(src, Path::new("s.toml")).map_err(|e| e.to_string())
    }

    /// `[energy]` overrides the radio model's parameters one by one, is
    /// left out of run.json at the paper's, and a bad one names its line.
    #[test]
    fn energy_overrides_the_radio_model_and_names_a_bad_field() {
        let s = parse(GOOD).unwrap();
        assert!(s.energy.is_default());
        assert!(!toml::to_string(&s).unwrap().contains("[energy]"));
        let s = parse(&format!(
            "{GOOD}\n[energy]\ntail = \"5s\"\ntail_mw = 800.0\n"
        ))
        .unwrap();
        assert_eq!(s.energy.tail, Duration::from_secs(5));
        assert_eq!(s.energy.tail_mw, 800.0);
        assert_eq!(s.energy.promotion_mw, 1210.7);
        let e = parse(&format!("{GOOD}\n[energy]\ntail = \"0s\"\n")).unwrap_err();
        assert_eq!(
            e,
            "s.toml:15: field `energy.tail`: must be above zero and at most 1h, got 0ns"
        );
        let e = parse(&format!("{GOOD}\n[energy]\ntail_mw = -1.0\n")).unwrap_err();
        assert_eq!(
            e,
            "s.toml:15: field `energy.tail_mw`: must be a number above zero, got -1"
        );
        let e = parse(&format!("{GOOD}\n[energy]\ntial = \"5s\"\n")).unwrap_err();
        assert!(
            e.starts_with("s.toml:15: field `energy.tial`: unknown field `tial`"),
            "{e}"
        );
    }

    #[test]
    fn a_proxy_is_checked_against_what_it_runs_with() {
        let with = |extra: &str| parse(&format!("{GOOD}\n[path]\nproxy = \"nginx\"\n{extra}"));
        // TLS ends at the proxy, over HTTP/1.1 or HTTP/2.
        let s = with("[protocol]\nhttp = \"2\"\ntls = true").unwrap();
        assert!(s.protocol.tls && !s.path.is_direct());
        with("[protocol]\ntls = true").unwrap();
        let e = with("[protocol]\nhttp = \"2\"").unwrap_err();
        assert!(
            e.contains("field `path.proxy`: speaks HTTP/2 only over TLS"),
            "{e}"
        );
        let e = with("[server]\nprocesses = 2").unwrap_err();
        assert!(
            e.contains("field `path.proxy`: needs one server process"),
            "{e}"
        );
        let e = with("timeout = \"500ms\"").unwrap_err();
        assert!(
            e.contains("field `path.timeout`: must be at least 1s"),
            "{e}"
        );
        let e = parse(&format!("{GOOD}\n[path]\ntimeout = \"5s\"")).unwrap_err();
        assert!(
            e.contains("field `path.timeout`: needs a path.proxy"),
            "{e}"
        );
    }

    #[test]
    fn parses_with_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(
            s.transports,
            vec![Transport::ShortPoll, Transport::WebSocket]
        );
        assert_eq!(s.duration, Duration::from_secs(5));
        assert_eq!(s.warmup, Duration::from_secs(2));
        assert_eq!(s.clients.ramp, Duration::from_secs(1));
        assert_eq!(s.messages.arrival, Arrival::Poisson);
        assert_eq!(s.short_poll.interval, Duration::from_secs(1));
        assert_eq!(s.long_poll.wait, Duration::from_secs(30));
        assert_eq!((s.total_clients(), s.total_senders()), (6, 2));
    }

    #[test]
    fn durations_are_human_readable() {
        let s = parse(&GOOD.replace("\"5s\"", "\"1m 30s\"").replace(
            "[messages]",
            "[short_poll]\ninterval = \"250ms\"\n[messages]",
        ))
        .unwrap();
        assert_eq!(s.duration, Duration::from_secs(90));
        assert_eq!(s.short_poll.interval, Duration::from_millis(250));
    }

    #[test]
    fn errors_name_the_field_and_the_line() {
        let cases: Vec<(String, &str)> = vec![
            (GOOD.replace("rate = 2.5", "rate = \"fast\""),
             "s.toml:12: field `messages.rate`: invalid type: string \"fast\", expected f64"),
            (GOOD.replace("rate = 2.5", "rate = 2.5\nrat = 1"),
             "s.toml:13: field `messages.rat`: unknown field `rat`, expected one of `rate`, `arrival`, `burst_size`, `body_bytes`"),
            (GOOD.replace("duration = \"5s\"", "duration = \"5 parsecs\""),
             "s.toml:4: field `duration`: invalid value: string \"5 parsecs\", expected a duration"),
            (GOOD.replace("\"websocket\"", "\"carrier_pigeon\""),
             "s.toml:3: field `transports[1]`: unknown variant `carrier_pigeon`, expected one of `short_poll`, `long_poll`, `sse`, `websocket`, `webtransport`"),
            (GOOD.replace("senders_per_room = 1", "senders_per_room = 4"),
             "s.toml:9: field `clients.senders_per_room`: is 4 but a room has only 3 clients"),
            (GOOD.replace("rate = 2.5", "rate = -1.0"),
             "s.toml:12: field `messages.rate`: must be a number above 0 and at most 1000000 per sender per second, got -1"),
            (GOOD.replace("\"websocket\"", "\"short_poll\""),
             "s.toml:3: field `transports`: names short_poll twice"),
            (GOOD.replace("rooms = 2", "rooms = 20000"),
             "s.toml:8: field `clients.clients_per_room`: the scenario needs up to 80000 connections, 80000 for each of 1 load-generator processes; one process can hold 19000 (open-file limit 20,000): raise clients.processes"),
            (GOOD.replace("rooms = 2", "rooms = 20000\nprocesses = 5"),
             "s.toml:9: field `clients.clients_per_room`: the scenario needs up to 80000 connections; one server process can hold 19000 (open-file limit 20,000): raise server.processes"),
            (GOOD.replace("rooms = 2", "rooms = 20000\nprocesses = 5") + "\n[server]\nprocesses = 4\n",
             "s.toml:16: field `server.processes`: the scenario needs up to 80000 connections, and the busiest of 4 server processes may get 20980 (rooms are placed by hash: mean plus four standard deviations); one process can hold 19000 (open-file limit 20,000): raise server.processes"),
            (GOOD.to_owned() + "\n[server]\nprocesses = 65\n",
             "s.toml:15: field `server.processes`: must be 1 to 64, got 65"),
            (GOOD.to_owned() + "\n[server]\ncpu_quota = 0.01\n",
             "s.toml:15: field `server.cpu_quota`: must be 0.1 to 64 CPUs, got 0.01"),
            (GOOD.replace("rooms = 2", "rooms = 2\nsource_addresses = 255"),
             "s.toml:8: field `clients.source_addresses`: must be 1 to 254 (127.0.0.1 up to 127.0.0.254), got 255"),
            (GOOD.replace("rooms = 2", "rooms = 2\nprocesses = 0"),
             "s.toml:8: field `clients.processes`: must be 1 to 64, got 0"),
            (GOOD.replace("duration = \"5s\"\n", ""),
             "s.toml: missing field `duration`"),
            (format!("{GOOD}\n[[expect]]\nmetric = \"lost\"\nmax = 0\n\n[[expect]]\nmetric = \"lost\"\nmax = \"1s\"\n"),
             "s.toml:20: field `expect[1].max`: \"1s\" is a duration, but lost is not a latency"),
            (GOOD.replace("[clients]", "[clients"),
             "s.toml:6: unclosed table, expected `]`"),
            (GOOD.replace("duration = \"5s\"", "duration = \"400000000000y\""),
             "s.toml:4: field `duration`: must be at most 1day, got 400000000000years"),
            (GOOD.replace("duration = \"5s\"", "duration = \"5s\"\nwarmup = \"1000y\""),
             "s.toml:5: field `warmup`: must be at most 1h, got 1000years"),
            (GOOD.replace("rate = 2.5", "rate = 1e300"),
             "s.toml:12: field `messages.rate`: must be a number above 0 and at most 1000000 per sender per second, got 1e300"),
        ];
        for (src, want) in cases {
            assert_eq!(parse(&src).unwrap_err(), want);
        }
    }

    #[test]
    fn targets_are_validated_with_the_file_line_and_field() {
        let parse = |extra: &str| {
            let src = format!("{GOOD}\n{extra}\n").replace("\"short_poll\", ", "");
            Scenario::parse(&src, Path::new("s.toml")).map_err(|e| e.to_string())
        };
        let generic = "[target]\nprofile = \"generic\"\nserver = \"ws-node\"\n[target.generic]\nsubscribe_websocket = \"/chat?room={room}\"\nmessage = '{\"f\":\"{from}\",\"t\":{sent_at}}'\nfrom = \"/f\"";
        // A profile missing a field it must have.
        let e = parse(generic).unwrap_err();
        assert!(
            e.starts_with("s.toml:")
                && e.contains("field `target.generic`")
                && e.contains("missing field `sent_at`"),
            "{e}"
        );
        let line: usize = e["s.toml:".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let src = format!("{GOOD}\n{generic}\n");
        assert!(
            src.lines()
                .nth(line - 1)
                .unwrap()
                .starts_with("[target.generic]"),
            "{e}"
        );
        // With it, the target parses, and its label names the server.
        let ok = parse(&format!("{generic}\nsent_at = \"/t\"")).unwrap();
        assert_eq!(ok.target.label(), "ws-node");
        assert_eq!(ok.run_transports(), &[Transport::WebSocket]);
        // A placeholder that does not exist.
        let e =
            parse(&format!("{generic}\nsent_at = \"/t\"").replace("{room}", "{rom}")).unwrap_err();
        assert!(
            e.contains("field `target.generic.subscribe_websocket`: has {rom}"),
            "{e}"
        );
        // What Socket.IO does not serve, and what only chatbench has.
        let e = parse("[target]\nprofile = \"socketio\"\ntransports = [\"sse\"]").unwrap_err();
        assert!(
            e.contains("field `target.transports`: profile socketio runs long_poll and websocket only, not sse"),
            "{e}"
        );
        let e = parse("[protocol]\ntls = true\n[target]\nprofile = \"socketio\"").unwrap_err();
        assert!(
            e.contains("field `target`: TLS (protocol.tls) is chatbench's own"),
            "{e}"
        );
        let e = parse("[server]\nsse_keepalive = \"60s\"\n[target]\nprofile = \"socketio\"\nserver = \"socketio-node\"").unwrap_err();
        assert!(
            e.contains("field `server.sse_keepalive`: sets chatbench's server"),
            "{e}"
        );
        let ok = parse("[server]\nsse_keepalive = \"60s\"\nws_ping_interval = \"90s\"").unwrap();
        assert_eq!(
            ok.server.flags(),
            [
                "--sse-keepalive",
                "60000ms",
                "--ws-ping-interval",
                "90000ms"
            ]
        );
        let e = parse("[target]\nupgrade = true").unwrap_err();
        assert!(
            e.contains("field `target.upgrade`: is for profile socketio only"),
            "{e}"
        );
    }

    #[test]
    fn protocol_stacks_parse_and_sweep_by_name() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.protocol, Protocol::default());
        assert_eq!(s.protocol.label(), "h1");
        let s = parse(&format!("{GOOD}\n[protocol]\nhttp = \"2\"\ntls = true\n")).unwrap();
        assert!(s.protocol.is_http2() && s.protocol.tls);
        let s = parse(&format!(
            "{GOOD}\n[sweep]\nparameter = \"protocol\"\nvalues = [{{ http = \"1.1\" }}, {{ http = \"1.1\", tls = true }}, {{ http = \"2\" }}, {{ http = \"2\", tls = true }}]\n"
        ))
        .unwrap();
        let stacks: Vec<(String, String)> = (0..4)
            .map(|i| {
                (
                    s.point_label(i).unwrap(),
                    s.at_point(i).unwrap().protocol.label(),
                )
            })
            .collect();
        for (label, stack) in &stacks {
            assert_eq!(label, stack);
        }
        let s2 = parse(&format!(
            "{GOOD}\n[protocol]\nhttp = \"2\"\nheaders = \"browser\"\ncookie_bytes = 512\n"
        ))
        .unwrap();
        assert_eq!(s2.protocol.label(), "h2c browser cookie 512");
        assert_eq!(
            stacks.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
            ["h1", "h1+tls", "h2c", "h2+tls"]
        );
        // One field of it sweeps too.
        let s = parse(&format!(
            "{GOOD}\n[sweep]\nparameter = \"protocol.tls\"\nvalues = [false, true]\n"
        ))
        .unwrap();
        assert!(s.at_point(1).unwrap().protocol.tls);
        assert_eq!(s.point_label(1).as_deref(), Some("true"));
        let e = parse(&format!(
            "{GOOD}\n[sweep]\nparameter = \"protocol\"\nvalues = [{{ http = \"2.0\" }}]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("field `sweep.values[0]`: `protocol`: unknown variant `2.0`"),
            "{e}"
        );
    }

    #[test]
    fn webtransport_needs_tls_and_no_socket_link_and_sweeps_its_mode() {
        let wt = GOOD.replace(r#"["short_poll", "websocket"]"#, r#"["webtransport"]"#);
        assert_eq!(
            parse(&wt).unwrap_err(),
            "s.toml:3: field `transports`: include webtransport without protocol.tls = true: WebTransport runs over HTTP/3, which is always encrypted"
        );
        let tls = format!("{wt}\n[protocol]\ntls = true\n");
        let s = parse(&tls).unwrap();
        assert_eq!(s.webtransport.mode, WebTransportMode::Stream);
        let linked = format!("{tls}\n[network]\nrtt = \"20ms\"\n");
        assert!(parse(&linked)
            .unwrap_err()
            .contains("the socket-level link, which emulates above TCP while QUIC runs over UDP"));
        // `[webtransport]` is left out of run.json at its defaults, and a
        // sweep over its mode makes it.
        let swept = format!(
            "{tls}\n[sweep]\nparameter = \"webtransport.mode\"\nvalues = [\"stream\", \"stream-per-message\"]\n"
        );
        let s = parse(&swept).unwrap();
        assert_eq!(
            s.at_point(1).unwrap().webtransport.mode,
            WebTransportMode::StreamPerMessage
        );
        let bad = swept.replace("stream-per-message", "datagram");
        assert!(
            parse(&bad).unwrap_err().contains("webtransport.mode"),
            "{}",
            parse(&bad).unwrap_err()
        );
    }

    #[test]
    fn network_links_parse_validate_and_sweep() {
        let s = parse(GOOD).unwrap();
        assert!(s.network.is_loopback());
        let net = |t: &str| format!("{GOOD}\n[network]\n{t}\n");
        let s = parse(&net(
            "rtt = \"150ms\"\njitter = \"10ms\"\nbandwidth = \"1Mbit/s\"",
        ))
        .unwrap();
        assert_eq!(s.network.rtt, Duration::from_millis(150));
        assert_eq!(s.network.bandwidth_bps(), Ok(Some(1_000_000)));
        assert!(!s.network.is_loopback());
        assert_eq!(s.network.drop_every, None);
        let s = parse(&net("drop_every = \"20s\"\ndrop_for = \"1500ms\"")).unwrap();
        assert_eq!(s.network.drop_every, Some(Duration::from_secs(20)));
        assert_eq!(s.network.drop_for, Duration::from_millis(1500));
        // Drops are not the link's: the link stays loopback.
        assert!(s.network.is_loopback());
        for (b, want) in [
            ("256kbit", Some(256_000)),
            ("1.5Mbit", Some(1_500_000)),
            ("2Gbit/s", Some(2_000_000_000)),
            ("unlimited", None),
        ] {
            assert_eq!(parse_bandwidth(b), Ok(want), "{b}");
        }
        for (t, want) in [
            ("bandwidth = \"1MB\"", "s.toml:15: field `network.bandwidth`: \"1MB\": unknown unit \"MB\"; use bit, kbit, Mbit or Gbit"),
            ("bandwidth = \"100\"", "s.toml:15: field `network.bandwidth`: \"100\" has no unit; write e.g. \"1Mbit\" or \"unlimited\""),
            ("bandwidth = \"10bit\"", "s.toml:15: field `network.bandwidth`: \"10bit\" is out of range: from 1kbit to 1000Gbit per second"),
            ("rtt = \"20ms\"\njitter = \"15ms\"", "s.toml:16: field `network.jitter`: must be at most half of network.rtt (10ms), so no one-way delay goes below zero; got 15ms"),
            ("rtt = \"11s\"", "s.toml:15: field `network.rtt`: must be at most 10s, got 11s"),
            ("latency = \"1s\"", "s.toml:15: field `network.latency`: unknown field `latency`, expected one of `rtt`, `jitter`, `bandwidth`, `drop_every`, `drop_for`, `mode`, `loss`, `loss_burst`, `queue_bytes`, `queue_packets`, `trace_up`, `trace_down`, `delay_up`, `reorder`"),
            ("mode = \"packet\"\nrtt = \"50ms\"\ndelay_up = \"60ms\"", "s.toml:17: field `network.delay_up`: must be at most network.rtt (50ms): the downlink's delay is the rest of the round trip; got 60ms"),
            ("mode = \"packet\"\nrtt = \"50ms\"\ndelay_up = \"40ms\"\njitter = \"12ms\"", "s.toml:18: field `network.jitter`: must be at most the shorter one-way delay (10ms), so no delay goes below zero; got 12ms"),
            ("mode = \"packet\"\nreorder = true", "s.toml:16: field `network.reorder`: needs network.jitter: packets reorder when their delays vary"),
            ("rtt = \"50ms\"\ndelay_up = \"40ms\"", "s.toml:16: field `network.delay_up`: needs network.mode = \"packet\": the socket-level link delays each direction by half the round trip"),
            ("rtt = \"50ms\"\njitter = \"5ms\"\nreorder = true", "s.toml:17: field `network.reorder`: needs network.mode = \"packet\": the socket-level link hands over a connection's bytes in order"),
            ("mode = \"packet\"\nqueue_packets = 0", "s.toml:16: field `network.queue_packets`: must hold at least one packet"),
            ("mode = \"packet\"\nqueue_bytes = 64000\nqueue_packets = 50", "s.toml:17: field `network.queue_packets`: is set with network.queue_bytes; a queue is limited in bytes or in packets, not both"),
            ("mode = \"netem\"", "s.toml:15: field `network.mode`: unknown variant `netem`, expected `socket` or `packet`"),
            ("loss = 0.01", "s.toml:15: field `network.loss`: needs network.mode = \"packet\": the socket-level link has no packets to lose or queue"),
            ("mode = \"packet\"\nloss = 0.6", "s.toml:16: field `network.loss`: must be a share from 0 to 0.5, got 0.6"),
            ("mode = \"packet\"\nloss = 0.01\nloss_burst = 0.5", "s.toml:17: field `network.loss_burst`: must be a mean burst length from 1 (losses on their own) to 1000 packets, got 0.5"),
            ("mode = \"packet\"\nqueue_bytes = 1000", "s.toml:16: field `network.queue_bytes`: must hold at least one 1500-byte packet"),
            ("mode = \"packet\"\ntrace_up = \"nope.up\"", "s.toml:16: field `network.trace_up`: nope.up: cannot read the trace: No such file or directory (os error 2)"),
            ("trace_down = \"../../scenarios/traces/Verizon-LTE-short.down\"", "s.toml:15: field `network.trace_down`: needs network.mode = \"packet\": the socket-level link has no packets to lose or queue"),
            ("queue_bytes = 64000", "s.toml:15: field `network.queue_bytes`: needs network.mode = \"packet\": the socket-level link has no packets to lose or queue"),
            ("drop_every = \"50ms\"", "s.toml:15: field `network.drop_every`: must be at least 100ms, got 50ms"),
            ("drop_every = \"2s\"\ndrop_for = \"2s\"", "s.toml:16: field `network.drop_for`: must be shorter than network.drop_every (2s), got 2s"),
            ("drop_for = \"1s\"", "s.toml:15: field `network.drop_for`: needs network.drop_every: how often the connections drop"),
            ("drop_every = \"2s\"\n[protocol]\nhttp = \"2\"", "s.toml:17: field `protocol.http`: is \"2\" with network.drop_every, which chatbench does not run: an HTTP/2 server drops the frames it has queued when a cut connection's FIN arrives, so its count of messages delivered could not match what arrived, and a WebSocket frame the stream took may not have reached the socket at the cut (run drops over HTTP/1.1)"),
            ("[protocol]\nhttp = \"4\"", "s.toml:16: field `protocol.http`: unknown variant `4`, expected one of `1.1`, `2`, `3`"),
            ("[protocol]\nhttp = \"3\"", "s.toml:16: field `protocol.http`: is \"3\" without protocol.tls = true: QUIC is always encrypted, so HTTP/3 needs protocol.tls = true"),
            ("drop_every = \"2s\"\n[protocol]\nhttp = \"3\"\ntls = true", "s.toml:17: field `protocol.http`: is \"3\" with network.drop_every, which chatbench does not run: connections are dropped over HTTP/1.1"),
            ("rtt = \"20ms\"\n[protocol]\nhttp = \"3\"\ntls = true", "s.toml:17: field `protocol.http`: is \"3\" with the socket-level link, which emulates above TCP while QUIC runs over UDP: give network.mode = \"packet\""),
            ("[protocol]\ntls = \"yes\"", "s.toml:16: field `protocol.tls`: invalid type: string \"yes\", expected a boolean"),
            ("[protocol]\ncookie_bytes = 10", "s.toml:16: field `protocol.cookie_bytes`: needs protocol.headers = \"browser\": the minimal headers carry no cookie"),
            ("[protocol]\nheaders = \"browser\"\ncookie_bytes = 5000", "s.toml:17: field `protocol.cookie_bytes`: must be at most 4096 (a browser's limit for one cookie), got 5000"),
            ("[protocol]\nheaders = \"curl\"", "s.toml:16: field `protocol.headers`: unknown variant `curl`, expected `minimal` or `browser`"),
        ] {
            assert_eq!(parse(&net(t)).unwrap_err(), want, "{t}");
        }
        // The packet link's clients have one address.
        let many = GOOD.replace("[clients]\n", "[clients]\nsource_addresses = 4\n")
            + "\n[network]\nmode = \"packet\"\n";
        assert_eq!(
            parse(&many).unwrap_err(),
            "s.toml:7: field `clients.source_addresses`: must be 1 with network.mode = \"packet\": the clients have one address, in their own network namespace"
        );
        // The round trip is sweepable like any field.
        let s = parse(&format!(
            "{GOOD}\n[sweep]\nparameter = \"network.rtt\"\nvalues = [\"0s\", \"50ms\"]\n"
        ))
        .unwrap();
        assert!(s.at_point(0).unwrap().network.is_loopback());
        assert_eq!(
            s.at_point(1).unwrap().network.rtt,
            Duration::from_millis(50)
        );
    }

    #[test]
    fn server_processes_bound_the_busiest_by_its_rooms() {
        let five = parse(
            &(GOOD.replace("rooms = 2", "rooms = 20000\nprocesses = 5")
                + "\n[server]\nprocesses = 5\n"),
        )
        .unwrap();
        // 4000 rooms on average, sd 56.6: at most 4227 rooms of 4 connections.
        assert_eq!(five.server.processes, 5);
        assert_eq!(five.busiest_server_connections(), 16_908);
        let one = parse(GOOD).unwrap();
        assert_eq!(one.server.processes, 1);
        assert_eq!(one.busiest_server_connections(), one.connections_needed());
        // Engine.IO polling holds two connections per client, senders or not
        // (GOOD: 2 rooms of 3 clients, 1 sender each).
        let sio = |t: &str| {
            parse(
                &format!("{GOOD}\n[target]\nprofile = \"socketio\"\n{t}")
                    .replace("\"short_poll\", ", ""),
            )
            .unwrap()
            .busiest_server_connections()
        };
        assert_eq!(sio("transports = [\"long_poll\"]"), 12);
        assert_eq!(sio("upgrade = true"), 12);
        assert_eq!(sio(""), 8);
    }

    #[test]
    fn sweeps_set_any_field_and_are_validated() {
        let src = format!(
            "{GOOD}\n[sweep]\nparameter = \"short_poll.interval\"\nvalues = [\"100ms\", \"2s\"]\n"
        );
        let s = parse(&src).unwrap();
        assert_eq!(s.points(), 2);
        assert_eq!(s.point_label(1).as_deref(), Some("2s"));
        let p = s.at_point(1).unwrap();
        assert_eq!(p.short_poll.interval, Duration::from_secs(2));
        assert_eq!(p.sweep, None);
        let src =
            format!("{GOOD}\n[sweep]\nparameter = \"clients.clients_per_room\"\nvalues = [3, 0]\n");
        assert_eq!(
            parse(&src).unwrap_err(),
            "s.toml:16: field `sweep.values[1]`: at this value, `clients.clients_per_room` must be at least 1"
        );
        let src = format!("{GOOD}\n[sweep]\nparameter = \"clients.colour\"\nvalues = [1]\n");
        assert_eq!(
            parse(&src).unwrap_err(),
            "s.toml:16: field `sweep.values[0]`: sweep.parameter `clients.colour` is not a field of this scenario"
        );
        let src = format!("{GOOD}\n[sweep]\nparameter = \"messages.rate\"\nvalues = [\"fast\"]\n");
        assert_eq!(
            parse(&src).unwrap_err(),
            "s.toml:16: field `sweep.values[0]`: `messages.rate`: invalid type: string \"fast\", expected f64"
        );
    }

    #[test]
    fn overrides_are_validated_like_the_file_and_name_their_flag() {
        let base = parse(
            "name='t'\ntransports=['sse','websocket']\nduration='5s'\n[clients]\nrooms=1\nclients_per_room=2\nsenders_per_room=1\n[messages]\nrate=1.0\n",
        )
        .unwrap();
        let path = Path::new("t.toml");
        let refused = |o: Overrides| {
            base.clone()
                .with_overrides(&o, path)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(Overrides {
                duration: Some(Duration::ZERO),
                ..Overrides::default()
            }),
            "t.toml: field `duration` (set by --duration): must be longer than 0s"
        );
        assert_eq!(
            refused(Overrides {
                transports: Some(vec![Transport::Sse, Transport::Sse]),
                ..Overrides::default()
            }),
            "t.toml: field `transports` (set by --transports): names sse twice"
        );
        assert_eq!(
            refused(Overrides {
                transports: Some(vec![]),
                ..Overrides::default()
            }),
            "t.toml: field `transports` (set by --transports): must name at least one transport"
        );
        assert_eq!(
            refused(Overrides {
                repeat: Some(0),
                ..Overrides::default()
            }),
            "t.toml: field `repeat` (set by --repeat): must be between 1 and 1000, got 0"
        );
        let ok = base
            .clone()
            .with_overrides(
                &Overrides {
                    transports: Some(vec![Transport::WebSocket]),
                    repeat: Some(3),
                    seed: Some(9),
                    duration: Some(Duration::from_secs(2)),
                },
                path,
            )
            .unwrap();
        assert_eq!(
            (ok.transports, ok.repeat, ok.seed, ok.duration),
            (vec![Transport::WebSocket], 3, 9, Duration::from_secs(2))
        );
    }

    #[test]
    fn missing_file() {
        let e = Scenario::load(Path::new("/nonexistent/x.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/x.toml: cannot read: No such file or directory (os error 2)"
        );
    }
}
