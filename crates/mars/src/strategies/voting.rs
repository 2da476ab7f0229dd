//! Majority voting over normalised answers: answer keys, code-block extraction and the tally.
//!
//! Two answers vote together when their keys are equal. For prose the key is the text lowercased
//! with whitespace collapsed and trailing punctuation removed; for code it is the code of the
//! first fenced block with comments removed and runs of whitespace collapsed
//! ([`crate::code::normalize_code`]), so that answers differing only in layout or comments agree.
//! [`AnswerKey::FinalAnswer`] compares only the final answer of a worked solution
//! ([`final_answer`]: a `\boxed{}` value, else the code of the first fenced block, else what
//! follows "the answer is", else the last line), as self-consistency does.

use std::fmt;
use std::sync::Arc;

use crate::code::{fenced_blocks, normalize_code};

/// How an answer is turned into the key that votes are counted over.
#[derive(Clone, Default)]
pub enum AnswerKey {
    /// The normalised code of the first fenced block when the answer has one, else the
    /// normalised text.
    #[default]
    Auto,
    /// The normalised text (see [`normalise_text`]), even when the answer contains code.
    Text,
    /// The normalised code (see [`normalize_code`]) of the first fenced block, or of the whole
    /// answer when it has no fenced block.
    Code,
    /// The answer's [`final_answer`], normalised: a `\boxed{}` value first (so a worked maths
    /// solution that shows a code snippet still votes on its boxed result), else the normalised
    /// code of the first fenced block (as [`Auto`](AnswerKey::Auto)), else the normalised text
    /// after an answer marker or of the last line, so that "The answer is 4." and `\boxed{4}`
    /// agree. Empty when [`final_answer`] is, or when it is a first code block holding only
    /// whitespace and comments.
    FinalAnswer,
    /// A caller-supplied function, e.g. one that extracts the block defining a given function.
    Custom(Arc<dyn Fn(&str) -> String + Send + Sync>),
}

impl fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnswerKey::Auto => "Auto",
            AnswerKey::Text => "Text",
            AnswerKey::Code => "Code",
            AnswerKey::FinalAnswer => "FinalAnswer",
            AnswerKey::Custom(_) => "Custom(..)",
        })
    }
}

impl AnswerKey {
    /// The key of `answer`.
    pub fn key(&self, answer: &str) -> String {
        match self {
            AnswerKey::Auto => match first_fenced_block(answer) {
                Some(code) => normalize_code(code),
                None => normalise_text(answer),
            },
            AnswerKey::Text => normalise_text(answer),
            AnswerKey::Code => normalize_code(first_fenced_block(answer).unwrap_or(answer)),
            AnswerKey::FinalAnswer => match final_part(answer) {
                FinalPart::Code(code) => normalize_code(code),
                FinalPart::Boxed(text) | FinalPart::Prose(text) => normalise_text(text),
            },
            AnswerKey::Custom(key) => key(answer),
        }
    }
}

/// The final answer of a worked solution, not normalised (see [`AnswerKey::FinalAnswer`]).
///
/// In order of preference: the content of the last `\boxed{...}` that closes and is not empty
/// (nested braces kept), wherever it is, even in or after a code block; else the body of the
/// first fenced code block (see [`fenced_blocks`]), verbatim; else what follows the last
/// "answer is" or "answer:" (any case, so also "The final answer is" and "**Answer:**") to the
/// end of its line, or the next non-empty line when nothing follows on it; else the last
/// non-empty line. Markdown emphasis, `$` and backticks around a boxed or prose result are
/// trimmed, and so are a trailing `.` or `!`; a marker followed by nothing but such marks
/// (`"The answer is ..."`) falls through to the last line. So it is empty exactly when the text
/// has no box and either its first code block is empty or it has no code block and every line
/// is blank or only such marks (`"..."`, `"**"`).
pub fn final_answer(text: &str) -> &str {
    match final_part(text) {
        FinalPart::Boxed(text) | FinalPart::Code(text) | FinalPart::Prose(text) => text,
    }
}

/// Where [`final_answer`] found the final answer, which decides how it is normalised.
enum FinalPart<'a> {
    /// A `\boxed{}` value.
    Boxed(&'a str),
    /// The body of the first fenced code block.
    Code(&'a str),
    /// What follows an answer marker, or the last non-empty line ("" when there is none).
    Prose(&'a str),
}

fn final_part(text: &str) -> FinalPart<'_> {
    if let Some(boxed) = last_boxed(text) {
        return FinalPart::Boxed(boxed);
    }
    if let Some(code) = first_fenced_block(text) {
        return FinalPart::Code(code);
    }
    FinalPart::Prose(
        after_last_answer_marker(text)
            .or_else(|| text.lines().rev().map(trim_answer).find(|l| !l.is_empty()))
            .unwrap_or(""),
    )
}

/// The content of the last non-empty `\boxed{...}` with balanced braces.
fn last_boxed(text: &str) -> Option<&str> {
    const OPEN: &str = "\\boxed{";
    text.rmatch_indices(OPEN).find_map(|(at, _)| {
        let start = at + OPEN.len();
        let mut depth = 1usize;
        for (offset, c) in text[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        let content = trim_answer(&text[start..start + offset]);
                        return (!content.is_empty()).then_some(content);
                    }
                }
                _ => {}
            }
        }
        None
    })
}

/// What follows the last answer marker, on its line or, when that is empty, on the next
/// non-empty line.
fn after_last_answer_marker(text: &str) -> Option<&str> {
    const MARKERS: [&str; 2] = ["answer is", "answer:"];
    let bytes = text.as_bytes();
    let is_word = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric());
    // Markers are ASCII, so every match starts and ends on a character boundary.
    let end = (0..bytes.len()).rev().find_map(|at| {
        MARKERS.iter().find_map(|marker| {
            let end = at + marker.len();
            let matched = bytes
                .get(at..end)
                .is_some_and(|b| b.eq_ignore_ascii_case(marker.as_bytes()));
            let bounded = (at == 0 || !is_word(at - 1)) && (marker.ends_with(':') || !is_word(end));
            (matched && bounded).then_some(end)
        })
    })?;
    let mut lines = text[end..].lines();
    let rest = lines.next().map(trim_answer).unwrap_or("");
    if !rest.is_empty() {
        return Some(rest);
    }
    lines.map(trim_answer).find(|l| !l.is_empty())
}

/// `answer` without surrounding whitespace, emphasis, `$`, backticks, a leading `:` and a
/// trailing `.` or `!`.
fn trim_answer(answer: &str) -> &str {
    answer
        .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '_' | '$' | '`' | ':'))
        .trim_end_matches(|c: char| {
            c.is_whitespace() || matches!(c, '*' | '_' | '$' | '`' | '.' | '!')
        })
}

/// The body of the first fenced code block; see [`fenced_blocks`].
pub fn first_fenced_block(text: &str) -> Option<&str> {
    fenced_blocks(text).first().copied()
}

/// Prose lowercased, with whitespace runs collapsed to one space and trailing `.`, `!` and
/// whitespace removed.
pub fn normalise_text(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .to_lowercase()
        .trim_end_matches(['.', '!', ' '])
        .to_owned()
}

/// The result of a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Index of the chosen answer.
    pub winner: usize,
    /// For each answer, how many answers share its key (0 for answers that did not vote).
    pub votes: Vec<usize>,
}

/// Chooses the answer whose key is most common.
///
/// `keys[i]` is `None` for an answer that does not vote (a dropped candidate). Ties between keys
/// go to the key whose first occurrence comes first; the winner is that first occurrence. An
/// empty key (an empty answer) wins only when no answer has a non-empty key. `None` when no
/// answer votes.
pub fn majority(keys: &[Option<&str>]) -> Option<Tally> {
    let votes: Vec<usize> = keys
        .iter()
        .map(|key| match key {
            Some(key) => keys.iter().filter(|k| **k == Some(*key)).count(),
            None => 0,
        })
        .collect();
    let mut best: Option<usize> = None;
    for (index, key) in keys.iter().enumerate() {
        let Some(key) = key else { continue };
        let rank = |i: usize, k: &str| (!k.is_empty(), votes[i]);
        let better = match best.and_then(|b| keys[b].map(|k| (b, k))) {
            None => true,
            // Strictly better only: on a tie the earlier answer stays.
            Some((b, best_key)) => rank(index, key) > rank(b, best_key),
        };
        if better {
            best = Some(index);
        }
    }
    best.map(|winner| Tally { winner, votes })
}

#[cfg(test)]
#[path = "voting_tests.rs"]
mod tests;
