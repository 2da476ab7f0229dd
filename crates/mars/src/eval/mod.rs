//! Evaluation: what the benchmark needs to grade answers, starting with the sandbox that
//! compiles and runs model-written code.

pub mod sandbox;
