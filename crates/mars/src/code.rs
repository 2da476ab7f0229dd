//! Code in model answers: fenced blocks, extraction of the function asked for, normalisation for comparing answers.

use serde::{Deserialize, Serialize};

/// Where the extracted code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSource {
    /// A fenced block that defines the entry point.
    EntryPointBlock,
    /// The first fenced block (none defines the entry point).
    FirstBlock,
    /// The whole answer (no fenced block).
    RawText,
}

/// Code extracted from an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedCode {
    /// The code.
    pub code: String,
    /// Where it came from.
    pub source: CodeSource,
}

/// The fenced code blocks of `text`, in order, without their fences.
///
/// A fence is a line starting with three or more backticks (optionally indented and followed
/// by a language tag); an unclosed last block runs to the end of the text, since small models
/// often stop before the closing fence.
pub fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize)> = None; // (content start, fence length)
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let ticks = trimmed.bytes().take_while(|&b| b == b'`').count();
        match open {
            None if ticks >= 3 => open = Some((offset + line.len(), ticks)),
            Some((start, len)) if ticks >= len && trimmed[ticks..].trim().is_empty() => {
                blocks.push(&text[start.min(offset)..offset]);
                open = None;
            }
            _ => {}
        }
        offset += line.len();
    }
    if let Some((start, _)) = open {
        blocks.push(&text[start.min(text.len())..]);
    }
    blocks
}

/// Whether `code` defines a function named `name` (`fn name(` or `fn name<`).
pub fn defines_function(code: &str, name: &str) -> bool {
    code.match_indices("fn ").any(|(i, _)| {
        let before_ok = i == 0
            || !code.as_bytes()[i - 1].is_ascii_alphanumeric() && code.as_bytes()[i - 1] != b'_';
        let rest = code[i + 3..].trim_start();
        before_ok
            && rest.starts_with(name)
            && matches!(
                rest[name.len()..].trim_start().chars().next(),
                Some('(' | '<')
            )
    })
}

/// Extracts the code of an answer that should define `entry_point`: the fenced block that
/// defines it, else the first fenced block, else the raw text. `None` when the answer is blank.
pub fn extract_code(answer: &str, entry_point: &str) -> Option<ExtractedCode> {
    let blocks = fenced_blocks(answer);
    let found = blocks
        .iter()
        .find(|b| defines_function(b, entry_point))
        .map(|b| (*b, CodeSource::EntryPointBlock))
        .or_else(|| blocks.first().map(|b| (*b, CodeSource::FirstBlock)))
        .unwrap_or((answer, CodeSource::RawText));
    let code = found.0.trim();
    (!code.is_empty()).then(|| ExtractedCode {
        code: code.to_owned(),
        source: found.1,
    })
}

/// Code normalised for comparing answers: comments dropped, whitespace collapsed.
///
/// Two answers that differ only in comments, indentation or blank lines normalise to the same
/// string. String literals are kept as they are, except that `//` inside a literal would be taken
/// for a comment (rare in answers; the cost is a missed match, not a wrong one).
pub fn normalize_code(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_block_comment = 0usize;
    for line in code.lines() {
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if in_block_comment > 0 {
                match rest.find("*/") {
                    Some(end) => {
                        in_block_comment -= 1;
                        rest = &rest[end + 2..];
                    }
                    None => break,
                }
                continue;
            }
            let line_comment = rest.find("//");
            let block_comment = rest.find("/*");
            match (line_comment, block_comment) {
                (Some(l), b) if b.is_none_or(|b| l < b) => {
                    kept.push_str(&rest[..l]);
                    break;
                }
                (_, Some(b)) => {
                    kept.push_str(&rest[..b]);
                    kept.push(' ');
                    in_block_comment += 1;
                    rest = &rest[b + 2..];
                }
                _ => {
                    kept.push_str(rest);
                    break;
                }
            }
        }
        for word in kept.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case<'a> = (&'a str, &'a str, Option<(&'a str, CodeSource)>);

    #[test]
    fn extraction_table() {
        let cases: &[Case<'_>] = &[
            (
                "Here:\n```rust\nfn add(a: i32, b: i32) -> i32 { a + b }\n```\nDone.",
                "add",
                Some((
                    "fn add(a: i32, b: i32) -> i32 { a + b }",
                    CodeSource::EntryPointBlock,
                )),
            ),
            (
                "```\nuse std::io;\n```\n```rust\nfn add(a: i32) -> i32 { a }\n```",
                "add",
                Some(("fn add(a: i32) -> i32 { a }", CodeSource::EntryPointBlock)),
            ),
            (
                "```rust\nfn other() {}\n```",
                "add",
                Some(("fn other() {}", CodeSource::FirstBlock)),
            ),
            (
                "fn add(a: i32, b: i32) -> i32 { a + b }",
                "add",
                Some((
                    "fn add(a: i32, b: i32) -> i32 { a + b }",
                    CodeSource::RawText,
                )),
            ),
            (
                "```rust\nfn add() -> u8 { 1 }",
                "add",
                Some(("fn add() -> u8 { 1 }", CodeSource::EntryPointBlock)),
            ),
            ("   \n", "add", None),
            ("```rust\n```", "add", None),
        ];
        for (answer, entry, expected) in cases {
            let got = extract_code(answer, entry);
            let expected = expected.map(|(code, source)| ExtractedCode {
                code: code.to_owned(),
                source,
            });
            assert_eq!(got, expected, "answer {answer:?}");
        }
    }

    #[test]
    fn function_definition_detection() {
        assert!(defines_function(
            "pub fn is_prime(n: u64) -> bool",
            "is_prime"
        ));
        assert!(defines_function("fn add<T>(a: T)", "add"));
        assert!(!defines_function("fn is_prime_fast(n: u64)", "is_prime"));
        assert!(!defines_function("let x = is_prime(3);", "is_prime"));
        assert!(!defines_function("myfn add(", "add"));
    }

    #[test]
    fn normalisation_ignores_comments_and_layout() {
        let a = "fn add(a: i32, b: i32) -> i32 {\n    // sum\n    a + b\n}\n";
        let b = "fn add(a: i32, b: i32) -> i32 { /* the sum */ a + b }";
        assert_eq!(normalize_code(a), normalize_code(b));
        assert_eq!(normalize_code(a), "fn add(a: i32, b: i32) -> i32 { a + b }");
        assert_ne!(
            normalize_code(a),
            normalize_code("fn add(a: i32, b: i32) -> i32 { b + a }")
        );
    }
}
