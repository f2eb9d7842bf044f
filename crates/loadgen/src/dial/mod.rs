//! The dial seam: every connection the load generator opens is made here.
//!
//! A client connection is put together in layers, each in one file:
//! - [`tcp`]: the socket, from the client's source address;
//! - [`crate::wire::WireCounter`]: its bytes counted, through the emulated
//!   link when the scenario has one;
//! - [`tls`]: TLS and ALPN when the scenario asks ([`Connector`]);
//! - [`quic`]: instead of the three above for HTTP/3, a QUIC connection
//!   from a counted UDP socket of the client's own;
//! - [`http`]: HTTP/1.1, HTTP/2 or HTTP/3 above ([`HttpConn`]);
//! - [`websocket`]: a WebSocket over either ([`WsConn`]);
//! - [`webtransport`]: a WebTransport session over QUIC ([`webtransport::WtConn`]).
//!
//! The [`Dialer`] carries what those layers need for a run (the connector,
//! the link, the wire counters, the recorder, the request headers, which
//! server owns each room), and nothing of the clients' own state. The
//! control and clock connections to a server ([`Dialer::control`],
//! [`Dialer::clock`]) are plain TCP, counted apart from the clients'.
//! A new way to connect is a new method here and nothing else; a test
//! (`crates/cli/tests/docs.rs`) fails when a socket is opened or a
//! protocol's handshake is started anywhere else.

pub mod http;
pub mod probe;
pub mod quic;
pub mod tcp;
pub mod tls;
pub mod trust;
pub mod websocket;
pub mod webtransport;

pub use http::{HttpConn, HttpResult, SharedH2};
pub use tls::{Connector, Handles, Stream};
pub use websocket::WsConn;

use crate::h2::H2Conn;
use crate::h3::H3Conn;
use crate::link::LinkSpec;
use crate::packet::netns::Netns;
use crate::profile::Headers;
use crate::radio::Radios;
use crate::record::{Metric, Recorder};
use crate::scenario::Scenario;
use crate::wire::{WireCounter, WireStats};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Makes the connections of one transport run's clients. A client is named
/// by its key (its global number), which picks its room's server and its
/// source address.
#[derive(Debug)]
pub struct Dialer {
    connector: Connector,
    link: Option<LinkSpec>,
    source_addresses: u64,
    clients_per_room: u64,
    /// The server process that owns each room, by room index.
    room_servers: Vec<SocketAddr>,
    /// The request headers of `protocol.headers`, for each server.
    headers: Vec<(SocketAddr, Arc<Headers>)>,
    wire: Arc<WireStats>,
    rec: Arc<Recorder>,
    /// In packet mode, the clients' network namespace: every client socket
    /// is made inside it, so its packets cross the packet-level link.
    netns: Option<Arc<Netns>>,
    /// A WebSocket goes over a TLS connection of its own that offers only
    /// HTTP/1.1, even in an HTTP/2 run: the proxy in front does not allow
    /// extended CONNECT (what a browser does then).
    websocket_h1: bool,
    /// Each client's radio, which its connections tell of their packets.
    radios: Radios,
}

impl Dialer {
    /// The dialer for `s`'s clients: room `i` lives on `room_servers[i]`,
    /// one of `servers`; TLS trusts exactly `ca_pems`. Bytes are counted
    /// into `wire`, connect times recorded into `rec`.
    pub fn new(
        s: &Scenario,
        room_servers: Vec<SocketAddr>,
        servers: &[SocketAddr],
        ca_pems: &[String],
        wire: Arc<WireStats>,
        rec: Arc<Recorder>,
        netns: Option<&str>,
    ) -> io::Result<Dialer> {
        let netns = netns.map(Netns::open).transpose()?.map(Arc::new);
        let mut connector = Connector::new(&s.protocol, ca_pems)?;
        if s.run_transports().contains(&crate::Transport::WebTransport) {
            connector = connector.with_quic(ca_pems)?;
        }
        let mut headers = Vec::new();
        for &addr in servers {
            let h = Headers::new(&s.protocol, connector.scheme(), &addr.to_string())
                .map_err(io::Error::other)?;
            headers.push((addr, Arc::new(h)));
        }
        Ok(Dialer {
            connector,
            link: LinkSpec::of(&s.network),
            source_addresses: s.clients.source_addresses as u64,
            clients_per_room: s.clients.clients_per_room.max(1) as u64,
            room_servers,
            headers,
            wire,
            rec,
            netns,
            websocket_h1: false,
            radios: Radios::new(s.energy),
        })
    }

    /// With `yes`, a WebSocket in an HTTP/2 run goes over HTTP/1.1 on a
    /// TLS connection of its own ([`crate::dial::probe`] tells when).
    pub fn with_websocket_h1(mut self, yes: bool) -> Dialer {
        self.websocket_h1 = yes;
        self
    }

    /// The server process that client `key`'s room lives on.
    pub fn server_of(&self, key: u64) -> SocketAddr {
        self.room_servers[(key / self.clients_per_room) as usize]
    }

    /// The local address client `key` connects from: with
    /// `clients.source_addresses = N` above 1 and a loopback server,
    /// 127.0.0.(1 + key % N); otherwise the kernel's choice.
    fn source_of(&self, key: u64, server: SocketAddr) -> Option<IpAddr> {
        let n = self.source_addresses;
        (n > 1 && server.ip().is_loopback() && server.is_ipv4())
            .then(|| IpAddr::from([127, 0, 0, 1 + (key % n) as u8]))
    }

    /// The request headers for requests to `server`.
    fn headers_for(&self, server: SocketAddr) -> Arc<Headers> {
        self.headers
            .iter()
            .find(|(a, _)| *a == server)
            .map(|(_, h)| h.clone())
            .unwrap_or_default()
    }

    /// A counted connection for client `key` to `addr`, from its source
    /// address, through the scenario's emulated link when it has one.
    pub async fn tcp(&self, key: u64, addr: SocketAddr) -> io::Result<WireCounter> {
        let counter = if let Some(ns) = &self.netns {
            let stream = tcp::open_in(ns, addr).await?;
            WireCounter::new(stream, None, self.wire.clone()).await?
        } else {
            let source = self.source_of(key, addr);
            tcp::counted(addr, source, self.link, self.wire.clone()).await?
        };
        // The connect's SYN and SYN-ACK, which the counter does not see.
        let radio = self.radios.client(key);
        radio.packet(crate::clock::unix_now_us(), 0, 0);
        counter.count_radio(radio);
        Ok(counter)
    }

    /// The radios of this run's clients ([`crate::radio`]).
    pub fn radios(&self) -> &Radios {
        &self.radios
    }

    /// A connection for client `key` to its room's server: TCP, then TLS
    /// when the scenario asks. With the server's address.
    pub async fn stream(&self, key: u64) -> io::Result<(Stream, SocketAddr)> {
        self.stream_as(key, self.connector.is_http2()).await
    }

    /// [`Dialer::stream`], offering HTTP/2 by ALPN only when `http2`.
    async fn stream_as(&self, key: u64, http2: bool) -> io::Result<(Stream, SocketAddr)> {
        let addr = self.server_of(key);
        let start = Instant::now();
        let tcp = self.tcp(key, addr).await?;
        let stream = self
            .connector
            .secure_as(tcp, addr, start, &self.wire, http2)
            .await?;
        Ok((stream, addr))
    }

    /// An HTTP/3 connection for client `key`: QUIC from a UDP socket of
    /// its own, then HTTP/3's control streams. Its connect time is recorded.
    pub async fn h3(&self, key: u64) -> io::Result<Arc<H3Conn>> {
        let start = Instant::now();
        let (conn, addr) = self.quic(key).await?;
        let conn = H3Conn::handshake(conn, format!("https://{addr}")).await?;
        self.rec
            .record(key, Metric::Connect, start.elapsed().as_micros() as u64);
        Ok(Arc::new(conn))
    }

    /// An HTTP/2 connection for client `key` ([`Dialer::stream`], then
    /// HTTP/2's preface and settings); with `extended_connect`, once the
    /// server allows WebSocket over it. Its connect time is recorded.
    pub async fn h2(&self, key: u64, extended_connect: bool) -> io::Result<Arc<H2Conn>> {
        let start = Instant::now();
        let (stream, addr) = self.stream(key).await?;
        let base = format!("{}://{addr}", self.connector.scheme());
        let conn = H2Conn::handshake(stream, base, extended_connect).await?;
        self.rec
            .record(key, Metric::Connect, start.elapsed().as_micros() as u64);
        Ok(conn)
    }

    /// Client `key`'s HTTP connection: over HTTP/1.1 a connection of its
    /// own, its connect time recorded; over HTTP/2 the client's `shared`
    /// one, made when it has none open.
    pub async fn http(&self, key: u64, shared: &SharedH2) -> HttpResult<HttpConn> {
        if self.connector.is_http3() {
            let mut slot = shared.h3.lock().await;
            let conn = match slot.as_ref().filter(|c| !c.is_closed()) {
                Some(c) => c.clone(),
                None => {
                    let c = self.h3(key).await?;
                    *slot = Some(c.clone());
                    c
                }
            };
            let headers = self.headers_for(self.server_of(key));
            return Ok(HttpConn::h3(conn, self.wire.clone(), headers));
        }
        if !self.connector.is_http2() {
            let start = Instant::now();
            let (stream, addr) = self.stream(key).await?;
            self.rec
                .record(key, Metric::Connect, start.elapsed().as_micros() as u64);
            let headers = self.headers_for(addr);
            return Ok(HttpConn::h1(
                stream,
                addr.to_string(),
                self.wire.clone(),
                headers,
            ));
        }
        let mut slot = shared.slot.lock().await;
        let conn = match slot.as_ref().filter(|c| !c.is_closed()) {
            Some(c) => c.clone(),
            None => {
                let c = self.h2(key, false).await?;
                *slot = Some(c.clone());
                c
            }
        };
        let headers = self.headers_for(self.server_of(key));
        Ok(HttpConn::h2(conn, self.wire.clone(), headers))
    }

    /// Client `key`'s WebSocket at `target` (one request): over HTTP/1.1
    /// by Upgrade, over HTTP/2 by extended CONNECT on a connection of its
    /// own (or by Upgrade over HTTP/1.1 when the proxy in front does not
    /// allow extended CONNECT, [`Dialer::with_websocket_h1`]).
    pub async fn websocket(&self, key: u64, target: &str) -> io::Result<WsConn> {
        if self.connector.is_http2() && !self.websocket_h1 {
            let conn = self.h2(key, true).await?;
            self.wire.requests.fetch_add(1, Relaxed);
            let headers = self.headers_for(self.server_of(key));
            return websocket::over_h2(conn, target, &headers).await;
        }
        let (io, addr) = self.stream_as(key, false).await?;
        self.wire.requests.fetch_add(1, Relaxed);
        websocket::over_h1(io, addr, target, &self.headers_for(addr)).await
    }

    /// Client `key`'s WebTransport session at `target` (path and query):
    /// a QUIC connection of its own, then the session's CONNECT. Its
    /// connect time is recorded by the client, from before this call.
    pub async fn webtransport(&self, key: u64, target: &str) -> io::Result<webtransport::WtConn> {
        let (conn, addr) = self.quic(key).await?;
        self.wire.requests.fetch_add(1, Relaxed);
        webtransport::open(conn, &addr.to_string(), target).await
    }

    /// A QUIC connection for client `key` to its room's server, from a
    /// UDP socket of its own (from its source address, or inside the
    /// packet link's namespace); its handshake is counted.
    async fn quic(&self, key: u64) -> io::Result<(quic::QuicConn, SocketAddr)> {
        let quic = self
            .connector
            .quic()
            .ok_or_else(|| io::Error::other("this run does not speak QUIC"))?;
        let addr = self.server_of(key);
        let source = self.source_of(key, addr);
        let (netns, wire) = (self.netns.as_deref(), self.wire.clone());
        let radio = self.radios.client(key);
        let conn = quic
            .connect(addr, source, netns, wire, radio, Instant::now())
            .await?;
        Ok((conn, addr))
    }

    /// A control connection to a server (`/metrics`, `/healthz`, a
    /// control message): plain TCP, counted into `wire`.
    pub async fn control(addr: SocketAddr, wire: Arc<WireStats>) -> io::Result<WireCounter> {
        tcp::counted(addr, None, None, wire).await
    }

    /// A connection for the clock estimate (`GET /time`): plain TCP with
    /// `TCP_NODELAY`, uncounted, so that each exchange is one round trip.
    pub async fn clock(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = tcp::open(addr, None).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
