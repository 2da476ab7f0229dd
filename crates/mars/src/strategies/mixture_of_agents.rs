//! MixtureOfAgents: several proposers answer, then an aggregator synthesises one answer from them.
//!
//! Source: Wang et al., "Mixture-of-Agents Enhances Large Language Model Capabilities" (2024,
//! arXiv:2406.04692), one proposer layer and its "aggregate-and-synthesize" step, as optillm's
//! `moa` approach applies it to one model (optillm also asks for a critique of the proposals
//! before the final call; this strategy goes straight to the synthesis, as the paper does).
//!
//! Algorithm: the proposers answer the request in parallel: by default n samples of the wrapped
//! client at one temperature with distinct seeds derived from the request's seed, sent through
//! one [`ModelClient::complete_batch`] call; with [`MixtureOfAgents::with_proposers`], each
//! listed client answers once. The aggregator (the wrapped client) then gets the same
//! conversation with its last user message replaced by [`aggregate_prompt`]: the original
//! question and the numbered proposals, with the request to synthesise one best final answer.
//! Its reply is the answer. Proposals that failed (under [`FailurePolicy::Drop`]) or are blank
//! (only whitespace) are not sent to the aggregator; when none is left, the run fails with
//! [`Error::AllCandidatesFailed`] without calling it.
//!
//! Trace: `candidates[0..k]` are the k proposals, in proposer order (dropped ones included,
//! marked in [`Candidate::dropped`](super::Candidate::dropped); blank ones included too, each
//! with a record in [`Outcome::steps`], made without a call, whose stage names it
//! (`"candidate i of k"`) and whose note says it was blank and not aggregated); the last
//! candidate is the aggregator's reply, made with the options recorded in it, and it is always
//! the [`winner`](Outcome::winner). So `answer` and `finish_reason` are the aggregator's, and
//! [`Outcome::winner_candidate`] is the synthesis, never a proposal. No candidate is scored.
//! A failed proposal is named `"candidate i of k"` (in [`Error::StrategyCall`] and in
//! [`CallFailure::call`](super::CallFailure::call)), whoever proposed it.
//!
//! Cost: n + 1 model calls (one per proposer, plus the aggregator; n when no proposal is left to
//! aggregate); the proposals run concurrently, at most `concurrency` at a time.
//!
//! ```
//! use mars::strategies::{MixtureOfAgents, MixtureOfAgentsConfig};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // Requests 0 to 2 are the proposals; request 3 is the aggregator's.
//! let replies = ["4", "5", "4, since 2 + 2 = 4", "2 + 2 = 4"];
//! let client = ScriptedClient::from_fn(move |i, _request| Turn::text(replies[i]));
//! let strategy = MixtureOfAgents::new(client, MixtureOfAgentsConfig::default())?;
//! let outcome = strategy.run("What is 2 + 2?".into()).await?;
//! assert_eq!(outcome.answer, "2 + 2 = 4");
//! assert_eq!((outcome.winner, outcome.candidates.len()), (3, 4));
//! let aggregate_request = &strategy.inner().requests()[3];
//! assert!(aggregate_request.last_user_message().unwrap().contains("4, since 2 + 2 = 4"));
//! assert_eq!(outcome.usage.model_calls, 4);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::sampling::{DEFAULT_BASE_SEED, check_count, seeded_samples};
use super::{
    Candidate, FailurePolicy, Outcome, Step, Strategy, call_named, ensure_survivor, finish_outcome,
    generate_candidates, on_failure, outcome_stream, rewrite_last_user_message, step_options,
    total_usage,
};
use crate::client::{
    BatchRequest, ChatRequest, Completion, EventStream, ModelClient, SamplingOptions,
    collect_completion,
};
use crate::error::{Error, Result};

/// Configuration of [`MixtureOfAgents`].
#[derive(Debug, Clone)]
pub struct MixtureOfAgentsConfig {
    /// How many proposals the wrapped client makes (default 3); must be at least 1. Ignored
    /// with [`MixtureOfAgents::with_proposers`], where each listed proposer answers once.
    pub n: usize,
    /// The temperature of every proposal (default 0.7); `None` keeps the request's.
    pub temperature: Option<f32>,
    /// The temperature of the aggregator call (default 0: the synthesis is the most likely
    /// answer given the proposals, and the diversity comes from the proposals); `None` keeps
    /// the request's.
    pub aggregator_temperature: Option<f32>,
    /// The base of the proposal seeds when the request carries no seed (default 0).
    pub base_seed: u64,
    /// At most this many proposals in flight (default 4).
    pub concurrency: NonZeroUsize,
    /// What a failed proposal does (default [`FailurePolicy::Fail`]); under
    /// [`FailurePolicy::Drop`] the aggregator sees the surviving proposals only (and of those,
    /// only the ones that are not blank). A failed aggregator call is always
    /// [`Error::StrategyCall`].
    pub on_failure: FailurePolicy,
}

impl Default for MixtureOfAgentsConfig {
    fn default() -> Self {
        MixtureOfAgentsConfig {
            n: 3,
            temperature: Some(0.7),
            aggregator_temperature: Some(0.0),
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

impl MixtureOfAgentsConfig {
    /// The sampling options of `count` proposals for a request with options `base`: `base` with
    /// [`temperature`](Self::temperature) (when set) and the seed from [`derive_seeds`] (its base
    /// is `base.seed`, or [`base_seed`](Self::base_seed) when the request has none).
    pub fn proposal_options(&self, base: &SamplingOptions, count: usize) -> Vec<SamplingOptions> {
        seeded_samples(base, self.temperature, self.base_seed, count)
    }

    /// The sampling options of the aggregator call: the request's, with
    /// [`aggregator_temperature`](Self::aggregator_temperature) when set.
    pub fn aggregator_options(&self, base: &SamplingOptions) -> SamplingOptions {
        step_options(base, self.aggregator_temperature)
    }

    fn validate(&self, check_n: bool) -> Result<()> {
        if check_n && self.n == 0 {
            return Err(Error::InvalidConfig {
                field: "n",
                reason: "a mixture of agents needs at least one proposal".into(),
            });
        }
        if check_n {
            check_count("n", self.n)?;
        }
        for (field, value) in [
            ("temperature", self.temperature),
            ("aggregator_temperature", self.aggregator_temperature),
        ] {
            if let Some(t) = value
                && (!t.is_finite() || t < 0.0)
            {
                return Err(Error::InvalidConfig {
                    field,
                    reason: format!("{t} is not a temperature (finite, at least 0)"),
                });
            }
        }
        Ok(())
    }
}

/// The aggregator's user message: the original `question`, then each proposal numbered from 1
/// in the order given, then the request to synthesise one best final answer (for code, the
/// complete code in one fenced block).
pub fn aggregate_prompt(question: &str, proposals: &[&str]) -> String {
    let mut prompt = format!(
        "Original question:\n{question}\n\n\
         Several assistants answered this question independently. Their answers follow; some \
         of them may be wrong, incomplete or biased.\n"
    );
    for (index, proposal) in proposals.iter().enumerate() {
        prompt.push_str(&format!(
            "\n--- Answer {} ---\n{}\n",
            index + 1,
            proposal.trim()
        ));
    }
    prompt.push_str(
        "\nEvaluate these answers critically and synthesise them into one final answer to the \
         original question that is better than each of them: keep what is correct, fix what is \
         wrong, and do not simply copy one answer or mention the others. Reply with the final \
         answer only. If the question asks for code, reply with the complete code in one fenced \
         code block.",
    );
    prompt
}

/// The note of the record left in [`Outcome::steps`] for a blank proposal.
const BLANK_PROPOSAL_NOTE: &str = "blank reply (only whitespace): not sent to the aggregator";

/// Mixture-of-agents: proposals, then one synthesis (see the [module docs](self)).
#[derive(Clone)]
pub struct MixtureOfAgents<C> {
    inner: C,
    proposers: Vec<Arc<dyn ModelClient>>,
    config: MixtureOfAgentsConfig,
}

impl<C> MixtureOfAgents<C> {
    /// The name recorded in [`Outcome::strategy`].
    pub const NAME: &'static str = "mixture_of_agents";

    /// Wraps `inner`, which makes the `n` proposals and the synthesis; fails with
    /// [`Error::InvalidConfig`] when `n` is 0 or a temperature is invalid.
    pub fn new(inner: C, config: MixtureOfAgentsConfig) -> Result<Self> {
        config.validate(true)?;
        Ok(MixtureOfAgents {
            inner,
            proposers: Vec::new(),
            config,
        })
    }

    /// Each of `proposers` answers once (`config.n` is ignored) and `aggregator` synthesises;
    /// fails with [`Error::InvalidConfig`] when the list is empty or a temperature is invalid.
    pub fn with_proposers(
        aggregator: C,
        proposers: Vec<Arc<dyn ModelClient>>,
        config: MixtureOfAgentsConfig,
    ) -> Result<Self> {
        if proposers.is_empty() {
            return Err(Error::InvalidConfig {
                field: "proposers",
                reason: "a mixture of agents needs at least one proposer".into(),
            });
        }
        config.validate(false)?;
        Ok(MixtureOfAgents {
            inner: aggregator,
            proposers,
            config,
        })
    }

    /// The wrapped client: the aggregator, and the proposer unless proposers were listed.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Gives the wrapped client back.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// The listed proposers; empty when the wrapped client proposes.
    pub fn proposers(&self) -> &[Arc<dyn ModelClient>] {
        &self.proposers
    }

    /// The configuration.
    pub fn config(&self) -> &MixtureOfAgentsConfig {
        &self.config
    }
}

impl<C: fmt::Debug> fmt::Debug for MixtureOfAgents<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MixtureOfAgents")
            .field("inner", &self.inner)
            .field("proposers", &self.proposers.len())
            .field("config", &self.config)
            .finish()
    }
}

impl<C: ModelClient> MixtureOfAgents<C> {
    /// Gathers the proposals, synthesises them, and returns the trace.
    pub async fn run(&self, request: ChatRequest) -> Result<Outcome> {
        let started = Instant::now();
        let Some(question) = request.last_user_message().map(str::to_owned) else {
            return Err(Error::Unsupported {
                detail: format!(
                    "{} needs a user message to answer, and the request has none",
                    Self::NAME
                ),
            });
        };
        let mut candidates = self.propose(&request).await?;
        ensure_survivor(Self::NAME, &candidates)?;
        let count = candidates.len();
        let steps: Vec<Step> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.dropped.is_none() && c.text.trim().is_empty())
            .map(|(index, c)| {
                Step::record(
                    format!("candidate {index} of {count}"),
                    c.text.clone(),
                    BLANK_PROPOSAL_NOTE,
                )
            })
            .collect();
        let proposals: Vec<&str> = candidates
            .iter()
            .filter(|c| c.dropped.is_none() && !c.text.trim().is_empty())
            .map(|c| c.text.as_str())
            .collect();
        if proposals.is_empty() {
            return Err(no_proposal_to_aggregate(&candidates));
        }
        if !steps.is_empty() {
            tracing::warn!(
                strategy = Self::NAME,
                blank = steps.len(),
                "blank proposals left out of the aggregation"
            );
        }
        let prompt = aggregate_prompt(&question, &proposals);
        let options = self.config.aggregator_options(&request.options);
        let aggregate_request =
            rewrite_last_user_message(request, Self::NAME, |_| prompt)?.with_options(options);
        let options = aggregate_request.options.clone();
        let completion =
            call_named(&self.inner, Self::NAME, "aggregate", aggregate_request).await?;
        tracing::debug!(
            strategy = Self::NAME,
            proposals = proposals.len(),
            "proposals aggregated"
        );
        candidates.push(Candidate::generated(options, completion));
        let winner = candidates.len() - 1;
        let usage = total_usage(&candidates, &[], started);
        let mut outcome = finish_outcome(Self::NAME, candidates, winner, usage)?;
        outcome.steps = steps;
        Ok(outcome)
    }

    /// The proposals: samples of the wrapped client, or one answer from each listed proposer.
    async fn propose(&self, request: &ChatRequest) -> Result<Vec<Candidate>> {
        if self.proposers.is_empty() {
            let batch = BatchRequest {
                request: request.clone(),
                samples: self
                    .config
                    .proposal_options(&request.options, self.config.n),
                concurrency: self.config.concurrency,
            };
            return generate_candidates(&self.inner, Self::NAME, batch, self.config.on_failure)
                .await;
        }
        let count = self.proposers.len();
        let options = self.config.proposal_options(&request.options, count);
        // The calls are built before they enter the stream, each owning its proposer and
        // request, so the stream holds no closure over borrowed items.
        let calls: Vec<_> = self
            .proposers
            .iter()
            .zip(&options)
            .map(|(proposer, options)| {
                answer_once(
                    Arc::clone(proposer),
                    request.clone().with_options(options.clone()),
                )
            })
            .collect();
        let results: Vec<Result<Completion>> = futures::stream::iter(calls)
            .buffered(self.config.concurrency.get())
            .collect()
            .await;
        let mut candidates = Vec::with_capacity(count);
        for (index, (options, result)) in options.into_iter().zip(results).enumerate() {
            let candidate = match result {
                Ok(completion) => Candidate::generated(options, completion),
                Err(source) => {
                    // Named as generate_candidates names the wrapped client's proposals.
                    let call = format!("candidate {index} of {count}");
                    let dropped = on_failure(Self::NAME, call, source, self.config.on_failure)?;
                    tracing::warn!(
                        strategy = Self::NAME,
                        call = %dropped.call,
                        error = %dropped.error,
                        "dropped a proposal"
                    );
                    Candidate::failed(options, dropped)
                }
            };
            candidates.push(candidate);
        }
        Ok(candidates)
    }
}

/// [`Error::AllCandidatesFailed`] for proposals of which none is left to aggregate: each one
/// failed or is blank, and not all failed.
fn no_proposal_to_aggregate(candidates: &[Candidate]) -> Error {
    let first_error = match candidates.iter().find_map(|c| c.dropped.as_ref()) {
        None => "every proposal was blank (only whitespace): nothing to aggregate".to_owned(),
        Some(failure) => format!(
            "every proposal was blank (only whitespace) or failed: nothing to aggregate; \
             the first failure: {}: {}",
            failure.call, failure.error
        ),
    };
    Error::AllCandidatesFailed {
        strategy: MixtureOfAgents::<()>::NAME,
        candidates: candidates.len(),
        first_error,
    }
}

/// One listed proposer's answer to `request`.
async fn answer_once(proposer: Arc<dyn ModelClient>, request: ChatRequest) -> Result<Completion> {
    collect_completion(proposer.stream_chat(request)).await
}

impl<C: ModelClient> ModelClient for MixtureOfAgents<C> {
    /// Runs the strategy, then streams the aggregator's answer as one delta.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        outcome_stream(MixtureOfAgents::run(self, request))
    }
}

impl<C: ModelClient> Strategy for MixtureOfAgents<C> {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(MixtureOfAgents::run(self, request))
    }
}

#[cfg(test)]
#[path = "mixture_of_agents_tests.rs"]
mod tests;
