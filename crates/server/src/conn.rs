//! One accepted TCP connection: the byte-counting, idle-aware socket wrapper
//! and the guard that holds the connection's slot.

use crate::metrics::{Metrics, Transport};
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

/// Which transport label the request in flight on a connection has. HTTP/1.1
/// serves one request at a time per connection, so bytes written are charged
/// to the label the router set for the current request.
#[derive(Debug)]
pub struct ConnTag(AtomicU8);

impl ConnTag {
    /// A tag that starts as [`Transport::Other`].
    pub fn new() -> ConnTag {
        ConnTag(AtomicU8::new(Transport::Other as u8))
    }

    /// Charges later bytes to `t`.
    pub fn set(&self, t: Transport) {
        self.0.store(t as u8, Ordering::Relaxed);
    }

    /// The current label.
    pub fn get(&self) -> Transport {
        Transport::from_u8(self.0.load(Ordering::Relaxed))
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
    /// When the current run of blocked writes began.
    blocked_since: Option<Instant>,
    stall_timer: Pin<Box<Sleep>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    shutting_down: bool,
}

impl std::fmt::Debug for CountedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedIo")
            .field("inner", &self.inner)
            .field("tag", &self.tag.get())
            .field("blocked_since", &self.blocked_since)
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
            blocked_since: None,
            stall_timer: Box::pin(tokio::time::sleep_until(now + deadlines.write_stall)),
            shutdown: Box::pin(deadlines.shutdown.clone().cancelled_owned()),
            shutting_down: false,
        }
    }

    /// Called when a write is pending: arms the stall timer at the start of
    /// a blocked run, shortens it at shutdown, and fails once it fires.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let now = Instant::now();
        if !self.shutting_down && self.shutdown.as_mut().poll(cx).is_ready() {
            self.shutting_down = true;
            let linger = now + SHUTDOWN_LINGER;
            if self.blocked_since.is_some() && linger < self.stall_timer.deadline() {
                self.stall_timer.as_mut().reset(linger);
            }
        }
        if self.blocked_since.is_none() {
            self.blocked_since = Some(now);
            let wait = if self.shutting_down {
                SHUTDOWN_LINGER
            } else {
                self.write_stall
            };
            self.stall_timer.as_mut().reset(now + wait);
        }
        ready!(self.stall_timer.as_mut().poll(cx));
        let waited = self.blocked_since.map_or(Duration::ZERO, |t| now - t);
        self.metrics.write_stalls.inc();
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client accepted no bytes for {} ms{}",
                waited.as_millis(),
                if self.shutting_down {
                    " while the server shut down"
                } else {
                    ""
                }
            ),
        ))
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
        self.blocked_since = None;
        self.metrics
            .of(self.tag.get())
            .bytes_written
            .inc_by(n as u64);
    }
}

use std::future::Future;

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
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_stall(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_stall(cx).map(Err),
        }
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
