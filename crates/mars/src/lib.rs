//! mars: inference-time optimization strategies for large language models.
//!
//! Everything sits on one trait, [`ModelClient`]: a dyn-compatible client that streams an
//! answer as text deltas followed by exactly one terminal event carrying the finish reason and
//! the measured [`Usage`]. Backends implement it:
//!
//! - [`OllamaClient`], Ollama's native chat API (NDJSON);
//! - [`OpenAiClient`], any OpenAI-compatible server (SSE): llama.cpp's `llama-server`, vLLM,
//!   LM Studio, Ollama's `/v1`, OpenAI;
//! - [`ScriptedClient`], a fake that replays scripted turns and records requests (tests, docs).
//!
//! ```
//! use mars::{ModelClientExt, ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = ScriptedClient::new([Turn::chunks(["fn add(a: i32, b: i32) -> i32 ", "{ a + b }"])]);
//! let answer = client.complete("Write add in Rust").await?;
//! assert!(answer.text.contains("a + b"));
//! assert_eq!(answer.usage.model_calls, 1);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

pub mod backends;
pub mod client;
pub mod code;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod strategies;

pub use backends::http::HttpOptions;
pub use backends::ollama::{OllamaClient, OllamaConfig};
pub use backends::openai::{OpenAiClient, OpenAiConfig};
pub use backends::scripted::{ScriptedClient, ScriptedError, Turn};
pub use client::{
    BatchRequest, ChatRequest, Completion, EventStream, Finish, FinishReason, Message, ModelClient,
    ModelClientExt, Role, SamplingOptions, StreamEvent, Usage, collect_completion,
    complete_concurrently,
};
pub use error::{Error, Result, TimeoutPhase};
pub use strategies::{
    Baseline, BestOfN, BestOfNConfig, DiverseSampling, DiverseSamplingConfig, Outcome, ReRead,
    ReReadConfig, Strategy,
};

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
