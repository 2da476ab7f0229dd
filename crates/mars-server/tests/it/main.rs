//! Integration tests of `mars serve` against a recording fake upstream on loopback.

mod fake;
mod limits;
mod ollama;
mod openai;
mod support;
