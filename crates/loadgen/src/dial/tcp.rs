//! TCP sockets: the only place the load generator opens one.

use crate::link::LinkSpec;
use crate::wire::{WireCounter, WireStats};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpStream;

/// A TCP connection to `addr`, from the local address `source` when given
/// (port chosen at connect with `IP_BIND_ADDRESS_NO_PORT`, so a source port
/// is shared by connections to different destinations): each source address
/// has its own ~28,000 ephemeral ports toward one destination.
pub async fn open(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if ip.is_ipv4() {
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        )
        .map_err(io::Error::from)?;
    }
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// A TCP connection to `addr` from a socket made inside the network
/// namespace `ns` (the packet-level link's clients).
pub async fn open_in(ns: &crate::packet::netns::Netns, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = ns.tcp_socket()?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpSocket::from_std_stream(socket.into())
        .connect(addr)
        .await
}

/// [`open`], counted into `stats` by a [`WireCounter`], through the
/// emulated `link` when given.
pub async fn counted(
    addr: SocketAddr,
    source: Option<IpAddr>,
    link: Option<LinkSpec>,
    stats: Arc<WireStats>,
) -> io::Result<WireCounter> {
    WireCounter::new(open(addr, source).await?, link, stats).await
}
