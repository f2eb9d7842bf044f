//! Metrics, limits, keep-alive, the page, and shutdown with clients connected.

use crate::util::*;
use chatbench_server::{Config, Label};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn metrics_match_what_the_clients_did() {
    let server = Server::start().await;
    let mut h = server.http().await;
    for i in 0..3 {
        h.publish("met", "a", "x", i).await;
    }
    let mut ws = server.ws("/rooms/met/ws?after=0").await;
    ws.send(publish_frame("b", "y", 9)).await.unwrap();
    ws_messages(&mut ws, 4).await;
    let p = h.poll("/rooms/met/messages?after=0").await;
    assert_eq!(p.messages.len(), 4);
    h.poll("/rooms/met/messages?after=4").await; // an empty short poll
    let p = h.poll("/rooms/met/messages?after=2&wait_ms=1000").await;
    assert_eq!(p.messages.len(), 2);
    let mut sse = Sse::open(server.addr, "/rooms/met/events?after=1", &[]).await;
    sse.messages(3).await;

    let m = server.scrape().await;
    assert_eq!(metric(&m, "requests_total", "publish"), 3.0);
    assert_eq!(metric(&m, "requests_total", "short_poll"), 2.0);
    assert_eq!(metric(&m, "requests_total", "long_poll"), 1.0);
    assert_eq!(metric(&m, "requests_total", "sse"), 1.0);
    assert_eq!(metric(&m, "requests_total", "websocket"), 1.0);
    assert_eq!(metric(&m, "messages_published_total", "publish"), 3.0);
    assert_eq!(metric(&m, "messages_published_total", "websocket"), 1.0);
    assert_eq!(metric(&m, "messages_delivered_total", "short_poll"), 4.0);
    assert_eq!(metric(&m, "messages_delivered_total", "long_poll"), 2.0);
    assert_eq!(metric(&m, "messages_delivered_total", "sse"), 3.0);
    // The process's own figures, as Prometheus' process collector names
    // them: this test process is the server (threads and open files
    // included), a few MiB, and some CPU spent.
    assert!(m["process_cpu_seconds_total"] > 0.0, "{m:?}");
    assert!(m["process_resident_memory_bytes"] > 1_048_576.0, "{m:?}");
    assert!(
        m["process_threads"] >= 1.0 && m["process_open_fds"] >= 3.0,
        "{m:?}"
    );
    assert_eq!(metric(&m, "messages_delivered_total", "websocket"), 4.0);
    assert_eq!(metric(&m, "active", "sse"), 1.0);
    assert_eq!(metric(&m, "active", "websocket"), 1.0);
    assert_eq!(m["chatbench_connections_open"], 4.0); // h, ws, sse, the scrape
    assert_eq!(m["chatbench_rooms"], 1.0);
    for t in ["short_poll", "long_poll", "sse", "websocket", "publish"] {
        assert!(metric(&m, "bytes_written_total", t) > 0.0, "{t}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bytes_written_equal_the_bytes_a_raw_client_reads() {
    let server = Server::start().await;
    server.http().await.publish("raw", "a", "hello", 1).await;
    let before = server.metrics.of(Label::ShortPoll).bytes_written.get();
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"GET /rooms/raw/messages?after=0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let after = server.metrics.of(Label::ShortPoll).bytes_written.get();
    assert_eq!(after - before, buf.len() as u64);
    server.stop().await;
}

/// Each socket the server closes adds its `TCP_INFO` to its label's sums:
/// one socket, and on loopback no retransmission.
#[tokio::test]
async fn closed_sockets_add_tcp_info_to_their_label() {
    let server = Server::start().await;
    server.http().await.publish("tcpi", "a", "hello", 1).await;
    let tcp = || server.metrics.of(Label::ShortPoll).tcp.clone();
    let before = (
        tcp().sockets.get(),
        tcp().retrans_segs.get(),
        tcp().rto.get(),
    );
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"GET /rooms/tcpi/messages?after=0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    // The server closed it, and its task drops the socket right after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tcp().sockets.get() == before.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        (
            tcp().sockets.get(),
            tcp().retrans_segs.get(),
            tcp().rto.get()
        ),
        (before.0 + 1, before.1, before.2)
    );
    let m = server.scrape().await;
    assert_eq!(
        metric(&m, "tcp_sockets_closed_total", "short_poll"),
        (before.0 + 1) as f64
    );
    assert_eq!(
        metric(&m, "tcp_retransmitted_segments_total", "short_poll"),
        0.0
    );
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start().await;
    let mut h = server.http().await;
    for i in 0..20 {
        h.publish("ka", "a", "x", i).await;
    }
    assert_eq!(
        h.poll("/rooms/ka/messages?after=0").await.messages.len(),
        20
    );
    assert_eq!(server.metrics.connections_accepted.get(), 1);
    server.stop().await;
}

#[tokio::test]
async fn page_healthz_and_content_types() {
    let server = Server::start().await;
    let mut h = server.http().await;
    let (s, headers, body) = h.get("/").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let page = String::from_utf8(body.to_vec()).unwrap();
    for needle in ["EventSource", "new WebSocket", "fetch(", "wait_ms"] {
        assert!(page.contains(needle), "page lacks {needle}");
    }
    let (s, _, body) = h.get("/healthz").await;
    assert_eq!((s, &body[..]), (StatusCode::OK, &b"ok"[..]));
    // /time is the server's CLOCK_REALTIME in µs, between our two stamps.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let before = now();
    let (s, headers, body) = h.get("/time").await;
    let after = now();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let t = v["now_us"].as_u64().unwrap();
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    let (s, _, _) = h
        .request(http::Method::POST, "/time", &[], bytes::Bytes::new())
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    server.stop().await;
}

/// One request on a fresh connection; the whole answer as text.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn connection_limit_answers_503_but_health_and_metrics_still_answer() {
    let server = Server::start_with(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let _a = server.http().await;
    let _b = server.http().await;
    let m = server.metrics.clone();
    eventually(|| m.connections_open.get() == 2, "2 connections open").await;
    let text = raw(
        server.addr,
        "GET /rooms/r/messages HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nretry-after: 1\r\n"), "{text}");
    assert!(
        text.ends_with(r#"{"error":"connection limit reached (2 connections)"}"#),
        "{text}"
    );
    assert_eq!(m.connections_rejected.get(), 1);
    // The operator's view survives the limit.
    let text = raw(server.addr, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
    let text = raw(server.addr, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("\nchatbench_connections_rejected_total 3\n"),
        "{text}"
    );
    assert!(text.contains("\nchatbench_connections_open 2\n"), "{text}");
    assert_eq!(m.connections_rejected.get(), 3);
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server = Server::start_with(Config {
        idle_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("idle connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(start.elapsed() >= Duration::from_millis(300));
    server.stop().await;
}

#[tokio::test]
async fn sse_sends_keep_alive_comments() {
    let server = Server::start_with(Config {
        sse_keepalive: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let mut sse = Sse::open(server.addr, "/rooms/kal/events", &[]).await;
    let mut h = server.http().await;
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(450)).await;
        h.publish("kal", "a", "after keep-alives", 1).await;
    });
    let got = sse.messages(1).await;
    assert_eq!(got[0].body, "after keep-alives");
    assert!(
        sse.comments >= 2,
        "saw {} keep-alive comments",
        sse.comments
    );
    sender.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn websocket_pings() {
    let server = Server::start_with(Config {
        ws_ping_interval: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let mut ws = server.ws("/rooms/ping/ws").await;
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(frame, WsMessage::Ping(_)), "{frame:?}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_completes_with_clients_connected() {
    let server = Server::start().await;
    let addr = server.addr;
    let long = tokio::spawn(async move {
        let mut h = Http::connect(addr).await;
        h.poll("/rooms/down/messages?wait_ms=60000").await
    });
    let mut sse = Sse::open(addr, "/rooms/down/events", &[]).await;
    let mut ws = server.ws("/rooms/down/ws").await;
    let _idle = server.http().await;
    let m = server.metrics.clone();
    eventually(
        || {
            m.of(Label::LongPoll).active.get() == 1
                && m.of(Label::Sse).active.get() == 1
                && m.of(Label::WebSocket).active.get() == 1
        },
        "all clients connected",
    )
    .await;
    let start = Instant::now();
    server.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    // The long poll was answered, empty.
    let p = long.await.unwrap();
    assert!(p.messages.is_empty());
    // The SSE stream ended.
    assert_eq!(sse.next().await, None);
    // The WebSocket got a proper close frame.
    match ws.next().await {
        Some(Ok(WsMessage::Close(Some(f)))) => {
            assert_eq!(f.code, CloseCode::Away);
            assert_eq!(f.reason.as_str(), "server shutting down");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(m.connections_open.get(), 0);
}

#[tokio::test]
async fn the_listen_backlog_holds_a_connect_storm() {
    // Nobody accepts: every connect that completes sits in the backlog. With
    // a backlog of 128 (or tokio's 1024), connects past it had their SYNs dropped and
    // waited a second or more for a retransmit.
    let listener = chatbench_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(chatbench_server::listen_backlog() >= 2000);
    let started = Instant::now();
    let mut conns = Vec::new();
    // More than tokio's default backlog of 1024.
    for _ in 0..2000 {
        let c = tokio::time::timeout(
            Duration::from_millis(900),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .expect("a connect waited on a SYN retransmit: the backlog overflowed")
        .unwrap();
        conns.push(c);
    }
    assert_eq!(conns.len(), 2000);
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(listener);
}
