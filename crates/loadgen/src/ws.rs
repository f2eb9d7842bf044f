//! The load generator's WebSocket client (RFC 6455): the opening handshake,
//! a frame reader for what the server sends, and a writer of masked frames.
//!
//! Hand-written rather than tokio-tungstenite because it is the hot path of
//! the fan-out scenario, where the load generator must cost less per
//! received message than the server per delivered one. tokio-tungstenite's
//! waker proxies, its zero-filled read buffer and its message type made up
//! about 10% of the load generator's CPU there (perf, cpu-clock), which
//! left it at 1.01× the server's CPU per message (results/fan-out,
//! 2026-12-01); the figure with this client is in ARCHITECTURE.md
//! ("Hand-written parts").
//!
//! The handshake request is byte for byte tungstenite's, and publishes are
//! single masked text frames as tungstenite wrote them, so wire figures
//! compare across the change. The reader takes what a server may send:
//! text, binary, fragmented messages, ping, pong and close; it refuses
//! masked frames, reserved bits and opcodes, oversized or fragmented
//! control frames and text that is not UTF-8, as RFC 6455 §5 says a client
//! must.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message (after reassembly) the reader accepts.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest handshake answer head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Free space offered to each read.
const READ_SPACE: usize = 4 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A message or control frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole text message (UTF-8, checked).
    Text(Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// A ping; the caller answers it with [`WsWriter::pong`].
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: its status code and reason, when it has them.
    Close(Option<(u16, String)>),
}

fn protocol(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Performs the opening handshake on `io` for `target` (path and query)
/// at `host`. Returns the bytes that followed the server's 101 (the first
/// frames, if they came in the same read), for [`WsReader::new`].
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    host: &str,
    target: &str,
    extra: &[String],
) -> io::Result<BytesMut> {
    crate::h1::check_target(target)?;
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    io.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(READ_SPACE);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = resp.code.unwrap_or(0);
                let header = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                };
                if code != 101 {
                    // The refusal's reason is its body (JSON, from our server).
                    let length = header("content-length")
                        .and_then(|l| l.parse::<usize>().ok())
                        .unwrap_or(0)
                        .min(4096);
                    let status = http::StatusCode::from_u16(code)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|_| code.to_string());
                    buf.advance(len);
                    while buf.len() < length {
                        buf.reserve(length - buf.len());
                        if io.read_buf(&mut buf).await? == 0 {
                            break;
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[..buf.len().min(length)]).into_owned();
                    return Err(protocol(format!(
                        "the server refused the upgrade: {status} {body}"
                    )));
                }
                let accept = header("sec-websocket-accept");
                let expected =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                if accept.as_deref() != Some(expected.as_str()) {
                    return Err(protocol(format!(
                        "the server's Sec-WebSocket-Accept is {accept:?}, not {expected:?}"
                    )));
                }
                if !header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                    return Err(protocol("the server's 101 does not upgrade to websocket"));
                }
                buf.advance(len);
                return Ok(buf);
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(protocol(format!(
                    "the handshake answer's head is over {MAX_HEAD} bytes"
                )))
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(protocol(format!("malformed handshake answer: {e}"))),
        }
        buf.reserve(READ_SPACE);
        if io.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the handshake",
            ));
        }
    }
}

/// Reads the server's frames.
#[derive(Debug)]
pub struct WsReader<R> {
    io: R,
    buf: BytesMut,
    /// A fragmented message being reassembled: its opcode and bytes so far.
    partial: Option<(u8, BytesMut)>,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// A reader over `io`, starting with the bytes `handshake` returned.
    pub fn new(io: R, leftover: BytesMut) -> WsReader<R> {
        WsReader {
            io,
            buf: leftover,
            partial: None,
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.io
    }

    /// The next message or control frame; None when the server closed the
    /// TCP connection. Cancel-safe.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            self.buf.reserve(READ_SPACE);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() && self.partial.is_none() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection in the middle of a frame",
                    ))
                };
            }
        }
    }

    /// Takes whole frames from the buffer until one completes a message
    /// or is a control frame; None when more bytes are needed.
    fn parse(&mut self) -> io::Result<Option<Frame>> {
        loop {
            let Some((fin, opcode, start, len)) = header(&self.buf)? else {
                return Ok(None);
            };
            if len > MAX_MESSAGE as u64 {
                return Err(protocol(format!(
                    "a frame of {len} bytes is over the limit of {MAX_MESSAGE}"
                )));
            }
            let len = len as usize;
            if self.buf.len() < start + len {
                return Ok(None);
            }
            self.buf.advance(start);
            let payload = self.buf.split_to(len).freeze();
            match opcode {
                OP_TEXT | OP_BINARY if self.partial.is_some() => {
                    return Err(protocol("a new message began inside a fragmented one"))
                }
                OP_TEXT | OP_BINARY if fin => return message(opcode, payload).map(Some),
                OP_TEXT | OP_BINARY => self.partial = Some((opcode, BytesMut::from(&payload[..]))),
                OP_CONTINUATION => {
                    let Some((op, mut so_far)) = self.partial.take() else {
                        return Err(protocol("a continuation frame with no message to continue"));
                    };
                    if so_far.len() + payload.len() > MAX_MESSAGE {
                        return Err(protocol(format!(
                            "a message is over the limit of {MAX_MESSAGE} bytes"
                        )));
                    }
                    so_far.extend_from_slice(&payload);
                    if fin {
                        return message(op, so_far.freeze()).map(Some);
                    }
                    self.partial = Some((op, so_far));
                }
                OP_PING => return Ok(Some(Frame::Ping(payload))),
                OP_PONG => return Ok(Some(Frame::Pong(payload))),
                OP_CLOSE => return close_frame(&payload).map(Some),
                other => return Err(protocol(format!("unknown opcode {other:#x}"))),
            }
        }
    }
}

/// A frame header at the start of `buf`: (fin, opcode, header length,
/// payload length), or None if incomplete.
fn header(buf: &[u8]) -> io::Result<Option<(bool, u8, usize, u64)>> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    if b0 & 0x70 != 0 {
        return Err(protocol("reserved bits set, and no extension was agreed"));
    }
    if b1 & 0x80 != 0 {
        return Err(protocol("the server masked a frame"));
    }
    let (start, len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (4, u16::from_be_bytes([b[0], b[1]]) as u64),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (10, u64::from_be_bytes(b.try_into().expect("8 bytes"))),
            None => return Ok(None),
        },
        n => (2, n as u64),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err(protocol("a control frame is fragmented or over 125 bytes"));
    }
    Ok(Some((fin, opcode, start, len)))
}

fn message(opcode: u8, payload: Bytes) -> io::Result<Frame> {
    if opcode == OP_TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(protocol("a text message is not UTF-8"));
        }
        return Ok(Frame::Text(payload));
    }
    Ok(Frame::Binary(payload))
}

fn close_frame(payload: &[u8]) -> io::Result<Frame> {
    match payload {
        [] => Ok(Frame::Close(None)),
        [_] => Err(protocol("a close frame of 1 byte")),
        [hi, lo, reason @ ..] => {
            let reason =
                std::str::from_utf8(reason).map_err(|_| protocol("a close reason is not UTF-8"))?;
            Ok(Frame::Close(Some((
                u16::from_be_bytes([*hi, *lo]),
                reason.to_string(),
            ))))
        }
    }
}

/// Writes masked frames, each in one write.
#[derive(Debug)]
pub struct WsWriter<W> {
    io: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    /// A writer over `io`.
    pub fn new(io: W) -> WsWriter<W> {
        WsWriter {
            io,
            buf: Vec::with_capacity(256),
        }
    }

    /// Sends a text message as one frame.
    pub async fn text(&mut self, text: &str) -> io::Result<()> {
        self.frame(OP_TEXT, text.as_bytes()).await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.frame(OP_PONG, payload).await
    }

    /// Sends a close frame (no status code: tungstenite's `Close(None)`).
    pub async fn close(&mut self) -> io::Result<()> {
        self.frame(OP_CLOSE, b"").await
    }

    /// Shuts down the write side (TCP FIN).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    async fn frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        encode(&mut self.buf, opcode, payload, rand::random());
        self.io.write_all(&self.buf).await
    }
}

/// A client frame (FIN, masked with `mask`) into `out`.
fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.clear();
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::duplex;

    /// A server frame: FIN as given, unmasked.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    async fn read_all(bytes: Vec<u8>, sizes: Vec<usize>) -> io::Result<Vec<Frame>> {
        let (client, mut server) = duplex(1 << 20);
        tokio::spawn(async move {
            let mut rest = &bytes[..];
            for s in sizes {
                let s = s.min(rest.len());
                server.write_all(&rest[..s]).await.unwrap();
                rest = &rest[s..];
                tokio::task::yield_now().await;
            }
            server.write_all(rest).await.unwrap();
        });
        let mut r = WsReader::new(client, BytesMut::new());
        let mut out = Vec::new();
        while let Some(f) = r.next().await? {
            out.push(f);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn reads_every_kind_of_frame() {
        let big = vec![b'a'; 70_000];
        let mut stream = server_frame(true, OP_TEXT, b"{\"seq\":1}");
        stream.extend(server_frame(true, OP_PING, b"p"));
        stream.extend(server_frame(false, OP_TEXT, b"hel"));
        // A control frame may come between fragments.
        stream.extend(server_frame(true, OP_PONG, b""));
        stream.extend(server_frame(false, OP_CONTINUATION, b"lo "));
        stream.extend(server_frame(true, OP_CONTINUATION, "wörld".as_bytes()));
        stream.extend(server_frame(true, OP_BINARY, &big[..300]));
        stream.extend(server_frame(true, OP_BINARY, &big));
        let mut close = 1001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"server shutting down");
        stream.extend(server_frame(true, OP_CLOSE, &close));
        stream.extend(server_frame(true, OP_CLOSE, b""));
        let frames = read_all(stream, vec![1, 1, 3, 7]).await.unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Text(Bytes::from_static(b"{\"seq\":1}")),
                Frame::Ping(Bytes::from_static(b"p")),
                Frame::Pong(Bytes::new()),
                Frame::Text(Bytes::from("hello wörld")),
                Frame::Binary(Bytes::copy_from_slice(&big[..300])),
                Frame::Binary(Bytes::copy_from_slice(&big)),
                Frame::Close(Some((1001, "server shutting down".into()))),
                Frame::Close(None),
            ]
        );
    }

    #[tokio::test]
    async fn refuses_what_a_client_must_refuse() {
        let masked = {
            let mut f = Vec::new();
            encode(&mut f, OP_TEXT, b"x", [1, 2, 3, 4]);
            f
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (masked, "the server masked a frame"),
            (
                vec![0x80 | 0x40 | OP_TEXT, 0],
                "reserved bits set, and no extension was agreed",
            ),
            (vec![0x80 | 0x3, 0], "unknown opcode 0x3"),
            (
                server_frame(false, OP_PING, b""),
                "a control frame is fragmented or over 125 bytes",
            ),
            (
                server_frame(true, OP_PING, &[0; 126]),
                "a control frame is fragmented or over 125 bytes",
            ),
            (
                server_frame(true, OP_CONTINUATION, b"x"),
                "a continuation frame with no message to continue",
            ),
            (
                [
                    server_frame(false, OP_TEXT, b"a"),
                    server_frame(true, OP_TEXT, b"b"),
                ]
                .concat(),
                "a new message began inside a fragmented one",
            ),
            (
                server_frame(true, OP_TEXT, &[0xff, 0xfe]),
                "a text message is not UTF-8",
            ),
            (
                server_frame(true, OP_CLOSE, &[3]),
                "a close frame of 1 byte",
            ),
            (
                [
                    vec![0x80 | OP_BINARY, 127],
                    (MAX_MESSAGE as u64 + 1).to_be_bytes().to_vec(),
                ]
                .concat(),
                "a frame of 16777217 bytes is over the limit of 16777216",
            ),
            (
                server_frame(true, OP_TEXT, b"abc")[..4].to_vec(),
                "the server closed the connection in the middle of a frame",
            ),
        ];
        for (bytes, why) in cases {
            let e = read_all(bytes, vec![]).await.unwrap_err();
            assert_eq!(e.to_string(), why);
        }
    }

    #[test]
    fn client_frames_are_masked_as_rfc_6455_shows() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut out = Vec::new();
        encode(&mut out, OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        encode(&mut out, OP_TEXT, &[0; 200], [0; 4]);
        assert_eq!(&out[..4], &[0x81, 0x80 | 126, 0, 200]);
        assert_eq!(out.len(), 4 + 4 + 200);
        encode(&mut out, OP_BINARY, &[0; 70_000], [0; 4]);
        assert_eq!(
            &out[..10],
            &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
    }

    #[tokio::test]
    async fn handshake_checks_the_accept_key_and_keeps_early_frames() {
        let (mut client, mut server) = duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = server.read(&mut buf).await.unwrap();
            let req = String::from_utf8(buf[..n].to_vec()).unwrap();
            let key = req
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_string();
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut answer = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n").into_bytes();
            answer.extend(server_frame(true, OP_TEXT, b"first"));
            server.write_all(&answer).await.unwrap();
            (req, server)
        });
        let leftover = handshake(&mut client, "127.0.0.1:9", "/rooms/a/ws?after=0", &[])
            .await
            .unwrap();
        let (req, _server) = srv.await.unwrap();
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        assert_eq!(
            req,
            format!("GET /rooms/a/ws?after=0 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n")
        );
        let mut r = WsReader::new(client, leftover);
        assert_eq!(
            r.next().await.unwrap(),
            Some(Frame::Text(Bytes::from_static(b"first")))
        );
    }

    #[tokio::test]
    async fn handshake_failures_say_why() {
        let answers: [(&[u8], &str); 3] = [
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 17\r\n\r\n{\"error\":\"nope\"}\n", "the server refused the upgrade: 400 Bad Request {\"error\":\"nope\"}\n"),
            (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nsec-websocket-accept: wrong\r\n\r\n", "the server's Sec-WebSocket-Accept is Some(\"wrong\"), not"),
            (b"HTTP/1.1 101 Swi", "the server closed the connection during the handshake"),
        ];
        for (answer, why) in answers {
            let (mut client, mut server) = duplex(1 << 16);
            let answer = answer.to_vec();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = server.read(&mut buf).await.unwrap();
                server.write_all(&answer).await.unwrap();
            });
            let e = handshake(&mut client, "h", "/", &[]).await.unwrap_err();
            assert!(e.to_string().starts_with(why), "{e} vs {why}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// However reads split the stream, the messages are the same.
        #[test]
        fn frames_do_not_depend_on_how_reads_split_them(
            messages in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..400), 1usize..4), 0..8),
            sizes in proptest::collection::vec(1usize..50, 0..40),
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (payload, fragments) in &messages {
                // Binary messages, cut into `fragments` frames.
                let cut = payload.len() / fragments;
                let mut at = 0;
                for i in 0..*fragments {
                    let end = if i + 1 == *fragments { payload.len() } else { at + cut };
                    let op = if i == 0 { OP_BINARY } else { OP_CONTINUATION };
                    stream.extend(server_frame(i + 1 == *fragments, op, &payload[at..end]));
                    at = end;
                }
                expected.push(Frame::Binary(Bytes::copy_from_slice(payload)));
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(read_all(stream, sizes)).unwrap();
            prop_assert_eq!(got, expected);
        }
    }
}
