//! Integration tests of mars-llama against real models (SmolLM2 for speed, and the default
//! preset once), fetched by the project's resolver on first use.

// Test helpers outside `#[test]` functions may unwrap and panic too; the fetch notice is printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod batching;
mod benchmark;
mod common;
mod engine;
mod openai_live;
mod preset;
mod sampling;
mod server;
mod strategies;
