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

criterion_group!(benches, parsing, accounting, schedules);
criterion_main!(benches);
