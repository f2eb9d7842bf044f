//! The packet-level link (`crates/loadgen/src/packet/`) under the kernel's
//! own TCP: a client socket in the link's namespace reaches a listener in
//! this one only through the forwarder. Needs root; elsewhere each test
//! says why and passes, unless `CHATBENCH_REQUIRE_ROOT=1` (CI, which runs
//! as root) makes a skip a failure.

use chatbench_loadgen::packet::forwarder::{PacketLink, PacketLinkSpec};
use chatbench_loadgen::packet::model::{Capacity, DirectionSpec, Loss, QueueLimit};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why the packet link cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").ok()?);
    let why = if uid != 0 {
        Some("not root: a network namespace and TUN devices need CAP_NET_ADMIN".to_string())
    } else if !std::path::Path::new("/dev/net/tun").exists() {
        Some("no /dev/net/tun".to_string())
    } else {
        None
    };
    crate::util::can_run("CHATBENCH_REQUIRE_ROOT", why.clone());
    why
}

fn direction(delay_ms: u64, loss: Loss) -> DirectionSpec {
    DirectionSpec {
        delay_us: delay_ms * 1000,
        jitter_us: 0,
        reorder: false,
        loss,
        queue: QueueLimit::Unbounded,
        capacity: Capacity::Unlimited,
    }
}

/// A connection from the link's namespace to `addr`.
async fn connect(link: &PacketLink, addr: SocketAddr) -> tokio::net::TcpStream {
    let s = link.client_socket().unwrap();
    s.set_nonblocking(true).unwrap();
    let sock = tokio::net::TcpSocket::from_std_stream(s.into());
    tokio::time::timeout(Duration::from_secs(10), sock.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap()
}

/// (retransmitted segments, segments sent) of a socket, from `TCP_INFO`.
fn retransmits(s: &tokio::net::TcpStream) -> (u64, u64) {
    let (info, _) = chatbench_loadgen::wire::tcp_info(s).expect("TCP_INFO");
    (info.tcpi_total_retrans as u64, info.tcpi_segs_out as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packet_link_delays_each_way_below_tcp() {
    if cannot_run().is_some() {
        return;
    }
    let link = PacketLink::start(PacketLinkSpec {
        up: direction(20, Loss::None),
        down: direction(20, Loss::None),
        seed: 1,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind((link.server_ip(), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, from) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        from
    });
    let t = Instant::now();
    let mut c = connect(&link, addr).await;
    let connect = t.elapsed();
    let t = Instant::now();
    c.write_all(&[7u8; 1000]).await.unwrap();
    let mut back = [0u8; 1000];
    c.read_exact(&mut back).await.unwrap();
    let echo = t.elapsed();
    let from = server.await.unwrap();
    assert_eq!(from.ip(), std::net::IpAddr::V4(link.client_ip()));
    assert_eq!(back, [7u8; 1000]);
    // SYN and SYN-ACK each cross one way: one round trip of 40 ms.
    for (what, d) in [("connect", connect), ("echo", echo)] {
        assert!(
            d >= Duration::from_millis(40) && d < Duration::from_millis(60),
            "{what} took {d:?} over a 40 ms round trip"
        );
    }
    drop(c);
    let report = link.stop().unwrap();
    assert!(
        report.up.delivered >= 3 && report.down.delivered >= 2,
        "{report:?}"
    );
    assert_eq!((report.up.lost, report.down.lost), (0, 0));
}

/// 2% independent loss on the uplink of a bulk transfer: TCP retransmits
/// about 2% of the segments it sends, within a binomial band of four
/// standard deviations (and what the link itself says it lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_on_the_link_makes_tcp_retransmit_its_share() {
    if cannot_run().is_some() {
        return;
    }
    let p = 0.02;
    let link = PacketLink::start(PacketLinkSpec {
        up: direction(5, Loss::Independent(p)),
        down: direction(5, Loss::None),
        seed: 7,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind((link.server_ip(), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let total = 8 << 20;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let r = s.read(&mut buf).await.unwrap();
            if r == 0 {
                break n;
            }
            n += r;
        }
    });
    let mut c = connect(&link, addr).await;
    let chunk = vec![1u8; 1 << 16];
    let sent = tokio::time::timeout(Duration::from_secs(60), async {
        for _ in 0..total / chunk.len() {
            c.write_all(&chunk).await.unwrap();
        }
        c.shutdown().await.unwrap();
        server.await.unwrap()
    })
    .await
    .expect("the transfer took over 60 s");
    assert_eq!(sent, total);
    let (retrans, segs) = retransmits(&c);
    drop(c);
    let report = link.stop().unwrap();
    let mean = segs as f64 * p;
    let sd = (segs as f64 * p * (1.0 - p)).sqrt();
    eprintln!(
        "{segs} segments, {retrans} retransmitted (expected {mean:.0} ± {sd:.0}); the link lost {} of {} packets",
        report.up.lost, report.up.offered
    );
    assert!(
        (retrans as f64 - mean).abs() <= 4.0 * sd + 0.1 * mean,
        "{retrans} retransmissions of {segs} segments at {p} loss"
    );
    let lost_share = report.up.lost as f64 / report.up.offered as f64;
    assert!((lost_share - p).abs() < 0.005, "the link lost {lost_share}");
}

/// A whole run in packet mode, every transport, over a 20 ms round trip
/// without loss and then losing 2% of the packets each way: every message
/// is delivered once and in order, the server wrote exactly the bytes the
/// clients read, run.json names the mode, and TCP's view in run.json shows
/// no retransmission without loss and some with it, from both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_mode_run_with_loss_delivers_every_message() {
    if cannot_run().is_some() {
        return;
    }
    let all = r#""short_poll", "long_poll", "sse", "websocket""#;
    // The drain is the tiny scenario's 500 ms: at 2% loss a publish sent at
    // the end of the window can be held longer by TCP's backed-off timers,
    // and the rooms end only once it has reached the server.
    let toml = crate::util::tiny_toml("packet", all)
        + "\n[network]\nmode = \"packet\"\nrtt = \"20ms\"\n"
        + "\n[sweep]\nparameter = \"network.loss\"\nvalues = [0.0, 0.02]\n";
    let scenario =
        chatbench_loadgen::scenario::Scenario::parse(&toml, std::path::Path::new("packet.toml"))
            .unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = chatbench_loadgen::server::ServerTarget::Spawn {
        exe: env!("CARGO_BIN_EXE_chatbench").into(),
        args: vec!["serve".into()],
        cpus: None,
        log: None,
    };
    let done = chatbench_loadgen::run::run(crate::util::options(scenario, out.path(), target))
        .await
        .unwrap();
    assert_eq!(
        done.file.network_mode.as_deref(),
        Some(chatbench_loadgen::packet::MODE)
    );
    assert_eq!(done.file.runs.len(), 8);
    for r in &done.file.runs {
        let lossy = r.point == 1;
        let a = r.audit;
        assert!(
            a.sent > 0 && a.delivered == a.expected,
            "{} at point {}: {a:?}, complete {}, flags {:?}, errors {:?}, ready {:?}",
            r.transport,
            r.point,
            r.complete,
            r.flags,
            r.errors_by_cause,
            r.ready
        );
        assert_eq!(
            (a.lost, a.duplicated, a.reordered),
            (0, 0, 0),
            "{}",
            r.transport
        );
        let c = r.crosscheck.expect("a spawned server has /metrics");
        assert!(c.bytes_match && c.delivered_match, "{}: {c:?}", r.transport);
        // The link lost packets each way, and its forwarder's CPU is its own.
        let link = r.link.expect("a packet-mode run reports its link");
        assert_eq!(
            link.up.lost > 0 && link.down.lost > 0,
            lossy,
            "{}: {link:?}",
            r.transport
        );
        assert!(link.forwarder_cpu_ms > 0.0, "{link:?}");
        // TCP's view: every client socket and every server socket read
        // as it closed, the server's after it had closed them all.
        let tcp = r.tcp.as_ref().expect("run.json holds TCP's view");
        let server = tcp.server.expect("a spawned server exports its TCP sums");
        assert_eq!(server.still_open, 0, "{}: {server:?}", r.transport);
        assert!(
            tcp.client.sockets >= r.connections && server.sockets >= r.connections,
            "{}: {} connections, {tcp:?}",
            r.transport,
            r.connections
        );
        let retrans = tcp.client.retrans_segs + server.retrans_segs;
        if lossy {
            assert!(
                retrans > 0 && tcp.retrans_per_1k_msgs > 0.0,
                "{}: {tcp:?}",
                r.transport
            );
        } else {
            assert_eq!(
                (retrans, tcp.client.rto.unwrap_or(0), server.rto),
                (0, 0, 0),
                "{}",
                r.transport
            );
        }
        // Over 20 ms the client's round-trip estimate is about 20 ms.
        assert!(
            (15.0..100.0).contains(&tcp.client.srtt_ms_mean),
            "{}: {tcp:?}",
            r.transport
        );
        // A 20 ms round trip under every delivery.
        assert!(
            r.latency_us.p50 >= 10_000,
            "{}: {:?}",
            r.transport,
            r.latency_us
        );
    }
}

/// HTTP/3 over the packet-level link, losing 2% of the packets each way:
/// QUIC retransmits what was lost, every message is delivered once and in
/// order, the server's UDP bytes exceed what the clients read by the
/// datagrams the link dropped on the way down, and the cross-check holds
/// (the clients read no more than the server wrote).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_over_a_lossy_packet_link_delivers_every_message() {
    if cannot_run().is_some() {
        return;
    }
    let toml = crate::util::tiny_toml("packet-h3", r#""long_poll", "sse""#)
        + "\n[network]\nmode = \"packet\"\nrtt = \"20ms\"\nloss = 0.02\n"
        + "\n[protocol]\nhttp = \"3\"\ntls = true\n";
    let scenario =
        chatbench_loadgen::scenario::Scenario::parse(&toml, std::path::Path::new("h3.toml"))
            .unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = crate::util::spawned();
    let done = chatbench_loadgen::run::run(crate::util::options(scenario, out.path(), target))
        .await
        .unwrap();
    assert_eq!(done.file.runs.len(), 2);
    for r in &done.file.runs {
        let a = r.audit;
        assert!(
            a.sent > 0 && a.delivered == a.expected,
            "{}: {a:?}, flags {:?}, errors {:?}",
            r.transport,
            r.flags,
            r.errors_by_cause
        );
        assert_eq!(
            (a.lost, a.duplicated, a.reordered),
            (0, 0, 0),
            "{}",
            r.transport
        );
        let c = r.crosscheck.expect("a spawned server has /metrics");
        assert!(c.bytes_match && c.delivered_match, "{}: {c:?}", r.transport);
        let link = r.link.expect("a packet-mode run reports its link");
        assert!(link.up.lost > 0 && link.down.lost > 0, "{link:?}");
        assert!(
            c.server_bytes_written > c.client_bytes_down,
            "{}: the link dropped datagrams on the way down, {c:?}",
            r.transport
        );
        assert!(
            !r.flags.iter().any(|f| f == "crosscheck_mismatch"),
            "{}: {:?}",
            r.transport,
            r.flags
        );
    }
}
