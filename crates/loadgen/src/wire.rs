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
use tokio::io::unix::AsyncFd;
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
///
/// It does its own reads (`recvmsg`, for the kernel's arrival stamp) and
/// writes on an [`AsyncFd`], which lets a short read or write clear the
/// socket's readiness as tokio's `TcpStream` does: without that, every
/// answer costs a second `recvmsg` that fails with `EAGAIN`.
#[derive(Debug)]
pub struct WireCounter {
    sock: Arc<Sock>,
    read_at: Arc<AtomicU64>,
    /// Room for the stamp's control message, allocated once, not per read.
    cmsg: Vec<u8>,
}

impl WireCounter {
    /// Connects to `addr` with `TCP_NODELAY`, counting the connection.
    pub async fn connect(
        addr: std::net::SocketAddr,
        stats: Arc<WireStats>,
    ) -> io::Result<WireCounter> {
        WireCounter::connect_from(addr, None, stats).await
    }

    /// [`WireCounter::connect`] from the local address `source` when given
    /// (port chosen at connect with `IP_BIND_ADDRESS_NO_PORT`, so a source
    /// port is shared by connections to different destinations): each
    /// source address has its own ~28,000 ephemeral ports toward one
    /// destination.
    pub async fn connect_from(
        addr: std::net::SocketAddr,
        source: Option<std::net::IpAddr>,
        stats: Arc<WireStats>,
    ) -> io::Result<WireCounter> {
        let stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                if ip.is_ipv4() {
                    nix::sys::socket::setsockopt(
                        &socket,
                        nix::sys::socket::sockopt::IpBindAddressNoPort,
                        &true,
                    )
                    .map_err(io::Error::from)?;
                }
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        stream.set_nodelay(true)?;
        arrival_stamps(&stream);
        // Still non-blocking, as `into_std` leaves it.
        let std = stream.into_std()?;
        // SAFETY: the `AsyncFd` owns the std stream, whose fd stays open and
        // the same until the `AsyncFd` is dropped.
        let inner = unsafe { AsyncFd::register(std) }.map_err(io::Error::from)?;
        stats.connections.fetch_add(1, Relaxed);
        Ok(WireCounter {
            sock: Arc::new(Sock { inner, stats }),
            read_at: Arc::new(AtomicU64::new(0)),
            cmsg: cmsg_space(),
        })
    }

    /// When the bytes this socket last returned reached it, in µs since the
    /// UNIX epoch (`CLOCK_REALTIME`): the kernel's receive stamp of the last
    /// segment read (`SO_TIMESTAMPNS`), or the time of the read where the
    /// kernel gives none. A delivery's latency ends here; what the load
    /// generator spends from here until it has handled the message
    /// (reading, parsing, and waiting behind the other clients it simulates
    /// on the same CPU) is its own receive time, reported apart.
    pub fn read_at(&self) -> Arc<AtomicU64> {
        self.read_at.clone()
    }

    /// A second handle on the socket that only writes, for a task other
    /// than the reader's (a WebSocket sender's publishes). The socket
    /// closes when both are dropped. Only this counter may read.
    pub fn writer(&self) -> WireWriter {
        WireWriter(self.sock.clone())
    }
}

/// The socket a [`WireCounter`] and its [`WireWriter`] share.
#[derive(Debug)]
struct Sock {
    inner: AsyncFd<std::net::TcpStream>,
    stats: Arc<WireStats>,
}

/// The writing handle of a [`WireCounter`] ([`WireCounter::writer`]).
#[derive(Debug)]
pub struct WireWriter(Arc<Sock>);

impl Sock {
    /// One write through `op` (`write` or `writev`), counted.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        op: impl Fn(&std::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.inner.poll_write_ready(cx))?;
            match guard.try_io(|s| op(s.get_ref())) {
                Ok(Ok(n)) => {
                    // A short write means the send buffer is full: wait
                    // for the next edge rather than try again at once.
                    if n > 0 && n < len {
                        guard.clear_ready();
                    }
                    self.stats.bytes_up.fetch_add(n as u64, Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
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

/// Asks the kernel to stamp the segments `sock` receives (`SO_TIMESTAMPNS`).
/// Where it refuses, reads are stamped by the clock when they return.
fn arrival_stamps(sock: &impl std::os::fd::AsFd) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
        if let Err(e) = setsockopt(sock, ReceiveTimestampns, &true) {
            tracing::debug!("no kernel receive stamps: {e}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock;
}

/// Keeps the kernel's receive stamping switched on while it lives.
///
/// Linux stamps arriving packets only while some socket asks for stamps, and
/// it switches stamping on a moment after the first one asks (from a work
/// queue), so the first segments a new socket receives can come unstamped.
/// One stamped socket held from the start of a run keeps stamping on across
/// every transport's connects and closes.
#[derive(Debug)]
pub struct ArrivalStamps(#[allow(dead_code)] Option<std::net::UdpSocket>);

impl ArrivalStamps {
    /// Opens the socket that holds stamping on (loopback, never used).
    pub fn hold() -> ArrivalStamps {
        let sock = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0));
        if let Ok(s) = &sock {
            arrival_stamps(s);
        }
        ArrivalStamps(sock.ok())
    }
}

/// A buffer for one `SCM_TIMESTAMPNS` control message.
fn cmsg_space() -> Vec<u8> {
    #[cfg(target_os = "linux")]
    {
        nix::cmsg_space!(nix::sys::time::TimeSpec)
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// One `recvmsg` into `buf`: the byte count and, when the kernel stamped
/// the segments, the receive stamp of the last one read, in µs since the
/// UNIX epoch.
fn recv_stamped(
    sock: &std::net::TcpStream,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, Option<u64>)> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())?;
        let stamp = msg.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => {
                    let us = ts.tv_sec() as i128 * 1_000_000 + ts.tv_nsec() as i128 / 1_000;
                    u64::try_from(us)
                        .ok()
                        .filter(|&us| us > 0)
                        .map(crate::clock::adjust_stamp)
                }
                _ => None,
            })
        });
        Ok((msg.bytes, stamp))
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::io::Read;
        let _ = cmsg;
        let mut sock = sock;
        sock.read(buf).map(|n| (n, None))
    }
}

impl Drop for Sock {
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
        loop {
            let mut guard = ready!(this.sock.inner.poll_read_ready(cx))?;
            // SAFETY: recvmsg only writes into the slice, and only the `n`
            // bytes it reports are marked filled, as tokio's own
            // `TcpStream::poll_read` does; zero-filling hyper's 8 KiB read
            // buffer before every read would cost more than the read.
            let unfilled = unsafe { &mut *(buf.unfilled_mut() as *mut [_] as *mut [u8]) };
            let len = unfilled.len();
            let cmsg = &mut this.cmsg;
            match guard.try_io(|s| recv_stamped(s.get_ref(), unfilled, cmsg)) {
                Ok(Ok((n, stamp))) => {
                    // Edge-triggered epoll: a read that did not fill the
                    // buffer emptied the socket, so the next read waits for
                    // the next edge instead of failing with EAGAIN (tokio's
                    // `TcpStream` does the same).
                    if n > 0 && n < len {
                        guard.clear_ready();
                    }
                    // SAFETY: recvmsg wrote these `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 {
                        let at = stamp.unwrap_or_else(crate::clock::unix_now_us);
                        this.read_at.store(at, Relaxed);
                        this.sock.stats.bytes_down.fetch_add(n as u64, Relaxed);
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl Sock {
    fn write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        use std::io::Write;
        self.poll_write_with(cx, buf.len(), |mut s| s.write(buf))
    }

    fn write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        use std::io::Write;
        let len = bufs.iter().map(|b| b.len()).sum();
        self.poll_write_with(cx, len, |mut s| s.write_vectored(bufs))
    }

    fn shutdown(&self) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// [`AsyncWrite`] for a handle on a [`Sock`].
macro_rules! write_through_sock {
    ($t:ty, $sock:tt) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.$sock.write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.$sock.write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.$sock.shutdown()
            }
        }
    };
}
write_through_sock!(WireCounter, sock);
write_through_sock!(WireWriter, 0);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_leave_from_the_source_address_asked_for() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(WireStats::default());
        for last in [2u8, 3, 2] {
            let ip = std::net::IpAddr::from([127, 0, 0, last]);
            let (client, accepted) = tokio::join!(
                WireCounter::connect_from(addr, Some(ip), stats.clone()),
                listener.accept()
            );
            client.unwrap();
            let (_, peer) = accepted.unwrap();
            assert_eq!(peer.ip(), ip);
        }
        assert_eq!(stats.snapshot().connections, 3);
    }

    /// A read's stamp is when the bytes reached the socket, not when the
    /// reader got to them: the reader here comes 50 ms late.
    #[tokio::test]
    async fn reads_carry_the_kernels_arrival_stamp() {
        // As a run does; then long enough for the kernel to switch on.
        let _on = ArrivalStamps::hold();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(WireStats::default());
        let (client, accepted) =
            tokio::join!(WireCounter::connect(addr, stats.clone()), listener.accept());
        let mut client = client.unwrap();
        let (mut server, _) = accepted.unwrap();
        let before = crate::clock::unix_now_us();
        server.write_all(b"hello").await.unwrap();
        let written = crate::clock::unix_now_us();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut got = [0u8; 16];
        let n = client.read(&mut got).await.unwrap();
        let read = crate::clock::unix_now_us();
        assert_eq!(&got[..n], b"hello");
        let at = client.read_at().load(Relaxed);
        assert!(
            (before..=written).contains(&at),
            "stamped {at}, written between {before} and {written}, read at {read}"
        );
        assert!(
            read - at >= 50_000,
            "the stamp is the read's: {at} vs {read}"
        );
        assert_eq!(stats.bytes_down.load(Relaxed), 5);
    }
}
