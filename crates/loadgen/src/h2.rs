//! HTTP/2 client connections: hyper's HTTP/2 client over a [`Stream`],
//! with every stream's bytes counted from the frames that carry it.
//!
//! A client's publishes and its polls (or its SSE stream) share one
//! connection, as a browser's do over HTTP/2, so the bytes a poll costs
//! cannot be read off the socket's counters around the request as they are
//! over HTTP/1.1. Instead [`Metered`] reads each frame's 9-byte header as
//! the bytes go by (both ways, above TLS) and charges the frame to its
//! stream; [`H2Conn::send`] learns the stream id of each request, because
//! hyper hands requests to h2 in the order they are sent and h2 gives them
//! the odd ids 1, 3, 5.. in that order. Frames on stream 0 (SETTINGS,
//! PING, the connection's WINDOW_UPDATEs, GOAWAY) and the client preface
//! are the connection's; TLS records' own bytes are on the socket's
//! counters only.

use crate::dial::tls::{drain, Handles, Stream};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The HTTP/2 connection preface a client sends before its first frame.
const PREFACE: usize = 24;

/// Bytes per stream id, both directions, plaintext frames.
#[derive(Debug, Default)]
pub struct Tally {
    streams: Mutex<HashMap<u32, u64>>,
}

impl Tally {
    fn add(&self, stream: u32, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(stream).or_default() += n;
        // A frame that comes after its stream was taken (a late
        // RST_STREAM) leaves an entry nobody takes: keep the map small.
        if m.len() > 512 {
            let newest = m.keys().copied().max().unwrap_or(0);
            m.retain(|&id, _| id == 0 || id + 1024 > newest);
        }
    }

    /// Takes stream `id`'s bytes so far.
    pub fn take(&self, id: u32) -> u64 {
        let mut m = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&id).unwrap_or(0)
    }

    /// The connection's own bytes (stream 0 and the preface) so far.
    pub fn connection(&self) -> u64 {
        let m = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&0).copied().unwrap_or(0)
    }
}

/// Follows frame boundaries in one direction of a connection.
#[derive(Debug, Default)]
struct Frames {
    /// Preface bytes still to come (client to server only).
    preface: usize,
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u32,
    stream: u32,
}

impl Frames {
    /// Charges `bytes` to the streams whose frames they belong to, taking
    /// the tally's lock once per run of bytes on one stream, not per frame.
    fn feed(&mut self, mut bytes: &[u8], tally: &Tally) {
        let mut run: Option<(u32, u64)> = None;
        let mut charge = |stream: u32, n: usize| match &mut run {
            Some((s, total)) if *s == stream => *total += n as u64,
            _ => {
                if let Some((s, total)) = run.replace((stream, n as u64)) {
                    tally.add(s, total);
                }
            }
        };
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                charge(0, n);
                bytes = &bytes[n..];
            } else if self.left > 0 {
                let n = (self.left as usize).min(bytes.len());
                self.left -= n as u32;
                charge(self.stream, n);
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == 9 {
                    let h = self.head;
                    self.left = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                    self.stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    self.have = 0;
                    charge(self.stream, 9);
                }
            }
        }
        if let Some((s, total)) = run {
            tally.add(s, total);
        }
    }
}

/// The stream hyper's HTTP/2 client runs on: reads and writes pass through
/// to the [`Stream`] and are charged to their frames' streams. The stream
/// sits in a shared slot, so that once hyper is done with the connection
/// the task that ran it can close it properly ([`Stream::close`]).
struct Metered {
    slot: Arc<Mutex<Option<Stream>>>,
    tally: Arc<Tally>,
    up: Frames,
    down: Frames,
}

impl Metered {
    fn with<R>(
        &self,
        f: impl FnOnce(Pin<&mut Stream>) -> Poll<io::Result<R>>,
        closed: R,
    ) -> Poll<io::Result<R>> {
        let mut g = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some(s) => f(Pin::new(s)),
            None => Poll::Ready(Ok(closed)),
        }
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = this.with(|s| s.poll_read(cx, buf), ());
        if let Poll::Ready(Ok(())) = r {
            this.down.feed(&buf.filled()[before..], &this.tally);
        }
        r
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.with(|s| s.poll_write(cx, buf), 0);
        if let Poll::Ready(Ok(n)) = r {
            if n == 0 && !buf.is_empty() {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.up.feed(&buf[..n], &this.tally);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().with(|s| s.poll_flush(cx), ())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().with(|s| s.poll_shutdown(cx), ())
    }
}

/// One HTTP/2 connection, shared by a client's sender and receiver.
pub struct H2Conn {
    /// The request handle, and the id the next request's stream gets.
    send: Mutex<(http2::SendRequest<Full<Bytes>>, u32)>,
    tally: Arc<Tally>,
    /// The socket's cut and read stamp.
    pub handles: Handles,
    /// `scheme://authority`, which every request's URI starts with.
    base: String,
    /// Turns true once the connection's task has closed the socket and
    /// read it to its end.
    done: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl H2Conn {
    /// Speaks HTTP/2 on `stream` (after the TLS handshake chose `h2`, or
    /// with prior knowledge). With `extended_connect`, waits until the
    /// server's SETTINGS allow WebSocket over it (RFC 8441), as a browser
    /// does, and fails if they do not within 5 s.
    pub async fn handshake(
        stream: Stream,
        base: String,
        extended_connect: bool,
    ) -> io::Result<Arc<H2Conn>> {
        let handles = Handles::of(&stream);
        let tally = Arc::new(Tally::default());
        let slot = Arc::new(Mutex::new(Some(stream)));
        let io = Metered {
            slot: slot.clone(),
            tally: tally.clone(),
            up: Frames {
                preface: PREFACE,
                ..Frames::default()
            },
            down: Frames::default(),
        };
        let (send, mut conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        if extended_connect {
            let settled = std::future::poll_fn(|cx| {
                use std::future::Future;
                if conn.is_extended_connect_protocol_enabled() {
                    return Poll::Ready(Ok(()));
                }
                match Pin::new(&mut conn).poll(cx) {
                    Poll::Ready(r) => Poll::Ready(Err(match r {
                        Ok(()) => io::Error::other("the connection ended before its settings"),
                        Err(e) => io::Error::other(e),
                    })),
                    Poll::Pending if conn.is_extended_connect_protocol_enabled() => {
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            });
            match tokio::time::timeout(Duration::from_secs(5), settled).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(io::Error::other(
                        "the server's HTTP/2 settings do not enable extended CONNECT (RFC 8441)",
                    ))
                }
            }
        }
        let (done_tx, done) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            // Ends with an error, or once every handle is gone (hyper then
            // says GOAWAY); then a FIN, and whatever the server still
            // writes is read, so both sides count the same bytes.
            let _ = conn.await;
            let stream = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut s) = stream {
                let _ = s.shutdown().await;
                drain(&mut s).await;
            }
            let _ = done_tx.send(true);
        });
        Ok(Arc::new(H2Conn {
            send: Mutex::new((send, 1)),
            tally,
            handles,
            base,
            done,
        }))
    }

    /// Sends a request on a new stream; returns the stream's id and the
    /// response head.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> io::Result<(u32, Response<Incoming>)> {
        let (id, answer) = {
            let mut g = self.send.lock().unwrap_or_else(|e| e.into_inner());
            let id = g.1;
            g.1 += 2;
            (id, g.0.send_request(req))
        };
        let resp = answer.await.map_err(io::Error::other)?;
        Ok((id, resp))
    }

    /// A request for `target` (path and query) with `headers`, then the
    /// profile's (`protocol.headers`), and `body`.
    pub fn request(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        profile: &[(String, String)],
        body: Bytes,
    ) -> io::Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{target}", self.base));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        for (k, v) in profile {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Full::new(body)).map_err(io::Error::other)
    }

    /// Sends a request and reads its whole answer; with the bytes of its
    /// stream's frames, both ways.
    pub async fn call(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        profile: &[(String, String)],
        body: Bytes,
    ) -> io::Result<(StatusCode, Bytes, u64)> {
        let req = self.request(method, target, headers, profile, body)?;
        let (id, resp) = self.send(req).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok((status, body, self.tally.take(id)))
    }

    /// Closes the connection if this is its last user, and waits (at most
    /// 10 s) until its socket is read to its end; another user's close
    /// does that later.
    pub async fn close(self: Arc<Self>) {
        if let Ok(c) = Arc::try_unwrap(self) {
            let H2Conn { send, mut done, .. } = c;
            drop(send);
            let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await;
        }
    }

    /// Waits (at most 5 s) until the connection's task has read the socket
    /// to its end: for a connection that was cut, whose task ends by
    /// itself.
    pub async fn finished(&self) {
        let mut done = self.done.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
    }

    /// True once no request can go on this connection.
    pub fn is_closed(&self) -> bool {
        self.handles.cut.is_cut()
            || self
                .send
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .is_closed()
    }
}

/// The next piece of a streamed answer's body; None at its end.
pub async fn body_chunk(body: &mut Incoming) -> io::Result<Option<Bytes>> {
    loop {
        match body.frame().await {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) if d.is_empty() => continue,
                Ok(d) => return Ok(Some(d)),
                // Trailers.
                Err(_) => continue,
            },
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u32, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            0,
            0,
        ];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, payload));
        f
    }

    #[test]
    fn frames_are_charged_to_their_streams_however_the_bytes_are_split() {
        let mut all = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        all.extend(frame(0, 18));
        all.extend(frame(1, 100));
        all.extend(frame(3, 0));
        all.extend(frame(1, 70_000));
        all.extend(frame(0x8000_0005, 3)); // the reserved bit is not the id
        for chunk in [1, 2, 5, 9, 10, 4096, all.len()] {
            let tally = Tally::default();
            let mut f = Frames {
                preface: PREFACE,
                ..Frames::default()
            };
            for piece in all.chunks(chunk) {
                f.feed(piece, &tally);
            }
            assert_eq!(tally.connection(), 24 + 9 + 18, "chunks of {chunk}");
            assert_eq!(tally.take(1), 9 + 100 + 9 + 70_000, "chunks of {chunk}");
            assert_eq!(tally.take(3), 9, "chunks of {chunk}");
            assert_eq!(tally.take(5), 9 + 3, "chunks of {chunk}");
            assert_eq!(tally.take(1), 0, "taken once");
        }
    }

    #[test]
    fn the_tally_stays_small_when_late_frames_are_never_taken() {
        let tally = Tally::default();
        for id in (1..20_000u32).step_by(2) {
            tally.add(id, 10);
        }
        assert!(tally.streams.lock().unwrap().len() <= 513);
        assert_eq!(tally.take(19_999), 10);
    }
}
