//! One request through a TLS front (a reverse proxy that terminates TLS,
//! `[path] proxy` with `protocol.tls`), before a run's clients dial it:
//! whether it routes to the server, and whether its HTTP/2 carries
//! WebSockets (extended CONNECT, RFC 8441). Its bytes are counted apart
//! from the clients'.

use super::{tcp, Connector};
use crate::wire::{WireCounter, WireStats};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

/// What a TLS front answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontProbe {
    /// The status of `GET /healthz` through it.
    pub status: u16,
    /// Over HTTP/2: its settings allow extended CONNECT, so a WebSocket
    /// can go over HTTP/2. False over HTTP/1.1.
    pub extended_connect: bool,
}

/// `GET /healthz` through the TLS front at `addr`, over the HTTP version
/// `connector` speaks.
pub async fn front(addr: SocketAddr, connector: &Connector) -> io::Result<FrontProbe> {
    let start = tokio::time::Instant::now();
    let stats = Arc::new(WireStats::default());
    let tcp = WireCounter::new(tcp::open(addr, None).await?, None, stats.clone()).await?;
    let stream = connector.secure(tcp, addr, start, &stats).await?;
    let io = TokioIo::new(stream);
    if !connector.is_http2() {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(conn);
        let req = http::Request::get("/healthz")
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(io::Error::other)?;
        let resp = send.send_request(req).await.map_err(io::Error::other)?;
        return Ok(FrontProbe {
            status: resp.status().as_u16(),
            extended_connect: false,
        });
    }
    let (mut send, mut conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
        .map_err(io::Error::other)?;
    let req = http::Request::get(format!("https://{addr}/healthz"))
        .body(Empty::<Bytes>::new())
        .map_err(io::Error::other)?;
    let mut resp = std::pin::pin!(send.send_request(req));
    // The connection is driven here, not spawned, so that its settings
    // can be read after: the server's SETTINGS frame comes before its
    // response, so once the response is in, extended CONNECT is known.
    let status = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
            return Poll::Ready(Err(match r {
                Ok(()) => io::Error::other("the connection ended before its response"),
                Err(e) => io::Error::other(e),
            }));
        }
        resp.as_mut()
            .poll(cx)
            .map(|r| r.map(|r| r.status().as_u16()).map_err(io::Error::other))
    })
    .await?;
    Ok(FrontProbe {
        status,
        extended_connect: conn.is_extended_connect_protocol_enabled(),
    })
}
