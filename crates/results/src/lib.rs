//! The result model every chatbench crate shares, with no network or
//! runtime underneath: the one [`Transport`] enum; the scenario format
//! ([`scenario::Scenario`]) and its `[[expect]]` rules ([`rules`]); the
//! `run.json` schema ([`run_file::RunFile`]), its summaries and console
//! table; the HdrHistogram files (`.hlog`, `.hgrm`); the machine and build a
//! run happened on ([`machine`]); a [`measurement::Measurement`] that shards
//! of one run combine and that summarizes into `run.json`; [`merge`] of run
//! folders; and formatting. The load generator writes
//! these; the report, `check`, `compare` and `merge` read them.
#![deny(missing_docs)]

pub mod break_even;
pub mod fmt;
pub mod hist;
pub mod machine;
pub mod measurement;
pub mod merge;
pub mod model;
pub mod rules;
pub mod run_file;
pub mod scenario;
pub mod wire;

use serde::{Deserialize, Serialize};

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
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 4] = [
        Transport::ShortPoll,
        Transport::LongPoll,
        Transport::Sse,
        Transport::WebSocket,
    ];

    /// The name used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::ShortPoll => "short_poll",
            Transport::LongPoll => "long_poll",
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
        }
    }

    /// A short tag for room names.
    pub fn short(self) -> &'static str {
        match self {
            Transport::ShortPoll => "sp",
            Transport::LongPoll => "lp",
            Transport::Sse => "sse",
            Transport::WebSocket => "ws",
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown transport {s:?}; expected one of short_poll, long_poll, sse, websocket"))
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
