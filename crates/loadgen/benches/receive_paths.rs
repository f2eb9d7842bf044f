//! The load generator's per-message work, which decides when it saturates:
//! parsing what each transport delivers, the delivery audit and latency
//! recording, and precomputing send schedules. Bytes are parsed with
//! `serde_json::from_slice`, as the clients do.
//!
//! `cargo bench -p chatbench-loadgen`. Read the transports' rows as ratios
//! within one run.

use chatbench_loadgen::client::SseParser;
use chatbench_loadgen::record::{Delivery, Parts, Recorder, SeqTracker};
use chatbench_loadgen::scenario::{Arrival, Messages};
use chatbench_loadgen::ws;
use chatbench_loadgen::SendSchedule;
use chatbench_proto::{Message, PollResponse};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// One message as the server serializes it (64-byte body).
fn message_json(seq: u64) -> String {
    format!(
        r#"{{"seq":{seq},"room":"cbq1-r3","from":"c17","body":"The quick brown fox jumps over the lazy dog, then naps for a bit.","sent_at":{},"server_at":1763935200123456}}"#,
        1_000_000 + seq
    )
}

fn parsing(c: &mut Criterion) {
    let msgs: Vec<String> = (1..=10).map(message_json).collect();
    let poll_body = format!(
        r#"{{"messages":[{}],"next":10,"missed":0}}"#,
        msgs.join(",")
    );
    let sse_stream: String = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| format!("id: {}\ndata: {m}\n\n", i + 1))
        .collect();
    let mut g = c.benchmark_group("parse 10 messages");
    g.throughput(Throughput::Elements(10));
    g.bench_function("poll: one JSON body", |b| {
        b.iter(|| {
            let r: PollResponse<'_> =
                serde_json::from_slice(black_box(poll_body.as_bytes())).unwrap();
            black_box(r.messages.len())
        })
    });
    g.bench_function("sse: events, then JSON each", |b| {
        let mut p = SseParser::default();
        b.iter(|| {
            let mut n = 0;
            p.feed(black_box(sse_stream.as_bytes()), |e| {
                let m: Message<'_> = serde_json::from_slice(e.data).unwrap();
                n += m.seq;
            });
            black_box(n)
        })
    });
    g.bench_function("websocket: JSON per text frame", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in &msgs {
                let m: Message<'_> = serde_json::from_slice(black_box(m.as_bytes())).unwrap();
                n += m.seq;
            }
            black_box(n)
        })
    });
    g.finish();
}

/// A socket that returns one prepared chunk per read, as a client's
/// socket does when each message arrives on its own.
struct OneChunkPerRead<'a>(std::slice::Iter<'a, Vec<u8>>);

impl tokio::io::AsyncRead for OneChunkPerRead<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(chunk) = self.0.next() {
            buf.put_slice(chunk);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// What the hand-written WebSocket reader (`ws.rs`) saves against
/// tokio-tungstenite on the same bytes: 10 server text frames arriving one
/// per read, each parsed as JSON, through each one's async reading path.
fn websocket_framing(c: &mut Criterion) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    let wire: Vec<Vec<u8>> = (1..=10)
        .map(|seq| {
            let m = message_json(seq);
            let mut frame = vec![0x81, 126];
            frame.extend_from_slice(&(m.len() as u16).to_be_bytes());
            frame.extend_from_slice(m.as_bytes());
            frame
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("websocket: 10 frames, then JSON each");
    g.throughput(Throughput::Elements(10));
    g.bench_function("ws::WsReader (hand-written)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut r = ws::WsReader::new(
                    OneChunkPerRead(black_box(&wire).iter()),
                    bytes::BytesMut::new(),
                );
                let mut n = 0;
                while let Some(ws::Frame::Text(t)) = r.next().await.unwrap() {
                    n += serde_json::from_slice::<Message<'_>>(&t).unwrap().seq;
                }
                black_box(n)
            })
        })
    });
    g.bench_function("tokio-tungstenite (2 KiB read buffer)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let io =
                    tokio::io::join(OneChunkPerRead(black_box(&wire).iter()), tokio::io::sink());
                let config = WebSocketConfig::default().read_buffer_size(2 * 1024);
                let mut s = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    io,
                    Role::Client,
                    Some(config),
                )
                .await;
                let mut n = 0;
                while let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) =
                    s.next().await
                {
                    n += serde_json::from_slice::<Message<'_>>(t.as_bytes())
                        .unwrap()
                        .seq;
                }
                black_box(n)
            })
        })
    });
    g.finish();
}

/// The hand-written SSE parser beside eventsource-stream on the same
/// stream: 10 events arriving one per read, each parsed as JSON.
fn sse_parsing(c: &mut Criterion) {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let chunks: Vec<bytes::Bytes> = (1..=10)
        .map(|seq| format!("id: {seq}\ndata: {}\n\n", message_json(seq)).into())
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("sse: 10 events one per read, then JSON each");
    g.throughput(Throughput::Elements(10));
    g.bench_function("SseParser (hand-written)", |b| {
        let mut p = SseParser::default();
        b.iter(|| {
            let mut n = 0;
            for chunk in black_box(&chunks) {
                p.feed(chunk, |e| {
                    n += serde_json::from_slice::<Message<'_>>(e.data).unwrap().seq;
                });
            }
            black_box(n)
        })
    });
    g.bench_function("eventsource-stream", |b| {
        b.iter(|| {
            rt.block_on(async {
                let reads = futures_util::stream::iter(
                    black_box(&chunks)
                        .iter()
                        .map(|c| Ok::<_, std::convert::Infallible>(c.clone())),
                );
                let mut events = reads.eventsource();
                let mut n = 0;
                while let Some(Ok(e)) = events.next().await {
                    n += serde_json::from_str::<Message<'_>>(&e.data).unwrap().seq;
                }
                black_box(n)
            })
        })
    });
    g.finish();
}

fn accounting(c: &mut Criterion) {
    let mut g = c.benchmark_group("per delivered message");
    g.throughput(Throughput::Elements(1));
    let rec = Recorder::new(16);
    let mut us = 0u64;
    g.bench_function(
        "Recorder::delivery (latency, timeline, breakdown, receive time)",
        |b| {
            b.iter(|| {
                us = (us + 7919) % 2_000_000;
                let second = (us / 100_000) as usize;
                rec.delivery(
                    black_box(us % 64),
                    &Delivery {
                        latency: 1 + us,
                        sent_second: second,
                        received_second: second,
                        measured: true,
                        parts: Parts::split(0, us / 2, None, 1 + us),
                        receive: Some(3),
                    },
                )
            })
        },
    );
    let mut seqs = SeqTracker::starting_at(1);
    let mut seq = 0u64;
    g.bench_function("SeqTracker::see, in order", |b| {
        b.iter(|| {
            seq += 1;
            black_box(seqs.see(black_box(seq)))
        })
    });
    g.finish();
}

fn schedules(c: &mut Criterion) {
    let m = Messages {
        rate: 2.0,
        arrival: Arrival::Poisson,
        burst_size: 1,
        body_bytes: 64,
    };
    let mut g = c.benchmark_group("send schedule");
    g.throughput(Throughput::Elements(120));
    g.bench_function("poisson, 2 msg/s for 60 s", |b| {
        b.iter(|| SendSchedule::new(black_box(42), 3, &m, Duration::from_secs(60)).count())
    });
    g.finish();
}

criterion_group!(
    benches,
    parsing,
    websocket_framing,
    sse_parsing,
    accounting,
    schedules
);
criterion_main!(benches);
