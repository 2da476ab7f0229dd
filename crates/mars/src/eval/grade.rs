//! Grading: extract the code of an answer, assemble it with a task's tests, compile and run it
//! in the sandbox, and give a verdict. Identical code is graded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::code::{CodeSource, defines_function, extract_code};
use crate::error::Result;
use crate::eval::sandbox::{Execution, LimitHit, Sandbox, Termination, TestOutcome};
use crate::eval::tasks::Task;

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
}

/// The source compiled for `code` against `tests`: the task's prelude when the code does not
/// define the entry point itself (HumanEval prompts end in an open function), the code, the
/// braces a bare body leaves open (MultiPL-E bodies end before the function's `}`), then the
/// tests. Warnings are allowed.
pub fn assemble(task: &Task, code: &str, tests: Tests) -> String {
    let mut source = String::from("#![allow(warnings)]\n");
    let start = source.len();
    if !task.prelude.is_empty() && !defines_function(code, &task.entry_point) {
        source.push_str(&task.prelude);
    }
    source.push_str(code);
    let open = open_braces(&source[start..]);
    source.push_str(&"\n}".repeat(open));
    source.push_str("\n\n");
    source.push_str(match tests {
        Tests::Visible => &task.visible_tests,
        Tests::Hidden => &task.hidden_tests,
    });
    source.push('\n');
    source
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
            return Ok(Grade {
                verdict: Verdict::NoCode,
                detail: None,
                code_hash: None,
            });
        };
        let source = assemble(task, &extracted.code, tests);
        let key = fnv1a(source.as_bytes());
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.entry(key).or_default().clone()
        };
        let grade = cell
            .get_or_try_init(|| async {
                // One test thread: tests run in name order, so the first failure (the
                // verdict's detail) is the same on every run; it also stays far under the
                // sandbox's process cap.
                let args = ["--test-threads=1".to_owned()];
                let outcome = self.sandbox.compile_and_test(&source, &args).await?;
                let (verdict, detail) = judge(&outcome);
                tracing::debug!(task = %task.id, verdict = verdict.as_str(), "graded");
                Ok::<_, crate::Error>(Grade {
                    verdict,
                    detail,
                    code_hash: Some(format!("{key:016x}")),
                })
            })
            .await?;
        Ok(grade.clone())
    }

    /// How many distinct sources have been graded (or are being graded).
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The verdict for a sandbox outcome, with its first error line.
pub fn judge(outcome: &TestOutcome) -> (Verdict, Option<String>) {
    let compile = &outcome.compile;
    if matches!(compile.limit, Some(LimitHit::WallClock | LimitHit::CpuTime)) {
        return (
            Verdict::Timeout,
            Some("compilation hit its time limit".into()),
        );
    }
    let Some(run) = &outcome.run else {
        return (Verdict::CompileError, first_line(compile, &["error"]));
    };
    if !compile.success() {
        return (Verdict::CompileError, first_line(compile, &["error"]));
    }
    match (run.limit, run.termination) {
        (Some(LimitHit::WallClock | LimitHit::CpuTime), _) => (
            Verdict::Timeout,
            Some("the tests hit their time limit".into()),
        ),
        (Some(LimitHit::AddressSpace), _) => (
            Verdict::Crash,
            Some("memory limit: an allocation failed".into()),
        ),
        (Some(LimitHit::FileSize), _) => (Verdict::Crash, Some("file size limit".into())),
        (None, Termination::Exited(0)) => (Verdict::Pass, None),
        // The libtest harness exits with 101 when a test fails.
        (None, Termination::Exited(101)) if has_failed_tests(run) => (
            Verdict::TestFailure,
            first_line(run, &["thread '", "assertion", "panicked"]),
        ),
        (None, Termination::Exited(code)) => (
            Verdict::Crash,
            Some(format!("the test binary exited with code {code}")),
        ),
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
mod tests {
    use super::*;
    use crate::eval::tasks::{TaskSet, builtin};

    #[test]
    fn assembly_adds_the_prelude_only_when_needed() {
        let mut task = builtin(TaskSet::Ladder).remove(0);
        task.prelude = "fn add(a: i32, b: i32) -> i32 {\n".into();
        let body_only = assemble(&task, "    a + b\n}", Tests::Hidden);
        assert!(body_only.contains("fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"));
        let whole = assemble(
            &task,
            "fn add(a: i32, b: i32) -> i32 { a + b }",
            Tests::Hidden,
        );
        assert_eq!(whole.matches("fn add").count(), 1);
        assert!(whole.contains("mars_hidden_tests"));
        assert!(!whole.contains("mars_visible_tests"));
        let visible = assemble(
            &task,
            "fn add(a: i32, b: i32) -> i32 { a + b }",
            Tests::Visible,
        );
        assert!(visible.contains("mars_visible_tests") && !visible.contains("mars_hidden_tests"));
    }

    #[test]
    fn a_bare_body_gets_its_closing_braces() {
        let mut task = builtin(TaskSet::Ladder).remove(0);
        task.prelude = "/// Adds {a} and {b}.\nfn add(a: i32, b: i32) -> i32 {\n".into();
        let body = assemble(
            &task,
            "    let s = \"}\"; let c = '{'; a + b",
            Tests::Hidden,
        );
        assert!(body.contains("a + b\n}\n\n"), "{body}");
        let closed = assemble(&task, "    a + b\n}", Tests::Hidden);
        assert!(closed.contains("a + b\n}\n\n#[cfg(test)]"), "{closed}");
        let nested = assemble(&task, "    if a > 0 { a + b", Tests::Hidden);
        assert!(nested.contains("a + b\n}\n}\n\n"), "{nested}");
        assert_eq!(open_braces("fn f<'a>(x: &'a str) { /* { */ // {\n"), 1);
        assert_eq!(open_braces("{ '\\'' 'é' '\\u{7b}' \"\\\"{\""), 1);
    }

    #[test]
    fn thread_ids_are_left_out_of_details() {
        assert_eq!(
            without_thread_id("thread 'mars_hidden_tests::case_2' (46) panicked at <anon>:26:9:"),
            "thread 'mars_hidden_tests::case_2' panicked at <anon>:26:9:"
        );
        assert_eq!(
            without_thread_id("error[E0308]: mismatched types"),
            "error[E0308]: mismatched types"
        );
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
