//! Text scanning for prompt examples: literals, brackets, argument lists, values, markers and
//! words, all by byte offset on char boundaries.

use std::ops::Range;

use super::*;

/// Where an unquoted value starting at `start` ends: at the end of the line, a comment, a
/// `,`, `;` or backtick outside brackets, a sentence's `. `, `&&` or `||`, or a prose word
/// (`and`, `if`; not a type after `as`) or `(` after a complete value. `None` when the call is
/// not an example: the value closes a bracket it did not open (the call is an argument of
/// something else), or a block follows it (`if f(1) == 2 {`, a condition in code).
pub(super) fn value_end(s: &str, start: usize, end: usize) -> Option<usize> {
    let (mut last, mut gap) = (None, false);
    for (at, c, depth) in tokens(s, start, end) {
        let next = s[at + c.len_utf8()..end].chars().next();
        let after_value = gap && last.is_some_and(ends_value);
        let stop = depth == 0
            && match c {
                ')' | ']' | '}' => return None,
                '{' if after_value && !ends_with_type_name(&s[start..at]) => return None,
                '`' | ';' | ',' => true,
                '.' => next.is_none_or(char::is_whitespace),
                '/' => next == Some('/'),
                '&' | '|' => next == Some(c) && last.is_some(),
                '#' => gap,
                '(' => after_value,
                c => {
                    after_value
                        && c.is_ascii_lowercase()
                        && is_prose_word(&s[start..at], &s[at..end])
                }
            };
        if stop {
            return Some(at);
        }
        gap = c.is_whitespace();
        last = if gap { last } else { Some(c) };
    }
    Some(end)
}

/// Characters of `s[from..to]` outside string and character literals and line comments, with
/// their offsets and bracket depths (for a closing bracket, the depth inside it). A literal or
/// a comment shows only its first character.
pub(super) fn tokens(
    s: &str,
    from: usize,
    to: usize,
) -> impl Iterator<Item = (usize, char, usize)> + '_ {
    let (mut at, mut depth, end) = (from, 0_usize, to.min(s.len()));
    std::iter::from_fn(move || {
        let c = s.get(at..end)?.chars().next()?;
        let item = (at, c, depth);
        at = match c {
            '"' | '\'' => literal_end(s, at).unwrap_or(at + 1),
            '/' if s[at + 1..].starts_with('/') => line_end(s, at).min(end),
            _ => at + c.len_utf8(),
        };
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        Some(item)
    })
}

/// The offset after the string or character literal at `at` (the end of `s` for an unclosed
/// string); `None` when no literal starts there (a lifetime, a Python `'abc'`).
pub(super) fn literal_end(s: &str, at: usize) -> Option<usize> {
    let mut chars = s.get(at..)?.char_indices();
    match chars.next()?.1 {
        '"' => {
            let mut escaped = false;
            for (k, c) in chars {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => return Some(at + k + 1),
                    _ => escaped = false,
                }
            }
            Some(s.len())
        }
        '\'' => {
            // `'x'`, or an escape (`'\n'`, `'\u{1F600}'`) closed within a few characters.
            let (_, first) = chars.next().filter(|&(_, c)| c != '\'' && c != '\n')?;
            let (skip, limit) = if first == '\\' { (1, 10) } else { (0, 1) };
            let mut rest = chars.skip(skip).take(limit);
            rest.find(|&(_, c)| c == '\'').map(|(k, _)| at + k + 1)
        }
        _ => None,
    }
}

/// The offset of the bracket that closes the one at `open`. `None` when it is not closed on
/// its line (or, with `multiline`, before a blank line), when a `;` comes first inside it, or
/// when it nests or runs further than [`parse_expr`] would accept.
pub(super) fn close_bracket(s: &str, open: usize, multiline: bool) -> Option<usize> {
    for (at, c, depth) in tokens(s, open, s.floor_char_boundary(open + MAX_EXPR)) {
        match c {
            ')' | ']' | '}' if depth <= 1 => return (depth == 1).then_some(at),
            _ if depth > MAX_DEPTH => return None,
            '\n' if !multiline || s[at + 1..].starts_with('\n') => return None,
            ';' if depth == 1 => return None,
            _ => {}
        }
    }
    None
}

/// The trimmed ranges of the comma-separated arguments in `s[from..to]`; a trailing comma
/// adds no argument.
pub(super) fn split_args(s: &str, from: usize, to: usize) -> Vec<Range<usize>> {
    let mut starts = vec![from];
    let commas = tokens(s, from, to).filter(|&(_, c, depth)| c == ',' && depth == 0);
    starts.extend(commas.map(|(at, _, _)| at + 1));
    let ends = starts.iter().skip(1).map(|&start| start - 1).chain([to]);
    let mut args: Vec<_> = starts
        .iter()
        .zip(ends)
        .map(|(&a, b)| trim_range(s, a..b))
        .collect();
    if args.last().is_some_and(Range::is_empty) {
        args.pop();
    }
    args
}

/// `range` of `s` without the whitespace at its ends.
pub(super) fn trim_range(s: &str, range: Range<usize>) -> Range<usize> {
    let text = &s[range.clone()];
    let head = text.len() - text.trim_start().len();
    range.start + head..range.start + text.trim_end().len()
}

/// The offset of the first `==` outside brackets and literals (not part of `===` or `==>`).
pub(super) fn first_top_eq(text: &str) -> Option<usize> {
    let mut tokens = tokens(text, 0, text.len());
    let found = tokens.find(|&(at, c, depth)| {
        depth == 0
            && c == '='
            && text[at..].starts_with("==")
            && !text[..at].ends_with(['=', '!', '<', '>'])
            && !text[at + 2..].starts_with(['=', '>'])
    });
    found.map(|(at, _, _)| at)
}

/// Whether the arguments of a call look like typed parameters (`a: i32, mut b: i32`): the
/// call is a signature written without `fn`, not an example.
pub(super) fn looks_like_signature(args: &str) -> bool {
    args.split(',').any(|arg| {
        let arg = arg.trim_start();
        let arg = arg.strip_prefix("mut ").unwrap_or(arg);
        arg.split_once(':').is_some_and(|(name, ty)| {
            ident_len(name.trim_end()) == Some(name.trim_end().len()) && !ty.starts_with(':')
        })
    })
}

/// The comparison, arrow or prose verb at the start of `rest`, with its length in bytes
/// (including a `:` after a verb).
pub(super) fn marker(rest: &str) -> Option<(ExampleForm, usize)> {
    if let Some(&(symbol, form)) = SYMBOLS.iter().find(|(symbol, _)| rest.starts_with(symbol)) {
        return (!rest[symbol.len()..].starts_with('=')).then_some((form, symbol.len()));
    }
    VERBS.split('|').find_map(|verb| {
        let after = rest
            .get(..verb.len())
            .filter(|head| head.eq_ignore_ascii_case(verb))?;
        match rest[after.len()..].chars().next() {
            Some(':') => Some((ExampleForm::Prose, verb.len() + 1)),
            Some(c) if !c.is_whitespace() && c != '`' => None,
            _ => Some((ExampleForm::Prose, verb.len())),
        }
    })
}

/// Whether an unquoted prose value starts like a Rust value rather than an English word, so
/// that "`count(s)` returns the number of vowels" is not taken for an example.
pub(super) fn looks_like_value(value: &str) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    let word = &value[..ident_len(value).unwrap_or(0)];
    let rest = &value[word.len()..];
    first.is_ascii_digit()
        || first.is_uppercase()
        || "-\"'[(&{".contains(first)
        || matches!(word, "true" | "false")
        || rest.starts_with('!')
        || rest.starts_with("::")
        || matches!(word, "b" | "r" | "br") && rest.starts_with(['"', '\'', '#'])
}

/// Removes comment markers (`///`, `//!`, `//`, `/*`, `*/`, a leading ` * `) and up to two
/// list bullets (`- `, `* `, `+ `, `• `, `1. `, `1) `) from a line, and trims it.
pub(super) fn strip_markers(line: &str) -> &str {
    let mut s = line.trim();
    if let Some(marker) = ["///", "//!", "//", "/**", "/*!", "/*", "*/"]
        .iter()
        .find(|m| s.starts_with(**m))
    {
        s = s[marker.len()..].trim_start();
    }
    s = s.strip_suffix("*/").unwrap_or(s).trim_end();
    for _ in 0..2 {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let numbered = (1..=3).contains(&digits).then(|| &s[digits..]);
        let rest = ["* ", "- ", "+ ", "• "]
            .iter()
            .find_map(|bullet| s.strip_prefix(bullet))
            .or_else(|| {
                numbered.and_then(|r| r.strip_prefix(". ").or_else(|| r.strip_prefix(") ")))
            })
            .or_else(|| (s == "*").then_some(""));
        match rest {
            Some(rest) => s = rest.trim_start(),
            None => break,
        }
    }
    s
}

/// `(name, text after it)` for each `keyword NAME` in `text`, the keyword at a word boundary.
pub(super) fn declarations<'t>(
    text: &'t str,
    keyword: &str,
) -> impl Iterator<Item = (&'t str, &'t str)> {
    text.match_indices(keyword).filter_map(move |(at, _)| {
        let rest = &text[at + keyword.len()..];
        let name = rest.trim_start();
        let len = ident_len(name).filter(|_| name.len() < rest.len())?;
        let bounded = !text[..at].chars().next_back().is_some_and(is_ident_char);
        bounded.then(|| (&name[..len], &name[len..]))
    })
}

/// Whether the entry point's call starts at `at`: a word boundary before it (not `.`, `::` or
/// an identifier character), `(` right after it, and no `fn` keyword in front of it.
pub(super) fn is_call_start(s: &str, at: usize, entry: &str) -> bool {
    let (before, head) = (&s[..at], s[..at].trim_end());
    let after_fn = head.len() < before.len()
        && head
            .strip_suffix("fn")
            .is_some_and(|rest| !rest.ends_with(is_ident_char));
    s[at + entry.len()..].starts_with('(')
        && !before.ends_with(|c: char| is_ident_char(c) || c == '.' || c == ':')
        && !after_fn
}

pub(super) fn starts_with_call(text: &str, entry: &str) -> bool {
    text.strip_prefix(entry)
        .is_some_and(|rest| rest.starts_with('('))
}

pub(super) fn mentions_call(text: &str, entry: &str) -> bool {
    text.match_indices(entry)
        .any(|(at, _)| is_call_start(text, at, entry))
}

/// Parses one Rust expression; rejects text too long or too deeply nested to parse safely.
///
/// `syn` recurses for each bracket, prefix operator, closure, assignment and `return`, so
/// thousands of them overflow a thread's stack; the limits leave room on a 2 MiB stack.
pub(super) fn parse_expr(text: &str) -> Result<syn::Expr, &'static str> {
    let (mut deepest, mut run, mut longest_run) = (0, 0, 0);
    let mut nesting = text.matches("return").count() + text.matches("break").count();
    for (at, c, depth) in tokens(text, 0, text.len()) {
        deepest = deepest.max(depth);
        run = match c {
            '!' | '-' | '&' | '*' => run + 1,
            c if c.is_whitespace() => run,
            _ => 0,
        };
        longest_run = longest_run.max(run);
        let assigns = c == '='
            && !text[..at].ends_with(['=', '!', '<', '>'])
            && !text[at + 1..].starts_with(['=', '>']);
        nesting += usize::from(c == '|' || assigns);
    }
    if text.len() > MAX_EXPR || deepest > MAX_DEPTH || longest_run > 32 || nesting > 48 {
        return Err("is too long or too deeply nested to check");
    }
    syn::parse_str(text).map_err(|_| "does not parse as Rust")
}

/// Text without a trailing `// comment`, trimmed, without a trailing `;`, `,`, `.` or `:`.
pub(super) fn code_value(text: &str) -> &str {
    let mut tokens = tokens(text, 0, text.len());
    let comment = tokens.find(|&(at, c, _)| c == '/' && text[at + 1..].starts_with('/'));
    trim_value(&text[..comment.map_or(text.len(), |(at, _, _)| at)])
}

pub(super) fn trim_value(text: &str) -> &str {
    text.trim()
        .trim_end_matches(['.', ',', ';', ':'])
        .trim_end()
}

/// Code without whitespace outside literals, to tell duplicate examples apart from layout.
pub(super) fn squash(code: &str) -> String {
    let (mut out, mut at) = (String::with_capacity(code.len()), 0);
    while let Some(c) = code[at..].chars().next() {
        let end = literal_end(code, at).unwrap_or(at + c.len_utf8());
        if !c.is_whitespace() {
            out.push_str(&code[at..end]);
        }
        at = end;
    }
    out
}

/// At most `max` characters of `text`, trimmed, ending with `…` when cut.
pub(super) fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text[cut..].chars().nth(1).is_some() => format!("{}…", &text[..cut]),
        _ => text.to_owned(),
    }
}

pub(super) fn take(taken: &mut [bool], range: Range<usize>) {
    if let Some(bytes) = taken.get_mut(range) {
        bytes.fill(true);
    }
}

pub(super) fn line_end(s: &str, at: usize) -> usize {
    s[at..].find('\n').map_or(s.len(), |n| at + n)
}

pub(super) fn skip_blanks(s: &str, at: usize) -> usize {
    s.len() - s[at..].trim_start_matches([' ', '\t']).len()
}

/// The byte length of the identifier `text` starts with, if any.
pub(super) fn ident_len(text: &str) -> Option<usize> {
    let first = text
        .chars()
        .next()
        .filter(|&c| c.is_alphabetic() || c == '_')?;
    let rest = text[first.len_utf8()..].find(|c: char| !is_ident_char(c));
    Some(rest.map_or(text.len(), |n| n + first.len_utf8()))
}

pub(super) fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub(super) fn ends_value(c: char) -> bool {
    is_ident_char(c) || matches!(c, ')' | ']' | '}' | '"' | '\'')
}

/// Whether `text` ends with a capitalised name, so that a `{` after it opens a struct literal.
pub(super) fn ends_with_type_name(text: &str) -> bool {
    let head = text.trim_end();
    head[head.trim_end_matches(is_ident_char).len()..].starts_with(char::is_uppercase)
}

/// Whether `text` starts with a lowercase English word that ends the value before it, in
/// `before`: any word, except a type after `as` (`1 as u8`) and `as` itself.
pub(super) fn is_prose_word(before: &str, text: &str) -> bool {
    let len = text
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(text.len());
    let after_as = before
        .trim_end()
        .strip_suffix("as")
        .is_some_and(|rest| !rest.ends_with(is_ident_char));
    len > 0 && &text[..len] != "as" && !text[len..].starts_with(is_ident_char) && !after_as
}
