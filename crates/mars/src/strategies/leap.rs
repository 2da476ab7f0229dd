//! LEAP: principles learned from the model's own mistakes on worked examples, then the question
//! answered with those principles in mind.
//!
//! Source: Zhang et al., "In-Context Principle Learning from Mistakes" (2024, arXiv:2402.05403),
//! as optillm's `leap` approach implements it.
//!
//! Algorithm: the few-shot examples come from the configuration, or one call extracts the
//! input/output examples contained in the question ([`parse_examples`]). The model answers each
//! example (concurrently, at the request's temperature or else `example_temperature`, each with
//! its own seed); an answer whose
//! final answer differs from the expected one is a mistake ([`is_mistake`]), and for each mistake
//! one call states a low-level principle that would have avoided it, then one call condenses
//! those into at most `max_principles` high-level principles ([`parse_list`]). The caller's
//! request is finally answered with the principles appended to its system prompt (a stream of
//! the strategy sends that answer as it is generated); with no example or no mistake, it is
//! answered as it is, and a zero-cost `principles` step says why.
//! An example answer cut off at the token limit before its `<output>` section is unfinished,
//! not a mistake: its step says so and no principle is learned from it. Every call is seeded:
//! with the request's seed, or `base_seed` when it has none (the examples with seeds derived
//! from it).
//!
//! Cost: 1 + e + m + (1 if m > 0) + 1 model calls for e examples and m mistakes (no extraction
//! call when examples are given; no condensing call when every principle reply is blank). The
//! example answers run concurrently, then the principle calls do, at most `concurrency` at a time.
//!
//! ```
//! use mars::strategies::{Leap, LeapConfig, leap::Example};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = ScriptedClient::from_fn(|_i, request| {
//!     let prompt = request.last_user_message().unwrap_or_default();
//!     // The principle prompt quotes the example, so it is recognised first.
//!     Turn::text(if prompt.contains("is wrong") {
//!         "Multiplication is not addition. <output>Multiply, do not add.</output>"
//!     } else if prompt.contains("Condense") {
//!         "1. Read the operator before computing."
//!     } else if prompt.contains("3 * 4") {
//!         "3 * 4 = 7 <output>7</output>" // a mistake
//!     } else {
//!         "30" // the final answer
//!     })
//! });
//! let config = LeapConfig {
//!     examples: vec![Example { question: "What is 3 * 4?".into(), answer: "12".into() }],
//!     ..LeapConfig::default()
//! };
//! let strategy = Leap::new(client, config)?;
//! let outcome = strategy.run("What is 5 * 6?".into()).await?;
//! assert_eq!(outcome.answer, "30");
//! let mut requests = strategy.inner().requests();
//! let condense = requests[2].last_user_message().unwrap();
//! assert!(condense.contains("1. Multiply, do not add."), "the learned principle is condensed");
//! let last = requests.pop().unwrap();
//! assert!(last.system.unwrap().contains("1. Read the operator before computing."));
//! assert_eq!(outcome.usage.model_calls, 1 + 1 + 1 + 1); // example, principle, condense, answer
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calls::{CallPolicy, Calls};
use super::parsing::{numbered, parse_list};
use super::request::{append_to_system, fill_temperature, rewrite_last_user_message};
use super::sampling::{DEFAULT_BASE_SEED, check_count, check_temperature, derive_seeds};
use super::trace::{Candidate, FailurePolicy, Outcome, Step};
use super::voting::normalise_text;
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{BatchRequest, ChatRequest, FinishReason, SamplingOptions};
use crate::error::{Error, Result};

/// One worked example: a question and its expected answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The question (or input).
    pub question: String,
    /// The expected answer (or output).
    pub answer: String,
}

/// Configuration of [`Leap`].
#[derive(Debug, Clone)]
pub struct LeapConfig {
    /// The worked examples to learn from (default none: they are extracted from the question);
    /// when given, the first `max_examples` are used and no extraction call is made. Questions
    /// must not be blank.
    pub examples: Vec<Example>,
    /// At most this many examples are answered (default 3); must be at least 1.
    pub max_examples: usize,
    /// Temperature of the example answers when the request sets none (default 0.7: mistakes
    /// need some sampling); the request's temperature wins.
    pub example_temperature: f32,
    /// At most this many high-level principles are kept (default 5); must be at least 1.
    pub max_principles: usize,
    /// When the request carries no seed (default 0): the seed of the extraction, principle
    /// and final calls, and the base of the example seeds.
    pub base_seed: u64,
    /// At most this many example answers, then principle calls, in flight (default 4).
    pub concurrency: NonZeroUsize,
}

impl Default for LeapConfig {
    fn default() -> Self {
        LeapConfig {
            examples: Vec::new(),
            max_examples: 3,
            example_temperature: 0.7,
            max_principles: 5,
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
        }
    }
}

/// The prompt that asks for the examples contained in `question`, as a JSON list in `<output>`
/// tags.
pub fn extraction_prompt(question: &str) -> String {
    format!(
        "Below is a query. If it contains worked examples (inputs with their expected outputs, \
         or questions with their answers), extract them. Reply with a JSON list of objects with \
         the fields \"question\" and \"answer\", inside <output></output> tags, for example \
         <output>[{{\"question\": \"...\", \"answer\": \"...\"}}]</output>. If the query \
         contains no examples, reply <output>[]</output>.\n\nQuery:\n{question}"
    )
}

/// The prompt of an example answer: the example's question, reasoning, and the final answer in
/// `<output>` tags.
pub fn example_prompt(question: &str) -> String {
    format!(
        "{question}\n\nThink step by step, then give your final answer inside <output></output> \
         tags."
    )
}

/// The prompt that asks for a low-level principle from one mistake: the question, the model's
/// reply, and the expected answer.
pub fn principle_prompt(question: &str, reply: &str, expected: &str) -> String {
    format!(
        "Question:\n{question}\n\nAn answer given to it:\n{}\n\nThat answer is wrong: the \
         correct answer is:\n{}\n\nExplain briefly what went wrong, then state one general \
         principle that would have avoided this mistake, inside <output></output> tags.",
        reply.trim(),
        expected.trim()
    )
}

/// The prompt that condenses the low-level `principles` into at most `max` high-level ones.
pub fn high_level_prompt(principles: &[String], max: usize) -> String {
    format!(
        "Here are principles learned from mistakes made on questions like the one at hand:\n{}\
         \n\nCondense them into at most {max} general, non-redundant principles for answering \
         such questions. Answer with a numbered list, one principle per item.",
        numbered(principles)
    )
}

/// What is appended to the caller's system prompt for the final answer.
pub fn principles_instruction(principles: &[String]) -> String {
    format!(
        "Keep in mind these principles, learned from mistakes on similar questions:\n{}",
        numbered(principles)
    )
}

/// The text of the last `<output>` section of `reply` (tags matched case-insensitively), up to
/// `</output>` or the end of the reply when it is not closed; `None` without an `<output>` tag.
pub fn output_section(reply: &str) -> Option<&str> {
    // ASCII lowercasing keeps byte offsets, so positions in `lower` index `reply` alike.
    let lower = reply.to_ascii_lowercase();
    let start = lower.rfind("<output>")? + "<output>".len();
    let end = lower[start..]
        .find("</output>")
        .map_or(reply.len(), |e| start + e);
    Some(&reply[start..end])
}

/// The examples in an extraction reply: the first JSON array in its `<output>` section, else
/// the first in the whole reply, that holds at least one example. An example is an object with
/// a non-blank `question` (or `input`) and an `answer` (or `output`); strings are taken as they
/// are, other values (numbers, booleans, arrays, objects) as compact JSON text (`[1,2,3]`), and
/// `null` as missing; other entries are skipped. Junk gives no examples.
pub fn parse_examples(reply: &str) -> Vec<Example> {
    output_section(reply)
        .map(first_examples)
        .filter(|examples| !examples.is_empty())
        .unwrap_or_else(|| first_examples(reply))
}

/// The examples of the first JSON array in `text` that holds any.
fn first_examples(text: &str) -> Vec<Example> {
    for (at, _) in text.match_indices('[') {
        let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
        if let Some(Ok(Value::Array(items))) = values.next() {
            let examples: Vec<Example> = items.iter().filter_map(example).collect();
            if !examples.is_empty() {
                return examples;
            }
        }
    }
    Vec::new()
}

fn example(value: &Value) -> Option<Example> {
    let field = |names: [&str; 2]| {
        names.iter().find_map(|name| match value.get(name)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    };
    let question = field(["question", "input"])?;
    let answer = field(["answer", "output"])?;
    (!question.trim().is_empty()).then_some(Example { question, answer })
}

/// The final answer in an example reply: its last `<output>` section, else its last non-empty
/// line, trimmed.
pub fn final_answer(reply: &str) -> &str {
    match output_section(reply) {
        Some(section) => section.trim(),
        None => reply
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or(""),
    }
}

/// Whether `reply` got an example wrong.
///
/// Both the reply's [`final_answer`] and `expected` are normalised with [`normalise_text`]
/// (lowercase, whitespace collapsed, trailing `.`/`!` removed) and stripped of backticks. The
/// reply is right when they are equal, or when the expected answer appears in the final answer
/// as a whole word (`"the answer is 12"` for `12`, but not `"112"`, `"-12"` or `"12.5"`).
/// An expected answer that normalises to nothing cannot be checked and counts as right.
pub fn is_mistake(reply: &str, expected: &str) -> bool {
    let key = |text: &str| normalise_text(text).trim_matches('`').trim().to_owned();
    let got = key(final_answer(reply));
    let want = key(expected);
    !(want.is_empty() || got == want || contains_word(&got, &want))
}

/// Whether `needle` occurs in `haystack` with no letter, digit, `_`, sign or decimal part
/// glued to it.
fn contains_word(haystack: &str, needle: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    // Every char boundary, not `match_indices`, which skips overlapping matches: in "-1 1 1" the
    // word "1 1" is the overlapping second match.
    let starts = haystack.char_indices().map(|(at, _)| at);
    starts
        .filter(|&at| haystack[at..].starts_with(needle))
        .any(|at| {
            let before = haystack[..at].chars().next_back();
            let mut after = haystack[at + needle.len()..].chars();
            let next = after.next();
            let before_ok = before.is_none_or(|c| !word(c) && c != '-' && c != '.');
            let after_ok = match next {
                None => true,
                Some('.') => !after.next().is_some_and(|c| c.is_ascii_digit()),
                Some(c) => !word(c),
            };
            before_ok && after_ok
        })
}

/// One low-level principle per mistake (concurrently), then the high-level principles
/// condensed from them; every call is recorded in `steps`.
async fn learn_principles(
    calls: &Calls<'_>,
    max: usize,
    request: &ChatRequest,
    mistakes: &[(usize, &Example, String)],
    steps: &mut Vec<Step>,
) -> Result<Vec<String>> {
    let mut requests = Vec::with_capacity(mistakes.len());
    for (i, example, reply) in mistakes {
        let prompt = principle_prompt(&example.question, reply, &example.answer);
        let call = rewrite_last_user_message(request.clone(), calls.strategy(), |_| prompt)?;
        requests.push((format!("principle from example {i}"), call));
    }
    let lows = calls.steps(requests).await?;
    let low_level: Vec<String> = lows
        .iter()
        .map(|s| output_section(&s.text).unwrap_or(&s.text).trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    steps.extend(lows);
    if low_level.is_empty() {
        let why = "every principle reply was blank: answered without principles";
        steps.push(skipped_step("high-level principles", why.to_owned()));
        return Ok(Vec::new());
    }

    let prompt = high_level_prompt(&low_level, max);
    let call = rewrite_last_user_message(request.clone(), calls.strategy(), |_| prompt)?;
    let step = calls.step("high-level principles".into(), call).await?;
    let mut principles = parse_list(&step.text);
    let whole = step.text.trim();
    let note = if principles.is_empty() && whole.is_empty() {
        "the reply was blank: answered without principles".to_owned()
    } else if principles.is_empty() {
        principles.push(whole.to_owned());
        "no list found: the whole reply is used as one principle".to_owned()
    } else if principles.len() > max {
        let listed = principles.len();
        principles.truncate(max);
        format!("{listed} principles listed, the first {max} kept")
    } else {
        format!("{} principles", principles.len())
    };
    steps.push(step.noted(note));
    Ok(principles)
}

/// Whether an example answer was cut off at the token limit before giving its `<output>`
/// section: it never reached a final answer, so it is neither right nor a mistake.
fn is_unfinished(step: &Step) -> bool {
    step.finish_reason == Some(FinishReason::Length) && output_section(&step.text).is_none()
}

/// A step that made no call: the trace's record of a stage that was skipped, and why.
fn skipped_step(stage: &str, why: String) -> Step {
    Step::record(stage, String::new(), why)
}

/// LEAP over an inner client (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`] when a count is 0, the temperature is invalid or an example has a
/// blank question.
pub type Leap<C> = StrategyClient<LeapConfig, C>;

impl Algorithm for LeapConfig {
    const NAME: &'static str = "leap";

    fn validate(&self) -> Result<()> {
        if self.max_examples == 0 {
            return Err(Error::InvalidConfig {
                field: "max_examples",
                reason: "LEAP needs at least one example to learn from".into(),
            });
        }
        if self.max_principles == 0 {
            return Err(Error::InvalidConfig {
                field: "max_principles",
                reason: "LEAP needs room for at least one principle".into(),
            });
        }
        check_count("max_examples", self.max_examples)?;
        check_count("max_principles", self.max_principles)?;
        check_temperature("example_temperature", Some(self.example_temperature))?;
        if let Some(i) = self
            .examples
            .iter()
            .position(|e| e.question.trim().is_empty())
        {
            return Err(Error::InvalidConfig {
                field: "examples",
                reason: format!("example {i} has a blank question"),
            });
        }
        Ok(())
    }

    /// A failed call is always an error: LEAP cannot go on without any of its steps.
    fn policy(&self) -> CallPolicy {
        CallPolicy::new(FailurePolicy::Fail, self.concurrency)
    }

    /// Learns principles from the examples, answers the request with them, and returns the
    /// trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let config = self;
        // Every call is seeded, as judge calls are, so that a run without a seed is still
        // reproducible; the example calls replace this seed with their own.
        let seed = request.options.seed.unwrap_or(config.base_seed);
        let options = SamplingOptions {
            seed: Some(seed),
            ..request.options.clone()
        };
        let request = request.with_options(options);
        let rewrite = |prompt: &dyn Fn(&str) -> String| {
            rewrite_last_user_message(request.clone(), Self::NAME, prompt)
        };
        let mut steps = Vec::new();

        let examples: Vec<Example> = if config.examples.is_empty() {
            let call = rewrite(&extraction_prompt)?;
            let step = calls.step("extract examples".into(), call).await?;
            let mut found = parse_examples(&step.text);
            let note = match found.len() {
                0 => "no examples found".to_owned(),
                n if n > config.max_examples => {
                    format!("{n} examples found, the first {} kept", config.max_examples)
                }
                n => format!("{n} examples found"),
            };
            found.truncate(config.max_examples);
            steps.push(step.noted(note));
            found
        } else {
            config
                .examples
                .iter()
                .take(config.max_examples)
                .cloned()
                .collect()
        };

        let seeds = derive_seeds(seed, examples.len());
        let mut examples_calls = Vec::with_capacity(examples.len());
        for (i, (example, seed)) in examples.iter().zip(seeds).enumerate() {
            let mut options = fill_temperature(&request.options, Some(config.example_temperature));
            options.seed = Some(seed);
            let call = rewrite(&|_| example_prompt(&example.question))?;
            examples_calls.push((format!("example {i}"), call.with_options(options)));
        }
        let answered = calls.steps(examples_calls).await?;
        let mut mistakes = Vec::new();
        let mut unfinished = 0;
        for (i, (step, example)) in answered.into_iter().zip(&examples).enumerate() {
            let got = final_answer(&step.text).to_owned();
            let note = if is_unfinished(&step) {
                unfinished += 1;
                format!(
                    "unfinished: cut off at the token limit before its <output> section \
                     (expected {:?}); no principle learned from it",
                    example.answer
                )
            } else if is_mistake(&step.text, &example.answer) {
                mistakes.push((i, example, step.text.clone()));
                format!("mistake: expected {:?}, answered {got:?}", example.answer)
            } else {
                format!("right: expected {:?}, answered {got:?}", example.answer)
            };
            steps.push(step.noted(note));
        }

        let principles = if examples.is_empty() || mistakes.is_empty() {
            let why = if examples.is_empty() {
                "no examples to learn from: answered without principles".to_owned()
            } else if unfinished > 0 {
                format!(
                    "no mistakes on the {} examples ({unfinished} unfinished): answered without \
                     principles",
                    examples.len()
                )
            } else {
                format!(
                    "no mistakes on the {} examples: answered without principles",
                    examples.len()
                )
            };
            steps.push(skipped_step("principles", why));
            Vec::new()
        } else {
            learn_principles(
                calls,
                config.max_principles,
                &request,
                &mistakes,
                &mut steps,
            )
            .await?
        };

        let final_request = if principles.is_empty() {
            request.clone()
        } else {
            append_to_system(request.clone(), &principles_instruction(&principles))
        };
        let completion = calls.final_call("final answer", final_request).await?;
        let candidates = vec![Candidate::generated(request.options.clone(), completion)];
        calls.finish(candidates, 0, steps, &[])
    }
}

impl Configured for LeapConfig {}

#[cfg(test)]
#[path = "leap_tests.rs"]
mod tests;
