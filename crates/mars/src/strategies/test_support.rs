//! Builders shared by the strategy tests.

use crate::client::{ChatRequest, Message, SamplingOptions, Usage};

/// Sampling options with a temperature, a seed and a token limit.
pub(crate) fn options(temperature: f32, seed: u64, max_tokens: u32) -> SamplingOptions {
    SamplingOptions {
        temperature: Some(temperature),
        seed: Some(seed),
        max_tokens: Some(max_tokens),
        ..SamplingOptions::default()
    }
}

/// A conversation with a system prompt, an earlier exchange ("Hi", "Hello.") and `question` as
/// the last user message, sent with `options`.
pub(crate) fn conversation(system: &str, question: &str, options: SamplingOptions) -> ChatRequest {
    ChatRequest {
        system: Some(system.into()),
        messages: vec![
            Message::user("Hi"),
            Message::assistant("Hello."),
            Message::user(question),
        ],
        options,
    }
}

/// A one-question request at temperature 0.2, seed 7 and 64 tokens at most.
pub(crate) fn request(question: &str) -> ChatRequest {
    ChatRequest::new(question).with_options(options(0.2, 7, 64))
}

/// The usage of one call with these token counts.
pub(crate) fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: Some(prompt),
        completion_tokens: Some(completion),
        model_calls: 1,
        ..Usage::default()
    }
}

/// Token counts of a reply, without a call count (the scripted client counts the call).
pub(crate) fn tokens(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: Some(prompt),
        completion_tokens: Some(completion),
        ..Usage::default()
    }
}

/// Where each of `parts` starts in `text`; panics naming the part that is missing.
pub(crate) fn positions(text: &str, parts: &[&str]) -> Vec<usize> {
    parts
        .iter()
        .map(|part| {
            text.find(part)
                .unwrap_or_else(|| panic!("{part:?} in {text}"))
        })
        .collect()
}
