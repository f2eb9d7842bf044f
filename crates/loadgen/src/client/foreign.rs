//! What the clients of another stack's profile share (`target.profile`
//! `socketio` or `generic`): a [`Codec`] that turns a message into the
//! profile's bytes and a received text back into `(sender, number, send
//! time)`; the send loop, which numbers each sender's messages from 1; and
//! the WebSocket receive loop.
//!
//! Such a server has no sequence numbers, resumes or end-of-run message:
//! the audit follows each sender's numbers ([`Inbox::chat`]), and receivers
//! end when the engine says the drain is over ([`RunCtx::finish`]).

use super::context::{ClientSpec, RunCtx, Sending};
use super::inbox::Inbox;
use super::send::{next_send, schedule_for, sent_ok};
use crate::dial::websocket::{WsRead, WsWrite};
use crate::dial::{HttpConn, SharedH2, WsConn};
use crate::profile::Kind;
use crate::record::Metric;
use crate::ws::Frame;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

/// One message to send.
pub(super) struct Outgoing<'a> {
    pub room: &'a str,
    pub from: &'a str,
    /// The sender's message number, from 1.
    pub id: u64,
    /// The intended send time, µs from the start of traffic.
    pub sent_at: u64,
    pub body: &'a str,
}

/// What a received text is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    /// A chat message: its sender, number and send time, and the bytes of
    /// the message itself (for the wire overhead's payload).
    Chat {
        from: String,
        id: Option<u64>,
        sent_at: Option<u64>,
        payload: usize,
    },
    /// The profile's own heartbeat, answered with this text.
    Answer(&'static str),
    /// Nothing for the audit: an acknowledgement, a no-op.
    Other,
    /// Not what the profile expects.
    Bad(String),
}

/// A profile's messages on the wire.
pub(super) trait Codec: Send + Sync {
    /// The text of one message (a frame, or a POST's body).
    fn encode(&self, m: &Outgoing<'_>) -> String;
    /// What one received text is.
    fn decode(&self, text: &[u8]) -> Decoded;
}

impl Inbox {
    /// Takes one received text; returns the answer the profile's
    /// heartbeat wants, if any.
    pub(super) fn take(&mut self, codec: &dyn Codec, text: &[u8]) -> Option<&'static str> {
        match codec.decode(text) {
            Decoded::Chat {
                from,
                id,
                sent_at,
                payload,
            } => {
                self.payload(payload as u64, 1);
                self.chat(&from, id, sent_at);
                None
            }
            Decoded::Answer(a) => Some(a),
            Decoded::Other => None,
            Decoded::Bad(why) => {
                self.ctx.count_error("unparseable message", why);
                None
            }
        }
    }
}

/// Where a sender's messages go.
pub(super) enum Out {
    /// Text frames on the client's WebSocket, shared with its receiver
    /// (pongs, the close).
    Ws(Arc<Mutex<WsWrite>>),
    /// HTTP POSTs on a connection of the sender's own; `target` makes
    /// each request's path. Under a lock: an Engine.IO polling client
    /// answers heartbeats on it too, and a session takes one POST at a time.
    Post {
        conn: Arc<Mutex<HttpConn>>,
        target: Arc<dyn Fn() -> String + Send + Sync>,
        /// The client, whose connection it is.
        key: u64,
    },
}

impl Clone for Out {
    fn clone(&self) -> Out {
        match self {
            Out::Ws(w) => Out::Ws(w.clone()),
            Out::Post { conn, target, key } => Out::Post {
                conn: conn.clone(),
                target: target.clone(),
                key: *key,
            },
        }
    }
}

impl Out {
    /// Closes a POST connection once its last user is done (a WebSocket
    /// is closed by its receiver).
    pub(super) async fn close(self) {
        if let Out::Post { conn, .. } = self {
            if let Ok(c) = Arc::try_unwrap(conn) {
                c.into_inner().close().await;
            }
        }
    }

    /// Sends one text; an error says why it was not taken.
    pub(super) async fn send(&self, ctx: &RunCtx, text: &str) -> Result<(), String> {
        match self {
            Out::Ws(w) => w.lock().await.text(text).await.map_err(|e| e.to_string()),
            Out::Post { conn, target, key } => {
                post(ctx, *key, conn, &target(), text.as_bytes()).await
            }
        }
    }
}

/// POSTs `body` to `path` on `conn`, reopened first when the server has
/// closed it while it was idle (Node.js closes an idle keep-alive
/// connection after 5 s; a browser then opens another, and so does this).
/// Any 2xx answer is success; otherwise the status and body say why.
pub(super) async fn post(
    ctx: &RunCtx,
    key: u64,
    conn: &Mutex<HttpConn>,
    path: &str,
    body: &[u8],
) -> Result<(), String> {
    let mut c = conn.lock().await;
    if c.is_closed() {
        let fresh = ctx
            .dial
            .http(key, &SharedH2::default())
            .await
            .map_err(|e| e.to_string())?;
        std::mem::replace(&mut *c, fresh).close().await;
    }
    match c.call(Kind::Publish, "POST", path, body).await {
        Ok((status, _, _)) if status.is_success() => Ok(()),
        Ok((status, body, _)) => Err(format!("{status} {}", String::from_utf8_lossy(&body))),
        Err(e) => Err(e.to_string()),
    }
}

/// Starts client `spec`'s sender on the send thread, publishing through
/// `out` in `codec`'s words. A WebSocket sender waits, before it ends,
/// for its last message to come back through its room (a frame has no
/// answer), which `inbox` reports.
pub(super) fn spawn_sender(
    ctx: &Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    codec: Arc<dyn Codec>,
    out: Out,
    inbox: &mut Inbox,
) -> Option<tokio::task::JoinHandle<()>> {
    let sender = spec.sender?;
    let ctx = ctx.clone();
    let room = room.to_owned();
    let from = format!("c{}", spec.id);
    let echo = matches!(out, Out::Ws(_)).then(|| {
        let (seen_tx, seen) = watch::channel(0u64);
        inbox.own = Some((from.clone(), seen_tx));
        seen
    });
    let sending = Sending::new(&ctx);
    Some(ctx.sends.handle().clone().spawn(async move {
        let Some(clock) = ctx.started().await else {
            return;
        };
        let mut schedule = schedule_for(&ctx, sender);
        let mut last_sent = None;
        let mut id = 0;
        while let Some(at_us) = next_send(&ctx, &clock, spec.id, &mut schedule, 0).await {
            id += 1;
            let text = codec.encode(&Outgoing {
                room: &room,
                from: &from,
                id,
                sent_at: at_us,
                body: &ctx.body,
            });
            match out.send(&ctx, &text).await {
                Ok(()) => {
                    sent_ok(&ctx, at_us);
                    last_sent = Some(at_us);
                }
                Err(e) => {
                    ctx.count_error("publish", e);
                    if matches!(out, Out::Ws(_)) {
                        break;
                    }
                }
            }
        }
        if let (Some(last), Some(mut seen)) = (last_sent, echo) {
            tokio::select! {
                _ = seen.wait_for(|&v| v >= last) => {}
                _ = ctx.abort.cancelled() => {}
            }
        }
        drop(sending);
    }))
}

/// What setting a client up cost before its WebSocket's own bytes:
/// another transport's bytes (Socket.IO's polling before an upgrade) and
/// the requests made, the WebSocket's opening included.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Setup {
    pub bytes: u64,
    pub requests: u64,
}

/// Client `spec`'s life on a WebSocket its profile has set up (`ws`,
/// subscribed to its room once `joined` at `start`): a sender publishes on
/// it, the receiver reads the room until the run is over, then closes.
pub(super) async fn run_websocket(
    ctx: Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    codec: Arc<dyn Codec>,
    ws: WsConn,
    start: Instant,
    post: Option<Out>,
    setup: Setup,
) {
    let WsConn {
        mut reader,
        writer,
        handles,
        ..
    } = ws;
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    inbox.read_at = Some(handles.read_at.clone());
    let (up, down) = handles.cut.bytes();
    joined(&ctx, start, setup.bytes + up + down, setup.requests);
    let out = Arc::new(Mutex::new(writer));
    let publish = post.unwrap_or_else(|| Out::Ws(out.clone()));
    let sender = spawn_sender(&ctx, spec, room, codec.clone(), publish.clone(), &mut inbox);
    receive_frames(&ctx, &mut inbox, codec.as_ref(), &mut reader, &out).await;
    inbox.own = None;
    if let Some(task) = sender {
        let _ = task.await;
    }
    close_websocket(&out, &mut reader).await;
    publish.close().await;
}

/// Client `key` has joined its room, `start` being its first connect:
/// its join's time, bytes and requests are recorded (the connects' own
/// times are in `connect_us`, by the dialer or here for a WebSocket), and
/// it is ready.
pub(super) fn joined(ctx: &RunCtx, start: Instant, bytes: u64, requests: u64) {
    ctx.rec
        .join
        .joined(bytes, requests, start.elapsed().as_micros() as u64);
    ctx.client_ready();
}

/// Reads frames into `inbox` until the run is over or the socket ends,
/// answering WebSocket pings and the profile's own heartbeats.
async fn receive_frames(
    ctx: &RunCtx,
    inbox: &mut Inbox,
    codec: &dyn Codec,
    reader: &mut WsRead,
    out: &Mutex<WsWrite>,
) {
    let over = ctx.over();
    tokio::pin!(over);
    while !inbox.done() {
        let next = tokio::select! {
            n = reader.next() => n,
            _ = &mut over => break,
        };
        let answered = match next {
            Ok(Some(Frame::Text(t))) => match inbox.take(codec, &t) {
                Some(answer) => out.lock().await.text(answer).await,
                None => Ok(()),
            },
            Ok(Some(Frame::Ping(p))) => out.lock().await.pong(&p).await,
            Ok(Some(Frame::Close(_))) | Ok(None) => {
                if !inbox.done() {
                    ctx.count_error(
                        "websocket",
                        "closed by the server before the end of the run",
                    );
                }
                break;
            }
            Ok(Some(Frame::Binary(_) | Frame::Pong(_))) => Ok(()),
            Err(e) => {
                ctx.count_error("websocket", e);
                break;
            }
        };
        if let Err(e) = answered {
            ctx.count_error("websocket", e);
            break;
        }
    }
}

/// A clean close: ours, then the server's, at most 2 s.
pub(super) async fn close_websocket(out: &Mutex<WsWrite>, reader: &mut WsRead) {
    if out.lock().await.close().await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(f)) = reader.next().await {
                if matches!(f, Frame::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Opens client `key`'s WebSocket at `target`, its connect time (TCP and
/// the opening handshake) recorded as chatbench's own WebSocket's is.
pub(super) async fn open_websocket(ctx: &RunCtx, key: u64, target: &str) -> Result<WsConn, String> {
    let start = Instant::now();
    let ws = ctx
        .dial
        .websocket(key, target)
        .await
        .map_err(|e| e.to_string())?;
    ctx.rec
        .record(key, Metric::Connect, start.elapsed().as_micros() as u64);
    Ok(ws)
}

/// Reads the next text frame of a WebSocket being set up (answering
/// pings), at most 10 s.
pub(super) async fn next_text(
    reader: &mut WsRead,
    writer: &mut WsWrite,
) -> Result<bytes::Bytes, String> {
    let read = async {
        loop {
            match reader.next().await {
                Ok(Some(Frame::Text(t))) => return Ok(t),
                Ok(Some(Frame::Ping(p))) => writer.pong(&p).await.map_err(|e| e.to_string())?,
                Ok(Some(Frame::Close(c))) => return Err(format!("closed by the server: {c:?}")),
                Ok(None) => return Err("the server closed the connection".into()),
                Ok(Some(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| Err("no answer in 10 s".into()))
}

/// Counts one more connect attempt that failed, and waits before the next
/// one; false when the run aborted.
pub(super) async fn failed_setup(ctx: &RunCtx, what: &str, why: impl std::fmt::Display) -> bool {
    ctx.count_error(what, why);
    if ctx.abort.is_cancelled() {
        return false;
    }
    ctx.backoff().await;
    !ctx.abort.is_cancelled()
}
