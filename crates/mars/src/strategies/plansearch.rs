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

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::sampling::{DEFAULT_BASE_SEED, check_count, derive_seeds};
use super::selection::{Selector, choose_best, score_candidates, validate_selector};
use super::{
    Candidate, FailurePolicy, Outcome, Step, Strategy, call_step, call_steps, ensure_survivor,
    finish_outcome, on_failure, outcome_stream, rewrite_last_user_message, steps_usage,
    total_usage,
};
use crate::client::{
    BatchRequest, ChatRequest, EventStream, ModelClient, SamplingOptions, collect_completion,
};
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
}

/// The items of a numbered (`1.`, `1)`, `1:`) or bulleted (`-`, `*`, `•`) list in a model's
/// reply, in order, without their markers.
///
/// Text before the first item is ignored (a preamble). A line that is not an item continues the
/// current item (joined with a space) when it follows it directly or is indented deeper than the
/// list; after a blank line, an unindented line ends the list item, and the text up to the next
/// item is ignored (a conclusion). Markers indented deeper than the first item are nested lists
/// and continue the current item. `**1.**`-style bold numbers are read as numbers. Items with no
/// letter or digit are dropped. Empty when the reply has no list.
pub fn parse_list(text: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    let mut list_indent: Option<usize> = None;
    let mut open = false;
    let mut after_blank = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            after_blank = true;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let nested = list_indent.is_some_and(|top| indent > top);
        match list_item(trimmed) {
            Some(item) if !nested => {
                list_indent.get_or_insert(indent);
                items.push(item.to_owned());
                open = true;
            }
            _ => {
                let continues = open && (!after_blank || nested);
                match items.last_mut() {
                    Some(last) if continues => {
                        if !last.is_empty() {
                            last.push(' ');
                        }
                        last.push_str(trimmed);
                    }
                    _ => open = false,
                }
            }
        }
        after_blank = false;
    }
    items.retain(|item| item.chars().any(char::is_alphanumeric));
    items
}

/// The text of a list item after its marker, or `None` when `line` (trimmed) is not an item.
fn list_item(line: &str) -> Option<&str> {
    for bullet in ['-', '*', '•', '+'] {
        if let Some(rest) = line.strip_prefix(bullet)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return Some(rest.trim());
        }
    }
    let unbolded = line.strip_prefix("**").unwrap_or(line);
    let digits = unbolded.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let rest = unbolded[digits..].strip_prefix(['.', ')', ':'])?;
    let rest = rest.strip_prefix("**").unwrap_or(rest);
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
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

/// `items` as a numbered list, one per line.
fn numbered<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| format!("{}. {}", i + 1, item.as_ref().trim()))
        .collect::<Vec<_>>()
        .join("\n")
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

/// PlanSearch over an inner client (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct PlanSearch<C> {
    inner: C,
    config: PlanSearchConfig,
}

impl<C> PlanSearch<C> {
    /// The name recorded in [`Outcome::strategy`].
    pub const NAME: &'static str = "plansearch";

    /// Wraps `inner`; fails with [`Error::InvalidConfig`] when a count is 0 or the judge's
    /// instruction, token limit or temperature is invalid.
    pub fn new(inner: C, config: PlanSearchConfig) -> Result<Self> {
        config.validate()?;
        Ok(PlanSearch { inner, config })
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
    pub fn config(&self) -> &PlanSearchConfig {
        &self.config
    }
}

impl<C: ModelClient> PlanSearch<C> {
    /// Gathers observations, writes the plans and their programs, scores the programs and
    /// returns the trace.
    pub async fn run(&self, request: ChatRequest) -> Result<Outcome> {
        let started = Instant::now();
        let config = &self.config;
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
        let step = call_step(&self.inner, Self::NAME, "observations".into(), call).await?;
        let (observations, note) = keep_list(&step.text, config.observations, "observation");
        let mut steps = vec![with_note(step, note)];

        let call = rewrite(&|q| derived_prompt(q, &observations, config.derived))?
            .with_options(observation_options);
        let step = call_step(&self.inner, Self::NAME, "derived observations".into(), call).await?;
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
        let plans = call_steps(
            &self.inner,
            Self::NAME,
            plan_calls,
            config.concurrency.get(),
        )
        .await?;

        let mut candidates = self.write_programs(&request, &plans, options).await?;
        steps.extend(plans);
        ensure_survivor(Self::NAME, &candidates)?;
        let judge_usage = score_candidates(
            &self.inner,
            Self::NAME,
            &request,
            &config.selector,
            config.base_seed,
            &mut candidates,
            config.concurrency.get(),
            config.on_failure,
        )
        .await?;
        let winner = choose_best(Self::NAME, &candidates)?;
        let mut extra = steps_usage(&steps);
        extra.extend(judge_usage);
        let usage = total_usage(&candidates, &extra, started);
        let mut outcome = finish_outcome(Self::NAME, candidates, winner, usage)?;
        outcome.steps = steps;
        Ok(outcome)
    }

    /// One program per plan, concurrently; failures follow `on_failure`.
    async fn write_programs(
        &self,
        request: &ChatRequest,
        plans: &[Step],
        options: Vec<SamplingOptions>,
    ) -> Result<Vec<Candidate>> {
        let mut calls = Vec::with_capacity(plans.len());
        for (plan, options) in plans.iter().zip(&options) {
            let call = rewrite_last_user_message(request.clone(), Self::NAME, |q| {
                code_prompt(q, &plan.text)
            })?;
            calls.push(call.with_options(options.clone()));
        }
        let inner = &self.inner;
        let results: Vec<_> = futures::stream::iter(calls)
            .map(|call| collect_completion(inner.stream_chat(call)))
            .buffered(self.config.concurrency.get())
            .collect()
            .await;
        let mut candidates = Vec::with_capacity(results.len());
        for (i, (options, result)) in options.into_iter().zip(results).enumerate() {
            match result {
                Ok(completion) => candidates.push(Candidate::generated(options, completion)),
                Err(source) => {
                    let call = format!("code for plan {i}");
                    let dropped = on_failure(Self::NAME, call, source, self.config.on_failure)?;
                    let (call, error) = (&dropped.call, &dropped.error);
                    tracing::warn!(strategy = Self::NAME, %call, %error, "dropped a candidate");
                    candidates.push(Candidate::failed(options, dropped));
                }
            }
        }
        Ok(candidates)
    }
}

fn with_note(step: Step, note: Option<String>) -> Step {
    match note {
        Some(note) => step.noted(note),
        None => step,
    }
}

impl<C: ModelClient> ModelClient for PlanSearch<C> {
    /// Runs the strategy, then streams the chosen program as one delta.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        outcome_stream(PlanSearch::run(self, request))
    }
}

impl<C: ModelClient> Strategy for PlanSearch<C> {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(PlanSearch::run(self, request))
    }
}

#[cfg(test)]
#[path = "plansearch_tests.rs"]
mod tests;
