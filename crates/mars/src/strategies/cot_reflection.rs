//! CotReflection: one answer reasoned in `<thinking>`, checked in `<reflection>`, given in `<output>`.
//!
//! Source: optillm's `cot_reflection` approach (chain of thought with reflection).
//!
//! Algorithm: the caller's system prompt is extended (never replaced) with instructions to
//! reason step by step inside `<thinking>` tags, to check that reasoning inside `<reflection>`
//! tags, and to give the final answer inside `<output>` tags, and the request is answered in one
//! call. The answer is read from the reply as it arrives ([`OutputReader`]; tags in any case,
//! with spaces inside the brackets tolerated): the first `<output>` section with text that opens
//! outside `<thinking>`…`</thinking>`, trimmed, up to its `</output>`, a new `<output>` tag, or
//! the end of the reply. The strategy's stream sends that text as it is generated, holding back
//! only what may still be a tag or trailing whitespace. A reply without such a section is read
//! when it is complete, and its answer sent whole: the last complete `<output>` section with
//! text (one inside `<thinking>` included), else an unclosed one's text to the end, else the
//! whole reply, trimmed, so nothing of an answer cut off inside `<thinking>` (say by the token
//! limit) is lost. The trace keeps the raw reply as the one candidate and records how the answer
//! was extracted as an `"extract output"` [`Step`] that made no call (zero tokens) and whose note
//! says which rule applied.
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
    /// The text of an `<output>` section that ends with a tag: the first with text outside
    /// `<thinking>` (closed by `</output>` or by a new `<output>`), or, when there is none, the
    /// last complete one with text.
    OutputTag,
    /// An `<output>` tag that is never closed: the text after it, to the end of the reply (the
    /// first section with text outside `<thinking>`, or, when there is none and no complete
    /// section has text, the last tag's).
    UnclosedOutputTag,
    /// No `<output>` section with text: the whole reply, trimmed (thinking, reflection and
    /// any stray tags included).
    NoOutputTag,
}

impl fmt::Display for Extraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Extraction::OutputTag => "an <output> section",
            Extraction::UnclosedOutputTag => {
                "an <output> tag that is never closed: the text after it, to the end"
            }
            Extraction::NoOutputTag => "no <output> section with text: the whole reply",
        })
    }
}

/// The answer in a chain-of-thought reply, trimmed, and how it was found (see [`Extraction`]):
/// what an [`OutputReader`] given the whole reply reads.
///
/// Tags match in any case and with whitespace inside the brackets (`< OUTPUT >`, `</ output>`).
/// The first `<output>` section with text outside `<thinking>` is the answer; without one, the
/// last complete section with text (when an `<output>` tag opens again before the previous one
/// closes, the later one counts), else an unclosed one's text. Never fails: a reply without an
/// `<output>` section with text (junk, a reply cut off inside `<thinking>`) is the answer whole,
/// trimmed.
pub fn extract_output(reply: &str) -> (String, Extraction) {
    let mut reader = OutputReader::new();
    reader.push(reply);
    reader.finish()
}

/// Reads the answer of a chain-of-thought reply as the reply arrives, so that the answer can be
/// sent on before the reply is complete; [`extract_output`] is this reader given a whole reply.
///
/// [`push`](Self::push) returns the answer's text that each delta makes certain: inside the
/// first `<output>` section with text that opens outside `<thinking>`…`</thinking>`, the text
/// up to a possible tag (a `<` that may begin a tag is held back until the tag is known) and
/// without trailing whitespace (held back until more text follows). What `push` returns, joined,
/// is always the beginning of the answer [`finish`](Self::finish) gives, however the reply is
/// cut into deltas.
///
/// ```
/// use mars::strategies::cot_reflection::{Extraction, OutputReader};
///
/// let mut reader = OutputReader::new();
/// let sent: Vec<String> = ["<thinking>2 + 2 = 4</thinking><out", "put>The answer ", "is 4.</o", "utput>"]
///     .into_iter()
///     .map(|delta| reader.push(delta))
///     .collect();
/// assert_eq!(sent, ["", "The answer", " is 4.", ""]);
/// assert_eq!(reader.finish(), ("The answer is 4.".to_owned(), Extraction::OutputTag));
/// ```
#[derive(Debug, Clone, Default)]
pub struct OutputReader {
    /// The reply so far.
    reply: String,
    /// How much of `reply` has been read; the rest may be the start of a tag.
    read: usize,
    /// Whether a `<thinking>` tag is open (outside a section that may answer).
    thinking: bool,
    section: Section,
}

/// Where an [`OutputReader`] is, as to the section that answers.
#[derive(Debug, Clone, Default)]
enum Section {
    /// Outside any section that may answer.
    #[default]
    Outside,
    /// Inside an `<output>` section opened outside `<thinking>`: `answer` is its text so far
    /// (without leading whitespace), `held` the whitespace after it, not sent yet.
    Open { answer: String, held: String },
    /// The section with text ended with a tag: `answer` is the answer.
    Closed { answer: String },
}

impl OutputReader {
    /// A reader at the start of a reply.
    pub fn new() -> Self {
        OutputReader::default()
    }

    /// Reads `delta`, the next part of the reply, and returns the answer's text that it makes
    /// certain (often empty).
    pub fn push(&mut self, delta: &str) -> String {
        self.reply.push_str(delta);
        let mut sent = String::new();
        self.read_on(false, &mut sent);
        sent
    }

    /// The answer and how it was found, once the reply is complete (see [`extract_output`]).
    pub fn finish(mut self) -> (String, Extraction) {
        let mut sent = String::new();
        self.read_on(true, &mut sent);
        match self.section {
            Section::Closed { answer } => (answer, Extraction::OutputTag),
            Section::Open { answer, .. } if !answer.is_empty() => {
                (answer, Extraction::UnclosedOutputTag)
            }
            Section::Open { .. } | Section::Outside => last_output(&self.reply),
        }
    }

    /// Reads what is left of the reply, appending the answer's text it makes certain to `sent`;
    /// a possible tag cut off at the end waits for more unless the reply is `complete`.
    fn read_on(&mut self, complete: bool, sent: &mut String) {
        let OutputReader {
            reply,
            read,
            thinking,
            section,
        } = self;
        while *read < reply.len() {
            if let Section::Closed { .. } = section {
                *read = reply.len();
                return;
            }
            let rest = &reply[*read..];
            let Some(at) = rest.find('<') else {
                section.text(rest, sent);
                *read = reply.len();
                return;
            };
            section.text(&rest[..at], sent);
            *read += at;
            let rest = &reply[*read..];
            match scan_tag(rest.as_bytes()) {
                Scan::Partial if !complete => return,
                Scan::Partial | Scan::NotATag => {
                    section.text("<", sent);
                    *read += 1;
                }
                Scan::Tag { name, closing, len } => {
                    section.tag(&rest[..len], name, closing, thinking, sent);
                    *read += len;
                }
            }
        }
    }
}

impl Section {
    /// Reads `text`, which holds no tag.
    fn text(&mut self, text: &str, sent: &mut String) {
        let Section::Open { answer, held } = self else {
            return;
        };
        let text = if answer.is_empty() {
            text.trim_start()
        } else {
            text
        };
        let body = text.trim_end();
        if body.is_empty() {
            held.push_str(text);
            return;
        }
        for part in [held.as_str(), body] {
            answer.push_str(part);
            sent.push_str(part);
        }
        *held = text[body.len()..].to_owned();
    }

    /// Reads the tag `raw`, `<name>` or `</name>`; `thinking` is whether a `<thinking>` tag is
    /// open.
    fn tag(
        &mut self,
        raw: &str,
        name: TagName,
        closing: bool,
        thinking: &mut bool,
        sent: &mut String,
    ) {
        match (&*self, name) {
            (Section::Outside, TagName::Thinking) => *thinking = !closing,
            (Section::Outside, TagName::Output) => {
                if !closing && !*thinking {
                    *self = Section::Open {
                        answer: String::new(),
                        held: String::new(),
                    };
                }
            }
            (Section::Open { answer, .. }, TagName::Output) => {
                *self = match (answer.is_empty(), closing) {
                    (false, _) => Section::Closed {
                        answer: answer.clone(),
                    },
                    // A blank section is no answer; a new one may start.
                    (true, true) => Section::Outside,
                    (true, false) => Section::Open {
                        answer: String::new(),
                        held: String::new(),
                    },
                }
            }
            (Section::Open { .. }, TagName::Thinking) => self.text(raw, sent),
            (Section::Closed { .. }, _) => {}
        }
    }
}

/// A tag name the [`OutputReader`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagName {
    Output,
    Thinking,
}

/// What the text at a `<` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// `<name>` or `</name>`, `len` bytes long.
    Tag {
        name: TagName,
        closing: bool,
        len: usize,
    },
    /// Not a tag the reader reads.
    NotATag,
    /// The beginning of such a tag, cut off.
    Partial,
}

/// What `bytes`, which start with `<`, begin with: an `output` or `thinking` tag (any case,
/// whitespace inside the brackets), something else, or the beginning of such a tag.
fn scan_tag(bytes: &[u8]) -> Scan {
    let skip_space = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(1);
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i = skip_space(i + 1);
    }
    if i >= bytes.len() {
        return Scan::Partial;
    }
    for (name, word) in [(TagName::Output, "output"), (TagName::Thinking, "thinking")] {
        let word = word.as_bytes();
        let seen = &bytes[i..bytes.len().min(i + word.len())];
        if !seen.eq_ignore_ascii_case(&word[..seen.len()]) {
            continue;
        }
        if seen.len() < word.len() {
            return Scan::Partial;
        }
        let end = skip_space(i + word.len());
        return match bytes.get(end) {
            None => Scan::Partial,
            Some(b'>') => Scan::Tag {
                name,
                closing,
                len: end + 1,
            },
            Some(_) => Scan::NotATag,
        };
    }
    Scan::NotATag
}

/// The answer of a reply without an `<output>` section with text outside `<thinking>`: the last
/// complete section with text, else an unclosed one's text, else the whole reply; trimmed.
fn last_output(reply: &str) -> (String, Extraction) {
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

    /// Answers with one call, extracts the `<output>` section and returns the trace; the
    /// call is the run's final call, its `<output>` text streamed as [`OutputReader`] reads it.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let options = fill_temperature(&request.options, self.temperature);
        let mut request = append_to_system(request, &self.instructions);
        request.options = options.clone();
        let mut reader = OutputReader::new();
        let completion = calls
            .final_call_with("answer", request, |delta| reader.push(delta))
            .await?;
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
