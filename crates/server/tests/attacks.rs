//! Hostile and slow clients, each case with bounded counts and times, and
//! each asserting its bound: RSS against the formula in ARCHITECTURE.md plus
//! a margin, a normal client's latency while the attack runs, exit times,
//! close codes and error bodies. The RSS cases run the real binary, so its
//! memory is its own.

use crate::util::*;
use bytes::Bytes;
use chatbench_server::Config;
use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const MIB: u64 = 1 << 20;

/// `chatbench-server` as a child process on 127.0.0.1:0.
struct Proc {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Proc {
    async fn start(args: &[&str]) -> Proc {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatbench-server"));
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        Proc::spawn(cmd).await
    }

    /// The server under `prlimit --nofile=N:N`.
    async fn start_with_nofile(nofile: u32, args: &[&str]) -> Proc {
        let mut cmd = tokio::process::Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg(env!("CARGO_BIN_EXE_chatbench-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        Proc::spawn(cmd).await
    }

    async fn spawn(mut cmd: tokio::process::Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().unwrap();
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        Proc { child, addr }
    }

    fn rss(&self) -> u64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// SIGTERM, then the time until the process exits.
    async fn terminate(mut self) -> Duration {
        let pid = self.child.id().unwrap();
        let t0 = Instant::now();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server did not exit within 30 s of SIGTERM")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
        t0.elapsed()
    }
}

fn big_body(n: usize) -> String {
    serde_json::json!({"from": "attacker", "body": "x".repeat(n)}).to_string()
}

/// Publishes `count` messages of `size` bytes into `room`.
async fn fill(addr: SocketAddr, room: &str, count: usize, size: usize) {
    let mut h = Http::connect(addr).await;
    let body = big_body(size);
    for _ in 0..count {
        let (s, b) = h.post(&format!("/rooms/{room}/messages"), &body).await;
        assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    }
}

/// A connection that sends `request` and then never reads.
async fn non_reader(addr: SocketAddr, request: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    s
}

/// The slowest of `n` publish-then-poll round trips of a normal client.
async fn probe(addr: SocketAddr, n: usize) -> Duration {
    let mut h = Http::connect(addr).await;
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let t0 = Instant::now();
        let seq = h.publish("probe", "p", "hello", i as u64).await;
        let p = h
            .poll(&format!("/rooms/probe/messages?after={}", seq - 1))
            .await;
        assert_eq!(p.messages.len(), 1);
        worst = worst.max(t0.elapsed());
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_readers_of_a_full_room_cost_a_cursor_not_a_batch() {
    let server = Proc::start(&["--retention", "1000", "--max-memory", "64M"]).await;
    // 200 messages of 60 KB: 12 MB in the room.
    fill(server.addr, "full", 200, 60_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss();
    let mut stuck = Vec::new();
    for _ in 0..20 {
        stuck.push(
            non_reader(
                server.addr,
                "GET /rooms/full/messages?after=0 HTTP/1.1\r\nhost: x\r\n\r\n",
            )
            .await,
        );
        stuck.push(
            non_reader(
                server.addr,
                "GET /rooms/full/events?after=0 HTTP/1.1\r\nhost: x\r\n\r\n",
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let worst = probe(server.addr, 20).await;
    let grown = server.rss().saturating_sub(before);
    eprintln!(
        "figure: 40 non-reading readers of a 12 MB room: RSS +{} KiB, probe worst {worst:?}",
        grown / 1024
    );
    // Each stuck reader holds hyper's write buffer (64 KiB), one piece
    // (16 KiB) and its batch's references (200 × 32 B); 40 of them about
    // 3.5 MB. Copying the batch, as before, cost 12 MB each: 480 MB.
    assert!(
        grown < 16 * MIB,
        "40 non-reading readers grew RSS by {} MB",
        grown / MIB
    );
    assert!(worst < Duration::from_secs(1), "probe took {worst:?}");
    drop(stuck);
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_holds_under_a_publish_flood() {
    let server = Proc::start(&["--max-memory", "8M"]).await;
    let before = server.rss();
    // 1,600 messages of 60 KB over 40 rooms: 96 MB posted into an 8 MB budget.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            for r in 0..10 {
                fill(addr, &format!("flood{w}-{r}"), 40, 60_000).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let grown = server.rss().saturating_sub(before);
    eprintln!(
        "figure: 96 MB posted into an 8 MiB budget: RSS +{} KiB",
        grown / 1024
    );
    let mut h = Http::connect(server.addr).await;
    let (_, _, text) = h.get("/metrics").await;
    let m = parse_metrics(std::str::from_utf8(&text).unwrap());
    let live = m["chatbench_message_bytes"];
    assert!(live <= (8 * MIB) as f64, "message bytes {live}");
    assert_eq!(m["chatbench_message_bytes_limit"], (8 * MIB) as f64);
    let evicted = m["chatbench_messages_evicted_total"];
    assert!(evicted >= 1400.0, "evicted {evicted}");
    // The first room lost its oldest messages, and a reader is told so.
    let p = h.poll("/rooms/flood0-0/messages?after=0").await;
    assert_eq!(p.missed + p.messages.len() as u64, 40);
    assert!(p.missed > 0);
    // Budget plus allocator slack; without a budget this was 96 MB or more.
    assert!(grown < 32 * MIB, "RSS grew by {} MB", grown / MIB);
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_fragmented_messages_are_bounded_by_the_body_limit() {
    let server = Proc::start(&["--body-limit", "65536"]).await;
    let before = server.rss();
    let fragment = |fin: bool, op: OpCode, n: usize| {
        WsMessage::Frame(Frame::message(Bytes::from(vec![b'x'; n]), op, fin))
    };
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/rooms/frag/ws", server.addr))
                .await
                .unwrap();
        ws.send(fragment(false, OpCode::Data(Data::Text), 60_000))
            .await
            .unwrap();
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = server.rss().saturating_sub(before);
    eprintln!(
        "figure: 100 unfinished 60 KB fragmented messages: RSS +{} KiB",
        grown / 1024
    );
    // 100 × (64 KiB message + 1 KiB read + 8 KiB write buffers) ≈ 7.1 MB;
    // the old 1 MiB frame limit allowed 100 MB.
    assert!(grown < 24 * MIB, "RSS grew by {} MB", grown / MIB);
    // Going past the limit closes with 1009.
    let ws = &mut sockets[0];
    ws.send(fragment(false, OpCode::Data(Data::Continue), 10_000))
        .await
        .unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(WsMessage::Close(c)))) => break c,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1009);
    assert!(probe(server.addr, 10).await < Duration::from_secs(1));
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_clients_do_not_hold_shutdown() {
    let server = Proc::start(&["--shutdown-grace", "20s", "--write-stall-timeout", "60s"]).await;
    let mut stuck = Vec::new();
    for _ in 0..10 {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/rooms/busy/ws?after=0", server.addr))
                .await
                .unwrap();
        stuck.push(Box::new(ws) as Box<dyn std::any::Any + Send>);
        stuck.push(Box::new(
            non_reader(
                server.addr,
                "GET /rooms/busy/events?after=0 HTTP/1.1\r\nhost: x\r\n\r\n",
            )
            .await,
        ));
    }
    // Slow POSTs: a head and part of a body that never finishes.
    for _ in 0..5 {
        stuck.push(Box::new(
            non_reader(
                server.addr,
                "POST /rooms/busy/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"from\"",
            )
            .await,
        ));
    }
    // 30 MB into the room: more than loopback buffers hold for each reader.
    fill(server.addr, "busy", 500, 60_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = server.terminate().await;
    eprintln!(
        "figure: shutdown with 10 stuck WebSockets, 10 stuck SSE streams, 5 slow POSTs: {took:?}"
    );
    // The grace period is 20 s; blocked writes fail 250 ms into shutdown.
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    drop(stuck);
}

#[tokio::test]
async fn a_websocket_that_stops_reading_is_closed_after_the_write_stall_timeout() {
    let server = Server::start_with(Config {
        write_stall_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let ws = server.ws("/rooms/stall/ws?after=0").await;
    let _sse = non_reader(
        server.addr,
        "GET /rooms/stall/events?after=0 HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let mut h = server.http().await;
    let body = big_body(60_000);
    for _ in 0..300 {
        let (s, _) = h.post("/rooms/stall/messages", &body).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let m = server.metrics.clone();
    eventually(|| m.write_stalls.get() == 2, "both stalled readers closed").await;
    assert_eq!(m.of(chatbench_server::Label::WebSocket).active.get(), 0);
    assert_eq!(m.of(chatbench_server::Label::Sse).active.get(), 0);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn slow_bodies_get_408() {
    let server = Server::start_with(Config {
        body_read_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(
            non_reader(
                server.addr,
                "POST /rooms/slow/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
            )
            .await,
        );
    }
    let t0 = Instant::now();
    for s in &mut slow {
        // Trickle one more byte; the deadline covers the whole body.
        let _ = s.write_all(b" ").await;
    }
    for mut s in slow {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with(r#"{"error":"the body was not received within 500ms"}"#),
            "{text}"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(3));
    // Nothing was published.
    assert_eq!(
        server
            .http()
            .await
            .poll("/rooms/slow/messages?after=0")
            .await
            .next,
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn rooms_are_created_by_publishes_only_and_idle_ones_expire() {
    let server = Server::start_with(Config {
        max_rooms: 10,
        ..Config::default()
    })
    .await;
    let mut h = server.http().await;
    for i in 0..1000 {
        let (s, _, b) = h.get(&format!("/rooms/nobody{i}/messages")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(&b[..], br#"{"messages":[],"next":0,"missed":0}"#);
    }
    // A bad publish creates nothing either.
    let (s, _) = h.post("/rooms/badjson/messages", "{nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(server.scrape().await["chatbench_rooms"], 0.0);
    // Waiting readers hold a room while they wait; it expires after.
    for i in 0..5 {
        let p = h
            .poll(&format!("/rooms/waiter{i}/messages?wait_ms=10"))
            .await;
        assert_eq!((p.messages.len(), p.next), (0, 0));
    }
    let m = server.metrics.clone();
    let mut http2 = server.http().await;
    let mut rooms = 5.0;
    for _ in 0..40 {
        rooms = parse_metrics(std::str::from_utf8(&http2.get("/metrics").await.2).unwrap())
            ["chatbench_rooms"];
        if rooms == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rooms, 0.0, "idle rooms did not expire");
    for i in 0..10 {
        h.publish(&format!("real{i}"), "a", "b", 1).await;
    }
    let (s, b) = h
        .post("/rooms/onemore/messages", r#"{"from":"a","body":"b"}"#)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(&b[..], br#"{"error":"room limit reached (10 rooms)"}"#);
    drop(m);
    server.stop().await;
}

/// A raw WebSocket: the handshake by hand, then bytes as given.
async fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads frames until a close frame; returns its code.
async fn close_code(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("the server did not close within 5 s")
        .unwrap();
    let mut i = 0;
    while i + 2 <= buf.len() {
        let op = buf[i] & 0x0f;
        let len = (buf[i + 1] & 0x7f) as usize;
        assert!(len < 126, "unexpected long frame");
        if op == 0x8 {
            return u16::from_be_bytes([buf[i + 2], buf[i + 3]]);
        }
        i += 2 + len;
    }
    panic!("no close frame in {buf:?}");
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[tokio::test]
async fn websocket_protocol_violations_get_their_close_codes() {
    let server = Server::start().await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("RSV1 without an extension", masked(0xC1, b"hi"), 1002),
        ("reserved opcode 3", masked(0x83, b"hi"), 1002),
        (
            "invalid UTF-8 in a text frame",
            masked(0x81, &[0xff, 0xfe, 0x41]),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut s = raw_ws(server.addr, "/rooms/proto/ws").await;
        s.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut s).await, code, "{what}");
    }
    assert!(probe(server.addr, 5).await < Duration::from_secs(1));
    server.stop().await;
}

#[tokio::test]
async fn browsers_on_other_origins_cannot_publish_or_subscribe() {
    let server = Server::start_with(Config {
        allow_origins: vec!["http://good.example".into()],
        ..Config::default()
    })
    .await;
    let mut h = server.http().await;
    let json = ("content-type", "application/json");
    let body = Bytes::from_static(br#"{"from":"a","body":"b"}"#);
    // A "simple" cross-origin POST that needs no preflight is refused twice over.
    let (s, _, b) = h
        .request(
            Method::POST,
            "/rooms/o/messages",
            &[("content-type", "text/plain")],
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        &b[..],
        br#"{"error":"a publish must be sent with `Content-Type: application/json`"}"#
    );
    let evil = ("origin", "http://evil.example");
    let (s, _, b) = h
        .request(
            Method::POST,
            "/rooms/o/messages",
            &[json, evil],
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        &b[..],
        br#"{"error":"origin \"http://evil.example\" is not allowed; start the server with --allow-origin http://evil.example to allow it"}"#
    );
    let (s, _, _) = h
        .request(Method::OPTIONS, "/rooms/o/messages", &[evil], Bytes::new())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = h
        .request(
            Method::GET,
            "/rooms/o/ws",
            &[
                evil,
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The allowed origin gets a preflight answer and CORS headers.
    let good = ("origin", "http://good.example");
    let (s, headers, _) = h
        .request(Method::OPTIONS, "/rooms/o/messages", &[good], Bytes::new())
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://good.example"
    );
    assert_eq!(headers["access-control-allow-methods"], "GET, POST");
    let (s, headers, _) = h
        .request(
            Method::POST,
            "/rooms/o/messages",
            &[json, good],
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://good.example"
    );
    // The server's own page is same-origin.
    let own = format!("http://{}", server.addr);
    let (s, headers, _) = h
        .request(
            Method::POST,
            "/rooms/o/messages",
            &[json, ("origin", &own)],
            body,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(headers.get("access-control-allow-origin").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_storm_past_the_open_file_limit_is_answered_not_left_hanging() {
    // 120 descriptors: 50 connections, the refusal pool of 64 and the
    // server's own files do not all fit, so accept meets EMFILE (the server
    // logs "accept failed: Too many open files") and sheds with its spare.
    let server = Proc::start_with_nofile(120, &["--max-connections", "50"]).await;
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(
            non_reader(
                server.addr,
                "GET /rooms/r/messages?wait_ms=60000 HTTP/1.1\r\nhost: x\r\n\r\n",
            )
            .await,
        );
    }
    let mut storm = Vec::new();
    for _ in 0..300 {
        let addr = server.addr;
        storm.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            let _ = s
                .write_all(b"GET /rooms/r/messages HTTP/1.1\r\nhost: x\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await {
                Err(_) => Ok("hung"),
                Ok(Err(_)) => Ok("reset"),
                Ok(Ok(_)) if buf.starts_with(b"HTTP/1.1 503 ") => Ok("503"),
                Ok(Ok(_)) => Ok("closed"),
            }
        }));
    }
    let mut outcomes = std::collections::BTreeMap::new();
    for t in storm {
        let o: std::io::Result<&str> = t.await.unwrap();
        *outcomes.entry(o.unwrap_or("connect failed")).or_insert(0) += 1;
    }
    eprintln!("figure: 300 connects past 50 connections with 120 descriptors: {outcomes:?}");
    assert_eq!(outcomes.get("hung"), None, "{outcomes:?}");
    assert!(
        outcomes.get("503").copied().unwrap_or(0) >= 100,
        "{outcomes:?}"
    );
    // Still serving, once the held long polls have ended: the server frees
    // their slots when it notices the closes, which on a loaded machine
    // took longer than 2.5 s once (CI: the probe's first request was
    // answered by the unsolicited 503 of a full server). Wait for a plain
    // 200, at most 10 s, then time the probe.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answer = String::new();
    while Instant::now() < deadline {
        answer = async {
            let mut s = TcpStream::connect(server.addr).await.ok()?;
            s.write_all(
                b"GET /rooms/probe/messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await
            .ok()?;
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf))
                .await
                .ok()?
                .ok()?;
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
        .await
        .unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "still refused after 10 s: {answer:?}"
    );
    assert!(probe(server.addr, 5).await < Duration::from_secs(1));
    server.terminate().await;
}

#[test]
fn flags_the_server_cannot_honour_are_refused_at_start() {
    for (args, message) in [
        (&["--sse-keepalive", "0s"][..], "must be longer than 0s"),
        (&["--ws-ping-interval", "0s"], "must be longer than 0s"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--max-rooms", "0"], "--max-rooms"),
        (
            &["--max-connections", "1000000"],
            "the open-file limit (RLIMIT_NOFILE) is",
        ),
        (
            &["--max-memory", "1K"],
            "--max-memory 1024 is below twice the body limit",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatbench-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} started listening");
    }
}
