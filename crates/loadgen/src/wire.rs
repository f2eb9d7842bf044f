//! Byte, request and segment accounting below HTTP and WebSocket framing.
//!
//! Every client socket is a [`WireCounter`] around a `TcpStream`. It adds the
//! bytes it moves to a shared [`WireStats`], and when it is dropped it reads
//! `TCP_INFO` to add the connection's segment counts.

pub use chatbench_results::wire::{on_wire_bytes, WireSnapshot};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Totals of one transport run, shared by all of its clients.
#[derive(Debug, Default)]
pub struct WireStats {
    /// Bytes written by clients (requests, publishes, WebSocket frames).
    pub bytes_up: AtomicU64,
    /// Bytes read by clients.
    pub bytes_down: AtomicU64,
    /// HTTP requests sent (the WebSocket handshake counts as one).
    pub requests: AtomicU64,
    /// Poll answers that held no message.
    pub empty_polls: AtomicU64,
    /// TCP connections opened.
    pub connections: AtomicU64,
    /// Segments received, from `TCP_INFO` at close.
    pub segs_in: AtomicU64,
    /// Segments sent, from `TCP_INFO` at close.
    pub segs_out: AtomicU64,
}

impl WireStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> WireSnapshot {
        WireSnapshot {
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            requests: self.requests.load(Relaxed),
            empty_polls: self.empty_polls.load(Relaxed),
            connections: self.connections.load(Relaxed),
            segs_in: self.segs_in.load(Relaxed),
            segs_out: self.segs_out.load(Relaxed),
        }
    }
}

/// A counted client socket.
#[derive(Debug)]
pub struct WireCounter {
    inner: TcpStream,
    stats: Arc<WireStats>,
    read_at: Arc<AtomicU64>,
}

impl WireCounter {
    /// Connects to `addr` with `TCP_NODELAY`, counting the connection.
    pub async fn connect(
        addr: std::net::SocketAddr,
        stats: Arc<WireStats>,
    ) -> io::Result<WireCounter> {
        let inner = TcpStream::connect(addr).await?;
        inner.set_nodelay(true)?;
        stats.connections.fetch_add(1, Relaxed);
        Ok(WireCounter {
            inner,
            stats,
            read_at: Arc::new(AtomicU64::new(0)),
        })
    }

    /// When this socket last returned bytes, in µs since the UNIX epoch
    /// (`CLOCK_REALTIME`): a receiver subtracts it from the time it finished
    /// parsing a message to get the load generator's own receive time.
    pub fn read_at(&self) -> Arc<AtomicU64> {
        self.read_at.clone()
    }
}

/// Segments in and out of a TCP socket so far, from `TCP_INFO` (Linux).
pub fn tcp_segments(sock: &impl AsRawFd) -> Option<(u64, u64)> {
    #[cfg(target_os = "linux")]
    {
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` is a writable tcp_info and `len` holds its size, as
        // getsockopt(TCP_INFO) requires; the fd is owned by `sock` and open.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some((info.tcpi_segs_in as u64, info.tcpi_segs_out as u64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        None
    }
}

impl Drop for WireCounter {
    fn drop(&mut self) {
        if let Some((segs_in, segs_out)) = tcp_segments(&self.inner) {
            self.stats.segs_in.fetch_add(segs_in, Relaxed);
            self.stats.segs_out.fetch_add(segs_out, Relaxed);
        }
    }
}

impl AsyncRead for WireCounter {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            this.read_at.store(crate::clock::unix_now_us(), Relaxed);
            this.stats.bytes_down.fetch_add(n, Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WireCounter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.stats.bytes_up.fetch_add(n as u64, Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.stats.bytes_up.fetch_add(n as u64, Relaxed);
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
