//! The chatbench load generator.
//!
//! It reads a [`Scenario`], and for each transport and repetition starts a
//! fresh server ([`server::RunningServer`]), connects simulated chat clients
//! ([`client`], every connection through [`dial::Dialer`]), sends open-loop on a seeded [`SendSchedule`], and records
//! latency ([`record::Recorder`]), wire overhead ([`wire::WireCounter`]), the
//! delivery audit and server cost ([`resources`]). [`run::run`] writes the
//! results ([`results::RunFile`]) to `results/<scenario>/<run-id>/`.
#![deny(missing_docs)]

pub mod client;
pub mod clock;
pub mod dial;
pub mod drops;
pub mod engine;
pub mod h1;
pub mod h2;
pub mod h3;
pub mod link;
pub mod packet;
pub mod profile;
pub mod proxy;
pub mod quota;
pub mod radio;
pub mod record;
pub mod resources;
pub mod run;
pub mod schedule;
pub mod server;
pub mod wire;
pub mod worker;
pub mod ws;

pub use chatbench_results::run_file as results;
pub use chatbench_results::{merge, rules, scenario, Transport};
pub use results::RunFile;
pub use scenario::{Scenario, ScenarioError};
pub use schedule::SendSchedule;
