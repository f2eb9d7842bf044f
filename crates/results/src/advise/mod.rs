//! `chatbench advise`: which transports fit a workload, and what each
//! would cost, from the committed reference runs (or a calibration run
//! on this machine) and the models beside them, every figure naming its
//! source.
//!
//! [`workload`] is the question, [`reference`] reads what a run measured,
//! [`estimate`] turns the nearest references into one transport's figures
//! for the workload, and [`answer`] weighs the transports against the
//! limits, adds the break-even points and says where the workload lies
//! outside every measurement.

pub mod answer;
pub mod estimate;
pub mod reference;
pub mod workload;

pub use answer::{advise, text, Answer};
pub use reference::{references, Reference};
pub use workload::Workload;
