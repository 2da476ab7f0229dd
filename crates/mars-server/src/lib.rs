//! `mars serve`: an OpenAI- and Ollama-compatible HTTP proxy that applies mars strategies,
//! chosen by model name (`moa-llama3`), body field or message tag, to the models of its
//! upstreams (an Ollama server, an OpenAI-compatible server, the embedded llama.cpp engine).
//!
//! The main types: [`App`] (state, router, serving), [`ServerConfig`] (the settings, filled
//! from the command line by [`ServeArgs`]), [`core::AppState`] (the shared core that routes a
//! model, picks and builds strategies and runs their choices), the two front ends [`openai`]
//! and [`ollama`], [`limit::Limited`] (the global bound on upstream calls) and
//! [`error::ApiError`] (errors in each API's shape).
//!
//! Work for a request lives in streams owned by its response: a client that goes away drops
//! them, and with them every inner call of its strategy.

pub mod app;
pub mod code;
pub mod config;
pub mod core;
pub mod error;
pub mod fields;
pub mod limit;
pub mod metrics;
pub mod ollama;
pub mod openai;
pub mod respond;
pub mod select;
pub mod upstream;

pub use app::App;
pub use config::{ServeArgs, ServerConfig};
