//! Integration tests of mars-llama against the real default model, fetched on first use.

mod common;
mod engine;
mod sampling;
mod server;
mod strategies;
