//! Byte, request and segment accounting below HTTP and WebSocket framing.
//!
//! Every client socket is a [`WireCounter`] around a `TcpStream`. It adds the
//! bytes it moves to a shared [`WireStats`], and when it is dropped it reads
//! `TCP_INFO` once to add the connection's segments, retransmissions and round trip.

use crate::radio::ClientRadio;
pub use chatbench_results::wire::{on_wire_bytes, WireSnapshot};
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::link::{Direction, LinkSpec};

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
    /// Polls answered.
    pub answered_polls: AtomicU64,
    /// Their bytes less the messages inside them.
    pub poll_overhead_bytes: AtomicU64,
    /// TCP connections opened.
    pub connections: AtomicU64,
    /// Segments received, from `TCP_INFO` at close.
    pub segs_in: AtomicU64,
    /// Segments sent, from `TCP_INFO` at close.
    pub segs_out: AtomicU64,
    /// TLS handshakes completed.
    pub tls_handshakes: AtomicU64,
    /// Their bytes on the socket, both directions.
    pub tls_handshake_bytes: AtomicU64,
    /// Their time from the TCP connect, summed, µs.
    pub tls_handshake_us: AtomicU64,
    /// TCP's view of the sockets, read as each closed.
    pub tcp: TcpStats,
}

impl WireStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> WireSnapshot {
        WireSnapshot {
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            requests: self.requests.load(Relaxed),
            empty_polls: self.empty_polls.load(Relaxed),
            answered_polls: self.answered_polls.load(Relaxed),
            poll_overhead_bytes: self.poll_overhead_bytes.load(Relaxed),
            connections: self.connections.load(Relaxed),
            segs_in: self.segs_in.load(Relaxed),
            segs_out: self.segs_out.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_handshake_bytes: self.tls_handshake_bytes.load(Relaxed),
            tls_handshake_us: self.tls_handshake_us.load(Relaxed),
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
    /// The emulated link's downstream half, when the scenario has one.
    down: Option<Box<Down>>,
    /// Its upstream half, shared with the [`WireWriter`].
    up: Option<Arc<Up>>,
}

/// Bytes read from an emulated link's socket and not yet released, at most
/// this many (then the socket is left to fill, and TCP pushes back).
const DOWN_QUEUE_MAX: usize = 1 << 20;

/// A wait on the link timer for a release time.
type LinkWait = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// An emulated link's downstream half: chunks read from the socket, each
/// with its release time.
struct Down {
    dir: Direction,
    /// (release µs, bytes, bytes of it already handed over).
    queue: std::collections::VecDeque<(u64, Vec<u8>, usize)>,
    queued: usize,
    eof: bool,
    err: Option<io::Error>,
    /// The wait for the head's release: (its time, the wait).
    wait: Option<(u64, LinkWait)>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Down")
            .field("queued", &self.queued)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

/// An emulated link's upstream half: writes are queued with their release
/// times for the connection's pump task.
#[derive(Debug)]
struct Up {
    dir: std::sync::Mutex<Direction>,
    tx: tokio::sync::mpsc::UnboundedSender<UpChunk>,
    /// Why the pump stopped, if it failed.
    failed: Arc<std::sync::Mutex<Option<(io::ErrorKind, String)>>>,
}

#[derive(Debug)]
enum UpChunk {
    Data(u64, Vec<u8>),
    Shutdown(u64),
}

impl Up {
    /// Queues a write, unless the connection was `cut`.
    fn write(
        &self,
        bufs: &[&[u8]],
        cut: &std::sync::atomic::AtomicBool,
    ) -> Poll<io::Result<usize>> {
        if let Some((kind, why)) = &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            return Poll::Ready(Err(io::Error::new(*kind, why.clone())));
        }
        let data: Vec<u8> = bufs.concat();
        let n = data.len();
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        // The release is computed and queued under one lock, so chunks of
        // the reader's and the writer's handles leave in release order.
        let mut dir = self.dir.lock().unwrap_or_else(|p| p.into_inner());
        // Under the lock a cut takes to queue its FIN: a write that sees no
        // cut is queued ahead of the FIN and leaves. (Checked before the
        // lock only, a write racing a cut from another task could queue
        // behind the FIN, fail in the pump, and be lost although the
        // writer was told it went: seen as 4 lost messages, one publish
        // to a room of 4, in a drops test.)
        if cut.load(Relaxed) {
            return Poll::Ready(Err(dropped()));
        }
        let at = dir.release_us(crate::clock::unix_now_us(), n);
        self.tx
            .send(UpChunk::Data(at, data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the link's pump stopped"))?;
        Poll::Ready(Ok(n))
    }

    fn shutdown(&self) -> Poll<io::Result<()>> {
        let dir = self.dir.lock().unwrap_or_else(|p| p.into_inner());
        let at = dir.last_release_us().max(crate::clock::unix_now_us());
        let _ = self.tx.send(UpChunk::Shutdown(at));
        Poll::Ready(Ok(()))
    }
}

/// Writes each queued chunk at its release time, in order; ends when both
/// handles are gone and the queue is empty, or at the first failed write.
async fn pump(
    sock: Arc<Sock>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<UpChunk>,
    failed: Arc<std::sync::Mutex<Option<(io::ErrorKind, String)>>>,
) {
    while let Some(chunk) = rx.recv().await {
        match chunk {
            UpChunk::Data(at, data) => {
                crate::link::wait_until(at).await;
                let mut off = 0;
                while off < data.len() {
                    match std::future::poll_fn(|cx| sock.write(cx, &data[off..])).await {
                        Ok(0) => {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some((io::ErrorKind::WriteZero, "the socket took no bytes".into()));
                            return;
                        }
                        Ok(n) => off += n,
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some((e.kind(), e.to_string()));
                            return;
                        }
                    }
                }
            }
            UpChunk::Shutdown(at) => {
                crate::link::wait_until(at).await;
                let _ = sock.shutdown();
            }
        }
    }
}

impl WireCounter {
    /// Counts a connected socket's bytes into `stats`, through an emulated
    /// `link` when given (see [`crate::link`]): the connection is usable
    /// one round trip after the TCP connect, and every chunk each way waits
    /// its release time. Sets `TCP_NODELAY` and asks for the kernel's
    /// arrival stamps. Sockets are opened by [`crate::dial`].
    pub async fn new(
        stream: TcpStream,
        link: Option<LinkSpec>,
        stats: Arc<WireStats>,
    ) -> io::Result<WireCounter> {
        stream.set_nodelay(true)?;
        arrival_stamps(&stream);
        // Still non-blocking, as `into_std` leaves it.
        let std = stream.into_std()?;
        // SAFETY: the `AsyncFd` owns the std stream, whose fd stays open and
        // the same until the `AsyncFd` is dropped.
        let inner = unsafe { AsyncFd::register(std) }.map_err(io::Error::from)?;
        stats.connections.fetch_add(1, Relaxed);
        let sock = Arc::new(Sock {
            inner,
            stats,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            cut: std::sync::atomic::AtomicBool::new(false),
            down_at_cut: AtomicU64::new(0),
            released: AtomicU64::new(0),
            sampled_at: AtomicU64::new(0),
            radio: OnceLock::new(),
        });
        let (down, up) = match link {
            None => (None, None),
            Some(spec) => {
                // SYN and SYN-ACK: one round trip before the first byte.
                crate::link::wait_until(crate::clock::unix_now_us() + spec.rtt.as_micros() as u64)
                    .await;
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let failed = Arc::new(std::sync::Mutex::new(None));
                tokio::spawn(pump(sock.clone(), rx, failed.clone()));
                (
                    Some(Box::new(Down {
                        dir: Direction::new(spec),
                        queue: Default::default(),
                        queued: 0,
                        eof: false,
                        err: None,
                        wait: None,
                        scratch: vec![0; 16 * 1024],
                    })),
                    Some(Arc::new(Up {
                        dir: std::sync::Mutex::new(Direction::new(spec)),
                        tx,
                        failed,
                    })),
                )
            }
        };
        Ok(WireCounter {
            sock,
            read_at: Arc::new(AtomicU64::new(0)),
            cmsg: cmsg_space(),
            down,
            up,
        })
    }

    /// Tells `radio` of every read and write from now on (a client's
    /// connections; the control connections have none).
    pub fn count_radio(&self, radio: Arc<ClientRadio>) {
        let _ = self.sock.radio.set(radio);
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
        WireWriter {
            sock: self.sock.clone(),
            up: self.up.clone(),
        }
    }

    /// Drops the connection as a lost network does, for the client: from
    /// now on it writes nothing (a write fails with `BrokenPipe`), and what
    /// it had written still leaves (over an emulated link, after the
    /// chunks queued before the cut), followed by a FIN, so the server
    /// sees the connection end at once. Reads go on until the server
    /// closes, so every byte it sent is counted; what the client does with
    /// them is its own affair.
    pub fn cut(&self) {
        self.cut_handle().cut();
    }

    /// A handle that cuts this connection from another task, or while the
    /// counter is borrowed by a request in flight.
    pub fn cut_handle(&self) -> CutHandle {
        CutHandle(Cut::Tcp {
            sock: self.sock.clone(),
            up: self.up.clone(),
        })
    }

    /// Bytes this connection wrote so far, and bytes it handed to the
    /// client (over an emulated link, those released by it).
    pub fn bytes(&self) -> (u64, u64) {
        (self.sock.up.load(Relaxed), self.sock.released.load(Relaxed))
    }
}

/// One QUIC client's UDP socket's counts (`dial/quic.rs` counts each
/// datagram into them), also added to the run's [`WireStats`].
#[derive(Debug)]
pub struct UdpCounts {
    stats: Arc<WireStats>,
    up: AtomicU64,
    down: AtomicU64,
    /// When the socket last received, µs since the UNIX epoch: the arrival
    /// a latency ends at (the clock's reading as quinn takes the datagram;
    /// the kernel's stamp is not passed through quinn's socket).
    pub read_at: Arc<AtomicU64>,
    /// Set once the connection was cut ([`crate::wire::CutHandle`]).
    pub cut: std::sync::atomic::AtomicBool,
    /// The client's radio, told of every datagram.
    pub radio: OnceLock<Arc<ClientRadio>>,
}

impl UdpCounts {
    /// Bytes sent and received so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.up.load(Relaxed), self.down.load(Relaxed))
    }
}

impl UdpCounts {
    /// Counts for a new socket, adding to `stats`.
    pub fn new(stats: Arc<WireStats>) -> UdpCounts {
        UdpCounts {
            stats,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            read_at: Arc::new(AtomicU64::new(0)),
            cut: std::sync::atomic::AtomicBool::new(false),
            radio: OnceLock::new(),
        }
    }

    /// Counts `bytes` sent in `datagrams`.
    pub fn sent(&self, bytes: u64, datagrams: u64) {
        self.up.fetch_add(bytes, Relaxed);
        self.stats.bytes_up.fetch_add(bytes, Relaxed);
        self.stats.segs_out.fetch_add(datagrams, Relaxed);
        if let Some(r) = self.radio.get() {
            r.packet(crate::clock::unix_now_us(), bytes, 0);
        }
    }

    /// Counts `bytes` received in `datagrams`, arriving now.
    pub fn received(&self, bytes: u64, datagrams: u64) {
        self.down.fetch_add(bytes, Relaxed);
        self.stats.bytes_down.fetch_add(bytes, Relaxed);
        self.stats.segs_in.fetch_add(datagrams, Relaxed);
        let now = crate::clock::unix_now_us();
        self.read_at.store(now, Relaxed);
        if let Some(r) = self.radio.get() {
            r.packet(now, 0, bytes);
        }
    }
}

/// Cuts a [`WireCounter`]'s connection ([`WireCounter::cut`]), or a QUIC
/// connection ([`CutHandle::quic`]).
#[derive(Debug, Clone)]
pub struct CutHandle(Cut);

#[derive(Debug, Clone)]
enum Cut {
    Tcp {
        sock: Arc<Sock>,
        up: Option<Arc<Up>>,
    },
    Quic(quinn::Connection, Arc<UdpCounts>),
}

impl CutHandle {
    /// The handle of a client's QUIC connection and its socket's counts:
    /// its cut closes the connection.
    pub fn quic(conn: quinn::Connection, counts: Arc<UdpCounts>) -> CutHandle {
        CutHandle(Cut::Quic(conn, counts))
    }

    /// Bytes the connection wrote so far, and bytes it handed to the client
    /// (as [`WireCounter::bytes`]).
    pub fn bytes(&self) -> (u64, u64) {
        match &self.0 {
            Cut::Tcp { sock, .. } => (sock.up.load(Relaxed), sock.released.load(Relaxed)),
            Cut::Quic(_, counts) => counts.bytes(),
        }
    }

    /// See [`WireCounter::cut`]; a second cut does nothing. Returns the
    /// bytes the connection had read by the cut. The flag is set before
    /// the FIN is queued under the link's lock, which a write checks the
    /// flag under ([`Up::write`]). A QUIC connection is closed.
    pub fn cut(&self) -> u64 {
        match &self.0 {
            Cut::Tcp { sock, up } => {
                let down = sock.released.load(Relaxed);
                if !sock.cut.swap(true, Relaxed) {
                    sock.down_at_cut.store(down, Relaxed);
                    let _ = match up {
                        Some(up) => up.shutdown(),
                        None => sock.shutdown(),
                    };
                }
                down
            }
            Cut::Quic(conn, counts) => {
                counts.cut.store(true, Relaxed);
                conn.close(0u32.into(), b"cut");
                counts.bytes().1
            }
        }
    }

    /// True once the connection was cut.
    pub fn is_cut(&self) -> bool {
        match &self.0 {
            Cut::Tcp { sock, .. } => sock.cut.load(Relaxed),
            Cut::Quic(_, counts) => counts.cut.load(Relaxed),
        }
    }

    /// Bytes that reached the client after the connection was cut (0 when
    /// it was not): over an emulated link, those still on the link at the
    /// cut included. (Connections are not dropped over QUIC: 0.)
    pub fn bytes_after_cut(&self) -> u64 {
        match &self.0 {
            Cut::Tcp { sock, .. } if sock.cut.load(Relaxed) => {
                sock.released.load(Relaxed) - sock.down_at_cut.load(Relaxed)
            }
            _ => 0,
        }
    }
}

/// The socket a [`WireCounter`] and its [`WireWriter`] share.
#[derive(Debug)]
struct Sock {
    inner: AsyncFd<std::net::TcpStream>,
    stats: Arc<WireStats>,
    /// This connection's own byte counts (also added to `stats`).
    up: AtomicU64,
    down: AtomicU64,
    /// Set by [`WireCounter::cut`].
    cut: std::sync::atomic::AtomicBool,
    /// `released` when it was cut.
    down_at_cut: AtomicU64,
    /// Bytes handed to the client: `down` less what an emulated link still
    /// holds.
    released: AtomicU64,
    /// When `TCP_INFO` was last sampled, µs since the UNIX epoch.
    sampled_at: AtomicU64,
    /// The client's radio, told of every read and write
    /// ([`WireCounter::count_radio`]).
    radio: OnceLock<Arc<ClientRadio>>,
}

/// The writing handle of a [`WireCounter`] ([`WireCounter::writer`]).
#[derive(Debug)]
pub struct WireWriter {
    sock: Arc<Sock>,
    up: Option<Arc<Up>>,
}

impl Sock {
    /// Counts `n` bytes read.
    fn count_down(&self, n: u64) {
        self.stats.bytes_down.fetch_add(n, Relaxed);
        self.down.fetch_add(n, Relaxed);
    }

    /// Tells the client's radio of `up` bytes written or `down` read at
    /// `at` (µs since the UNIX epoch).
    fn radio(&self, at: u64, up: u64, down: u64) {
        if let Some(r) = self.radio.get() {
            r.packet(at, up, down);
        }
    }

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
                    self.up.fetch_add(n as u64, Relaxed);
                    let now = crate::clock::unix_now_us();
                    self.radio(now, n as u64, 0);
                    self.sample_tcp(now);
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Samples `TCP_INFO` after a write made at `now` (µs since the UNIX
    /// epoch), at most every [`TCP_SAMPLE_US`].
    fn sample_tcp(&self, now: u64) {
        let last = self.sampled_at.load(Relaxed);
        if now.saturating_sub(last) >= TCP_SAMPLE_US
            && self
                .sampled_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            if let Some(t) = tcp_reading(&self.inner) {
                self.stats.tcp.sample(&t);
            }
        }
    }
}

pub use chatbench_proto::tcp::{tcp_info, tcp_reading};

/// The client sockets' TCP figures (see [`chatbench_results::tcp`]).
#[derive(Debug)]
pub struct TcpStats {
    sockets: AtomicU64,
    retrans_segs: AtomicU64,
    rto: AtomicU64,
    /// Sockets whose kernel did not count timeouts.
    rto_unknown: AtomicU64,
    srtt_us_sum: AtomicU64,
    srtt_us_max: AtomicU64,
    /// `u32::MAX` until a window is seen.
    min_cwnd: std::sync::atomic::AtomicU32,
    max_in_flight_bytes: AtomicU64,
}

impl Default for TcpStats {
    fn default() -> TcpStats {
        TcpStats {
            sockets: AtomicU64::new(0),
            retrans_segs: AtomicU64::new(0),
            rto: AtomicU64::new(0),
            rto_unknown: AtomicU64::new(0),
            srtt_us_sum: AtomicU64::new(0),
            srtt_us_max: AtomicU64::new(0),
            min_cwnd: std::sync::atomic::AtomicU32::new(u32::MAX),
            max_in_flight_bytes: AtomicU64::new(0),
        }
    }
}

/// How often a socket's window and bytes in flight are sampled, at most
/// (after a write, so the sample sees what the write put in flight).
const TCP_SAMPLE_US: u64 = 100_000;

impl TcpStats {
    /// A sample of an open socket: its window and bytes in flight.
    fn sample(&self, t: &chatbench_proto::tcp::TcpReading) {
        if t.cwnd > 0 {
            self.min_cwnd.fetch_min(t.cwnd, Relaxed);
        }
        self.max_in_flight_bytes
            .fetch_max(t.in_flight_bytes, Relaxed);
    }

    /// A socket as it closes.
    fn closed(&self, t: &chatbench_proto::tcp::TcpReading) {
        self.sample(t);
        self.sockets.fetch_add(1, Relaxed);
        self.retrans_segs.fetch_add(t.retrans_segs, Relaxed);
        match t.rto {
            Some(n) => self.rto.fetch_add(n, Relaxed),
            None => self.rto_unknown.fetch_add(1, Relaxed),
        };
        self.srtt_us_sum.fetch_add(t.srtt_us, Relaxed);
        self.srtt_us_max.fetch_max(t.srtt_us, Relaxed);
    }

    /// The sums so far.
    pub fn totals(&self) -> chatbench_results::tcp::TcpTotals {
        let sockets = self.sockets.load(Relaxed);
        let cwnd = self.min_cwnd.load(Relaxed);
        chatbench_results::tcp::TcpTotals {
            sockets,
            retrans_segs: self.retrans_segs.load(Relaxed),
            rto: self.rto.load(Relaxed),
            rto_known: sockets > 0 && self.rto_unknown.load(Relaxed) == 0,
            srtt_us_sum: self.srtt_us_sum.load(Relaxed),
            srtt_us_max: self.srtt_us_max.load(Relaxed),
            min_cwnd: if cwnd == u32::MAX { 0 } else { cwnd },
            max_in_flight_bytes: self.max_in_flight_bytes.load(Relaxed),
        }
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
        // Bytes that reached the socket but that no client read (an SSE
        // keep-alive arriving as the run ends; over an emulated link, the
        // last ones of a round trip still in flight when the client stopped)
        // were on the wire all the same: count them, as the server counted
        // them, so the byte cross-check does not depend on who stopped
        // first. Non-blocking, at most 256 KiB.
        {
            use std::io::Read;
            let mut scratch = [0u8; 4096];
            for _ in 0..64 {
                match self.inner.get_ref().read(&mut scratch) {
                    Ok(n) if n > 0 => {
                        self.count_down(n as u64);
                    }
                    _ => break,
                }
            }
        }
        if let Some(t) = tcp_reading(&self.inner) {
            self.stats.segs_in.fetch_add(t.segs_in, Relaxed);
            self.stats.segs_out.fetch_add(t.segs_out, Relaxed);
            self.stats.tcp.closed(&t);
        }
    }
}

impl WireCounter {
    /// A read through the emulated link: takes what the socket has into
    /// the queue (stamped with its release), and hands over the head once
    /// its release time has come.
    fn poll_read_link(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let WireCounter {
            sock,
            read_at,
            cmsg,
            down,
            ..
        } = self;
        let Some(down) = down.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !down.eof && down.err.is_none() && down.queued < DOWN_QUEUE_MAX {
                match sock.inner.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut guard)) => {
                        let len = down.scratch.len();
                        let scratch = &mut down.scratch;
                        match guard.try_io(|s| recv_stamped(s.get_ref(), scratch, cmsg)) {
                            Ok(Ok((0, _))) => down.eof = true,
                            Ok(Ok((n, stamp))) => {
                                if n < len {
                                    guard.clear_ready();
                                }
                                let at = stamp.unwrap_or_else(crate::clock::unix_now_us);
                                let release = down.dir.release_us(at, n);
                                down.queue
                                    .push_back((release, down.scratch[..n].to_vec(), 0));
                                down.queued += n;
                                sock.count_down(n as u64);
                            }
                            Ok(Err(e)) => down.err = Some(e),
                            Err(_would_block) => {}
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        down.err = Some(e);
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if let Some((release, data, off)) = down.queue.front_mut() {
                let release = *release;
                if release <= crate::clock::unix_now_us() {
                    let n = buf.remaining().min(data.len() - *off);
                    buf.put_slice(&data[*off..*off + n]);
                    sock.released.fetch_add(n as u64, Relaxed);
                    sock.radio(release, 0, n as u64);
                    *off += n;
                    down.queued -= n;
                    if *off == data.len() {
                        down.queue.pop_front();
                    }
                    // The bytes reached the client at their release: the
                    // receipt a latency ends at.
                    read_at.store(release, Relaxed);
                    down.wait = None;
                    return Poll::Ready(Ok(()));
                }
                if down.wait.as_ref().map(|w| w.0) != Some(release) {
                    down.wait = Some((release, Box::pin(crate::link::wait_until(release))));
                }
                if let Some((_, w)) = down.wait.as_mut() {
                    if w.as_mut().poll(cx).is_ready() {
                        down.wait = None;
                        continue;
                    }
                }
                return Poll::Pending;
            }
            if let Some(e) = down.err.take() {
                return Poll::Ready(Err(e));
            }
            if down.eof {
                return Poll::Ready(Ok(()));
            }
            return Poll::Pending;
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
        if this.down.is_some() {
            return this.poll_read_link(cx, buf);
        }
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
                        this.sock.count_down(n as u64);
                        this.sock.released.fetch_add(n as u64, Relaxed);
                        this.sock.radio(at, 0, n as u64);
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

/// The error of a write on a connection that was cut.
fn dropped() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the connection was dropped (network.drop_every)",
    )
}

/// [`AsyncWrite`] for a handle on a [`Sock`]: straight to the socket, or
/// into the emulated link's queue.
macro_rules! write_through_sock {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                if self.sock.cut.load(Relaxed) {
                    return Poll::Ready(Err(dropped()));
                }
                match &self.up {
                    Some(up) => up.write(&[buf], &self.sock.cut),
                    None => self.sock.write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                if self.sock.cut.load(Relaxed) {
                    return Poll::Ready(Err(dropped()));
                }
                match &self.up {
                    Some(up) => up.write(
                        &bufs.iter().map(|b| &b[..]).collect::<Vec<_>>(),
                        &self.sock.cut,
                    ),
                    None => self.sock.write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match &self.up {
                    Some(up) => up.shutdown(),
                    None => self.sock.shutdown(),
                }
            }
        }
    };
}
write_through_sock!(WireCounter);
write_through_sock!(WireWriter);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback echo server: every byte read is written back at once.
    /// A cut connection writes nothing more, still delivers what the
    /// peer sends until it closes, and counts that as after the cut; over
    /// an emulated link, what was written before the cut still leaves.
    #[tokio::test]
    async fn a_cut_connection_stops_writing_and_reads_to_the_end() {
        let _one = ONE_LINK_TEST.lock().await;
        let addr = echo_server().await;
        for link in [None, link(10, None)] {
            let stats = Arc::new(WireStats::default());
            let mut c = crate::dial::tcp::counted(addr, None, link, stats.clone())
                .await
                .unwrap();
            c.write_all(b"hello").await.unwrap();
            let cut = c.cut_handle();
            cut.cut();
            assert!(cut.is_cut());
            let e = c.write_all(b"more").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{link:?}");
            assert_eq!(
                e.to_string(),
                "the connection was dropped (network.drop_every)"
            );
            // The echo of what left before the cut, then the server's close.
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello", "{link:?}");
            assert_eq!(cut.bytes_after_cut(), 5, "{link:?}");
            assert_eq!(c.bytes(), (5, 5), "{link:?}");
        }
    }

    /// A write that passed its handle's cut check a moment before another
    /// task cut the connection reaches the link's queue after the cut's
    /// FIN: it must fail there, not be told it went (that race once lost
    /// one publish to a room of 4 in a drops test).
    #[tokio::test]
    async fn a_write_that_raced_a_cut_fails() {
        let _one = ONE_LINK_TEST.lock().await;
        let addr = echo_server().await;
        let stats = Arc::new(WireStats::default());
        let mut c = crate::dial::tcp::counted(addr, None, link(2, None), stats)
            .await
            .unwrap();
        c.write_all(b"before").await.unwrap();
        let up = c.up.clone().expect("an emulated link");
        c.cut();
        // Where the write goes once past its handle's own check.
        match up.write(&[b"late"], &c.sock.cut) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("a write queued behind the cut's FIN: {other:?}"),
        }
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"before");
    }

    async fn echo_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                s.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    fn link(rtt_ms: u64, bps: Option<u64>) -> Option<LinkSpec> {
        Some(LinkSpec {
            rtt: std::time::Duration::from_millis(rtt_ms),
            jitter: std::time::Duration::ZERO,
            bandwidth_bps: bps,
        })
    }

    /// The emulator tests run one at a time: each keeps tasks waking on
    /// the millisecond, and beside each other on 2 CPUs they delay each
    /// other's wake-ups.
    static ONE_LINK_TEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// The emulated link's round trip, as an application sees it, at 20 and
    /// 100 ms: the median echo's receipt stamp (what a latency ends at), the
    /// fastest echo and the fastest connect by the wall clock, each within
    /// 5% of the configured RTT, and none early. (Medians and minima: the
    /// wall clock and the pump's wake-ups also hold this test's scheduling
    /// on a shared 2-CPU machine.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_emulated_round_trip_is_the_configured_one() {
        let _one = ONE_LINK_TEST.lock().await;
        let _on = ArrivalStamps::hold();
        let addr = echo_server().await;
        for rtt_ms in [20u64, 100] {
            let rtt_us = rtt_ms as f64 * 1000.0;
            let near = |v: f64| (v - rtt_us).abs() <= 0.05 * rtt_us;
            let stats = Arc::new(WireStats::default());
            let mut connects = Vec::new();
            let mut conns = Vec::new();
            for _ in 0..3 {
                let t = std::time::Instant::now();
                let c = crate::dial::tcp::counted(addr, None, link(rtt_ms, None), stats.clone())
                    .await
                    .unwrap();
                connects.push(t.elapsed().as_micros() as f64);
                conns.push(c);
            }
            let fastest = connects.iter().copied().fold(f64::MAX, f64::min);
            assert!(
                connects.iter().all(|&c| c >= rtt_us) && near(fastest),
                "connects {connects:?} µs at an RTT of {rtt_ms} ms"
            );
            let mut c = conns.pop().unwrap();
            let (mut walls, mut stamps) = (Vec::new(), Vec::new());
            for i in 0..7u8 {
                let sent_at = crate::clock::unix_now_us();
                let t = std::time::Instant::now();
                c.write_all(&[b'a' + i; 16]).await.unwrap();
                let mut got = [0u8; 16];
                c.read_exact(&mut got).await.unwrap();
                walls.push(t.elapsed().as_micros() as f64);
                assert_eq!(got, [b'a' + i; 16]);
                stamps.push(c.read_at().load(Relaxed).saturating_sub(sent_at) as f64);
            }
            let fastest = walls.iter().copied().fold(f64::MAX, f64::min);
            let mut sorted = stamps.clone();
            sorted.sort_by(f64::total_cmp);
            assert!(
                near(sorted[3]) && near(fastest) && sorted[0] >= rtt_us && fastest >= rtt_us,
                "echoes at an RTT of {rtt_ms} ms: receipts {stamps:?} µs, wall clock {walls:?} µs"
            );
            // The bytes are counted once each way, as on a plain socket.
            drop(c);
            drop(conns);
            let s = stats.snapshot();
            assert_eq!((s.bytes_up, s.bytes_down, s.connections), (112, 112, 3));
        }
    }

    /// 1 Mbit/s each way: 62,500 bytes echoed take half a second to go up
    /// and (pipelined behind them) about as long to come down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_emulated_bandwidth_paces_each_direction() {
        let _one = ONE_LINK_TEST.lock().await;
        let addr = echo_server().await;
        let stats = Arc::new(WireStats::default());
        let mut c = crate::dial::tcp::counted(addr, None, link(0, Some(1_000_000)), stats)
            .await
            .unwrap();
        let t = std::time::Instant::now();
        let data = vec![7u8; 62_500];
        // In 1,250-byte writes, as a client's requests would go.
        for chunk in data.chunks(1_250) {
            c.write_all(chunk).await.unwrap();
        }
        let mut got = vec![0u8; data.len()];
        c.read_exact(&mut got).await.unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(got, data);
        // Up: 0.5 s at 1 Mbit/s. Down: the echo's chunks arrive as they are
        // sent up and leave the link 0.5 s after the first: about 0.5 s
        // more in all, not 1 s, since the two directions overlap.
        assert!((0.5..0.6).contains(&s), "{s} s");
    }

    #[tokio::test]
    async fn connections_leave_from_the_source_address_asked_for() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(WireStats::default());
        for last in [2u8, 3, 2] {
            let ip = std::net::IpAddr::from([127, 0, 0, last]);
            let (client, accepted) = tokio::join!(
                crate::dial::tcp::counted(addr, Some(ip), None, stats.clone()),
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
        let (client, accepted) = tokio::join!(
            crate::dial::tcp::counted(addr, None, None, stats.clone()),
            listener.accept()
        );
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
