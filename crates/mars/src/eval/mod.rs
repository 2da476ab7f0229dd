//! Evaluation: benchmark tasks and report maths.

pub mod stats;
pub mod tasks;
