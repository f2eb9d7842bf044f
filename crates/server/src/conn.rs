//! One accepted TCP connection: the byte-counting, idle-aware socket wrapper
//! and the guard that holds the connection's slot.

use crate::metrics::{Label, Metrics};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long a blocked write may still wait once the server shuts down: long
/// enough for a reading client to take a close frame or the end of a
/// response, short enough that shutdown does not wait on clients that stopped
/// reading.
pub const SHUTDOWN_LINGER: Duration = Duration::from_millis(250);

/// Which transport label a connection's bytes are charged to. It starts
/// as [`Label::Connection`] (a TLS handshake, HTTP/2's preface). HTTP/1.1
/// serves one request at a time per connection, so there the router sets
/// the label of the request in flight. HTTP/2 multiplexes, and a client's
/// one connection carries its publishes and its polls or stream, so there a
/// stream raises the label ([`Label::outranks`]) and the connection's
/// bytes are its transport's. Bytes are counted on the socket, below TLS,
/// so a label's bytes include TLS records.
#[derive(Debug)]
pub struct ConnTag(AtomicU8);

impl ConnTag {
    /// A tag that starts as [`Label::Connection`].
    pub fn new() -> ConnTag {
        ConnTag(AtomicU8::new(Label::Connection as u8))
    }

    /// Charges later bytes to `t`.
    pub fn set(&self, t: Label) {
        self.0.store(t as u8, Ordering::Relaxed);
    }

    /// Charges later bytes to `t` if it outranks the current label.
    pub fn raise(&self, t: Label) {
        if t.outranks(self.get()) {
            self.set(t);
        }
    }

    /// The current label.
    pub fn get(&self) -> Label {
        Label::from_u8(self.0.load(Ordering::Relaxed))
    }
}

impl Default for ConnTag {
    fn default() -> ConnTag {
        ConnTag::new()
    }
}

/// Holds a connection slot and the `connections_open` gauge while any part of
/// the connection lives: the hyper connection task, and after an upgrade the
/// WebSocket task, which hyper no longer tracks.
#[derive(Debug)]
pub struct ConnGuard {
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl ConnGuard {
    /// Counts a connection open until the guard drops.
    pub fn new(metrics: Arc<Metrics>, permit: OwnedSemaphorePermit) -> ConnGuard {
        metrics.connections_open.inc();
        ConnGuard {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
    }
}

/// The state of a run of blocked writes.
struct Blocked {
    since: Instant,
    /// The server is shutting down, so the deadline is the linger.
    lingering: bool,
    timer: Pin<Box<Sleep>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// The timeouts a connection is held to.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// No bytes in or out for this long fails reads (`--idle-timeout`).
    pub idle: Duration,
    /// A write blocked this long fails (`--write-stall-timeout`).
    pub write_stall: Duration,
    /// Once cancelled, a blocked write fails after [`SHUTDOWN_LINGER`].
    pub shutdown: CancellationToken,
}

/// A `TcpStream` that charges written bytes to its [`ConnTag`]'s transport,
/// fails reads with `TimedOut` after `idle` without any traffic, and fails a
/// write that made no progress for `write_stall` (or for [`SHUTDOWN_LINGER`]
/// once the server shuts down). hyper's upgraded WebSocket streams keep this
/// wrapper underneath, so one place covers every transport.
pub struct CountedIo {
    inner: TcpStream,
    tag: Arc<ConnTag>,
    metrics: Arc<Metrics>,
    idle: Duration,
    last_activity: Instant,
    idle_timer: Pin<Box<Sleep>>,
    write_stall: Duration,
    shutdown: CancellationToken,
    /// Present only while writes are blocked: made when a write first
    /// returns `Pending`, dropped on progress, so a connection that is not
    /// blocked pays one pointer for it.
    blocked: Option<Box<Blocked>>,
}

impl std::fmt::Debug for CountedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedIo")
            .field("inner", &self.inner)
            .field("tag", &self.tag.get())
            .field("blocked_since", &self.blocked.as_ref().map(|b| b.since))
            .finish_non_exhaustive()
    }
}

impl CountedIo {
    /// Wraps an accepted stream.
    pub fn new(
        inner: TcpStream,
        tag: Arc<ConnTag>,
        metrics: Arc<Metrics>,
        deadlines: &Deadlines,
    ) -> CountedIo {
        let now = Instant::now();
        CountedIo {
            inner,
            tag,
            metrics,
            idle: deadlines.idle,
            last_activity: now,
            idle_timer: Box::pin(tokio::time::sleep_until(now + deadlines.idle)),
            write_stall: deadlines.write_stall,
            shutdown: deadlines.shutdown.clone(),
            blocked: None,
        }
    }

    /// Called when a write is pending: arms the stall timer at the start of
    /// a blocked run, shortens it at shutdown, and fails once it fires.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let now = Instant::now();
        let blocked = self.blocked.get_or_insert_with(|| {
            let lingering = self.shutdown.is_cancelled();
            let wait = if lingering {
                SHUTDOWN_LINGER
            } else {
                self.write_stall
            };
            Box::new(Blocked {
                since: now,
                lingering,
                timer: Box::pin(tokio::time::sleep_until(now + wait)),
                shutdown: Box::pin(self.shutdown.clone().cancelled_owned()),
            })
        });
        if !blocked.lingering && blocked.shutdown.as_mut().poll(cx).is_ready() {
            blocked.lingering = true;
            let linger = now + SHUTDOWN_LINGER;
            if linger < blocked.timer.deadline() {
                blocked.timer.as_mut().reset(linger);
            }
        }
        ready!(blocked.timer.as_mut().poll(cx));
        let (waited, lingering) = (now - blocked.since, blocked.lingering);
        self.metrics.write_stalls.inc();
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client accepted no bytes for {} ms{}",
                waited.as_millis(),
                if lingering {
                    " while the server shut down"
                } else {
                    ""
                }
            ),
        ))
    }

    /// After a write: counts what was written, or arms the stall timer.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match res {
            Poll::Ready(Ok(n)) => {
                self.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.idle_timer.as_mut().poll(cx));
            let deadline = self.last_activity + self.idle;
            if deadline <= Instant::now() {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle timeout",
                ));
            }
            self.idle_timer.as_mut().reset(deadline);
        }
    }

    fn wrote(&mut self, n: usize) {
        self.last_activity = Instant::now();
        self.blocked = None;
        self.metrics
            .of(self.tag.get())
            .bytes_written
            .inc_by(n as u64);
    }
}

use std::future::Future;

impl Drop for CountedIo {
    fn drop(&mut self) {
        self.metrics.of(self.tag.get()).tcp.closed(&self.inner);
    }
}

impl AsyncRead for CountedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for CountedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The stream right under hyper (the plaintext, above TLS when there is
/// TLS): replaces one of hyper's own empty HTTP/1.1 error answers with the
/// same status and a JSON reason. Everything else passes through.
pub struct JsonErrors<T> {
    inner: T,
    /// A JSON answer written in place of one of hyper's own, and how much
    /// of it is out.
    replacement: Option<(&'static [u8], usize)>,
}

impl<T> JsonErrors<T> {
    /// Wraps the stream hyper will serve.
    pub fn new(inner: T) -> JsonErrors<T> {
        JsonErrors {
            inner,
            replacement: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = self.replacement {
            if done == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.replacement = Some((bytes, done + n));
        }
        Poll::Ready(Ok(()))
    }

    /// Before a write: finishes a replacement answer in progress, and
    /// replaces one of hyper's own empty error answers (`first` is the
    /// write's first buffer) with JSON; `Some(n)` claims hyper's `n` bytes
    /// as written.
    fn poll_before_write(
        &mut self,
        cx: &mut Context<'_>,
        first: &[u8],
    ) -> Poll<io::Result<Option<usize>>> {
        ready!(self.poll_replacement(cx))?;
        let Some(json) = json_for_hyper_error(first) else {
            return Poll::Ready(Ok(None));
        };
        // Claim hyper's bytes at once, so a retried write cannot start the
        // replacement over; what the socket does not take now goes out
        // before the next write, flush or shutdown.
        self.replacement = Some((json, 0));
        if let Poll::Ready(Err(e)) = self.poll_replacement(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(Some(first.len())))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(claimed) = ready!(this.poll_before_write(cx, buf))? {
            return Poll::Ready(Ok(claimed));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        if let Some(claimed) = ready!(this.poll_before_write(cx, first))? {
            return Poll::Ready(Ok(claimed));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The answers hyper writes by itself, before any handler runs, for a
/// request it cannot parse: a head with an empty body. Every answer of the
/// server's own handlers has a JSON body, so an empty 400, 414 or 431 is
/// hyper's, and is replaced by the same status with a JSON reason.
const HYPER_ERRORS: [(&str, &str); 3] = [
    (
        "400 Bad Request",
        "malformed HTTP/1.1 request: bad method, target or header",
    ),
    ("414 URI Too Long", "the request target is too long"),
    (
        "431 Request Header Fields Too Large",
        "the request head is too large (more than 64 KiB or more than 100 headers)",
    ),
];

/// The JSON answers, in the order of [`HYPER_ERRORS`].
static JSON_ANSWERS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    HYPER_ERRORS
        .iter()
        .map(|(status, reason)| {
            closing_answer(
                status,
                "application/json",
                &[],
                &chatbench_proto::ErrorBody::json(reason),
            )
        })
        .collect()
});

/// A whole HTTP/1.1 answer written by hand, for paths that run without
/// hyper (hyper's own errors, connections past the limit); the connection
/// closes after it.
pub(crate) fn closing_answer(
    status: &str,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_for_hyper_error(buf: &[u8]) -> Option<&'static [u8]> {
    if !buf.starts_with(b"HTTP/1.1 4") || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let empty = buf
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
    if !empty {
        return None;
    }
    let status = &buf[b"HTTP/1.1 ".len()..];
    let i = HYPER_ERRORS.iter().position(|(line, _)| {
        status.starts_with(line.as_bytes()) && status[line.len()..].starts_with(b"\r\n")
    })?;
    JSON_ANSWERS.get(i).map(Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_answers_are_well_formed() {
        for ((status, _), json) in HYPER_ERRORS.iter().zip(JSON_ANSWERS.iter()) {
            let text = std::str::from_utf8(json).unwrap();
            let (h, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(h.starts_with(&format!("HTTP/1.1 {status}\r\n")));
            let declared: usize = h
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(declared, body.len(), "{h}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v["error"].is_string());
        }
        let hyper = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            json_for_hyper_error(hyper),
            Some(JSON_ANSWERS[0].as_slice())
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 30\r\n\r\n";
        assert_eq!(json_for_hyper_error(ours), None);
    }
}
