//! Cursors: SSE Last-Event-ID, resuming after a gap, and `missed`.

use crate::util::*;
use chatbench_server::Config;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn sse_resumes_from_last_event_id() {
    let server = Server::start().await;
    let mut http = server.http().await;
    for i in 1..=5 {
        http.publish("res", "a", &format!("m{i}"), i).await;
    }
    // The header wins over `after`, as EventSource reconnects to the same URL.
    let mut sse = Sse::open(
        server.addr,
        "/rooms/res/events?after=0",
        &[("last-event-id", "3")],
    )
    .await;
    let got = sse.messages(2).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5]);
    http.publish("res", "a", "m6", 6).await;
    assert_eq!(sse.messages(1).await[0].seq, 6);
    server.stop().await;
}

#[tokio::test]
async fn every_cursor_resumes_after_a_gap() {
    let server = Server::start().await;
    let mut http = server.http().await;
    for i in 1..=3 {
        http.publish("gap", "a", "x", i).await;
    }
    // Readers that saw seq 1 come back after 2 and 3 were published.
    let p = http.poll("/rooms/gap/messages?after=1").await;
    assert_eq!(
        p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let p = http.poll("/rooms/gap/messages?after=1&wait_ms=1000").await;
    assert_eq!(
        p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let mut sse = Sse::open(server.addr, "/rooms/gap/events?after=1", &[]).await;
    assert_eq!(
        sse.messages(2)
            .await
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    let mut ws = server.ws("/rooms/gap/ws?after=1").await;
    assert_eq!(
        ws_messages(&mut ws, 2)
            .await
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    server.stop().await;
}

#[tokio::test]
async fn missed_counts_messages_that_left_retention() {
    let server = Server::start_with(Config {
        retention: 5,
        ..Config::default()
    })
    .await;
    let mut http = server.http().await;
    for i in 1..=12 {
        http.publish("ret", "a", "x", i).await;
    }
    let p = http.poll("/rooms/ret/messages?after=0").await;
    assert_eq!(p.missed, 7);
    assert_eq!(
        p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![8, 9, 10, 11, 12]
    );
    assert_eq!(p.next, 12);
    let p = http.poll("/rooms/ret/messages?after=5&wait_ms=100").await;
    assert_eq!((p.missed, p.messages[0].seq), (2, 8));
    let p = http.poll("/rooms/ret/messages?after=7").await;
    assert_eq!(p.missed, 0);

    let mut sse = Sse::open(server.addr, "/rooms/ret/events?after=2", &[]).await;
    let ev = sse.next().await.unwrap();
    assert_eq!(ev.event.as_deref(), Some("missed"));
    assert_eq!(ev.data, r#"{"missed":5,"next":7}"#);
    assert_eq!(sse.messages(5).await[0].seq, 8);

    let mut ws = server.ws("/rooms/ret/ws?after=0").await;
    match ws.next().await.unwrap().unwrap() {
        WsMessage::Text(t) => assert_eq!(t.as_str(), r#"{"missed":7,"next":7}"#),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ws_messages(&mut ws, 5).await[0].seq, 8);
    server.stop().await;
}
