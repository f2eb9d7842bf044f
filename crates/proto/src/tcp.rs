//! A TCP socket's `TCP_INFO` (Linux), which the server and the load
//! generator both read: one reader for both sides.

use std::os::fd::AsRawFd;

/// A TCP socket's `TCP_INFO` now: its segment counts, retransmissions,
/// round-trip estimate and congestion window, and how many bytes of the
/// struct the kernel filled (an older kernel fills fewer: `tcpi_total_rto`
/// came in Linux 6.7). None where the call fails or off Linux.
#[cfg(target_os = "linux")]
pub fn tcp_info(sock: &impl AsRawFd) -> Option<(libc::tcp_info, usize)> {
    // SAFETY: all zero is a valid tcp_info.
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
    (rc == 0).then_some((info, len as usize))
}

/// What both sides report of one socket's `TCP_INFO`: its segments, its
/// losses, its round trip and its window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpReading {
    /// Segments received (`tcpi_segs_in`).
    pub segs_in: u64,
    /// Segments sent (`tcpi_segs_out`).
    pub segs_out: u64,
    /// Segments retransmitted (`tcpi_total_retrans`).
    pub retrans_segs: u64,
    /// Retransmission timeouts (`tcpi_total_rto`), None on a kernel
    /// older than 6.7.
    pub rto: Option<u64>,
    /// Smoothed round trip, µs (`tcpi_rtt`).
    pub srtt_us: u64,
    /// Congestion window, segments (`tcpi_snd_cwnd`).
    pub cwnd: u32,
    /// Bytes sent and not yet acknowledged (`tcpi_unacked` ×
    /// `tcpi_snd_mss`).
    pub in_flight_bytes: u64,
}

/// A socket's [`TcpReading`] now: one `getsockopt`.
pub fn tcp_reading(sock: &impl AsRawFd) -> Option<TcpReading> {
    #[cfg(target_os = "linux")]
    {
        let (i, len) = tcp_info(sock)?;
        let rto_end = std::mem::offset_of!(libc::tcp_info, tcpi_total_rto) + 2;
        Some(TcpReading {
            segs_in: i.tcpi_segs_in as u64,
            segs_out: i.tcpi_segs_out as u64,
            retrans_segs: i.tcpi_total_retrans as u64,
            rto: (len >= rto_end).then_some(i.tcpi_total_rto as u64),
            srtt_us: i.tcpi_rtt as u64,
            cwnd: i.tcpi_snd_cwnd,
            in_flight_bytes: i.tcpi_unacked as u64 * i.tcpi_snd_mss as u64,
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_connection_reports_segments_no_losses_and_a_round_trip() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let t = tcp_reading(&c).expect("TCP_INFO on a connected socket");
        assert_eq!(t.retrans_segs, 0);
        // The SYN-ACK's and the handshake's last ACK at least.
        assert!(t.segs_in >= 1 && t.segs_out >= 1, "{t:?}");
        assert_eq!(t.in_flight_bytes, 0);
        // Linux starts every connection with a window of 10 segments.
        assert_eq!(t.cwnd, 10);
        assert!(t.srtt_us > 0, "{t:?}");
        let (_, len) = tcp_info(&c).unwrap();
        assert!(len >= std::mem::offset_of!(libc::tcp_info, tcpi_total_retrans) + 4);
    }
}
