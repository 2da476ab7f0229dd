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

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::sampling::{DEFAULT_BASE_SEED, check_count, seeded_samples};
use super::selection::{
    JudgeConfig, Selector, choose_best, judge_options, score_candidates, validate_selector,
};
use super::{
    FailurePolicy, Outcome, Strategy, ensure_survivor, finish_outcome, generate_candidates,
    outcome_stream, seed_request, total_usage,
};
use crate::client::{BatchRequest, ChatRequest, EventStream, ModelClient, SamplingOptions};
use crate::error::{Error, Result};

/// Configuration of [`BestOfN`].
#[derive(Debug, Clone)]
pub struct BestOfNConfig {
    /// How many candidates (default 4); must be at least 1.
    pub n: usize,
    /// The temperature of every candidate (default 0.8); `None` keeps the request's.
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
    /// The sampling options of each candidate for a request with options `base`: `base` with
    /// [`temperature`](Self::temperature) (when set) and the seed from [`derive_seeds`] (its base
    /// is `base.seed`, or [`base_seed`](Self::base_seed) when the request has none).
    pub fn samples(&self, base: &SamplingOptions) -> Vec<SamplingOptions> {
        seeded_samples(base, self.temperature, self.base_seed, self.n)
    }

    /// The sampling options of the judge calls: the judge's temperature and token limit, and
    /// the request's seed base (so that a seeded run is reproducible).
    pub fn judge_options(&self, judge: &JudgeConfig, base: &SamplingOptions) -> SamplingOptions {
        judge_options(judge, base, self.base_seed)
    }

    fn validate(&self) -> Result<()> {
        if self.n == 0 {
            return Err(Error::InvalidConfig {
                field: "n",
                reason: "best-of-n needs at least one candidate".into(),
            });
        }
        check_count("n", self.n)?;
        if let Some(t) = self.temperature
            && (!t.is_finite() || t < 0.0)
        {
            return Err(Error::InvalidConfig {
                field: "temperature",
                reason: format!("{t} is not a temperature (finite, at least 0)"),
            });
        }
        validate_selector(&self.selector)
    }
}

/// Best-of-n sampling with a pluggable selector (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct BestOfN<C> {
    inner: C,
    config: BestOfNConfig,
}

impl<C> BestOfN<C> {
    /// The name recorded in [`Outcome::strategy`].
    pub const NAME: &'static str = "best_of_n";

    /// Wraps `inner`; fails with [`Error::InvalidConfig`] when `n` is 0 or a temperature, the
    /// judge instruction or its token limit is invalid.
    pub fn new(inner: C, config: BestOfNConfig) -> Result<Self> {
        config.validate()?;
        Ok(BestOfN { inner, config })
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Gives the wrapped client back.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// The configuration.
    pub fn config(&self) -> &BestOfNConfig {
        &self.config
    }
}

impl<C: ModelClient> BestOfN<C> {
    /// Generates the candidates, scores them, and returns the trace.
    pub async fn run(&self, request: ChatRequest) -> Result<Outcome> {
        let started = Instant::now();
        let batch = BatchRequest {
            request: request.clone(),
            samples: self.config.samples(&request.options),
            concurrency: self.config.concurrency,
        };
        let mut candidates =
            generate_candidates(&self.inner, Self::NAME, batch, self.config.on_failure).await?;
        ensure_survivor(Self::NAME, &candidates)?;
        let judge_usage = score_candidates(
            &self.inner,
            Self::NAME,
            &request,
            &self.config.selector,
            self.config.base_seed,
            &mut candidates,
            self.config.concurrency.get(),
            self.config.on_failure,
        )
        .await?;
        let winner = choose_best(Self::NAME, &candidates)?;
        let usage = total_usage(&candidates, &judge_usage, started);
        finish_outcome(Self::NAME, candidates, winner, usage)
    }
}

impl<C: ModelClient> ModelClient for BestOfN<C> {
    /// Runs the strategy, then streams the chosen answer as one delta.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        outcome_stream(BestOfN::run(self, request))
    }
}

impl<C: ModelClient> Strategy for BestOfN<C> {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(BestOfN::run(self, request))
    }
}

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
        let outcome = BestOfN::new(client, config)?
            .run(seed_request(query, system_prompt))
            .await?;
        Ok((outcome.answer.clone(), outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::super::selection::ranked;
    use super::super::{Candidate, Score};
    use super::*;
    use crate::client::Usage;
    use crate::strategies::sampling::derive_seeds;

    #[test]
    fn candidates_share_a_temperature_and_get_distinct_seeds() {
        let config = BestOfNConfig {
            n: 3,
            ..BestOfNConfig::default()
        };
        let base = SamplingOptions {
            temperature: Some(0.1),
            max_tokens: Some(32),
            ..SamplingOptions::default()
        };
        let samples = config.samples(&base);
        assert!(
            samples
                .iter()
                .all(|s| s.temperature == Some(0.8) && s.max_tokens == Some(32))
        );
        let seeds: Vec<_> = samples.iter().filter_map(|s| s.seed).collect();
        assert_eq!(seeds, derive_seeds(DEFAULT_BASE_SEED, 3));
        let keep = BestOfNConfig {
            temperature: None,
            ..config
        };
        assert!(
            keep.samples(&base)
                .iter()
                .all(|s| s.temperature == Some(0.1))
        );
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let judge = |judge: JudgeConfig| BestOfNConfig {
            selector: Selector::Judge(judge),
            ..BestOfNConfig::default()
        };
        let cases: Vec<(BestOfNConfig, &str)> = vec![
            (
                BestOfNConfig {
                    n: 0,
                    ..BestOfNConfig::default()
                },
                "n",
            ),
            (
                BestOfNConfig {
                    temperature: Some(-1.0),
                    ..BestOfNConfig::default()
                },
                "temperature",
            ),
            (
                judge(JudgeConfig {
                    instruction: " ".into(),
                    ..JudgeConfig::default()
                }),
                "selector.instruction",
            ),
            (
                judge(JudgeConfig {
                    max_tokens: 0,
                    ..JudgeConfig::default()
                }),
                "selector.max_tokens",
            ),
            (
                judge(JudgeConfig {
                    temperature: f32::INFINITY,
                    ..JudgeConfig::default()
                }),
                "selector.temperature",
            ),
        ];
        for (config, expected_field) in cases {
            match BestOfN::new((), config).unwrap_err() {
                Error::InvalidConfig { field, .. } => assert_eq!(field, expected_field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn ranking_reads_the_score_of_each_kind() {
        let candidate = |score: Score, text: &str| Candidate {
            options: SamplingOptions::default(),
            text: text.into(),
            finish_reason: None,
            usage: Usage::default(),
            score,
            dropped: None,
        };
        let judged = candidate(
            Score::Judge {
                rating: 7.0,
                parsed: true,
                reply: "7".into(),
                usage: Usage::default(),
            },
            "héllo",
        );
        assert_eq!(ranked(&judged), Some((7.0, 5)), "length in characters");
        let verified = candidate(Score::Verifier { score: Some(0.5) }, "ab");
        assert_eq!(ranked(&verified), Some((0.5, 2)));
        let nan = ranked(&candidate(Score::Verifier { score: None }, "ab"));
        assert!(nan.is_some_and(|(s, _)| s.is_nan()));
        let mut dropped = candidate(Score::Unscored, "");
        dropped.dropped = Some(super::super::CallFailure {
            call: "c".into(),
            error: "e".into(),
        });
        assert_eq!(ranked(&dropped), None);
    }
}
