//! The `socketio` profile: Engine.IO 4 and Socket.IO 5 as the official
//! client (`socket.io-client` 4.8) puts them on the wire, and the chat
//! convention of `docs/targets.md`: a client emits `join` with its room's
//! name (acknowledged), then `chat` with `{from, body, sent_at, id}`, which
//! the server sends to everyone in the room.
//!
//! Transports: `long_poll` is Engine.IO polling (a GET held open for what
//! comes down, POSTs for what goes up, packets joined by `\x1e`);
//! `websocket` is Engine.IO over a WebSocket from the start, or, with
//! `target.upgrade`, polling first and then the probe (`2probe`,
//! `3probe`) and the upgrade (`5`), as a browser's client does.
//! Heartbeats (`2`) are answered (`3`) on either.

use super::context::{ClientSpec, RunCtx};
use super::foreign::{
    self, failed_setup, joined, next_text, post, run_websocket, spawn_sender, Codec, Decoded, Out,
    Outgoing, Setup,
};
use super::inbox::Inbox;
use crate::dial::websocket::{WsRead, WsWrite};
use crate::dial::{HttpConn, SharedH2, WsConn};
use crate::profile::Kind;
use crate::Transport;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Engine.IO's path and protocol version.
const EIO: &str = "/socket.io/?EIO=4";
/// Engine.IO joins the packets of one polling payload with this byte.
const SEPARATOR: u8 = 0x1e;
/// `42["chat",` before a chat message's object, `]` after it.
const CHAT_PREFIX: &[u8] = b"42[\"chat\",";

/// Runs one Socket.IO client until the run ends.
pub(super) async fn socketio_client(ctx: Arc<RunCtx>, spec: ClientSpec, room: &str) {
    let codec: Arc<dyn Codec> = Arc::new(SocketIo);
    let start = Instant::now();
    if ctx.transport == Transport::LongPoll {
        let Some(session) = retrying(&ctx, || open_polling(&ctx, spec.id, Some(room))).await else {
            return;
        };
        return run_polling(ctx, spec, room, codec, session, start).await;
    }
    let upgrade = ctx.scenario.target.upgrade;
    let Some((ws, setup)) = retrying(&ctx, || async {
        if upgrade {
            open_upgraded(&ctx, spec.id, room).await
        } else {
            open_websocket_first(&ctx, spec.id, room).await
        }
    })
    .await
    else {
        return;
    };
    run_websocket(ctx, spec, room, codec, ws, start, None, setup).await;
}

/// Tries `open` until it works or the run aborts.
async fn retrying<T, F, Fut>(ctx: &RunCtx, open: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    loop {
        match open().await {
            Ok(t) => return Some(t),
            Err(e) => {
                if !failed_setup(ctx, "connect", e).await {
                    return None;
                }
            }
        }
    }
}

/// The Socket.IO codec of the chat convention.
struct SocketIo;

/// A chat message as the convention sends it.
#[derive(Serialize)]
struct ChatOut<'a> {
    from: &'a str,
    body: &'a str,
    sent_at: u64,
    id: u64,
}

/// What the audit reads of a received chat message.
#[derive(Deserialize)]
struct ChatIn<'a> {
    #[serde(borrow)]
    from: std::borrow::Cow<'a, str>,
    id: Option<u64>,
    sent_at: Option<u64>,
}

impl Codec for SocketIo {
    fn encode(&self, m: &Outgoing<'_>) -> String {
        let event = (
            "chat",
            ChatOut {
                from: m.from,
                body: m.body,
                sent_at: m.sent_at,
                id: m.id,
            },
        );
        // Serializing strings and numbers cannot fail.
        format!("42{}", serde_json::to_string(&event).unwrap_or_default())
    }

    fn decode(&self, text: &[u8]) -> Decoded {
        let bad = || Decoded::Bad(String::from_utf8_lossy(text).into_owned());
        match text {
            b"2" => Decoded::Answer("3"),
            b"3" | b"6" => Decoded::Other,
            // A connect answer or an acknowledgement.
            [b'4', b'0', ..] | [b'4', b'3', ..] => Decoded::Other,
            t if t.starts_with(CHAT_PREFIX) && t.ends_with(b"]") => {
                let object = &t[CHAT_PREFIX.len()..t.len() - 1];
                match serde_json::from_slice::<ChatIn<'_>>(object) {
                    Ok(c) => Decoded::Chat {
                        from: c.from.into_owned(),
                        id: c.id,
                        sent_at: c.sent_at,
                        payload: object.len(),
                    },
                    Err(_) => bad(),
                }
            }
            _ => bad(),
        }
    }
}

/// The `open` packet's fields that the client uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Open {
    sid: String,
}

/// The `t` query parameter the official client adds to every polling
/// request so that no cache answers it: 11 characters, as its
/// `randomString()` makes.
fn cache_buster() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut n = crate::clock::unix_now_us() / 1000 * 1000 + N.fetch_add(1, Relaxed) % 1000;
    let mut out = [b'0'; 11];
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn polling_target(sid: Option<&str>) -> String {
    match sid {
        None => format!("{EIO}&transport=polling&t={}", cache_buster()),
        Some(sid) => format!("{EIO}&transport=polling&t={}&sid={sid}", cache_buster()),
    }
}

/// The `join` emit, asking for acknowledgement 0.
fn join_packet(room: &str) -> String {
    format!("420{}", serde_json::json!(["join", room]))
}

/// An Engine.IO polling session: its id, the connection its GETs are held
/// on, and the one its POSTs go on.
struct Polling {
    key: u64,
    /// Requests made in the session so far.
    requests: u64,
    sid: String,
    get: HttpConn,
    post: Arc<Mutex<HttpConn>>,
}

impl Polling {
    /// One GET: the packets it brought.
    async fn get(&mut self) -> Result<Vec<bytes::Bytes>, String> {
        self.requests += 1;
        let target = polling_target(Some(&self.sid));
        match self.get.call(Kind::Poll, "GET", &target, b"").await {
            Ok((StatusCode::OK, body, _)) => Ok(split(body)),
            Ok((status, body, _)) => Err(format!("{status} {}", String::from_utf8_lossy(&body))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// GETs until a packet starting with `prefix` comes, answering
    /// heartbeats on the way.
    async fn get_until(&mut self, ctx: &RunCtx, prefix: &[u8]) -> Result<(), String> {
        for _ in 0..10 {
            for p in self.get().await? {
                if p.starts_with(prefix) {
                    return Ok(());
                }
                if p.as_ref() == b"2" {
                    self.requests += 1;
                    post_on(ctx, (self.key, &self.post, &self.sid), "3").await?;
                }
            }
        }
        Err(format!(
            "no {} packet in 10 polls",
            String::from_utf8_lossy(prefix)
        ))
    }

    /// Bytes both ways on the session's connections so far (a free
    /// function's future, for the reason [`post_on`] is one).
    fn bytes(&self) -> impl std::future::Future<Output = u64> + Send + 'static {
        let (gu, gd) = self.get.handles.cut.bytes();
        let post = self.post.clone();
        async move {
            let (pu, pd) = post.lock().await.handles.cut.bytes();
            gu + gd + pu + pd
        }
    }

    async fn close(self) {
        self.get.close().await;
        if let Ok(p) = Arc::try_unwrap(self.post) {
            p.into_inner().close().await;
        }
    }
}

/// One POST of `packets` (joined) in the session; Engine.IO answers
/// `ok`. (A free function: a borrow of the whole session across the
/// request would need its GET connection to be `Sync`.)
async fn post_on(
    ctx: &RunCtx,
    s: (u64, &Mutex<HttpConn>, &str),
    packets: &str,
) -> Result<(), String> {
    let (key, conn, sid) = s;
    post(
        ctx,
        key,
        conn,
        &polling_target(Some(sid)),
        packets.as_bytes(),
    )
    .await
}

/// A polling payload's packets.
fn split(body: bytes::Bytes) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in body.iter().enumerate() {
        if b == SEPARATOR {
            out.push(body.slice(start..i));
            start = i + 1;
        }
    }
    out.push(body.slice(start..));
    out
}

/// Opens an Engine.IO polling session and connects Socket.IO's main
/// namespace (`40`); with a room, joins it too.
async fn open_polling(ctx: &RunCtx, key: u64, room: Option<&str>) -> Result<Polling, String> {
    // HTTP/1.1 only (the scenario refuses HTTP/2 for this profile): each
    // connection is its own.
    let own = SharedH2::default();
    let mut get = ctx.dial.http(key, &own).await.map_err(|e| e.to_string())?;
    let open = match get
        .call(Kind::Poll, "GET", &polling_target(None), b"")
        .await
    {
        Ok((StatusCode::OK, body, _)) => body,
        Ok((status, body, _)) => {
            return Err(format!("{status} {}", String::from_utf8_lossy(&body)));
        }
        Err(e) => return Err(e.to_string()),
    };
    let sid = parse_open(&open)?;
    let post = ctx.dial.http(key, &own).await.map_err(|e| e.to_string())?;
    let mut s = Polling {
        key,
        // The handshake's GET.
        requests: 1,
        sid,
        get,
        post: Arc::new(Mutex::new(post)),
    };
    s.requests += 1;
    post_on(ctx, (key, &s.post, &s.sid), "40").await?;
    s.get_until(ctx, b"40").await?;
    if let Some(room) = room {
        s.requests += 1;
        post_on(ctx, (key, &s.post, &s.sid), &join_packet(room)).await?;
        s.get_until(ctx, b"430").await?;
    }
    Ok(s)
}

/// The session id of an `open` packet (`0{...}`).
fn parse_open(packet: &[u8]) -> Result<String, String> {
    packet
        .strip_prefix(b"0")
        .and_then(|json| serde_json::from_slice::<Open>(json).ok())
        .map(|o| o.sid)
        .ok_or_else(|| {
            format!(
                "not an Engine.IO open packet: {}",
                String::from_utf8_lossy(packet)
            )
        })
}

/// Socket.IO over a WebSocket from the start: `open`, connect, join.
async fn open_websocket_first(
    ctx: &RunCtx,
    key: u64,
    room: &str,
) -> Result<(WsConn, Setup), String> {
    let target = format!("{EIO}&transport=websocket");
    let mut ws = foreign::open_websocket(ctx, key, &target).await?;
    let open = next_text(&mut ws.reader, &mut ws.writer).await?;
    parse_open(&open)?;
    ws.writer.text("40").await.map_err(|e| e.to_string())?;
    until(&mut ws.reader, &mut ws.writer, b"40").await?;
    join(&mut ws.reader, &mut ws.writer, room).await?;
    let setup = Setup {
        bytes: 0,
        requests: 1,
    };
    Ok((ws, setup))
}

/// Polling first, then the upgrade to a WebSocket, then the join, as the
/// official client does in a browser.
async fn open_upgraded(ctx: &RunCtx, key: u64, room: &str) -> Result<(WsConn, Setup), String> {
    let polling = open_polling(ctx, key, None).await?;
    let target = format!("{EIO}&transport=websocket&sid={}", polling.sid);
    let mut ws = foreign::open_websocket(ctx, key, &target).await?;
    ws.writer.text("2probe").await.map_err(|e| e.to_string())?;
    let probe = next_text(&mut ws.reader, &mut ws.writer).await?;
    if probe.as_ref() != b"3probe" {
        return Err(format!(
            "probe answered {}",
            String::from_utf8_lossy(&probe)
        ));
    }
    // No GET is held open here, so nothing is left to flush on the
    // polling side: the upgrade takes effect at once.
    ws.writer.text("5").await.map_err(|e| e.to_string())?;
    let setup = Setup {
        bytes: polling.bytes().await,
        requests: polling.requests + 1,
    };
    polling.close().await;
    join(&mut ws.reader, &mut ws.writer, room).await?;
    Ok((ws, setup))
}

/// Reads text frames until one starts with `prefix`, answering
/// heartbeats.
async fn until(reader: &mut WsRead, writer: &mut WsWrite, prefix: &[u8]) -> Result<(), String> {
    for _ in 0..10 {
        let t = next_text(reader, writer).await?;
        if t.starts_with(prefix) {
            return Ok(());
        }
        if t.as_ref() == b"2" {
            writer.text("3").await.map_err(|e| e.to_string())?;
        }
    }
    Err(format!(
        "no {} packet in 10 frames",
        String::from_utf8_lossy(prefix)
    ))
}

async fn join(reader: &mut WsRead, writer: &mut WsWrite, room: &str) -> Result<(), String> {
    writer
        .text(&join_packet(room))
        .await
        .map_err(|e| e.to_string())?;
    until(reader, writer, b"430").await
}

/// A polling client's life: a sender POSTs on the session's second
/// connection, the receiver holds GETs until the run is over.
async fn run_polling(
    ctx: Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    codec: Arc<dyn Codec>,
    mut session: Polling,
    start: Instant,
) {
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    inbox.read_at = Some(session.get.handles.read_at.clone());
    joined(&ctx, start, session.bytes().await, session.requests);
    let sid = session.sid.clone();
    let out = Out::Post {
        conn: session.post.clone(),
        target: Arc::new(move || polling_target(Some(&sid))),
        key: spec.id,
    };
    let sender = spawn_sender(&ctx, spec, room, codec.clone(), out, &mut inbox);
    let over = ctx.over();
    tokio::pin!(over);
    // Polling goes on from the join, as the official client's does: a
    // session that holds no GET misses its heartbeats.
    while !inbox.done() {
        let packets = tokio::select! {
            p = session.get() => p,
            _ = &mut over => break,
        };
        let packets = match packets {
            Ok(p) => p,
            Err(e) => {
                ctx.count_error("poll", e);
                break;
            }
        };
        for p in packets {
            if p.as_ref() == b"1" {
                ctx.count_error("poll", "the server closed the session");
                inbox.stopped = true;
            } else if let Some(answer) = inbox.take(codec.as_ref(), &p) {
                if let Err(e) = post_on(&ctx, (spec.id, &session.post, &session.sid), answer).await
                {
                    ctx.count_error("poll", e);
                }
            }
        }
    }
    if let Some(task) = sender {
        let _ = task.await;
    }
    session.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_messages_round_trip_through_the_codec() {
        let text = SocketIo.encode(&Outgoing {
            room: "r",
            from: "c3",
            id: 7,
            sent_at: 1_500,
            body: "xx",
        });
        assert_eq!(
            text,
            r#"42["chat",{"from":"c3","body":"xx","sent_at":1500,"id":7}]"#
        );
        assert_eq!(
            SocketIo.decode(text.as_bytes()),
            Decoded::Chat {
                from: "c3".into(),
                id: Some(7),
                sent_at: Some(1_500),
                payload: text.len() - CHAT_PREFIX.len() - 1,
            }
        );
    }

    #[test]
    fn heartbeats_are_answered_and_acks_ignored() {
        assert_eq!(SocketIo.decode(b"2"), Decoded::Answer("3"));
        assert_eq!(SocketIo.decode(b"6"), Decoded::Other);
        assert_eq!(SocketIo.decode(b"430[\"ok\"]"), Decoded::Other);
        assert_eq!(SocketIo.decode(b"40{\"sid\":\"x\"}"), Decoded::Other);
        assert_eq!(
            SocketIo.decode(b"42[\"other\",1]"),
            Decoded::Bad("42[\"other\",1]".into())
        );
    }

    #[test]
    fn polling_payloads_split_on_the_record_separator() {
        let parts = split(bytes::Bytes::from_static(b"2\x1e42[\"chat\",{}]\x1e6"));
        assert_eq!(parts, vec!["2".as_bytes(), b"42[\"chat\",{}]", b"6"]);
        assert_eq!(
            parse_open(br#"0{"sid":"abc","upgrades":["websocket"]}"#),
            Ok("abc".into())
        );
        assert!(parse_open(b"40").is_err());
        assert_eq!(cache_buster().len(), 11);
        assert_eq!(join_packet("room-1"), r#"420["join","room-1"]"#);
    }
}
