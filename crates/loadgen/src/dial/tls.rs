//! TLS and ALPN over a counted socket ([`Connector`]), and the byte
//! stream a client connection is read and written through ([`Stream`]).
//! Bytes are counted on the socket, below TLS, so they are the ciphertext
//! a packet capture would see.

use crate::wire::{CutHandle, WireCounter, WireStats};
use chatbench_results::scenario::Protocol;
use rustls::pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How a run's clients reach the server.
#[derive(Clone)]
pub struct Connector {
    tls: Option<tokio_rustls::TlsConnector>,
    /// With TLS and HTTP/2: the same trust offering only `http/1.1`, for
    /// a WebSocket that falls back to HTTP/1.1.
    tls_h1: Option<tokio_rustls::TlsConnector>,
    http2: bool,
    /// With HTTP/3 or WebTransport: QUIC.
    quic: Option<super::quic::QuicConnector>,
    /// HTTP requests go over HTTP/3.
    http3: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field("http2", &self.http2)
            .finish()
    }
}

impl Connector {
    /// The scenario's protocol; with TLS, trusting exactly the CA
    /// certificates in `ca_pems` (PEM text each), and offering by ALPN
    /// only the HTTP version asked for.
    pub fn new(protocol: &Protocol, ca_pems: &[String]) -> io::Result<Connector> {
        let http2 = protocol.is_http2();
        if protocol.is_http3() {
            // WebSocket is not carried over HTTP/3 (RFC 9220 is not
            // served): it opens over HTTP/1.1 with TLS on TCP.
            return Ok(Connector {
                tls: Some(tls_connector(ca_pems, false)?),
                tls_h1: None,
                http2: false,
                quic: Some(super::quic::QuicConnector::new(ca_pems)?),
                http3: true,
            });
        }
        let (tls, tls_h1) = match (protocol.tls, http2) {
            (false, _) => (None, None),
            (true, false) => (Some(tls_connector(ca_pems, false)?), None),
            (true, true) => (
                Some(tls_connector(ca_pems, true)?),
                Some(tls_connector(ca_pems, false)?),
            ),
        };
        Ok(Connector {
            tls,
            tls_h1,
            http2,
            quic: None,
            http3: false,
        })
    }

    /// True when clients' HTTP requests go over HTTP/3.
    pub fn is_http3(&self) -> bool {
        self.http3
    }

    /// True when clients speak HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// With QUIC too (for WebTransport), trusting exactly `ca_pems`.
    pub fn with_quic(mut self, ca_pems: &[String]) -> io::Result<Connector> {
        if self.quic.is_none() {
            self.quic = Some(super::quic::QuicConnector::new(ca_pems)?);
        }
        Ok(self)
    }

    /// With HTTP/3 (or WebTransport), how clients make their QUIC
    /// connections.
    pub fn quic(&self) -> Option<&super::quic::QuicConnector> {
        self.quic.as_ref()
    }

    /// `https` with TLS (always with HTTP/3), else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// TLS over a connected, counted socket to `server`, when the run uses
    /// TLS: the handshake's bytes and time (from `tcp_start`, the TCP
    /// connect's start) go to `stats`.
    pub async fn secure(
        &self,
        tcp: WireCounter,
        server: std::net::SocketAddr,
        tcp_start: tokio::time::Instant,
        stats: &WireStats,
    ) -> io::Result<Stream> {
        self.secure_as(tcp, server, tcp_start, stats, self.http2)
            .await
    }

    /// [`Connector::secure`], offering `h2` by ALPN only when `http2`
    /// (false: `http/1.1`, as a browser opens a WebSocket's connection
    /// when the server's HTTP/2 does not carry WebSockets).
    pub async fn secure_as(
        &self,
        tcp: WireCounter,
        server: std::net::SocketAddr,
        tcp_start: tokio::time::Instant,
        stats: &WireStats,
        http2: bool,
    ) -> io::Result<Stream> {
        let tls = match (&self.tls, &self.tls_h1, http2) {
            (None, _, _) => return Ok(Stream::Plain(tcp)),
            (Some(_), Some(h1), false) => h1,
            (Some(tls), _, _) => tls,
        };
        let http2 = http2 && self.http2;
        let handle = tcp.cut_handle();
        let name = ServerName::IpAddress(server.ip().into());
        let stream = tls.connect(name, tcp).await?;
        let (up, down) = handle.bytes();
        stats.tls_handshakes.fetch_add(1, Relaxed);
        stats.tls_handshake_bytes.fetch_add(up + down, Relaxed);
        stats
            .tls_handshake_us
            .fetch_add(tcp_start.elapsed().as_micros() as u64, Relaxed);
        let want: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
        match stream.get_ref().1.alpn_protocol() {
            Some(p) if p == want => Ok(Stream::Tls(Box::new(stream))),
            other => Err(io::Error::other(format!(
                "the server chose ALPN {:?}, not {:?}",
                other.map(String::from_utf8_lossy),
                String::from_utf8_lossy(want)
            ))),
        }
    }
}

/// A rustls client that trusts `ca_pems` and offers `h2` or `http/1.1`.
pub fn tls_connector(ca_pems: &[String], http2: bool) -> io::Result<tokio_rustls::TlsConnector> {
    let alpn: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(
        super::trust::client_config(ca_pems, &[alpn])?,
    )))
}

/// A client connection's byte stream: the counted socket, or TLS over it.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(WireCounter),
    /// TLS over the counted socket.
    Tls(Box<tokio_rustls::client::TlsStream<WireCounter>>),
}

impl Stream {
    /// The counted socket underneath.
    pub fn counter(&self) -> &WireCounter {
        match self {
            Stream::Plain(c) => c,
            Stream::Tls(t) => t.get_ref().0,
        }
    }

    /// True over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Ends the connection: a FIN (over TLS, after a `close_notify`), then
    /// over TLS reads until the server's own close, so that what the server
    /// writes in answer (its `close_notify`, HTTP/2's GOAWAY) is read and
    /// the byte counts on both sides agree.
    pub async fn close(self) {
        let tls = self.is_tls();
        self.close_then(tls).await;
    }

    /// Ends the connection with a FIN and reads until the server's own
    /// close, over TLS or not: for a server that may still be writing (an
    /// SSE stream's keep-alives), so that what it wrote meanwhile is
    /// counted on both sides.
    pub async fn close_reading(self) {
        self.close_then(true).await;
    }

    async fn close_then(mut self, read_to_end: bool) {
        let _ = self.shutdown().await;
        if read_to_end {
            drain(&mut self).await;
        }
    }
}

/// Reads and throws away until EOF, an error, or 5 s.
pub async fn drain<R: AsyncRead + Unpin>(io: &mut R) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(c) => Pin::new(c).poll_flush(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Stream::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a client keeps of a connection once HTTP owns its stream: the cut
/// (and byte counts) and the arrival stamp of the last read.
#[derive(Debug, Clone)]
pub struct Handles {
    /// Cuts the socket, and reads its byte counts.
    pub cut: CutHandle,
    /// The kernel's arrival stamp of the socket's last read.
    pub read_at: Arc<AtomicU64>,
}

impl Handles {
    /// The handles of a client's QUIC connection and its socket's counts.
    pub fn quic(conn: quinn::Connection, counts: Arc<crate::wire::UdpCounts>) -> Handles {
        Handles {
            read_at: counts.read_at.clone(),
            cut: CutHandle::quic(conn, counts),
        }
    }

    /// The handles of `stream`'s socket.
    pub fn of(stream: &Stream) -> Handles {
        Handles {
            cut: stream.counter().cut_handle(),
            read_at: stream.counter().read_at(),
        }
    }
}
