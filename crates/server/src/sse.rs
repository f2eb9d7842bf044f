//! Server-Sent Events: `GET /rooms/{room}/events`.
//!
//! The response body is a stream over a cursor into the room log: each step
//! yields the next piece of the batch being sent ([`BatchFrames`], which
//! shares large messages and copies at most a piece of small ones), or reads
//! what is after the cursor, or waits for the head to move, for the
//! keep-alive interval, or for shutdown (which ends the stream).

use crate::app::{subscribe, ApiError, App, Body, Query};
use crate::frames::{BatchFrames, Framing};
use crate::metrics::{ActiveGuard, Label, Metrics};
use crate::room::RoomLog;
use bytes::Bytes;
use futures_util::stream;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The keep-alive comment.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub(crate) fn open<B>(
    app: &Arc<App>,
    room_name: &str,
    req: &Request<B>,
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
    let log = subscribe(app, room_name)?;
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
        sending: None,
        _active: ActiveGuard::new(&app.metrics, Label::Sse),
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
    sending: Option<BatchFrames>,
    _active: ActiveGuard,
}

impl Stream {
    async fn next(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Stream)> {
        loop {
            if let Some(piece) = self.sending.as_mut().and_then(Iterator::next) {
                return Some((Ok(Frame::data(piece)), self));
            }
            self.sending = None;
            let batch = self.log.read_after(self.cursor, self.max_batch);
            if !batch.is_empty() {
                self.cursor = batch.next;
                self.metrics
                    .of(Label::Sse)
                    .delivered
                    .inc_by(batch.messages.len() as u64);
                self.sending = Some(BatchFrames::new(Framing::Sse, batch));
                continue;
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
