//! CotReflection: one answer reasoned in `<thinking>`, checked in `<reflection>`, given in `<output>`.
//!
//! Source: optillm's `cot_reflection` approach (chain of thought with reflection).
//!
//! Algorithm: the caller's system prompt is extended (never replaced) with instructions to
//! reason step by step inside `<thinking>` tags, to check that reasoning inside `<reflection>`
//! tags, and to give the final answer inside `<output>` tags, and the request is answered in one
//! call. The answer is the text of the last complete `<output>` section ([`extract_output`]:
//! tags in any case, with spaces inside the brackets tolerated; an unclosed one runs to the end
//! of the reply). A reply with no usable `<output>` section (none, or only blank ones) falls
//! back to the whole reply, trimmed, so nothing of an answer cut off inside `<thinking>` (say by
//! the token limit) is lost; the trace keeps the raw reply as the one candidate and records how
//! the answer was extracted as an `"extract output"` [`Step`] that made no call (zero tokens)
//! and whose note says which rule applied.
//!
//! Cost: 1 model call.
//!
//! ```
//! use mars::strategies::{CotReflection, CotReflectionConfig};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let reply = "<thinking>2 + 2 = 4\n<reflection>Checked.</reflection></thinking>\n<output>4</output>";
//! let client = ScriptedClient::new([Turn::text(reply)]);
//! let strategy = CotReflection::new(client, CotReflectionConfig::default())?;
//! let outcome = strategy.run("What is 2 + 2?".into()).await?;
//! assert_eq!(outcome.answer, "4");
//! assert_eq!(outcome.candidates[0].text, reply);
//! assert!(strategy.inner().requests()[0].system.as_deref().is_some_and(|s| s.contains("<output>")));
//! assert_eq!(outcome.usage.model_calls, 1);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::fmt;

use super::calls::Calls;
use super::request::{append_to_system, fill_temperature};
use super::sampling::check_temperature;
use super::trace::{Candidate, Outcome, Step};
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::ChatRequest;
use crate::error::{Error, Result};

/// The instructions appended to the system prompt by default.
pub const DEFAULT_INSTRUCTIONS: &str = "\
Answer with a chain of thought followed by a reflection on it:
1. Inside <thinking> tags, work through the problem step by step.
2. Inside <reflection> tags, check that reasoning for mistakes, gaps or a better approach.
3. Correct your thinking where the reflection found a problem.
4. Inside <output> tags, give your final answer, complete and concise.

Only the text inside <output> is shown to the user: put the whole answer there (code included) \
and nothing of it in the thinking or the reflection.

Use this format:
<thinking>
[step-by-step reasoning]
<reflection>
[a check of the reasoning above]
</reflection>
[corrections made after the reflection]
</thinking>
<output>
[the final answer]
</output>";

/// Configuration of [`CotReflection`].
#[derive(Debug, Clone, PartialEq)]
pub struct CotReflectionConfig {
    /// Appended to the caller's system prompt (default [`DEFAULT_INSTRUCTIONS`]); must not be
    /// blank.
    pub instructions: String,
    /// The temperature of the call when the request sets none (default `None`: the backend's
    /// default); the request's temperature wins.
    pub temperature: Option<f32>,
}

impl Default for CotReflectionConfig {
    fn default() -> Self {
        CotReflectionConfig {
            instructions: DEFAULT_INSTRUCTIONS.to_owned(),
            temperature: None,
        }
    }
}

/// How [`extract_output`] found the answer in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extraction {
    /// The text of the last complete `<output>...</output>` section that is not blank.
    OutputTag,
    /// An `<output>` tag that is never closed (and no complete section with text): the text
    /// after it, to the end of the reply.
    UnclosedOutputTag,
    /// No `<output>` section with text: the whole reply, trimmed (thinking, reflection and
    /// any stray tags included).
    NoOutputTag,
}

impl fmt::Display for Extraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Extraction::OutputTag => "the last <output> section",
            Extraction::UnclosedOutputTag => {
                "an <output> tag that is never closed: the text after it, to the end"
            }
            Extraction::NoOutputTag => "no <output> section with text: the whole reply",
        })
    }
}

/// The answer in a chain-of-thought reply, trimmed, and how it was found (see [`Extraction`]).
///
/// Tags match in any case and with whitespace inside the brackets (`< OUTPUT >`, `</ output>`).
/// When an `<output>` tag opens again before the previous one closes, the later one counts.
/// Never fails: a reply without an `<output>` section with text (junk, a reply cut off inside
/// `<thinking>`) is the answer whole, trimmed.
pub fn extract_output(reply: &str) -> (String, Extraction) {
    let mut open: Option<usize> = None;
    let mut last_complete: Option<&str> = None;
    for tag in find_tags(reply, "output") {
        if tag.closing {
            if let Some(start) = open.take() {
                let content = reply[start..tag.start].trim();
                if !content.is_empty() {
                    last_complete = Some(content);
                }
            }
        } else {
            open = Some(tag.end);
        }
    }
    if let Some(content) = last_complete {
        return (content.to_owned(), Extraction::OutputTag);
    }
    if let Some(content) = open.map(|start| reply[start..].trim())
        && !content.is_empty()
    {
        return (content.to_owned(), Extraction::UnclosedOutputTag);
    }
    (reply.trim().to_owned(), Extraction::NoOutputTag)
}

/// One tag found by [`find_tags`]: its byte span and whether it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    start: usize,
    end: usize,
    closing: bool,
}

/// Every `<name>` and `</name>` tag of `text` for the given (ASCII) name, in order, in any case
/// and with whitespace allowed inside the brackets.
fn find_tags(text: &str, name: &str) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut from = 0;
    // Tags are ASCII, so every position below is a character boundary.
    while let Some(offset) = text.get(from..).and_then(|rest| rest.find('<')) {
        let start = from + offset;
        match tag_at(text.as_bytes(), start, name) {
            Some(tag) => {
                tags.push(tag);
                from = tag.end;
            }
            None => from = start + 1,
        }
    }
    tags
}

/// The tag starting with the `<` at `start`, if it is `name`.
fn tag_at(bytes: &[u8], start: usize, name: &str) -> Option<Tag> {
    let skip_space = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(start + 1);
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i = skip_space(i + 1);
    }
    let matches = bytes
        .get(i..i + name.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(name.as_bytes()));
    if !matches {
        return None;
    }
    let i = skip_space(i + name.len());
    (bytes.get(i) == Some(&b'>')).then_some(Tag {
        start,
        end: i + 1,
        closing,
    })
}

/// Chain of thought with reflection over an inner client (see the [module docs](self)); `new`
/// fails with [`Error::InvalidConfig`] on blank instructions or an invalid temperature.
pub type CotReflection<C> = StrategyClient<CotReflectionConfig, C>;

impl Algorithm for CotReflectionConfig {
    const NAME: &'static str = "cot_reflection";

    fn validate(&self) -> Result<()> {
        if self.instructions.trim().is_empty() {
            return Err(Error::InvalidConfig {
                field: "instructions",
                reason: "the chain-of-thought instructions must not be blank".into(),
            });
        }
        check_temperature("temperature", self.temperature)
    }

    /// Answers with one call, extracts the `<output>` section and returns the trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let options = fill_temperature(&request.options, self.temperature);
        let mut request = append_to_system(request, &self.instructions);
        request.options = options.clone();
        let completion = calls.named("answer", request).await?;
        let (answer, extraction) = extract_output(&completion.text);
        if extraction != Extraction::OutputTag {
            tracing::debug!(strategy = Self::NAME, %extraction, "fell back");
        }
        let candidates = vec![Candidate::generated(options, completion)];
        let record = Step::record("extract output", answer.clone(), extraction.to_string());
        let mut outcome = calls.finish(candidates, 0, vec![record], &[])?;
        outcome.answer = answer;
        Ok(outcome)
    }
}

impl Configured for CotReflectionConfig {}

#[cfg(test)]
#[path = "cot_reflection_tests.rs"]
mod tests;
