//! The WebSocket client: one socket that receives the room's messages and
//! carries the client's publishes.

use super::context::{ClientSpec, RunCtx, Sending};
use super::dropper::Dropper;
use super::inbox::Inbox;
use super::send::{next_send, publish_body, schedule_for, sent_ok};
use crate::dial::websocket::{WsRead, WsWrite};
use crate::dial::{Handles, WsConn};
use crate::drops::Away;
use crate::record::Metric;
use crate::ws::Frame;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A WebSocket's writing half, shared by its sender (on the send thread)
/// and its reader (pongs, and the closing handshake).
type WsOut = Arc<tokio::sync::Mutex<WsWrite>>;

/// Runs one WebSocket client until the run ends: it receives on the
/// socket, and a sender publishes on it from the send thread.
pub(super) async fn websocket_client(ctx: Arc<RunCtx>, spec: ClientSpec, room: &str) {
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    let away = Arc::new(Away::default());
    let mut dropper = Dropper::new(&ctx, spec.id, away.clone());
    let start = Instant::now();
    let requested = ctx.run_clock().now_us();
    let Some(ws) = ws_connect(&ctx, spec.id, room, 0).await else {
        return;
    };
    let WsConn {
        mut reader,
        writer,
        mut handles,
        mut h2,
        drain_after_close,
        ..
    } = ws;
    inbox.read_at = Some(handles.read_at.clone());
    inbox.stream_opened(requested);
    ctx.rec
        .record(spec.id, Metric::Connect, start.elapsed().as_micros() as u64);
    // The 101 came after the server set the socket's cursor: subscribed.
    ctx.client_ready();
    let out: WsOut = Arc::new(tokio::sync::Mutex::new(writer));
    // Bumped each time a drop's reconnect puts a new socket into `out`.
    let (reconnected, mut sockets) = watch::channel(0u64);
    // A sender publishes from the send thread.
    let send_task = spec.sender.map(|sender| {
        let ctx = ctx.clone();
        let out = out.clone();
        let (seen_tx, mut seen) = watch::channel(0u64);
        inbox.own = Some((format!("c{}", spec.id), seen_tx));
        let sending = Sending::new(&ctx);
        ctx.sends.handle().clone().spawn(async move {
            let Some(clock) = ctx.started().await else {
                return;
            };
            let mut schedule = schedule_for(&ctx, sender);
            let mut resumed_us = 0;
            let mut last_sent = None;
            'sends: while let Some(at_us) =
                next_send(&ctx, &clock, spec.id, &mut schedule, resumed_us).await
            {
                let body = publish_body(&ctx, spec.id, at_us);
                loop {
                    let socket = *sockets.borrow_and_update();
                    // The lock is let go before a wait for the next socket,
                    // which the receiver puts in under it.
                    let sent = out.lock().await.text(&body).await;
                    match sent {
                        Ok(()) => {
                            sent_ok(&ctx, at_us);
                            last_sent = Some(at_us);
                            break;
                        }
                        // Cut by a drop: the message goes on the next
                        // socket, as an app queues what its user typed
                        // while offline.
                        Err(_) if ctx.scenario.network.drop_every.is_some() => {
                            let next = tokio::select! {
                                r = sockets.wait_for(|s| *s > socket) => r.is_ok(),
                                _ = ctx.abort.cancelled() => false,
                            };
                            if !next {
                                break 'sends;
                            }
                            resumed_us = clock.now_us();
                        }
                        Err(e) => {
                            ctx.count_error("publish", e);
                            break 'sends;
                        }
                    }
                }
            }
            // A frame has no answer: the last one has reached the server
            // once it comes back through the room, as every member's does.
            // Until then the rooms must not end (`Sending`).
            if let Some(last) = last_sent {
                tokio::select! {
                    _ = seen.wait_for(|&v| v >= last) => {}
                    _ = ctx.abort.cancelled() => {}
                }
            }
            drop(sending);
        })
    });
    let mut opened = start;
    loop {
        ws_receive(&ctx, &mut inbox, &mut reader, &handles, &out, &mut dropper).await;
        inbox.stream_ended();
        if !inbox.done() && !handles.cut.is_cut() {
            // The server's side closed it before the run ended (a proxy's
            // timeout); this client does not reconnect then.
            ctx.rec.since(spec.id, Metric::CutLived, opened);
        }
        if inbox.done() || !inbox.spans.is_away() {
            break;
        }
        // Dropped, and the cut socket read to its end: come back, and ask
        // for what came after the last message seen.
        ctx.rec
            .drops
            .bytes_after_cut
            .fetch_add(handles.cut.bytes_after_cut(), Relaxed);
        if !ctx.back_online(&ctx.run_clock(), &away).await {
            break;
        }
        let after = inbox.resume_after();
        inbox.spans.resumed(ctx.run_clock().now_us());
        let Some(ws) = ws_connect(&ctx, spec.id, room, after).await else {
            break;
        };
        ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
        ctx.rec.drops.resume_bytes.fetch_add(ws.setup, Relaxed);
        opened = Instant::now();
        reader = ws.reader;
        handles = ws.handles;
        h2 = ws.h2;
        inbox.read_at = Some(handles.read_at.clone());
        *out.lock().await = ws.writer;
        reconnected.send_modify(|n| *n += 1);
    }
    // Receiving is over: a sender still waiting for its last message to
    // come back stops waiting.
    inbox.own = None;
    if let Some(task) = send_task {
        // Sending ended before the drain, unless the run was aborted.
        let _ = task.await;
    }
    // A clean close: send ours, read until the server's reply.
    if out.lock().await.close().await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(f)) = reader.next().await {
                if matches!(f, Frame::Close(_)) {
                    break;
                }
            }
            if drain_after_close {
                let mut w = out.lock().await;
                let _ = w.shutdown().await;
                while let Ok(Some(_)) = reader.next().await {}
            }
        })
        .await;
    }
    drop(reader);
    drop(out);
    if let Some(c) = h2 {
        c.close().await;
    }
}

/// Connects client `key`'s WebSocket to `room` from message `after`,
/// retrying until it works or the run aborts ([`crate::dial::Dialer::websocket`]).
async fn ws_connect(ctx: &RunCtx, key: u64, room: &str, after: u64) -> Option<WsConn> {
    let target = format!("/rooms/{room}/ws?after={after}");
    loop {
        match ctx.dial.websocket(key, &target).await {
            Ok(conn) => return Some(conn),
            Err(e) => {
                ctx.count_error("connect", e);
                if ctx.abort.is_cancelled() {
                    return None;
                }
                ctx.backoff().await;
            }
        }
    }
}

/// Reads WebSocket frames into `inbox` until the run's end, answering
/// pings, or until the socket ends; a drop cuts it, and what arrives after
/// is read to the end and thrown away.
async fn ws_receive(
    ctx: &RunCtx,
    inbox: &mut Inbox,
    reader: &mut WsRead,
    handles: &Handles,
    out: &WsOut,
    dropper: &mut Dropper,
) {
    let cut = handles.cut.clone();
    let cancelled = ctx.abort.cancelled();
    tokio::pin!(cancelled);
    while !inbox.done() {
        let next = tokio::select! {
            n = reader.next() => n,
            _ = dropper.due(ctx) => {
                dropper.drop_now(ctx, inbox, Some(&cut));
                continue;
            }
            _ = &mut cancelled => break,
        };
        match next {
            Ok(Some(Frame::Text(t))) => inbox.json(&t),
            Ok(Some(Frame::Ping(p))) if !cut.is_cut() => {
                if let Err(e) = out.lock().await.pong(&p).await {
                    ctx.count_error("websocket", e);
                    break;
                }
            }
            Ok(Some(Frame::Close(_))) | Ok(None) => {
                if !inbox.done() && !cut.is_cut() {
                    ctx.count_error("websocket", "closed by the server's side");
                }
                break;
            }
            Ok(Some(Frame::Binary(_) | Frame::Pong(_) | Frame::Ping(_))) => {}
            Err(_) if cut.is_cut() => break,
            Err(e) => {
                ctx.count_error("websocket", e);
                break;
            }
        }
    }
}
