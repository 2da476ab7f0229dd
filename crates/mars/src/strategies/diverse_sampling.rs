//! DiverseSampling: n samples at evenly spaced temperatures, then a majority vote.
//!
//! Source: temperature-ensemble sampling with answer voting, as in self-consistency (Wang et al.,
//! "Self-Consistency Improves Chain of Thought Reasoning in Language Models", 2022,
//! arXiv:2203.11171), here with a spread of temperatures instead of one.
//!
//! Algorithm: the request is sampled n times, sample `i` at the `i`-th of n temperatures evenly
//! spaced over a configured range (default 0.2 to 1.0) and with its own seed derived from the
//! request's seed ([`sampling::derive_seeds`](super::sampling::derive_seeds)), all sent through
//! one [`ModelClient::complete_batch`] call so that a batching backend decodes them together.
//! Each answer is normalised into a key ([`AnswerKey`]: for code, the normalised text of its
//! fenced block) and the most common key wins, ties going to the key whose first sample has the
//! lowest temperature. The answer of that first sample is returned, and the trace lists every
//! sample's temperature, seed and vote count.
//!
//! The temperature ladder is the algorithm, so it is the one exception to the rule that a
//! request's sampling options win: the request's temperature is replaced by the ladder's. Every
//! other option (token limit, stop strings, top-p, top-k) is the request's, and the seeds derive
//! from the request's seed.
//!
//! Cost: n model calls, concurrent (at most `concurrency` at a time on a backend that does not
//! batch).
//!
//! ```
//! use mars::strategies::{DiverseSampling, DiverseSamplingConfig, Score};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let answers = ["5", "4", "4."];
//! let client = ScriptedClient::from_fn(move |i, _request| Turn::text(answers[i]));
//! let config = DiverseSamplingConfig { n: 3, ..DiverseSamplingConfig::default() };
//! let strategy = DiverseSampling::new(client, config)?;
//! let outcome = strategy.run("What is 2 + 2?".into()).await?;
//! assert_eq!(outcome.answer, "4");
//! assert_eq!(outcome.winner, 1);
//! assert!(matches!(outcome.candidates[2].score, Score::Vote { votes: 2, .. }));
//! let temperatures: Vec<_> = strategy.inner().requests().iter().map(|r| r.options.temperature).collect();
//! assert_eq!(temperatures, [Some(0.2), Some(0.6), Some(1.0)]);
//! assert_eq!(outcome.usage.model_calls, 3);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::num::NonZeroUsize;

use super::calls::{CallPolicy, Calls};
use super::sampling::{DEFAULT_BASE_SEED, check_count, derive_seeds, spaced_temperatures};
use super::trace::{FailurePolicy, Outcome, Score};
use super::voting::{AnswerKey, majority};
use super::wrapper::{Algorithm, Configured, StrategyClient, run_seed};
use crate::client::{BatchRequest, ChatRequest, ModelClient, SamplingOptions};
use crate::error::{Error, Result};

/// Configuration of [`DiverseSampling`].
#[derive(Debug, Clone)]
pub struct DiverseSamplingConfig {
    /// How many samples (default 5); must be at least 1.
    pub n: usize,
    /// Temperature of the first sample (default 0.2).
    pub min_temperature: f32,
    /// Temperature of the last sample (default 1.0); at least `min_temperature`.
    pub max_temperature: f32,
    /// The base of the sample seeds when the request carries no seed (default 0).
    pub base_seed: u64,
    /// How answers are normalised before they vote (default [`AnswerKey::Auto`]).
    pub answer_key: AnswerKey,
    /// At most this many samples in flight on a backend that does not batch (default 4).
    pub concurrency: NonZeroUsize,
    /// What a failed sample does (default [`FailurePolicy::Fail`]).
    pub on_failure: FailurePolicy,
}

impl Default for DiverseSamplingConfig {
    fn default() -> Self {
        DiverseSamplingConfig {
            n: 5,
            min_temperature: 0.2,
            max_temperature: 1.0,
            base_seed: DEFAULT_BASE_SEED,
            answer_key: AnswerKey::Auto,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

impl DiverseSamplingConfig {
    /// The sampling options of each sample for a request with options `base`: `base` with the
    /// temperature from [`spaced_temperatures`] and the seed from [`derive_seeds`] (its base is
    /// `base.seed`, or [`base_seed`](Self::base_seed) when the request has none).
    pub fn samples(&self, base: &SamplingOptions) -> Vec<SamplingOptions> {
        let temperatures = spaced_temperatures(self.min_temperature, self.max_temperature, self.n);
        let seeds = derive_seeds(base.seed.unwrap_or(self.base_seed), self.n);
        temperatures
            .into_iter()
            .zip(seeds)
            .map(|(temperature, seed)| SamplingOptions {
                temperature: Some(temperature),
                seed: Some(seed),
                ..base.clone()
            })
            .collect()
    }
}

/// Diverse-temperature sampling with a majority vote (see the [module docs](self)); `new` fails
/// with [`Error::InvalidConfig`] when `n` is 0 or a temperature is invalid.
pub type DiverseSampling<C> = StrategyClient<DiverseSamplingConfig, C>;

impl Algorithm for DiverseSamplingConfig {
    const NAME: &'static str = "diverse_sampling";

    fn validate(&self) -> Result<()> {
        check_count("n", self.n)?;
        for (field, value) in [
            ("min_temperature", self.min_temperature),
            ("max_temperature", self.max_temperature),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(Error::InvalidConfig {
                    field,
                    reason: format!("{value} is not a temperature (finite, at least 0)"),
                });
            }
        }
        if self.min_temperature > self.max_temperature {
            return Err(Error::InvalidConfig {
                field: "min_temperature",
                reason: format!(
                    "{} is above max_temperature {}",
                    self.min_temperature, self.max_temperature
                ),
            });
        }
        Ok(())
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    /// Samples, votes and returns the trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let samples = self.samples(&request.options);
        let mut candidates = calls.candidates(request, samples).await?;
        let keys: Vec<Option<String>> = candidates
            .iter()
            .map(|c| c.dropped.is_none().then(|| self.answer_key.key(&c.text)))
            .collect();
        let key_refs: Vec<Option<&str>> = keys.iter().map(Option::as_deref).collect();
        let Some(tally) = majority(&key_refs) else {
            // `candidates` left at least one voter; kept as an error, not a panic.
            let first_error = "no candidate was left to vote".to_owned();
            return Err(calls.all_failed(candidates.len(), first_error));
        };
        for ((candidate, key), votes) in candidates.iter_mut().zip(keys).zip(&tally.votes) {
            if let Some(key) = key {
                candidate.score = Score::Vote { key, votes: *votes };
            }
        }
        tracing::debug!(
            strategy = Self::NAME,
            winner = tally.winner,
            votes = ?tally.votes,
            "vote counted"
        );
        calls.finish(candidates, tally.winner, Vec::new(), &[])
    }
}

impl Configured for DiverseSamplingConfig {}

/// The seed's entry point for diverse sampling, kept for its users.
#[derive(Debug, Clone, Copy)]
pub struct DiverseSamplingAggregator;

impl DiverseSamplingAggregator {
    /// Runs [`DiverseSampling`] once on `query` with `system_prompt` (none when empty) over
    /// `client`.
    pub async fn run_diverse_sampling<C: ModelClient + ?Sized>(
        query: &str,
        system_prompt: &str,
        config: DiverseSamplingConfig,
        client: &C,
    ) -> Result<Outcome> {
        run_seed(query, system_prompt, config, client).await
    }
}

#[cfg(test)]
#[path = "diverse_sampling_tests.rs"]
mod tests;
