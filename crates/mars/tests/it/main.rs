//! The integration tests of `mars`, in one binary to keep link time low.

// Test helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod conformance;
mod eval;
mod fetch;
mod humaneval;
mod ollama;
mod openai;
mod prompt_examples;
mod proxy;
mod sandbox;
mod server;
mod strategies;
mod verifier;
