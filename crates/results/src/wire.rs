//! Wire counters as results hold them: [`WireSnapshot`] (bytes, requests,
//! connections and segments at one moment) and the on-wire estimate.

/// A plain copy of the load generator's live wire counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireSnapshot {
    /// Bytes written by clients.
    pub bytes_up: u64,
    /// Bytes read by clients.
    pub bytes_down: u64,
    /// HTTP requests sent.
    pub requests: u64,
    /// Poll answers that held no message.
    pub empty_polls: u64,
    /// Polls answered with messages or without (absent in files that
    /// predate it, as is the next).
    #[serde(default)]
    pub answered_polls: u64,
    /// Their bytes less the messages inside: requests, response heads and
    /// each answer's JSON envelope (`{"messages":[],"next":..}`).
    #[serde(default)]
    pub poll_overhead_bytes: u64,
    /// TCP connections opened.
    pub connections: u64,
    /// TCP segments received (closed connections only), or UDP datagrams
    /// (counted as they pass).
    pub segs_in: u64,
    /// TCP segments sent (closed connections only), or UDP datagrams.
    pub segs_out: u64,
    /// TLS handshakes completed (absent in files that predate TLS, as are
    /// the next two).
    #[serde(default)]
    pub tls_handshakes: u64,
    /// Their bytes, both directions (on the socket, from the TCP connect
    /// to the handshake's end).
    #[serde(default)]
    pub tls_handshake_bytes: u64,
    /// Their time, summed: from the TCP connect to the handshake's end, in
    /// microseconds.
    #[serde(default)]
    pub tls_handshake_us: u64,
}

impl std::ops::Sub for WireSnapshot {
    type Output = WireSnapshot;
    fn sub(self, o: WireSnapshot) -> WireSnapshot {
        WireSnapshot {
            bytes_up: self.bytes_up.saturating_sub(o.bytes_up),
            bytes_down: self.bytes_down.saturating_sub(o.bytes_down),
            requests: self.requests.saturating_sub(o.requests),
            empty_polls: self.empty_polls.saturating_sub(o.empty_polls),
            answered_polls: self.answered_polls.saturating_sub(o.answered_polls),
            poll_overhead_bytes: self
                .poll_overhead_bytes
                .saturating_sub(o.poll_overhead_bytes),
            connections: self.connections.saturating_sub(o.connections),
            segs_in: self.segs_in.saturating_sub(o.segs_in),
            segs_out: self.segs_out.saturating_sub(o.segs_out),
            tls_handshakes: self.tls_handshakes.saturating_sub(o.tls_handshakes),
            tls_handshake_bytes: self
                .tls_handshake_bytes
                .saturating_sub(o.tls_handshake_bytes),
            tls_handshake_us: self.tls_handshake_us.saturating_sub(o.tls_handshake_us),
        }
    }
}

/// Headers per TCP segment: IPv4 (20) and TCP with the timestamp option
/// (32).
pub const TCP_HEADERS: u64 = 20 + 32;

/// Headers per UDP datagram (QUIC's, for HTTP/3): IPv4 (20) and UDP (8).
pub const UDP_HEADERS: u64 = 20 + 8;

/// What a transport run's client packets travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// TCP segments, which are read from `TCP_INFO` as each connection
    /// closes: only the whole run's count is known.
    Tcp,
    /// UDP datagrams (QUIC), counted at the socket as they pass: the
    /// measured window's count is exact.
    Udp,
}

impl Carrier {
    /// The IP and transport headers per segment or datagram.
    pub fn headers(self) -> u64 {
        match self {
            Carrier::Tcp => TCP_HEADERS,
            Carrier::Udp => UDP_HEADERS,
        }
    }
}

/// Estimated on-wire bytes: payload plus `headers` bytes per segment or
/// datagram ([`TCP_HEADERS`] or [`UDP_HEADERS`]; Ethernet's 14 + 4 FCS + 20
/// preamble and gap are left out: loopback has none).
pub fn on_wire_bytes(payload: u64, segments: u64, headers: u64) -> u64 {
    payload + segments * headers
}

impl std::ops::Add for WireSnapshot {
    type Output = WireSnapshot;
    fn add(self, o: WireSnapshot) -> WireSnapshot {
        WireSnapshot {
            bytes_up: self.bytes_up + o.bytes_up,
            bytes_down: self.bytes_down + o.bytes_down,
            requests: self.requests + o.requests,
            empty_polls: self.empty_polls + o.empty_polls,
            answered_polls: self.answered_polls + o.answered_polls,
            poll_overhead_bytes: self.poll_overhead_bytes + o.poll_overhead_bytes,
            connections: self.connections + o.connections,
            segs_in: self.segs_in + o.segs_in,
            segs_out: self.segs_out + o.segs_out,
            tls_handshakes: self.tls_handshakes + o.tls_handshakes,
            tls_handshake_bytes: self.tls_handshake_bytes + o.tls_handshake_bytes,
            tls_handshake_us: self.tls_handshake_us + o.tls_handshake_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_file::WireResult;

    /// Over TCP segments come from the whole run, scaled by the measured
    /// window's share of the bytes; over UDP the window's own datagrams.
    #[test]
    fn per_message_segments_and_on_wire_bytes_by_carrier() {
        let measured = WireSnapshot {
            bytes_up: 40,
            bytes_down: 60,
            segs_in: 3,
            segs_out: 1,
            ..WireSnapshot::default()
        };
        let total = WireSnapshot {
            bytes_up: 400,
            bytes_down: 600,
            segs_in: 6,
            segs_out: 4,
            ..WireSnapshot::default()
        };
        let tcp = WireResult::new(measured, total, 2, 30.0, Carrier::Tcp).per_msg;
        assert_eq!(tcp.bytes, 50.0);
        assert_eq!(tcp.segments, 10.0 * 0.1 / 2.0);
        assert_eq!(tcp.on_wire_bytes, (1000.0 + 10.0 * 52.0) * 0.1 / 2.0);
        let udp = WireResult::new(measured, total, 2, 30.0, Carrier::Udp).per_msg;
        assert_eq!(udp.bytes, 50.0);
        assert_eq!(udp.segments, 2.0);
        assert_eq!(udp.on_wire_bytes, (100.0 + 4.0 * 28.0) / 2.0);
        assert_eq!(udp.payload_bytes, 30.0);
    }
}
