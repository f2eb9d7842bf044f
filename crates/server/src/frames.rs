//! Framing a batch of messages for HTTP without a copy per connection.
//!
//! A poll answer or an SSE step used to be one buffer holding a copy of the
//! whole batch, which hyper kept until the client read it: one non-reading
//! reader of a full room of 60 KB messages pinned 57 MB. [`BatchFrames`]
//! instead yields the batch a piece at a time, and hyper asks for the next
//! piece only when its write buffer has room. Small messages are copied
//! into pieces of at most [`PIECE`] bytes; a message of [`SHARE_FROM`] bytes
//! or more is handed over as the shared bytes of the room log itself. A
//! reader that stops reading therefore holds its batch's references (shared
//! with the log, and counted by the memory budget), one piece, and what
//! hyper's write buffer took before it stopped (`--max-buf-size`).

use crate::room::{Batch, MessageBytes};
use bytes::{BufMut, Bytes, BytesMut};
use chatbench_proto::Notice;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The largest piece of copied messages.
pub const PIECE: usize = 16 * 1024;

/// Messages at least this long are shared, not copied.
pub const SHARE_FROM: usize = 4 * 1024;

/// How a batch is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A poll answer: `{"messages":[m1,m2,..],"next":N,"missed":K}`.
    Poll,
    /// SSE events: a `missed` event first when the cursor skipped messages,
    /// then `id: <seq>` / `data: <message>` per message.
    Sse,
}

/// The pieces of one framed batch, in order; see the module docs.
#[derive(Debug)]
pub struct BatchFrames {
    framing: Framing,
    messages: std::vec::IntoIter<MessageBytes>,
    /// The seq of the next message.
    seq: u64,
    first: bool,
    tail: Option<Bytes>,
    ready: VecDeque<Bytes>,
    remaining: u64,
}

impl BatchFrames {
    /// Frames `batch`.
    pub fn new(framing: Framing, batch: Batch) -> BatchFrames {
        let n = batch.messages.len() as u64;
        let first_seq = batch.next + 1 - n;
        let mut head = BytesMut::new();
        let mut tail = BytesMut::new();
        let mut len: u64 = batch.messages.iter().map(|m| m.len() as u64).sum();
        match framing {
            Framing::Poll => {
                head.put_slice(b"{\"messages\":[");
                tail.put_slice(b"],\"next\":");
                tail.put_slice(batch.next.to_string().as_bytes());
                tail.put_slice(b",\"missed\":");
                tail.put_slice(batch.missed.to_string().as_bytes());
                tail.put_u8(b'}');
                len += n.saturating_sub(1);
            }
            Framing::Sse => {
                if batch.missed > 0 {
                    let notice = Notice {
                        missed: batch.missed,
                        next: batch.next - n,
                    };
                    head.put_slice(b"event: missed\ndata: ");
                    head.put_slice(&serde_json::to_vec(&notice).unwrap_or_default());
                    head.put_slice(b"\n\n");
                }
                // "id: " + seq + "\ndata: " + message + "\n\n"
                len += (first_seq..first_seq + n)
                    .map(|s| decimal_len(s) + 4 + 7 + 2)
                    .sum::<u64>();
            }
        }
        len += (head.len() + tail.len()) as u64;
        let mut ready = VecDeque::new();
        if !head.is_empty() {
            ready.push_back(head.freeze());
        }
        BatchFrames {
            framing,
            messages: batch.messages.into_iter(),
            seq: first_seq,
            first: true,
            tail: (!tail.is_empty()).then(|| tail.freeze()),
            ready,
            remaining: len,
        }
    }

    /// Bytes not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    fn prefix(&mut self, out: &mut BytesMut) {
        match self.framing {
            Framing::Poll => {
                if !self.first {
                    out.put_u8(b',');
                }
            }
            Framing::Sse => {
                out.put_slice(b"id: ");
                out.put_slice(self.seq.to_string().as_bytes());
                out.put_slice(b"\ndata: ");
            }
        }
        self.first = false;
        self.seq += 1;
    }

    fn suffix(&self, out: &mut BytesMut) {
        if self.framing == Framing::Sse {
            out.put_slice(b"\n\n");
        }
    }

    /// Fills `ready` with the next piece(s); false when nothing is left.
    fn fill(&mut self) -> bool {
        // One allocation: the rest of the batch, up to a piece and a message.
        let cap = (self.remaining as usize).min(PIECE + SHARE_FROM + 64);
        let mut out = BytesMut::with_capacity(cap);
        while out.len() < PIECE {
            let Some(m) = self.messages.next() else {
                if let Some(tail) = self.tail.take() {
                    out.put_slice(&tail);
                }
                break;
            };
            self.prefix(&mut out);
            if m.len() >= SHARE_FROM {
                let shared: Bytes = m.into();
                if !out.is_empty() {
                    self.ready.push_back(out.split().freeze());
                }
                self.ready.push_back(shared);
            } else {
                out.put_slice(m.as_bytes());
            }
            self.suffix(&mut out);
        }
        if !out.is_empty() {
            self.ready.push_back(out.freeze());
        }
        !self.ready.is_empty()
    }
}

impl Iterator for BatchFrames {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.ready.is_empty() && !self.fill() {
            return None;
        }
        let piece = self.ready.pop_front()?;
        self.remaining = self.remaining.saturating_sub(piece.len() as u64);
        Some(piece)
    }
}

fn decimal_len(mut n: u64) -> u64 {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// A response body of one framed batch, with its exact length (so poll
/// answers keep `content-length`, not chunked encoding).
#[derive(Debug)]
pub struct FramesBody(BatchFrames);

impl FramesBody {
    /// The body of `frames`.
    pub fn new(frames: BatchFrames) -> FramesBody {
        FramesBody(frames)
    }
}

impl Body for FramesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.next().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::Rooms;
    use chatbench_proto::{PublishRequest, RoomName};

    /// The whole framed batch in one buffer.
    fn concat(framing: Framing, batch: Batch) -> Bytes {
        let mut out = BytesMut::new();
        for piece in BatchFrames::new(framing, batch) {
            out.put_slice(&piece);
        }
        out.freeze()
    }

    fn batch(sizes: &[usize], after: u64) -> Batch {
        let rooms = Rooms::new(100, 10, 1 << 30);
        let room = RoomName::new("r").unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let body = "y".repeat(n);
            let req = PublishRequest {
                from: format!("c{i}").into(),
                body: body.as_str().into(),
                sent_at: None,
            };
            rooms.publish(&room, &req).unwrap();
        }
        rooms
            .get(&room)
            .map(|l| l.read_after(after, 1000))
            .unwrap_or_default()
    }

    fn check(framing: Framing, b: Batch) -> Bytes {
        let frames = BatchFrames::new(framing, b.clone());
        let declared = frames.remaining();
        let pieces: Vec<Bytes> = frames.collect();
        let whole = concat(framing, b);
        assert_eq!(pieces.iter().map(|p| p.len() as u64).sum::<u64>(), declared);
        assert_eq!(whole.len() as u64, declared);
        assert!(pieces.iter().all(|p| !p.is_empty()));
        whole
    }

    #[test]
    fn poll_framing_matches_the_proto_serializer() {
        for sizes in [
            &[][..],
            &[5],
            &[5, 6, 7],
            &[5, 9000, 7],
            &[9000],
            &[3000; 20],
        ] {
            let b = batch(sizes, 0);
            let expected = chatbench_proto::poll_response_json(
                b.messages.iter().map(|m| m.as_bytes()),
                b.next,
                b.missed,
            );
            assert_eq!(check(Framing::Poll, b), expected, "sizes {sizes:?}");
        }
    }

    #[test]
    fn sse_framing() {
        let b = batch(&[2, 9000, 3], 1);
        let m: Vec<String> = b.messages.iter().map(|m| m.as_str().to_owned()).collect();
        let whole = check(Framing::Sse, b);
        let expected = format!("id: 2\ndata: {}\n\nid: 3\ndata: {}\n\n", m[0], m[1]);
        assert_eq!(String::from_utf8(whole.to_vec()).unwrap(), expected);

        let mut b = batch(&[2, 2], 0);
        b.missed = 5;
        b.next = 12;
        let m: Vec<String> = b.messages.iter().map(|m| m.as_str().to_owned()).collect();
        let whole = check(Framing::Sse, b);
        let expected = format!(
            "event: missed\ndata: {{\"missed\":5,\"next\":10}}\n\nid: 11\ndata: {}\n\nid: 12\ndata: {}\n\n",
            m[0], m[1]
        );
        assert_eq!(String::from_utf8(whole.to_vec()).unwrap(), expected);
    }

    #[test]
    fn large_messages_are_shared_and_pieces_are_bounded() {
        let b = batch(&[100; 400], 0);
        let pieces: Vec<Bytes> = BatchFrames::new(Framing::Poll, b).collect();
        assert!(pieces.len() > 2);
        assert!(pieces.iter().all(|p| p.len() <= PIECE + 200));

        let b = batch(&[60_000; 3], 0);
        let shared: Vec<*const u8> = b.messages.iter().map(|m| m.as_bytes().as_ptr()).collect();
        let pieces: Vec<Bytes> = BatchFrames::new(Framing::Sse, b).collect();
        for ptr in shared {
            assert!(
                pieces.iter().any(|p| p.as_ptr() == ptr),
                "a large message was copied"
            );
        }
    }
}
