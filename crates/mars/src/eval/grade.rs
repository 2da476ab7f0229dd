//! Grading: extract the code of an answer, assemble it with a task's tests, compile and run it
//! in the sandbox, and give a verdict. Identical code is graded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::code::{CodeSource, defines_function, extract_code};
use crate::error::{Error, Result};
use crate::eval::harness;
use crate::eval::sandbox::{Execution, LimitHit, Sandbox, Termination, TestOutcome};
use crate::eval::tasks::Task;
use crate::strategies::feedback::{Feedback, TestResult};

mod feedback;

use feedback::{CodeSpan, feedback_of};

/// The verdict on one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Compiled, and every test passed.
    Pass,
    /// The answer held no code.
    NoCode,
    /// The code (with the tests) did not compile.
    CompileError,
    /// It compiled, and a test failed.
    TestFailure,
    /// Compiling or running hit a time limit.
    Timeout,
    /// The test binary died otherwise: a signal, an abort, a memory limit, an odd exit code.
    Crash,
    /// No answer to grade: the model call (or the strategy) failed.
    BackendError,
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::NoCode,
        Verdict::CompileError,
        Verdict::TestFailure,
        Verdict::Timeout,
        Verdict::Crash,
        Verdict::BackendError,
    ];

    /// The snake-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::NoCode => "no_code",
            Verdict::CompileError => "compile_error",
            Verdict::TestFailure => "test_failure",
            Verdict::Timeout => "timeout",
            Verdict::Crash => "crash",
            Verdict::BackendError => "backend_error",
        }
    }
}

/// A verdict with the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    /// The verdict.
    pub verdict: Verdict,
    /// The first error line (compiler error, failed assertion, limit), if any.
    pub detail: Option<String>,
    /// FNV-1a hash of the assembled source, hex; `None` when there was no code.
    pub code_hash: Option<String>,
    /// What a verifier may tell a strategy about the answer: only for [`Tests::Visible`]
    /// (feedback on hidden tests would leak them), `None` for [`Tests::Hidden`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
    /// How many of the tests reported a pass with their own token (0 when none ran).
    #[serde(default)]
    pub tests_passed: u32,
}

/// Which tests an answer is run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tests {
    /// The examples the prompt shows: what a verifier may use.
    Visible,
    /// The hidden tests: grading only.
    Hidden,
}

/// Grades answers in a [`Sandbox`], caching verdicts by the hash of the assembled source.
#[derive(Debug, Clone)]
pub struct Grader {
    sandbox: Sandbox,
    cache: Arc<Mutex<HashMap<u64, Arc<tokio::sync::OnceCell<Grade>>>>>,
    runs: Arc<Mutex<HashMap<u64, Arc<tokio::sync::OnceCell<TestRun>>>>>,
}

/// One compile and run of an answer with some tests: whether it compiled, and which tests
/// reported a pass with their own token.
#[derive(Debug, Clone)]
struct TestRun {
    compiled: bool,
    passed: Vec<bool>,
    /// The test binary ended as libtest ends (exit 0, or 101 for failed tests, within its
    /// limits) and every test either reported a pass or is listed as failed: no test was cut
    /// short by another one hanging, crashing or exiting.
    finished: bool,
    /// The sealed tests' paths, in order, without the secret module.
    expected: Vec<String>,
}

/// The source compiled for `code` against `tests`, as reports hash it: `#![allow(warnings)]`,
/// the answer's own `#![allow(..)]`s, the task's prelude when the code does not define the entry
/// point itself (HumanEval prompts end in an open function), the code, the braces a bare body
/// leaves open (MultiPL-E bodies end before the function's `}`), then the tests with std's
/// macros and crate paths pinned ([`harness::pin_std_paths`]).
///
/// An answer placed at the top of the crate loses its other leading inner attributes
/// (`#![no_std]`, `#![no_main]`, `#![cfg(..)]`, `#![feature(..)]`, `//!`): they would change
/// how the tests compile. Grading compiles this with the tests sealed ([`harness::seal`]).
pub fn assemble(task: &Task, code: &str, tests: Tests) -> String {
    let (head, tests, _) = assembly(task, code, tests);
    head + &tests + "\n"
}

/// [`assemble`] in two parts: everything up to the tests, and the pinned tests; and the lines
/// of the answer's code in it.
fn assembly(task: &Task, code: &str, tests: Tests) -> (String, String, CodeSpan) {
    let tests = match tests {
        Tests::Visible => &task.visible_tests,
        Tests::Hidden => &task.hidden_tests,
    };
    assembly_with(task, code, tests)
}

/// [`assembly`] with the tests given as text.
fn assembly_with(task: &Task, code: &str, tests: &str) -> (String, String, CodeSpan) {
    let mut head = String::from("#![allow(warnings)]\n");
    let start = head.len();
    let code_start;
    if !task.prelude.is_empty() && !defines_function(code, &task.entry_point) {
        head.push_str(&task.prelude);
        code_start = head.len();
        head.push_str(code);
    } else {
        let attrs = harness::split_crate_attributes(code);
        if !attrs.dropped.is_empty() {
            tracing::debug!(task = %task.id, dropped = ?attrs.dropped, "inner attributes dropped");
        }
        for kept in &attrs.kept {
            head.push_str(kept);
            head.push('\n');
        }
        code_start = head.len();
        head.push_str(&attrs.rest);
    }
    let line_at = |offset: usize| head[..offset].matches('\n').count() + 1;
    let code = CodeSpan {
        first: line_at(code_start),
        last: line_at(head.len()),
    };
    let open = open_braces(&head[start..]);
    head.push_str(&"\n}".repeat(open));
    head.push_str("\n\n");
    (head, harness::pin_std_paths(tests), code)
}

/// How many `{` of `code` stay unclosed, outside comments, strings and character literals.
fn open_braces(code: &str) -> usize {
    let bytes = code.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let skip_to = |from: usize, end: &[u8]| {
        bytes
            .get(from..)
            .unwrap_or_default()
            .windows(end.len())
            .position(|w| w == end)
            .map_or(bytes.len(), |p| from + p + end.len())
    };
    while i < bytes.len() {
        i = match bytes[i] {
            b'{' => {
                depth += 1;
                i + 1
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i + 1
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => skip_to(i, b"\n"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => skip_to(i + 2, b"*/"),
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                j + 1
            }
            // A character literal ('x', '\n', '{'); a lifetime ('a) has no closing quote.
            b'\'' => {
                let len = code[i + 1..].chars().next().map_or(1, char::len_utf8);
                match bytes.get(i + 1) {
                    Some(b'\\') => skip_to(i + 3, b"'"),
                    Some(_) if bytes.get(i + 1 + len) == Some(&b'\'') => i + 2 + len,
                    _ => i + 1,
                }
            }
            _ => i + 1,
        };
    }
    depth
}

/// 64-bit FNV-1a: a stable, dependency-free hash for cache keys and reports.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Grader {
    /// A grader over `sandbox`.
    pub fn new(sandbox: Sandbox) -> Self {
        Grader {
            sandbox,
            cache: Arc::default(),
            runs: Arc::default(),
        }
    }

    /// The sandbox in use.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Grades `answer` for `task` against `tests`.
    pub async fn grade(&self, task: &Task, answer: &str, tests: Tests) -> Result<Grade> {
        let extracted = extract_code(answer, &task.entry_point)
            // Prose without a fence and without a function is not code (unless the task's
            // prelude opens the function and the answer may be its body).
            .filter(|e| {
                e.source != CodeSource::RawText
                    || e.code.contains("fn ")
                    || !task.prelude.is_empty()
            });
        let Some(extracted) = extracted else {
            let feedback = (tests == Tests::Visible).then_some(Feedback {
                compiled: false,
                issue: Some(crate::strategies::feedback::Issue::NoCode),
            });
            return Ok(Grade {
                verdict: Verdict::NoCode,
                detail: None,
                code_hash: None,
                feedback,
                tests_passed: 0,
            });
        };
        let (head, tests_text, span) = assembly(task, &extracted.code, tests);
        let key = fnv1a(format!("{head}{tests_text}\n").as_bytes());
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.entry(key).or_default().clone()
        };
        let grade = cell
            .get_or_try_init(|| async {
                let count = harness::find_tests(&tests_text).len();
                let sealed = harness::seal(&tests_text, &random_words(1 + 2 * count)?);
                let source = format!("{head}{}\n", sealed.tests);
                // One test thread (in the sealed arguments): tests run in name order, so the
                // first failure (the verdict's detail) is the same on every run; it also stays
                // far under the sandbox's process cap.
                let outcome = if sealed.expected.is_empty() {
                    // Nothing to run: compile only; it cannot pass.
                    let mut jail = self.sandbox.jail().await?;
                    let compile = jail.compile_test(&source).await?;
                    jail.close().await?;
                    TestOutcome { compile, run: None }
                } else {
                    self.sandbox.compile_and_test(&source, &sealed.args).await?
                };
                let (verdict, detail) = judge(&outcome, &sealed);
                tracing::debug!(task = %task.id, verdict = verdict.as_str(), "graded");
                let unsealed = format!("{head}{tests_text}\n");
                // The first sealed test that did not report a pass, by its full path.
                let failed = outcome.run.as_ref().and_then(|run| {
                    let passed = sealed.passed(&run.stderr.text());
                    sealed
                        .expected
                        .iter()
                        .zip(passed)
                        .find(|(_, passed)| !passed)
                        .map(|(path, _)| path.clone())
                });
                let tests_passed = outcome.run.as_ref().map_or(0, |run| {
                    let passed = sealed.passed(&run.stderr.text());
                    passed.iter().filter(|p| **p).count() as u32
                });
                let feedback = (tests == Tests::Visible).then(|| {
                    feedback_of(
                        verdict,
                        detail.as_deref(),
                        Some(&outcome),
                        &unsealed,
                        span,
                        failed.as_deref(),
                    )
                });
                Ok::<_, crate::Error>(Grade {
                    verdict,
                    detail,
                    code_hash: Some(format!("{key:016x}")),
                    feedback,
                    tests_passed,
                })
            })
            .await?;
        Ok(grade.clone())
    }

    /// Runs `answer` against the task's visible examples and each of `extra` (test lines such
    /// as `assert_eq!(f(2), 4);`, each made a `#[test]`), and says which passed: one
    /// [`TestResult`] per test, the visible examples first. Never runs the hidden tests.
    ///
    /// The visible examples run alone first (with none, the code is only compiled); code that
    /// does not compile passes nothing. Then one compilation covers the visible examples and
    /// the extra tests, and the extra columns come from it when its sealed tests are exactly
    /// the visible examples followed by the extra ones and every one of them reported a pass or
    /// failed. Otherwise (a test that does not compile, or one that hangs, crashes or exits
    /// and cuts the run short) each extra test is compiled and run on its own, so it fails
    /// only itself. An extra line that is not one self-contained statement
    /// ([`harness::is_statement_line`]) is never run and fails. Every test is sealed with its
    /// own token ([`harness::seal`]), whose reporter test code cannot name. Identical sources
    /// run once (cached like grades).
    pub async fn run_tests(
        &self,
        task: &Task,
        answer: &str,
        extra: &[String],
    ) -> Result<Vec<TestResult>> {
        let visible: Vec<String> = harness::find_tests(&task.visible_tests)
            .iter()
            .enumerate()
            .map(|(i, _)| visible_example(task, i))
            .collect();
        let results = |passed: &[bool]| -> Vec<TestResult> {
            let names = visible.iter().map(|t| (t.clone(), true));
            let extras = extra.iter().map(|t| (t.clone(), false));
            names
                .chain(extras)
                .enumerate()
                .map(|(i, (test, visible))| TestResult {
                    test,
                    visible,
                    passed: passed.get(i).copied().unwrap_or(false),
                })
                .collect()
        };
        let code = extract_code(answer, &task.entry_point).filter(|e| {
            e.source != CodeSource::RawText || e.code.contains("fn ") || !task.prelude.is_empty()
        });
        let Some(code) = code else {
            return Ok(results(&[]));
        };
        // A line that is not one self-contained statement could close its test function and
        // add code or tests of its own: it is never run, and fails.
        let runnable: Vec<(usize, &String)> = extra
            .iter()
            .enumerate()
            .filter(|(_, t)| harness::is_statement_line(t))
            .collect();
        let visible_paths: Vec<String> = harness::find_tests(&task.visible_tests)
            .into_iter()
            .map(|t| t.path)
            .collect();
        // The visible columns come from the visible examples alone (a generated test that
        // hangs, crashes or exits cannot take them down); with no visible examples this only
        // compiles the code.
        let alone = self.run_once(task, &code.code, &task.visible_tests).await?;
        if !alone.compiled || alone.expected != visible_paths {
            return Ok(results(&[]));
        }
        let mut passed = alone.passed;
        passed.resize(visible.len(), false);
        if runnable.is_empty() {
            return Ok(results(&passed));
        }
        let together = format!("{}\n{}", task.visible_tests, generated_tests(&runnable));
        let run = self.run_once(task, &code.code, &together).await?;
        let mut expected = visible_paths;
        expected.extend(runnable.iter().map(|(i, _)| generated_path(*i)));
        // The sealed tests must be exactly the visible examples, then the generated tests, and
        // the run must have finished every one of them; else each generated test runs alone.
        if run.compiled && run.finished && run.expected == expected {
            let mut generated = run.passed.get(visible.len()..).unwrap_or_default().iter();
            let mut runnable_at = runnable.iter().map(|(i, _)| *i).peekable();
            for i in 0..extra.len() {
                passed.push(
                    runnable_at.next_if_eq(&i).is_some()
                        && generated.next().copied().unwrap_or(false),
                );
            }
            return Ok(results(&passed));
        }
        let mut runnable_at = runnable.iter().peekable();
        for i in 0..extra.len() {
            let Some((_, test)) = runnable_at.next_if(|(at, _)| *at == i) else {
                passed.push(false);
                continue;
            };
            let one = self
                .run_once(task, &code.code, &generated_tests(&[(i, test)]))
                .await?;
            passed.push(
                one.compiled
                    && one.expected == [generated_path(i)]
                    && one.passed.first().copied().unwrap_or(false),
            );
        }
        Ok(results(&passed))
    }

    /// Compiles `code` with `tests` (sealed) and runs them once; cached by source.
    async fn run_once(&self, task: &Task, code: &str, tests: &str) -> Result<TestRun> {
        let (head, tests_text, _) = assembly_with(task, code, tests);
        let key = fnv1a(format!("{head}{tests_text}\n").as_bytes());
        let cell = {
            let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
            runs.entry(key).or_default().clone()
        };
        let run = cell
            .get_or_try_init(|| async {
                let count = harness::find_tests(&tests_text).len();
                let sealed = harness::seal(&tests_text, &random_words(1 + 2 * count)?);
                let expected: Vec<String> = harness::find_tests(&tests_text)
                    .into_iter()
                    .map(|t| t.path)
                    .collect();
                let source = format!("{head}{}\n", sealed.tests);
                if sealed.expected.is_empty() {
                    // Nothing to run: compile only, as grading does.
                    let mut jail = self.sandbox.jail().await?;
                    let compile = jail.compile_test(&source).await?;
                    jail.close().await?;
                    return Ok(TestRun {
                        compiled: compile.success(),
                        finished: true,
                        passed: Vec::new(),
                        expected,
                    });
                }
                let outcome = self.sandbox.compile_and_test(&source, &sealed.args).await?;
                let (passed, finished) = match &outcome.run {
                    Some(run) => {
                        let passed = sealed.passed(&run.stderr.text());
                        (passed.clone(), finished_every_test(run, &sealed, &passed))
                    }
                    None => (vec![false; count], false),
                };
                Ok::<_, crate::Error>(TestRun {
                    compiled: outcome.compile.success(),
                    finished,
                    passed,
                    expected,
                })
            })
            .await?;
        Ok(run.clone())
    }

    /// How many distinct sources have been graded (or are being graded).
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Test lines, each with its index among the extra tests, as a test module
/// (`mars_generated_tests`, one `#[test] fn generated_<index>` per line).
fn generated_tests(extra: &[(usize, &String)]) -> String {
    let mut out = String::from("#[cfg(test)]\nmod mars_generated_tests {\n    use super::*;\n");
    for (i, test) in extra {
        let line = test.replace('\n', " ");
        out.push_str(&format!(
            "\n    #[test]\n    fn generated_{i}() {{\n        {line}\n    }}\n"
        ));
    }
    out.push_str("}\n");
    out
}

/// The path of the `index`-th extra test in the tests [`generated_tests`] writes.
fn generated_path(index: usize) -> String {
    format!("mars_generated_tests::generated_{index}")
}

/// How the `index`-th visible example reads in a test matrix: its line of the prompt's
/// examples list when the prompt has one (`` - `f(2)` returns `4` ``), else `example {index}`.
fn visible_example(task: &Task, index: usize) -> String {
    task.prompt
        .lines()
        .filter(|l| l.trim_start().starts_with("- `"))
        .nth(index)
        .map(|l| l.trim().trim_start_matches("- ").to_owned())
        .unwrap_or_else(|| format!("example {index}"))
}

/// The verdict for a sandbox outcome of `sealed` tests, with its first error line.
///
/// A pass needs exit status 0 and, for every expected test, the token that only the test's
/// own completion writes ([`harness::Sealed::evidence`]); exit status 0 alone is never a pass.
pub fn judge(outcome: &TestOutcome, sealed: &harness::Sealed) -> (Verdict, Option<String>) {
    let (verdict, detail) = judge_raw(outcome, sealed);
    let prefix = format!("{}::", sealed.module);
    (verdict, detail.map(|d| d.replace(&prefix, "")))
}

fn judge_raw(outcome: &TestOutcome, sealed: &harness::Sealed) -> (Verdict, Option<String>) {
    let compile = &outcome.compile;
    if matches!(compile.limit, Some(LimitHit::WallClock | LimitHit::CpuTime)) {
        return (
            Verdict::Timeout,
            Some("compilation hit its time limit".into()),
        );
    }
    if !compile.success() {
        return (Verdict::CompileError, first_line(compile, &["error"]));
    }
    let Some(run) = &outcome.run else {
        return (
            Verdict::TestFailure,
            Some("the task has no tests to run; compiling alone is not a pass".into()),
        );
    };
    let evidence = sealed.evidence(&run.stderr.text());
    match (run.limit, run.termination) {
        (Some(LimitHit::WallClock | LimitHit::CpuTime), _) => (
            Verdict::Timeout,
            Some("the tests hit their time limit".into()),
        ),
        (Some(LimitHit::AddressSpace), _) => (
            Verdict::Crash,
            Some("memory limit: an allocation failed".into()),
        ),
        (Some(LimitHit::Memory), _) => (
            Verdict::Crash,
            Some("memory limit of the jail: the kernel killed a process".into()),
        ),
        (Some(LimitHit::FileSize), _) => (Verdict::Crash, Some("file size limit".into())),
        _ if evidence == harness::Evidence::Forged => (
            Verdict::Crash,
            Some("the program wrote a forged test report".into()),
        ),
        (None, Termination::Exited(0)) if evidence == harness::Evidence::Complete => {
            (Verdict::Pass, None)
        }
        // The libtest harness exits with 101 when a test fails.
        (None, Termination::Exited(101)) if has_failed_tests(run) => (
            Verdict::TestFailure,
            first_line(run, &["thread '", "assertion", "panicked"]),
        ),
        (None, Termination::Exited(code)) => match evidence {
            harness::Evidence::Missing { reported, expected } => (
                Verdict::Crash,
                Some(format!(
                    "the program exited (code {code}) before the tests finished \
                     ({reported} of {expected} tests reported a pass)"
                )),
            ),
            _ => (
                Verdict::Crash,
                Some(format!("the test binary exited with code {code}")),
            ),
        },
        (None, Termination::Signaled(signal)) => (
            Verdict::Crash,
            Some(format!("the test binary was killed by signal {signal}")),
        ),
        (None, Termination::Other(status)) => (
            Verdict::Crash,
            Some(format!("the test binary ended with wait status {status}")),
        ),
    }
}

/// `n` random words from the OS, for [`harness::seal`].
fn random_words(n: usize) -> Result<Vec<u64>> {
    use std::io::Read;
    let mut bytes = vec![0u8; n * 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| Error::Io {
            action: "read random bytes from",
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// Whether `run` of `sealed` ended as libtest ends and accounted for every test: each one
/// reported a pass (`passed`) or stdout lists it as failed.
fn finished_every_test(run: &Execution, sealed: &harness::Sealed, passed: &[bool]) -> bool {
    let ended = run.limit.is_none() && matches!(run.termination, Termination::Exited(0 | 101));
    let stdout = run.stdout.text();
    ended
        && sealed.expected.iter().zip(passed).all(|(path, passed)| {
            *passed
                || stdout
                    .lines()
                    .any(|l| l.trim() == format!("test {path} ... FAILED"))
        })
}

fn has_failed_tests(run: &Execution) -> bool {
    let out = run.stdout.text();
    out.contains("test result: FAILED") || out.lines().any(|l| l.ends_with("... FAILED"))
}

/// The first line of stderr (then stdout) starting with one of `prefixes`, else the first
/// non-empty line, trimmed to 300 characters.
fn first_line(execution: &Execution, prefixes: &[&str]) -> Option<String> {
    let stderr = execution.stderr.text();
    let stdout = execution.stdout.text();
    let lines = || stderr.lines().chain(stdout.lines()).map(str::trim);
    let line = lines()
        .find(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .or_else(|| lines().find(|l| !l.is_empty()))?;
    Some(without_thread_id(line).chars().take(300).collect())
}

/// libtest's panic line names the thread's OS id (`thread 'x' (46) panicked`), which differs
/// between runs; the detail leaves it out so identical failures read identically.
fn without_thread_id(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("thread '")
        && let Some((name, tail)) = rest.split_once("' (")
        && let Some((id, after)) = tail.split_once(')')
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
    {
        return format!("thread '{name}'{after}");
    }
    line.to_owned()
}

#[cfg(test)]
#[path = "grade_tests.rs"]
mod tests;
