//! The room log: the only store of messages.
//!
//! Every transport reads a room through a cursor (`after`), so none of them
//! keeps a queue of its own. A [`RoomLog`] assigns gap-free sequence numbers,
//! serializes each message once, keeps the last `retention` messages and
//! wakes waiters through a `watch` channel that carries the head sequence.

use chatbench_proto::{MessageJson, PublishRequest, RoomName};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A message's one serialization. `Utf8Bytes` is a reference-counted `Bytes`
/// known to be UTF-8, so WebSocket text frames, SSE events and poll answers
/// all share it without copying or re-validating.
pub type MessageBytes = Utf8Bytes;

/// The log of one room.
#[derive(Debug)]
pub struct RoomLog {
    name: RoomName,
    retention: usize,
    // A std Mutex: the critical sections are short and never await.
    state: Mutex<LogState>,
    head: watch::Sender<u64>,
}

#[derive(Debug)]
struct LogState {
    /// Sequence number of `messages[0]` (or of the next message when empty).
    first_seq: u64,
    messages: VecDeque<MessageBytes>,
}

/// What a cursor read returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Messages after the cursor, oldest first.
    pub messages: Vec<MessageBytes>,
    /// The cursor to continue from.
    pub next: u64,
    /// Messages the cursor skipped because they left retention.
    pub missed: u64,
}

impl Batch {
    /// True when there is nothing to tell the reader.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.missed == 0
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl RoomLog {
    fn new(name: RoomName, retention: usize) -> RoomLog {
        RoomLog {
            name,
            retention: retention.max(1),
            state: Mutex::new(LogState {
                first_seq: 1,
                messages: VecDeque::new(),
            }),
            head: watch::Sender::new(0),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// Appends a message and wakes every waiter; returns its sequence number.
    pub fn publish(&self, req: &PublishRequest<'_>) -> u64 {
        // Encode the sender's fields outside the lock; only seq and time inside.
        let json = MessageJson::new(self.name.as_str(), req);
        let seq = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = st.first_seq + st.messages.len() as u64;
            st.messages
                .push_back(Utf8Bytes::from(json.finish(seq, now_micros())));
            if st.messages.len() > self.retention {
                st.messages.pop_front();
                st.first_seq += 1;
            }
            seq
        };
        self.head.send_replace(seq);
        seq
    }

    /// The sequence number of the newest message (0 when none).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that sees the head sequence change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Up to `limit` messages with `seq > after`.
    pub fn read_after(&self, after: u64, limit: usize) -> Batch {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let head = st.first_seq + st.messages.len() as u64 - 1;
        if after >= head {
            return Batch {
                messages: Vec::new(),
                next: after,
                missed: 0,
            };
        }
        let start = (after + 1).max(st.first_seq);
        let missed = start - (after + 1);
        let skip = (start - st.first_seq) as usize;
        // `range`, not `iter().skip()`: skipping walks the deque element by
        // element, which cost 31 µs per read on a full 10,000-message log.
        let end = skip.saturating_add(limit.max(1)).min(st.messages.len());
        let messages: Vec<MessageBytes> = st.messages.range(skip..end).cloned().collect();
        Batch {
            next: start + messages.len() as u64 - 1,
            messages,
            missed,
        }
    }
}

/// Every room of a server, created on first use.
#[derive(Debug)]
pub struct Rooms {
    retention: usize,
    max_rooms: usize,
    map: RwLock<HashMap<RoomName, Arc<RoomLog>>>,
}

/// The room limit was reached.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("room limit reached ({0} rooms)")]
pub struct RoomLimit(pub usize);

impl Rooms {
    /// An empty registry whose rooms keep `retention` messages.
    pub fn new(retention: usize, max_rooms: usize) -> Rooms {
        Rooms {
            retention,
            max_rooms,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The room called `name`, created if it does not exist yet.
    pub fn get_or_create(&self, name: &RoomName) -> Result<Arc<RoomLog>, RoomLimit> {
        if let Some(log) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(log.clone());
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(log) = map.get(name) {
            return Ok(log.clone());
        }
        if map.len() >= self.max_rooms {
            return Err(RoomLimit(self.max_rooms));
        }
        let log = Arc::new(RoomLog::new(name.clone(), self.retention));
        map.insert(name.clone(), log.clone());
        Ok(log)
    }

    /// How many rooms exist.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no room exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> PublishRequest<'_> {
        PublishRequest {
            from: "t".into(),
            body: body.into(),
            sent_at: None,
        }
    }

    fn seqs(b: &Batch) -> Vec<u64> {
        b.messages
            .iter()
            .map(|m| {
                serde_json::from_str::<chatbench_proto::Message<'_>>(m.as_str())
                    .unwrap()
                    .seq
            })
            .collect()
    }

    #[test]
    fn seq_starts_at_one_without_gaps() {
        let log = RoomLog::new(RoomName::new("r").unwrap(), 100);
        assert_eq!(log.head(), 0);
        assert_eq!(log.read_after(0, 10), Batch::default());
        for i in 1..=5 {
            assert_eq!(log.publish(&req("x")), i);
        }
        assert_eq!(log.head(), 5);
        let b = log.read_after(0, 10);
        assert_eq!(seqs(&b), vec![1, 2, 3, 4, 5]);
        assert_eq!((b.next, b.missed), (5, 0));
        let b = log.read_after(2, 2);
        assert_eq!(seqs(&b), vec![3, 4]);
        assert_eq!(b.next, 4);
        let b = log.read_after(5, 10);
        assert!(b.is_empty());
        assert_eq!(b.next, 5);
        // A cursor from the future waits for that sequence number.
        assert_eq!(log.read_after(9, 10).next, 9);
    }

    #[test]
    fn retention_reports_missed() {
        let log = RoomLog::new(RoomName::new("r").unwrap(), 3);
        for _ in 0..10 {
            log.publish(&req("x"));
        }
        let b = log.read_after(0, 100);
        assert_eq!(seqs(&b), vec![8, 9, 10]);
        assert_eq!((b.next, b.missed), (10, 7));
        let b = log.read_after(6, 1);
        assert_eq!(seqs(&b), vec![8]);
        assert_eq!((b.next, b.missed), (8, 1));
        let b = log.read_after(7, 100);
        assert_eq!(b.missed, 0);
        // Inside the retained window, with a limit past its end.
        let b = log.read_after(8, 100);
        assert_eq!(seqs(&b), vec![9, 10]);
        assert_eq!((b.next, b.missed), (10, 0));
        let b = log.read_after(8, 1);
        assert_eq!(seqs(&b), vec![9]);
        assert_eq!(b.next, 9);
    }

    #[test]
    fn room_limit() {
        let rooms = Rooms::new(10, 2);
        let a = RoomName::new("a").unwrap();
        rooms.get_or_create(&a).unwrap();
        rooms.get_or_create(&RoomName::new("b").unwrap()).unwrap();
        rooms.get_or_create(&a).unwrap();
        let e = rooms
            .get_or_create(&RoomName::new("c").unwrap())
            .unwrap_err();
        assert_eq!(e.to_string(), "room limit reached (2 rooms)");
        assert_eq!(rooms.len(), 2);
    }
}
