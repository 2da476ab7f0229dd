//! Examples from a prompt: the visible examples of the function a prompt asks for, as checks.
//!
//! A prompt that asks for a Rust function often shows how the function should behave: a
//! `>>> f(x)` line followed by the result (MultiPL-E, HumanEval), `assert_eq!(f(x), y)` in a doc
//! comment, `f(x) == y` or `f(x) -> y`, or a sentence such as "`f(2)` returns `4`".
//! [`find_examples`] finds these for one entry point wherever they are written (`//`, `///`,
//! `//!` and `/* */` comments, fenced blocks, list items, plain lines), and [`render_tests`]
//! turns them into a test module that is compiled with a candidate answer.
//!
//! An example is kept only when its call and its expected value both parse as Rust expressions
//! (`syn`) and name nothing the prompt leaves undefined. Whatever was written like an example
//! but fails those checks is reported in [`PromptExamples::skipped`], never guessed at; a call
//! with no expectation after it (recursion in a code body, a signature) is not an example at all.
//! Macros inside expressions (`vec![a, b]`, `format!("{}", x)`) are checked too: their bodies
//! are read as comma-separated expressions (or `value; count`), and a body that reads as
//! neither is accepted as it is.

use std::collections::HashSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};

mod names;
mod scan;

use names::Names;
use scan::*;

/// How an example was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExampleForm {
    /// A `>>> f(x)` line with the expected value on the next non-empty line.
    Doctest,
    /// `assert_eq!(f(x), y)`, either way round.
    AssertEq,
    /// `assert!(f(x))`, `assert!(!f(x))` or `assert!(f(x) == y)`.
    Assert,
    /// `f(x) == y`.
    Equals,
    /// `f(x) -> y`, `f(x) => y`, `f(x) ==> y` or an arrow character (`→`, `⇒`, `⟶`, `➞`).
    Arrow,
    /// A sentence: "`f(x)` returns `y`", "f(x) gives y.".
    Prose,
}

/// What the example expects of the call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expectation {
    /// The call equals this Rust expression.
    Equals(String),
    /// The call is true: `assert!(f(x))`.
    Holds,
    /// The call is false: `assert!(!f(x))`.
    Fails,
}

/// One example of the entry point, ready to become an assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The call: a Rust expression that starts with a call of the entry point.
    pub call: String,
    /// What the call should give.
    pub expected: Expectation,
    /// How the example was written.
    pub form: ExampleForm,
    /// The 1-based line of the call in the prompt.
    pub line: usize,
}

/// Text written like an example that could not be turned into a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The example's text, trimmed, at most 200 characters.
    pub text: String,
    /// The 1-based line where it starts.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

/// The examples found in a prompt, in text order, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptExamples {
    /// The examples, each distinct call and expectation once.
    pub examples: Vec<Example>,
    /// What looked like an example but was rejected, each distinct text and reason once.
    pub skipped: Vec<Skipped>,
}

/// The examples of `entry_point` that `text` shows, in text order; see the
/// [module documentation](self) for the forms.
///
/// - A call counts only when it starts with the entry point's name at a word boundary (not
///   `my_f(`, `x.f(`, `Foo::f(` or `fn f(`), immediately followed by parentheses that balance
///   on its line (an assertion may span lines). Its arguments must not look like typed
///   parameters (`f(a: i32)`): that is a signature.
/// - In `assert_eq!` and `assert!`, the operand that starts with the call, possibly after `&`,
///   `*` or `!`, is taken whole (`assert!(f(1).is_empty())` holds); a message is ignored.
/// - An unquoted value runs to the end of its line, a comment, a `,` or `;` outside brackets,
///   a sentence's `. `, `&&`, `||` or a prose word after a complete value ("f(1) == 2 and
///   ..."); the value of "f(1) returns x" in prose must start like a value (a literal, a
///   bracket, a capitalised name, `true`, `vec!`, a path), or the sentence is not an example.
///   A call whose value closes an outer bracket (`g(f(1) == 2)`) or is followed by a block
///   (`if f(1) == 2 {`) is code, not an example.
/// - A single-segment lowercase name is a free variable and a capitalised one other than
///   `None`, `Some`, `Ok` and `Err` is undefined, unless the prompt declares it (`fn helper(`,
///   `struct Point`, `const N:`) or the expression binds it (`|x| x + 1`); either skips the
///   example, and so does an expected value that calls the entry point (a recurrence).
/// - An empty or non-identifier `entry_point` finds nothing.
pub fn find_examples(text: &str, entry_point: &str) -> PromptExamples {
    let mut result = PromptExamples::default();
    if ident_len(entry_point) != Some(entry_point.len()) {
        return result;
    }
    let prompt = Prompt::new(text, entry_point);
    // Bytes of the cleaned text that an example already covers, so no other form reads them.
    let (mut finds, mut taken) = (Vec::new(), vec![false; prompt.clean.len() + 1]);
    prompt.doctests(&mut finds, &mut taken);
    prompt.assertions(&mut finds, &mut taken);
    prompt.inline(&mut finds, &taken);
    finds.sort_by_key(|find| find.0);
    let mut seen = HashSet::new();
    for (at, text, shape) in finds {
        let line = prompt.line_of(at);
        let judged =
            shape.and_then(
                |(call, expected, form)| match prompt.judge(&call, &expected) {
                    Some(reason) => Err(reason),
                    None => Ok(Example {
                        call,
                        expected,
                        form,
                        line,
                    }),
                },
            );
        match judged {
            Ok(example) => {
                let key = match &example.expected {
                    Expectation::Equals(value) => Expectation::Equals(squash(value)),
                    other => other.clone(),
                };
                if seen.insert((squash(&example.call), key)) {
                    result.examples.push(example);
                }
            }
            Err(reason) => {
                let text = clip(&text, 200);
                if !result
                    .skipped
                    .iter()
                    .any(|s| s.text == text && s.reason == reason)
                {
                    result.skipped.push(Skipped { text, line, reason });
                }
            }
        }
    }
    result
}

impl Example {
    /// The example as one statement: `::core::assert_eq!(CALL, EXPECTED);`,
    /// `::core::assert!(CALL);` or `::core::assert!(!(CALL));`.
    pub fn assertion(&self) -> String {
        match &self.expected {
            Expectation::Equals(value) => {
                // The call as the failure message, so feedback names the example by its call.
                let message = self
                    .call
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('{', "{{")
                    .replace('}', "}}");
                format!("::core::assert_eq!({}, {value}, \"{message}\");", self.call)
            }
            Expectation::Holds => format!("::core::assert!({});", self.call),
            Expectation::Fails => format!("::core::assert!(!({}));", self.call),
        }
    }
}

/// A test module named `module` with one `#[test] fn example_N()` per example, in order, each
/// running that example's [`Example::assertion`]; the empty string when there are no examples.
pub fn render_tests(module: &str, examples: &[Example]) -> String {
    if examples.is_empty() {
        return String::new();
    }
    let mut out = format!("#[cfg(test)]\nmod {module} {{\n    use super::*;\n");
    for (index, example) in examples.iter().enumerate() {
        let assertion = example.assertion();
        out.push_str(&format!(
            "\n    #[test]\n    fn example_{index}() {{\n        {assertion}\n    }}\n"
        ));
    }
    out.push_str("}\n");
    out
}

/// The function a prompt asks for: the name of the last `fn NAME(` or `fn NAME<` the text
/// shows, anywhere (code, backticks, prose; `pub`, `async`, `const`, `unsafe` included), other
/// than `main`. When the text shows several, the last one that [`find_examples`] finds an
/// example for wins, so a helper shown after the requested function does not take its place.
/// `None` when the text shows no signature.
pub fn requested_function(text: &str) -> Option<String> {
    let names: Vec<&str> = declarations(text, "fn")
        .filter(|&(name, after)| name != "main" && after.trim_start().starts_with(['(', '<']))
        .map(|(name, _)| name)
        .collect();
    let last = *names.last()?;
    let mut tried = HashSet::new();
    let with_examples = names
        .into_iter()
        .rev()
        .filter(|name| tried.insert(*name))
        .find(|name| !find_examples(text, name).examples.is_empty());
    Some(with_examples.unwrap_or(last).to_owned())
}

/// A candidate's call, expectation and form, or why it was rejected before any parsing.
type Shape = Result<(String, Expectation, ExampleForm), String>;

/// A candidate: the offset of its call in the cleaned text, its text, its shape.
type Find = (usize, String, Shape);

fn shape(call: &str, expected: Expectation, form: ExampleForm) -> Shape {
    Ok((call.to_owned(), expected, form))
}

fn equals(value: &str) -> Expectation {
    Expectation::Equals(value.to_owned())
}

/// Comparison and arrow markers that may follow a call, longest first.
const SYMBOLS: [(&str, ExampleForm); 8] = [
    ("==>", ExampleForm::Arrow),
    ("==", ExampleForm::Equals),
    ("=>", ExampleForm::Arrow),
    ("->", ExampleForm::Arrow),
    ("→", ExampleForm::Arrow),
    ("⇒", ExampleForm::Arrow),
    ("⟶", ExampleForm::Arrow),
    ("➞", ExampleForm::Arrow),
];

/// Verbs of prose examples, `|`-separated, matched without case; each comes before any verb
/// it starts with.
const VERBS: &str = "should be equal to|should evaluate to|should return|should output|\
    should produce|should yield|should equal|should give|should be|must return|must be|\
    will return|will be|would return|would be|evaluates to|is equal to|results in|returns|\
    produces|outputs|equals|yields|gives|is";

/// The longest call or expected value that is parsed, in bytes, and its deepest bracket
/// nesting; the limits also keep a long line of unclosed calls from being read once per call.
const MAX_EXPR: usize = 4000;
const MAX_DEPTH: usize = 32;

/// Capitalised names every Rust program knows.
const PRELUDE: [&str; 4] = ["None", "Some", "Ok", "Err"];

/// The prompt with comment markers and list bullets removed from each line, so that one
/// scanner reads every container; offsets in it map back to line numbers.
struct Prompt<'a> {
    clean: String,
    lines: Vec<Range<usize>>,
    entry: &'a str,
    /// Names the prompt declares (`struct Point`, `const N:`, `fn helper(`), allowed in examples.
    defined: HashSet<&'a str>,
}

impl<'a> Prompt<'a> {
    fn new(text: &'a str, entry: &'a str) -> Self {
        let (mut clean, mut lines) = (String::with_capacity(text.len() + 1), Vec::new());
        for line in text.lines() {
            let start = clean.len();
            clean.push_str(strip_markers(line));
            lines.push(start..clean.len());
            clean.push('\n');
        }
        let keywords = [
            "fn", "struct", "enum", "union", "trait", "const", "static", "type",
        ];
        let defined = keywords
            .into_iter()
            .flat_map(|keyword| declarations(text, keyword).map(move |found| (keyword, found)))
            .filter(|&(keyword, (name, after))| match keyword {
                "fn" => after.trim_start().starts_with(['(', '<']),
                "const" | "static" => after.trim_start().starts_with(':'),
                "type" => after.trim_start().starts_with(['=', '<']),
                _ => name.starts_with(char::is_uppercase),
            })
            .map(|(_, (name, _))| name)
            .collect();
        Prompt {
            clean,
            lines,
            entry,
            defined,
        }
    }

    fn line_of(&self, at: usize) -> usize {
        self.lines.partition_point(|line| line.start <= at).max(1)
    }

    /// `>>> CALL` lines, each with the next non-empty line as the expected value.
    fn doctests(&self, finds: &mut Vec<Find>, taken: &mut [bool]) {
        for (index, range) in self.lines.iter().enumerate() {
            let line = &self.clean[range.clone()];
            let Some(rest) = line.strip_prefix(">>>") else {
                continue;
            };
            let call = code_value(rest);
            if !starts_with_call(call, self.entry) {
                continue;
            }
            let at = range.start + line.len() - rest.trim_start().len();
            take(taken, range.clone());
            match self.lines[index + 1..].iter().find(|next| !next.is_empty()) {
                Some(next) if !self.clean[next.clone()].starts_with(">>>") => {
                    take(taken, next.clone());
                    let value = &self.clean[next.clone()];
                    let found = shape(call, equals(code_value(value)), ExampleForm::Doctest);
                    finds.push((at, format!("{line}\n{value}"), found));
                }
                _ => {
                    let why = "no expected value follows the `>>>` line";
                    finds.push((at, line.to_owned(), Err(why.to_owned())));
                }
            }
        }
    }

    /// `assert_eq!(..)` and `assert!(..)`, optionally path-qualified, possibly over several lines.
    fn assertions(&self, finds: &mut Vec<Find>, taken: &mut [bool]) {
        let s = self.clean.as_str();
        for (at, _) in s.match_indices("assert") {
            if taken.get(at) == Some(&true)
                || s[..at].chars().next_back().is_some_and(is_ident_char)
            {
                continue;
            }
            let rest = &s[at + "assert".len()..];
            let (is_eq, after) = match (rest.strip_prefix("_eq!"), rest.strip_prefix('!')) {
                (Some(after), _) => (true, after),
                (None, Some(after)) => (false, after),
                (None, None) => continue,
            };
            let open = s.len() - after.trim_start().len();
            if !s[open..].starts_with('(') {
                continue;
            }
            let Some(close) = close_bracket(s, open, true) else {
                let end = line_end(s, open);
                if mentions_call(&s[open..end], self.entry) {
                    take(taken, at..end);
                    let why = "the assertion's parentheses do not close".to_owned();
                    finds.push((at, s[at..end].to_owned(), Err(why)));
                }
                continue;
            };
            take(taken, at..close + 1);
            let args = split_args(s, open + 1, close);
            let found = match (is_eq, args.first()) {
                (true, _) => self.assert_eq_shape(s, &args),
                (false, Some(cond)) => self.assert_shape(s, cond.clone()),
                (false, None) => None,
            };
            if let Some((call_at, found)) = found {
                finds.push((call_at, s[at..=close].to_owned(), found));
            }
        }
    }

    fn assert_eq_shape(&self, s: &str, args: &[Range<usize>]) -> Option<(usize, Shape)> {
        let texts: Vec<&str> = args.iter().map(|arg| &s[arg.clone()]).collect();
        let side = texts
            .iter()
            .take(2)
            .position(|text| self.is_call_side(text))?;
        let at = args.get(side)?.start;
        Some(match (texts.get(side), texts.get(1 - side)) {
            (Some(call), Some(value)) => (at, shape(call, equals(value), ExampleForm::AssertEq)),
            _ => (at, Err("`assert_eq!` needs two arguments".to_owned())),
        })
    }

    /// `assert!(A == B)` with the call on either side, `assert!(!CALL)` and `assert!(CALL)`;
    /// `syn` decides which operator is outermost when the condition parses.
    fn assert_shape(&self, s: &str, cond: Range<usize>) -> Option<(usize, Shape)> {
        let text = &s[cond.clone()];
        let found = |at, call: &str, expected| {
            Some((cond.start + at, shape(call, expected, ExampleForm::Assert)))
        };
        let parsed = parse_expr(text).ok();
        let outer_eq =
            |e: &syn::Expr| matches!(e, syn::Expr::Binary(b) if matches!(b.op, syn::BinOp::Eq(_)));
        if let Some(eq) = first_top_eq(text).filter(|_| parsed.as_ref().is_none_or(outer_eq)) {
            let (lhs, rhs) = (
                trim_range(text, 0..eq),
                trim_range(text, eq + 2..text.len()),
            );
            let (call, value) = match self.is_call_side(&text[lhs.clone()]) {
                true => (lhs, rhs),
                false if self.is_call_side(&text[rhs.clone()]) => (rhs, lhs),
                false => return None,
            };
            return found(call.start, &text[call], equals(&text[value]));
        }
        let outer_not =
            |e: &syn::Expr| matches!(e, syn::Expr::Unary(u) if matches!(u.op, syn::UnOp::Not(_)));
        let negated = parsed.as_ref().is_none_or(outer_not);
        match text.strip_prefix('!').map(str::trim_start) {
            Some(inner) if negated && starts_with_call(inner, self.entry) => {
                found(text.len() - inner.len(), inner, Expectation::Fails)
            }
            _ if self.is_call_side(text) => found(0, text, Expectation::Holds),
            _ => None,
        }
    }

    /// Whether an assertion's operand is the call: it starts with the entry point's call,
    /// possibly after `&`, `*` or `!`.
    fn is_call_side(&self, text: &str) -> bool {
        let text = text.trim_start_matches(|c: char| "&*!".contains(c) || c.is_whitespace());
        starts_with_call(text, self.entry)
    }

    /// Calls followed on their line by a comparison, an arrow or a prose verb.
    fn inline(&self, finds: &mut Vec<Find>, taken: &[bool]) {
        let (s, entry) = (self.clean.as_str(), self.entry);
        // The current line, the backticks on it before `ticks_at`, and where the rest of it
        // has no comparison or arrow: kept as the scan moves on, so a long line is read once.
        let (mut from, mut end, mut ticks_at, mut ticks, mut quiet) = (0, 0, 0, 0, usize::MAX);
        while let Some(found) = s.get(from..).and_then(|rest| rest.find(entry)) {
            let at = from + found;
            from = at + entry.len();
            if taken.get(at) == Some(&true) || !is_call_start(s, at, entry) {
                continue;
            }
            if at > end || end == 0 {
                (end, ticks_at, ticks, quiet) = (
                    line_end(s, at),
                    s[..at].rfind('\n').map_or(0, |n| n + 1),
                    0,
                    usize::MAX,
                );
            }
            ticks += s[ticks_at..at].matches('`').count();
            ticks_at = at;
            let Some(close) = close_bracket(s, from, false) else {
                let rest = &s[from..end];
                let symbol = |k: usize| SYMBOLS.iter().any(|(sym, _)| rest[k..].starts_with(sym));
                if from < quiet && rest.char_indices().any(|(k, _)| symbol(k)) {
                    let why = "the call's parentheses do not balance".to_owned();
                    finds.push((at, s[at..end].to_owned(), Err(why)));
                    from = end;
                }
                quiet = quiet.min(from);
                continue;
            };
            let call = &s[at..=close];
            if looks_like_signature(&call[entry.len() + 1..call.len() - 1]) {
                continue;
            }
            let mut in_span = ticks % 2 == 1;
            let mut next = close + 1;
            if in_span && s[next..].starts_with('`') {
                (next, in_span) = (next + 1, false);
            }
            next = skip_blanks(s, next);
            let Some((form, len)) = marker(&s[next..end]) else {
                continue;
            };
            let start = skip_blanks(s, next + len);
            let quoted = !in_span && s[start..end].starts_with('`');
            let (value, resume) = if quoted {
                match s[start + 1..end].find('`') {
                    Some(k) => (&s[start + 1..start + 1 + k], start + 2 + k),
                    None => (&s[start + 1..end], end),
                }
            } else {
                match value_end(s, start, end) {
                    Some(stop) => (&s[start..stop], stop),
                    None => continue,
                }
            };
            from = resume;
            let value = trim_value(value);
            if form == ExampleForm::Prose && !quoted && !looks_like_value(value) {
                continue;
            }
            let found = match value.is_empty() {
                true => Err(format!("nothing follows `{}`", s[next..next + len].trim())),
                false => shape(call, equals(value), form),
            };
            finds.push((at, s[at..resume].to_owned(), found));
        }
    }

    /// Why the call or the expected value cannot become a check, or `None` when both can.
    fn judge(&self, call: &str, expected: &Expectation) -> Option<String> {
        let call_expr = match parse_expr(call) {
            Ok(expr) => expr,
            Err(why) => return Some(format!("the call `{}` {why}", clip(call, 60))),
        };
        let value_expr = match expected {
            Expectation::Equals(value) => match parse_expr(value) {
                Ok(expr) => Some(expr),
                Err(why) => return Some(format!("the expected value `{}` {why}", clip(value, 60))),
            },
            Expectation::Holds | Expectation::Fails => None,
        };
        if let Some(problem) = self.undefined(&Names::of(&call_expr), "the call") {
            return Some(problem);
        }
        let names = Names::of(&value_expr?);
        if names.paths.iter().any(|name| name == self.entry) {
            let entry = self.entry;
            return Some(format!(
                "the expected value calls `{entry}` itself: a recurrence, not an example"
            ));
        }
        self.undefined(&names, "the expected value")
    }

    /// The first single-segment name that nothing binds or defines, as a reason.
    fn undefined(&self, names: &Names, what: &str) -> Option<String> {
        let name = names.paths.iter().map(String::as_str).find(|&name| {
            name != self.entry
                && !names.bound.contains(name)
                && !self.defined.contains(name)
                && !PRELUDE.contains(&name)
        })?;
        Some(match name.starts_with(char::is_uppercase) {
            true => format!("{what} names `{name}`, which the prompt does not define"),
            false => format!("{what} uses the free variable `{name}`"),
        })
    }
}

#[cfg(test)]
#[path = "examples_tests.rs"]
mod tests;
