//! The room log: the only store of messages, and the memory budget they
//! live under.
//!
//! Every transport reads a room through a cursor (`after`), so none of them
//! keeps a queue of its own. A [`RoomLog`] assigns gap-free sequence numbers,
//! serializes each message once, keeps the last `retention` messages and
//! wakes waiters through a `watch` channel that carries the head sequence.
//!
//! [`MemoryBudget`] counts every message's bytes from its serialization until
//! its last reference drops (a slow reader may still be sending a message the
//! log has let go). [`Rooms::publish`] keeps under it by evicting the oldest
//! messages of the largest rooms, which readers then see as `missed`, and
//! refuses the publish only when what is left is held by readers.

use chatbench_proto::{MessageJson, PublishRequest, RoomName};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A message's one serialization. `Utf8Bytes` is a reference-counted `Bytes`
/// known to be UTF-8, so WebSocket text frames, SSE events and poll answers
/// all share it without copying or re-validating.
pub type MessageBytes = Utf8Bytes;

/// What one stored message costs beyond its JSON: the `Bytes` owner block
/// (its vtable, reference count, the `String` and the budget handle), its
/// slot in the log's deque and the `String`'s spare capacity (at most 48
/// bytes). Counted so that a flood of tiny messages meets the budget too.
pub const MESSAGE_OVERHEAD: usize = 128;

/// The global budget for message bytes (`--max-memory`).
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    live: AtomicUsize,
    evicted: AtomicU64,
    refused: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            live: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of messages alive now: in a log, or still referenced by a
    /// response or socket buffer being written.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Messages evicted from logs to stay under the budget.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Publishes refused because the budget was held by readers.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn try_reserve(&self, n: usize) -> bool {
        self.live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                live.checked_add(n).filter(|&v| v <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.live.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The owner of a message's bytes: gives its cost back to the budget when
/// the last reference drops.
struct Accounted {
    text: String,
    cost: usize,
    budget: Arc<MemoryBudget>,
}

impl AsRef<[u8]> for Accounted {
    fn as_ref(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

impl Drop for Accounted {
    fn drop(&mut self) {
        self.budget.release(self.cost);
    }
}

/// A publish that could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The room does not exist and the room limit is reached.
    #[error("room limit reached ({0} rooms)")]
    RoomLimit(usize),
    /// The budget is full of messages that readers still hold.
    #[error("message memory budget of {0} bytes is full; slow readers still hold the messages")]
    Budget(usize),
}

/// The log of one room.
#[derive(Debug)]
pub struct RoomLog {
    name: RoomName,
    retention: usize,
    // A std Mutex: the critical sections are short and never await.
    state: Mutex<LogState>,
    head: watch::Sender<u64>,
    /// Bytes the log holds, by the budget's count; read unlocked to find the
    /// largest room.
    stored: AtomicUsize,
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

/// `CLOCK_REALTIME` in µs since the UNIX epoch: `server_at` and `/time`.
pub(crate) fn now_micros() -> u64 {
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
            stored: AtomicUsize::new(0),
        }
    }

    /// Bytes of messages the log holds, as the budget counts them.
    pub fn stored_bytes(&self) -> usize {
        self.stored.load(Ordering::Relaxed)
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// Appends a message and wakes every waiter; returns its sequence number.
    /// The message's cost is already reserved in `budget`.
    fn append(&self, json: &MessageJson, budget: &Arc<MemoryBudget>, reserved: usize) -> u64 {
        let seq = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = st.first_seq + st.messages.len() as u64;
            let text = json.finish(seq, now_micros());
            let cost = text.len() + MESSAGE_OVERHEAD;
            // A seq past 10^9 outgrows the estimate by a few bytes; count them.
            if cost > reserved {
                budget.live.fetch_add(cost - reserved, Ordering::Relaxed);
            } else {
                budget.release(reserved - cost);
            }
            let owner = Accounted {
                text,
                cost,
                budget: budget.clone(),
            };
            // SAFETY: the bytes are a `String`'s, so they are UTF-8.
            let bytes = unsafe { Utf8Bytes::from_bytes_unchecked(bytes::Bytes::from_owner(owner)) };
            self.stored.fetch_add(cost, Ordering::Relaxed);
            st.messages.push_back(bytes);
            if st.messages.len() > self.retention {
                Self::pop_oldest(&mut st, &self.stored);
            }
            seq
        };
        self.head.send_replace(seq);
        seq
    }

    fn pop_oldest(st: &mut LogState, stored: &AtomicUsize) -> Option<usize> {
        let m = st.messages.pop_front()?;
        st.first_seq += 1;
        // `stored` changes only under the state lock, so this cannot wrap.
        let cost = m.len() + MESSAGE_OVERHEAD;
        stored.fetch_sub(cost, Ordering::Relaxed);
        Some(cost)
    }

    /// Drops the oldest messages until about `want` bytes are freed or the
    /// log is empty; returns the bytes and messages dropped. Cursors behind
    /// the new first message are told `missed`, as with retention.
    fn evict(&self, want: usize) -> (usize, u64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut freed, mut n) = (0, 0);
        while freed < want {
            match Self::pop_oldest(&mut st, &self.stored) {
                Some(cost) => {
                    freed += cost;
                    n += 1;
                }
                None => break,
            }
        }
        (freed, n)
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

/// Every room of a server. A room is created by its first valid publish, or
/// by a subscriber waiting on a room that does not exist yet; a room that
/// never had a message expires once nothing holds it ([`Rooms::expire_idle`]).
#[derive(Debug)]
pub struct Rooms {
    retention: usize,
    max_rooms: usize,
    budget: Arc<MemoryBudget>,
    map: RwLock<HashMap<RoomName, Arc<RoomLog>>>,
}

impl Rooms {
    /// An empty registry whose rooms keep `retention` messages, at most
    /// `max_rooms` rooms and `max_memory` bytes of messages.
    pub fn new(retention: usize, max_rooms: usize, max_memory: usize) -> Rooms {
        Rooms {
            retention,
            max_rooms,
            budget: Arc::new(MemoryBudget::new(max_memory)),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The memory budget of every room's messages.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The room called `name`, if it exists. Reads use this, so reading
    /// creates nothing.
    pub fn get(&self, name: &RoomName) -> Option<Arc<RoomLog>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The room called `name`, created if it does not exist yet: for a
    /// publish, or for a subscriber that waits for the room's first message.
    pub fn get_or_create(&self, name: &RoomName) -> Result<Arc<RoomLog>, PublishError> {
        if let Some(log) = self.get(name) {
            return Ok(log);
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(log) = map.get(name) {
            return Ok(log.clone());
        }
        if map.len() >= self.max_rooms {
            return Err(PublishError::RoomLimit(self.max_rooms));
        }
        let log = Arc::new(RoomLog::new(name.clone(), self.retention));
        map.insert(name.clone(), log.clone());
        Ok(log)
    }

    /// Publishes `req` to room `name`, creating the room, and evicting the
    /// oldest messages of the largest rooms when the budget is full.
    pub fn publish(
        &self,
        name: &RoomName,
        req: &PublishRequest<'_>,
    ) -> Result<(Arc<RoomLog>, u64), PublishError> {
        // Encode the sender's fields outside every lock.
        let json = MessageJson::new(name.as_str(), req);
        let reserved = self.reserve(&json)?;
        let log = match self.get_or_create(name) {
            Ok(log) => log,
            Err(e) => {
                self.budget.release(reserved);
                return Err(e);
            }
        };
        let seq = log.append(&json, &self.budget, reserved);
        Ok((log, seq))
    }

    /// Publishes `req` to a room the caller holds (a WebSocket session's).
    pub fn publish_in(&self, log: &RoomLog, req: &PublishRequest<'_>) -> Result<u64, PublishError> {
        let json = MessageJson::new(log.name.as_str(), req);
        let reserved = self.reserve(&json)?;
        Ok(log.append(&json, &self.budget, reserved))
    }

    fn reserve(&self, json: &MessageJson) -> Result<usize, PublishError> {
        let reserved = json.capacity() + MESSAGE_OVERHEAD;
        if !self.budget.try_reserve(reserved) {
            self.make_room(reserved);
            if !self.budget.try_reserve(reserved) {
                self.budget.refused.fetch_add(1, Ordering::Relaxed);
                return Err(PublishError::Budget(self.budget.limit));
            }
        }
        Ok(reserved)
    }

    /// Evicts the oldest messages of the largest rooms until `need` bytes
    /// plus 1/64 of the budget are freed, so scans stay rare under a steady
    /// overflow. Bytes that readers still hold stay counted until they drop.
    fn make_room(&self, need: usize) {
        let mut want = need.saturating_add(self.budget.limit / 64);
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        // Each round empties the largest room or frees what is wanted, so
        // 64 rounds bound the scans, even across many small rooms.
        for _ in 0..64 {
            let Some(largest) = map
                .values()
                .max_by_key(|log| log.stored_bytes())
                .filter(|log| log.stored_bytes() > 0)
            else {
                return;
            };
            let (freed, n) = largest.evict(want);
            self.budget.evicted.fetch_add(n, Ordering::Relaxed);
            want = want.saturating_sub(freed);
            if want == 0 {
                return;
            }
        }
    }

    /// Removes rooms that never had a message and that no reader or
    /// subscriber holds; returns how many were removed. The server calls it
    /// every second.
    pub fn expire_idle(&self) -> usize {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        // Only the map holds an idle room's Arc; a room that had messages is
        // kept, because a reader's cursor must not see its seq restart.
        map.retain(|_, log| Arc::strong_count(log) > 1 || log.head() > 0);
        before - map.len()
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

    fn name(s: &str) -> RoomName {
        RoomName::new(s).unwrap()
    }

    /// Rooms keeping `retention` messages, with a budget no test reaches.
    fn rooms(retention: usize) -> Rooms {
        Rooms::new(retention, 100, 1 << 30)
    }

    #[test]
    fn seq_starts_at_one_without_gaps() {
        let rooms = rooms(100);
        let log = rooms.get_or_create(&name("r")).unwrap();
        assert_eq!(log.head(), 0);
        assert_eq!(log.read_after(0, 10), Batch::default());
        for i in 1..=5 {
            assert_eq!(rooms.publish_in(&log, &req("x")).unwrap(), i);
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
        let rooms = rooms(3);
        for _ in 0..10 {
            rooms.publish(&name("r"), &req("x")).unwrap();
        }
        let log = rooms.get(&name("r")).unwrap();
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
        // Retention gave the dropped messages' bytes back.
        let held: usize = b.messages.iter().map(|m| m.len()).sum::<usize>();
        drop(b);
        let all: usize = log
            .read_after(0, 100)
            .messages
            .iter()
            .map(|m| m.len() + MESSAGE_OVERHEAD)
            .sum();
        assert_eq!(log.stored_bytes(), all);
        assert_eq!(rooms.budget().live(), all);
        assert!(held > 0);
    }

    #[test]
    fn room_limit_and_reads_create_nothing() {
        let rooms = Rooms::new(10, 2, 1 << 20);
        rooms.publish(&name("a"), &req("x")).unwrap();
        assert!(rooms.get(&name("b")).is_none());
        rooms.get_or_create(&name("b")).unwrap();
        rooms.publish(&name("a"), &req("x")).unwrap();
        let e = rooms.publish(&name("c"), &req("x")).unwrap_err();
        assert_eq!(e.to_string(), "room limit reached (2 rooms)");
        assert_eq!(rooms.len(), 2);
        // The refused publish gave its reservation back.
        let a = rooms.get(&name("a")).unwrap();
        assert_eq!(rooms.budget().live(), a.stored_bytes());
        // "b" never had a message and nothing else holds it: it expires.
        assert_eq!(rooms.expire_idle(), 1);
        assert!(rooms.get(&name("b")).is_none());
        // A held room without messages stays, as does one with messages.
        let held = rooms.get_or_create(&name("c")).unwrap();
        drop(a);
        assert_eq!(rooms.expire_idle(), 0);
        assert_eq!(held.head(), 0);
        assert_eq!(rooms.len(), 2);
    }

    fn cost(body: &str) -> usize {
        let rooms = rooms(10);
        let (log, _) = rooms.publish(&name("r"), &req(body)).unwrap();
        log.stored_bytes()
    }

    #[test]
    fn budget_evicts_the_oldest_messages_of_the_largest_room() {
        let body = "x".repeat(1000);
        let one = cost(&body);
        // Room for ten messages, and a bit.
        let rooms = Rooms::new(1000, 10, 10 * one + one / 2);
        for _ in 0..6 {
            rooms.publish(&name("big"), &req(&body)).unwrap();
        }
        for _ in 0..3 {
            rooms.publish(&name("small"), &req(&body)).unwrap();
        }
        assert_eq!(rooms.budget().evicted(), 0);
        // Two more: the big room loses its oldest, the small one keeps all.
        rooms.publish(&name("small"), &req(&body)).unwrap();
        rooms.publish(&name("small"), &req(&body)).unwrap();
        let big = rooms.get(&name("big")).unwrap();
        let small = rooms.get(&name("small")).unwrap();
        assert_eq!(seqs(&small.read_after(0, 100)), vec![1, 2, 3, 4, 5]);
        let b = big.read_after(0, 100);
        assert!(b.missed >= 1, "{b:?}");
        assert_eq!(b.missed + b.messages.len() as u64, 6);
        assert_eq!(rooms.budget().evicted(), b.missed);
        drop(b);
        assert!(rooms.budget().live() <= rooms.budget().limit());
        assert_eq!(
            rooms.budget().live(),
            big.stored_bytes() + small.stored_bytes()
        );
    }

    #[test]
    fn budget_refuses_when_readers_hold_the_messages() {
        let body = "x".repeat(1000);
        let one = cost(&body);
        // Three messages, and the reservation's slack for a fourth's digits.
        let limit = 3 * one + 48;
        let rooms = Rooms::new(1000, 10, limit);
        for _ in 0..3 {
            rooms.publish(&name("r"), &req(&body)).unwrap();
        }
        // A slow reader holds all three; eviction frees the log but not them.
        let held = rooms.get(&name("r")).unwrap().read_after(0, 100);
        assert_eq!(held.messages.len(), 3);
        let e = rooms.publish(&name("r"), &req(&body)).unwrap_err();
        assert_eq!(e, PublishError::Budget(limit));
        assert_eq!(rooms.budget().refused(), 1);
        assert_eq!(rooms.budget().live(), 3 * one);
        // The attempt evicted the two oldest (what it needed plus 1/64 of
        // the budget); once the reader lets go, their bytes are free.
        drop(held);
        assert_eq!(rooms.budget().live(), one);
        let (log, seq) = rooms.publish(&name("r"), &req(&body)).unwrap();
        assert_eq!(seq, 4);
        let b = log.read_after(0, 100);
        assert_eq!((b.missed, seqs(&b)), (2, vec![3, 4]));
    }
}
