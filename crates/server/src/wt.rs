//! WebTransport over HTTP/3 (`--http3`): an extended CONNECT with
//! `:protocol = webtransport` to `/rooms/{room}/wt?after=N&mode=M` opens a
//! session (h3-webtransport) on the client's QUIC connection.
//!
//! A session is a cursor over the room log, like every other transport.
//! The server sends each message followed by `\n`:
//! - `mode=stream` (the default): all on one unidirectional stream it opens
//!   when the session starts, WebSocket's shape, where a lost packet holds
//!   every message behind it;
//! - `mode=stream-per-message`: each on a unidirectional stream of its own,
//!   which QUIC delivers independently of the others.
//!
//! A `{"missed":K,"next":N}` line comes first when the cursor skipped
//! messages, as over WebSocket. The client publishes on bidirectional
//! streams it opens, one JSON publish (`{"from":..,"body":..}`) per line; a
//! bad one is answered on that stream with an `{"error":..}` line. The
//! session ends when its client goes away, or at shutdown.

use crate::app::{publish_json, subscribe, ApiError, App};
use crate::metrics::{ActiveGuard, Label};
use crate::room::RoomLog;
use bytes::{Bytes, BytesMut};
use chatbench_proto::{ErrorBody, Notice};
use h3_webtransport::server::{AcceptedBi, WebTransportSession};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A WebTransport session on a QUIC connection.
pub(crate) type Session = WebTransportSession<h3_quinn::Connection, Bytes>;

/// How the server sends a session's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One unidirectional stream for all.
    Stream,
    /// A unidirectional stream per message.
    StreamPerMessage,
}

/// A checked session request: its room, where its cursor starts, its mode.
#[derive(Debug)]
pub(crate) struct Open {
    room: Arc<RoomLog>,
    cursor: u64,
    mode: Mode,
}

/// True for an extended CONNECT that asks for a WebTransport session.
pub(crate) fn is_session_request(req: &http::Request<()>) -> bool {
    req.method() == http::Method::CONNECT
        && req.extensions().get::<h3::ext::Protocol>() == Some(&h3::ext::Protocol::WEB_TRANSPORT)
}

/// Checks a session request's path and query: `/rooms/{room}/wt`, `after`
/// and `mode`.
pub(crate) fn check(app: &App, req: &http::Request<()>) -> Result<Open, ApiError> {
    let path = req.uri().path();
    let room = path
        .strip_prefix("/rooms/")
        .and_then(|r| r.strip_suffix("/wt"))
        .filter(|r| !r.contains('/'))
        .ok_or_else(|| {
            ApiError::new(
                http::StatusCode::NOT_FOUND,
                format!("no WebTransport endpoint at {path}; sessions open at /rooms/{{room}}/wt"),
            )
        })?;
    let query = req.uri().query();
    let q = crate::app::Query::parse(query)?;
    let mut mode = Mode::Stream;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "mode" {
            mode = match v.as_ref() {
                "stream" => Mode::Stream,
                "stream-per-message" => Mode::StreamPerMessage,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "query parameter `mode` must be `stream` or `stream-per-message`, got {other:?}"
                    )))
                }
            };
        }
    }
    let room = subscribe(app, room)?;
    let cursor = q.after.unwrap_or_else(|| room.head());
    Ok(Open { room, cursor, mode })
}

/// Runs a session until its client goes away or the server shuts down.
pub(crate) async fn run(app: Arc<App>, session: Session, open: Open) {
    let _active = ActiveGuard::new(&app.metrics, Label::WebTransport);
    // The session ends with whichever ends first: the connection (which
    // ends accepting) or delivery (a failed write, shutdown).
    tokio::select! {
        _ = accept_streams(&app, &session, &open.room) => {}
        _ = deliver(&app, &session, &open) => {}
    }
}

/// Accepts the client's bidirectional streams (publishes) until the
/// connection ends.
async fn accept_streams(app: &Arc<App>, session: &Session, room: &Arc<RoomLog>) {
    loop {
        match session.accept_bi().await {
            Ok(Some(AcceptedBi::BidiStream(_, stream))) => {
                app.tracker
                    .spawn(read_publishes(app.clone(), room.clone(), stream));
            }
            // A request on the session's connection: answered 400, since
            // a session's connection carries only the session here.
            Ok(Some(AcceptedBi::Request(_, mut stream))) => {
                let resp = ApiError::bad_request(
                    "this connection carries a WebTransport session; send other requests on a connection of their own",
                )
                .into_response();
                let (parts, _) = resp.into_parts();
                let _ = stream
                    .send_response(http::Response::from_parts(parts, ()))
                    .await;
                let _ = stream.finish().await;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("WebTransport session's connection: {e}");
                break;
            }
        }
    }
}

type BidiStream = h3_webtransport::stream::BidiStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Reads one publishing stream: a publish per line, each appended to the
/// room; a bad one is answered with an error line. A line longer than the
/// body limit ends the stream.
async fn read_publishes(app: Arc<App>, room: Arc<RoomLog>, mut stream: BidiStream) {
    let limit = app.config.body_limit;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(end + 1);
            let body = &line[..end];
            if body.is_empty() {
                continue;
            }
            if let Err(e) = publish_json(&app, &room, body, Label::WebTransport) {
                let mut answer = ErrorBody::json(e.reason()).to_vec();
                answer.push(b'\n');
                if let Err(w) = stream.write_all(&answer).await {
                    tracing::debug!("WebTransport publish stream: {w}");
                    return;
                }
                tracing::debug!("WebTransport publish refused: {}", e.reason());
            }
        }
        if buf.len() > limit {
            let mut answer = ErrorBody::json(&format!(
                "a publish is longer than the limit of {limit} bytes"
            ))
            .to_vec();
            answer.push(b'\n');
            let _ = stream.write_all(&answer).await;
            let _ = stream.shutdown().await;
            return;
        }
        tokio::select! {
            r = stream.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = app.shutdown.cancelled() => return,
        }
    }
}

/// Sends the room's messages from the session's cursor, in its mode, until
/// a write fails or the server shuts down (the session's end, the
/// connection's, ends it through [`run`]).
async fn deliver(app: &App, session: &Session, open: &Open) {
    let metrics = app.metrics.of(Label::WebTransport);
    let id = session.session_id();
    let mut rx = open.room.subscribe();
    let mut cursor = open.cursor;
    let mut one = None;
    loop {
        let batch = open.room.read_after(cursor, app.config.max_batch);
        if !batch.is_empty() {
            let n = batch.messages.len() as u64;
            let mut lines: Vec<Bytes> = Vec::with_capacity(batch.messages.len() + 1);
            if batch.missed > 0 {
                let notice = Notice {
                    missed: batch.missed,
                    next: batch.next - n,
                };
                let mut text = serde_json::to_vec(&notice).unwrap_or_default();
                text.push(b'\n');
                lines.push(text.into());
            }
            for m in batch.messages {
                let mut line = BytesMut::with_capacity(m.len() + 1);
                line.extend_from_slice(m.as_bytes());
                line.extend_from_slice(b"\n");
                lines.push(line.freeze());
            }
            let sent = match open.mode {
                Mode::Stream => {
                    if one.is_none() {
                        one = session.open_uni(id).await.ok();
                    }
                    match one.as_mut() {
                        Some(s) => write_lines(s, &lines).await,
                        None => false,
                    }
                }
                Mode::StreamPerMessage => {
                    let mut ok = true;
                    for line in &lines {
                        ok = match session.open_uni(id).await {
                            Ok(mut s) => {
                                s.write_all(line).await.is_ok() && s.shutdown().await.is_ok()
                            }
                            Err(_) => false,
                        };
                        if !ok {
                            break;
                        }
                    }
                    ok
                }
            };
            if !sent {
                return;
            }
            metrics.delivered.inc_by(n);
            cursor = batch.next;
            continue;
        }
        tokio::select! {
            biased;
            _ = app.shutdown.cancelled() => return,
            ok = async { rx.wait_for(|&head| head > cursor).await.is_ok() } => {
                if !ok {
                    return;
                }
            }
        }
    }
}

/// Writes `lines` to a session's one stream, joined into one write.
async fn write_lines<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, lines: &[Bytes]) -> bool {
    if let [line] = lines {
        return s.write_all(line).await.is_ok();
    }
    let mut all = BytesMut::with_capacity(lines.iter().map(Bytes::len).sum());
    for l in lines {
        all.extend_from_slice(l);
    }
    s.write_all(&all).await.is_ok()
}
