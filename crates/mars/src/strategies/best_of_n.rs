//! BestOfN: n candidates at one temperature, scored by a judge or a verifier, the best returned.
//!
//! Source: best-of-n sampling with a model judge, as in optillm's `bon` approach; with a
//! verifier, as in generate-then-verify pipelines such as AlphaCode (Li et al. 2022).
//!
//! Algorithm: the request is sampled n times at the same temperature with distinct seeds derived
//! from the request's seed, all through one [`ModelClient::complete_batch`] call. Each candidate
//! is scored by the [`Selector`]: with [`Selector::Judge`], the inner model rates it 0–10 in a
//! separate call (an unparseable rating counts as 0 and is recorded as such); with
//! [`Selector::Verifier`], a user function scores it. The highest score wins, ties going to the
//! shorter answer and then to the lower index, and the trace records every score.
//!
//! Cost: n model calls, plus n judge calls with [`Selector::Judge`] (none with a verifier). The
//! candidates run concurrently, then the judge calls do, at most `concurrency` at a time.
//!
//! ```
//! use mars::strategies::{BestOfN, BestOfNConfig, Score};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // Requests 0 and 1 are the candidates; 2 and 3 are the judge calls rating them.
//! let replies = ["fn a() {}", "fn b() {}", "Rating: 3", "9/10"];
//! let client = ScriptedClient::from_fn(move |i, _request| Turn::text(replies[i]));
//! let config = BestOfNConfig { n: 2, ..BestOfNConfig::default() };
//! let strategy = BestOfN::new(client, config)?;
//! let outcome = strategy.run("Write a function".into()).await?;
//! assert_eq!(outcome.answer, "fn b() {}");
//! assert!(matches!(outcome.candidates[0].score, Score::Judge { rating: 3.0, parsed: true, .. }));
//! assert_eq!(outcome.usage.model_calls, 4);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::num::NonZeroUsize;

use super::calls::{CallPolicy, Calls};
use super::sampling::{DEFAULT_BASE_SEED, check_count, check_temperature, seeded_samples};
use super::selection::{JudgeConfig, Selector, judge_options, validate_selector};
use super::trace::{FailurePolicy, Outcome};
use super::wrapper::{Algorithm, Configured, StrategyClient, run_seed};
use crate::client::{BatchRequest, ChatRequest, ModelClient, SamplingOptions};
use crate::error::Result;

/// Configuration of [`BestOfN`].
#[derive(Debug, Clone)]
pub struct BestOfNConfig {
    /// How many candidates (default 4); must be at least 1.
    pub n: usize,
    /// The temperature of every candidate when the request sets none (default 0.8); the
    /// request's temperature wins.
    pub temperature: Option<f32>,
    /// How candidates are scored (default a judge with [`JudgeConfig::default`]).
    pub selector: Selector,
    /// The base of the candidate seeds when the request carries no seed (default 0).
    pub base_seed: u64,
    /// At most this many candidates, then judge or verifier calls, in flight (default 4).
    pub concurrency: NonZeroUsize,
    /// What a failed candidate or judge call does (default [`FailurePolicy::Fail`]).
    pub on_failure: FailurePolicy,
}

impl Default for BestOfNConfig {
    fn default() -> Self {
        BestOfNConfig {
            n: 4,
            temperature: Some(0.8),
            selector: Selector::default(),
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

impl BestOfNConfig {
    /// The sampling options of each candidate for a request with options `base`: `base`, its
    /// temperature filled in from [`temperature`](Self::temperature) when it has none, and the
    /// seed from [`derive_seeds`](super::sampling::derive_seeds) (its base is `base.seed`, or [`base_seed`](Self::base_seed)
    /// when the request has none).
    pub fn samples(&self, base: &SamplingOptions) -> Vec<SamplingOptions> {
        seeded_samples(base, self.temperature, self.base_seed, self.n)
    }

    /// The sampling options of the judge calls: the request's temperature (the judge's when the
    /// request sets none), the judge's token limit, and the request's seed base (so that a
    /// seeded run is reproducible).
    pub fn judge_options(&self, judge: &JudgeConfig, base: &SamplingOptions) -> SamplingOptions {
        judge_options(judge, base, self.base_seed)
    }
}

/// Best-of-n sampling with a pluggable selector (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) when `n` is 0 or a temperature, the judge instruction or its token
/// limit is invalid.
pub type BestOfN<C> = StrategyClient<BestOfNConfig, C>;

impl Algorithm for BestOfNConfig {
    const NAME: &'static str = "best_of_n";

    fn validate(&self) -> Result<()> {
        check_count("n", self.n)?;
        check_temperature("temperature", self.temperature)?;
        validate_selector(&self.selector)
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    /// Generates the candidates, scores them, and returns the trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let samples = self.samples(&request.options);
        let mut candidates = calls.candidates(request.clone(), samples).await?;
        let judge_usage = calls
            .score(&request, &self.selector, self.base_seed, &mut candidates)
            .await?;
        let winner = calls.choose_best(&candidates)?;
        calls.finish(candidates, winner, Vec::new(), &judge_usage)
    }
}

impl Configured for BestOfNConfig {}

/// The seed's entry point for best-of-n, kept for its users.
#[derive(Debug, Clone, Copy)]
pub struct BestOfNAggregator;

impl BestOfNAggregator {
    /// Runs [`BestOfN`] once on `query` with `system_prompt` (none when empty) over `client`;
    /// returns the chosen answer and the trace.
    pub async fn run_best_of_n<C: ModelClient + ?Sized>(
        query: &str,
        system_prompt: &str,
        config: BestOfNConfig,
        client: &C,
    ) -> Result<(String, Outcome)> {
        let outcome = run_seed(query, system_prompt, config, client).await?;
        Ok((outcome.answer.clone(), outcome))
    }
}

#[cfg(test)]
#[path = "best_of_n_tests.rs"]
mod tests;
