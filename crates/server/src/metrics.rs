//! Prometheus metrics, per transport, encoded by `prometheus-client`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::fmt::Write;

/// What a request or connection is used for; the `transport` label. Its
/// transport values are the transports of `chatbench_proto::Transport`
/// (the conversions go both ways); the server also counts publishes and
/// everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Label {
    /// `GET /rooms/{room}/messages` without `wait_ms`.
    ShortPoll = 0,
    /// `GET /rooms/{room}/messages?wait_ms=W`.
    LongPoll = 1,
    /// `GET /rooms/{room}/events`.
    Sse = 2,
    /// `GET /rooms/{room}/ws` and everything on the upgraded socket.
    WebSocket = 3,
    /// `POST /rooms/{room}/messages`.
    Publish = 4,
    /// Anything else: the page, `/healthz`, `/metrics`, unknown paths.
    Other = 5,
    /// Bytes of a connection before its first request: the TLS handshake,
    /// HTTP/2's connection preface and settings, and the answer to a
    /// request that could not be parsed.
    Connection = 6,
    /// A WebTransport session at `/rooms/{room}/wt` and its streams.
    WebTransport = 7,
}

impl Label {
    /// Every label value, in `repr` order.
    pub const ALL: [Label; 8] = [
        Label::ShortPoll,
        Label::LongPoll,
        Label::Sse,
        Label::WebSocket,
        Label::Publish,
        Label::Other,
        Label::Connection,
        Label::WebTransport,
    ];

    /// The transport under comparison this label counts; None for
    /// publishes and everything else.
    pub fn transport(self) -> Option<chatbench_proto::Transport> {
        use chatbench_proto::Transport as T;
        match self {
            Label::ShortPoll => Some(T::ShortPoll),
            Label::LongPoll => Some(T::LongPoll),
            Label::Sse => Some(T::Sse),
            Label::WebSocket => Some(T::WebSocket),
            Label::WebTransport => Some(T::WebTransport),
            Label::Publish | Label::Other | Label::Connection => None,
        }
    }

    /// The label value: the four transports are spelled by the one
    /// `chatbench_proto::Transport`, as in run.json and on the command line.
    pub fn as_str(self) -> &'static str {
        match (self.transport(), self) {
            (Some(t), _) => t.as_str(),
            (None, Label::Publish) => "publish",
            (None, Label::Connection) => "connection",
            (None, _) => "other",
        }
    }

    /// Which label an HTTP/2 connection's bytes go to when one of its
    /// streams is a `self` request and the connection's label is `now`:
    /// the highest of the two, in the order connection < other < publish <
    /// the four transports. A client's one connection carries its
    /// publishes and its polls or stream, so its bytes are its transport's.
    pub fn outranks(self, now: Label) -> bool {
        fn rank(t: Label) -> u8 {
            match t {
                Label::Connection => 0,
                Label::Other => 1,
                Label::Publish => 2,
                _ => 3,
            }
        }
        rank(self) > rank(now)
    }

    pub(crate) fn from_u8(v: u8) -> Label {
        Label::ALL.get(v as usize).copied().unwrap_or(Label::Other)
    }
}

impl From<chatbench_proto::Transport> for Label {
    fn from(t: chatbench_proto::Transport) -> Label {
        use chatbench_proto::Transport as T;
        match t {
            T::ShortPoll => Label::ShortPoll,
            T::LongPoll => Label::LongPoll,
            T::Sse => Label::Sse,
            T::WebSocket => Label::WebSocket,
            T::WebTransport => Label::WebTransport,
        }
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabel {
    transport: Label,
}

/// The counters of one transport label.
#[derive(Debug, Clone, Default)]
pub struct PerTransport {
    /// Long polls waiting, SSE streams and WebSockets open now.
    pub active: Gauge,
    /// Requests received.
    pub requests: Counter,
    /// Messages published through this label.
    pub published: Counter,
    /// Messages handed to clients.
    pub delivered: Counter,
    /// Bytes written to sockets, HTTP and WebSocket framing included.
    pub bytes_written: Counter,
    /// TCP's view of the sockets that closed under this label.
    pub tcp: TcpCounters,
}

/// Sums of `TCP_INFO` over closed sockets: the server sends the
/// downlink, so these are the downlink's retransmissions.
#[derive(Debug, Clone, Default)]
pub struct TcpCounters {
    /// Sockets read as they closed.
    pub sockets: Counter,
    /// Segments retransmitted.
    pub retrans_segs: Counter,
    /// Retransmission timeouts (Linux 6.7 and later).
    pub rto: Counter,
}

impl TcpCounters {
    /// Adds a socket as it closes.
    pub fn closed(&self, sock: &impl std::os::fd::AsRawFd) {
        if let Some(t) = chatbench_proto::tcp::tcp_reading(sock) {
            self.sockets.inc();
            self.retrans_segs.inc_by(t.retrans_segs);
            self.rto.inc_by(t.rto.unwrap_or(0));
        }
    }
}

/// Every metric of a server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// TCP connections open now.
    pub connections_open: Gauge,
    /// TCP connections accepted.
    pub connections_accepted: Counter,
    /// TCP connections refused with 503 at the connection limit.
    pub connections_rejected: Counter,
    /// Rooms that exist.
    pub rooms: Gauge,
    /// Connections closed because their writes made no progress for the
    /// write-stall timeout (or the shutdown linger).
    pub write_stalls: Counter,
    /// TLS handshakes completed.
    pub tls_handshakes: Counter,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: Counter,
    message_bytes: Gauge,
    memory_budget: Gauge,
    evicted: Counter,
    refused: Counter,
    /// Makes [`Metrics::sync_rooms`] atomic, so two scrapes do not both add
    /// one delta.
    sync: std::sync::Mutex<()>,
    per: Vec<PerTransport>,
}

impl Metrics {
    /// A fresh registry with every series at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("chatbench");
        let connections_open = Gauge::default();
        let connections_accepted = Counter::default();
        let connections_rejected = Counter::default();
        let rooms = Gauge::default();
        registry.register(
            "connections_open",
            "TCP connections open now",
            connections_open.clone(),
        );
        registry.register(
            "connections_accepted",
            "TCP connections accepted",
            connections_accepted.clone(),
        );
        registry.register(
            "connections_rejected",
            "TCP connections refused with 503 at the connection limit",
            connections_rejected.clone(),
        );
        registry.register("rooms", "Rooms that exist", rooms.clone());
        let write_stalls = Counter::default();
        registry.register(
            "write_stalls",
            "Connections closed because the client accepted no bytes for the write-stall timeout",
            write_stalls.clone(),
        );
        let tls_handshakes = Counter::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed",
            tls_handshakes.clone(),
        );
        let tls_failures = Counter::default();
        registry.register(
            "tls_failures",
            "TLS handshakes that failed or timed out",
            tls_failures.clone(),
        );
        let message_bytes = Gauge::default();
        registry.register(
            "message_bytes",
            "Bytes of messages alive: in room logs or still being written to readers",
            message_bytes.clone(),
        );
        let memory_budget = Gauge::default();
        registry.register(
            "message_bytes_limit",
            "The budget for message bytes (--max-memory)",
            memory_budget.clone(),
        );
        let evicted = Counter::default();
        registry.register(
            "messages_evicted",
            "Messages evicted from the largest rooms to stay under the memory budget",
            evicted.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "publishes_refused_memory",
            "Publishes refused with 503 because readers held the whole memory budget",
            refused.clone(),
        );

        let active = Family::<TransportLabel, Gauge>::default();
        let requests = Family::<TransportLabel, Counter>::default();
        let published = Family::<TransportLabel, Counter>::default();
        let delivered = Family::<TransportLabel, Counter>::default();
        let bytes_written = Family::<TransportLabel, Counter>::default();
        let tcp_sockets = Family::<TransportLabel, Counter>::default();
        let tcp_retrans = Family::<TransportLabel, Counter>::default();
        let tcp_rto = Family::<TransportLabel, Counter>::default();
        // Handles are cloned once so the hot path never touches the family map.
        let per = Label::ALL
            .iter()
            .map(|&transport| {
                let l = TransportLabel { transport };
                PerTransport {
                    active: active.get_or_create(&l).clone(),
                    requests: requests.get_or_create(&l).clone(),
                    published: published.get_or_create(&l).clone(),
                    delivered: delivered.get_or_create(&l).clone(),
                    bytes_written: bytes_written.get_or_create(&l).clone(),
                    tcp: TcpCounters {
                        sockets: tcp_sockets.get_or_create(&l).clone(),
                        retrans_segs: tcp_retrans.get_or_create(&l).clone(),
                        rto: tcp_rto.get_or_create(&l).clone(),
                    },
                }
            })
            .collect();
        registry.register(
            "active",
            "Long polls waiting, SSE streams and WebSockets open now",
            active,
        );
        registry.register("requests", "HTTP requests received", requests);
        registry.register("messages_published", "Messages published", published);
        registry.register(
            "messages_delivered",
            "Messages handed to clients",
            delivered,
        );
        registry.register(
            "bytes_written",
            "Bytes written to client sockets, framing included",
            bytes_written,
        );
        registry.register(
            "tcp_sockets_closed",
            "Client sockets closed, whose TCP_INFO the next two sum",
            tcp_sockets,
        );
        registry.register(
            "tcp_retransmitted_segments",
            "Segments the server's TCP retransmitted on sockets since closed",
            tcp_retrans,
        );
        registry.register(
            "tcp_timeouts",
            "Retransmission timeouts on sockets since closed (Linux 6.7 and later)",
            tcp_rto,
        );
        Metrics {
            registry,
            connections_open,
            connections_accepted,
            connections_rejected,
            rooms,
            write_stalls,
            tls_handshakes,
            tls_failures,
            message_bytes,
            memory_budget,
            evicted,
            refused,
            sync: std::sync::Mutex::new(()),
            per,
        }
    }

    /// Copies the room registry's figures in, before an encode.
    pub fn sync_rooms(&self, rooms: &crate::Rooms) {
        let _one = self
            .sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let budget = rooms.budget();
        self.rooms.set(rooms.len() as i64);
        self.message_bytes.set(budget.live() as i64);
        self.memory_budget.set(budget.limit() as i64);
        // Counters only rise, so add what the budget counted since last time.
        self.evicted
            .inc_by(budget.evicted().saturating_sub(self.evicted.get()));
        self.refused
            .inc_by(budget.refused().saturating_sub(self.refused.get()));
    }

    /// The counters of `t`.
    pub fn of(&self, t: Label) -> &PerTransport {
        &self.per[t as usize]
    }

    /// The Prometheus text exposition, with the process's own figures.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# encoding failed");
        }
        // Before the OpenMetrics end marker, if there is one.
        let at = out.rfind("# EOF").unwrap_or(out.len());
        out.insert_str(at, &process_metrics());
        out
    }
}

/// The process's CPU time, memory, threads and open files, under the
/// names of Prometheus' standard process collector (`process_*`), so a
/// load generator on another host can read what `/proc` would tell it.
/// Linux only; elsewhere, nothing.
pub fn process_metrics() -> String {
    let mut out = String::new();
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{getrusage, UsageWho};
        if let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            let cpu = secs(u.user_time()) + secs(u.system_time());
            let _ = write!(
                out,
                "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total {cpu:.6}\n"
            );
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(kib) = field("VmRSS:") {
            let _ = write!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
                kib * 1024
            );
        }
        if let Some(n) = field("Threads:") {
            let _ = write!(
                out,
                "# HELP process_threads Number of OS threads in the process.\n# TYPE process_threads gauge\nprocess_threads {n}\n"
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let _ = write!(
                out,
                "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}\n",
                fds.count()
            );
        }
    }
    out
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Counts one open long poll, stream or WebSocket while it lives.
#[derive(Debug)]
pub struct ActiveGuard(Gauge);

impl ActiveGuard {
    /// Raises `t`'s `active` gauge until dropped.
    pub fn new(metrics: &Metrics, t: Label) -> ActiveGuard {
        let g = metrics.of(t).active.clone();
        g.inc();
        ActiveGuard(g)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_labels_are_the_results_transports() {
        for t in chatbench_proto::Transport::ALL {
            let label = Label::from(t);
            assert_eq!(label.transport(), Some(t));
            assert_eq!(label.as_str(), t.as_str());
        }
        assert_eq!(Label::Publish.transport(), None);
        assert_eq!(Label::Publish.as_str(), "publish");
        assert_eq!(Label::Other.as_str(), "other");
        for (i, t) in Label::ALL.iter().enumerate() {
            assert_eq!(Label::from_u8(i as u8), *t);
        }
    }
}
