//! Best-of-n selectors (a model judge or a user verifier) and the rule that picks the winner.

use std::fmt;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;

use super::calls::Calls;
use super::feedback::{TestResult, Verification};
use super::rating::{DEFAULT_JUDGE_INSTRUCTION, judge_request, parse_rating};
use super::trace::{Candidate, Score, failed_call_usage};
use crate::client::{ChatRequest, SamplingOptions, Usage};
use crate::error::{Error, Result};

/// How [`BestOfN`](super::BestOfN) and [`PlanSearch`](super::PlanSearch) score their
/// candidates.
#[derive(Debug, Clone)]
pub enum Selector {
    /// The inner model rates each candidate 0–10, one call per candidate.
    Judge(JudgeConfig),
    /// A user-supplied function scores each candidate; no model call.
    Verifier(Verifier),
}

impl Default for Selector {
    fn default() -> Self {
        Selector::Judge(JudgeConfig::default())
    }
}

/// Configuration of the judge calls.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// The request to rate, sent as a user message after the candidate (see
    /// [`rating::judge_request`](super::rating::judge_request)).
    pub instruction: String,
    /// Temperature of the judge calls when the request sets none (default 0: the most likely
    /// rating); the request's temperature wins.
    pub temperature: f32,
    /// Most tokens a judge may write (default 16: room for `Rating: 7/10`, not for an essay);
    /// used instead of the request's token limit.
    pub max_tokens: u32,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            instruction: DEFAULT_JUDGE_INSTRUCTION.to_owned(),
            temperature: 0.0,
            max_tokens: 16,
        }
    }
}

type CheckFn = dyn Fn(&ChatRequest, &str) -> BoxFuture<'static, Verification> + Send + Sync;
type TestFn =
    dyn Fn(&ChatRequest, &str, &[String]) -> BoxFuture<'static, Vec<TestResult>> + Send + Sync;

/// A user-supplied async function that scores a candidate answer; higher is better.
///
/// It is given the request the candidates answer and one candidate's text. For code, a verifier
/// typically checks that the candidate compiles and passes the examples that the prompt itself
/// shows. **A verifier must never see the hidden tests that grade answers** (in a benchmark, the
/// tests used to decide pass or fail): a verifier that runs them makes best-of-n look better than
/// it can be for a user who does not have them.
///
/// A verifier made with [`with_feedback`](Self::with_feedback) also says why a candidate failed
/// ([`Feedback`]), which [`Repair`](super::Repair) shows the model; one given a test runner
/// ([`with_tests`](Self::with_tests)) also runs a candidate against extra test lines, which
/// [`CodeT`](super::CodeT) needs.
///
/// A NaN score is recorded as `None` and ranks below every number.
///
/// ```
/// use mars::strategies::Verifier;
///
/// // Prefers answers that mention `u64`; a real verifier would compile and run examples.
/// let verifier = Verifier::new(|_request, candidate: &str| {
///     let score = if candidate.contains("u64") { 1.0 } else { 0.0 };
///     async move { score }
/// });
/// # let _ = verifier;
/// ```
#[derive(Clone)]
pub struct Verifier {
    check: Arc<CheckFn>,
    tests: Option<Arc<TestFn>>,
}

impl Verifier {
    /// Wraps `verify`, called once per candidate with the request and the candidate's text; it
    /// gives a score and no feedback.
    pub fn new<F, Fut>(verify: F) -> Self
    where
        F: Fn(&ChatRequest, &str) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = f64> + Send + 'static,
    {
        Self::with_feedback(move |request, candidate| {
            let score = verify(request, candidate);
            async move { Verification::score_only(score.await) }
        })
    }

    /// Wraps `check`, called once per candidate, which gives a score and, when it can, the
    /// [`Feedback`] behind it.
    ///
    /// ```
    /// use mars::strategies::Verifier;
    /// use mars::strategies::feedback::{Feedback, Issue, Verification};
    ///
    /// let verifier = Verifier::with_feedback(|_request, candidate: &str| {
    ///     let compiled = candidate.contains("fn ");
    ///     let issue = (!compiled).then_some(Issue::NoCode);
    ///     let score = if compiled { 1.0 } else { 0.0 };
    ///     async move { Verification { score, feedback: Some(Feedback { compiled, issue }) } }
    /// });
    /// # let _ = verifier;
    /// ```
    pub fn with_feedback<F, Fut>(check: F) -> Self
    where
        F: Fn(&ChatRequest, &str) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Verification> + Send + 'static,
    {
        Verifier {
            check: Arc::new(move |request, candidate| Box::pin(check(request, candidate))),
            tests: None,
        }
    }

    /// The same verifier with a test runner: `run(request, candidate, tests)` runs the
    /// candidate against the prompt's visible examples and against each of `tests` (test lines
    /// such as `assert_eq!(f(2), 4);`), and returns one [`TestResult`] per test: the visible
    /// examples first, then `tests` in order. A test that does not compile with the candidate
    /// did not pass. It must never run hidden tests.
    pub fn with_tests<F, Fut>(self, run: F) -> Self
    where
        F: Fn(&ChatRequest, &str, &[String]) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<TestResult>> + Send + 'static,
    {
        Verifier {
            tests: Some(Arc::new(move |request, candidate, tests| {
                Box::pin(run(request, candidate, tests))
            })),
            ..self
        }
    }

    /// Scores `candidate`, an answer to `request`.
    pub fn score(&self, request: &ChatRequest, candidate: &str) -> BoxFuture<'static, f64> {
        let check = self.check(request, candidate);
        Box::pin(async move { check.await.score })
    }

    /// Scores `candidate` and says why it failed, when the verifier can.
    pub fn check(
        &self,
        request: &ChatRequest,
        candidate: &str,
    ) -> BoxFuture<'static, Verification> {
        (self.check)(request, candidate)
    }

    /// Whether the verifier can run extra tests ([`with_tests`](Self::with_tests)).
    pub fn runs_tests(&self) -> bool {
        self.tests.is_some()
    }

    /// Runs `candidate` against the visible examples and `tests` (see
    /// [`with_tests`](Self::with_tests)); `None` when the verifier has no test runner.
    pub fn run_tests(
        &self,
        request: &ChatRequest,
        candidate: &str,
        tests: &[String],
    ) -> Option<BoxFuture<'static, Vec<TestResult>>> {
        self.tests
            .as_ref()
            .map(|run| run(request, candidate, tests))
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("runs_tests", &self.runs_tests())
            .finish_non_exhaustive()
    }
}

/// What selection knows of one candidate: its score and its length in characters; `None` for a
/// dropped candidate.
pub type Ranked = Option<(f64, usize)>;

/// The index of the best candidate: the highest score; among equal scores the shortest answer;
/// among equal lengths the lowest index. NaN scores rank below every number. `None` when every
/// candidate was dropped.
pub fn select_best(candidates: &[Ranked]) -> Option<usize> {
    let key = |score: f64| {
        if score.is_nan() {
            f64::NEG_INFINITY
        } else {
            score
        }
    };
    let mut best: Option<(usize, f64, usize)> = None;
    for (index, ranked) in candidates.iter().enumerate() {
        let Some((score, length)) = *ranked else {
            continue;
        };
        let score = key(score);
        let better = match best {
            None => true,
            Some((_, best_score, best_length)) => {
                score > best_score || (score == best_score && length < best_length)
            }
        };
        if better {
            best = Some((index, score, length));
        }
    }
    best.map(|(index, _, _)| index)
}

/// The sampling options of judge calls: the request's temperature (the judge's when the request
/// sets none: the request's options win), the judge's token limit (a rating needs a few tokens,
/// so this is the one option a judge call does not take from the request), and the request's
/// seed (or `base_seed` when it has none), so that a seeded run is reproducible. The request's
/// other options (stop strings, top-p, top-k) are for answers, not ratings, and are not sent.
pub fn judge_options(
    judge: &JudgeConfig,
    base: &SamplingOptions,
    base_seed: u64,
) -> SamplingOptions {
    SamplingOptions {
        temperature: base.temperature.or(Some(judge.temperature)),
        max_tokens: Some(judge.max_tokens),
        seed: Some(base.seed.unwrap_or(base_seed)),
        ..SamplingOptions::default()
    }
}

/// Checks a selector's judge settings (a verifier has none): the instruction must not be blank,
/// the token limit not 0, the temperature finite and at least 0. The errors name the fields
/// `selector.instruction`, `selector.max_tokens` and `selector.temperature`.
pub(crate) fn validate_selector(selector: &Selector) -> Result<()> {
    let Selector::Judge(judge) = selector else {
        return Ok(());
    };
    if judge.instruction.trim().is_empty() {
        return Err(Error::InvalidConfig {
            field: "selector.instruction",
            reason: "the judge instruction must not be blank".into(),
        });
    }
    if judge.max_tokens == 0 {
        return Err(Error::InvalidConfig {
            field: "selector.max_tokens",
            reason: "a judge needs at least one token to rate".into(),
        });
    }
    if !judge.temperature.is_finite() || judge.temperature < 0.0 {
        return Err(Error::InvalidConfig {
            field: "selector.temperature",
            reason: format!("{} is not a temperature", judge.temperature),
        });
    }
    Ok(())
}

/// What selection sees of a candidate: its score (judge rating or verifier score) and length.
pub(crate) fn ranked(candidate: &Candidate) -> Ranked {
    if candidate.dropped.is_some() {
        return None;
    }
    let score = match &candidate.score {
        Score::Judge { rating, .. } => *rating,
        Score::Verifier { score } | Score::VerifiedVote { score, .. } => score.unwrap_or(f64::NAN),
        Score::Unscored | Score::Vote { .. } => f64::NAN,
    };
    Some((score, candidate.text.chars().count()))
}

/// Judge and verifier scoring, through the run's [`Calls`]: its client, failure policy and
/// concurrency bound.
impl Calls<'_> {
    /// Scores the surviving candidates with `selector` and returns the usage of the judge calls
    /// (none for a verifier). A failed judge call follows the failure policy: the error, or
    /// its candidate dropped. Judge calls are seeded from the request's seed, or `base_seed`.
    pub(crate) async fn score(
        &self,
        request: &ChatRequest,
        selector: &Selector,
        base_seed: u64,
        candidates: &mut [Candidate],
    ) -> Result<Vec<Usage>> {
        match selector {
            Selector::Judge(judge) => {
                let options = judge_options(judge, &request.options, base_seed);
                self.judge(request, judge, options, candidates).await
            }
            Selector::Verifier(verifier) => {
                self.verify(request, verifier, candidates).await;
                Ok(Vec::new())
            }
        }
    }

    /// The winner of scored candidates by [`select_best`]; [`Error::AllCandidatesFailed`] when
    /// every candidate was dropped.
    pub(crate) fn choose_best(&self, candidates: &[Candidate]) -> Result<usize> {
        self.ensure_survivor(candidates)?;
        let ranked: Vec<Ranked> = candidates.iter().map(ranked).collect();
        let first_error = "no candidate was left to select".to_owned();
        let winner = select_best(&ranked).ok_or(self.all_failed(candidates.len(), first_error))?;
        let strategy = self.strategy();
        tracing::debug!(strategy, winner, ?ranked, "candidates scored");
        Ok(winner)
    }

    /// One judge call per surviving candidate, within the concurrency bound.
    async fn judge(
        &self,
        request: &ChatRequest,
        judge: &JudgeConfig,
        options: SamplingOptions,
        candidates: &mut [Candidate],
    ) -> Result<Vec<Usage>> {
        let (indices, calls): (Vec<usize>, Vec<ChatRequest>) = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.dropped.is_none())
            .map(|(i, c)| {
                let call = judge_request(request, &c.text, &judge.instruction, options.clone());
                (i, call)
            })
            .unzip();
        let results = self.answers(calls).await;
        let mut usage = Vec::with_capacity(results.len());
        for (i, result) in indices.into_iter().zip(results) {
            let Some(candidate) = candidates.get_mut(i) else {
                continue;
            };
            match result {
                Ok(reply) => {
                    let rating = parse_rating(&reply.text);
                    if rating.is_none() {
                        tracing::debug!(candidate = i, reply = %reply.text, "unparseable rating");
                    }
                    usage.push(reply.usage.clone());
                    candidate.score = Score::Judge {
                        rating: rating.unwrap_or(0.0),
                        parsed: rating.is_some(),
                        reply: reply.text,
                        usage: reply.usage,
                    };
                }
                Err(source) => {
                    let failure = self.failed(format!("judge call for candidate {i}"), source)?;
                    tracing::warn!(call = %failure.call, error = %failure.error, "dropped a candidate");
                    usage.push(failed_call_usage());
                    candidate.dropped = Some(failure);
                }
            }
        }
        Ok(usage)
    }

    /// Scores every surviving candidate with `verifier`, within the concurrency bound.
    pub(crate) async fn verify(
        &self,
        request: &ChatRequest,
        verifier: &Verifier,
        candidates: &mut [Candidate],
    ) {
        // Boxed futures built up front (a closure over boxed futures inside the stream trips the
        // compiler's higher-ranked `Send` check); each calls the verifier only when first polled,
        // so at most `concurrency` verifier calls run at once, their synchronous part included.
        let jobs: Vec<BoxFuture<'static, (usize, f64)>> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.dropped.is_none())
            .map(|(i, c)| {
                let (verifier, request, text) = (verifier.clone(), request.clone(), c.text.clone());
                Box::pin(async move { (i, verifier.score(&request, &text).await) })
                    as BoxFuture<'static, (usize, f64)>
            })
            .collect();
        let scores: Vec<(usize, f64)> = futures::stream::iter(jobs)
            .buffered(self.concurrency().get())
            .collect()
            .await;
        for (i, score) in scores {
            if let Some(candidate) = candidates.get_mut(i) {
                candidate.score = Score::Verifier {
                    score: (!score.is_nan()).then_some(score),
                };
            }
        }
    }
}

/// Verifier checks with feedback, and test runs, through the run's [`Calls`]: at most
/// `concurrency` at once (used by [`Repair`](super::Repair) and [`CodeT`](super::CodeT)).
impl Calls<'_> {
    /// Checks each of `texts` with `verifier`; the verifications come back in order.
    pub(crate) async fn check_all(
        &self,
        request: &ChatRequest,
        verifier: &Verifier,
        texts: Vec<String>,
    ) -> Vec<Verification> {
        // Built up front and called only when first polled, as in `verify`.
        let jobs: Vec<BoxFuture<'static, Verification>> = texts
            .into_iter()
            .map(|text| {
                let (verifier, request) = (verifier.clone(), request.clone());
                Box::pin(async move { verifier.check(&request, &text).await })
                    as BoxFuture<'static, Verification>
            })
            .collect();
        futures::stream::iter(jobs)
            .buffered(self.concurrency().get())
            .collect()
            .await
    }

    /// Runs each of `texts` against `tests` with `verifier`'s test runner, in order; an empty
    /// row for each when the verifier has none.
    pub(crate) async fn test_all(
        &self,
        request: &ChatRequest,
        verifier: &Verifier,
        texts: Vec<String>,
        tests: &[String],
    ) -> Vec<Vec<TestResult>> {
        let jobs: Vec<BoxFuture<'static, Vec<TestResult>>> = texts
            .into_iter()
            .map(|text| {
                let (verifier, request, tests) =
                    (verifier.clone(), request.clone(), tests.to_vec());
                Box::pin(async move {
                    match verifier.run_tests(&request, &text, &tests) {
                        Some(run) => run.await,
                        None => Vec::new(),
                    }
                }) as BoxFuture<'static, Vec<TestResult>>
            })
            .collect();
        futures::stream::iter(jobs)
            .buffered(self.concurrency().get())
            .collect()
            .await
    }
}

#[cfg(test)]
#[path = "selection_tests.rs"]
mod tests;
