//! A WebTransport session over a client's QUIC connection ([`super::quic`]),
//! as a browser opens one: HTTP/3's control stream with SETTINGS that
//! enable WebTransport, an extended CONNECT (`:protocol = webtransport`)
//! on a request stream, then the session's streams.
//!
//! The HTTP/3 here is the few bytes a session needs, written by hand: the
//! h3 crate's client has no WebTransport, and wtransport's client makes its
//! own UDP socket, where the load generator must count every datagram on
//! a socket of its own making. Header fields are QPACK-encoded with the
//! static table and literals (no dynamic table, as the server's h3 does).
//!
//! The session's messages come on unidirectional streams the server opens
//! (`0x54`, then the session id), a `\n` after each; publishes go on one
//! bidirectional stream the client opens (`0x41`, then the session id),
//! one JSON publish per line.

use super::quic::QuicConn;
use super::tls::Handles;
use bytes::{BufMut, Bytes, BytesMut};
use std::io;

/// HTTP/3 frame and stream types, and settings, that a session uses.
const CONTROL_STREAM: u64 = 0x00;
const FRAME_DATA: u64 = 0x00;
const FRAME_HEADERS: u64 = 0x01;
const FRAME_SETTINGS: u64 = 0x04;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
const SETTINGS_H3_DATAGRAM: u64 = 0x33;
const SETTINGS_ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
/// A unidirectional stream of a WebTransport session.
const WT_UNI_STREAM: u64 = 0x54;
/// A bidirectional stream of a WebTransport session (its first bytes).
const WT_BIDI_SIGNAL: u64 = 0x41;

/// Appends `v` as a QUIC variable-length integer (RFC 9000 16).
pub fn put_varint(out: &mut BytesMut, v: u64) {
    match v {
        0..=63 => out.put_u8(v as u8),
        64..=16_383 => out.put_u16(0x4000 | v as u16),
        16_384..=1_073_741_823 => out.put_u32(0x8000_0000 | v as u32),
        _ => out.put_u64(0xc000_0000_0000_0000 | v),
    }
}

/// Reads a QUIC variable-length integer from `stream`; None at its end.
async fn read_varint(stream: &mut quinn::RecvStream) -> io::Result<Option<u64>> {
    let mut first = [0u8; 1];
    match stream.read(&mut first).await.map_err(io::Error::other)? {
        Some(1) => {}
        _ => return Ok(None),
    }
    let len = 1usize << (first[0] >> 6);
    let mut rest = [0u8; 8];
    stream
        .read_exact(&mut rest[..len - 1])
        .await
        .map_err(io::Error::other)?;
    let mut v = u64::from(first[0] & 0x3f);
    for b in &rest[..len - 1] {
        v = (v << 8) | u64::from(*b);
    }
    Ok(Some(v))
}

/// Appends a QPACK (HPACK) prefix integer: `flags` in the first byte's
/// high bits, `bits` bits of prefix.
fn put_prefixed(out: &mut BytesMut, flags: u8, bits: u8, v: usize) {
    let max = (1usize << bits) - 1;
    if v < max {
        out.put_u8(flags | v as u8);
        return;
    }
    out.put_u8(flags | max as u8);
    let mut rest = v - max;
    while rest >= 128 {
        out.put_u8(0x80 | (rest % 128) as u8);
        rest /= 128;
    }
    out.put_u8(rest as u8);
}

/// Reads a prefix integer of `bits` bits at the start of `b`: the value
/// and the bytes it took.
fn prefixed(b: &[u8], bits: u8) -> Option<(usize, usize)> {
    let max = (1usize << bits) - 1;
    let mut v = usize::from(*b.first()?) & max;
    if v < max {
        return Some((v, 1));
    }
    let mut shift = 0;
    for (i, byte) in b[1..].iter().enumerate().take(4) {
        v += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((v, i + 2));
        }
        shift += 7;
    }
    None
}

/// Appends a string literal without Huffman coding (7-bit length prefix).
fn put_string(out: &mut BytesMut, s: &str) {
    put_prefixed(out, 0x00, 7, s.len());
    out.put_slice(s.as_bytes());
}

/// The QPACK field section of the CONNECT that opens a session at `path`
/// on `authority`: static-table references and literals only.
pub fn connect_headers(authority: &str, path: &str) -> BytesMut {
    let mut f = BytesMut::with_capacity(64 + path.len());
    // Required Insert Count 0, Delta Base 0: no dynamic table.
    f.put_slice(&[0x00, 0x00]);
    // Indexed field lines (static): 15 `:method: CONNECT`, 23 `:scheme: https`.
    put_prefixed(&mut f, 0xc0, 6, 15);
    put_prefixed(&mut f, 0xc0, 6, 23);
    // Literal values with static name references: 0 `:authority`, 1 `:path`.
    put_prefixed(&mut f, 0x50, 4, 0);
    put_string(&mut f, authority);
    put_prefixed(&mut f, 0x50, 4, 1);
    put_string(&mut f, path);
    // `:protocol` is in no static table: a literal name and value.
    for (name, value) in [
        (":protocol", "webtransport"),
        ("sec-webtransport-http3-draft02", "1"),
    ] {
        put_prefixed(&mut f, 0x20, 3, name.len());
        f.put_slice(name.as_bytes());
        put_string(&mut f, value);
    }
    f
}

/// The status of a response's QPACK field section: its first field line,
/// an indexed `:status` of the static table, or a literal value.
pub fn status_of(section: &[u8]) -> Option<u16> {
    // The static table's `:status` entries.
    const STATUS: [(usize, u16); 14] = [
        (24, 103),
        (25, 200),
        (26, 304),
        (27, 404),
        (28, 503),
        (63, 100),
        (64, 204),
        (65, 206),
        (66, 302),
        (67, 400),
        (68, 403),
        (69, 421),
        (70, 425),
        (71, 500),
    ];
    // Skip the prefix: two prefix integers, 0 for a static-only section.
    let line = section.get(2..)?;
    let first = *line.first()?;
    if first & 0xc0 == 0xc0 {
        let (index, _) = prefixed(line, 6)?;
        return STATUS.iter().find(|(i, _)| *i == index).map(|(_, s)| *s);
    }
    // A literal with a static name reference to a `:status` entry, its
    // value not Huffman-coded.
    if first & 0xf0 == 0x50 {
        let (index, used) = prefixed(line, 4)?;
        if !STATUS.iter().any(|(i, _)| *i == index) {
            return None;
        }
        let value = line.get(used..)?;
        if value.first()? & 0x80 != 0 {
            return None;
        }
        let (len, used) = prefixed(value, 7)?;
        return std::str::from_utf8(value.get(used..used + len)?)
            .ok()?
            .parse()
            .ok();
    }
    None
}

/// An open WebTransport session.
pub struct WtConn {
    /// The QUIC connection the session runs on.
    pub quic: QuicConn,
    /// The session id: the CONNECT's stream id.
    pub session: u64,
    /// The socket's counts and arrival stamp.
    pub handles: Handles,
    /// HTTP/3 streams that must stay open while the session lives: the
    /// client's control stream and the CONNECT stream's sending half ...
    _sends: Vec<quinn::SendStream>,
    /// ... and the CONNECT stream's receiving half, the server's control
    /// and QPACK streams.
    _recvs: Vec<quinn::RecvStream>,
}

impl std::fmt::Debug for WtConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtConn")
            .field("session", &self.session)
            .finish()
    }
}

/// Opens a session at `target` (path and query) on `quic`: SETTINGS, the
/// CONNECT, and its answer, which must be 200.
pub async fn open(quic: QuicConn, authority: &str, target: &str) -> io::Result<WtConn> {
    let conn = quic.conn.clone();
    let mut control = conn.open_uni().await.map_err(io::Error::other)?;
    let mut settings = BytesMut::new();
    for (id, value) in [
        (SETTINGS_ENABLE_CONNECT_PROTOCOL, 1),
        (SETTINGS_H3_DATAGRAM, 1),
        (SETTINGS_ENABLE_WEBTRANSPORT, 1),
    ] {
        put_varint(&mut settings, id);
        put_varint(&mut settings, value);
    }
    let mut out = BytesMut::new();
    put_varint(&mut out, CONTROL_STREAM);
    put_varint(&mut out, FRAME_SETTINGS);
    put_varint(&mut out, settings.len() as u64);
    out.put_slice(&settings);
    control.write_all(&out).await.map_err(io::Error::other)?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(io::Error::other)?;
    let session = u64::from(quinn::VarInt::from(send.id()));
    let section = connect_headers(authority, target);
    let mut head = BytesMut::new();
    put_varint(&mut head, FRAME_HEADERS);
    put_varint(&mut head, section.len() as u64);
    head.put_slice(&section);
    send.write_all(&head).await.map_err(io::Error::other)?;
    let status = read_answer(&mut recv).await?;
    if status.0 != Some(200) {
        return Err(io::Error::other(format!(
            "WebTransport session refused: {} {}",
            status
                .0
                .map_or("status unreadable".to_owned(), |s| s.to_string()),
            String::from_utf8_lossy(&status.1)
        )));
    }
    let handles = Handles::quic(conn, quic.counts.clone());
    Ok(WtConn {
        quic,
        session,
        handles,
        _sends: vec![control, send],
        _recvs: vec![recv],
    })
}

/// Reads the CONNECT's answer: its status, and for a refusal the body
/// that came with it.
async fn read_answer(recv: &mut quinn::RecvStream) -> io::Result<(Option<u16>, Bytes)> {
    let mut status = None;
    loop {
        let Some(kind) = read_varint(recv).await? else {
            return Ok((status, Bytes::new()));
        };
        let len = read_varint(recv)
            .await?
            .ok_or_else(|| io::Error::other("the CONNECT's answer ended inside a frame"))?;
        if len > 64 * 1024 {
            return Err(io::Error::other(format!("a frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len as usize];
        recv.read_exact(&mut payload)
            .await
            .map_err(io::Error::other)?;
        match kind {
            FRAME_HEADERS => {
                status = status_of(&payload);
                if status == Some(200) {
                    return Ok((status, Bytes::new()));
                }
            }
            FRAME_DATA => return Ok((status, payload.into())),
            // Reserved (grease) and unknown frames are skipped.
            _ => {}
        }
    }
}

/// What a unidirectional stream from the server is.
#[derive(Debug, PartialEq, Eq)]
pub enum UniStream {
    /// One of the session's: its data follows.
    Session,
    /// HTTP/3's own (control, QPACK) or another session's: kept open,
    /// not read.
    Other,
    /// It ended before its header.
    Empty,
}

impl WtConn {
    /// The next unidirectional stream the server opens; None once the
    /// connection has ended. Its header is read apart
    /// ([`WtConn::header`]), so that waiting for it can be cancelled
    /// without losing the stream (quinn's accept is cancel-safe; a header
    /// whose packet was lost is not).
    pub async fn accept_uni(&self) -> Option<quinn::RecvStream> {
        self.quic.conn.accept_uni().await.ok()
    }

    /// The session id, to read stream headers against.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Reads a unidirectional stream's header: whether it is `session`'s.
    pub async fn header(s: &mut quinn::RecvStream, session: u64) -> io::Result<UniStream> {
        Ok(match read_varint(s).await? {
            Some(WT_UNI_STREAM) => match read_varint(s).await? {
                Some(id) if id == session => UniStream::Session,
                Some(_) => UniStream::Other,
                None => UniStream::Empty,
            },
            Some(_) => UniStream::Other,
            None => UniStream::Empty,
        })
    }

    /// Keeps a stream of HTTP/3's own open while the session lives.
    pub fn keep(&mut self, s: quinn::RecvStream) {
        self._recvs.push(s);
    }

    /// Opens the stream this client publishes on, past its header. The
    /// server answers a bad publish on its receiving half.
    pub async fn publisher(&self) -> io::Result<(quinn::SendStream, quinn::RecvStream)> {
        let (mut send, recv) = self.quic.conn.open_bi().await.map_err(io::Error::other)?;
        let mut head = BytesMut::new();
        put_varint(&mut head, WT_BIDI_SIGNAL);
        put_varint(&mut head, self.session);
        send.write_all(&head).await.map_err(io::Error::other)?;
        Ok((send, recv))
    }

    /// Closes the session's connection and waits until the server has its
    /// close (at most 5 s), so both sides counted the same datagrams.
    pub async fn close(self) {
        // The streams are held until the close: a control stream that
        // ended first would be an error to the server's HTTP/3.
        self.quic.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_take_the_shortest_form() {
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (37, vec![0x25]),
            (15_293, vec![0x7b, 0xbd]),
            (494_878_333, vec![0x9d, 0x7f, 0x3e, 0x7d]),
            (0x2b60_3742, vec![0xab, 0x60, 0x37, 0x42]),
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(&out[..], &bytes[..], "{v}");
        }
    }

    #[test]
    fn prefixed_integers_continue_past_their_prefix() {
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = BytesMut::new();
        put_prefixed(&mut out, 0, 5, 1337);
        assert_eq!(&out[..], &[0x1f, 0x9a, 0x0a]);
    }

    #[test]
    fn a_connect_section_starts_with_the_static_method_and_scheme() {
        let f = connect_headers("127.0.0.1:4433", "/rooms/a/wt?after=0");
        assert_eq!(&f[..4], &[0x00, 0x00, 0xcf, 0xd7]);
        assert_eq!(f[4], 0x50);
        assert_eq!(usize::from(f[5]), "127.0.0.1:4433".len());
        let text = String::from_utf8_lossy(&f);
        assert!(text.contains(":protocol") && text.contains("webtransport"));
    }

    #[test]
    fn statuses_read_from_the_static_table_or_a_literal() {
        assert_eq!(status_of(&[0, 0, 0xd9]), Some(200));
        // Static 67, past the 6-bit prefix: 0xff, then 67 - 63.
        assert_eq!(status_of(&[0, 0, 0xff, 0x04]), Some(400));
        let mut s = BytesMut::from(&[0u8, 0][..]);
        put_prefixed(&mut s, 0xc0, 6, 67);
        assert_eq!(&s[2..], &[0xff, 0x04]);
        // A literal whose name is not `:status` (static 8 is `age`).
        assert_eq!(status_of(&[0, 0, 0x50 | 0x08, 3, b'4', b'0', b'5']), None);
        // `:status` (static 24) with the literal value 405.
        let mut s = BytesMut::from(&[0u8, 0][..]);
        put_prefixed(&mut s, 0x50, 4, 24);
        put_string(&mut s, "405");
        assert_eq!(status_of(&s), Some(405));
        assert_eq!(status_of(&[0, 0]), None);
    }
}
