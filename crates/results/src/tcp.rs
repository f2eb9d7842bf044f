//! TCP's own view of a transport run's connections, from Linux's
//! `TCP_INFO`: what each side's kernel retransmitted, how often its
//! retransmission timer fired, the round trip it measured and the lowest
//! congestion window it ran with.
//!
//! The load generator reads each client socket as it closes (and samples
//! the window and the bytes in flight after its writes); the server reads
//! each accepted socket as it closes and exports the sums on `/metrics`.
//! Clients send the uplink (publishes, poll requests) and the server the
//! downlink (every delivery), so a lost segment is retransmitted by the
//! side that sent it, and the two sides together count every
//! retransmission of the run.

use serde::{Deserialize, Serialize};

/// Linux's smallest retransmission timeout (`TCP_RTO_MIN`, 200 ms): a
/// segment lost at the tail of a burst, with nothing after it to trigger
/// a fast retransmit, waits at least this long.
pub const RTO_FLOOR_MS: f64 = 200.0;

/// Sums over one side's sockets, as they closed. Adding two (two load
/// generator workers) sums the counts and keeps the extremes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpTotals {
    /// Sockets read.
    pub sockets: u64,
    /// Segments retransmitted (`tcpi_total_retrans`).
    pub retrans_segs: u64,
    /// Retransmission timeouts (`tcpi_total_rto`, Linux 6.7 and later; 0
    /// on older kernels, where `rto_known` is false).
    pub rto: u64,
    /// Whether the kernel reports timeouts (every socket read had the
    /// field).
    pub rto_known: bool,
    /// Smoothed RTT at close (`tcpi_rtt`), summed over the sockets, µs.
    pub srtt_us_sum: u64,
    /// The largest of them, µs.
    pub srtt_us_max: u64,
    /// The lowest congestion window seen, in segments (0: none seen).
    pub min_cwnd: u32,
    /// The most bytes in flight seen (`tcpi_unacked` × `tcpi_snd_mss`).
    pub max_in_flight_bytes: u64,
}

impl TcpTotals {
    /// Adds `o`'s sockets.
    pub fn add(&mut self, o: &TcpTotals) {
        let known = (self.sockets == 0 || self.rto_known) && (o.sockets == 0 || o.rto_known);
        self.sockets += o.sockets;
        self.retrans_segs += o.retrans_segs;
        self.rto += o.rto;
        self.rto_known = known && self.sockets > 0;
        self.srtt_us_sum += o.srtt_us_sum;
        self.srtt_us_max = self.srtt_us_max.max(o.srtt_us_max);
        self.min_cwnd = lowest_cwnd(self.min_cwnd, o.min_cwnd);
        self.max_in_flight_bytes = self.max_in_flight_bytes.max(o.max_in_flight_bytes);
    }
}

/// The lower of two windows, where 0 means "none seen".
pub fn lowest_cwnd(a: u32, b: u32) -> u32 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// The server's sums as `/metrics` gives them (the sockets it closed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTcp {
    /// Sockets read as they closed.
    pub sockets: u64,
    /// Segments retransmitted.
    pub retrans_segs: u64,
    /// Retransmission timeouts.
    pub rto: u64,
    /// Connections of the run still open on the server when it was read:
    /// their retransmissions are not in the sums.
    pub still_open: u64,
}

/// One side's figures in `run.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpSide {
    /// Sockets read.
    pub sockets: u64,
    /// Segments retransmitted.
    pub retrans_segs: u64,
    /// Retransmission timeouts (None where the kernel does not count them).
    pub rto: Option<u64>,
    /// Mean smoothed RTT at close, ms.
    pub srtt_ms_mean: f64,
    /// Largest smoothed RTT at close, ms.
    pub srtt_ms_max: f64,
    /// Lowest congestion window seen, segments (None: none sampled).
    pub min_cwnd: Option<u32>,
    /// Most bytes in flight seen.
    pub max_in_flight_bytes: u64,
}

impl From<&TcpTotals> for TcpSide {
    fn from(t: &TcpTotals) -> TcpSide {
        TcpSide {
            sockets: t.sockets,
            retrans_segs: t.retrans_segs,
            rto: t.rto_known.then_some(t.rto),
            srtt_ms_mean: t.srtt_us_sum as f64 / t.sockets.max(1) as f64 / 1000.0,
            srtt_ms_max: t.srtt_us_max as f64 / 1000.0,
            min_cwnd: (t.min_cwnd > 0).then_some(t.min_cwnd),
            max_in_flight_bytes: t.max_in_flight_bytes,
        }
    }
}

/// TCP's view of one transport run in `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpView {
    /// The load generator's client sockets: they send the uplink.
    pub client: TcpSide,
    /// The server's sockets (the downlink's sender), from `/metrics`; None
    /// when the server was not read (another process's server without
    /// these metrics, or a run that ended early).
    pub server: Option<ServerTcp>,
    /// Segments retransmitted by both sides per 1,000 deliveries.
    pub retrans_per_1k_msgs: f64,
    /// The latency above which a delivery counts as late by a
    /// retransmission timeout: the link's RTT, plus [`RTO_FLOOR_MS`], plus
    /// the poll interval for short polling (whose deliveries wait up to
    /// it by design), ms.
    pub late_threshold_ms: f64,
    /// Share of deliveries later than that: those that waited on a
    /// retransmission timeout, and any late for another reason (a
    /// saturated side, a full queue), so an upper bound on the first.
    pub late_share: f64,
}

impl TcpView {
    /// Puts the view together: `delivered` deliveries over the whole run
    /// (the retransmissions' span), and `late` of the `timed` deliveries
    /// of the measured window over `late_threshold_ms`.
    pub fn new(
        client: &TcpTotals,
        server: Option<ServerTcp>,
        delivered: u64,
        late_threshold_ms: f64,
        (late, timed): (u64, u64),
    ) -> TcpView {
        let retrans = client.retrans_segs + server.map_or(0, |s| s.retrans_segs);
        TcpView {
            client: TcpSide::from(client),
            server,
            retrans_per_1k_msgs: if delivered == 0 {
                0.0
            } else {
                retrans as f64 * 1000.0 / delivered as f64
            },
            late_threshold_ms,
            late_share: if timed == 0 {
                0.0
            } else {
                late as f64 / timed as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_sums_counts_and_keeps_the_extremes() {
        let mut a = TcpTotals {
            sockets: 2,
            retrans_segs: 3,
            rto: 1,
            rto_known: true,
            srtt_us_sum: 100_000,
            srtt_us_max: 60_000,
            min_cwnd: 0,
            max_in_flight_bytes: 3000,
        };
        let b = TcpTotals {
            sockets: 1,
            retrans_segs: 4,
            rto: 2,
            rto_known: true,
            srtt_us_sum: 70_000,
            srtt_us_max: 70_000,
            min_cwnd: 4,
            max_in_flight_bytes: 1500,
        };
        a.add(&b);
        assert_eq!(
            a,
            TcpTotals {
                sockets: 3,
                retrans_segs: 7,
                rto: 3,
                rto_known: true,
                srtt_us_sum: 170_000,
                srtt_us_max: 70_000,
                min_cwnd: 4,
                max_in_flight_bytes: 3000,
            }
        );
        a.add(&TcpTotals {
            sockets: 1,
            min_cwnd: 2,
            ..TcpTotals::default()
        });
        assert_eq!((a.min_cwnd, a.rto_known), (2, false));
        // An empty side changes nothing, not even whether timeouts are known.
        let mut e = TcpTotals::default();
        e.add(&b);
        assert!(e.rto_known);
        e.add(&TcpTotals::default());
        assert!(e.rto_known);
    }

    #[test]
    fn the_view_counts_both_sides_per_delivery() {
        let client = TcpTotals {
            sockets: 4,
            retrans_segs: 5,
            rto: 1,
            rto_known: true,
            srtt_us_sum: 200_000,
            srtt_us_max: 80_000,
            min_cwnd: 3,
            max_in_flight_bytes: 2896,
        };
        let server = ServerTcp {
            sockets: 4,
            retrans_segs: 15,
            rto: 2,
            still_open: 0,
        };
        let v = TcpView::new(&client, Some(server), 2000, 250.0, (50, 2000));
        assert_eq!(v.retrans_per_1k_msgs, 10.0);
        assert_eq!(v.late_share, 0.025);
        assert_eq!(v.client.srtt_ms_mean, 50.0);
        assert_eq!(v.client.srtt_ms_max, 80.0);
        assert_eq!(v.client.rto, Some(1));
        assert_eq!(v.client.min_cwnd, Some(3));
        let none = TcpView::new(&TcpTotals::default(), None, 0, 200.0, (0, 0));
        assert_eq!((none.retrans_per_1k_msgs, none.late_share), (0.0, 0.0));
        assert_eq!((none.client.rto, none.client.min_cwnd), (None, None));
    }
}
