//! The grading harness around a task's tests: std's macros pinned to absolute paths, the
//! answer's crate-level attributes dealt with, and per-test evidence that a test passed.
//!
//! Everything here is a pure function of trusted text (a task's tests) or a split of untrusted
//! text (the answer) at token boundaries; nothing runs. [`pin_std_paths`] is the rewrite that
//! keeps an answer's `macro_rules! assert_eq` (or `vec`, `panic`, ...) away from the tests.
//! [`seal`] wraps the pinned tests in a module whose name the answer cannot know and makes each
//! test write `MARS-PASS <index> <token>` to stderr once its body has returned normally. The
//! tokens are random per grading and appear in the binary only as two XOR halves, so a pass
//! needs, for every expected test, the token that only that test's completion prints. The
//! reporter and the token tables are named after the secret module too, so test code inside
//! the seal (model-written tests, which `use super::*`) cannot name them to report for another
//! test.

mod lex;

use std::fmt::Write as _;

use self::lex::{Kind, Token, matching, tokens};

/// Macros of `core` that tests use, written `::core::NAME!` after [`pin_std_paths`].
const CORE_MACROS: &[&str] = &[
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "panic",
    "unreachable",
    "unimplemented",
    "todo",
    "matches",
    "write",
    "writeln",
    "format_args",
    "concat",
    "stringify",
];

/// Macros of `std` only, written `::std::NAME!`.
const STD_MACROS: &[&str] = &[
    "vec", "format", "print", "println", "eprint", "eprintln", "dbg",
];

/// Crate names that a path may start with; written with a leading `::` so that a module of
/// the answer named `std` cannot stand in for the real crate.
const CRATES: &[&str] = &["std", "core", "alloc"];

/// Rewrites `tests` (trusted text) so that std's macros and crate paths cannot be shadowed by
/// anything the answer defines: `assert_eq!(…)` becomes `::core::assert_eq!(…)`, `vec![…]`
/// becomes `::std::vec![…]`, `std::mem::swap` becomes `::std::mem::swap`.
pub fn pin_std_paths(tests: &str) -> String {
    let toks = tokens(tests);
    let mut out = String::with_capacity(tests.len() + 64);
    let mut copied = 0;
    for (n, t) in toks.iter().enumerate() {
        if t.kind != Kind::Ident {
            continue;
        }
        let word = &tests[t.start..t.end];
        let punct = |k: usize| toks.get(k).map(|t| t.kind);
        let after_path_sep = n >= 2
            && punct(n - 1) == Some(Kind::Punct(b':'))
            && punct(n - 2) == Some(Kind::Punct(b':'));
        let after_dot = n >= 1 && punct(n - 1) == Some(Kind::Punct(b'.'));
        let after_macro_rules = n >= 2
            && punct(n - 1) == Some(Kind::Punct(b'!'))
            && tests[toks[n - 2].start..toks[n - 2].end] == *"macro_rules";
        if after_path_sep || after_dot || after_macro_rules {
            continue;
        }
        let bang = punct(n + 1) == Some(Kind::Punct(b'!'));
        let path_sep =
            punct(n + 1) == Some(Kind::Punct(b':')) && punct(n + 2) == Some(Kind::Punct(b':'));
        let prefix = if bang && CORE_MACROS.contains(&word) {
            "::core::"
        } else if bang && STD_MACROS.contains(&word) {
            "::std::"
        } else if path_sep && CRATES.contains(&word) {
            "::"
        } else {
            continue;
        };
        out.push_str(&tests[copied..t.start]);
        out.push_str(prefix);
        copied = t.start;
    }
    out.push_str(&tests[copied..]);
    out
}

/// Whether `line` (a model-written test line) is self-contained: lexed with string, char and
/// comment rules, its brackets close in order and never below its start, it ends with the `;`
/// of its last statement, and no literal or comment runs past that end. A line that fails this
/// could close the test function it is placed in and add code (or tests) of its own.
pub fn is_statement_line(line: &str) -> bool {
    let line = line.trim();
    let toks = tokens(line);
    let mut open: Vec<u8> = Vec::new();
    for t in &toks {
        match t.kind {
            Kind::Punct(c @ (b'(' | b'[' | b'{')) => open.push(c),
            Kind::Punct(c @ (b')' | b']' | b'}')) => {
                let want = match c {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                if open.pop() != Some(want) {
                    return false;
                }
            }
            Kind::InnerDoc => return false,
            _ => {}
        }
    }
    open.is_empty()
        && toks
            .last()
            .is_some_and(|t| t.kind == Kind::Punct(b';') && t.end == line.len())
}

/// An answer split at the end of its leading inner attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateAttributes {
    /// `#![allow(…)]` attributes, kept: they are harmless and only legal at the crate's top.
    pub kept: Vec<String>,
    /// Every other leading inner attribute or inner doc comment (`#![no_std]`, `#![no_main]`,
    /// `#![cfg(test)]`, `#![feature(…)]`, `//!`), dropped.
    pub dropped: Vec<String>,
    /// The answer after them.
    pub rest: String,
}

/// Takes the leading inner attributes off `code` (an answer placed at the top of the crate).
/// Inner attributes further down are left alone: there they are a compile error or apply to
/// one item only.
pub fn split_crate_attributes(code: &str) -> CrateAttributes {
    let toks = tokens(code);
    let mut attrs = CrateAttributes {
        kept: Vec::new(),
        dropped: Vec::new(),
        rest: String::new(),
    };
    let mut n = 0;
    let mut end = 0;
    while n < toks.len() {
        let t = toks[n];
        if t.kind == Kind::InnerDoc {
            attrs.dropped.push(code[t.start..t.end].to_owned());
            end = t.end;
            n += 1;
            continue;
        }
        let is_inner = t.kind == Kind::Punct(b'#')
            && toks.get(n + 1).map(|t| t.kind) == Some(Kind::Punct(b'!'))
            && toks.get(n + 2).map(|t| t.kind) == Some(Kind::Punct(b'['));
        if !is_inner {
            break;
        }
        let Some(close) = matching(&toks, n + 2) else {
            break;
        };
        let text = code[t.start..toks[close].end].to_owned();
        let name = &code[toks[n + 3].start..toks[n + 3].end];
        if name == "allow" && toks[n + 3].kind == Kind::Ident {
            attrs.kept.push(text);
        } else {
            attrs.dropped.push(text);
        }
        end = toks[close].end;
        n = close + 1;
    }
    attrs.rest = code[end..].to_owned();
    attrs
}

/// One `#[test]` function found in a task's tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFn {
    /// Its path inside the tests, e.g. `mars_hidden_tests::case_0`.
    pub path: String,
    /// `#[should_panic]`: it passes by panicking.
    should_panic: bool,
    /// The written return type, if any.
    ret: Option<(usize, usize)>,
    /// Byte span of the body, braces included.
    body: (usize, usize),
    /// Where `#[test]` must be inserted (a bare `fn main` of MultiPL-E-style tests).
    add_test_attr: Option<usize>,
}

/// The `#[test]` functions of `tests`, in order, without `#[ignore]`d ones. Tests written as
/// one top-level `fn main` (no `#[test]` anywhere) count as one test named `main`.
pub fn find_tests(tests: &str) -> Vec<TestFn> {
    let toks = tokens(tests);
    let text = |t: &Token| &tests[t.start..t.end];
    let mut found = Vec::new();
    let mut modules: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    // Attributes seen since the last item: `#[test]`, `#[should_panic]`, `#[ignore]`.
    let mut pending = Attrs::default();
    let mut main_at_top = None;
    let mut n = 0;
    while n < toks.len() {
        let t = toks[n];
        match t.kind {
            Kind::Punct(b'{') => depth += 1,
            Kind::Punct(b'}') => {
                depth -= 1;
                if modules.last().is_some_and(|(_, d)| *d == depth) {
                    modules.pop();
                }
            }
            Kind::Punct(b'#') if toks.get(n + 1).map(|t| t.kind) == Some(Kind::Punct(b'[')) => {
                if let Some(close) = matching(&toks, n + 1) {
                    let inner: Vec<&str> = toks[n + 2..close].iter().map(text).collect();
                    match inner.as_slice() {
                        ["test"] => pending.test = true,
                        ["should_panic", ..] => pending.should_panic = true,
                        ["ignore", ..] => pending.ignore = true,
                        _ => {}
                    }
                    n = close + 1;
                    continue;
                }
            }
            Kind::Ident
                if matches!(
                    text(&t),
                    "struct" | "enum" | "impl" | "const" | "static" | "use"
                ) =>
            {
                pending = Attrs::default();
            }
            Kind::Ident if text(&t) == "mod" => {
                pending = Attrs::default();
                if let (Some(name), Some(brace)) = (toks.get(n + 1), toks.get(n + 2))
                    && brace.kind == Kind::Punct(b'{')
                {
                    modules.push((text(name).to_owned(), depth));
                    depth += 1;
                    n += 3;
                    continue;
                }
            }
            Kind::Ident if text(&t) == "fn" => {
                let attr = std::mem::take(&mut pending);
                let Some(name) = toks.get(n + 1) else { break };
                let Some(body) = parse_fn(&toks, n + 2) else {
                    n += 1;
                    continue;
                };
                let mut path: Vec<&str> = modules.iter().map(|(m, _)| m.as_str()).collect();
                path.push(text(name));
                let test = TestFn {
                    path: path.join("::"),
                    should_panic: attr.should_panic,
                    ret: body.ret.map(|(a, b)| (toks[a].start, toks[b].end)),
                    body: (toks[body.open].start, toks[body.close].end),
                    add_test_attr: None,
                };
                match (attr.test, attr.ignore) {
                    (true, false) => found.push(test),
                    (true, true) => {}
                    (false, _) if depth == 0 && text(name) == "main" && main_at_top.is_none() => {
                        main_at_top = Some(TestFn {
                            add_test_attr: Some(t.start),
                            ..test
                        });
                    }
                    (false, _) => {}
                }
                // Tests inside a test's body are not tests of the harness.
                n = body.close + 1;
                continue;
            }
            _ => {}
        }
        n += 1;
    }
    if found.is_empty() {
        found.extend(main_at_top);
    }
    found
}

#[derive(Debug, Default)]
struct Attrs {
    test: bool,
    should_panic: bool,
    ignore: bool,
}

struct FnShape {
    ret: Option<(usize, usize)>,
    open: usize,
    close: usize,
}

/// Parses `(params) [-> RET] { body }` from token `n` (just after the name; generics are not
/// expected in tests).
fn parse_fn(toks: &[Token], n: usize) -> Option<FnShape> {
    if toks.get(n)?.kind != Kind::Punct(b'(') {
        return None;
    }
    let params_end = matching(toks, n)?;
    let mut k = params_end + 1;
    let mut ret = None;
    if toks.get(k)?.kind == Kind::Punct(b'-') && toks.get(k + 1)?.kind == Kind::Punct(b'>') {
        let start = k + 2;
        k = start;
        let mut angle = 0i32;
        while let Some(t) = toks.get(k) {
            match t.kind {
                Kind::Punct(b'<') => angle += 1,
                Kind::Punct(b'>') => angle -= 1,
                Kind::Punct(b'{') if angle == 0 => break,
                Kind::Punct(b'(' | b'[') => k = matching(toks, k)?,
                _ => {}
            }
            k += 1;
        }
        ret = Some((start, k.checked_sub(1)?));
    }
    (toks.get(k)?.kind == Kind::Punct(b'{')).then_some(())?;
    let close = matching(toks, k)?;
    Some(FnShape {
        ret,
        open: k,
        close,
    })
}

/// Tests sealed for one grading: the source to compile after the answer, the test binary's
/// arguments, and what a pass must show.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The tests wrapped in their secret module, with evidence.
    pub tests: String,
    /// libtest arguments: one thread, and exactly the expected tests (so an answer's own
    /// `#[test]`s do not run).
    pub args: Vec<String>,
    /// The expected tests' paths as the harness names them.
    pub expected: Vec<String>,
    /// The module name to cut out of details.
    pub module: String,
    tokens: Vec<u64>,
}

/// Seals pinned `tests` with `random` (at least `1 + 2 × tests` words from the OS): a module
/// name the answer cannot know, and per test a token stored as two XOR halves.
pub fn seal(tests: &str, random: &[u64]) -> Sealed {
    let found = find_tests(tests);
    let module = format!(
        "__mars_{:016x}",
        random.first().copied().unwrap_or_default()
    );
    let count = found.len();
    let tokens: Vec<u64> = (0..count).map(|i| word(random, 1 + i)).collect();
    let masks: Vec<u64> = (0..count).map(|i| word(random, 1 + count + i)).collect();
    let halves: Vec<u64> = tokens.iter().zip(&masks).map(|(t, m)| t ^ m).collect();

    // Everything is inserted without newlines, so line numbers in panics match the task's
    // own assembly.
    let mut out = format!("mod {module} {{ use super::*; ");
    let mut copied = 0;
    for (i, test) in found.iter().enumerate() {
        if let Some(at) = test.add_test_attr {
            out.push_str(&tests[copied..at]);
            out.push_str("#[test] ");
            copied = at;
        }
        let (open, close) = test.body;
        let ret = test.ret.map_or("()", |(a, b)| &tests[a..b]);
        out.push_str(&tests[copied..open]);
        if test.should_panic {
            let _ = write!(
                out,
                "{{ match ::std::panic::catch_unwind(::core::panic::AssertUnwindSafe(move || -> {ret} "
            );
            out.push_str(&tests[open..close]);
            let _ = write!(
                out,
                ")) {{ ::core::result::Result::Ok(r) => r, ::core::result::Result::Err(p) => \
                 {{ crate::{module}::{module}_report({i}, &()); ::std::panic::resume_unwind(p) }} }} }}"
            );
        } else {
            let _ = write!(out, "{{ let {module}_r = (move || -> {ret} ");
            out.push_str(&tests[open..close]);
            let _ = write!(
                out,
                ")(); crate::{module}::{module}_report({i}, &{module}_r); {module}_r }}"
            );
        }
        copied = close;
    }
    out.push_str(&tests[copied..]);
    let list = |values: &[u64]| {
        values
            .iter()
            .map(|v| format!("0x{v:016x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        out,
        "\nstatic {module}_a: [u64; {count}] = [{}];\n\
         static {module}_m: [u64; {count}] = [{}];\n\
         trait {module}_ok_t {{ fn {module}_ok(&self) -> bool; }}\n\
         impl {module}_ok_t for () {{ fn {module}_ok(&self) -> bool {{ true }} }}\n\
         impl<T, E> {module}_ok_t for ::core::result::Result<T, E> {{ fn {module}_ok(&self) -> bool {{ self.is_ok() }} }}\n\
         fn {module}_report(i: usize, outcome: &dyn {module}_ok_t) {{\n\
         if !outcome.{module}_ok() {{ return; }}\n\
         let t = ::core::hint::black_box({module}_a[i]) ^ ::core::hint::black_box({module}_m[i]);\n\
         let line = ::std::format!(\"\\nMARS-PASS {{}} {{:016x}}\\n\", i, t);\n\
         let _ = ::std::io::Write::write_all(&mut ::std::io::stderr(), line.as_bytes());\n\
         }}\n}}\n",
        list(&halves),
        list(&masks)
    );
    let expected: Vec<String> = found
        .iter()
        .map(|t| format!("{module}::{}", t.path))
        .collect();
    let mut args = vec!["--test-threads=1".to_owned(), "--exact".to_owned()];
    args.extend(expected.iter().cloned());
    Sealed {
        tests: out,
        args,
        expected,
        module,
        tokens,
    }
}

fn word(random: &[u64], i: usize) -> u64 {
    random.get(i).copied().unwrap_or_default()
}

/// What the evidence on a test binary's stderr shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Every expected test reported, each with its token.
    Complete,
    /// `reported` of the `expected` tests reported.
    Missing {
        /// Tests that reported.
        reported: usize,
        /// Tests expected.
        expected: usize,
    },
    /// A report carried a wrong token or named no expected test: written by the answer.
    Forged,
}

impl Sealed {
    /// Which expected tests reported a pass with their own token in `stderr`, in order; a line
    /// with a wrong token counts for no test.
    pub fn passed(&self, stderr: &str) -> Vec<bool> {
        let mut seen = vec![false; self.tokens.len()];
        for (index, token) in pass_lines(stderr) {
            if let (Some(i), Some(t)) = (index, token)
                && self.tokens.get(i) == Some(&t)
                && let Some(slot) = seen.get_mut(i)
            {
                *slot = true;
            }
        }
        seen
    }

    /// Checks the `MARS-PASS` lines of `stderr`.
    pub fn evidence(&self, stderr: &str) -> Evidence {
        let mut seen = vec![false; self.tokens.len()];
        for (index, token) in pass_lines(stderr) {
            match (index, token) {
                (Some(i), Some(t)) if self.tokens.get(i) == Some(&t) => seen[i] = true,
                _ => return Evidence::Forged,
            }
        }
        let reported = seen.iter().filter(|s| **s).count();
        if reported == self.tokens.len() && reported > 0 {
            Evidence::Complete
        } else {
            Evidence::Missing {
                reported,
                expected: self.tokens.len(),
            }
        }
    }
}

/// The `MARS-PASS <index> <token>` lines of `stderr`, each as its index and token where they
/// parse (a field that does not parse is `None`, for the caller to judge).
fn pass_lines(stderr: &str) -> impl Iterator<Item = (Option<usize>, Option<u64>)> + '_ {
    stderr.lines().filter_map(|line| {
        let rest = line.trim().strip_prefix("MARS-PASS")?;
        let mut fields = rest.split_ascii_whitespace();
        let index = fields.next().and_then(|i| i.parse::<usize>().ok());
        let token = fields.next().and_then(|t| u64::from_str_radix(t, 16).ok());
        Some((index, token))
    })
}

#[cfg(test)]
#[path = "harness_tests.rs"]
mod tests;
