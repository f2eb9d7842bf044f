//! The running packet-level link: the clients' namespace, a TUN device on
//! each side, and the forwarder between them, on a thread of its own so
//! that its CPU is the instrument's and is charged to neither side.
//!
//! ```text
//! client namespace                         this namespace (the server's)
//!   client socket ─► tun "cbc…" ─► forwarder: uplink  ─► tun "cbs…" ─► server
//!   client socket ◄─ tun "cbc…" ◄─ forwarder: downlink ◄─ tun "cbs…" ◄─ server
//! ```
//!
//! Each link has its own pair of addresses, from 10.251.0.0/16: the client
//! side `base + 1` in the namespace, the server side `base + 2` here, each
//! with a host route through its TUN device.

use super::model::{Direction, DirectionSpec, DirectionStats, Fate};
use super::netns::{ip, Netns};
use super::tun::Tun;
use crate::clock::unix_now_us;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;

/// Both directions of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketLinkSpec {
    /// Client to server.
    pub up: DirectionSpec,
    /// Server to client.
    pub down: DirectionSpec,
    /// Seed of the loss and jitter draws.
    pub seed: u64,
}

/// What the forwarder did, when it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ForwarderReport {
    /// Client to server.
    pub up: DirectionStats,
    /// Server to client.
    pub down: DirectionStats,
    /// The forwarder thread's CPU time, ms.
    pub cpu_ms: f64,
}

/// A running packet-level link.
#[derive(Debug)]
pub struct PacketLink {
    ns: Netns,
    client_ip: Ipv4Addr,
    server_ip: Ipv4Addr,
    server_tun: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<ForwarderReport>>>,
}

impl PacketLink {
    /// Makes the namespace, the TUN devices and their routes, and starts
    /// the forwarder. Needs root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`) and
    /// `ip` from iproute2.
    pub fn start(spec: PacketLinkSpec) -> io::Result<PacketLink> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Relaxed);
        let pid = std::process::id();
        let tag = format!("{pid}-{n}");
        let k = ((pid as u64) * 64 + n) % 16_384;
        let base = u32::from(Ipv4Addr::new(10, 251, 0, 0)) + 4 * k as u32;
        let (client_ip, server_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let (client_tun, server_tun) = (format!("cbc{tag}"), format!("cbs{tag}"));
        let ns = Netns::create(&format!("chatbench-{tag}"))?;
        let (made_tx, made_rx) = mpsc::channel::<io::Result<()>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (c, s) = (client_tun.clone(), server_tun.clone());
        let thread = std::thread::Builder::new()
            .name("packet-link".into())
            .spawn(move || -> io::Result<ForwarderReport> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let _in = rt.enter();
                let tuns = Tun::create(&c).and_then(|tc| Ok((tc, Tun::create(&s)?)));
                let (tc, ts) = match tuns {
                    Ok(t) => {
                        let _ = made_tx.send(Ok(()));
                        t
                    }
                    Err(e) => {
                        let _ = made_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let start = unix_now_us();
                let up = Direction::new(spec.up, start, spec.seed);
                let down = Direction::new(spec.down, start, spec.seed ^ 0x646f_776e);
                let cpu0 = thread_cpu_ms();
                let (up, down) = rt.block_on(forward(tc, ts, up, down, stop_rx))?;
                Ok(ForwarderReport {
                    up,
                    down,
                    cpu_ms: thread_cpu_ms() - cpu0,
                })
            })?;
        let mut link = PacketLink {
            ns,
            client_ip,
            server_ip,
            server_tun: server_tun.clone(),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        made_rx
            .recv()
            .map_err(|_| io::Error::other("the packet link's thread ended"))??;
        let (cip, sip) = (format!("{client_ip}/32"), format!("{server_ip}/32"));
        ip(&["link", "set", &client_tun, "netns", link.ns.name()])?;
        link.ns.ip(&["addr", "add", &cip, "dev", &client_tun])?;
        // A TUN device's queue (500 packets by default) drops what the
        // kernel sends faster than the forwarder reads: losses the link
        // did not choose. A long queue leaves every drop to the model.
        link.ns
            .ip(&["link", "set", &client_tun, "txqueuelen", "10000", "up"])?;
        link.ns.ip(&["route", "add", &sip, "dev", &client_tun])?;
        ip(&["addr", "add", &sip, "dev", &server_tun])?;
        ip(&["link", "set", &server_tun, "txqueuelen", "10000", "up"])?;
        ip(&["route", "replace", &cip, "dev", &server_tun])?;
        link.server_tun = server_tun;
        Ok(link)
    }

    /// The clients' address.
    pub fn client_ip(&self) -> Ipv4Addr {
        self.client_ip
    }

    /// The server side's address, in this namespace: a server listening on
    /// it (or on 0.0.0.0) is reached through the link.
    pub fn server_ip(&self) -> Ipv4Addr {
        self.server_ip
    }

    /// The clients' network namespace.
    pub fn netns_name(&self) -> &str {
        self.ns.name()
    }

    /// A TCP socket in the clients' namespace, not yet connected.
    pub fn client_socket(&self) -> io::Result<socket2::Socket> {
        self.ns.tcp_socket()
    }

    /// Stops the forwarder; what it did.
    pub fn stop(mut self) -> io::Result<ForwarderReport> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<ForwarderReport> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the packet link's thread panicked"))?,
            None => Ok(ForwarderReport::default()),
        }
    }
}

impl Drop for PacketLink {
    fn drop(&mut self) {
        let _ = self.finish();
        let _ = ip(&["route", "del", &format!("{}/32", self.client_ip)]);
        let _ = ip(&["link", "del", &self.server_tun]);
    }
}

/// This thread's CPU time so far, ms.
fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return 0.0;
    }
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// Packets on their way in one direction, handed over in order of arrival
/// time, and in the order offered among equal times (so that without
/// reordering, arrival times never falling, it is a FIFO).
#[derive(Default)]
struct InFlight {
    heap: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    offered: u64,
}

impl InFlight {
    fn push(&mut self, at: u64, packet: Vec<u8>) {
        self.offered += 1;
        self.heap.push(Reverse((at, self.offered, packet)));
    }

    /// When the next one arrives.
    fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next one, if it has arrived by `now`.
    fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.next_at()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, _, p))| p)
    }
}

/// Moves packets until told to stop: each packet read from one device is
/// offered to its direction, and written to the other device at the
/// arrival time the direction gives it.
async fn forward(
    tc: Tun,
    ts: Tun,
    mut up: Direction,
    mut down: Direction,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> io::Result<(DirectionStats, DirectionStats)> {
    let (mut up_q, mut down_q) = (InFlight::default(), InFlight::default());
    let (mut buf_c, mut buf_s) = (vec![0u8; 65_536], vec![0u8; 65_536]);
    loop {
        let next_up = up_q.next_at();
        let next_down = down_q.next_at();
        tokio::select! {
            r = tc.recv(&mut buf_c) => {
                let n = r?;
                if let Fate::Arrives(at) = up.offer(unix_now_us(), n as u64) {
                    up_q.push(at, buf_c[..n].to_vec());
                }
            }
            r = ts.recv(&mut buf_s) => {
                let n = r?;
                if let Fate::Arrives(at) = down.offer(unix_now_us(), n as u64) {
                    down_q.push(at, buf_s[..n].to_vec());
                }
            }
            _ = crate::link::wait_until(next_up.unwrap_or(0)), if next_up.is_some() => {
                let now = unix_now_us();
                while let Some(p) = up_q.pop_due(now) {
                    // A packet the kernel refuses is a packet lost.
                    let _ = ts.send(&p).await;
                }
            }
            _ = crate::link::wait_until(next_down.unwrap_or(0)), if next_down.is_some() => {
                let now = unix_now_us();
                while let Some(p) = down_q.pop_due(now) {
                    let _ = tc.send(&p).await;
                }
            }
            _ = &mut stop => break,
        }
    }
    Ok((up.stats(), down.stats()))
}

#[cfg(test)]
mod in_flight_tests {
    use super::InFlight;

    #[test]
    fn packets_leave_by_arrival_time_then_in_the_order_offered() {
        let mut q = InFlight::default();
        q.push(30, vec![1]);
        q.push(10, vec![2]);
        q.push(30, vec![3]);
        q.push(20, vec![4]);
        assert_eq!(q.next_at(), Some(10));
        assert_eq!(q.pop_due(5), None, "nothing has arrived at 5");
        let mut out = Vec::new();
        while let Some(p) = q.pop_due(30) {
            out.push(p[0]);
        }
        assert_eq!(out, [2, 4, 1, 3]);
        assert_eq!(q.next_at(), None);
    }
}
