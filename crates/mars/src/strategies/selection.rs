//! Best-of-n selectors (a model judge or a user verifier) and the rule that picks the winner.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::rating::DEFAULT_JUDGE_INSTRUCTION;
use crate::client::ChatRequest;

/// How [`BestOfN`](super::BestOfN) scores its candidates.
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

#[cfg(test)]
mod tests {
    use super::*;

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
