//! Code in model answers: fenced blocks, extraction of the function asked for, normalisation for comparing answers.

use serde::{Deserialize, Serialize};
pub mod examples;

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

/// Code normalised for comparing answers: comments dropped, whitespace runs collapsed to one
/// space, string and character literals kept verbatim.
///
/// Two answers that differ only in comments, indentation or blank lines normalise to the same
/// string; `"http://x"` stays intact because `//` inside a literal is not a comment.
pub fn normalize_code(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    let mut pending_space = false;
    let push = |out: &mut String, c: char, pending: &mut bool| {
        if *pending && !out.is_empty() {
            out.push(' ');
        }
        *pending = false;
        out.push(c);
    };
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        break;
                    }
                }
                pending_space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut depth = 1;
                let mut previous = ' ';
                for next in chars.by_ref() {
                    match (previous, next) {
                        ('*', '/') => {
                            depth -= 1;
                            previous = ' ';
                            if depth == 0 {
                                break;
                            }
                            continue;
                        }
                        ('/', '*') => {
                            depth += 1;
                            previous = ' ';
                            continue;
                        }
                        _ => {}
                    }
                    previous = next;
                }
                pending_space = true;
            }
            '"' => {
                push(&mut out, c, &mut pending_space);
                let mut escaped = false;
                for next in chars.by_ref() {
                    out.push(next);
                    match next {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
            }
            '\'' => {
                // A character literal ('x', '\n', '"'); otherwise a lifetime, kept as is.
                push(&mut out, c, &mut pending_space);
                let mut lookahead = chars.clone();
                let literal_len = match (lookahead.next(), lookahead.next(), lookahead.next()) {
                    (Some('\\'), Some(_), _) => lookahead_len_to_quote(&chars),
                    (Some(_), Some('\''), _) => Some(2),
                    _ => None,
                };
                for _ in 0..literal_len.unwrap_or(0) {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
            }
            c if c.is_whitespace() => pending_space = true,
            c => push(&mut out, c, &mut pending_space),
        }
    }
    out
}

/// For an escaped character literal after its opening quote (`\n'`, `\u{41}'`), how many
/// characters up to and including the closing quote.
fn lookahead_len_to_quote(chars: &std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut count = 0;
    let mut lookahead = chars.clone();
    lookahead.next();
    count += 1;
    for next in lookahead.take(12) {
        count += 1;
        if next == '\'' {
            return Some(count);
        }
    }
    None
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
    fn fenced_blocks_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("no code here", None),
            ("```rust\nfn a() {}\n```\n", Some("fn a() {}\n")),
            ("Here:\n```\nx\n```\nand\n```\ny\n```", Some("x\n")),
            ("  ```rust\n  fn a() {}\n  ```", Some("  fn a() {}\n")),
            ("````\n```\ninner\n```\n````\n", Some("```\ninner\n```\n")),
            ("```rust\nfn cut_off(", Some("fn cut_off(")),
            ("```rust", Some("")),
            ("```\n```", Some("")),
            ("inline `code` only", None),
        ];
        for &(text, expected) in cases {
            assert_eq!(fenced_blocks(text).first().copied(), expected, "{text:?}");
        }
        assert_eq!(fenced_blocks("```\na\n```\n```\nb\n```"), ["a\n", "b\n"]);
    }

    #[test]
    fn normalisation_keeps_literals() {
        let cases: &[(&str, &str)] = &[
            ("let s = \"http://x\"; // trailing", "let s = \"http://x\";"),
            ("let s = \"a  /* b */\";", "let s = \"a  /* b */\";"),
            (
                "let q = '\"'; let t = \"x\";  // c",
                "let q = '\"'; let t = \"x\";",
            ),
            (
                "let e = \"say \\\"hi\\\" // no\";",
                "let e = \"say \\\"hi\\\" // no\";",
            ),
            (
                "fn f<'a>(x: &'a str) -> &'a str { x }",
                "fn f<'a>(x: &'a str) -> &'a str { x }",
            ),
            ("let n = '\\n';   let m = 1;", "let n = '\\n'; let m = 1;"),
            ("/* outer /* nested */ still */ fn a() {}", "fn a() {}"),
            ("", ""),
        ];
        for &(code, expected) in cases {
            assert_eq!(normalize_code(code), expected, "{code:?}");
        }
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
