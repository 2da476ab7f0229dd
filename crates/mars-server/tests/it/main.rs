//! Integration tests of `mars serve` against a recording fake upstream on loopback.

// Test helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod fake;
mod limits;
#[cfg(feature = "embedded")]
mod live;
mod ollama;
mod openai;
mod support;
