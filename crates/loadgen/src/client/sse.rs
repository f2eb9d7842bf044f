//! The Server-Sent Events receiver, and the event-stream parser it reads
//! with ([`SseParser`]).

use super::context::{ClientSpec, RunCtx};
use super::dropper::{finish_cut, Dropper};
use super::inbox::Inbox;
use crate::dial::SharedH2;
use crate::drops::Away;
use crate::profile::Kind;
use crate::record::Metric;
use bytes::Bytes;
use http::StatusCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Receives client `spec`'s room on an event stream until the run ends,
/// reconnecting as `EventSource` does.
pub(super) async fn sse_receiver(
    ctx: Arc<RunCtx>,
    spec: ClientSpec,
    room: &str,
    away: Arc<Away>,
    h2: &SharedH2,
) {
    let mut inbox = Inbox::new(ctx.clone(), spec.id);
    let mut dropper = Dropper::new(&ctx, spec.id, away.clone());
    let mut last_id: Option<u64> = None;
    let mut ready = false;
    // Resume as EventSource does: the same URL, plus Last-Event-ID.
    let target = format!("/rooms/{room}/events?after=0");
    while !inbox.done() {
        let resuming = inbox.spans.is_away();
        if resuming && !ctx.back_online(&ctx.run_clock(), &away).await {
            break;
        }
        let mut c = match ctx.dial.http(spec.id, h2).await {
            Ok(c) => c,
            Err(e) => {
                ctx.count_error("connect", e);
                ctx.backoff().await;
                continue;
            }
        };
        if resuming {
            ctx.rec.drops.reconnects.fetch_add(1, Relaxed);
            inbox.spans.resumed(ctx.run_clock().now_us());
        }
        let last_event_id = last_id.map(|id| id.to_string());
        let headers: Vec<(&str, &str)> = last_event_id
            .iter()
            .map(|id| ("last-event-id", id.as_str()))
            .collect();
        let requested = (ctx.run_clock().now_us(), tokio::time::Instant::now());
        let resp = tokio::select! {
            r = c.send_with(Kind::Sse, "GET", &target, &headers) => r,
            _ = ctx.abort.cancelled() => { c.close().await; break }
        };
        match resp {
            Ok(StatusCode::OK) => {}
            Ok(status) => {
                // The error's reason is in its body.
                let why = tokio::select! {
                    b = c.body() => b.unwrap_or_default(),
                    _ = ctx.abort.cancelled() => Bytes::new(),
                };
                ctx.count_error("sse", format!("{status} {}", String::from_utf8_lossy(&why)));
                c.close().await;
                ctx.backoff().await;
                continue;
            }
            Err(e) => {
                ctx.count_error("sse", e);
                c.close().await;
                ctx.backoff().await;
                continue;
            }
        }
        // The 200 came after the server set the stream's cursor: subscribed.
        if !ready {
            ready = true;
            ctx.client_ready();
        }
        if resuming {
            ctx.rec
                .drops
                .resume_bytes
                .fetch_add(c.first_exchange_bytes(0), Relaxed);
        }
        inbox.read_at = Some(c.handles.read_at.clone());
        inbox.stream_opened(requested.0);
        let opened = requested.1;
        // The server's side ended the stream before the run did (a
        // proxy's timeout): how long it lived is recorded.
        let mut ended_early = false;
        let cut = c.handles.cut.clone();
        let mut parser = SseParser::default();
        // One cancellation future for the whole stream: a new one per frame
        // locked the token's shared mutex for every message.
        let cancelled = ctx.abort.cancelled();
        tokio::pin!(cancelled);
        while !inbox.done() {
            let piece = tokio::select! {
                p = c.body_chunk() => p,
                // A drop: the stream is read to its end and thrown away.
                _ = dropper.due(&ctx) => {
                    dropper.drop_now(&ctx, &mut inbox, Some(&cut));
                    continue;
                }
                _ = &mut cancelled => break,
            };
            match piece {
                Ok(Some(data)) => {
                    parser.feed(&data, |ev| {
                        if let Some(id) = ev.id.filter(|_| !inbox.spans.is_away()) {
                            last_id = Some(id);
                        }
                        inbox.json(ev.data);
                    });
                }
                Ok(None) => {
                    ended_early = !cut.is_cut() && !inbox.done();
                    if ended_early {
                        ctx.count_error("sse stream", "ended by the server's side");
                    }
                    break;
                }
                Err(e) => {
                    if !cut.is_cut() {
                        ended_early = true;
                        ctx.count_error("sse stream", e);
                    }
                    break;
                }
            }
        }
        inbox.stream_ended();
        if ended_early {
            ctx.rec.since(spec.id, Metric::CutLived, opened);
        }
        if cut.is_cut() {
            finish_cut(&ctx, c).await;
        } else {
            c.close_reading().await;
        }
        // Reconnect as EventSource does: after the stream's `retry:` time.
        if let Some(ms) = parser.retry_ms() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms.min(60_000))) => {}
                _ = ctx.abort.cancelled() => {}
            }
        }
    }
}

/// One parsed SSE event.
#[derive(Debug)]
pub struct SseEvent<'a> {
    /// The last event id seen on the stream (`id:`), when it is a number
    /// (the server's ids are sequence numbers); it persists across events,
    /// as EventSource's last event ID does.
    pub id: Option<u64>,
    /// The event type (`event:`), `message` when none was given.
    pub event: &'a str,
    /// The data: the `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// An incremental `text/event-stream` parser, as the HTML standard's
/// "interpret an event stream" section describes it: lines end with CRLF,
/// LF or CR (a CRLF may be split between two reads); a line starting with
/// `:` is a comment; `field: value` loses one space after the colon, and a
/// line without a colon is a field with an empty value; `data` lines add up
/// (joined with `\n`), `id` (without NUL) and `retry` (digits only) persist,
/// `event` names the next event; a blank line dispatches the event if it
/// has data. Hand-written on memchr rather than taken from a crate: it is
/// on the load generator's per-message path (`benches/receive_paths.rs`).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// The previous chunk ended in CR: a LF starting this one is its pair.
    after_cr: bool,
    data: Vec<u8>,
    event: String,
    last_id: Option<u64>,
    retry_ms: Option<u64>,
}

impl SseParser {
    /// Adds bytes and calls `on_event` for every complete event.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = memchr::memchr2(b'\n', b'\r', &self.buf[start..]) {
            let line_end = start + end;
            let mut next = line_end + 1;
            if self.buf[line_end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    // Maybe half of a CRLF: the next chunk says.
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.buf);
            self.line(&line[start..line_end], &mut on_event);
            self.buf = line;
            start = next;
        }
        self.buf.drain(..start);
    }

    /// The reconnection time the stream asked for (`retry:`), ms.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            if !self.data.is_empty() {
                // Every data line added a LF; the last one goes.
                self.data.pop();
                on_event(SseEvent {
                    id: self.last_id,
                    event: if self.event.is_empty() {
                        "message"
                    } else {
                        &self.event
                    },
                    data: &self.data,
                });
            }
            self.data.clear();
            self.event.clear();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let v = &line[colon + 1..];
                (&line[..colon], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" if !value.contains(&0) => {
                self.last_id = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `stream` fed in pieces of `sizes` (cycled).
    fn events(stream: &[u8], sizes: &[usize]) -> Vec<(Option<u64>, String, String)> {
        let mut p = SseParser::default();
        let mut got = Vec::new();
        let mut rest = stream;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(n.clamp(1, rest.len()));
            p.feed(a, |ev| {
                got.push((
                    ev.id,
                    ev.event.to_owned(),
                    String::from_utf8(ev.data.to_vec()).unwrap(),
                ))
            });
            rest = b;
        }
        got
    }

    #[test]
    fn sse_parser_handles_split_frames_and_comments() {
        let got = events(
            b": keep-alive\n\nid: 1\ndata: {\"a\":1}\n\nid: 2\ndata: x\n\nevent: missed\ndata: {\"missed\":3,\"next\":5}\n\n",
            &[32, 7],
        );
        assert_eq!(
            got,
            vec![
                (Some(1), "message".to_owned(), "{\"a\":1}".to_owned()),
                (Some(2), "message".to_owned(), "x".to_owned()),
                // The last event ID persists, as EventSource's does.
                (
                    Some(2),
                    "missed".to_owned(),
                    "{\"missed\":3,\"next\":5}".to_owned()
                ),
            ]
        );
    }

    /// The HTML standard's examples and edge cases: CRLF and CR line ends
    /// (also split between reads), multi-line data, no space after the
    /// colon, a field without a colon, `retry`, ids with NUL ignored, an
    /// event without data not dispatched.
    #[test]
    fn sse_parser_follows_the_event_stream_format() {
        let stream = b"data:first\r\ndata:  second\r\n\r\nid:7\revent:custom\rdata\r\rretry: 2500\ndata: x\n\nevent: lonely\n\nid: 9\0\ndata: y\n\nretry: soon\ndata: z\n\n";
        let want = vec![
            (None, "message".to_owned(), "first\n second".to_owned()),
            (Some(7), "custom".to_owned(), "".to_owned()),
            (Some(7), "message".to_owned(), "x".to_owned()),
            (Some(7), "message".to_owned(), "y".to_owned()),
            (Some(7), "message".to_owned(), "z".to_owned()),
        ];
        for sizes in [&[1000][..], &[1], &[2], &[3, 5], &[20, 1]] {
            assert_eq!(events(stream, sizes), want, "pieces of {sizes:?}");
        }
        let mut p = SseParser::default();
        p.feed(b"retry: 2500\n", |_| {});
        p.feed(b"retry: soon\n", |_| {});
        assert_eq!(p.retry_ms(), Some(2500));
    }

    proptest::proptest! {
        /// However a stream is cut into reads, the events are the same.
        #[test]
        fn sse_events_do_not_depend_on_how_reads_split_the_stream(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "data: a", "data:b", "data", "id: 3", "id:4", "event: e", "retry: 5",
                    ": c", "", "\r", "\n", "\r\n", ":", " ", "x",
                ]),
                0..60,
            ),
            sizes in proptest::collection::vec(1usize..9, 1..8),
        ) {
            let stream = parts.concat();
            let whole = events(stream.as_bytes(), &[stream.len().max(1)]);
            proptest::prop_assert_eq!(events(stream.as_bytes(), &sizes), whole);
        }
    }
}
