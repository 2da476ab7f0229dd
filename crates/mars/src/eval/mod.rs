//! Evaluation: tasks, grading in a sandbox, the run matrix, the report and its rendering.
//!
//! Dependencies point one way: `tasks` and `stats` are pure; `grade` uses the sandbox;
//! `humaneval` fetches the HumanEval-Rust task set and keeps the rows whose canonical solution
//! passes; `run` drives strategies over a client (or replays recorded answers) and grades; `report`
//! aggregates graded samples; `render` prints a report; `journal` persists samples as they come.

pub mod grade;
pub mod harness;
pub mod humaneval;
pub mod journal;
pub mod render;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod stats;
pub mod tasks;
pub mod verify;
