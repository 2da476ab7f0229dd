//! Integration tests of mars-llama against the real default model, fetched on first use.

// Test helpers outside `#[test]` functions may unwrap and panic too; the fetch notice is printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod benchmark;
mod common;
mod engine;
mod openai_live;
mod sampling;
mod server;
mod strategies;
