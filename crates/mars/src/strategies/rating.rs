//! Judge ratings: the prompt that asks a model to rate an answer 0–10, and a parser for replies.
//!
//! Small models rarely answer with a bare number; they write `Rating: 8/10`, `**7**`, or a
//! sentence. [`parse_rating`] reads the rating from such replies and returns `None` for junk,
//! which the caller records as unparseable and scores 0.

use crate::client::{ChatRequest, Message, SamplingOptions};

/// The instruction sent after the candidate answer (optillm's `bon` rating prompt, adapted).
pub const DEFAULT_JUDGE_INSTRUCTION: &str = "Rate the above response on a scale from 0 to 10, \
where 0 is poor and 10 is excellent. Consider correctness, relevance and completeness. \
Respond with only a number.";

/// The judge call for one candidate: the original conversation (system prompt included), the
/// candidate as the assistant's reply, then `instruction` as a user message.
pub fn judge_request(
    request: &ChatRequest,
    candidate: &str,
    instruction: &str,
    options: SamplingOptions,
) -> ChatRequest {
    let mut messages = request.messages.clone();
    messages.push(Message::assistant(candidate));
    messages.push(Message::user(instruction));
    ChatRequest {
        system: request.system.clone(),
        messages,
        options,
    }
}

/// The lowest and highest ratings accepted.
pub const RATING_RANGE: std::ops::RangeInclusive<f64> = 0.0..=10.0;

/// Reads a 0–10 rating from a judge's reply, or `None` if there is none.
///
/// Markdown emphasis is ignored. In order of preference: a number written as a fraction of ten
/// (`7/10`, `7 out of 10`); a number following `rating`, `score` or `rate` (`Score: 6`,
/// `I would rate it 5`); the first number in 0–10 that is not part of a scale (`0 to 10`,
/// `1-10`, `scale of 10`). Negative numbers and numbers above 10 are never ratings.
pub fn parse_rating(reply: &str) -> Option<f64> {
    // ASCII-only rewrites keep byte offsets, so positions found in `text` index `reply` alike.
    let text: String = reply
        .chars()
        .map(|c| match c {
            '*' | '_' | '`' | '#' => ' ',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let numbers = scan_numbers(&text);
    let valid = |n: &Number| !n.negative && RATING_RANGE.contains(&n.value);

    if let Some(n) = numbers
        .iter()
        .find(|n| valid(n) && is_fraction_of_ten(&text[n.end..]))
    {
        return Some(n.value);
    }
    for keyword in ["rating", "score", "rate"] {
        for at in word_starts(&text, keyword) {
            let after = at + keyword.len();
            let next = numbers.iter().find(|n| n.start >= after);
            if let Some(n) =
                next.filter(|n| n.start - after <= 24 && valid(n) && !is_scale(&text, &numbers, n))
            {
                return Some(n.value);
            }
        }
    }
    numbers
        .iter()
        .find(|n| valid(n) && !is_scale(&text, &numbers, n))
        .map(|n| n.value)
}

#[derive(Debug, Clone, Copy)]
struct Number {
    value: f64,
    negative: bool,
    start: usize,
    end: usize,
}

/// Unsigned decimal numbers (`7`, `8.5`) with their byte spans; a `-` directly before a number
/// and not after a digit makes it negative.
fn scan_numbers(text: &str) -> Vec<Number> {
    let bytes = text.as_bytes();
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
        let negative = start > 0
            && bytes[start - 1] == b'-'
            && (start < 2 || !bytes[start - 2].is_ascii_digit());
        if let Ok(value) = text[start..i].parse::<f64>() {
            numbers.push(Number {
                value,
                negative,
                start,
                end: i,
            });
        }
    }
    numbers
}

/// Whether `rest` (the text after a number) starts with `/10` or `out of 10`.
fn is_fraction_of_ten(rest: &str) -> bool {
    let rest = rest.trim_start();
    let rest = if let Some(r) = rest.strip_prefix('/') {
        r
    } else if let Some(r) = rest.strip_prefix("out of") {
        r
    } else {
        return false;
    };
    let rest = rest.trim_start();
    rest.strip_prefix("10")
        .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether `n` describes the scale rather than rates: an end of a range (`0 to 10`, `1-10`), or
/// a number after `scale of`, `out of` or `/`.
fn is_scale(text: &str, numbers: &[Number], n: &Number) -> bool {
    let before = text[..n.start].trim_end();
    if before.ends_with("scale of") || before.ends_with("out of") || before.ends_with('/') {
        return true;
    }
    let is_range = |between: &str| matches!(between.trim(), "to" | "-" | "–");
    let position = numbers.iter().position(|m| m.start == n.start);
    let previous = position
        .and_then(|p| p.checked_sub(1))
        .and_then(|p| numbers.get(p));
    let next = position.and_then(|p| numbers.get(p + 1));
    previous.is_some_and(|p| is_range(&text[p.end..n.start]))
        || next.is_some_and(|m| is_range(&text[n.end..m.start]))
}

/// Byte offsets of `keyword` in `text` where it starts a word.
fn word_starts<'a>(text: &'a str, keyword: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(keyword).map(|(at, _)| at).filter(|&at| {
        !text[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
#[path = "rating_tests.rs"]
mod tests;
