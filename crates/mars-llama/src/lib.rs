//! mars-llama: the embedded llama.cpp backend of mars, a real model in process.
//!
//! - [`LlamaEngine`] implements [`mars::ModelClient`] over the `llama-cpp-2` bindings: a GGUF
//!   loaded once, decoded on a dedicated thread, every sampling option honoured, and batched
//!   sampling that evaluates a prompt once for all samples.
//! - [`model`] finds the model: an explicit path or `MARS_MODEL`, else the cache, else a
//!   verified fetch of the default model (SmolLM2-135M-Instruct, 98 MB).
//! - [`server`] runs llama.cpp's own `llama-server` on loopback, the reference peer for the
//!   OpenAI-compatible client and the engine benchmark.
//!
//! This crate is separate from `mars` so that users of the HTTP backends never compile C++.
//!
//! ```no_run
//! use mars::ModelClientExt;
//! use mars_llama::{LlamaConfig, LlamaEngine, model::resolve_model};
//!
//! # async fn run() -> mars::Result<()> {
//! let engine = LlamaEngine::load(LlamaConfig::new(resolve_model(None)?))?;
//! let answer = engine.complete("What is 2 + 2?").await?;
//! println!("{} ({:?} tokens)", answer.text, answer.usage.completion_tokens);
//! # Ok(()) }
//! ```

mod engine;
pub mod model;
mod prompt;
pub mod sampling;
pub mod server;
mod text;
mod worker;

pub use engine::{LlamaConfig, LlamaEngine};
