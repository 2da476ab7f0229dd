//! Best-of-n selectors (a model judge or a user verifier) and the rule that picks the winner.

use std::fmt;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;

use super::rating::{DEFAULT_JUDGE_INSTRUCTION, judge_request, parse_rating};
use super::{Candidate, FailurePolicy, Score, ensure_survivor, failed_call_usage, on_failure};
use crate::client::{ChatRequest, ModelClient, SamplingOptions, Usage, collect_completion};
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
    /// Temperature of the judge calls (default 0: the most likely rating).
    pub temperature: f32,
    /// Most tokens a judge may write (default 16: room for `Rating: 7/10`, not for an essay).
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

type VerifyFn = dyn Fn(&ChatRequest, &str) -> BoxFuture<'static, f64> + Send + Sync;

/// A user-supplied async function that scores a candidate answer; higher is better.
///
/// It is given the request the candidates answer and one candidate's text. For code, a verifier
/// typically checks that the candidate compiles and passes the examples that the prompt itself
/// shows. **A verifier must never see the hidden tests that grade answers** (in a benchmark, the
/// tests used to decide pass or fail): a verifier that runs them makes best-of-n look better than
/// it can be for a user who does not have them.
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
pub struct Verifier(Arc<VerifyFn>);

impl Verifier {
    /// Wraps `verify`, called once per candidate with the request and the candidate's text.
    pub fn new<F, Fut>(verify: F) -> Self
    where
        F: Fn(&ChatRequest, &str) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = f64> + Send + 'static,
    {
        Verifier(Arc::new(move |request, candidate| {
            Box::pin(verify(request, candidate))
        }))
    }

    /// Scores `candidate`, an answer to `request`.
    pub fn score(&self, request: &ChatRequest, candidate: &str) -> BoxFuture<'static, f64> {
        (self.0)(request, candidate)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(..)")
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

/// The sampling options of judge calls: the judge's temperature and token limit, and the
/// request's seed (or `base_seed` when it has none), so that a seeded run is reproducible.
pub fn judge_options(
    judge: &JudgeConfig,
    base: &SamplingOptions,
    base_seed: u64,
) -> SamplingOptions {
    SamplingOptions {
        temperature: Some(judge.temperature),
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

/// Scores every surviving candidate with `selector`, at most `concurrency` calls at a time, and
/// returns the usage of the judge calls (none for a verifier). A failed judge call follows
/// `policy`: the error, or the candidate dropped.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn score_candidates<C: ModelClient + ?Sized>(
    inner: &C,
    strategy: &'static str,
    request: &ChatRequest,
    selector: &Selector,
    base_seed: u64,
    candidates: &mut [Candidate],
    concurrency: usize,
    policy: FailurePolicy,
) -> Result<Vec<Usage>> {
    match selector {
        Selector::Judge(judge) => {
            let options = judge_options(judge, &request.options, base_seed);
            judge_all(
                inner,
                strategy,
                request,
                judge,
                options,
                candidates,
                concurrency,
                policy,
            )
            .await
        }
        Selector::Verifier(verifier) => {
            verify_all(request, verifier, candidates, concurrency).await;
            Ok(Vec::new())
        }
    }
}

/// The index of the best surviving candidate by its score (see [`select_best`]);
/// [`Error::AllCandidatesFailed`] when none survives.
pub(crate) fn choose_best(strategy: &'static str, candidates: &[Candidate]) -> Result<usize> {
    ensure_survivor(strategy, candidates)?;
    let ranked: Vec<Ranked> = candidates.iter().map(ranked).collect();
    let winner = select_best(&ranked).ok_or(Error::AllCandidatesFailed {
        strategy,
        candidates: candidates.len(),
        first_error: "no candidate was left to select".into(),
    })?;
    tracing::debug!(strategy, winner, ?ranked, "candidates scored");
    Ok(winner)
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

/// Rates every surviving candidate in its own judge call; returns the judge calls' usage.
#[allow(clippy::too_many_arguments)]
async fn judge_all<C: ModelClient + ?Sized>(
    inner: &C,
    strategy: &'static str,
    request: &ChatRequest,
    judge: &JudgeConfig,
    options: SamplingOptions,
    candidates: &mut [Candidate],
    concurrency: usize,
    policy: FailurePolicy,
) -> Result<Vec<Usage>> {
    let calls: Vec<(usize, ChatRequest)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.dropped.is_none())
        .map(|(i, c)| {
            let call = judge_request(request, &c.text, &judge.instruction, options.clone());
            (i, call)
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(calls)
        .map(|(i, call)| async move { (i, collect_completion(inner.stream_chat(call)).await) })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut usage = Vec::with_capacity(results.len());
    for (i, result) in results {
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
                let call = format!("judge call for candidate {i}");
                let failure = on_failure(strategy, call, source, policy)?;
                tracing::warn!(call = %failure.call, error = %failure.error, "dropped a candidate");
                usage.push(failed_call_usage());
                candidate.dropped = Some(failure);
            }
        }
    }
    Ok(usage)
}

/// Scores every surviving candidate with the verifier.
async fn verify_all(
    request: &ChatRequest,
    verifier: &Verifier,
    candidates: &mut [Candidate],
    concurrency: usize,
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
        .buffered(concurrency.max(1))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifier_calls_are_bounded_by_the_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (flight, peak) = (in_flight.clone(), most.clone());
        // The synchronous part of the call counts as in flight until its future ends.
        let verifier = Verifier::new(move |_request: &ChatRequest, _candidate: &str| {
            let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let flight = flight.clone();
            async move {
                tokio::task::yield_now().await;
                flight.fetch_sub(1, Ordering::SeqCst);
                1.0
            }
        });
        let completion = |text: &str| crate::client::Completion {
            text: text.into(),
            finish_reason: crate::client::FinishReason::Stop,
            usage: Usage::default(),
        };
        let mut candidates: Vec<Candidate> = ["a", "b", "c"]
            .into_iter()
            .map(|t| Candidate::generated(SamplingOptions::default(), completion(t)))
            .collect();
        let client = crate::ScriptedClient::new([]);
        let judge_usage = score_candidates(
            &client,
            "test",
            &ChatRequest::new("q"),
            &Selector::Verifier(verifier),
            0,
            &mut candidates,
            1,
            FailurePolicy::Fail,
        )
        .await
        .unwrap();
        assert!(judge_usage.is_empty());
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(
            candidates
                .iter()
                .all(|c| c.score == Score::Verifier { score: Some(1.0) })
        );
    }

    #[test]
    fn best_is_highest_score_then_shortest_then_first() {
        let cases: &[(&[Ranked], Option<usize>)] = &[
            (&[], None),
            (&[None, None], None),
            (&[Some((3.0, 10))], Some(0)),
            (
                &[Some((3.0, 10)), Some((7.0, 500)), Some((5.0, 1))],
                Some(1),
            ),
            // Equal scores: the shorter answer wins.
            (
                &[Some((8.0, 30)), Some((8.0, 12)), Some((8.0, 20))],
                Some(1),
            ),
            // Equal scores and lengths: the lower index wins.
            (&[Some((8.0, 12)), Some((8.0, 12))], Some(0)),
            // Dropped candidates never win.
            (&[None, Some((0.0, 5)), None], Some(1)),
            // NaN loses to any number, even a negative one.
            (&[Some((f64::NAN, 1)), Some((-2.0, 9))], Some(1)),
            (&[Some((0.0, 9)), Some((0.0, 9)), Some((0.0, 3))], Some(2)),
        ];
        for &(candidates, expected) in cases {
            assert_eq!(select_best(candidates), expected, "{candidates:?}");
        }
    }

    #[test]
    fn judge_settings_are_validated_by_field() {
        let judge = |config: JudgeConfig| Selector::Judge(config);
        let cases: Vec<(Selector, Option<&str>)> = vec![
            (Selector::default(), None),
            (
                Selector::Verifier(Verifier::new(|_: &ChatRequest, _: &str| async { 0.0 })),
                None,
            ),
            (
                judge(JudgeConfig {
                    instruction: "\n ".into(),
                    ..JudgeConfig::default()
                }),
                Some("selector.instruction"),
            ),
            (
                judge(JudgeConfig {
                    max_tokens: 0,
                    ..JudgeConfig::default()
                }),
                Some("selector.max_tokens"),
            ),
            (
                judge(JudgeConfig {
                    temperature: f32::NAN,
                    ..JudgeConfig::default()
                }),
                Some("selector.temperature"),
            ),
            (
                judge(JudgeConfig {
                    temperature: -0.1,
                    ..JudgeConfig::default()
                }),
                Some("selector.temperature"),
            ),
        ];
        for (selector, expected) in cases {
            let field = match validate_selector(&selector) {
                Ok(()) => None,
                Err(Error::InvalidConfig { field, .. }) => Some(field),
                Err(other) => panic!("{other:?}"),
            };
            assert_eq!(field, expected, "{selector:?}");
        }
    }

    #[tokio::test]
    async fn verifier_sees_request_and_candidate() {
        let verifier = Verifier::new(|request: &ChatRequest, candidate: &str| {
            let score = (request.last_user_message().unwrap_or("").len() + candidate.len()) as f64;
            async move { score }
        });
        let score = verifier.score(&ChatRequest::new("abc"), "de").await;
        assert_eq!(score, 5.0);
    }
}
