//! What a verifier says besides its score: [`Verification`] (score and [`Feedback`]), and the
//! per-test results of [`TestResult`] that CodeT's matrix is made of.
//!
//! Feedback is built only from the candidate's code and the examples the prompt shows (a
//! verifier never sees hidden tests): whether the code compiled, the first compiler error with
//! its line, the visible example that failed with its expected and actual values where the test
//! harness prints them, or a timeout or crash. [`render_feedback`] turns it into the text that
//! [`Repair`](super::Repair) shows the model; it is a pure function with table tests.

use serde::{Deserialize, Serialize};

/// A verifier's judgement of one candidate: its score (higher is better) and, when the verifier
/// gives it, why the candidate failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The score, as [`Verifier::score`](super::Verifier::score) returns it.
    pub score: f64,
    /// Structured feedback; `None` from a verifier that only scores.
    pub feedback: Option<Feedback>,
}

impl Verification {
    /// A score without feedback.
    pub fn score_only(score: f64) -> Self {
        Verification {
            score,
            feedback: None,
        }
    }
}

/// Why a candidate passed or failed its check, from the code and the visible examples only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Whether the code (with the visible examples) compiled; false when there was no code.
    pub compiled: bool,
    /// What went wrong; `None` when every visible example passed.
    pub issue: Option<Issue>,
}

impl Feedback {
    /// The feedback of a candidate that passed every check.
    pub fn passed() -> Self {
        Feedback {
            compiled: true,
            issue: None,
        }
    }
}

/// The first thing that went wrong with a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Issue {
    /// The answer held no code.
    NoCode,
    /// The code did not compile.
    CompileError {
        /// The compiler's first error line, e.g. ``error[E0308]: mismatched types``.
        message: String,
        /// The line of the candidate's code the error points at (1-based), when it points into
        /// the candidate's code rather than into the examples.
        line: Option<u32>,
        /// The source line the error points at, verbatim (trimmed).
        source_line: Option<String>,
    },
    /// It compiled, and a visible example failed.
    FailedExample {
        /// The example that failed, as its test states it (the call, or the assertion line).
        example: Option<String>,
        /// The value the example expects, where the harness prints it.
        expected: Option<String>,
        /// The value the code returned, where the harness prints it.
        actual: Option<String>,
        /// The failure's first line (the panic message).
        message: String,
    },
    /// Compiling or running hit a time limit.
    Timeout {
        /// Which limit, in words.
        message: String,
    },
    /// The test binary died otherwise (signal, abort, memory limit, early exit).
    Crash {
        /// What happened, in words.
        message: String,
    },
    /// Anything else a verifier wants to say.
    Other {
        /// The verifier's words.
        message: String,
    },
}

/// One test of a candidate in CodeT's matrix: a visible example or a generated test, and
/// whether the candidate passed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// The test as the model or the prompt states it (an `assert_eq!` line, or an example).
    pub test: String,
    /// Whether it is one of the prompt's visible examples (else a generated test).
    pub visible: bool,
    /// Whether the candidate passed it (a test that did not compile with it did not pass).
    pub passed: bool,
}

/// The text [`Repair`](super::Repair) shows the model about a failed candidate: one or two
/// sentences per fact, no judgement beyond the facts.
///
/// ```
/// use mars::strategies::feedback::{Feedback, Issue, render_feedback};
///
/// let feedback = Feedback {
///     compiled: true,
///     issue: Some(Issue::FailedExample {
///         example: Some("is_prime(7)".into()),
///         expected: Some("true".into()),
///         actual: Some("false".into()),
///         message: "assertion `left == right` failed: is_prime(7)".into(),
///     }),
/// };
/// assert_eq!(
///     render_feedback(&feedback),
///     "The code compiles, but an example fails: `is_prime(7)` should be `true`, but the code \
///      returned `false`."
/// );
/// ```
pub fn render_feedback(feedback: &Feedback) -> String {
    let Some(issue) = &feedback.issue else {
        return "The code passes every example.".to_owned();
    };
    match issue {
        Issue::NoCode => "The answer contains no code that defines the requested function.".into(),
        Issue::CompileError {
            message,
            line,
            source_line,
        } => {
            let mut text =
                format!("The code does not compile. The first compiler error is:\n{message}");
            match (line, source_line) {
                (Some(line), Some(source)) => {
                    text.push_str(&format!("\nat line {line} of the code: `{source}`"))
                }
                (Some(line), None) => text.push_str(&format!("\nat line {line} of the code")),
                (None, Some(source)) => {
                    text.push_str(&format!("\nin the examples' test code: `{source}`"))
                }
                (None, None) => {}
            }
            text
        }
        Issue::FailedExample {
            example,
            expected,
            actual,
            message,
        } => match (example, expected, actual) {
            (Some(example), Some(expected), Some(actual)) => format!(
                "The code compiles, but an example fails: `{example}` should be `{expected}`, \
                 but the code returned `{actual}`."
            ),
            (Some(example), _, _) => {
                format!("The code compiles, but an example fails: `{example}`: {message}")
            }
            (None, _, _) => format!("The code compiles, but an example fails: {message}"),
        },
        Issue::Timeout { message } => {
            format!("The code did not finish in time ({message}); it may loop forever.")
        }
        Issue::Crash { message } => format!("The code crashed: {message}."),
        Issue::Other { message } => message.clone(),
    }
}

/// A short label of a feedback for traces: `passed`, `no code`, `compile error`, `failed
/// example`, `timeout`, `crash`, or the verifier's `other`.
pub fn feedback_label(feedback: &Feedback) -> &'static str {
    match &feedback.issue {
        None => "passed",
        Some(Issue::NoCode) => "no code",
        Some(Issue::CompileError { .. }) => "compile error",
        Some(Issue::FailedExample { .. }) => "failed example",
        Some(Issue::Timeout { .. }) => "timeout",
        Some(Issue::Crash { .. }) => "crash",
        Some(Issue::Other { .. }) => "other",
    }
}

#[cfg(test)]
#[path = "feedback_tests.rs"]
mod tests;
