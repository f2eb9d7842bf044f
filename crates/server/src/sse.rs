//! Server-Sent Events: `GET /rooms/{room}/events`.
//!
//! The response body is a stream over a cursor into the room log: each step
//! reads what is after the cursor and frames it as `id: <seq>` / `data:
//! <message json>` events, or waits for the head to move, for the keep-alive
//! interval, or for shutdown (which ends the stream).

use crate::http::{room, ApiError, App, Body, Query};
use crate::metrics::{ActiveGuard, Metrics, Transport};
use crate::room::{Batch, RoomLog};
use bytes::{BufMut, Bytes, BytesMut};
use chatbench_proto::Notice;
use futures_util::stream;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The keep-alive comment.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub(crate) fn open(
    app: &Arc<App>,
    room_name: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req.uri().query())?;
    let last_event_id = match req.headers().get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "header Last-Event-ID must be a non-negative integer, got {v:?}"
                    ))
                })?,
        ),
    };
    let log = room(app, room_name)?;
    // EventSource reconnects to the same URL and adds Last-Event-ID, so the
    // header wins over `after`.
    let cursor = last_event_id.or(q.after).unwrap_or_else(|| log.head());
    let period = app.config.sse_keepalive;
    let mut keepalive = interval_at(Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = Stream {
        rx: log.subscribe(),
        log,
        cursor,
        keepalive,
        shutdown: app.shutdown.clone(),
        metrics: app.metrics.clone(),
        max_batch: app.config.max_batch,
        _active: ActiveGuard::new(&app.metrics, Transport::Sse),
    };
    let body = StreamBody::new(stream::unfold(state, Stream::next)).boxed_unsync();
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

struct Stream {
    log: Arc<RoomLog>,
    rx: watch::Receiver<u64>,
    cursor: u64,
    keepalive: Interval,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    max_batch: usize,
    _active: ActiveGuard,
}

impl Stream {
    async fn next(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Stream)> {
        loop {
            let batch = self.log.read_after(self.cursor, self.max_batch);
            if !batch.is_empty() {
                self.cursor = batch.next;
                self.metrics
                    .of(Transport::Sse)
                    .delivered
                    .inc_by(batch.messages.len() as u64);
                return Some((Ok(Frame::data(frame_events(&batch))), self));
            }
            let cursor = self.cursor;
            let rx = &mut self.rx;
            let woke = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Wake::Stop,
                ok = async { rx.wait_for(|&head| head > cursor).await.is_ok() } => {
                    if ok { Wake::Changed } else { Wake::Stop }
                }
                _ = self.keepalive.tick() => Wake::KeepAlive,
            };
            match woke {
                Wake::Stop => return None,
                Wake::Changed => continue,
                Wake::KeepAlive => {
                    return Some((Ok(Frame::data(Bytes::from_static(KEEPALIVE))), self));
                }
            }
        }
    }
}

enum Wake {
    Stop,
    Changed,
    KeepAlive,
}

/// Frames a batch as SSE events: a `missed` event first when the cursor
/// skipped messages, then one `id:`/`data:` event per message.
pub fn frame_events(batch: &Batch) -> Bytes {
    let size: usize = batch.messages.iter().map(|m| m.len() + 32).sum();
    let mut out = BytesMut::with_capacity(size + 64);
    if batch.missed > 0 {
        let notice = Notice {
            missed: batch.missed,
            next: batch.next - batch.messages.len() as u64,
        };
        out.put_slice(b"event: missed\ndata: ");
        out.put_slice(&serde_json::to_vec(&notice).unwrap_or_default());
        out.put_slice(b"\n\n");
    }
    let first = batch.next + 1 - batch.messages.len() as u64;
    for (i, m) in batch.messages.iter().enumerate() {
        out.put_slice(b"id: ");
        out.put_slice((first + i as u64).to_string().as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(m.as_bytes());
        out.put_slice(b"\n\n");
    }
    out.freeze()
}
