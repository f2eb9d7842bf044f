//! Each transport alone, then all four at once on one room.

use crate::util::*;
use futures_util::SinkExt;

fn check(m: &Msg, seq: u64, room: &str, from: &str, body: &str, sent_at: u64) {
    assert_eq!(
        (
            m.seq,
            m.room.as_str(),
            m.from.as_str(),
            m.body.as_str(),
            m.sent_at
        ),
        (seq, room, from, body, Some(sent_at))
    );
    // server_at is "now" in µs since the epoch: after 2020, before 2100.
    assert!(m.server_at > 1_577_836_800_000_000 && m.server_at < 4_102_444_800_000_000);
}

#[tokio::test]
async fn short_poll_delivers_what_was_published() {
    let server = Server::start().await;
    let mut http = server.http().await;
    let empty = http.poll("/rooms/sp/messages").await;
    assert_eq!((empty.messages.len(), empty.next, empty.missed), (0, 0, 0));
    assert_eq!(http.publish("sp", "alice", "hello \"world\"", 11).await, 1);
    assert_eq!(http.publish("sp", "bob", "ünïcödé ✓", 12).await, 2);
    let p = http.poll("/rooms/sp/messages?after=0").await;
    assert_eq!(p.messages.len(), 2);
    check(&p.messages[0], 1, "sp", "alice", "hello \"world\"", 11);
    check(&p.messages[1], 2, "sp", "bob", "ünïcödé ✓", 12);
    assert_eq!((p.next, p.missed), (2, 0));
    let p = http.poll("/rooms/sp/messages?after=1&limit=5").await;
    assert_eq!(p.messages.len(), 1);
    assert_eq!(p.messages[0].seq, 2);
    // Without `after` the cursor starts at the head.
    let p = http.poll("/rooms/sp/messages").await;
    assert_eq!((p.messages.len(), p.next), (0, 2));
    let p = http.poll("/rooms/sp/messages?after=0&limit=1").await;
    assert_eq!((p.messages.len(), p.next), (1, 1));
    server.stop().await;
}

#[tokio::test]
async fn long_poll_delivers_what_was_published() {
    let server = Server::start().await;
    let mut http = server.http().await;
    http.publish("lp", "alice", "one", 1).await;
    let p = http.poll("/rooms/lp/messages?after=0&wait_ms=5000").await;
    assert_eq!(p.messages.len(), 1);
    check(&p.messages[0], 1, "lp", "alice", "one", 1);
    server.stop().await;
}

#[tokio::test]
async fn sse_delivers_what_was_published() {
    let server = Server::start().await;
    let mut sse = Sse::open(server.addr, "/rooms/ev/events?after=0", &[]).await;
    let mut http = server.http().await;
    http.publish("ev", "alice", "line one\nline two", 7).await;
    http.publish("ev", "bob", "two", 8).await;
    let got = sse.messages(2).await;
    check(&got[0], 1, "ev", "alice", "line one\nline two", 7);
    check(&got[1], 2, "ev", "bob", "two", 8);
    server.stop().await;
}

#[tokio::test]
async fn websocket_delivers_and_publishes() {
    let server = Server::start().await;
    let mut ws = server.ws("/rooms/w/ws?after=0").await;
    ws.send(publish_frame("alice", "over ws", 21))
        .await
        .unwrap();
    let mut http = server.http().await;
    http.publish("w", "bob", "over post", 22).await;
    let got = ws_messages(&mut ws, 2).await;
    check(&got[0], 1, "w", "alice", "over ws", 21);
    check(&got[1], 2, "w", "bob", "over post", 22);
    // What the WebSocket published is in the same log the polls read.
    let p = http.poll("/rooms/w/messages?after=0").await;
    assert_eq!(p.messages, got);
    server.stop().await;
}

#[tokio::test]
async fn all_four_transports_see_the_identical_sequence() {
    const N: u64 = 300;
    let server = Server::start().await;
    let addr = server.addr;
    let room = "mix";

    // Receivers first, all from the start of the room.
    let short = tokio::spawn(async move {
        let mut http = Http::connect(addr).await;
        let (mut after, mut out) = (0, Vec::new());
        for _ in 0..2000 {
            if out.len() as u64 >= N {
                break;
            }
            let p = http
                .poll(&format!("/rooms/{room}/messages?after={after}"))
                .await;
            assert_eq!(p.missed, 0);
            after = p.next;
            out.extend(p.messages);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        out
    });
    let long = tokio::spawn(async move {
        let mut http = Http::connect(addr).await;
        let (mut after, mut out) = (0, Vec::new());
        while (out.len() as u64) < N {
            let p = http
                .poll(&format!(
                    "/rooms/{room}/messages?after={after}&wait_ms=10000&limit=7"
                ))
                .await;
            after = p.next;
            out.extend(p.messages);
        }
        out
    });
    let mut sse = Sse::open(addr, &format!("/rooms/{room}/events?after=0"), &[]).await;
    let sse = tokio::spawn(async move { sse.messages(N as usize).await });
    let mut ws_rx = server.ws(&format!("/rooms/{room}/ws?after=0")).await;
    let ws_rx = tokio::spawn(async move { ws_messages(&mut ws_rx, N as usize).await });

    // Senders: two over POST, two over WebSocket, interleaved.
    let mut senders = Vec::new();
    for s in 0..4u64 {
        let mut ws = server.ws(&format!("/rooms/{room}/ws?after=0")).await;
        senders.push(tokio::spawn(async move {
            let mut http = Http::connect(addr).await;
            let from = format!("s{s}");
            for i in 0..N / 4 {
                let body = format!("m{i}");
                if s % 2 == 0 {
                    http.publish(room, &from, &body, s * 1000 + i).await;
                } else {
                    ws.send(publish_frame(&from, &body, s * 1000 + i))
                        .await
                        .unwrap();
                }
            }
            // Read until our own last message comes back, then close
            // cleanly: dropping a socket with unread data resets it, and a
            // reset discards frames the server has not read yet.
            let last = s * 1000 + N / 4 - 1;
            loop {
                let m = ws_messages(&mut ws, 1).await.remove(0);
                if m.from == from && m.sent_at == Some(last) {
                    break;
                }
            }
            ws.close(None).await.unwrap();
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let results = [
        short.await.unwrap(),
        long.await.unwrap(),
        sse.await.unwrap(),
        ws_rx.await.unwrap(),
    ];
    let seqs: Vec<u64> = results[0].iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "gap-free, ordered");
    for (name, r) in ["long_poll", "sse", "websocket"].iter().zip(&results[1..]) {
        assert_eq!(r, &results[0], "{name} differs from short_poll");
    }
    // Each sender's messages arrive in the order it sent them.
    for s in 0..4u64 {
        let mine: Vec<u64> = results[0]
            .iter()
            .filter(|m| m.from == format!("s{s}"))
            .map(|m| m.sent_at.unwrap())
            .collect();
        assert_eq!(mine, (0..N / 4).map(|i| s * 1000 + i).collect::<Vec<_>>());
    }
    let m = server.scrape().await;
    assert_eq!(
        metric(&m, "messages_published_total", "publish"),
        (N / 2) as f64
    );
    assert_eq!(
        metric(&m, "messages_published_total", "websocket"),
        (N / 2) as f64
    );
    for t in ["short_poll", "long_poll", "sse"] {
        assert_eq!(metric(&m, "messages_delivered_total", t), N as f64, "{t}");
    }
    // The WebSocket senders are subscribers too and read part of the room.
    assert!(metric(&m, "messages_delivered_total", "websocket") >= N as f64);
    server.stop().await;
}
