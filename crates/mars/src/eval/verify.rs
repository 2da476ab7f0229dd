//! A code verifier from a chat request alone: the Rust function the request asks for, the
//! examples its prompt shows ([`crate::code::examples`]), and the sandbox that runs them with
//! each candidate.
//!
//! [`RequestVerifier::new`] reads the request once. The function to check is the one whose
//! signature the prompt shows; when the prompt shows none but asks for Rust, it is the function
//! each candidate defines (the one the prompt's examples call, else its first function other
//! than `main`). A request that shows no signature and does not ask for Rust cannot be verified:
//! [`Error::Unsupported`], so a caller (`mars serve`) can say why instead of guessing.
//!
//! Every check goes through [`Grader`] with the examples as the visible tests, so it gets the
//! sandbox's limits and the grader's sealed, per-test evidence: nothing a candidate prints can
//! make an example pass. A candidate that compiles scores 0.5 when an example fails and 1 when
//! all pass; with no examples in the prompt, compiling is all there is to check, and scores 1.
//! Limits shared by many requests ([`VerifyLimits`]) bound the sandbox runs in flight and the
//! sandbox time one request may spend; [`RequestVerifier::counts`] says what was run and passed.
//!
//! ```no_run
//! use mars::eval::{grade::Grader, sandbox::{Sandbox, SandboxConfig}, verify::RequestVerifier};
//! use mars::strategies::{CodeT, CodeTConfig};
//! use mars::{ChatRequest, ScriptedClient};
//!
//! # async fn run(client: ScriptedClient) -> mars::Result<()> {
//! let request = ChatRequest::new("Write `fn add(a: i32, b: i32) -> i32`. `add(2, 3)` returns `5`.");
//! let grader = Grader::new(Sandbox::new(SandboxConfig::default()).await?);
//! let check = RequestVerifier::new(&request, grader)?;
//! let codet = CodeT::new(client, CodeTConfig { verifier: Some(check.verifier()), ..CodeTConfig::default() })?;
//! let outcome = codet.run(request).await?;
//! println!("{}\n{:?}", outcome.answer, check.counts());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::client::{ChatRequest, Role};
use crate::code::examples::{self, PromptExamples};
use crate::code::extract_code;
use crate::error::{Error, Result};
use crate::eval::grade::{Grade, Grader, Tests, Verdict};
use crate::eval::tasks::{Task, TaskSet};
use crate::strategies::Verifier;
use crate::strategies::feedback::{Feedback, Issue, TestResult, Verification};

/// The module the prompt's examples are rendered into.
pub const EXAMPLES_MODULE: &str = "mars_prompt_examples";

/// Limits that many verifiers share (a server's requests), and the one each has of its own.
#[derive(Debug, Clone, Default)]
pub struct VerifyLimits {
    /// Sandbox runs (a compile and its tests) in flight at once, over every verifier holding
    /// this semaphore; `None`: unbounded.
    pub permits: Option<Arc<Semaphore>>,
    /// Wall time one verifier may spend in the sandbox, waiting for a permit included; once
    /// spent, a check fails at once with [`Issue::Other`] saying so. `None`: no budget.
    pub budget: Option<Duration>,
}

/// What one verifier ran and what passed, summed over its checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyCounts {
    /// The examples the prompt shows for the function checked (for a signature taken from the
    /// candidates: the most found for any of them).
    pub examples: u32,
    /// Example-like text in the prompt that did not parse as Rust or could not compile alone,
    /// skipped and counted.
    pub examples_skipped: u32,
    /// Candidates checked.
    pub candidates: u32,
    /// Candidates that compiled with the examples.
    pub candidates_compiled: u32,
    /// Candidates that passed every example (or, with no examples, compiled).
    pub candidates_passed: u32,
    /// Example runs: each example once per compiled candidate it ran against.
    pub example_runs: u32,
    /// Example runs that reported a pass.
    pub example_passes: u32,
    /// Generated tests run (CodeT's), each once per candidate.
    pub generated_tests_run: u32,
    /// Generated test runs that passed.
    pub generated_tests_passed: u32,
    /// Checks refused because the sandbox budget was spent.
    pub over_budget: u32,
    /// Checks that failed in the sandbox itself (not the candidate's doing).
    pub sandbox_errors: u32,
}

/// A [`Verifier`] for the code a request asks for; see the module docs.
#[derive(Debug, Clone)]
pub struct RequestVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    grader: Grader,
    limits: VerifyLimits,
    /// The user's messages: where signatures and examples are read.
    prompt: String,
    /// The function the prompt's signature names; `None`: taken from each candidate.
    entry_point: Option<String>,
    /// Tasks by entry point, with the examples found for it.
    tasks: Mutex<HashMap<String, Arc<Checked>>>,
    counts: Mutex<VerifyCounts>,
    deadline: Mutex<Option<Instant>>,
}

/// The task a candidate is graded as: its visible tests are the prompt's examples.
#[derive(Debug)]
struct Checked {
    task: Task,
    examples: usize,
}

impl RequestVerifier {
    /// A verifier for `request`'s code, with no limits beyond the sandbox's own.
    pub fn new(request: &ChatRequest, grader: Grader) -> Result<Self> {
        Self::with_limits(request, grader, VerifyLimits::default())
    }

    /// A verifier for `request`'s code under `limits`.
    ///
    /// Fails with [`Error::Unsupported`] when the request shows no Rust function signature and
    /// does not ask for Rust: there is no function to check.
    pub fn with_limits(
        request: &ChatRequest,
        grader: Grader,
        limits: VerifyLimits,
    ) -> Result<Self> {
        let prompt = user_text(request);
        let entry_point = examples::requested_function(&prompt);
        if entry_point.is_none() && !asks_for_rust(request) {
            return Err(Error::Unsupported {
                detail: "a code verifier needs a Rust function to check: the request shows no \
                         `fn` signature and does not ask for Rust"
                    .into(),
            });
        }
        let verifier = RequestVerifier {
            inner: Arc::new(Inner {
                grader,
                limits,
                prompt,
                entry_point: entry_point.clone(),
                tasks: Mutex::default(),
                counts: Mutex::default(),
                deadline: Mutex::default(),
            }),
        };
        if let Some(name) = entry_point {
            verifier.checked(&name);
        }
        Ok(verifier)
    }

    /// The function the prompt's signature names, when it shows one.
    pub fn entry_point(&self) -> Option<&str> {
        self.inner.entry_point.as_deref()
    }

    /// The examples the prompt shows for `entry_point`, with what was skipped.
    pub fn examples_for(&self, entry_point: &str) -> PromptExamples {
        examples::find_examples(&self.inner.prompt, entry_point)
    }

    /// What was run and passed so far.
    pub fn counts(&self) -> VerifyCounts {
        *lock(&self.inner.counts)
    }

    /// The [`Verifier`] that `codet`, `repair` and the `_verifier` strategies take: it scores
    /// candidates, explains failures, and runs extra test lines.
    pub fn verifier(&self) -> Verifier {
        let (check, tests) = (self.clone(), self.clone());
        Verifier::with_feedback(move |_request, candidate: &str| {
            let this = check.clone();
            let candidate = candidate.to_owned();
            async move { this.check(&candidate).await }
        })
        .with_tests(move |_request, candidate: &str, extra: &[String]| {
            let this = tests.clone();
            let (candidate, extra) = (candidate.to_owned(), extra.to_vec());
            async move { this.run_tests(&candidate, &extra).await }
        })
    }

    /// Scores one candidate against the examples.
    pub async fn check(&self, candidate: &str) -> Verification {
        let Some(checked) = self.task_for(candidate) else {
            return self.no_function();
        };
        let result = self
            .in_sandbox(
                self.inner
                    .grader
                    .grade(&checked.task, candidate, Tests::Visible),
            )
            .await;
        let mut counts = lock(&self.inner.counts);
        counts.candidates += 1;
        let Some(result) = self.count_failure(&mut counts, result) else {
            return over_budget(self.inner.limits.budget);
        };
        if let Ok(grade) = &result
            && grade.feedback.as_ref().is_some_and(|f| f.compiled)
        {
            counts.candidates_compiled += 1;
            counts.example_runs += checked.examples as u32;
            counts.example_passes += grade.tests_passed;
        }
        let verification = verification_of(result, checked.examples == 0);
        if verification.score >= 1.0 {
            counts.candidates_passed += 1;
        }
        verification
    }

    /// Runs one candidate against the examples and `extra` test lines (one [`TestResult`] per
    /// test, the examples first).
    pub async fn run_tests(&self, candidate: &str, extra: &[String]) -> Vec<TestResult> {
        let Some(checked) = self.task_for(candidate) else {
            lock(&self.inner.counts).candidates += 1;
            return Vec::new();
        };
        let result = self
            .in_sandbox(self.inner.grader.run_tests(&checked.task, candidate, extra))
            .await;
        let mut counts = lock(&self.inner.counts);
        let Some(Ok(results)) = self.count_failure(&mut counts, result) else {
            return Vec::new();
        };
        let counts = &mut *counts;
        for result in &results {
            let (run, passed) = if result.visible {
                (&mut counts.example_runs, &mut counts.example_passes)
            } else {
                (
                    &mut counts.generated_tests_run,
                    &mut counts.generated_tests_passed,
                )
            };
            *run += 1;
            *passed += u32::from(result.passed);
        }
        results
    }

    /// `result`, or `None` when the budget was spent; counts a sandbox failure.
    fn count_failure<T>(
        &self,
        counts: &mut VerifyCounts,
        result: Option<Result<T>>,
    ) -> Option<Result<T>> {
        match result {
            None => {
                counts.over_budget += 1;
                None
            }
            Some(Err(err)) => {
                counts.sandbox_errors += 1;
                tracing::warn!(error = %err, "verifying a candidate failed in the sandbox");
                Some(Err(err))
            }
            ok => ok,
        }
    }

    /// Runs `work` under a permit and within the request's sandbox budget; `None` when the
    /// budget is spent (before or during the run, which is then dropped: the sandbox kills
    /// what it started).
    async fn in_sandbox<T>(&self, work: impl Future<Output = Result<T>>) -> Option<Result<T>> {
        let deadline = self.inner.limits.budget.map(|budget| {
            *lock(&self.inner.deadline).get_or_insert_with(|| Instant::now() + budget)
        });
        let run = async {
            let _permit = match &self.inner.limits.permits {
                Some(permits) => Some(permits.acquire().await.map_err(|_| Error::Unsupported {
                    detail: "the sandbox's permits are closed".into(),
                })?),
                None => None,
            };
            work.await
        };
        match deadline {
            Some(deadline) if Instant::now() >= deadline => None,
            Some(deadline) => tokio::time::timeout_at(deadline, run).await.ok(),
            None => Some(run.await),
        }
    }

    /// The task for a candidate: the prompt's function, else the candidate's.
    fn task_for(&self, candidate: &str) -> Option<Arc<Checked>> {
        let name = match &self.inner.entry_point {
            Some(name) => name.clone(),
            None => self.candidate_function(candidate)?,
        };
        Some(self.checked(&name))
    }

    /// The function a candidate defines that the prompt's examples call, else its first one
    /// other than `main`.
    fn candidate_function(&self, candidate: &str) -> Option<String> {
        let code = extract_code(candidate, "")?.code;
        let names = defined_functions(&code);
        names
            .iter()
            .find(|name| !self.checked(name).task.visible_tests.is_empty())
            .or_else(|| names.first())
            .cloned()
    }

    fn checked(&self, entry_point: &str) -> Arc<Checked> {
        let mut tasks = lock(&self.inner.tasks);
        if let Some(checked) = tasks.get(entry_point) {
            return checked.clone();
        }
        let found = examples::find_examples(&self.inner.prompt, entry_point);
        {
            let mut counts = lock(&self.inner.counts);
            counts.examples = counts.examples.max(found.examples.len() as u32);
            counts.examples_skipped = counts.examples_skipped.max(found.skipped.len() as u32);
        }
        let checked = Arc::new(Checked {
            examples: found.examples.len(),
            task: Task {
                id: format!("request:{entry_point}"),
                set: TaskSet::File,
                entry_point: entry_point.to_owned(),
                prompt: self.inner.prompt.clone(),
                prelude: String::new(),
                visible_tests: examples::render_tests(EXAMPLES_MODULE, &found.examples),
                skipped_examples: found.skipped.len() as u32,
                hidden_tests: String::new(),
                reference: None,
            },
        });
        tasks.insert(entry_point.to_owned(), checked.clone());
        checked
    }

    fn no_function(&self) -> Verification {
        lock(&self.inner.counts).candidates += 1;
        Verification {
            score: 0.0,
            feedback: Some(Feedback {
                compiled: false,
                issue: Some(Issue::NoCode),
            }),
        }
    }
}

/// The verification of a grading against visible examples: 1 when they pass, 0.5 when the
/// code compiles and one fails, 0 otherwise. With `compile_only` (no examples to run), code
/// that compiles scores 1 with passed feedback, so `repair` stops instead of calling working
/// code broken. A grading that failed in the sandbox scores 0, with that error as feedback.
pub fn verification_of(grade: Result<Grade>, compile_only: bool) -> Verification {
    match grade {
        Ok(grade)
            if compile_only
                && grade.verdict == Verdict::TestFailure
                && grade.feedback.as_ref().is_some_and(|f| f.compiled) =>
        {
            Verification {
                score: 1.0,
                feedback: Some(Feedback::passed()),
            }
        }
        Ok(grade) => Verification {
            score: match grade.verdict {
                Verdict::Pass => 1.0,
                Verdict::TestFailure => 0.5,
                _ => 0.0,
            },
            feedback: grade.feedback,
        },
        Err(err) => Verification {
            score: 0.0,
            feedback: Some(Feedback {
                compiled: false,
                issue: Some(Issue::Other {
                    message: format!("The checker failed: {err}"),
                }),
            }),
        },
    }
}

fn over_budget(budget: Option<Duration>) -> Verification {
    let budget = budget.map_or_else(String::new, |b| format!(" of {:.0} s", b.as_secs_f64()));
    Verification {
        score: 0.0,
        feedback: Some(Feedback {
            compiled: false,
            issue: Some(Issue::Other {
                message: format!(
                    "The request's sandbox time budget{budget} is spent: not checked."
                ),
            }),
        }),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The user's messages, joined: where a request's signature and examples are read.
fn user_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Whether the request (system prompt or user messages) asks for Rust: the word `Rust` or a
/// ```` ```rust ```` fence.
fn asks_for_rust(request: &ChatRequest) -> bool {
    let texts = request.system.iter().map(String::as_str).chain(
        request
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.as_str()),
    );
    texts.into_iter().any(|text| {
        text.split(|c: char| !c.is_alphanumeric())
            .any(|word| word.eq_ignore_ascii_case("rust"))
    })
}

/// The functions `code` defines (`fn NAME(` or `fn NAME<`), in order, without `main` and
/// without repeats.
fn defined_functions(code: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, _) in code.match_indices("fn ") {
        let boundary = i == 0
            || !code.as_bytes()[i - 1].is_ascii_alphanumeric() && code.as_bytes()[i - 1] != b'_';
        if !boundary {
            continue;
        }
        let rest = code[i + 3..].trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let opens = matches!(
            rest[name.len()..].trim_start().chars().next(),
            Some('(' | '<')
        );
        if opens && !name.is_empty() && name != "main" && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
