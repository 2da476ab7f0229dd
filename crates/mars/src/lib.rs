//! mars: inference-time optimization strategies for large language models.
//!
//! Everything sits on one trait, [`ModelClient`]: a dyn-compatible client that streams an
//! answer as text deltas followed by exactly one terminal event carrying the finish reason and
//! the measured [`Usage`]. Backends implement it:
//!
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
pub mod error;
pub mod eval;

pub use backends::scripted::{ScriptedClient, Turn};
pub use client::{
    BatchRequest, ChatRequest, Completion, EventStream, Finish, FinishReason, Message, ModelClient,
    ModelClientExt, Role, SamplingOptions, StreamEvent, Usage, collect_completion,
    complete_concurrently,
};
pub use error::{Error, Result, TimeoutPhase};
