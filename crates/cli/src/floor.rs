//! `chatbench floor`: the write floor of a fan-out, measured on this
//! machine. One thread writes a frame of `bytes` to each of `connections`
//! loopback TCP sockets in turn, as a server delivering one message to a
//! room does, and nothing else: no parsing, no framing, no scheduling. Its
//! CPU per write is the least a server can spend per delivery over TCP
//! here; a server's CPU per delivery divided by it says how far above the
//! floor the server is (issue 32's ratio). Another thread, on another CPU,
//! reads every socket so that the writes never wait for room.

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

/// Measures the floor.
pub fn measure(a: &FloorArgs) -> anyhow::Result<FloorReport> {
    anyhow::ensure!(a.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(a.bytes >= 1, "--bytes must be at least 1");
    anyhow::ensure!(a.writes >= 1, "--writes must be at least 1");
    let (mut writers, mut readers) = pairs(a.connections)?;
    let done = Arc::new(AtomicBool::new(false));
    let expected = a.writes * a.bytes as u64;
    let reader = {
        let done = done.clone();
        let cpu = a.reader_cpu;
        std::thread::spawn(move || -> std::io::Result<u64> {
            if let Some(c) = cpu {
                chatbench_server::affinity::pin(&[c])?;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0u64;
            let mut idle_since: Option<Instant> = None;
            // Round and round every socket until all that was written is
            // read; if the writer stopped early, until a second passes
            // with nothing to read.
            while read < expected {
                let mut got = 0u64;
                for r in &mut readers {
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
        })
    };
    if let Some(c) = a.cpu {
        chatbench_server::affinity::pin(&[c])?;
    }
    let frame = vec![b'x'; a.bytes];
    let (cpu0, t0) = (thread_cpu_us()?, Instant::now());
    let n = writers.len() as u64;
    let wrote = (0..a.writes).try_for_each(|i| writers[(i % n) as usize].write_all(&frame));
    let (cpu1, wall) = (thread_cpu_us()?, t0.elapsed());
    done.store(true, Ordering::Release);
    let bytes_read = reader
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte written is read, and the figures are consistent: the
    /// CPU per write is the writer's CPU over the writes.
    #[test]
    fn the_floor_writes_every_frame_and_counts_its_cpu() {
        let a = FloorArgs {
            connections: 8,
            bytes: 100,
            writes: 20_000,
            cpu: None,
            reader_cpu: None,
            json: false,
        };
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
    }
}
