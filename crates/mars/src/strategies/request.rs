//! Request rewriting shared by the strategies: the caller's system prompt, earlier messages and
//! sampling options are kept; only what a strategy must change is changed.
//!
//! The one rule for sampling options: the request's options win. A strategy's configuration
//! fills in only what the request leaves unset ([`fill_temperature`]). The exception is an
//! algorithm whose definition is a schedule (DiverseSampling's temperature ladder), which says
//! so in its docs.

use crate::client::{ChatRequest, Role, SamplingOptions};
use crate::error::{Error, Result};

/// `request` with its last user message replaced by `rewrite` of it; [`Error::Unsupported`]
/// when there is no user message.
pub(crate) fn rewrite_last_user_message(
    request: ChatRequest,
    strategy: &str,
    rewrite: impl FnOnce(&str) -> String,
) -> Result<ChatRequest> {
    let mut request = request;
    let message = request
        .messages
        .iter_mut()
        .rev()
        .find(|m| m.role == Role::User)
        .ok_or_else(|| Error::Unsupported {
            detail: format!("{strategy} needs a user message, and the request has none"),
        })?;
    message.content = rewrite(&message.content);
    Ok(request)
}

/// The last user message of `request`: the question a strategy answers; [`Error::Unsupported`]
/// naming `strategy` when there is none.
pub(crate) fn question(request: &ChatRequest, strategy: &str) -> Result<String> {
    request
        .last_user_message()
        .map(str::to_owned)
        .ok_or_else(|| Error::Unsupported {
            detail: format!("{strategy} needs a user message to answer, and the request has none"),
        })
}

/// `request` with `extra` appended to its system prompt (after a blank line), or as the system
/// prompt when there is none: the caller's instructions are kept, never replaced.
pub(crate) fn append_to_system(request: ChatRequest, extra: &str) -> ChatRequest {
    let mut request = request;
    request.system = Some(match request.system.take() {
        Some(system) if !system.trim().is_empty() => format!("{system}\n\n{extra}"),
        _ => extra.to_owned(),
    });
    request
}

/// The request's options `base` with `temperature` filled in when the request sets none: the
/// request's temperature wins over a strategy's configured one.
pub fn fill_temperature(base: &SamplingOptions, temperature: Option<f32>) -> SamplingOptions {
    SamplingOptions {
        temperature: base.temperature.or(temperature),
        ..base.clone()
    }
}

/// The request a seed-style entry point builds: `query` as the user message and
/// `system_prompt` as the system prompt (none when empty).
pub(crate) fn seed_request(query: &str, system_prompt: &str) -> ChatRequest {
    let request = ChatRequest::new(query);
    if system_prompt.is_empty() {
        request
    } else {
        request.with_system(system_prompt)
    }
}
