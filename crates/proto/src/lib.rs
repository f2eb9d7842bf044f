//! Wire types shared by the chatbench server and its clients.
//!
//! The contract lives in `docs/server.md`. The main types are [`Message`] (what
//! every transport delivers), [`PublishRequest`] (the POST body, also the text
//! of a WebSocket publish frame), [`PollResponse`], [`PublishAck`],
//! [`ErrorBody`], [`Notice`] (out-of-band stream notices such as `missed`) and
//! [`RoomName`]. [`MessageJson`] builds the one serialization of a message that
//! every transport frames, and [`poll_response_json`] frames a batch of those
//! bytes as a poll answer without re-serializing them.
//!
//! **This crate does no I/O.** Its one system call, in [`tcp`], reads the
//! kernel's `TCP_INFO` of a socket that the server or the load generator
//! holds, so that both sides report TCP's view the same way.
#![deny(missing_docs)]

pub mod tcp;

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Longest accepted room name, in bytes.
pub const MAX_ROOM_NAME: usize = 64;

/// A validated room name: `[A-Za-z0-9_-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

/// Why a room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// The name is the empty string.
    #[error("room name is empty")]
    Empty,
    /// The name is longer than [`MAX_ROOM_NAME`] bytes.
    #[error("room name is {0} bytes long; the limit is 64")]
    TooLong(usize),
    /// The name holds a character outside `[A-Za-z0-9_-]`.
    #[error("room name holds {0:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    BadChar(char),
}

impl RoomName {
    /// Validates `name` against `[A-Za-z0-9_-]{1,64}`.
    pub fn new(name: &str) -> Result<RoomName, RoomNameError> {
        if name.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if name.len() > MAX_ROOM_NAME {
            return Err(RoomNameError::TooLong(name.len()));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(RoomNameError::BadChar(c));
        }
        Ok(RoomName(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One of several server processes that share the rooms between them: the
/// process `index` of `of` owns a room when the CRC-32 (IEEE, as zlib's
/// `crc32`) of its name, modulo `of`, is `index`. A stable hash of the name,
/// so any client can compute a room's owner: chatbench's load generator
/// routes each room's clients to it, and a server started with
/// `--room-shard I/K` refuses the rooms it does not own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomOwner {
    /// This process, from 0.
    pub index: u32,
    /// How many processes share the rooms.
    pub of: u32,
}

impl RoomOwner {
    /// The index of the process, of `of`, that owns `room`.
    pub fn owner(room: &str, of: u32) -> u32 {
        crc32fast::hash(room.as_bytes()) % of.max(1)
    }

    /// Whether this process owns `room`.
    pub fn owns(&self, room: &str) -> bool {
        RoomOwner::owner(room, self.of) == self.index
    }
}

impl std::str::FromStr for RoomOwner {
    type Err = String;

    /// `I/K`: process I (from 0) of K, K from 1 to 1024.
    fn from_str(s: &str) -> Result<RoomOwner, String> {
        let bad = || format!("{s:?} is not I/K (process I of K, counted from 0, e.g. 0/4)");
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let of: u32 = k.trim().parse().map_err(|_| bad())?;
        if !(1..=1024).contains(&of) {
            return Err(format!("{s:?}: K must be 1 to 1024, got {of}"));
        }
        if index >= of {
            return Err(format!("{s:?}: I counts from 0 and must be below K ({of})"));
        }
        Ok(RoomOwner { index, of })
    }
}

impl fmt::Display for RoomOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

/// The body of `POST /rooms/{room}/messages`, and the text of a WebSocket
/// publish frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest<'a> {
    /// Who sends; echoed unchanged.
    #[serde(borrow)]
    pub from: Cow<'a, str>,
    /// The text; echoed unchanged.
    #[serde(borrow)]
    pub body: Cow<'a, str>,
    /// An opaque sender clock value; echoed unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
}

/// A chat message as every transport delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// Per-room sequence number: starts at 1, strictly increasing, no gaps.
    pub seq: u64,
    /// The room the message was published to.
    #[serde(borrow)]
    pub room: Cow<'a, str>,
    /// The sender, as given.
    #[serde(borrow)]
    pub from: Cow<'a, str>,
    /// The text, as given.
    #[serde(borrow)]
    pub body: Cow<'a, str>,
    /// The sender's opaque clock value, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
    /// When the server accepted the message, in µs since the UNIX epoch.
    pub server_at: u64,
}

/// The answer to a short or long poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponse<'a> {
    /// Messages with `seq` greater than the cursor, oldest first.
    #[serde(borrow)]
    pub messages: Vec<Message<'a>>,
    /// The cursor to send as `after` next time.
    pub next: u64,
    /// Messages the cursor skipped because they left retention.
    pub missed: u64,
}

/// The answer to a successful publish: `201 {"seq":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    /// The sequence number given to the message.
    pub seq: u64,
}

/// Every error answer: `{"error":"<reason>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A human-readable reason.
    pub error: String,
}

impl ErrorBody {
    /// The JSON bytes of an error body with `reason`.
    pub fn json(reason: &str) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            error: reason.to_owned(),
        })
        .expect("serializing a string cannot fail")
    }
}

/// An out-of-band notice on a stream (SSE event `missed`, or a WebSocket text
/// frame): the cursor skipped `missed` messages that left retention and now
/// continues after `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// How many messages were skipped.
    pub missed: u64,
    /// The cursor after the skip.
    pub next: u64,
}

/// Builds the single JSON serialization of a message.
///
/// The parts that do not depend on `seq` and `server_at` are encoded once by
/// [`MessageJson::new`], outside any lock; [`MessageJson::finish`] then adds
/// the sequence number and the server time, which the room log assigns under
/// its lock. The field order is `seq, room, from, body, sent_at, server_at`.
#[derive(Debug, Clone)]
pub struct MessageJson {
    middle: String,
}

impl MessageJson {
    /// Encodes the room, sender, body and `sent_at` of a message.
    pub fn new(room: &str, req: &PublishRequest<'_>) -> MessageJson {
        use std::fmt::Write;
        let mut middle = String::with_capacity(48 + room.len() + req.from.len() + req.body.len());
        middle.push_str(",\"room\":");
        write_json_str(&mut middle, room);
        middle.push_str(",\"from\":");
        write_json_str(&mut middle, &req.from);
        middle.push_str(",\"body\":");
        write_json_str(&mut middle, &req.body);
        if let Some(sent_at) = req.sent_at {
            let _ = write!(middle, ",\"sent_at\":{sent_at}");
        }
        MessageJson { middle }
    }

    /// The capacity [`MessageJson::finish`] allocates: enough for any `seq`
    /// below 10^9 and any `server_at` of this millennium, so the finished
    /// message fits without growing (memory budgets count this figure).
    pub fn capacity(&self) -> usize {
        self.middle.len() + 48
    }

    /// The finished JSON object for sequence number `seq`, accepted at
    /// `server_at` µs since the epoch.
    pub fn finish(&self, seq: u64, server_at: u64) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.capacity());
        let _ = write!(out, "{{\"seq\":{seq}{}", self.middle);
        let _ = write!(out, ",\"server_at\":{server_at}}}");
        out
    }
}

fn write_json_str(out: &mut String, s: &str) {
    // serde_json's string escaping is the one the clients parse with.
    out.push_str(&serde_json::to_string(s).expect("serializing a string cannot fail"));
}

/// Frames already-serialized messages as a poll answer:
/// `{"messages":[m1,m2,..],"next":N,"missed":K}`.
pub fn poll_response_json<'a, I>(messages: I, next: u64, missed: u64) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"messages\":[");
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    out.extend_from_slice(b"],\"next\":");
    out.extend_from_slice(next.to_string().as_bytes());
    out.extend_from_slice(b",\"missed\":");
    out.extend_from_slice(missed.to_string().as_bytes());
    out.push(b'}');
    out
}

/// A transport under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// HTTP short polling.
    ShortPoll,
    /// HTTP long polling.
    LongPoll,
    /// Server-Sent Events.
    Sse,
    /// WebSocket.
    #[serde(rename = "websocket")]
    WebSocket,
    /// WebTransport over HTTP/3: a session per client, each message on a
    /// QUIC stream from the server.
    #[serde(rename = "webtransport")]
    WebTransport,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 5] = [
        Transport::ShortPoll,
        Transport::LongPoll,
        Transport::Sse,
        Transport::WebSocket,
        Transport::WebTransport,
    ];

    /// The name used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::ShortPoll => "short_poll",
            Transport::LongPoll => "long_poll",
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
            Transport::WebTransport => "webtransport",
        }
    }

    /// True for the transports that push on a stream (SSE, WebSocket,
    /// WebTransport).
    pub fn is_push(self) -> bool {
        matches!(
            self,
            Transport::Sse | Transport::WebSocket | Transport::WebTransport
        )
    }

    /// True when a client publishes on the connection it receives on
    /// (WebSocket, WebTransport), not on an HTTP connection beside it.
    pub fn is_duplex(self) -> bool {
        matches!(self, Transport::WebSocket | Transport::WebTransport)
    }

    /// A short tag for room names.
    pub fn short(self) -> &'static str {
        match self {
            Transport::ShortPoll => "sp",
            Transport::LongPoll => "lp",
            Transport::Sse => "sse",
            Transport::WebSocket => "ws",
            Transport::WebTransport => "wt",
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown transport {s:?}; expected one of short_poll, long_poll, sse, websocket, webtransport"))
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(RoomName::new("lobby").is_ok());
        assert!(RoomName::new("A-z_09").is_ok());
        assert!(RoomName::new(&"a".repeat(64)).is_ok());
        assert_eq!(RoomName::new(""), Err(RoomNameError::Empty));
        assert_eq!(
            RoomName::new(&"a".repeat(65)),
            Err(RoomNameError::TooLong(65))
        );
        assert_eq!(RoomName::new("a b"), Err(RoomNameError::BadChar(' ')));
        assert_eq!(RoomName::new("café"), Err(RoomNameError::BadChar('é')));
        assert_eq!(
            RoomNameError::BadChar('.').to_string(),
            "room name holds '.'; only A-Z, a-z, 0-9, '_' and '-' are allowed"
        );
    }

    #[test]
    fn room_owner_is_zlib_crc32_modulo_the_processes() {
        // Python: zlib.crc32(b"lobby") == 3437516279, % 4 == 3.
        assert_eq!(crc32fast::hash(b"lobby"), 3_437_516_279);
        assert_eq!(RoomOwner::owner("lobby", 4), 3);
        assert_eq!(RoomOwner::owner("r0", 4), 3);
        assert_eq!(RoomOwner::owner("cb0001-ws-0-0-0", 4), 1);
        assert_eq!(RoomOwner::owner("anything", 1), 0);
        let s: RoomOwner = "3/4".parse().unwrap();
        assert_eq!(s, RoomOwner { index: 3, of: 4 });
        assert!(s.owns("lobby") && !s.owns("cb0001-ws-0-0-0"));
        assert_eq!(s.to_string(), "3/4");
        for (bad, why) in [
            ("4/4", "\"4/4\": I counts from 0 and must be below K (4)"),
            ("0/0", "\"0/0\": K must be 1 to 1024, got 0"),
            (
                "1",
                "\"1\" is not I/K (process I of K, counted from 0, e.g. 0/4)",
            ),
            (
                "a/2",
                "\"a/2\" is not I/K (process I of K, counted from 0, e.g. 0/4)",
            ),
        ] {
            assert_eq!(bad.parse::<RoomOwner>().unwrap_err(), why);
        }
    }

    #[test]
    fn message_json_matches_the_contract_example() {
        let req = PublishRequest {
            from: "c17".into(),
            body: "hello".into(),
            sent_at: Some(123456),
        };
        let json = MessageJson::new("lobby", &req).finish(42, 1763935200123456);
        assert_eq!(
            json,
            r#"{"seq":42,"room":"lobby","from":"c17","body":"hello","sent_at":123456,"server_at":1763935200123456}"#
        );
    }

    #[test]
    fn message_json_escapes_and_round_trips() {
        let req = PublishRequest {
            from: "q\"uote".into(),
            body: "line\nbreak \u{1F600} \\ </script>".into(),
            sent_at: None,
        };
        let json = MessageJson::new("r", &req).finish(1, 7);
        let m: Message<'_> = serde_json::from_str(&json).unwrap();
        assert_eq!(m.from, "q\"uote");
        assert_eq!(m.body, req.body);
        assert_eq!(m.sent_at, None);
        assert!(!json.contains("sent_at"));
    }

    #[test]
    fn poll_response_frames_raw_messages() {
        let a = MessageJson::new(
            "r",
            &PublishRequest {
                from: "a".into(),
                body: "x".into(),
                sent_at: Some(1),
            },
        )
        .finish(1, 10);
        let b = MessageJson::new(
            "r",
            &PublishRequest {
                from: "b".into(),
                body: "y".into(),
                sent_at: None,
            },
        )
        .finish(2, 11);
        let json = poll_response_json([a.as_bytes(), b.as_bytes()], 2, 3);
        let p: PollResponse<'_> = serde_json::from_slice(&json).unwrap();
        assert_eq!(p.messages.len(), 2);
        assert_eq!(p.messages[1].seq, 2);
        assert_eq!((p.next, p.missed), (2, 3));
        let empty = poll_response_json(std::iter::empty(), 5, 0);
        assert_eq!(empty, br#"{"messages":[],"next":5,"missed":0}"#);
    }

    #[test]
    fn publish_request_rejects_unknown_and_ill_typed_fields() {
        let e = serde_json::from_str::<PublishRequest<'_>>(r#"{"from":"a","body":1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid type: integer `1`, expected a string"),
            "{e}"
        );
        let e = serde_json::from_str::<PublishRequest<'_>>(r#"{"from":"a","body":"b","x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unknown field `x`"), "{e}");
        let e = serde_json::from_str::<PublishRequest<'_>>(r#"{"from":"a"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("missing field `body`"), "{e}");
    }
}
