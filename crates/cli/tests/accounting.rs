//! Byte accounting on a hand-built exchange.

use crate::util::*;
use chatbench_loadgen::dial::Dialer;
use chatbench_loadgen::server::ServerCounters;
use chatbench_loadgen::wire::WireStats;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn one_short_poll_counts_exactly_the_bytes_on_the_socket() {
    let (addr, _stop) = in_process_server().await;
    chatbench_loadgen::server::control(
        addr,
        "POST",
        "/rooms/acct/messages",
        Some(r#"{"from":"a","body":"hi"}"#.into()),
    )
    .await
    .unwrap();
    let before = ServerCounters::scrape(addr).await.unwrap();
    let stats = Arc::new(WireStats::default());
    let mut sock = Dialer::control(addr, stats.clone()).await.unwrap();
    let request =
        b"GET /rooms/acct/messages?after=0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    sock.write_all(request).await.unwrap();
    let mut response = Vec::new();
    sock.read_to_end(&mut response).await.unwrap();
    drop(sock);
    let after = ServerCounters::scrape(addr).await.unwrap();
    let snap = stats.snapshot();
    assert_eq!(snap.bytes_up, request.len() as u64);
    assert_eq!(snap.bytes_down, response.len() as u64);
    let written = after.delta(&before).bytes_written["short_poll"];
    assert_eq!(written, response.len() as u64);
    assert_eq!(snap.connections, 1);
    // TCP_INFO was read at drop: at least the request, the answer and the
    // handshake's segments.
    assert!(snap.segs_out >= 2 && snap.segs_in >= 2, "{snap:?}");
}
