//! The result model every chatbench crate shares, with no network or
//! runtime underneath: the [`Transport`] enum (re-exported from
//! `chatbench-proto`); the scenario format
//! ([`scenario::Scenario`]) and its `[[expect]]` rules ([`rules`]); the
//! `run.json` schema ([`run_file::RunFile`]), its summaries and console
//! table; the HdrHistogram files (`.hlog`, `.hgrm`); the machine and build a
//! run happened on ([`machine`]); a [`measurement::Measurement`] that shards
//! of one run combine and that summarizes into `run.json`; [`merge`] of run
//! folders; and formatting. The load generator writes
//! these; the report, `check`, `compare` and `merge` read them.
#![deny(missing_docs)]

pub mod advise;
pub mod break_even;
pub mod capacity;
pub mod energy;
pub mod fmt;
pub mod hist;
pub mod machine;
pub mod measurement;
pub mod merge;
pub mod model;
pub mod path;
pub mod rules;
pub mod run_file;
pub mod scenario;
pub mod search;
pub mod target;
pub mod tcp;
pub mod trace;
pub mod wire;

/// A transport under comparison: defined in `chatbench-proto`, which the
/// server shares, so there is one such enum in the workspace.
pub use chatbench_proto::Transport;
