//! QUIC for HTTP/3 (`protocol.http = "3"`): each client's own UDP socket,
//! its bytes counted as they pass ([`CountedUdp`]), a quinn endpoint on it
//! and one connection to the server ([`QuicConnector`]).
//!
//! Bytes are counted at the UDP socket: every datagram's payload, which is
//! QUIC's headers and ciphertext (UDP and IP headers are not in it), as
//! the server counts each connection's (`udp_tx` in quinn's statistics).
//! A client has a socket of its own, so everything that reaches it is its
//! connection's, including what arrives after the connection has closed.

use crate::wire::{UdpCounts, WireStats};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// A UDP socket whose datagrams are counted into [`UdpCounts`].
#[derive(Debug)]
struct CountedUdp {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
    counts: Arc<UdpCounts>,
}

/// Datagrams in `len` bytes sent or received as segments of `size`.
fn datagrams(len: usize, size: usize) -> u64 {
    len.div_ceil(size.max(1)) as u64
}

impl quinn::AsyncUdpSocket for CountedUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, t: &quinn::udp::Transmit) -> io::Result<()> {
        self.inner.try_send(t)?;
        let n = t.contents.len();
        let segs = datagrams(n, t.segment_size.unwrap_or(n));
        self.counts.sent(n as u64, segs);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &polled {
            let (mut bytes, mut segs) = (0u64, 0u64);
            for m in &meta[..*n] {
                bytes += m.len as u64;
                segs += datagrams(m.len, m.stride);
            }
            self.counts.received(bytes, segs);
        }
        polled
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// A client's QUIC connection, its endpoint (which owns the socket) and
/// the socket's counts.
#[derive(Debug)]
pub struct QuicConn {
    /// The connection.
    pub conn: quinn::Connection,
    /// Its endpoint: dropped with the connection, after it is idle.
    pub endpoint: quinn::Endpoint,
    /// The socket's counts.
    pub counts: Arc<UdpCounts>,
}

/// The QUIC stack of both sides, as run.json names it.
pub const IMPLEMENTATION: &str =
    "quinn 0.11; h3 0.0.8 (h3-webtransport 0.1.2 on the server, the session's HTTP/3 by hand on the client)";

/// The congestion controller both sides' QUIC connections use, as run.json
/// names it: CUBIC, as Linux's TCP here, set on both sides
/// (`chatbench_server`'s `h3.rs` too).
pub const CONGESTION_CONTROL: &str = "cubic";

/// How clients reach an HTTP/3 server: the QUIC and TLS configuration.
#[derive(Clone)]
pub struct QuicConnector {
    config: quinn::ClientConfig,
}

impl std::fmt::Debug for QuicConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuicConnector")
    }
}

impl QuicConnector {
    /// Trusting exactly `ca_pems`, offering ALPN `h3`.
    pub fn new(ca_pems: &[String]) -> io::Result<QuicConnector> {
        let tls = super::trust::client_config(ca_pems, &[b"h3"])?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| io::Error::other(format!("TLS for QUIC: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        // The server's idle timeout (which outlasts its longest long poll)
        // decides; the client's is longer, and it sends no keep-alives.
        transport
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(Duration::from_secs(3600))
                    .map_err(io::Error::other)?,
            ))
            .congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()));
        config.transport_config(Arc::new(transport));
        Ok(QuicConnector { config })
    }

    /// A connection to `server` from a socket of its own, bound to `source`
    /// (or made inside `netns`); its handshake's bytes and time, from
    /// `start`, go to `stats`.
    pub async fn connect(
        &self,
        server: SocketAddr,
        source: Option<IpAddr>,
        netns: Option<&crate::packet::netns::Netns>,
        stats: Arc<WireStats>,
        radio: Arc<crate::radio::ClientRadio>,
        start: Instant,
    ) -> io::Result<QuicConn> {
        let socket = match netns {
            Some(ns) => ns.udp_socket()?,
            None => socket2::Socket::new(
                socket2::Domain::for_address(server),
                socket2::Type::DGRAM,
                None,
            )?,
        };
        let any = match server {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        socket.bind(&SocketAddr::new(source.unwrap_or(any), 0).into())?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let inner = quinn::Runtime::wrap_udp_socket(&*runtime, socket.into())?;
        let counts = Arc::new(UdpCounts::new(stats.clone()));
        let _ = counts.radio.set(radio);
        let counted = Arc::new(CountedUdp {
            inner,
            counts: counts.clone(),
        });
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            counted,
            runtime,
        )?;
        let conn = endpoint
            .connect_with(self.config.clone(), server, &server.ip().to_string())
            .map_err(io::Error::other)?
            .await
            .map_err(io::Error::other)?;
        let (up, down) = counts.bytes();
        stats.connections.fetch_add(1, Relaxed);
        stats.tls_handshakes.fetch_add(1, Relaxed);
        stats.tls_handshake_bytes.fetch_add(up + down, Relaxed);
        stats
            .tls_handshake_us
            .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
        Ok(QuicConn {
            conn,
            endpoint,
            counts,
        })
    }
}

impl QuicConn {
    /// Closes the connection and waits until the server has its close (or
    /// 5 s), so that both sides have counted the same datagrams.
    pub async fn close(&self) {
        self.conn.close(0u32.into(), b"");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::datagrams;

    #[test]
    fn segments_are_counted_as_datagrams() {
        assert_eq!(datagrams(1200, 1200), 1);
        assert_eq!(datagrams(2500, 1200), 3);
        assert_eq!(datagrams(0, 0), 0);
    }
}
