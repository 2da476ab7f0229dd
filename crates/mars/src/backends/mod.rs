//! Backends: the clients that reach a model.

pub mod framing;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod scripted;
