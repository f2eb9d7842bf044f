//! The chatbench load generator.
//!
//! It reads a [`Scenario`], and for each transport and repetition starts a
//! fresh server ([`server::RunningServer`]), connects simulated chat clients
//! ([`client`]), sends open-loop on a seeded [`SendSchedule`], and records
//! latency ([`record::Recorder`]), wire overhead ([`wire::WireCounter`]), the
//! delivery audit and server cost ([`resources`]). [`run::run`] writes the
//! results ([`results::RunFile`]) to `results/<scenario>/<run-id>/`.
#![deny(missing_docs)]

pub mod client;
pub mod clock;
pub mod engine;
pub mod merge;
pub mod record;
pub mod resources;
pub mod results;
pub mod rules;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod server;
pub mod wire;

pub use results::RunFile;
pub use scenario::{Scenario, ScenarioError};
pub use schedule::SendSchedule;

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
