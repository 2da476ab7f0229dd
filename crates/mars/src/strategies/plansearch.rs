//! PlanSearch: observations about a problem, plans in natural language built on them, one
//! program per plan, and the best program returned.
//!
//! Source: Wang et al., "Planning In Natural Language Improves LLM Search For Code Generation"
//! (2024, arXiv:2409.03733), as optillm's `plansearch` approach implements it.
//!
//! Algorithm: one call asks for numbered observations about the problem (hints, not a
//! solution), and a second asks for new observations derived by combining them; both replies are
//! parsed as lists ([`parse_list`]). Then p plans in natural language are written concurrently,
//! plan `i` built on its own subset of the observations ([`plan_subsets`]: the `i`-th of the
//! combined list plus every derived one), each with its own seed; for each plan, one call writes
//! the code, and these programs are the candidates. The best candidate is chosen as in
//! [`BestOfN`](super::BestOfN): a model judge rates each 0–10, or a
//! [`Verifier`](super::Verifier) scores it.
//!
//! Cost: 2 + 2p model calls for p plans (observations, derived observations, p plans, p
//! programs), plus p judge calls with [`Selector::Judge`] (none with a verifier). The plans run
//! concurrently, then the programs, then the judge calls, at most `concurrency` at a time.
//!
//! ```
//! use mars::strategies::{PlanSearch, PlanSearchConfig};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = ScriptedClient::from_fn(|_i, request| {
//!     let prompt = request.last_user_message().unwrap_or_default();
//!     Turn::text(if prompt.contains("new observations") {
//!         "1. Sorting makes duplicates adjacent."
//!     } else if prompt.contains("observations about") {
//!         "1. Duplicates are equal values.\n2. A set remembers what was seen."
//!     } else if prompt.contains("Write no code") {
//!         "Sort, then compare neighbours."
//!     } else if prompt.contains("Follow this plan") {
//!         "```rust\nfn has_dup(v: &mut [i32]) -> bool { v.sort(); /* ... */ }\n```"
//!     } else {
//!         "Rating: 8" // the judge
//!     })
//! });
//! let config = PlanSearchConfig { plans: 2, ..PlanSearchConfig::default() };
//! let strategy = PlanSearch::new(client, config)?;
//! let outcome = strategy.run("Write `has_dup`: does a slice have duplicates?".into()).await?;
//! assert!(outcome.answer.contains("fn has_dup"));
//! let stages: Vec<_> = outcome.steps.iter().map(|s| s.stage.as_str()).collect();
//! assert_eq!(stages, ["observations", "derived observations", "plan 0", "plan 1"]);
//! assert_eq!(outcome.candidates.len(), 2);
//! assert_eq!(outcome.usage.model_calls, 2 + 2 * 2 + 2);
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use std::num::NonZeroUsize;

use super::calls::{CallPolicy, Calls};
use super::parsing::{numbered, parse_list};
use super::request::rewrite_last_user_message;
use super::sampling::{DEFAULT_BASE_SEED, check_count, derive_seeds};
use super::selection::{Selector, validate_selector};
use super::trace::{Candidate, FailurePolicy, Outcome, Step};
use super::wrapper::{Algorithm, Configured, StrategyClient};
use crate::client::{BatchRequest, ChatRequest, SamplingOptions};
use crate::error::{Error, Result};

/// Configuration of [`PlanSearch`].
#[derive(Debug, Clone)]
pub struct PlanSearchConfig {
    /// How many observations are asked for and kept (default 3); must be at least 1.
    pub observations: usize,
    /// How many derived observations are asked for and kept (default 2); must be at least 1.
    pub derived: usize,
    /// How many plans, hence programs (default 3); must be at least 1.
    pub plans: usize,
    /// How programs are scored (default a judge with
    /// [`JudgeConfig::default`](super::JudgeConfig::default)).
    pub selector: Selector,
    /// The base of the plan seeds, and the seed of the observation and judge calls, when the
    /// request carries no seed (default 0).
    pub base_seed: u64,
    /// At most this many plans, then programs, then judge or verifier calls, in flight
    /// (default 4).
    pub concurrency: NonZeroUsize,
    /// What a failed program or judge call does (default [`FailurePolicy::Fail`]); a failed
    /// observation or plan call is always an error.
    pub on_failure: FailurePolicy,
}

impl Default for PlanSearchConfig {
    fn default() -> Self {
        PlanSearchConfig {
            observations: 3,
            derived: 2,
            plans: 3,
            selector: Selector::default(),
            base_seed: DEFAULT_BASE_SEED,
            concurrency: BatchRequest::DEFAULT_CONCURRENCY,
            on_failure: FailurePolicy::Fail,
        }
    }
}

impl PlanSearchConfig {
    /// The sampling options of plan `i` and of its program: `base` with the `i`-th seed from
    /// [`derive_seeds`] (its base is `base.seed`, or [`base_seed`](Self::base_seed) when the
    /// request has none). Everything else (temperature, token limit) is the request's.
    pub fn plan_options(&self, base: &SamplingOptions) -> Vec<SamplingOptions> {
        derive_seeds(base.seed.unwrap_or(self.base_seed), self.plans)
            .into_iter()
            .map(|seed| SamplingOptions {
                seed: Some(seed),
                ..base.clone()
            })
            .collect()
    }
}

/// Which observations each plan is built on, as indices into the combined list (the `initial`
/// observations, then the `derived` ones).
///
/// Plan `i` takes observation `i mod n` of the combined list (n = `initial + derived`) and every
/// derived observation, in list order. With the defaults (3 observations, 2 derived, 3 plans)
/// plan `i` gets initial observation `i` and both derived ones, so no two plans share a subset.
/// When there are more plans than observations the subsets repeat cyclically; the plans still
/// differ by their seeds ([`PlanSearchConfig::plan_options`]). With no observation at all, every
/// plan gets an empty subset.
pub fn plan_subsets(initial: usize, derived: usize, plans: usize) -> Vec<Vec<usize>> {
    let n = initial + derived;
    (0..plans)
        .map(|i| {
            if n == 0 {
                return Vec::new();
            }
            let own = i % n;
            let mut subset: Vec<usize> = (own < initial).then_some(own).into_iter().collect();
            subset.extend(initial..n);
            subset
        })
        .collect()
}

/// The prompt of the first call: `count` observations about the problem in `question`.
pub fn observations_prompt(question: &str, count: usize) -> String {
    format!(
        "You are an expert programmer. Here is a programming problem:\n\n{question}\n\n\
         Do not solve it yet. Instead, write {count} useful, non-obvious observations about the \
         problem: facts or hints that would help to solve it. Answer with a numbered list, one \
         observation per item."
    )
}

/// The prompt of the second call: `count` new observations derived from `observations`.
pub fn derived_prompt(question: &str, observations: &[String], count: usize) -> String {
    format!(
        "You are an expert programmer. Here is a programming problem:\n\n{question}\n\n\
         Observations about it:\n{}\n\nBy combining these observations, write {count} new \
         observations that follow from them and would help to solve the problem. Do not solve \
         it yet. Answer with a numbered list, one observation per item.",
        numbered(observations)
    )
}

/// The prompt of a plan: a solution sketch in natural language built on `observations` (none:
/// a plan from the problem alone).
pub fn plan_prompt(question: &str, observations: &[&str]) -> String {
    let (context, lead) = if observations.is_empty() {
        (String::new(), "Describe")
    } else {
        (
            format!("\n\nUseful observations:\n{}", numbered(observations)),
            "Using these observations, describe",
        )
    };
    format!(
        "You are an expert programmer. Here is a programming problem:\n\n{question}{context}\n\n\
         {lead} step by step, in natural language, how to solve the problem. Write no code."
    )
}

/// The prompt of a program: the original `question`, then the `plan` to follow.
pub fn code_prompt(question: &str, plan: &str) -> String {
    format!(
        "{question}\n\nFollow this plan:\n\n{}\n\nWrite the complete solution to the problem \
         above, following the plan. Answer with the code in one fenced code block.",
        plan.trim()
    )
}

/// The items kept from a list reply (at most `max`), and a note when the reply was not a list
/// or had more items than kept.
fn keep_list(reply: &str, max: usize, what: &str) -> (Vec<String>, Option<String>) {
    let mut items = parse_list(reply);
    if items.is_empty() {
        let whole = reply.trim();
        if whole.is_empty() {
            return (Vec::new(), Some(format!("the reply was blank: no {what}s")));
        }
        let note = format!("no list found: the whole reply is used as one {what}");
        return (vec![whole.to_owned()], Some(note));
    }
    let found = items.len();
    if found > max {
        items.truncate(max);
        return (
            items,
            Some(format!("{found} {what}s listed, the first {max} kept")),
        );
    }
    (items, None)
}

fn with_note(step: Step, note: Option<String>) -> Step {
    match note {
        Some(note) => step.noted(note),
        None => step,
    }
}

/// PlanSearch over an inner client (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`] when a count is 0 or the judge settings are invalid.
pub type PlanSearch<C> = StrategyClient<PlanSearchConfig, C>;

impl Algorithm for PlanSearchConfig {
    const NAME: &'static str = "plansearch";

    fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("observations", self.observations),
            ("derived", self.derived),
            ("plans", self.plans),
        ] {
            if value == 0 {
                return Err(Error::InvalidConfig {
                    field,
                    reason: "plan search needs at least one".into(),
                });
            }
            check_count(field, value)?;
        }
        validate_selector(&self.selector)
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.on_failure, self.concurrency)
    }

    /// Gathers observations, writes the plans and their programs, scores the programs and
    /// returns the trace.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let config = self;
        let rewrite = |prompt: &dyn Fn(&str) -> String| {
            rewrite_last_user_message(request.clone(), Self::NAME, prompt)
        };
        // The observation calls keep the request's options, seeded as the judge calls are, so
        // that a run without a seed is still reproducible.
        let observation_options = SamplingOptions {
            seed: Some(request.options.seed.unwrap_or(config.base_seed)),
            ..request.options.clone()
        };

        let call = rewrite(&|q| observations_prompt(q, config.observations))?
            .with_options(observation_options.clone());
        let step = calls.step("observations".into(), call).await?;
        let (observations, note) = keep_list(&step.text, config.observations, "observation");
        let mut steps = vec![with_note(step, note)];

        let call = rewrite(&|q| derived_prompt(q, &observations, config.derived))?
            .with_options(observation_options);
        let step = calls.step("derived observations".into(), call).await?;
        let (derived, note) = keep_list(&step.text, config.derived, "derived observation");
        steps.push(with_note(step, note));

        let combined: Vec<&str> = observations
            .iter()
            .chain(&derived)
            .map(String::as_str)
            .collect();
        let options = config.plan_options(&request.options);
        let subsets = plan_subsets(observations.len(), derived.len(), config.plans);
        let mut plan_calls = Vec::with_capacity(config.plans);
        for (i, (subset, options)) in subsets.iter().zip(&options).enumerate() {
            let chosen: Vec<&str> = subset
                .iter()
                .filter_map(|&j| combined.get(j).copied())
                .collect();
            let call = rewrite(&|q| plan_prompt(q, &chosen))?;
            plan_calls.push((format!("plan {i}"), call.with_options(options.clone())));
        }
        let plans = calls.steps(plan_calls).await?;

        let mut candidates = write_programs(calls, &request, &plans, options).await?;
        steps.extend(plans);
        calls.ensure_survivor(&candidates)?;
        let judge_usage = calls
            .score(
                &request,
                &config.selector,
                config.base_seed,
                &mut candidates,
            )
            .await?;
        let winner = calls.choose_best(&candidates)?;
        calls.finish(candidates, winner, steps, &judge_usage)
    }
}

impl Configured for PlanSearchConfig {}

/// One program per plan, within the concurrency bound; failures follow the failure policy.
async fn write_programs(
    calls: &Calls<'_>,
    request: &ChatRequest,
    plans: &[Step],
    options: Vec<SamplingOptions>,
) -> Result<Vec<Candidate>> {
    let mut requests = Vec::with_capacity(plans.len());
    for (plan, options) in plans.iter().zip(&options) {
        let call = rewrite_last_user_message(request.clone(), calls.strategy(), |q| {
            code_prompt(q, &plan.text)
        })?;
        requests.push(call.with_options(options.clone()));
    }
    let results = calls.answers(requests).await;
    calls.candidates_from(options, results, |i| format!("code for plan {i}"))
}

#[cfg(test)]
#[path = "plansearch_tests.rs"]
mod tests;
