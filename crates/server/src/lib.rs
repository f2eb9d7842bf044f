//! The chatbench chat server: one message log per room, served over HTTP
//! short polling, long polling, Server-Sent Events and WebSocket.
//!
//! Modules, and what each owns:
//! - [`room`]: [`RoomLog`], the only store of messages, [`Rooms`] and the
//!   [`MemoryBudget`](room::MemoryBudget) of message bytes.
//! - `app`: what every transport's handler shares, below all of them: the
//!   application state, JSON error answers, query parameters, finding a room.
//! - `http`: the router, publishing over HTTP and the two polls.
//! - `h3`: HTTP/3 over QUIC (`--http3`), the same router on UDP.
//! - [`frames`]: [`BatchFrames`](frames::BatchFrames), a batch framed for a
//!   poll answer or SSE a piece at a time, sharing large messages.
//! - [`sse`] and `ws`: the streaming transports, each a cursor over a room log;
//!   `wt`: WebTransport sessions over HTTP/3, the same cursor.
//! - [`conn`]: [`CountedIo`](conn::CountedIo), which charges bytes written to
//!   the transport of the request in flight and enforces the idle and
//!   write-stall timeouts and the end of shutdown.
//! - [`metrics`]: the Prometheus registry ([`Metrics`]), per transport.
//! - [`tls`]: the rustls configuration (from files or generated with rcgen)
//!   (`server.rs` sniffs a connection's first bytes: TLS, h2c or HTTP/1.1).
//! - [`affinity`]: CPU lists and pinning (`--cpus`).
//! - [`config`]: [`Config`] and the command-line flags [`ServerArgs`].
//!
//! The entry point is [`run`]`(listener, config, shutdown)`; [`serve`] binds
//! from flags and runs until Ctrl-C or SIGTERM.
#![deny(missing_docs)]

pub mod affinity;
mod app;
pub mod config;
pub mod conn;
pub mod frames;
mod h3;
mod http;
pub mod metrics;
pub mod room;
mod server;
pub mod sse;
pub mod tls;
mod ws;
mod wt;

pub use config::{Config, ServerArgs};
pub use metrics::{Label, Metrics};
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

/// Why [`serve`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Flags that cannot be honoured together or on this process.
    #[error("{0}")]
    Flags(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address of `--listen`.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Checks the flags together ([`config::check`]), binds `args.listen`, prints
/// `listening on http://ADDR` as the first line on stdout (so a parent
/// process can learn a port-0 address), with `--tls` a second line
/// `listening on https://ADDR` (and the CA file it wrote, when it made its
/// own certificate), and serves until Ctrl-C or SIGTERM.
pub async fn serve(args: &ServerArgs) -> Result<(), ServeError> {
    config::check(args).map_err(ServeError::Flags)?;
    let tls = args.tls_setup().map_err(ServeError::Flags)?;
    let listen = |source| ServeError::Listen {
        addr: args.listen,
        source,
    };
    let listener = bind(args.listen).map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    {
        // Both lines in one write: a parent that reads the first line and
        // closes the pipe must not make the second fail (EPIPE).
        let mut lines = format!("listening on http://{addr}\n");
        if let Some(tls) = &tls {
            match &tls.ca_file {
                Some(ca) => lines.push_str(&format!(
                    "listening on https://{addr} (CA certificate in {})\n",
                    ca.display()
                )),
                None => lines.push_str(&format!("listening on https://{addr}\n")),
            }
        }
        let mut out = std::io::stdout().lock();
        out.write_all(lines.as_bytes()).map_err(listen)?;
        out.flush().map_err(listen)?;
    }
    tracing::info!("listening on http://{addr}");
    let mut config = args.config();
    config.tls = tls;
    run(listener, config, shutdown_signal()).await;
    Ok(())
}
