//! The server's per-message hot paths, side by side: publishing into a room
//! log, reading after a cursor, and framing one batch for each transport.
//!
//! `cargo bench -p chatbench-server`. Compare the transports' framing rows
//! with each other within one run (ratios), not against another machine.

use bytes::Bytes;
use chatbench_proto::{poll_response_json, PublishRequest, RoomName};
use chatbench_server::frames::{BatchFrames, Framing};
use chatbench_server::room::Batch;
use chatbench_server::Rooms;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::borrow::Cow;
use std::hint::black_box;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;

const BODY: &str = "The quick brown fox jumps over the lazy dog, then naps for a bit.";

fn request(i: u64) -> PublishRequest<'static> {
    PublishRequest {
        from: Cow::Borrowed("c17"),
        body: Cow::Borrowed(BODY),
        sent_at: Some(1_763_935_200_000_000 + i),
    }
}

/// A room with `n` messages published (retention 10,000, as by default).
/// The budget is the server's default, 1 GiB, which 10,000 messages do not
/// reach.
fn room_with(n: u64) -> (Rooms, std::sync::Arc<chatbench_server::RoomLog>) {
    let rooms = Rooms::new(10_000, 16, 1 << 30);
    let room = rooms
        .get_or_create(&RoomName::new("lobby").unwrap())
        .unwrap();
    for i in 0..n {
        rooms.publish_in(&room, &request(i)).unwrap();
    }
    (rooms, room)
}

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("room_log");
    g.throughput(Throughput::Elements(1));
    // A full log, so each publish also evicts the oldest message.
    let (rooms, room) = room_with(10_000);
    let mut i = 0;
    g.bench_function("publish (serialize once, evict oldest)", |b| {
        b.iter(|| {
            i += 1;
            black_box(rooms.publish_in(&room, black_box(&request(i))))
        })
    });
    for n in [1u64, 10, 100] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("read_after, {n} new messages"), |b| {
            b.iter(|| black_box(room.read_after(black_box(10_000 - n), 1000)))
        });
    }
    g.finish();
}

/// Framing the same 10 messages as each transport puts them on the wire.
fn framing(c: &mut Criterion) {
    let (_rooms, room) = room_with(10);
    let batch: Batch = room.read_after(0, 1000);
    assert_eq!(batch.messages.len(), 10);
    let mut g = c.benchmark_group("frame 10 messages");
    g.throughput(Throughput::Elements(10));
    g.bench_function("short/long poll: JSON body", |b| {
        b.iter(|| {
            black_box(poll_response_json(
                batch.messages.iter().map(|m| m.as_bytes()),
                batch.next,
                batch.missed,
            ))
        })
    });
    g.bench_function("short/long poll: pieces, as served", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| BatchFrames::new(Framing::Poll, batch).for_each(|p| drop(black_box(p))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("sse: id/data events, as served", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| BatchFrames::new(Framing::Sse, batch).for_each(|p| drop(black_box(p))),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("websocket: one text frame each", |b| {
        b.iter_batched(
            || Vec::with_capacity(4096),
            |mut out: Vec<u8>| {
                for m in &batch.messages {
                    let bytes: Bytes = m.clone().into();
                    Frame::message(bytes, OpCode::Data(Data::Text), true)
                        .format(&mut out)
                        .unwrap();
                }
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, publish, framing);
criterion_main!(benches);
