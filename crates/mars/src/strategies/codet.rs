//! CodeT: n candidates and model-written tests, run against each other; the candidates that
//! agree with the most tests and with the most other candidates win.
//!
//! Source: Chen et al., "CodeT: Code Generation with Generated Tests" (2022, arXiv:2207.10397),
//! dual execution agreement.
//!
//! Algorithm: the request is sampled n times (one
//! [`ModelClient::complete_batch`](crate::ModelClient::complete_batch) call) while one more call
//! asks the model, from the prompt alone, for test lines (`assert_eq!(call, expected);`, parsed
//! by [`parse_tests`], at most `max_tests`). The verifier's test runner
//! ([`Verifier::with_tests`]) runs every candidate against the prompt's visible examples and the
//! generated tests, which gives a pass/fail matrix. Candidates that pass exactly the same set of
//! tests form a group, scored by dual agreement, the group's size times the number of tests in
//! the set ([`dual_agreement`]); a candidate of the best group wins (ties to the shorter, then
//! the earlier candidate). A wrong majority loses to a smaller group that passes more tests.
//! When every score is 0 (no candidate passes any test), length is no evidence: the candidate
//! with the best [`Verifier::check`] score wins, ties to the earlier candidate.
//!
//! Cost: n + 1 model calls, plus one test run per candidate in the verifier (no model call),
//! and one verifier check per candidate when every score is 0.
//! Each candidate's score in the trace is its group's score ([`Score::Verifier`]); the steps are
//! the test-generation call (noted with how many tests were parsed) and the matrix (`test
//! matrix`: one column per test, `P` passed, `.` failed, and each candidate's group).
//!
//! ```
//! use mars::strategies::feedback::TestResult;
//! use mars::strategies::{CodeT, CodeTConfig, Verifier};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let (wrong, right) = ("fn sq(x: i32) -> i32 { x + x }", "fn sq(x: i32) -> i32 { x * x }");
//! // The request has no seed: the candidates' seeds derive from the base seed, 0.
//! let seeds = mars::strategies::sampling::derive_seeds(0, 2);
//! let client = ScriptedClient::from_fn(move |_, request| {
//!     if request.last_user_message().unwrap_or_default().contains("assert_eq!") {
//!         Turn::text("assert_eq!(sq(3), 9);\nassert_eq!(sq(1), 1);")
//!     } else if request.options.seed == Some(seeds[0]) {
//!         Turn::text(wrong)
//!     } else {
//!         Turn::text(right)
//!     }
//! });
//! // Runs a test by looking the answer up; a real runner compiles the code with the tests.
//! let verifier = Verifier::new(|_request, _code: &str| async { 0.0 }).with_tests(
//!     |_request, code: &str, tests: &[String]| {
//!         let squares = code.contains("x * x");
//!         let results: Vec<TestResult> = tests
//!             .iter()
//!             .map(|t| TestResult { test: t.clone(), visible: false, passed: squares })
//!             .collect();
//!         async move { results }
//!     },
//! );
//! let config = CodeTConfig { n: 2, verifier: Some(verifier), ..CodeTConfig::default() };
//! let outcome = CodeT::new(&client, config)?.run("Write sq".into()).await?;
//! assert_eq!(outcome.answer, right);
//! assert_eq!(outcome.usage.model_calls, 3);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use super::calls::{CallPolicy, Calls};
use super::feedback::TestResult;
use super::request::rewrite_last_user_message;
use super::sampling::{DEFAULT_BASE_SEED, check_count, check_temperature, seeded_samples};
use super::selection::Verifier;
use super::trace::{FailurePolicy, Outcome, Score, Step, failed_call_usage};
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{BatchRequest, ChatRequest, SamplingOptions};
use crate::error::{Error, Result};
use crate::eval::harness::is_statement_line;

/// The request appended to the task in the test-generation call (see [`test_request`]).
pub const DEFAULT_TEST_INSTRUCTION: &str = "Do not write the function. Instead, write test \
     cases for it: one per line, each a single Rust assertion of the form \
     `assert_eq!(call, expected);` that calls the function with concrete arguments and states \
     the exact result the task asks for. Cover ordinary cases and edge cases. Write only the \
     assertion lines.";

/// Most generated tests a configuration may ask for.
pub const MAX_TESTS: usize = 64;

/// Configuration of [`CodeT`].
#[derive(Debug, Clone)]
pub struct CodeTConfig {
    /// How many candidates (default 4); must be at least 1.
    pub n: usize,
    /// The temperature of the candidates when the request sets none (default 0.8); the
    /// request's temperature wins.
    pub temperature: Option<f32>,
    /// The verifier whose test runner ([`Verifier::with_tests`]) runs candidates against the
    /// visible examples and the generated tests; required.
    pub verifier: Option<Verifier>,
    /// Most generated tests kept, the first ones (default 10).
    pub max_tests: usize,
    /// Appended to the task in the test-generation call (default [`DEFAULT_TEST_INSTRUCTION`]).
    pub test_instruction: String,
    /// The base of the candidate seeds when the request carries no seed (default 0).
    pub base_seed: u64,
    /// At most this many calls, then test runs, in flight (default 4): the test-generation
    /// call runs beside the candidates' batch, which gets one slot fewer (with 1, the batch
    /// runs first).
    pub concurrency: NonZeroUsize,
    /// What a failed call does (default [`FailurePolicy::Fail`]); under
    /// [`FailurePolicy::Drop`] a failed candidate is left out, and a failed test-generation
    /// call leaves the visible examples as the only tests.
    pub on_failure: FailurePolicy,
}

impl Default for CodeTConfig {
    fn default() -> Self {
        CodeTConfig {
            n: 4,
            temperature: Some(0.8),
            verifier: None,
            max_tests: 10,
            test_instruction: DEFAULT_TEST_INSTRUCTION.to_owned(),
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

/// CodeT's dual execution agreement (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`] when there is no verifier or it has no test runner, `n` is 0,
/// `max_tests` is above [`MAX_TESTS`], the instruction is blank or the temperature invalid.
pub type CodeT<C> = StrategyClient<CodeTConfig, C>;

/// The test-generation request: `request` (system prompt and earlier messages kept) with
/// `instruction` appended to its last user message after a blank line, sampled with the
/// request's options. [`Error::Unsupported`] when it has no user message.
pub fn test_request(request: &ChatRequest, instruction: &str) -> Result<ChatRequest> {
    rewrite_last_user_message(request.clone(), CodeTConfig::NAME, |question| {
        format!("{question}\n\n{instruction}")
    })
}

/// The test lines of a reply: every line (list marks and surrounding backticks removed) that
/// is one `assert_eq!(..)`, `assert_ne!(..)` or `assert!(..)` call with balanced parentheses,
/// given a final `;` if it lacks one; duplicates dropped, the first `max` kept.
///
/// ```
/// use mars::strategies::codet::parse_tests;
///
/// let reply = "```rust\nassert_eq!(f(1), 2);\n- `assert_eq!(f(2), 4)`\nassert_eq!(f(3), 6\nassert_eq!(f(1), 2);\n```";
/// assert_eq!(parse_tests(reply, 10), ["assert_eq!(f(1), 2);", "assert_eq!(f(2), 4);"]);
/// ```
pub fn parse_tests(reply: &str, max: usize) -> Vec<String> {
    let mut tests: Vec<String> = Vec::new();
    for line in reply.lines() {
        if tests.len() >= max {
            break;
        }
        let line = line.trim();
        let line = line
            .strip_prefix("- ")
            .or_else(|| line.strip_prefix("* "))
            .unwrap_or(line)
            .trim()
            .trim_matches('`')
            .trim();
        let line = line.strip_suffix(';').unwrap_or(line).trim_end();
        let is_assert = ["assert_eq!(", "assert_ne!(", "assert!("]
            .iter()
            .any(|m| line.starts_with(m));
        if !is_assert || !line.ends_with(')') || !balanced(line) {
            continue;
        }
        let test = format!("{line};");
        if !tests.contains(&test) {
            tests.push(test);
        }
    }
    tests
}

/// Whether `line` (`name!(..)`, without its `;`) is one macro call whose parentheses close
/// only at its end, and with its `;` one self-contained statement ([`is_statement_line`]:
/// string, char and comment aware, so `'('` or `"}"` cannot unbalance it and no `}` can close
/// the test function it is placed in).
fn balanced(line: &str) -> bool {
    let (Some(open), Some(inner_end)) = (line.find('('), line.len().checked_sub(1)) else {
        return false;
    };
    // The arguments, wrapped in brackets of another kind, must close on their own: then the
    // call's `(` is the one the final `)` closes.
    is_statement_line(&format!("{line};"))
        && line
            .get(open + 1..inner_end)
            .is_some_and(|inner| is_statement_line(&format!("[{inner}];")))
}

/// Dual agreement scores of a pass/fail matrix (one row per candidate; `None` for a dropped
/// candidate): candidates with the same row form a group, and each candidate scores its group's
/// size times the number of tests the row passes. `None` for dropped candidates.
///
/// ```
/// use mars::strategies::codet::dual_agreement;
///
/// // Three candidates agree and pass one test; two others agree and pass all three.
/// let (wrong, right) = (Some(vec![true, false, false]), Some(vec![true, true, true]));
/// let rows = [wrong.clone(), wrong.clone(), wrong, right.clone(), None, right];
/// assert_eq!(dual_agreement(&rows), [Some(3), Some(3), Some(3), Some(6), None, Some(6)]);
/// ```
pub fn dual_agreement(rows: &[Option<Vec<bool>>]) -> Vec<Option<usize>> {
    let mut groups: BTreeMap<&[bool], usize> = BTreeMap::new();
    for row in rows.iter().flatten() {
        *groups.entry(row.as_slice()).or_default() += 1;
    }
    rows.iter()
        .map(|row| {
            let row = row.as_ref()?;
            let size = groups.get(row.as_slice()).copied().unwrap_or_default();
            Some(size * row.iter().filter(|p| **p).count())
        })
        .collect()
}

impl Algorithm for CodeTConfig {
    const NAME: &'static str = "codet";

    fn validate(&self) -> Result<()> {
        check_count("n", self.n)?;
        check_temperature("temperature", self.temperature)?;
        let invalid = |field, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        match &self.verifier {
            None => return invalid("verifier", "codet needs a verifier that runs tests"),
            Some(v) if !v.runs_tests() => {
                return invalid(
                    "verifier",
                    "codet's verifier must run tests (Verifier::with_tests)",
                );
            }
            Some(_) => {}
        }
        if self.max_tests > MAX_TESTS {
            return invalid("max_tests", &format!("at most {MAX_TESTS}"));
        }
        if self.test_instruction.trim().is_empty() {
            return invalid("test_instruction", "the test instruction must not be blank");
        }
        Ok(())
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let Some(verifier) = &self.verifier else {
            return Err(Error::InvalidConfig {
                field: "verifier",
                reason: "codet needs a verifier that runs tests".into(),
            });
        };
        let tests_call = test_request(&request, &self.test_instruction)?;
        let samples: Vec<SamplingOptions> =
            seeded_samples(&request.options, self.temperature, self.base_seed, self.n);
        // The test call runs beside the batch, which gets one slot fewer so that at most
        // `concurrency` calls are in flight; with one slot, the batch runs first. Under
        // FailurePolicy::Fail the first failure ends the run without waiting for the other.
        let test_call = async {
            let reply = calls.answers(vec![tests_call]).await.into_iter().next();
            Ok::<_, Error>(match reply {
                Some(Ok(completion)) => {
                    let tests = parse_tests(&completion.text, self.max_tests);
                    let note = format!("{} test lines parsed", tests.len());
                    (tests, Step::new("generated tests", completion).noted(note))
                }
                Some(Err(source)) => {
                    let failure = calls.failed("test generation".to_owned(), source)?;
                    let step = Step {
                        usage: failed_call_usage(),
                        ..Step::record(
                            "generated tests",
                            String::new(),
                            format!(
                                "{}: {}; only the visible examples",
                                failure.call, failure.error
                            ),
                        )
                    };
                    (Vec::new(), step)
                }
                None => (
                    Vec::new(),
                    Step::record("generated tests", String::new(), "no call"),
                ),
            })
        };
        let (mut candidates, (tests, test_step)) =
            match NonZeroUsize::new(calls.concurrency().get() - 1) {
                Some(slots) => futures::try_join!(
                    calls.candidates_within(request.clone(), samples, slots),
                    test_call
                )?,
                None => {
                    let candidates = calls.candidates(request.clone(), samples).await?;
                    (candidates, test_call.await?)
                }
            };
        let alive: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].dropped.is_none())
            .collect();
        let texts = alive.iter().map(|&i| candidates[i].text.clone()).collect();
        let results = calls.test_all(&request, verifier, texts, &tests).await;
        let columns = results.iter().map(Vec::len).max().unwrap_or_default();
        let mut rows: Vec<Option<Vec<bool>>> = vec![None; candidates.len()];
        let mut header: Vec<&TestResult> = Vec::new();
        for (&i, row) in alive.iter().zip(&results) {
            let passes: Vec<bool> = (0..columns)
                .map(|t| row.get(t).is_some_and(|r| r.passed))
                .collect();
            if row.len() == columns && header.is_empty() {
                header = row.iter().collect();
            }
            rows[i] = Some(passes);
        }
        let scores = dual_agreement(&rows);
        for (candidate, score) in candidates.iter_mut().zip(&scores) {
            if let Some(score) = score {
                candidate.score = Score::Verifier {
                    score: Some(*score as f64),
                };
            }
        }
        // When no candidate passes a test, the shortest answer would win the tie: an empty or
        // cut-off reply is often shortest. The verifier's own check decides instead, then the
        // candidates' order.
        let every_score_zero = scores.iter().flatten().all(|s| *s == 0);
        let (winner, by) = match alive.first() {
            Some(&first) if every_score_zero => {
                let texts = alive.iter().map(|&i| candidates[i].text.clone()).collect();
                let checks = calls.check_all(&request, verifier, texts).await;
                let mut best = (first, f64::NEG_INFINITY);
                for (&i, check) in alive.iter().zip(&checks) {
                    if check.score > best.1 {
                        best = (i, check.score);
                    }
                }
                (
                    best.0,
                    " (every score 0: by the verifier's check, then order)",
                )
            }
            _ => (calls.choose_best(&candidates)?, ""),
        };
        let matrix = Step::record(
            "test matrix",
            render_matrix(&header, &rows, &scores),
            format!(
                "{} candidates × {columns} tests ({} generated); winner: candidate {winner}{by}",
                alive.len(),
                tests.len()
            ),
        );
        calls.finish(candidates, winner, vec![test_step, matrix], &[])
    }
}

impl Configured for CodeTConfig {}

/// The matrix as the trace shows it: the tests, one per line (`t0 (visible) ...`), then one
/// line per candidate: `P` for a passed test, `.` for a failed one, and its score.
fn render_matrix(
    header: &[&TestResult],
    rows: &[Option<Vec<bool>>],
    scores: &[Option<usize>],
) -> String {
    let mut out = String::new();
    for (t, test) in header.iter().enumerate() {
        let kind = if test.visible { "visible" } else { "generated" };
        out.push_str(&format!("t{t} ({kind}): {}\n", test.test));
    }
    for (i, (row, score)) in rows.iter().zip(scores).enumerate() {
        match (row, score) {
            (Some(row), Some(score)) => {
                let marks: String = row.iter().map(|p| if *p { 'P' } else { '.' }).collect();
                let group: Vec<String> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.as_ref() == Some(row))
                    .map(|(j, _)| j.to_string())
                    .collect();
                let passed = row.iter().filter(|p| **p).count();
                out.push_str(&format!(
                    "candidate {i}: {marks} passes {passed}; group [{}] of {}: score {score}\n",
                    group.join(", "),
                    group.len()
                ));
            }
            _ => out.push_str(&format!("candidate {i}: dropped\n")),
        }
    }
    out
}

#[cfg(test)]
#[path = "codet_tests.rs"]
mod tests;
