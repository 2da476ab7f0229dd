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
//! Its reply is the answer, and streams as it is generated (the
//! [`ModelClient`] impl sends it on as it arrives, after the proposals are
//! in). Proposals that failed (under [`FailurePolicy::Drop`]) or are blank
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

use super::calls::{CallPolicy, Calls};
use super::request::{fill_temperature, question, rewrite_last_user_message};
use super::sampling::{DEFAULT_BASE_SEED, check_count, check_temperature, seeded_samples};
use super::trace::{Candidate, FailurePolicy, Outcome, Step};
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{
    BatchRequest, ChatRequest, Completion, ModelClient, SamplingOptions, collect_completion,
};
use crate::error::{Error, Result};

/// Configuration of [`MixtureOfAgents`].
#[derive(Clone)]
pub struct MixtureOfAgentsConfig {
    /// How many proposals the wrapped client makes (default 3); must be at least 1. Ignored
    /// with [`MixtureOfAgents::with_proposers`], where each listed proposer answers once.
    pub n: usize,
    /// The temperature of every proposal when the request sets none (default 0.7); the
    /// request's temperature wins.
    pub temperature: Option<f32>,
    /// The temperature of the aggregator call when the request sets none (default 0: the
    /// synthesis is the most likely answer given the proposals, and the diversity comes from
    /// the proposals); the request's temperature wins.
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
    /// Clients that each answer once instead of the wrapped client's `n` samples (default
    /// none); set by [`MixtureOfAgents::with_proposers`].
    pub proposers: Vec<Arc<dyn ModelClient>>,
}

impl fmt::Debug for MixtureOfAgentsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MixtureOfAgentsConfig")
            .field("n", &self.n)
            .field("temperature", &self.temperature)
            .field("aggregator_temperature", &self.aggregator_temperature)
            .field("base_seed", &self.base_seed)
            .field("concurrency", &self.concurrency)
            .field("on_failure", &self.on_failure)
            .field("proposers", &self.proposers.len())
            .finish()
    }
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
            proposers: Vec::new(),
        }
    }
}

impl MixtureOfAgentsConfig {
    /// The sampling options of `count` proposals for a request with options `base`: `base`, its
    /// temperature filled in from [`temperature`](Self::temperature) when it has none, and the
    /// seed from [`derive_seeds`](super::sampling::derive_seeds) (its base
    /// is `base.seed`, or [`base_seed`](Self::base_seed) when the request has none).
    pub fn proposal_options(&self, base: &SamplingOptions, count: usize) -> Vec<SamplingOptions> {
        seeded_samples(base, self.temperature, self.base_seed, count)
    }

    /// The sampling options of the aggregator call: the request's, its temperature filled in
    /// from [`aggregator_temperature`](Self::aggregator_temperature) when it has none.
    pub fn aggregator_options(&self, base: &SamplingOptions) -> SamplingOptions {
        fill_temperature(base, self.aggregator_temperature)
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

/// A mixture of agents over an inner client (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`] when `n` is 0 or a temperature is invalid.
pub type MixtureOfAgents<C> = StrategyClient<MixtureOfAgentsConfig, C>;

impl<C> MixtureOfAgents<C> {
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
        Self::new(
            aggregator,
            MixtureOfAgentsConfig {
                proposers,
                ..config
            },
        )
    }

    /// The listed proposers; empty when the wrapped client proposes.
    pub fn proposers(&self) -> &[Arc<dyn ModelClient>] {
        &self.config().proposers
    }
}

impl Algorithm for MixtureOfAgentsConfig {
    const NAME: &'static str = "mixture_of_agents";

    fn validate(&self) -> Result<()> {
        // With listed proposers, each answers once and `n` is not used.
        if self.proposers.is_empty() {
            check_count("n", self.n)?;
        }
        check_temperature("temperature", self.temperature)?;
        check_temperature("aggregator_temperature", self.aggregator_temperature)
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    /// Gathers the proposals, synthesises them, and returns the trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let question = question(&request, Self::NAME)?;
        let mut candidates = self.propose(calls, &request).await?;
        calls.ensure_survivor(&candidates)?;
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
            return Err(no_proposal_to_aggregate(calls, &candidates));
        }
        if !steps.is_empty() {
            tracing::warn!(
                strategy = Self::NAME,
                blank = steps.len(),
                "blank proposals left out of the aggregation"
            );
        }
        let prompt = aggregate_prompt(&question, &proposals);
        let options = self.aggregator_options(&request.options);
        let aggregate_request =
            rewrite_last_user_message(request, Self::NAME, |_| prompt)?.with_options(options);
        let options = aggregate_request.options.clone();
        let completion = calls.final_call("aggregate", aggregate_request).await?;
        tracing::debug!(
            strategy = Self::NAME,
            proposals = proposals.len(),
            "proposals aggregated"
        );
        candidates.push(Candidate::generated(options, completion));
        let winner = candidates.len() - 1;
        calls.finish(candidates, winner, steps, &[])
    }
}

impl Configured for MixtureOfAgentsConfig {}

impl MixtureOfAgentsConfig {
    /// The proposals: samples of the wrapped client, or one answer from each listed proposer.
    async fn propose(&self, calls: &Calls<'_>, request: &ChatRequest) -> Result<Vec<Candidate>> {
        if self.proposers.is_empty() {
            let samples = self.proposal_options(&request.options, self.n);
            return calls.candidates(request.clone(), samples).await;
        }
        let count = self.proposers.len();
        let options = self.proposal_options(&request.options, count);
        // The calls are built before they enter the stream, each owning its proposer and
        // request, so the stream holds no closure over borrowed items.
        let answers: Vec<_> = self
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
        let results: Vec<Result<Completion>> = futures::stream::iter(answers)
            .buffered(self.concurrency.get())
            .collect()
            .await;
        // Named as `Calls::candidates` names the wrapped client's proposals.
        calls.candidates_from(options, results, |index| {
            format!("candidate {index} of {count}")
        })
    }
}

/// [`Error::AllCandidatesFailed`] for proposals of which none is left to aggregate: each one
/// failed or is blank, and not all failed.
fn no_proposal_to_aggregate(calls: &Calls<'_>, candidates: &[Candidate]) -> Error {
    let first_error = match candidates.iter().find_map(|c| c.dropped.as_ref()) {
        None => "every proposal was blank (only whitespace): nothing to aggregate".to_owned(),
        Some(failure) => format!(
            "every proposal was blank (only whitespace) or failed: nothing to aggregate; \
             the first failure: {}: {}",
            failure.call, failure.error
        ),
    };
    calls.all_failed(candidates.len(), first_error)
}

/// One listed proposer's answer to `request`.
async fn answer_once(proposer: Arc<dyn ModelClient>, request: ChatRequest) -> Result<Completion> {
    collect_completion(proposer.stream_chat(request)).await
}

#[cfg(test)]
#[path = "mixture_of_agents_tests.rs"]
mod tests;
