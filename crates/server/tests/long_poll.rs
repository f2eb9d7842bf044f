//! Long polls: hold, answer promptly, time out, cancel cleanly.

use crate::util::*;
use chatbench_server::Label;
use std::time::{Duration, Instant};

#[tokio::test]
async fn holds_until_a_message_arrives_and_answers_promptly() {
    let server = Server::start().await;
    let addr = server.addr;
    let waiter = tokio::spawn(async move {
        let mut http = Http::connect(addr).await;
        let p = http
            .poll("/rooms/hold/messages?after=0&wait_ms=20000")
            .await;
        (p, Instant::now())
    });
    let m = server.metrics.clone();
    eventually(
        || m.of(Label::LongPoll).active.get() == 1,
        "the long poll to be waiting",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "answered before any message existed");
    let mut http = server.http().await;
    http.publish("hold", "a", "wake", 1).await;
    let published = Instant::now();
    let (p, answered) = waiter.await.unwrap();
    assert_eq!(p.messages.len(), 1);
    assert_eq!(p.messages[0].body, "wake");
    assert_eq!(p.next, 1);
    // "Promptly" here means well under the 20 s wait; the figure itself
    // belongs to the benchmarks, not to a test.
    assert!(answered.duration_since(published) < Duration::from_secs(5));
    server.stop().await;
}

#[tokio::test]
async fn answers_empty_after_wait_ms() {
    let server = Server::start().await;
    let mut http = server.http().await;
    http.publish("quiet", "a", "old", 1).await;
    let start = Instant::now();
    let p = http.poll("/rooms/quiet/messages?after=1&wait_ms=300").await;
    let took = start.elapsed();
    assert!(p.messages.is_empty());
    assert_eq!((p.next, p.missed), (1, 0));
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}"
    );
    // wait_ms=0 answers at once, like a short poll.
    let p = http.poll("/rooms/quiet/messages?after=1&wait_ms=0").await;
    assert!(p.messages.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn cancelled_long_polls_leak_nothing() {
    let server = Server::start().await;
    let addr = server.addr;
    let mut waiters = Vec::new();
    for _ in 0..10 {
        waiters.push(tokio::spawn(async move {
            let mut http = Http::connect(addr).await;
            http.poll("/rooms/cancel/messages?wait_ms=60000").await
        }));
    }
    let m = server.metrics.clone();
    eventually(
        || m.of(Label::LongPoll).active.get() == 10,
        "10 long polls waiting",
    )
    .await;
    assert_eq!(m.connections_open.get(), 10);
    for w in &waiters {
        w.abort();
    }
    eventually(
        || m.of(Label::LongPoll).active.get() == 0 && m.connections_open.get() == 0,
        "gauges back to 0 after the clients went away",
    )
    .await;
    server.stop().await;
}
