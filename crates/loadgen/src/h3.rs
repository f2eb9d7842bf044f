//! HTTP/3 client connections: h3 over a client's own QUIC connection
//! ([`crate::dial::quic`]), which its publishes and its polls or SSE stream
//! share, as a browser tab's do.
//!
//! A QUIC connection's bytes are counted at its UDP socket, not per
//! stream: the bytes an exchange cost ([`H3Conn::call`]) are the socket's
//! during it, both ways, which over a client's shared connection include
//! ACKs of other streams and any publish sent meanwhile.

use crate::dial::quic::QuicConn;
use crate::dial::tls::Handles;
use bytes::{Buf, Bytes};
use http::{Method, Request, StatusCode};
use std::io;
use std::sync::atomic::Ordering::Relaxed;

/// A request's stream on an HTTP/3 connection.
pub type H3Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// A client's HTTP/3 connection.
pub struct H3Conn {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    quic: QuicConn,
    /// `https://host:port`, the base of every request's URI.
    base: String,
    /// The socket's byte counts and arrival stamp; its cut closes the
    /// connection.
    pub handles: Handles,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for H3Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Conn").field("base", &self.base).finish()
    }
}

impl H3Conn {
    /// HTTP/3 over `quic`: its control streams and settings, and a task
    /// that drives the connection until it closes.
    pub async fn handshake(quic: QuicConn, base: String) -> io::Result<H3Conn> {
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic.conn.clone()))
            .await
            .map_err(io::Error::other)?;
        let driver = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let handles = Handles::quic(quic.conn.clone(), quic.counts.clone());
        Ok(H3Conn {
            send,
            quic,
            base,
            handles,
            driver,
        })
    }

    /// Sends a request for `target` (path and query) with `headers`, then
    /// the profile's, and `body`; returns the answer's status and the
    /// stream its body is read from.
    pub async fn send(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        profile: &[(String, String)],
        body: Bytes,
    ) -> io::Result<(StatusCode, H3Stream)> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{target}", self.base));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        for (k, v) in profile {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = b.body(()).map_err(io::Error::other)?;
        let mut send = self.send.clone();
        let mut stream = send.send_request(req).await.map_err(io::Error::other)?;
        if !body.is_empty() {
            stream.send_data(body).await.map_err(io::Error::other)?;
        }
        // A server may answer before it has read the request's end and
        // then stop the request stream (RFC 9114 4.1), so the end of a
        // request whose answer comes is not an error; a request that got
        // no answer fails below.
        let _ = stream.finish().await;
        let resp = stream.recv_response().await.map_err(io::Error::other)?;
        Ok((resp.status(), stream))
    }

    /// Sends a request and reads its whole answer; with the socket's bytes
    /// meanwhile, both ways.
    pub async fn call(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        profile: &[(String, String)],
        body: Bytes,
    ) -> io::Result<(StatusCode, Bytes, u64)> {
        let (up0, down0) = self.quic.counts.bytes();
        let (status, mut stream) = self.send(method, target, headers, profile, body).await?;
        let mut all = bytes::BytesMut::new();
        while let Some(chunk) = body_chunk(&mut stream).await? {
            all.extend_from_slice(&chunk);
        }
        let (up, down) = self.quic.counts.bytes();
        Ok((status, all.freeze(), (up + down) - (up0 + down0)))
    }

    /// True once no request can go on this connection.
    pub fn is_closed(&self) -> bool {
        self.quic.conn.close_reason().is_some() || self.quic.counts.cut.load(Relaxed)
    }

    /// Closes the connection and waits (at most 5 s) until the server has
    /// its close, so both sides counted the same datagrams.
    pub async fn close(&self) {
        self.quic.close().await;
        self.driver.abort();
    }
}

/// The next piece of an answer's body; None at its end.
pub async fn body_chunk(stream: &mut H3Stream) -> io::Result<Option<Bytes>> {
    match stream.recv_data().await {
        Ok(Some(mut buf)) => Ok(Some(buf.copy_to_bytes(buf.remaining()))),
        Ok(None) => Ok(None),
        Err(e) => Err(io::Error::other(e)),
    }
}
