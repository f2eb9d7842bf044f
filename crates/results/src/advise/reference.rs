//! The measurements `chatbench advise` answers from: one transport at one
//! sweep point of a committed run (or of a `--measure` calibration), with
//! the workload it ran and the figures it gave.
//!
//! Only chatbench's own server reached directly over plain HTTP/1.1 and
//! WebSocket counts, with no bandwidth cap, no trace, no cut connections
//! and no saturation flag: the shape a workload's flags can describe.
//! Everything else (TLS, HTTP/2 and 3, proxies, other stacks, drops) is a
//! question those runs answer in their own reports.

use crate::model;
use crate::path::Proxy;
use crate::run_file::RunFile;
use crate::scenario::{HttpVersion, NetworkMode, Scenario};
use crate::target::{Profile, ServerKind};
use crate::Transport;
use serde::Serialize;

/// One transport at one point of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reference {
    /// The run folder, e.g. `results/battery/20261205T103259Z-72ca`.
    pub run: String,
    /// The commit it was built from.
    pub commit: String,
    /// The sweep point's label, when the run sweeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    /// The transport.
    pub transport: Transport,
    /// Clients.
    pub clients: u64,
    /// Clients per room.
    pub room_size: f64,
    /// Messages per second into a room.
    pub room_rate: f64,
    /// Round trip, s.
    pub rtt_s: f64,
    /// Packet loss each way.
    pub loss: f64,
    /// Short polling's interval, s.
    pub poll_interval_s: f64,
    /// The SSE keep-alive interval, s.
    pub sse_keepalive_s: f64,
    /// The WebSocket ping interval, s.
    pub ws_ping_s: f64,
    /// Latency p50 and p99, µs.
    pub p50_us: f64,
    /// Latency p99, µs.
    pub p99_us: f64,
    /// The model's p50 at this point, µs.
    pub model_p50_us: f64,
    /// The model's p99 at this point, µs.
    pub model_p99_us: f64,
    /// Bytes per delivered message, both directions.
    pub bytes_per_msg: f64,
    /// Requests per delivered message.
    pub requests_per_msg: f64,
    /// Deliveries per second.
    pub delivered_per_s: f64,
    /// Polling: a poll's own bytes (request, answer head, envelope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_bytes: Option<f64>,
    /// Polling: bytes per delivery besides the polls' own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_per_delivery: Option<f64>,
    /// Server CPU per delivery, µs, when measured over enough deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_delivery: Option<f64>,
    /// Server RSS per connection, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_connection: Option<f64>,
    /// Connections per client.
    pub connections_per_client: f64,
    /// Radio energy per client-hour, J, under the default LTE model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radio_j_per_client_hour: Option<f64>,
}

/// Why a point of a run cannot stand for a workload, or None when it can.
pub fn unlike_a_workload(at: &Scenario) -> Option<&'static str> {
    let n = &at.network;
    if at.target.profile != Profile::Chatbench || at.target.server != ServerKind::Chatbench {
        Some("another stack")
    } else if at.path.proxy != Proxy::None {
        Some("through a proxy")
    } else if at.protocol.tls || at.protocol.http != HttpVersion::Http1 {
        Some("TLS or HTTP/2 or 3")
    } else if n.drop_every.is_some() {
        Some("connections cut")
    } else if n.bandwidth != "unlimited" || n.trace_up.is_some() || n.trace_down.is_some() {
        Some("a capped link")
    } else if n.queue_bytes.is_some() || n.queue_packets.is_some() || n.delay_up.is_some() {
        Some("a shaped link")
    } else {
        None
    }
}

/// A run's server CPU counts when it is at least this many times the
/// CPU clock's precision (10% at most from the tick).
const MIN_CPU_TICKS: f64 = 10.0;

/// Clients below which a run's memory per connection is left out: the
/// allocator's pages make a few connections' RSS noise.
const MIN_MEMORY_CLIENTS: u64 = 100;

/// The references in `run`, read from the folder named `name`.
pub fn references(run: &RunFile, name: &str) -> Vec<Reference> {
    let s = &run.scenario;
    let mut out = Vec::new();
    for sum in &run.summary {
        let Ok(at) = s.at_point(sum.point) else {
            continue;
        };
        let bad_flag = sum
            .flags
            .iter()
            .any(|f| f == "saturated" || f == "incomplete" || f == "not_ready");
        if unlike_a_workload(&at).is_some() || bad_flag || sum.transport == Transport::WebTransport
        {
            continue;
        }
        let Some(first) = run
            .runs
            .iter()
            .find(|r| r.transport == sum.transport && r.point == sum.point && r.complete)
        else {
            continue;
        };
        let w = &first.wire.measured;
        let delivered = first.audit.delivered;
        let (poll_bytes, rest) = if !sum.transport.is_push()
            && w.answered_polls > 0
            && w.poll_overhead_bytes > 0
            && delivered > 0
        {
            let c = w.poll_overhead_bytes as f64 / w.answered_polls as f64;
            let bytes = (w.bytes_up + w.bytes_down) as f64;
            (
                Some(c),
                Some((bytes - w.answered_polls as f64 * c) / delivered as f64),
            )
        } else {
            (None, None)
        };
        let clients = at.total_clients();
        let loss = if at.network.mode == NetworkMode::Packet {
            at.network.loss
        } else {
            0.0
        };
        out.push(Reference {
            run: name.to_owned(),
            commit: run.environment.commit.clone(),
            point: sum.point_label.clone(),
            transport: sum.transport,
            clients,
            room_size: f64::from(at.clients.clients_per_room),
            room_rate: model::room_rate(&at),
            rtt_s: at.network.rtt.as_secs_f64(),
            loss,
            poll_interval_s: at.short_poll.interval.as_secs_f64(),
            sse_keepalive_s: at.server.sse_keepalive.map_or(15.0, |d| d.as_secs_f64()),
            ws_ping_s: at.server.ws_ping_interval.map_or(30.0, |d| d.as_secs_f64()),
            p50_us: sum.p50_us.median,
            p99_us: sum.p99_us.median,
            model_p50_us: model::quantile_us(&at, sum.transport, 0.5),
            model_p99_us: model::quantile_us(&at, sum.transport, 0.99),
            bytes_per_msg: sum.bytes_per_msg.median,
            requests_per_msg: sum.requests_per_msg.median,
            delivered_per_s: sum.delivered_per_s.median,
            poll_bytes,
            rest_per_delivery: rest,
            cpu_us_per_delivery: sum
                .server_cpu_ms_per_1k
                .as_ref()
                .filter(|_| {
                    first.server.as_ref().is_some_and(|c| {
                        c.cpu_ms_measured >= MIN_CPU_TICKS * c.cpu_precision_ms.max(1e-9)
                    })
                })
                .map(|c| c.median),
            rss_per_connection: sum
                .rss_per_connection
                .as_ref()
                .filter(|_| clients >= MIN_MEMORY_CLIENTS)
                .map(|r| r.median),
            connections_per_client: first.connections as f64 / clients.max(1) as f64,
            radio_j_per_client_hour: first
                .radio
                .as_ref()
                .filter(|_| at.energy.is_default())
                .map(|r| r.j_per_client_hour),
        });
    }
    out
}
