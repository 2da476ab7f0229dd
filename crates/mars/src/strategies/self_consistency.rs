//! SelfConsistency: k samples at one temperature, then a majority vote over their final answers.
//!
//! Source: Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in Language
//! Models" (2022, arXiv:2203.11171), as optillm's `self_consistency` approach implements it;
//! with a verifier, filtered as in AlphaCode (Li et al. 2022) before the vote.
//!
//! Algorithm: the request is sampled k times at one temperature with distinct seeds derived from
//! the request's seed, all through one [`ModelClient::complete_batch`](crate::ModelClient::complete_batch) call. Each answer is
//! reduced to its final answer ([`AnswerKey::FinalAnswer`]: the `\boxed{}` value, else the
//! normalised code of its first fenced block, else what follows "the answer is", else the last
//! line) and the most common final answer wins, ties going to the earliest sample, whose full
//! answer is returned. With a [`Verifier`] (for code: one that runs the examples the prompt
//! shows), every sample is scored first, only the samples with the top score vote, and the trace
//! records each sample's score and vote ([`Score::VerifiedVote`]).
//!
//! So with a verifier the clustering is: filter to the top verifier score, then vote by the
//! answer key, which for code is the normalised code (comments and layout removed, see
//! [`crate::code::normalize_code`]), not what the program does. Two correct programs written
//! differently (`a + b` and `b + a`) are two keys and split their votes; a program written the
//! same way more often wins, and among distinct programs that all pass, the earliest sample.
//! Junk replies (blank, or only marks such as `"..."`) share the empty key, which never wins
//! against a non-empty one; when every reply is junk, the earliest sample wins.
//!
//! Cost: k model calls, concurrent (at most `concurrency` at a time on a backend that does not
//! batch), plus k verifier runs (no model call) with a verifier.
//!
//! ```
//! use mars::strategies::{Score, SelfConsistency, SelfConsistencyConfig};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let answers = ["2 + 2 = 5", "Adding: the answer is 4.", "So \\boxed{4}"];
//! let client = ScriptedClient::from_fn(move |i, _request| Turn::text(answers[i]));
//! let config = SelfConsistencyConfig { n: 3, ..SelfConsistencyConfig::default() };
//! let strategy = SelfConsistency::new(client, config)?;
//! let outcome = strategy.run("What is 2 + 2?".into()).await?;
//! assert_eq!(outcome.answer, "Adding: the answer is 4.");
//! assert_eq!(outcome.candidates[2].score, Score::Vote { key: "4".into(), votes: 2 });
//! assert_eq!(outcome.usage.model_calls, 3);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::num::NonZeroUsize;

use super::calls::{CallPolicy, Calls};
use super::sampling::{DEFAULT_BASE_SEED, check_count, check_temperature, seeded_samples};
use super::selection::Verifier;
use super::trace::{Candidate, FailurePolicy, Outcome, Score};
use super::voting::{AnswerKey, majority};
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{BatchRequest, ChatRequest, SamplingOptions};
use crate::error::Result;

/// Configuration of [`SelfConsistency`].
#[derive(Debug, Clone)]
pub struct SelfConsistencyConfig {
    /// How many samples, k (default 5); must be at least 1.
    pub n: usize,
    /// The temperature of every sample when the request sets none (default 0.7); the
    /// request's temperature wins.
    pub temperature: Option<f32>,
    /// How answers are reduced before they vote (default [`AnswerKey::FinalAnswer`]).
    pub answer_key: AnswerKey,
    /// When set, scores every sample, and only the top-scored samples vote (default none). It
    /// must never run the hidden tests that grade answers (see [`Verifier`]).
    pub verifier: Option<Verifier>,
    /// The base of the sample seeds when the request carries no seed (default 0).
    pub base_seed: u64,
    /// At most this many samples, then verifier runs, in flight (default 4).
    pub concurrency: NonZeroUsize,
    /// What a failed sample does (default [`FailurePolicy::Fail`]).
    pub on_failure: FailurePolicy,
}

impl Default for SelfConsistencyConfig {
    fn default() -> Self {
        SelfConsistencyConfig {
            n: 5,
            temperature: Some(0.7),
            answer_key: AnswerKey::FinalAnswer,
            verifier: None,
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

impl SelfConsistencyConfig {
    /// The sampling options of each sample for a request with options `base`: `base` with
    /// [`temperature`](Self::temperature) (when set) and the seed from [`derive_seeds`](super::sampling::derive_seeds) (its base
    /// is `base.seed`, or [`base_seed`](Self::base_seed) when the request has none).
    pub fn samples(&self, base: &SamplingOptions) -> Vec<SamplingOptions> {
        seeded_samples(base, self.temperature, self.base_seed, self.n)
    }
}

/// Which candidates may vote after verification: those with the top score.
///
/// `scores[i]` is `None` for a dropped candidate (never kept) and `Some(None)` for a NaN score,
/// which ranks below every number: NaN-scored candidates are kept only when no candidate has a
/// number.
pub fn top_scored(scores: &[Option<Option<f64>>]) -> Vec<bool> {
    let best = scores
        .iter()
        .filter_map(|s| s.flatten())
        .fold(None, |best: Option<f64>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        });
    scores
        .iter()
        .map(|score| match score {
            None => false,
            Some(score) => *score == best,
        })
        .collect()
}

/// Self-consistency over an inner client (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) when `n` is 0 or the temperature is invalid.
pub type SelfConsistency<C> = StrategyClient<SelfConsistencyConfig, C>;

impl Algorithm for SelfConsistencyConfig {
    const NAME: &'static str = "self_consistency";

    fn validate(&self) -> Result<()> {
        check_count("n", self.n)?;
        check_temperature("temperature", self.temperature)?;
        Ok(())
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    /// Samples, verifies when a verifier is set, votes and returns the trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let samples = self.samples(&request.options);
        let mut candidates = calls.candidates(request.clone(), samples).await?;
        let keys: Vec<Option<String>> = candidates
            .iter()
            .map(|c| c.dropped.is_none().then(|| self.answer_key.key(&c.text)))
            .collect();
        let scores = match &self.verifier {
            Some(verifier) => Some(verify(calls, &request, verifier, &mut candidates).await?),
            None => None,
        };
        let voters: Vec<Option<&str>> = match &scores {
            Some(scores) => keys
                .iter()
                .zip(top_scored(scores))
                .map(|(key, kept)| key.as_deref().filter(|_| kept))
                .collect(),
            None => keys.iter().map(Option::as_deref).collect(),
        };
        let Some(tally) = majority(&voters) else {
            // `candidates` left at least one voter, and the top score is someone's;
            // kept as an error, not a panic.
            let first_error = "no candidate was left to vote".to_owned();
            return Err(calls.all_failed(candidates.len(), first_error));
        };
        for (i, (candidate, key)) in candidates.iter_mut().zip(keys).enumerate() {
            let Some(key) = key else { continue };
            let votes = tally.votes.get(i).copied().unwrap_or(0);
            candidate.score = match scores.as_ref().and_then(|s| s.get(i)) {
                Some(score) => Score::VerifiedVote {
                    score: score.flatten(),
                    key,
                    votes,
                },
                None => Score::Vote { key, votes },
            };
        }
        tracing::debug!(
            strategy = Self::NAME,
            winner = tally.winner,
            votes = ?tally.votes,
            ?scores,
            "vote counted"
        );
        calls.finish(candidates, tally.winner, Vec::new(), &[])
    }
}

impl Configured for SelfConsistencyConfig {}

/// Scores every surviving candidate with `verifier`: for each candidate, `None` when it was
/// dropped, else its score (`None` for NaN).
async fn verify(
    calls: &Calls<'_>,
    request: &ChatRequest,
    verifier: &Verifier,
    candidates: &mut [Candidate],
) -> Result<Vec<Option<Option<f64>>>> {
    // A verifier makes no model call, so there is no usage to add.
    calls.verify(request, verifier, candidates).await;
    Ok(candidates
        .iter()
        .map(|c| match (&c.dropped, &c.score) {
            (None, Score::Verifier { score }) => Some(*score),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
#[path = "self_consistency_tests.rs"]
mod tests;
