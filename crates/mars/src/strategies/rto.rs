//! RoundTrip (RTO): code written, described, written again from the description, and reconciled.
//!
//! Source: optillm's `rto` (round-trip optimisation) approach.
//!
//! Algorithm: the model answers the request with code C1 (the first fenced block of its reply,
//! else the whole reply). In a follow-up turn of the same conversation it describes that code as
//! an instruction precise enough to write it again, and a fresh request (the caller's system
//! prompt, the description as the only user message) produces code C2. If C1 and C2 are the
//! same after [`normalize_code`] the round trip agreed and C1's reply is the answer; otherwise a
//! synthesis call, shown the original question, C1 and C2, writes one final version (code only),
//! and its reply is the answer. A stream of the strategy sends the synthesis as it is generated;
//! when the round trip agrees, the answer (C1's reply, generated before the comparison could
//! choose it) is sent as one delta at the end.
//!
//! The comparison ([`codes_agree`]) is meant for Rust and C-like code: it ignores `//` and
//! `/* */` comments and layout. In other languages it can be wrong both ways: Python's `#`
//! comments make codes differ, and its floor division `a // b` is read as a comment, so
//! `a // b` and `a // c` agree.
//!
//! Trace: `candidates[0]` is C1's reply and `candidates[1]` C2's; when the codes differ,
//! `candidates[2]` is the synthesis. The [`winner`](Outcome::winner) is 0 when the round trip
//! agreed and 2 otherwise, and `answer` is that candidate's full reply. The description call is
//! the one [`Step`](super::Step) (`"description"`); its note says whether the round trip agreed
//! and how each code was read (a fenced block, or a whole reply that had none).
//!
//! Cost: 3 model calls, or 4 when the codes differ; they are sequential, each needing the one
//! before.
//!
//! ```
//! use mars::strategies::{RoundTrip, RoundTripConfig};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = ScriptedClient::new([
//!     Turn::text("```rust\nfn add(a: i32, b: i32) -> i32 { a + b }\n```"),
//!     Turn::text("Write a Rust function `add` that returns the sum of two i32s."),
//!     Turn::text("```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b // the sum\n}\n```"),
//! ]);
//! let strategy = RoundTrip::new(client, RoundTripConfig::default())?;
//! let outcome = strategy.run("Write add in Rust".into()).await?;
//! assert_eq!(outcome.winner, 0, "the codes agree, so the first answer stands");
//! assert!(outcome.answer.contains("{ a + b }"));
//! assert_eq!(outcome.steps[0].stage, "description");
//! assert_eq!(outcome.usage.model_calls, 3);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use super::calls::Calls;
use super::request::{fill_temperature, question, rewrite_last_user_message};
use super::sampling::check_temperature;
use super::trace::{Candidate, Outcome};
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{ChatRequest, Message};
use crate::code::{CodeSource, ExtractedCode, fenced_blocks, normalize_code};
use crate::error::Result;

/// The follow-up instruction that asks for a description of the first code.
pub const DESCRIBE_INSTRUCTION: &str = "Describe the code you just wrote as an instruction \
     precise enough that, given only the instruction, you could write the same code again: its \
     purpose, the signature, inputs and outputs, and the approach and edge cases it handles. \
     Reply with the instruction only.";

/// Configuration of [`RoundTrip`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoundTripConfig {
    /// The temperature of every call when the request sets none (default 0.1, as optillm's
    /// `rto`: near-greedy, so that a disagreement reflects the description rather than sampling
    /// noise); the request's temperature wins. The request's other options (seed, token limit,
    /// ...) are kept.
    pub temperature: Option<f32>,
}

impl Default for RoundTripConfig {
    fn default() -> Self {
        RoundTripConfig {
            temperature: Some(0.1),
        }
    }
}

/// The code of a reply, trimmed: its first non-blank fenced block
/// ([`CodeSource::FirstBlock`]), else the whole reply ([`CodeSource::RawText`], empty for a
/// blank reply).
pub fn round_trip_code(reply: &str) -> ExtractedCode {
    match fenced_blocks(reply)
        .into_iter()
        .find(|b| !b.trim().is_empty())
    {
        Some(block) => ExtractedCode {
            code: block.trim().to_owned(),
            source: CodeSource::FirstBlock,
        },
        None => ExtractedCode {
            code: reply.trim().to_owned(),
            source: CodeSource::RawText,
        },
    }
}

/// Whether the round trip agreed: both codes non-empty and equal after [`normalize_code`].
///
/// Meant for Rust and C-like code: `//` and `/* */` comments and layout are ignored, string and
/// character literals are compared verbatim. Other languages are compared with the same rules,
/// which can mislead: a `#` comment is code, and `//` starts a comment even where it is an
/// operator (Python's floor division), so the comparison is only as good as those rules fit.
///
/// ```
/// use mars::strategies::rto::codes_agree;
///
/// // Rust: comments and layout do not matter; code does.
/// assert!(codes_agree("fn f() -> i32 { 1 } // one", "fn f() -> i32 {\n    1\n}"));
/// assert!(!codes_agree("fn f() -> i32 { 1 }", "fn f() -> i32 { 2 }"));
/// // Python: `//` is floor division, yet it is read as a comment.
/// assert!(codes_agree("x = a // b", "x = a // c"));
/// assert!(!codes_agree("x = 1  # one", "x = 1"));
/// ```
pub fn codes_agree(first: &str, second: &str) -> bool {
    let first = normalize_code(first);
    !first.is_empty() && first == normalize_code(second)
}

/// The description call: `request`'s conversation, then `first_reply` as the assistant's turn,
/// then [`DESCRIBE_INSTRUCTION`] as the user's.
pub fn description_request(request: ChatRequest, first_reply: &str) -> ChatRequest {
    let mut request = request;
    request.messages.push(Message::assistant(first_reply));
    request.messages.push(Message::user(DESCRIBE_INSTRUCTION));
    request
}

/// The second-code call: a fresh conversation with `request`'s system prompt and options and
/// `description` as the only user message.
pub fn second_code_request(request: &ChatRequest, description: &str) -> ChatRequest {
    ChatRequest {
        system: request.system.clone(),
        messages: vec![Message::user(description)],
        options: request.options.clone(),
    }
}

/// The synthesis call's user message: the original `question`, both codes, and the request for
/// one final version, code only.
pub fn synthesis_prompt(question: &str, first: &str, second: &str) -> String {
    format!(
        "Original question:\n{question}\n\n\
         First version of the code:\n```\n{first}\n```\n\n\
         Second version of the code, written again from a description of the first:\n\
         ```\n{second}\n```\n\n\
         The two versions differ. Based on the original question and both versions, write one \
         final, correct version of the code. Reply with the code only, in one fenced code block."
    )
}

/// The description step's note: whether the round trip agreed, then what was unusual about the
/// replies (a blank description, a reply without a fenced block).
fn round_trip_note(
    agreed: bool,
    blank_description: bool,
    first: CodeSource,
    second: CodeSource,
) -> String {
    let mut notes = vec![if agreed {
        "round trip agreed: the codes are the same after normalisation; the first answer stands"
    } else {
        "round trip disagreed: the codes differ (or one is empty); the synthesis answers"
    }];
    if blank_description {
        notes.push("the description was blank, so the second code answers the question");
    }
    if first == CodeSource::RawText {
        notes.push("the first reply has no fenced code block, so all of it is its code");
    }
    if second == CodeSource::RawText {
        notes.push("the second reply has no fenced code block, so all of it is its code");
    }
    notes.join("; ")
}

/// Round-trip optimisation over an inner client (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) when the temperature is invalid.
pub type RoundTrip<C> = StrategyClient<RoundTripConfig, C>;

impl Algorithm for RoundTripConfig {
    const NAME: &'static str = "rto";

    fn validate(&self) -> Result<()> {
        check_temperature("temperature", self.temperature)
    }

    /// Writes, describes, rewrites and (when the codes differ) reconciles; returns the trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let question = question(&request, Self::NAME)?;
        let options = fill_temperature(&request.options, self.temperature);
        let request = request.with_options(options.clone());

        let first = calls.named("first code", request.clone()).await?;
        let first_code = round_trip_code(&first.text);
        let description_request = description_request(request.clone(), &first.text);
        let description = calls
            .step("description".into(), description_request)
            .await?;
        let blank_description = description.text.trim().is_empty();
        let second_prompt = if blank_description {
            question.as_str()
        } else {
            description.text.trim()
        };
        let second_request = second_code_request(&request, second_prompt);
        let second = calls.named("second code", second_request).await?;
        let second_code = round_trip_code(&second.text);
        let agreed = codes_agree(&first_code.code, &second_code.code);
        tracing::debug!(strategy = Self::NAME, agreed, "round trip compared");
        let note = round_trip_note(
            agreed,
            blank_description,
            first_code.source,
            second_code.source,
        );
        let step = description.noted(note);

        let mut candidates = vec![
            Candidate::generated(options.clone(), first),
            Candidate::generated(options.clone(), second),
        ];
        let winner = if agreed {
            0
        } else {
            let prompt = synthesis_prompt(&question, &first_code.code, &second_code.code);
            let synthesis_request = rewrite_last_user_message(request, Self::NAME, |_| prompt)?;
            let synthesis = calls.final_call("synthesis", synthesis_request).await?;
            candidates.push(Candidate::generated(options, synthesis));
            2
        };
        let steps = vec![step];
        calls.finish(candidates, winner, steps, &[])
    }
}

impl Configured for RoundTripConfig {}

#[cfg(test)]
#[path = "rto_tests.rs"]
mod tests;
