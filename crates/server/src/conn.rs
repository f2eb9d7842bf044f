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

/// A `TcpStream` that charges written bytes to its [`ConnTag`]'s transport and
/// fails reads with `TimedOut` after `idle` without any traffic.
#[derive(Debug)]
pub struct CountedIo {
    inner: TcpStream,
    tag: Arc<ConnTag>,
    metrics: Arc<Metrics>,
    idle: Duration,
    last_activity: Instant,
    idle_timer: Pin<Box<Sleep>>,
}

impl CountedIo {
    /// Wraps an accepted stream.
    pub fn new(
        inner: TcpStream,
        tag: Arc<ConnTag>,
        metrics: Arc<Metrics>,
        idle: Duration,
    ) -> CountedIo {
        let now = Instant::now();
        CountedIo {
            inner,
            tag,
            metrics,
            idle,
            last_activity: now,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
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
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.wrote(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.wrote(n);
        Poll::Ready(Ok(n))
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
