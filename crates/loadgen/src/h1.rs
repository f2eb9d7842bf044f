//! The load generator's HTTP/1.1 client connection: one request at a time
//! on a keep-alive connection, with the response head parsed by httparse
//! and the body framed by hand (Content-Length, chunked, or until close).
//!
//! Hand-written rather than hyper's client because it is the hot path of
//! the polling transports, and hyper's client cost what the instrument
//! must not: its request channel, response oneshot and header map were 16%
//! of the load generator's CPU on `scenarios/peer-short-poll.toml` (perf,
//! cpu-clock), and the short-poll requests per CPU-second sat at 0.86× wrk's
//! (results/peers/2026-12-01); the figure with this client is in
//! ARCHITECTURE.md ("Hand-written parts"). hyper still serves every other
//! client call (health checks, `/metrics`, `/time`).
//!
//! The requests it writes are byte for byte the ones hyper wrote, so wire
//! figures compare across the change: `METHOD target HTTP/1.1`, `host`,
//! and for a request with a body `content-type: application/json` and
//! `content-length`.

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body [`H1Conn::call`] collects.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Headers a response head may have.
const MAX_HEADERS: usize = 32;
/// Free space offered to each read.
const READ_SPACE: usize = 4 * 1024;

/// How the current response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// No response in progress, or its body is over.
    Done,
    /// `n` more bytes (Content-Length).
    Length(u64),
    /// Chunked, at the given point of the chunk grammar.
    Chunked(Chunk),
    /// Until the server closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, `n` bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn cut_short(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the server closed the connection {what}"),
    )
}

/// Refuses a request target that would break the request line: empty, or
/// holding a space or control character (which would end it early).
pub fn check_target(target: &str) -> io::Result<()> {
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid request target {target:?}"),
        ));
    }
    Ok(())
}

/// An HTTP/1.1 client connection over any byte stream.
#[derive(Debug)]
pub struct H1Conn<S> {
    io: S,
    host: String,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    body: Body,
    /// The server asked to close after this response (`connection: close`).
    close_after: bool,
    /// A request was written whose response was not read to its end.
    in_flight: bool,
    /// The connection can take no further request.
    closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1Conn<S> {
    /// A connection over `io`, whose requests name `host`.
    pub fn new(io: S, host: String) -> H1Conn<S> {
        H1Conn {
            io,
            host,
            rbuf: BytesMut::new(),
            wbuf: Vec::with_capacity(256),
            body: Body::Done,
            close_after: false,
            in_flight: false,
            closed: false,
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Writes a request and reads the response head; the body follows from
    /// [`H1Conn::body_chunk`] or [`H1Conn::body`]. `target` is the
    /// request target (path and query).
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> io::Result<StatusCode> {
        self.send_with(method, target, &[], body).await
    }

    /// [`H1Conn::send`] with more request headers (`name: value` lines,
    /// each without its CRLF; the caller vouches for their syntax).
    pub async fn send_with(
        &mut self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> io::Result<StatusCode> {
        if self.closed || self.in_flight {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closed",
            ));
        }
        check_target(target)?;
        self.wbuf.clear();
        for part in [
            method,
            " ",
            target,
            " HTTP/1.1\r\nhost: ",
            &self.host,
            "\r\n",
        ] {
            self.wbuf.extend_from_slice(part.as_bytes());
        }
        for h in headers {
            self.wbuf.extend_from_slice(h.as_bytes());
            self.wbuf.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() {
            self.wbuf
                .extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
            self.wbuf
                .extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            self.wbuf.extend_from_slice(b"\r\n");
        }
        self.wbuf.extend_from_slice(b"\r\n");
        self.wbuf.extend_from_slice(body);
        self.in_flight = true;
        if let Err(e) = self.io.write_all(&self.wbuf).await {
            self.closed = true;
            return Err(e);
        }
        match self.read_head().await {
            Ok(status) => Ok(status),
            Err(e) => {
                self.closed = true;
                Err(e)
            }
        }
    }

    /// Writes a request and reads the whole response.
    pub async fn call(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> io::Result<(StatusCode, Bytes)> {
        let status = self.send(method, target, body).await?;
        let body = self.body().await?;
        Ok((status, body))
    }

    /// The rest of the current response's body.
    pub async fn body(&mut self) -> io::Result<Bytes> {
        // The common case, a Content-Length body: one buffer, no copy.
        if let Body::Length(n) = self.body {
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= MAX_BODY)
                .ok_or_else(|| invalid(format!("a body of {n} bytes is over the limit")))?;
            while self.rbuf.len() < n {
                self.rbuf.reserve((n - self.rbuf.len()).max(READ_SPACE));
                if self.fill().await? == 0 {
                    self.closed = true;
                    return Err(cut_short("in the middle of a body"));
                }
            }
            let body = self.rbuf.split_to(n).freeze();
            self.finish_body();
            return Ok(body);
        }
        let mut all = BytesMut::new();
        while let Some(piece) = self.body_chunk().await? {
            if all.len() + piece.len() > MAX_BODY {
                self.closed = true;
                return Err(invalid(format!(
                    "a body of more than {MAX_BODY} bytes is over the limit"
                )));
            }
            all.extend_from_slice(&piece);
        }
        Ok(all.freeze())
    }

    /// The next bytes of the current response's body, as soon as any have
    /// arrived; None at its end. Cancel-safe: cancelled, it loses nothing.
    pub async fn body_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let r = self.next_piece().await;
        if r.is_err() {
            self.closed = true;
        }
        r
    }

    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.body {
                Body::Done => return Ok(None),
                Body::Length(0) => {
                    self.finish_body();
                    return Ok(None);
                }
                Body::Length(n) => {
                    let piece = self.take_data(n, "in the middle of a body").await?;
                    self.body = Body::Length(n - piece.len() as u64);
                    return Ok(Some(piece));
                }
                Body::UntilClose => {
                    if self.rbuf.is_empty() && self.fill().await? == 0 {
                        self.closed = true;
                        self.body = Body::Done;
                        self.in_flight = false;
                        return Ok(None);
                    }
                    return Ok(Some(self.rbuf.split().freeze()));
                }
                Body::Chunked(Chunk::Size) => match httparse::parse_chunk_size(&self.rbuf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.rbuf.advance(used);
                        self.body = Body::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.rbuf.len() > 1024 {
                            return Err(invalid("a chunk-size line is over 1 KiB"));
                        }
                        self.fill_or(cut_short("in the middle of a chunked body"))
                            .await?;
                    }
                    Err(_) => return Err(invalid("malformed chunk size")),
                },
                Body::Chunked(Chunk::Data(n)) => {
                    let piece = self.take_data(n, "in the middle of a chunk").await?;
                    let left = n - piece.len() as u64;
                    self.body = Body::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Some(piece));
                }
                Body::Chunked(Chunk::DataEnd) => {
                    if self.rbuf.len() < 2 {
                        self.fill_or(cut_short("in the middle of a chunked body"))
                            .await?;
                        continue;
                    }
                    if &self.rbuf[..2] != b"\r\n" {
                        return Err(invalid("a chunk's data does not end with CRLF"));
                    }
                    self.rbuf.advance(2);
                    self.body = Body::Chunked(Chunk::Size);
                }
                Body::Chunked(Chunk::Trailers) => match memchr::memmem::find(&self.rbuf, b"\r\n") {
                    Some(0) => {
                        self.rbuf.advance(2);
                        self.body = Body::Done;
                        self.finish_body();
                        return Ok(None);
                    }
                    // A trailer field: read past it.
                    Some(end) => self.rbuf.advance(end + 2),
                    None if self.rbuf.len() > MAX_HEAD => {
                        return Err(invalid("trailer fields are over the head limit"))
                    }
                    None => {
                        self.fill_or(cut_short("in the trailers of a chunked body"))
                            .await?
                    }
                },
            }
        }
    }

    /// Up to `n` buffered bytes of body data, reading once if none are.
    async fn take_data(&mut self, n: u64, where_: &str) -> io::Result<Bytes> {
        if self.rbuf.is_empty() {
            self.fill_or(cut_short(where_)).await?;
        }
        let take = self
            .rbuf
            .len()
            .min(usize::try_from(n).unwrap_or(usize::MAX));
        Ok(self.rbuf.split_to(take).freeze())
    }

    /// The response's body is over: the connection takes the next request,
    /// unless the server asked to close it.
    fn finish_body(&mut self) {
        self.body = Body::Done;
        self.in_flight = false;
        if self.close_after {
            self.closed = true;
        }
    }

    /// Reads once into the buffer; the number of bytes read (0 at EOF).
    async fn fill(&mut self) -> io::Result<usize> {
        self.rbuf.reserve(READ_SPACE);
        self.io.read_buf(&mut self.rbuf).await
    }

    /// Reads once; `eof` is the error when the server closed instead.
    async fn fill_or(&mut self, eof: io::Error) -> io::Result<()> {
        match self.fill().await? {
            0 => Err(eof),
            _ => Ok(()),
        }
    }

    async fn read_head(&mut self) -> io::Result<StatusCode> {
        loop {
            if !self.rbuf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.rbuf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let code = resp.code.unwrap_or(0);
                        let status = StatusCode::from_u16(code)
                            .map_err(|_| invalid(format!("status code {code}")))?;
                        let (body, close) = framing(&resp, status)?;
                        self.rbuf.advance(len);
                        // An interim answer (100 Continue): the real one follows.
                        if status.is_informational() {
                            continue;
                        }
                        self.body = body;
                        self.close_after = close;
                        if body == Body::Done {
                            self.finish_body();
                        }
                        return Ok(status);
                    }
                    Ok(httparse::Status::Partial) if self.rbuf.len() > MAX_HEAD => {
                        return Err(invalid(format!("a response head is over {MAX_HEAD} bytes")))
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(invalid(format!("malformed response head: {e}"))),
                }
            }
            let what = if self.rbuf.is_empty() {
                "before answering"
            } else {
                "in the middle of a response head"
            };
            self.fill_or(cut_short(what)).await?;
        }
    }

    /// True once the connection can take no request: closed by either side,
    /// broken, or left in the middle of a response. Notices a close by the
    /// server while idle (servers close idle keep-alive connections; a
    /// browser then opens a new one, and so do we) without waiting.
    pub fn is_closed(&mut self) -> bool {
        if self.closed || self.in_flight {
            return true;
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        // Anything but "nothing to read" ends an idle connection: EOF, an
        // error, or bytes nobody asked for.
        if !matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        ) {
            self.closed = true;
        }
        self.closed
    }

    /// The stream, for a caller that closes it its own way.
    pub fn into_io(self) -> S {
        self.io
    }

    /// Closes the connection: a FIN, then the socket.
    pub async fn close(mut self) {
        let _ = self.io.shutdown().await;
    }

    /// Bytes read and not yet handed out (after a response head: the start
    /// of its body).
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// Reads and throws away everything until the server closes the
    /// connection (or a read fails).
    pub async fn drain(mut self) {
        loop {
            self.rbuf.clear();
            if !matches!(self.fill().await, Ok(n) if n > 0) {
                return;
            }
        }
    }
}

/// How a response's body is framed (RFC 9112 §6.3), and whether the server
/// closes the connection after it.
fn framing(resp: &httparse::Response<'_, '_>, status: StatusCode) -> io::Result<(Body, bool)> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| invalid(format!("header {} is not UTF-8", h.name)))?;
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(format!("content-length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("two different content-length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let body = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Body::Done
    } else if chunked {
        Body::Chunked(Chunk::Size)
    } else {
        match length {
            Some(0) => Body::Done,
            Some(n) => Body::Length(n),
            None => {
                close = true;
                Body::UntilClose
            }
        }
    };
    Ok((body, close))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A connection whose server side writes `answer` in pieces of the
    /// given sizes (the rest in one), after reading the request; returns
    /// the client and what the server read.
    async fn answered(
        answer: Vec<u8>,
        sizes: Vec<usize>,
    ) -> (H1Conn<DuplexStream>, tokio::task::JoinHandle<Vec<u8>>) {
        let (client, mut server) = duplex(1 << 20);
        let task = tokio::spawn(async move {
            let mut req = vec![0u8; 4096];
            let n = server.read(&mut req).await.unwrap();
            req.truncate(n);
            let mut rest = &answer[..];
            for s in sizes {
                let s = s.min(rest.len());
                server.write_all(&rest[..s]).await.unwrap();
                server.flush().await.unwrap();
                rest = &rest[s..];
                tokio::task::yield_now().await;
            }
            server.write_all(rest).await.unwrap();
            // Keep the stream open until the client is done reading,
            // unless the answer is close-delimited.
            let mut sink = [0u8; 64];
            let _ = server.read(&mut sink).await;
            req
        });
        (H1Conn::new(client, "127.0.0.1:1".into()), task)
    }

    #[tokio::test]
    async fn writes_the_requests_hyper_wrote() {
        let (mut c, server) = answered(
            b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n".to_vec(),
            vec![],
        )
        .await;
        let (status, body) = c
            .call("POST", "/rooms/a/messages", b"{\"x\":1}")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::CREATED);
        assert!(body.is_empty());
        drop(c);
        assert_eq!(
            server.await.unwrap(),
            b"POST /rooms/a/messages HTTP/1.1\r\nhost: 127.0.0.1:1\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"x\":1}"
        );
        let (mut c, server) = answered(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi".to_vec(),
            vec![],
        )
        .await;
        let (status, body) = c
            .call("GET", "/rooms/a/messages?after=0", b"")
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hi"[..]));
        assert!(!c.is_closed());
        drop(c);
        assert_eq!(
            server.await.unwrap(),
            b"GET /rooms/a/messages?after=0 HTTP/1.1\r\nhost: 127.0.0.1:1\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn keeps_the_connection_for_the_next_request() {
        let (client, mut server) = duplex(1 << 16);
        let mut c = H1Conn::new(client, "h".into());
        let srv = tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            for body in ["one", "two"] {
                let n = server.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"GET /"));
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n{body}");
                server.write_all(answer.as_bytes()).await.unwrap();
            }
            server
        });
        assert_eq!(&c.call("GET", "/1", b"").await.unwrap().1[..], b"one");
        assert!(!c.is_closed());
        assert_eq!(&c.call("GET", "/2", b"").await.unwrap().1[..], b"two");
        let server = srv.await.unwrap();
        assert!(!c.is_closed());
        // The server closes the idle connection: noticed without a request.
        drop(server);
        tokio::task::yield_now().await;
        assert!(c.is_closed());
        let e = c.call("GET", "/3", b"").await.unwrap_err();
        assert_eq!(e.to_string(), "the connection is closed");
    }

    #[tokio::test]
    async fn reads_chunked_bodies_with_extensions_and_trailers() {
        let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        let (mut c, _server) = answered(answer.to_vec(), vec![]).await;
        let (status, body) = c.call("GET", "/", b"").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello world"[..]));
        assert!(
            !c.is_closed(),
            "a chunked body leaves the connection usable"
        );
    }

    #[tokio::test]
    async fn a_close_delimited_body_ends_the_connection() {
        let (client, mut server) = duplex(1 << 16);
        let mut c = H1Conn::new(client, "h".into());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            let _ = server.read(&mut buf).await.unwrap();
            server
                .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
                .await
                .unwrap();
        });
        let (_, body) = c.call("GET", "/", b"").await.unwrap();
        assert_eq!(&body[..], b"until the end");
        assert!(c.is_closed());
    }

    #[tokio::test]
    async fn connection_close_ends_the_connection_after_the_body() {
        let (mut c, _server) = answered(
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 4\r\n\r\nbusy".to_vec(),
            vec![],
        )
        .await;
        let (status, body) = c.call("GET", "/", b"").await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status.to_string(), "503 Service Unavailable");
        assert_eq!(&body[..], b"busy");
        assert!(c.is_closed());
    }

    #[tokio::test]
    async fn no_content_and_interim_answers_have_no_body() {
        let (mut c, _server) = answered(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
            vec![],
        )
        .await;
        let (status, body) = c.call("GET", "/", b"").await.unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(body.is_empty());
        assert!(!c.is_closed());
    }

    #[tokio::test]
    async fn malformed_and_cut_answers_are_errors_that_close() {
        let cases: [(&[u8], &str); 6] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                "the server closed the connection in the middle of a body",
            ),
            (b"", "the server closed the connection before answering"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-le",
                "the server closed the connection in the middle of a response head",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
                "content-length \"ten\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "two different content-length headers",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "malformed chunk size",
            ),
        ];
        for (answer, why) in cases {
            let (client, mut server) = duplex(1 << 16);
            let mut c = H1Conn::new(client, "h".into());
            let answer = answer.to_vec();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let _ = server.read(&mut buf).await.unwrap();
                server.write_all(&answer).await.unwrap();
            });
            let e = c.call("GET", "/", b"").await.unwrap_err();
            assert_eq!(e.to_string(), why);
            assert!(c.is_closed());
        }
    }

    #[tokio::test]
    async fn refuses_a_target_that_would_break_the_request_line() {
        let (client, _server) = duplex(64);
        let mut c = H1Conn::new(client, "h".into());
        for target in ["", "/a b", "/a\r\nx: 1"] {
            let e = c.send("GET", target, b"").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{target:?}");
        }
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused() {
        let mut answer = b"HTTP/1.1 200 OK\r\nx-pad: ".to_vec();
        answer.resize(MAX_HEAD + 100, b'a');
        let (mut c, _server) = answered(answer, vec![]).await;
        let e = c.call("GET", "/", b"").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("a response head is over {MAX_HEAD} bytes")
        );
        // More headers than the client keeps room for.
        let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            answer.extend_from_slice(b"x-pad: a\r\n");
        }
        answer.extend_from_slice(b"\r\n");
        let (mut c, _server) = answered(answer, vec![]).await;
        let e = c.call("GET", "/", b"").await.unwrap_err();
        assert_eq!(e.to_string(), "malformed response head: too many headers");
    }

    /// A streamed body, read piece by piece as an SSE client does.
    async fn streamed(answer: Vec<u8>, sizes: Vec<usize>) -> (StatusCode, Vec<u8>, bool) {
        let (mut c, _server) = answered(answer, sizes).await;
        let status = c.send("GET", "/", b"").await.unwrap();
        let mut got = Vec::new();
        while let Some(piece) = c.body_chunk().await.unwrap() {
            assert!(!piece.is_empty(), "no empty pieces");
            got.extend_from_slice(&piece);
        }
        (status, got, c.is_closed())
    }

    fn chunked(pieces: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for p in pieces.iter().filter(|p| !p.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// However reads split the answer, the body is the same.
        #[test]
        fn bodies_do_not_depend_on_how_reads_split_them(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            sizes in proptest::collection::vec(1usize..40, 0..30),
            chunk in any::<bool>(),
        ) {
            let body: Vec<u8> = pieces.concat();
            let answer = if chunk {
                chunked(&pieces)
            } else {
                let mut a = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
                a.extend_from_slice(&body);
                a
            };
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (status, got, closed) = rt.block_on(streamed(answer, sizes));
            prop_assert_eq!(status, StatusCode::OK);
            prop_assert_eq!(got, body);
            prop_assert!(!closed);
        }
    }
}
