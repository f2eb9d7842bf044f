//! WebSocket: `GET /rooms/{room}/ws`.
//!
//! The handshake is checked here and answered with `101`; the task that
//! awaits `hyper::upgrade::on` is spawned on the server's task tracker before
//! that, because hyper stops tracking the connection once it is upgraded. The
//! session is a cursor over the room log, like every other transport: it
//! sends one text frame per message, takes text frames as publishes, answers
//! bad publishes with `{"error":..}` and stays open, pings on an interval,
//! closes protocol violations with their RFC 6455 code (1002, 1007, 1009),
//! and closes with `1001 Going Away` on shutdown.

use crate::app::{publish_json, subscribe, ApiError, App, Body, Query};
use crate::conn::ConnGuard;
use crate::metrics::{ActiveGuard, Label};
use crate::room::RoomLog;
use chatbench_proto::{ErrorBody, Notice};
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// tungstenite's read buffer, which it zero-fills to its capacity on the
/// first read, so all of it is resident for every socket: at 4 KiB it was
/// most of a WebSocket's 6.7 KiB per connection. Chat publishes are a few
/// hundred bytes; a larger frame makes tungstenite reserve its length.
const READ_BUFFER: usize = 1024;

/// How much tungstenite may hold of outgoing frames: it flushes past
/// `WRITE_BUFFER` and takes one more message while the socket is blocked.
const WRITE_BUFFER: usize = 8 * 1024;

/// Buffer sizes chosen for many idle sockets rather than bulk throughput:
/// tungstenite's defaults (128 KiB read buffer) would cost over a gigabyte
/// at 10k connections. Chat frames are a few hundred bytes. An incoming
/// message, fragmented or not, may be as large as a POST body and no larger
/// (1009 past it), so an unfinished message holds at most the body limit.
fn ws_config(body_limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + body_limit.max(1 << 16) + 1024)
        .max_message_size(Some(body_limit))
        .max_frame_size(Some(body_limit))
}

fn header_has(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

pub(crate) fn upgrade(
    app: &Arc<App>,
    room_name: &str,
    mut req: Request<Incoming>,
    guard: Arc<ConnGuard>,
) -> Result<Response<Body>, ApiError> {
    if !header_has(&req, header::UPGRADE, "websocket")
        || !header_has(&req, header::CONNECTION, "upgrade")
    {
        let mut e = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket: send a GET with `Connection: Upgrade` and `Upgrade: websocket`",
        );
        e.set_upgrade_header();
        return Err(e);
    }
    check_version(&req)?;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("header Sec-WebSocket-Key is missing"))?;
    let accept = derive_accept_key(key.as_bytes());
    start_session(app, room_name, &mut req, guard)?;
    let mut resp = Response::new(crate::app::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|_| ApiError::bad_request("bad key"))?,
    );
    Ok(resp)
}

/// WebSocket over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol
/// websocket` on one stream, answered `200`; the stream's DATA frames then
/// carry the WebSocket frames.
pub(crate) fn upgrade_h2(
    app: &Arc<App>,
    room_name: &str,
    mut req: Request<Incoming>,
    guard: Arc<ConnGuard>,
) -> Result<Response<Body>, ApiError> {
    let protocol = req
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(|p| p.as_str().to_owned());
    if req.method() != http::Method::CONNECT || protocol.as_deref() != Some("websocket") {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "over HTTP/2 this endpoint speaks WebSocket: send an extended CONNECT with :protocol websocket (RFC 8441), not {}{}",
                req.method(),
                protocol.map(|p| format!(" with :protocol {p}")).unwrap_or_default()
            ),
        );
        e.set_allow("CONNECT");
        return Err(e);
    }
    check_version(&req)?;
    start_session(app, room_name, &mut req, guard)?;
    Ok(Response::new(crate::app::full(bytes::Bytes::new())))
}

/// RFC 6455 version 13, the only one, over either HTTP version.
fn check_version(req: &Request<Incoming>) -> Result<(), ApiError> {
    match req.headers().get(header::SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes() == b"13" => Ok(()),
        _ => Err(ApiError::bad_request(
            "header Sec-WebSocket-Version must be 13",
        )),
    }
}

/// Subscribes to the room and spawns the session that runs once hyper hands
/// over the upgraded stream.
fn start_session(
    app: &Arc<App>,
    room_name: &str,
    req: &mut Request<Incoming>,
    guard: Arc<ConnGuard>,
) -> Result<(), ApiError> {
    let q = Query::parse(req.uri().query())?;
    let log = subscribe(app, room_name)?;
    let cursor = q.after.unwrap_or_else(|| log.head());

    let on_upgrade = hyper::upgrade::on(req);
    let session_app = app.clone();
    app.tracker.spawn(async move {
        // Keep the connection slot until the session ends.
        let _guard = guard;
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config(session_app.config.body_limit)),
                )
                .await;
                session(&session_app, &log, ws, cursor).await;
            }
            Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
        }
    });
    Ok(())
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn error_frame(reason: &str) -> WsMessage {
    WsMessage::Text(Utf8Bytes::from(
        String::from_utf8_lossy(&ErrorBody::json(reason)).into_owned(),
    ))
}

async fn session(app: &App, log: &RoomLog, mut ws: Socket, mut cursor: u64) {
    let _active = ActiveGuard::new(&app.metrics, Label::WebSocket);
    let metrics = app.metrics.of(Label::WebSocket);
    let mut rx = log.subscribe();
    let period = app.config.ws_ping_interval;
    let mut ping = interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let batch = log.read_after(cursor, app.config.max_batch);
        if !batch.is_empty() {
            if batch.missed > 0 {
                let notice = Notice {
                    missed: batch.missed,
                    next: batch.next - batch.messages.len() as u64,
                };
                let text = serde_json::to_string(&notice).unwrap_or_default();
                if ws.feed(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
            let n = batch.messages.len() as u64;
            for m in batch.messages {
                if ws.feed(WsMessage::Text(m)).await.is_err() {
                    return;
                }
            }
            if ws.flush().await.is_err() {
                return;
            }
            metrics.delivered.inc_by(n);
            cursor = batch.next;
            continue;
        }
        let reply = tokio::select! {
            biased;
            _ = app.shutdown.cancelled() => {
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                })).await;
                // Let the peer's close reply arrive, briefly.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                    while let Some(Ok(_)) = ws.next().await {}
                }).await;
                return;
            }
            incoming = ws.next() => match incoming {
                None => return,
                Some(Ok(WsMessage::Text(text))) => publish_json(app, log, text.as_bytes(), Label::WebSocket)
                    .err()
                    .map(|e| error_frame(e.reason())),
                Some(Ok(WsMessage::Binary(_))) => Some(error_frame(
                    "binary frames are not accepted; publish with a text frame holding {\"from\":..,\"body\":..}",
                )),
                // tungstenite answers pings and close frames itself.
                Some(Ok(_)) => None,
                Some(Err(e)) => {
                    let code = match &e {
                        WsError::Capacity(_) => Some(CloseCode::Size),
                        WsError::Protocol(_) => Some(CloseCode::Protocol),
                        WsError::Utf8(_) => Some(CloseCode::Invalid),
                        _ => None,
                    };
                    tracing::debug!("websocket read error: {e}");
                    if let Some(code) = code {
                        // The close frame's reason is at most 123 bytes.
                        let mut reason = e.to_string();
                        reason.truncate(reason.floor_char_boundary(120));
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(1),
                            ws.close(Some(CloseFrame { code, reason: reason.into() })),
                        ).await;
                    }
                    return;
                }
            },
            ok = async { rx.wait_for(|&head| head > cursor).await.is_ok() } => {
                if !ok {
                    return;
                }
                None
            }
            _ = ping.tick() => Some(WsMessage::Ping(Default::default())),
        };
        if let Some(frame) = reply {
            if ws.send(frame).await.is_err() {
                return;
            }
        }
    }
}
