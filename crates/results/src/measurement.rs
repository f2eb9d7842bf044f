//! A [`Measurement`]: everything the load generator recorded of one
//! transport run (one repetition at one sweep point), before it is
//! summarized into `run.json`. Histograms, audit counts and wire counters
//! add up, so measurements of one repetition made by several load-generator
//! processes (shards) [`combine`](Measurement::combine) into the one a
//! single process would have made; [`summarize`](Measurement::summarize)
//! then turns it, with what the server side measured, into a
//! [`TransportRun`].

use crate::hist::{new_histogram, HIST_MAX_US};
use crate::run_file::{
    Audit, Breakdown, CrossCheck, DropCounts, LoadgenCost, LoadgenRss, Percentiles, Readiness,
    Second, ServerCost, TransportRun, WireResult,
};
use crate::scenario::Scenario;
use crate::wire::WireSnapshot;
use crate::Transport;
use hdrhistogram::Histogram;

/// A per-second timeline histogram: 2 significant digits.
pub fn timeline_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 2).expect("static bounds are valid")
}

/// One shard's histograms. Serialized (a worker process hands its
/// measurement to the parent as JSON) as base64 of HdrHistogram's V2
/// deflate encoding, as in `.hlog` files.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Histograms {
    /// Delivery latency: arrival at the client's socket minus intended send
    /// time.
    #[serde(with = "hist_b64")]
    pub latency: Histogram<u64>,
    /// Send lag: actual send time minus intended send time.
    #[serde(with = "hist_b64")]
    pub send_lag: Histogram<u64>,
    /// TCP connect plus handshake time of each connection.
    #[serde(with = "hist_b64")]
    pub connect: Histogram<u64>,
    /// Round trip of each poll request (short and long).
    #[serde(with = "hist_b64")]
    pub request: Histogram<u64>,
    /// Short polls: actual poll time minus the tick it was scheduled for.
    #[serde(with = "hist_b64")]
    pub poll_lag: Histogram<u64>,
    /// Breakdown, up-leg: intended send time to the server's `server_at`
    /// stamp (send lag included).
    #[serde(with = "hist_b64")]
    pub up_leg: Histogram<u64>,
    /// Breakdown, polls only: `server_at` to the send of the poll that
    /// fetched the message (0 when a poll was already waiting).
    #[serde(with = "hist_b64")]
    pub poll_wait: Histogram<u64>,
    /// Breakdown, down-leg: the later of `server_at` and the fetching poll's
    /// send, to receipt.
    #[serde(with = "hist_b64")]
    pub down_leg: Histogram<u64>,
    /// The load generator's own receive time: from a message's arrival at
    /// the socket to the end of its parsing, waiting behind the other
    /// clients on the same CPU included.
    #[serde(with = "hist_b64")]
    pub receive: Histogram<u64>,
    /// With connection drops: the latency of measured messages sent while
    /// their receiver was away (from the cut until its resuming request
    /// left). Empty without drops, and in files that predate it.
    #[serde(with = "hist_b64", default = "new_histogram")]
    pub away: Histogram<u64>,
    /// Each client's first stream (SSE, WebSocket): from the server's
    /// stamp of the first message it delivered to that message's arrival.
    #[serde(with = "hist_b64", default = "new_histogram")]
    pub first_event: Histogram<u64>,
    /// Connections the other side ended while their client still wanted
    /// them: how long each had lived.
    #[serde(with = "hist_b64", default = "new_histogram")]
    pub cut_lived: Histogram<u64>,
    /// Per second since traffic started (warm-up included): delivery latency
    /// by intended send time (2 significant digits).
    #[serde(with = "hist_vec_b64")]
    pub timeline: Vec<Histogram<u64>>,
    /// Per second since traffic started: messages received in that second.
    pub received: Vec<u64>,
}

impl Histograms {
    /// Empty histograms.
    pub fn new() -> Histograms {
        Histograms {
            latency: new_histogram(),
            send_lag: new_histogram(),
            connect: new_histogram(),
            request: new_histogram(),
            poll_lag: new_histogram(),
            up_leg: new_histogram(),
            poll_wait: new_histogram(),
            down_leg: new_histogram(),
            receive: new_histogram(),
            away: new_histogram(),
            first_event: new_histogram(),
            cut_lived: new_histogram(),
            timeline: Vec::new(),
            received: Vec::new(),
        }
    }

    /// Adds `o` into these.
    pub fn merge(&mut self, o: &Histograms) {
        // Same bounds everywhere, so add cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.send_lag.add(&o.send_lag);
        let _ = self.connect.add(&o.connect);
        let _ = self.request.add(&o.request);
        let _ = self.poll_lag.add(&o.poll_lag);
        let _ = self.up_leg.add(&o.up_leg);
        let _ = self.poll_wait.add(&o.poll_wait);
        let _ = self.down_leg.add(&o.down_leg);
        let _ = self.receive.add(&o.receive);
        let _ = self.away.add(&o.away);
        let _ = self.first_event.add(&o.first_event);
        let _ = self.cut_lived.add(&o.cut_lived);
        for (i, h) in o.timeline.iter().enumerate() {
            while self.timeline.len() <= i {
                self.timeline.push(timeline_histogram());
            }
            let _ = self.timeline[i].add(h);
        }
        if self.received.len() < o.received.len() {
            self.received.resize(o.received.len(), 0);
        }
        for (i, n) in o.received.iter().enumerate() {
            self.received[i] += n;
        }
    }
}

impl Default for Histograms {
    fn default() -> Histograms {
        Histograms::new()
    }
}

/// The delivery audit's counts, as plain numbers that add up across shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditCounts {
    /// Messages sent in the measured window and accepted.
    pub sent: u64,
    /// Expected deliveries: for each sent message, the receivers of its room.
    pub expected: u64,
    /// First receipts of measured messages.
    pub delivered: u64,
    /// Receipts of a sequence number already seen.
    pub duplicated: u64,
    /// Receipts below a sequence number already seen.
    pub reordered: u64,
    /// Messages the server reported as missed.
    pub missed: u64,
    /// Every receipt, warm-up and control messages included.
    pub receipts: u64,
    /// Failed requests, connects and publishes.
    pub errors: u64,
    /// Sum of the JSON sizes of received chat messages.
    pub payload_bytes: u64,
    /// How many sizes `payload_bytes` sums.
    pub payload_count: u64,
    /// Measured deliveries whose stamps were out of order.
    pub clock_skewed: u64,
    /// Clients whose first stream delivered no message.
    #[serde(default)]
    pub silent_streams: u64,
}

impl std::ops::AddAssign for AuditCounts {
    fn add_assign(&mut self, o: AuditCounts) {
        self.sent += o.sent;
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.missed += o.missed;
        self.receipts += o.receipts;
        self.errors += o.errors;
        self.payload_bytes += o.payload_bytes;
        self.payload_count += o.payload_count;
        self.clock_skewed += o.clock_skewed;
        self.silent_streams += o.silent_streams;
    }
}

/// A process's resident memory at the edges of a transport run, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RssEdges {
    /// Before any client was started.
    pub baseline: u64,
    /// Once every client was connected, when traffic started.
    pub before_traffic: u64,
    /// The largest seen (sampled every 250 ms and at the edges).
    pub peak: u64,
}

/// Everything one load-generator process recorded of one transport run.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Measurement {
    /// The transport.
    pub transport: Option<Transport>,
    /// Sweep point.
    pub point: usize,
    /// Repetition, from 0.
    pub repetition: u32,
    /// Start of the measured window, ms since the UNIX epoch.
    pub measured_from_unix_ms: u64,
    /// Length of the measured window, s.
    pub measured_seconds: f64,
    /// The histograms.
    pub histograms: Histograms,
    /// The audit.
    pub audit: AuditCounts,
    /// Client wire counters over the measured window.
    pub wire_measured: WireSnapshot,
    /// Client wire counters over the whole run.
    pub wire_total: WireSnapshot,
    /// Load-generator CPU in the measured window, ms.
    pub loadgen_cpu_ms: Option<f64>,
    /// Its precision, ms (the coarsest of the shards').
    pub loadgen_cpu_precision_ms: f64,
    /// CPUs the load generator had (summed over shards).
    pub loadgen_cpus: usize,
    /// The load-generator processes' memory, summed over them: before any
    /// client (of this transport run), once all were connected, and the
    /// largest seen. None in measurements that predate it.
    #[serde(default)]
    pub loadgen_rss: Option<RssEdges>,
    /// Load-generator processes in this measurement (1 per shard).
    #[serde(default)]
    pub loadgen_processes: usize,
    /// The readiness barrier.
    pub ready: Readiness,
    /// The run ended early (server died, teardown stuck, interrupted).
    pub ended_early: bool,
    /// `audit.errors` by cause (see [`TransportRun::errors_by_cause`]).
    pub error_causes: std::collections::BTreeMap<String, u64>,
    /// Connection drops and resumes, in runs with `network.drop_every`.
    #[serde(default)]
    pub drops: Option<DropCounts>,
    /// TCP's view of the client sockets, read as each closed.
    #[serde(default)]
    pub tcp: crate::tcp::TcpTotals,
    /// What joining cost, for another stack's profile.
    #[serde(default)]
    pub join: Option<crate::run_file::JoinCounts>,
    /// The radio model's time in each state over every client's packets
    /// in the measured window ([`crate::energy`]), summed over clients.
    #[serde(default)]
    pub radio: crate::energy::RadioTime,
    /// The same over the clients' messages alone.
    #[serde(default)]
    pub radio_messages: crate::energy::RadioTime,
}

/// A histogram as base64 of its V2 deflate encoding.
mod hist_b64 {
    use base64::Engine;
    use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
    use hdrhistogram::Histogram;

    pub(super) fn encode(h: &Histogram<u64>) -> Result<String, String> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(h, &mut buf)
            .map_err(|e| format!("cannot encode a histogram: {e:?}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(buf))
    }

    pub(super) fn decode(s: &str) -> Result<Histogram<u64>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("a histogram is not base64: {e}"))?;
        Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| format!("cannot decode a histogram: {e:?}"))
    }

    pub fn serialize<S: serde::Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(h).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        decode(&s).map_err(serde::de::Error::custom)
    }
}

/// A list of histograms, each as [`hist_b64`] does.
mod hist_vec_b64 {
    use hdrhistogram::Histogram;

    pub fn serialize<S: serde::Serializer>(hs: &[Histogram<u64>], s: S) -> Result<S::Ok, S::Error> {
        let encoded = hs
            .iter()
            .map(super::hist_b64::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::ser::Error::custom)?;
        serde::Serialize::serialize(&encoded, s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Histogram<u64>>, D::Error> {
        let encoded: Vec<String> = serde::Deserialize::deserialize(d)?;
        encoded
            .iter()
            .map(|s| super::hist_b64::decode(s))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

/// Why two measurements cannot be combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot combine measurements of {what}: {a} and {b}")]
pub struct CombineError {
    /// What differs.
    pub what: &'static str,
    /// This one's value.
    pub a: String,
    /// The other's.
    pub b: String,
}

/// What the server side measured of a transport run, to summarize with a
/// [`Measurement`].
#[derive(Debug, Clone, Default)]
pub struct ServerSide {
    /// `/metrics` deltas over the run: bytes written to clients (control
    /// requests left out) and messages delivered; None when not scraped.
    pub counters: Option<(u64, u64)>,
    /// CPU, memory, threads and files, when the server's pid is known.
    pub cost: Option<ServerCost>,
    /// CPUs the server may use (its pinning, or the machine's, or its CPU
    /// quota), when chatbench started it: the base of its CPU share.
    pub cpus: Option<f64>,
    /// The server's TCP sums over the run, from `/metrics`, when read.
    pub tcp: Option<crate::tcp::ServerTcp>,
}

/// How a `saturation` reason that blames the load generator begins
/// (`chatbench capacity` stops a search on it).
pub const LOADGEN_SIDE: &str = "load generator: ";
/// What a load generator's send-lag reason says after [`LOADGEN_SIDE`].
pub const SEND_LAG: &str = "send lag ";
/// How a `saturation` reason that blames the server begins.
pub const SERVER_SIDE: &str = "server: ";

/// `cpu_ms` of CPU over `seconds` on `cpus` CPUs, as a share of them.
pub fn cpu_share(cpu_ms: f64, seconds: f64, cpus: f64) -> f64 {
    cpu_ms / (seconds * 1000.0 * cpus.max(MIN_CPUS))
}

/// The fewest CPUs a share is taken of: a server's least CPU quota
/// ([`crate::scenario::MIN_CPU_QUOTA`]).
const MIN_CPUS: f64 = crate::scenario::MIN_CPU_QUOTA;

/// The CPUs a server had, in words: `1 CPU`, `2 CPUs`, or `0.5 CPU
/// (its quota)` when `server.cpu_quota` set them.
pub fn server_cpus(n: f64, quota: Option<f64>) -> String {
    let words = crate::fmt::cpus(n);
    match quota {
        Some(q) if q <= n => format!("{words} (its quota)"),
        _ => words,
    }
}

/// Which side ran out, if any: the load generator (send lag p99 or CPU
/// share over `[limits]`) or the server (CPU share over
/// `limits.server_cpu`), each with its figure.
fn saturation(
    s: &Scenario,
    send_lag: &Percentiles,
    loadgen: &LoadgenCost,
    m: &Measurement,
    server: &ServerSide,
) -> Vec<String> {
    let mut why = Vec::new();
    let limits = &s.limits;
    if send_lag.p99 > limits.send_lag_p99.as_micros() as u64 {
        why.push(format!(
            "{LOADGEN_SIDE}{SEND_LAG}p99 {} over the limit of {}{}",
            crate::fmt::fmt_us(send_lag.p99),
            crate::fmt::fmt_us(limits.send_lag_p99.as_micros() as u64),
            if s.network.rtt.is_zero() {
                ""
            } else {
                " (over the emulated round trip, an HTTP sender's publish also waits for the answer to its previous one on its connection)"
            }
        ));
    }
    if loadgen.cpu_share > limits.loadgen_cpu {
        why.push(format!(
            "{LOADGEN_SIDE}CPU {:.0}% of its {} over the limit of {:.0}%",
            loadgen.cpu_share * 100.0,
            crate::fmt::cpus(m.loadgen_cpus.max(1) as f64),
            limits.loadgen_cpu * 100.0
        ));
    }
    if let (Some(cost), Some(n)) = (&server.cost, server.cpus) {
        let share = cpu_share(cost.cpu_ms_measured, m.measured_seconds, n);
        if m.measured_seconds > 0.0 && share > limits.server_cpu {
            why.push(format!(
                "{SERVER_SIDE}CPU {:.0}% of its {} over the limit of {:.0}%",
                share * 100.0,
                server_cpus(n, s.server.cpu_quota),
                limits.server_cpu * 100.0
            ));
        }
    }
    why
}

impl Measurement {
    /// Adds `o`, a shard of the same repetition measured by another
    /// process, into this one.
    pub fn combine(&mut self, o: &Measurement) -> Result<(), CombineError> {
        let same = |what, a: String, b: String| {
            if a == b {
                Ok(())
            } else {
                Err(CombineError { what, a, b })
            }
        };
        same(
            "transport",
            format!("{:?}", self.transport),
            format!("{:?}", o.transport),
        )?;
        same("sweep point", self.point.to_string(), o.point.to_string())?;
        same(
            "repetition",
            self.repetition.to_string(),
            o.repetition.to_string(),
        )?;
        same(
            "measured window",
            format!("{}+{}s", self.measured_from_unix_ms, self.measured_seconds),
            format!("{}+{}s", o.measured_from_unix_ms, o.measured_seconds),
        )?;
        self.histograms.merge(&o.histograms);
        self.audit += o.audit;
        self.wire_measured = self.wire_measured + o.wire_measured;
        self.wire_total = self.wire_total + o.wire_total;
        self.loadgen_cpu_ms = match (self.loadgen_cpu_ms, o.loadgen_cpu_ms) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.loadgen_cpu_precision_ms = self
            .loadgen_cpu_precision_ms
            .max(o.loadgen_cpu_precision_ms);
        self.loadgen_cpus += o.loadgen_cpus;
        self.loadgen_rss = match (self.loadgen_rss, o.loadgen_rss) {
            (Some(a), Some(b)) => Some(RssEdges {
                baseline: a.baseline + b.baseline,
                before_traffic: a.before_traffic + b.before_traffic,
                peak: a.peak + b.peak,
            }),
            _ => None,
        };
        self.loadgen_processes += o.loadgen_processes;
        self.ready.expected += o.ready.expected;
        self.ready.ready += o.ready.ready;
        self.ready.ramp_ms = self.ready.ramp_ms.max(o.ready.ramp_ms);
        self.ended_early |= o.ended_early;
        self.join = match (self.join, o.join) {
            (Some(mut a), Some(b)) => {
                a += b;
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.drops = match (self.drops, o.drops) {
            (Some(mut a), Some(b)) => {
                a += b;
                Some(a)
            }
            (a, b) => a.or(b),
        };
        for (cause, n) in &o.error_causes {
            *self.error_causes.entry(cause.clone()).or_default() += n;
        }
        self.tcp.add(&o.tcp);
        self.radio = self.radio + o.radio;
        self.radio_messages = self.radio_messages + o.radio_messages;
        Ok(())
    }

    /// The `run.json` entry of this measurement, with the server side's
    /// figures and the scenario's limits for the `saturated` flag.
    pub fn summarize(&self, s: &Scenario, server: ServerSide) -> TransportRun {
        let a = &self.audit;
        let h = &self.histograms;
        let audit = Audit {
            sent: a.sent,
            expected: a.expected,
            delivered: a.delivered,
            lost: a.expected.saturating_sub(a.delivered),
            duplicated: a.duplicated,
            reordered: a.reordered,
            missed: a.missed,
            errors: a.errors,
        };
        let payload = a.payload_bytes as f64 / a.payload_count.max(1) as f64;
        // Over HTTP/3 and WebTransport the clients' packets are UDP
        // datagrams (a WebSocket in an HTTP/3 run goes over TCP).
        let over_udp = match self.transport {
            Some(crate::Transport::WebTransport) => true,
            Some(crate::Transport::WebSocket) => false,
            _ => s.protocol.is_http3(),
        };
        let carrier = if over_udp {
            crate::wire::Carrier::Udp
        } else {
            crate::wire::Carrier::Tcp
        };
        let wire = WireResult::new(
            self.wire_measured,
            self.wire_total,
            a.delivered,
            payload,
            carrier,
        );
        let crosscheck = server.counters.map(|(bytes, delivered)| CrossCheck {
            server_bytes_written: bytes,
            client_bytes_down: self.wire_total.bytes_down,
            server_delivered: delivered,
            client_receipts: a.receipts,
            // QUIC's bytes are counted at the UDP sockets: datagrams the
            // link dropped were written by the server and never read, so
            // over a lossy link the clients read at most what it wrote.
            bytes_match: if over_udp && s.network.drops_packets() {
                bytes >= self.wire_total.bytes_down
            } else {
                bytes == self.wire_total.bytes_down
            },
            delivered_match: delivered == a.receipts,
        });
        let loadgen = self
            .loadgen_cpu_ms
            .map(|cpu| LoadgenCost {
                cpu_ms_measured: cpu,
                cpu_precision_ms: self.loadgen_cpu_precision_ms,
                cpu_share: cpu_share(cpu, self.measured_seconds, self.loadgen_cpus.max(1) as f64),
                ..LoadgenCost::default()
            })
            .unwrap_or_default();
        let loadgen = LoadgenCost {
            processes: self.loadgen_processes,
            rss: self.loadgen_rss.map(|m| LoadgenRss {
                baseline: m.baseline,
                before_traffic: m.before_traffic,
                peak: m.peak,
                per_client: m.before_traffic.saturating_sub(m.baseline) as f64
                    / self.ready.expected.max(1) as f64,
            }),
            ..loadgen
        };
        let latency = Percentiles::of(&h.latency);
        let send_lag = Percentiles::of(&h.send_lag);
        let mut flags = Vec::new();
        let saturation = saturation(s, &send_lag, &loadgen, self, &server);
        if !saturation.is_empty() {
            flags.push("saturated".to_owned());
        }
        if self.ended_early {
            flags.push("incomplete".to_owned());
        }
        if self.ready.ready < self.ready.expected {
            flags.push("not_ready".to_owned());
        }
        if crosscheck
            .as_ref()
            .is_some_and(|c| !c.bytes_match || !c.delivered_match)
        {
            flags.push("crosscheck_mismatch".to_owned());
        }
        let timeline = h
            .timeline
            .iter()
            .enumerate()
            .take((s.warmup + s.duration).as_secs_f64().ceil() as usize)
            .map(|(i, t)| Second {
                second: i as u64,
                delivered: t.len(),
                received: h.received.get(i).copied().unwrap_or(0),
                p99_us: if t.is_empty() {
                    0
                } else {
                    t.value_at_quantile(0.99)
                },
            })
            .collect();
        TransportRun {
            transport: self.transport.unwrap_or(Transport::WebSocket),
            point: self.point,
            repetition: self.repetition,
            complete: !self.ended_early,
            flags,
            saturation,
            connections: self.wire_total.connections,
            measured_seconds: self.measured_seconds,
            measured_from_unix_ms: self.measured_from_unix_ms,
            latency_us: latency,
            send_lag_us: send_lag,
            connect_us: Percentiles::of(&h.connect),
            request_us: Percentiles::of(&h.request),
            audit,
            wire,
            crosscheck,
            server: server.cost,
            loadgen,
            timeline,
            breakdown: Some(Breakdown {
                clock: "one_host".into(),
                receipt: "socket_arrival".into(),
                up_leg_us: Percentiles::of(&h.up_leg),
                poll_wait_us: Percentiles::of(&h.poll_wait),
                down_leg_us: Percentiles::of(&h.down_leg),
                skewed: a.clock_skewed,
            }),
            receive_us: Percentiles::of(&h.receive),
            poll_lag_us: Percentiles::of(&h.poll_lag),
            ready: Some(self.ready),
            errors_by_cause: self.error_causes.clone(),
            drops: self.drops.map(|d| crate::run_file::Drops::of(d, &h.away)),
            link: None,
            tcp: Some(self.tcp_view(s, server.tcp)),
            join: self.join.map(crate::run_file::Join::of),
            radio: (self.radio.clients > 0).then(|| {
                crate::energy::Radio::of(&s.energy, self.radio, self.radio_messages, a.delivered)
            }),
            no_crosscheck: None,
            proxy: None,
            streams: crate::run_file::Streams::of(
                self.transport.is_some_and(|t| t.is_push()),
                &h.first_event,
                a.silent_streams,
                &h.cut_lived,
            ),
        }
    }

    /// TCP's view: both sides' retransmissions per delivery, and the share
    /// of deliveries late by more than a retransmission timeout.
    fn tcp_view(&self, s: &Scenario, server: Option<crate::tcp::ServerTcp>) -> crate::tcp::TcpView {
        let mut threshold = s.network.rtt.as_secs_f64() * 1000.0 + crate::tcp::RTO_FLOOR_MS;
        if self.transport == Some(Transport::ShortPoll) {
            threshold += s.short_poll.interval.as_secs_f64() * 1000.0;
        }
        let h = &self.histograms.latency;
        let on_time = h.count_between(0, (threshold * 1000.0) as u64);
        let late = h.len().saturating_sub(on_time);
        crate::tcp::TcpView::new(
            &self.tcp,
            server,
            self.audit.delivered,
            threshold,
            (late, h.len()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(latencies: std::ops::Range<u64>, delivered: u64) -> Measurement {
        let mut h = Histograms::new();
        for v in latencies {
            h.latency.record(v).unwrap();
            h.up_leg.record(v / 2).unwrap();
        }
        Measurement {
            transport: Some(Transport::Sse),
            measured_from_unix_ms: 1_700_000_000_000,
            measured_seconds: 2.0,
            histograms: h,
            audit: AuditCounts {
                sent: 10,
                expected: delivered,
                delivered,
                receipts: delivered + 1,
                ..AuditCounts::default()
            },
            wire_total: WireSnapshot {
                bytes_down: delivered * 100,
                connections: 5,
                ..WireSnapshot::default()
            },
            loadgen_cpu_ms: Some(100.0),
            loadgen_cpu_precision_ms: 0.001,
            loadgen_cpus: 1,
            loadgen_rss: Some(RssEdges {
                baseline: 10_000_000,
                before_traffic: 10_051_200,
                peak: 10_100_000,
            }),
            loadgen_processes: 1,
            ready: Readiness {
                expected: 5,
                ready: 5,
                ramp_ms: 900,
            },
            ..Measurement::default()
        }
    }

    fn scenario() -> Scenario {
        Scenario::parse(
            "name='t'\ntransports=['sse']\nduration='2s'\n[clients]\nrooms=1\nclients_per_room=10\nsenders_per_room=1\n[messages]\nrate=1.0\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn late_deliveries_are_those_past_the_rtt_and_an_rto() {
        let s = scenario();
        let mut m = shard(0..0, 4);
        for v in [100_000, 150_000, 199_000, 300_000] {
            m.histograms.latency.record(v).unwrap();
        }
        m.tcp = crate::tcp::TcpTotals {
            sockets: 2,
            retrans_segs: 2,
            rto_known: true,
            ..Default::default()
        };
        let server = ServerSide {
            counters: None,
            cost: None,
            cpus: None,
            tcp: Some(crate::tcp::ServerTcp {
                sockets: 2,
                retrans_segs: 6,
                rto: 1,
                still_open: 0,
            }),
        };
        let t = m.summarize(&s, server.clone()).tcp.unwrap();
        assert_eq!(t.late_threshold_ms, 200.0);
        assert_eq!(t.late_share, 0.25);
        assert_eq!(t.retrans_per_1k_msgs, 2000.0);
        assert_eq!(t.server.unwrap().rto, 1);
        // Short polls wait up to their interval (1 s here) by design.
        m.transport = Some(Transport::ShortPoll);
        let t = m.summarize(&s, server).tcp.unwrap();
        assert_eq!((t.late_threshold_ms, t.late_share), (1200.0, 0.0));
    }

    #[test]
    fn saturation_names_the_side_that_ran_out() {
        let s = scenario();
        // 100 ms of load-generator CPU in a 2 s window on 1 CPU: 5%.
        let mut m = shard(1..101, 100);
        let server = |cpu_ms: f64, cpus: Option<f64>| ServerSide {
            counters: None,
            cost: Some(ServerCost {
                cpu_ms_measured: cpu_ms,
                ..ServerCost::default()
            }),
            cpus,
            tcp: None,
        };
        let r = m.summarize(&s, server(1_700.0, Some(1.0)));
        assert!(r.flags.is_empty() && r.saturation.is_empty(), "{r:?}");
        // The server at 95% of its one CPU.
        let r = m.summarize(&s, server(1_900.0, Some(1.0)));
        assert_eq!(r.flags, ["saturated"]);
        assert_eq!(
            r.saturation,
            ["server: CPU 95% of its 1 CPU over the limit of 90%"]
        );
        // The same CPU over 2 CPUs is 48%; an external server's CPUs are
        // unknown, so its share is not judged.
        assert!(m
            .summarize(&s, server(1_900.0, Some(2.0)))
            .saturation
            .is_empty());
        assert!(m.summarize(&s, server(1_900.0, None)).saturation.is_empty());
        // Under a quota of half a CPU, 950 ms in 2 s is 95% of it.
        let mut q = scenario();
        q.server.cpu_quota = Some(0.5);
        assert_eq!(
            m.summarize(&q, server(950.0, Some(0.5))).saturation,
            ["server: CPU 95% of its 0.5 CPU (its quota) over the limit of 90%"]
        );
        // Both sides: the load generator's CPU and send lag, then the server.
        m.loadgen_cpu_ms = Some(1_950.0);
        for _ in 0..10 {
            m.histograms.send_lag.record(30_000).unwrap();
        }
        let r = m.summarize(&s, server(1_900.0, Some(1.0)));
        assert_eq!(
            r.saturation,
            [
                "load generator: send lag p99 30.0ms over the limit of 20.0ms",
                "load generator: CPU 98% of its 1 CPU over the limit of 90%",
                "server: CPU 95% of its 1 CPU over the limit of 90%"
            ]
        );
        assert_eq!(r.flags, ["saturated"]);
    }

    #[test]
    fn shards_combine_into_what_one_process_would_have_measured() {
        let mut a = shard(1..101, 100);
        let b = shard(101..201, 100);
        a.combine(&b).unwrap();
        let whole = shard(1..201, 200);
        let s = scenario();
        let server = ServerSide {
            counters: Some((20_000, 202)),
            cost: None,
            cpus: None,
            tcp: None,
        };
        let (ra, rw) = (a.summarize(&s, server.clone()), whole.summarize(&s, server));
        assert_eq!(ra.latency_us, rw.latency_us);
        assert_eq!(ra.audit.delivered, 200);
        assert_eq!(ra.audit.sent, 20);
        assert_eq!(ra.connections, 10);
        assert_eq!(
            ra.ready,
            Some(Readiness {
                expected: 10,
                ready: 10,
                ramp_ms: 900
            })
        );
        // Two processes of one CPU each, 100 ms each, over 2 s.
        assert_eq!(ra.loadgen.cpu_ms_measured, 200.0);
        assert_eq!(ra.loadgen.cpu_share, 0.05);
        // Memory adds up over the processes; per client over all 10.
        assert_eq!(ra.loadgen.processes, 2);
        assert_eq!(
            ra.loadgen.rss,
            Some(LoadgenRss {
                baseline: 20_000_000,
                before_traffic: 20_102_400,
                peak: 20_200_000,
                per_client: 10_240.0,
            })
        );
        assert_eq!(rw.loadgen.rss.unwrap().per_client, 10_240.0);
        // One process without a reading: no memory figure, rather than half
        // of one.
        let mut c = shard(1..10, 9);
        c.loadgen_rss = None;
        let mut d = shard(1..10, 9);
        d.combine(&c).unwrap();
        assert_eq!(d.summarize(&s, ServerSide::default()).loadgen.rss, None);
        // The cross-check holds on the combined counts.
        let c = ra.crosscheck.unwrap();
        assert!(c.bytes_match && c.delivered_match, "{c:?}");
        assert!(ra.flags.is_empty(), "{:?}", ra.flags);
        assert_eq!(ra.breakdown.unwrap().up_leg_us.count, 200);
    }

    /// A worker hands its measurement over as JSON: nothing is lost.
    #[test]
    fn a_measurement_survives_json() {
        let mut m = shard(1..5001, 5000);
        m.histograms.timeline.push(timeline_histogram());
        m.histograms.timeline[0].record(42).unwrap();
        m.histograms.received = vec![3, 4];
        m.error_causes.insert("poll: 503".into(), 2);
        let json = serde_json::to_string(&m).unwrap();
        let back: Measurement = serde_json::from_str(&json).unwrap();
        assert_eq!(back.histograms.latency, m.histograms.latency);
        assert_eq!(back.histograms.up_leg, m.histograms.up_leg);
        assert_eq!(back.histograms.timeline, m.histograms.timeline);
        assert_eq!(back.histograms.received, vec![3, 4]);
        assert_eq!(back.audit, m.audit);
        assert_eq!(back.wire_total, m.wire_total);
        assert_eq!(back.ready, m.ready);
        assert_eq!(back.error_causes, m.error_causes);
        assert_eq!(back.loadgen_cpu_ms, Some(100.0));
        assert_eq!(back.loadgen_rss, m.loadgen_rss);
        assert_eq!(back.loadgen_processes, 1);
        let bad = json.replacen("\"latency\":\"", "\"latency\":\"!", 1);
        let e = serde_json::from_str::<Measurement>(&bad).unwrap_err();
        assert!(
            e.to_string().starts_with("a histogram is not base64"),
            "{e}"
        );
    }

    #[test]
    fn shards_of_different_runs_do_not_combine() {
        let mut a = shard(1..10, 9);
        let mut b = shard(1..10, 9);
        b.repetition = 1;
        assert_eq!(
            a.combine(&b).unwrap_err().to_string(),
            "cannot combine measurements of repetition: 0 and 1"
        );
        b.repetition = 0;
        b.transport = Some(Transport::WebSocket);
        assert_eq!(a.combine(&b).unwrap_err().what, "transport");
    }

    #[test]
    fn error_causes_add_up_across_shards() {
        let mut a = shard(1..10, 9);
        a.audit.errors = 3;
        a.error_causes = [
            ("connect: refused".to_owned(), 2),
            ("poll: 503".to_owned(), 1),
        ]
        .into();
        let mut b = shard(10..20, 10);
        b.audit.errors = 4;
        b.error_causes = [("connect: refused".to_owned(), 4)].into();
        a.combine(&b).unwrap();
        let run = a.summarize(&scenario(), ServerSide::default());
        assert_eq!(run.audit.errors, 7);
        assert_eq!(
            run.errors_by_cause,
            [
                ("connect: refused".to_owned(), 6),
                ("poll: 503".to_owned(), 1)
            ]
            .into()
        );
    }
}
