//! The WebTransport client: one session that receives the room's messages
//! on the streams the server opens, and carries the client's publishes on
//! one stream the client opens ([`crate::dial::webtransport`]).
//!
//! In `stream` mode the messages come on one stream, a line each; in
//! `stream-per-message` mode each on its own stream, and the client reads
//! every open stream at once, as QUIC delivers them independently (so a
//! message whose packet was lost can arrive after the next one: counted as
//! reordered by the audit, not waited for).

use super::context::{ClientSpec, RunCtx, Sending};
use super::inbox::Inbox;
use super::send::{next_send, publish_body, schedule_for, sent_ok};
use crate::dial::webtransport::{UniStream, WtConn};
use crate::record::Metric;
use bytes::BytesMut;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Runs one WebTransport client until the run ends.
pub(super) async fn webtransport_client(ctx: Arc<RunCtx>, spec: ClientSpec, room: &str) {
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    let start = Instant::now();
    let requested = ctx.run_clock().now_us();
    let mode = ctx.scenario.webtransport.mode;
    let target = format!("/rooms/{room}/wt?after=0&mode={}", mode.as_str());
    let mut wt = loop {
        match ctx.dial.webtransport(spec.id, &target).await {
            Ok(wt) => break wt,
            Err(e) => {
                ctx.count_error("connect", e);
                if ctx.abort.is_cancelled() {
                    return;
                }
                ctx.backoff().await;
            }
        }
    };
    inbox.read_at = Some(wt.handles.read_at.clone());
    inbox.stream_opened(requested);
    ctx.rec
        .record(spec.id, Metric::Connect, start.elapsed().as_micros() as u64);
    // The 200 came after the server set the session's cursor: subscribed.
    ctx.client_ready();
    let send_task = match spec.sender {
        Some(sender) => match wt.publisher().await {
            Ok((stream, answers)) => {
                let ctx = ctx.clone();
                let (seen_tx, seen) = watch::channel(0u64);
                inbox.own = Some((format!("c{}", spec.id), seen_tx));
                let sending = Sending::new(&ctx);
                Some(ctx.sends.handle().clone().spawn(async move {
                    publish(&ctx, spec.id, sender, stream, seen).await;
                    drop(answers);
                    drop(sending);
                }))
            }
            Err(e) => {
                ctx.count_error("publish", e);
                None
            }
        },
        None => None,
    };
    receive(&ctx, &mut inbox, &mut wt).await;
    inbox.stream_ended();
    inbox.own = None;
    if let Some(task) = send_task {
        let _ = task.await;
    }
    wt.close().await;
}

/// Publishes on the session's publishing stream, a line each, at the
/// schedule's times; then waits until the last one came back through the
/// room (`seen`), as over WebSocket.
async fn publish(
    ctx: &RunCtx,
    key: u64,
    sender: u64,
    mut stream: quinn::SendStream,
    mut seen: watch::Receiver<u64>,
) {
    let Some(clock) = ctx.started().await else {
        return;
    };
    let mut schedule = schedule_for(ctx, sender);
    let mut last_sent = None;
    while let Some(at_us) = next_send(ctx, &clock, key, &mut schedule, 0).await {
        let mut line = publish_body(ctx, key, at_us).into_bytes();
        line.push(b'\n');
        match stream.write_all(&line).await {
            Ok(()) => {
                sent_ok(ctx, at_us);
                last_sent = Some(at_us);
            }
            Err(e) => {
                ctx.count_error("publish", e);
                break;
            }
        }
    }
    if let Some(last) = last_sent {
        tokio::select! {
            _ = seen.wait_for(|&v| v >= last) => {}
            _ = ctx.abort.cancelled() => {}
        }
    }
    let _ = stream.finish();
}

/// What reading a stream's next piece gave.
enum Step {
    /// Bytes (added to the stream's unfinished line).
    More,
    /// The stream's end.
    End,
    /// Not one of the session's streams: kept open, not read.
    Other,
    Failed(std::io::Error),
}

/// Reads the session's messages into `inbox` until the run's end or the
/// session's: every stream the server opens, each read as its bytes come.
async fn receive(ctx: &RunCtx, inbox: &mut Inbox, wt: &mut WtConn) {
    let cancelled = ctx.abort.cancelled();
    tokio::pin!(cancelled);
    let session = wt.session();
    // Each open stream's next piece (its header first), with the stream
    // and its unfinished line. Every wait that can be cancelled is in
    // here or is quinn's accept, so no stream is dropped half read.
    let mut reading = FuturesUnordered::new();
    let next = |mut s: quinn::RecvStream, mut line: BytesMut, started: bool| async move {
        if !started {
            match WtConn::header(&mut s, session).await {
                Ok(UniStream::Session) => {}
                Ok(UniStream::Other) => return (s, line, Step::Other),
                Ok(UniStream::Empty) => return (s, line, Step::End),
                Err(e) => return (s, line, Step::Failed(e)),
            }
        }
        let step = match s.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => {
                line.extend_from_slice(&c.bytes);
                Step::More
            }
            Ok(None) => Step::End,
            Err(e) => Step::Failed(e.into()),
        };
        (s, line, step)
    };
    let mut accepting = true;
    while !inbox.done() {
        tokio::select! {
            s = wt.accept_uni(), if accepting => match s {
                Some(s) => reading.push(next(s, BytesMut::new(), false)),
                None => accepting = false,
            },
            Some((s, mut line, step)) = reading.next(), if !reading.is_empty() => {
                while let Some(end) = line.iter().position(|&b| b == b'\n') {
                    let text = line.split_to(end + 1);
                    inbox.json(&text[..end]);
                }
                match step {
                    Step::More => reading.push(next(s, line, true)),
                    // A message stream ends after its message.
                    Step::End => {}
                    Step::Other => wt.keep(s),
                    Step::Failed(e) => {
                        if !inbox.done() {
                            ctx.count_error("webtransport stream", e);
                        }
                    }
                }
            }
            _ = &mut cancelled => break,
        }
        if !accepting && reading.is_empty() {
            if !inbox.done() {
                ctx.count_error("webtransport", "closed by the server's side");
            }
            break;
        }
    }
}
