//! A client's WebSocket connection: over HTTP/1.1 by Upgrade (plain or
//! TLS), over HTTP/2 by extended CONNECT (RFC 8441) on a connection of its
//! own. The frames are read and written by [`crate::ws`].

use super::tls::{Handles, Stream};
use crate::h2::H2Conn;
use crate::profile::{Headers, Kind};
use crate::ws::{self, WsReader, WsWriter};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// The read half of a client's WebSocket, whatever carries it: the counted
/// socket itself, a TLS stream's half, or an HTTP/2 stream's.
pub type WsRead = WsReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;

/// Its write half: over plain TCP the socket's own writer
/// ([`crate::wire::WireCounter::writer`], no lock), else the other half of
/// a split.
pub type WsWrite = WsWriter<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>;

/// A WebSocket's connection: its halves, its socket's handles, and the
/// bytes its opening handshake cost (for a resume's cost).
pub struct WsConn {
    /// Frames in.
    pub reader: WsRead,
    /// Frames out.
    pub writer: WsWrite,
    /// The socket's cut, byte counts and arrival stamp.
    pub handles: Handles,
    /// Bytes of the opening handshake, both ways.
    pub setup: u64,
    /// Over HTTP/2, the connection the WebSocket's stream lives on.
    pub h2: Option<Arc<H2Conn>>,
    /// Over TLS or HTTP/2, the socket is read to its end after the close,
    /// so that both sides count the same bytes.
    pub drain_after_close: bool,
}

/// The opening handshake over HTTP/1.1 (`Upgrade: websocket`) on `io`.
pub(super) async fn over_h1(
    mut io: Stream,
    addr: SocketAddr,
    target: &str,
    headers: &Headers,
) -> io::Result<WsConn> {
    let lines = headers.lines(Kind::WebSocket);
    let leftover = ws::handshake(&mut io, &addr.to_string(), target, lines).await?;
    let handles = Handles::of(&io);
    let (up, down) = handles.cut.bytes();
    let setup = up + down.saturating_sub(leftover.len() as u64);
    let drain_after_close = io.is_tls();
    let (r, w): (
        Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    ) = match io {
        Stream::Plain(c) => {
            let w = c.writer();
            (Box::new(c), Box::new(w))
        }
        Stream::Tls(t) => {
            let (r, w) = tokio::io::split(*t);
            (Box::new(r), Box::new(w))
        }
    };
    Ok(WsConn {
        reader: WsReader::new(r, leftover),
        writer: WsWriter::new(w),
        handles,
        setup,
        h2: None,
        drain_after_close,
    })
}

/// A WebSocket over HTTP/2 on `conn`: an extended CONNECT with `:protocol
/// websocket` answered 200; the stream then carries the frames.
pub(super) async fn over_h2(
    conn: Arc<H2Conn>,
    target: &str,
    headers: &Headers,
) -> io::Result<WsConn> {
    let mut req = conn.request(
        Method::CONNECT,
        target,
        &[("sec-websocket-version", "13")],
        headers.of(Kind::WebSocket),
        Bytes::new(),
    )?;
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let (_, resp) = conn.send(req).await?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(io::Error::other(format!(
            "the server refused the extended CONNECT: {status} {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(io::Error::other)?;
    let (r, w) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
    let handles = conn.handles.clone();
    let (up, down) = handles.cut.bytes();
    Ok(WsConn {
        reader: WsReader::new(Box::new(r), bytes::BytesMut::new()),
        writer: WsWriter::new(Box::new(w)),
        handles,
        setup: up + down,
        h2: Some(conn),
        drain_after_close: true,
    })
}
