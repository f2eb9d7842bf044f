//! The result files: `run.json` (schema [`SCHEMA`]), histogram logs, and the
//! console table. One file per job: `schema.rs` (what `run.json` holds,
//! read and written), `summary.rs` (a run's summaries over repetitions, and
//! the model beside them), `table.rs` (the console table), `histograms.rs`
//! (the `.hlog` and `.hgrm` files), `csv.rs` (`chatbench export`) and
//! `layout.rs` (how run.json's text is laid out).

mod csv;
mod histograms;
mod layout;
mod schema;
mod summary;
mod table;

pub use csv::CsvRow;
pub use histograms::*;
pub use schema::*;
pub use summary::{ModelRow, MODEL_SLACK_US};
