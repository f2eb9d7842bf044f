//! The chatbench chat server: one message log per room, served over HTTP
//! short polling, long polling, Server-Sent Events and WebSocket.
//!
//! Modules, and what each owns:
//! - [`room`]: [`RoomLog`], the only store of messages, and [`Rooms`].
//! - `http`: the router, error answers, publishing and the two polls.
//! - [`sse`] and `ws`: the streaming transports, each a cursor over a room log
//!   ([`sse::frame_events`] is public for the benchmarks).
//! - [`conn`]: [`CountedIo`](conn::CountedIo), which charges bytes written to
//!   the transport of the request in flight and enforces the idle timeout.
//! - [`metrics`]: the Prometheus registry ([`Metrics`]), per transport.
//! - [`affinity`]: CPU lists and pinning (`--cpus`).
//! - [`config`]: [`Config`] and the command-line flags [`ServerArgs`].
//!
//! The entry point is [`run`]`(listener, config, shutdown)`; [`serve`] binds
//! from flags and runs until Ctrl-C or SIGTERM.
#![deny(missing_docs)]

pub mod affinity;
pub mod config;
pub mod conn;
mod http;
pub mod metrics;
pub mod room;
mod server;
pub mod sse;
mod ws;

pub use config::{Config, ServerArgs};
pub use metrics::{Metrics, Transport};
pub use room::{RoomLog, Rooms};
pub use server::{run, run_with_metrics, shutdown_signal};

use std::io::Write;

/// The listen backlog: the system's `somaxconn` (4096 on these machines),
/// at most 65535. The default of 128 overflowed in a storm of 18,000
/// connects, and clients then waited 1 to 7 s on SYN retransmits.
pub fn listen_backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(4096)
        .clamp(128, 65535)
}

/// Binds a listener with [`listen_backlog`] and `SO_REUSEADDR`.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(listen_backlog())?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Binds `args.listen`, prints `listening on http://ADDR` as the first line on
/// stdout (so a parent process can learn a port-0 address), and serves until
/// Ctrl-C or SIGTERM.
pub async fn serve(args: &ServerArgs) -> std::io::Result<()> {
    let listener = bind(args.listen)?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!("listening on http://{addr}");
    run(listener, args.config(), shutdown_signal()).await;
    Ok(())
}
