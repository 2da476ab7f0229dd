//! Majority voting over normalised answers: answer keys, code-block extraction and the tally.
//!
//! Two answers vote together when their keys are equal. For prose the key is the text lowercased
//! with whitespace collapsed and trailing punctuation removed; for code it is the code of the
//! first fenced block with comments removed and runs of whitespace collapsed
//! ([`crate::code::normalize_code`]), so that answers differing only in layout or comments agree.

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
    /// A caller-supplied function, e.g. one that extracts the block defining a given function.
    Custom(Arc<dyn Fn(&str) -> String + Send + Sync>),
}

impl fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnswerKey::Auto => "Auto",
            AnswerKey::Text => "Text",
            AnswerKey::Code => "Code",
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
            AnswerKey::Custom(key) => key(answer),
        }
    }
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
mod tests {
    use super::*;

    #[test]
    fn text_normalisation() {
        let cases: &[(&str, &str)] = &[
            ("The answer is 4.", "the answer is 4"),
            ("  the   ANSWER\nis 4 !", "the answer is 4"),
            ("Paris", "paris"),
            ("...", ""),
            ("", ""),
        ];
        for &(text, expected) in cases {
            assert_eq!(normalise_text(text), expected, "{text:?}");
        }
    }

    #[test]
    fn auto_key_uses_code_when_there_is_a_block() {
        let a = "Sure!\n```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```";
        let b =
            "Here you go:\n```\n// add\nfn add(a: i32, b: i32) -> i32 { \n a + b\n}\n```\nDone.";
        assert_eq!(AnswerKey::Auto.key(a), AnswerKey::Auto.key(b));
        assert_ne!(AnswerKey::Text.key(a), AnswerKey::Text.key(b));
        assert_eq!(AnswerKey::Auto.key("Four."), "four");
        assert_eq!(AnswerKey::Code.key("x  =  1"), "x = 1");
        let custom = AnswerKey::Custom(Arc::new(|s: &str| s.len().to_string()));
        assert_eq!(custom.key("abc"), "3");
    }

    #[test]
    fn majority_picks_the_most_common_key_with_deterministic_ties() {
        type Case<'a> = (&'a [Option<&'a str>], Option<(usize, &'a [usize])>);
        let cases: &[Case] = &[
            (&[], None),
            (&[None, None], None),
            (&[Some("a")], Some((0, &[1]))),
            (&[Some("a"), Some("b"), Some("b")], Some((1, &[1, 2, 2]))),
            // A tie goes to the key seen first, represented by its first occurrence.
            (
                &[Some("b"), Some("a"), Some("a"), Some("b")],
                Some((0, &[2, 2, 2, 2])),
            ),
            (&[Some("a"), Some("b"), Some("c")], Some((0, &[1, 1, 1]))),
            // Dropped answers do not vote.
            (
                &[None, Some("x"), None, Some("y"), Some("y")],
                Some((3, &[0, 1, 0, 2, 2])),
            ),
            // Empty answers lose to any real answer, even outnumbering it.
            (&[Some(""), Some(""), Some("z")], Some((2, &[2, 2, 1]))),
            (&[Some(""), Some("")], Some((0, &[2, 2]))),
        ];
        for &(keys, expected) in cases {
            let got = majority(keys).map(|t| (t.winner, t.votes));
            let expected = expected.map(|(w, v)| (w, v.to_vec()));
            assert_eq!(got, expected, "{keys:?}");
        }
    }
}
