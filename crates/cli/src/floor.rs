//! `chatbench floor`: the write floor of a fan-out, measured on this
//! machine. One thread writes a frame of `bytes` to each of `connections`
//! loopback TCP sockets in turn, as a server delivering one message to a
//! room does, and nothing else: no parsing, no framing, no scheduling. Its
//! CPU per write is the least a server can spend per delivery over TCP
//! here; a server's CPU per delivery divided by it says how far above the
//! floor the server is (issue 32's ratio). Another thread, on another CPU,
//! reads every socket so that the writes never wait for room.
//!
//! With `--read` it measures the other side, the receive floor: the writer
//! paces its writes at `--rate` a second (a fan-out's deliveries), and the
//! reader waits on epoll and reads each socket that is ready as a tokio
//! client's read does (edge-triggered; one read, unless it fills the
//! buffer), and nothing else. Its CPU
//! per frame is the least a load generator can spend per received message
//! here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Loopback connections written to in turn.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Bytes per write (a WebSocket frame of a 64-byte chat message is
    /// about 180 with its JSON).
    #[arg(long, default_value_t = 180)]
    pub bytes: usize,
    /// Writes in all.
    #[arg(long, default_value_t = 2_000_000)]
    pub writes: u64,
    /// The CPU the writer is pinned to (as the server's would be).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// The CPU the reader is pinned to.
    #[arg(long)]
    pub reader_cpu: Option<usize>,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Measure the receive floor instead: the reader's CPU per frame, the
    /// reader waiting on epoll, the writes paced at --rate.
    #[arg(long)]
    pub read: bool,
    /// With --read: writes a second, all connections together.
    #[arg(long, default_value_t = 100_000, requires = "read")]
    pub rate: u64,
}

/// What the writer did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FloorReport {
    /// Writes made (each whole: a short write is finished before the next).
    pub writes: u64,
    /// Bytes the reader read: `writes × bytes` when nothing was lost.
    pub bytes_read: u64,
    /// The writer thread's CPU (user and system), µs.
    pub writer_cpu_us: u64,
    /// Wall time of the writes, µs.
    pub wall_us: u64,
    /// `writer_cpu_us / writes`.
    pub cpu_us_per_write: f64,
    /// With `--read`: the reader's side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadFloor>,
}

/// What the reader did under `--read`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReadFloor {
    /// The reader thread's CPU (user and system), µs.
    pub reader_cpu_us: u64,
    /// `read` calls that returned bytes.
    pub reads: u64,
    /// epoll waits that returned.
    pub waits: u64,
    /// `reader_cpu_us / writes`: the reader's CPU per frame.
    pub cpu_us_per_frame: f64,
}

/// The calling thread's CPU time so far (user and system), µs.
fn thread_cpu_us() -> std::io::Result<u64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_THREAD).map_err(std::io::Error::from)?;
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Ok(us(u.user_time()) + us(u.system_time()))
}

/// Opens `n` loopback connections: (the writer's ends, the reader's ends).
fn pairs(n: usize) -> std::io::Result<(Vec<TcpStream>, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (mut writers, mut readers) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let reader = TcpStream::connect(addr)?;
        let (writer, _) = listener.accept()?;
        writer.set_nodelay(true)?;
        reader.set_nonblocking(true)?;
        writers.push(writer);
        readers.push(reader);
    }
    Ok((writers, readers))
}

/// Reads every socket round and round until `expected` bytes came, or a
/// second passes with nothing to read once `done` is set.
fn spin_reader(
    readers: &mut [TcpStream],
    expected: u64,
    done: &AtomicBool,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    let mut idle_since: Option<Instant> = None;
    while read < expected {
        let mut got = 0u64;
        for r in readers.iter_mut() {
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        read += got;
        if got > 0 || !done.load(Ordering::Acquire) {
            idle_since = None;
        } else if idle_since
            .get_or_insert_with(Instant::now)
            .elapsed()
            .as_secs()
            >= 1
        {
            break;
        }
    }
    Ok(read)
}

/// Waits on epoll and reads each ready socket as tokio does, until
/// `expected` bytes came (or a second passes idle once `done` is set):
/// the bytes, the reads that returned bytes, and the waits. Edge-triggered,
/// as mio registers sockets; a read that does not fill the buffer has
/// emptied the socket, so the next waits for the next edge instead of
/// failing with EAGAIN (tokio's `PollEvented::poll_read`, and the load
/// generator's own reads, do the same).
fn epoll_reader(
    readers: &mut [TcpStream],
    expected: u64,
    done: &AtomicBool,
) -> std::io::Result<(u64, u64, u64)> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    let ep = Epoll::new(EpollCreateFlags::empty())?;
    for (i, r) in readers.iter().enumerate() {
        ep.add(
            r,
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, i as u64),
        )?;
    }
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let (mut read, mut reads, mut waits) = (0u64, 0u64, 0u64);
    let mut idle_since: Option<Instant> = None;
    while read < expected {
        let n = ep.wait(&mut events, EpollTimeout::from(100u16))?;
        if n == 0 {
            if done.load(Ordering::Acquire)
                && idle_since
                    .get_or_insert_with(Instant::now)
                    .elapsed()
                    .as_secs()
                    >= 1
            {
                break;
            }
            continue;
        }
        idle_since = None;
        waits += 1;
        for e in &events[..n] {
            let r = &mut readers[e.data() as usize];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        read += k as u64;
                        reads += 1;
                        if k < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok((read, reads, waits))
}

/// What the reader thread hands back: bytes read, and with `--read` its
/// CPU, reads and waits.
type ReaderResult = std::io::Result<(u64, Option<(u64, u64, u64)>)>;

/// Measures the floor.
pub fn measure(a: &FloorArgs) -> anyhow::Result<FloorReport> {
    anyhow::ensure!(a.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(a.bytes >= 1, "--bytes must be at least 1");
    anyhow::ensure!(a.writes >= 1, "--writes must be at least 1");
    anyhow::ensure!(!a.read || a.rate >= 1, "--rate must be at least 1");
    let (mut writers, mut readers) = pairs(a.connections)?;
    let done = Arc::new(AtomicBool::new(false));
    let expected = a.writes * a.bytes as u64;
    let reader = {
        let done = done.clone();
        let (cpu, epoll) = (a.reader_cpu, a.read);
        std::thread::spawn(move || -> ReaderResult {
            if let Some(c) = cpu {
                chatbench_server::affinity::pin(&[c])?;
            }
            if !epoll {
                return Ok((spin_reader(&mut readers, expected, &done)?, None));
            }
            let cpu0 = thread_cpu_us()?;
            let (read, reads, waits) = epoll_reader(&mut readers, expected, &done)?;
            Ok((
                read,
                Some((thread_cpu_us()?.saturating_sub(cpu0), reads, waits)),
            ))
        })
    };
    if let Some(c) = a.cpu {
        chatbench_server::affinity::pin(&[c])?;
    }
    let frame = vec![b'x'; a.bytes];
    let (cpu0, t0) = (thread_cpu_us()?, Instant::now());
    let n = writers.len() as u64;
    let gap_ns = 1e9 / a.rate.max(1) as f64;
    let wrote = (0..a.writes).try_for_each(|i| {
        if a.read {
            // Paced, as deliveries arrive: spin to the write's turn.
            let due = std::time::Duration::from_nanos((i as f64 * gap_ns) as u64);
            while t0.elapsed() < due {
                std::hint::spin_loop();
            }
        }
        writers[(i % n) as usize].write_all(&frame)
    });
    let (cpu1, wall) = (thread_cpu_us()?, t0.elapsed());
    done.store(true, Ordering::Release);
    let (bytes_read, reader_side) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    wrote?;
    let writer_cpu_us = cpu1.saturating_sub(cpu0);
    Ok(FloorReport {
        writes: a.writes,
        bytes_read,
        writer_cpu_us,
        wall_us: wall.as_micros() as u64,
        cpu_us_per_write: writer_cpu_us as f64 / a.writes as f64,
        read: reader_side.map(|(cpu, reads, waits)| ReadFloor {
            reader_cpu_us: cpu,
            reads,
            waits,
            cpu_us_per_frame: cpu as f64 / a.writes as f64,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20,000 frames of 100 bytes over 8 connections, unpinned.
    fn small(read: bool) -> FloorArgs {
        FloorArgs {
            connections: 8,
            bytes: 100,
            writes: 20_000,
            cpu: None,
            reader_cpu: None,
            json: false,
            read,
            rate: 200_000,
        }
    }

    /// Every byte written is read, and the figures are consistent: the
    /// CPU per write is the writer's CPU over the writes.
    #[test]
    fn the_floor_writes_every_frame_and_counts_its_cpu() {
        let a = small(false);
        let r = measure(&a).unwrap();
        assert_eq!(r.writes, 20_000);
        assert_eq!(r.bytes_read, 20_000 * 100);
        assert!(r.writer_cpu_us > 0, "{r:?}");
        assert_eq!(r.cpu_us_per_write, r.writer_cpu_us as f64 / 20_000.0);
        let zero = FloorArgs {
            connections: 0,
            ..a.clone()
        };
        assert_eq!(
            measure(&zero).unwrap_err().to_string(),
            "--connections must be at least 1"
        );
        assert!(r.read.is_none());
    }

    /// The receive floor reads every frame through epoll and counts the
    /// reader's CPU per frame.
    #[test]
    fn the_read_floor_reads_every_frame_through_epoll() {
        let r = measure(&small(true)).unwrap();
        assert_eq!(r.bytes_read, 20_000 * 100);
        let read = r.read.unwrap();
        assert!(read.reads >= 8 && read.reads <= 20_000, "{read:?}");
        assert!(read.waits >= 1 && read.waits <= read.reads, "{read:?}");
        assert_eq!(read.cpu_us_per_frame, read.reader_cpu_us as f64 / 20_000.0);
    }
}
