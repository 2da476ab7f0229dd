//! Strategies: wrappers over any [`ModelClient`] that spend model calls to get a better answer.
//!
//! Each strategy wraps a client as tower's `Timeout<S>` wraps a service: `new(inner, config)`
//! validates the configuration, [`inner`](ReRead::inner) and [`into_inner`](ReRead::into_inner)
//! give the client back. Each has an inherent `run(request)` that returns an [`Outcome`] (the
//! answer plus a serialisable trace of every candidate), and each is itself a [`ModelClient`]:
//! its stream yields the final answer as text deltas, then one [`StreamEvent::Done`] whose
//! [`Usage`] sums every inner call (prompt and completion tokens, `model_calls`) and whose
//! `total_time` is the strategy's own wall time. So strategies nest (`BestOfN<ReRead<C>>`) and can
//! be held as `Box<dyn ModelClient>`, or as `Box<dyn Strategy>` to keep access to traces.
//!
//! | Strategy | Source | Model calls |
//! |---|---|---|
//! | [`Baseline`] | — | 1 |
//! | [`ReRead`] | RE2, Xu et al. 2023 | 1 |
//! | [`DiverseSampling`] | temperature ensembles with a majority vote | n |
//! | [`BestOfN`] | optillm's `bon` | n, plus n judge calls with [`Selector::Judge`] |
//! | [`SelfConsistency`] | Wang et al. 2022; optillm's `self_consistency` | k (a verifier adds no call) |
//! | [`CotReflection`] | optillm's `cot_reflection` | 1 |
//! | [`MixtureOfAgents`] | Wang et al. 2024; optillm's `moa` | n proposals + 1 aggregation |
//! | [`RoundTrip`] | optillm's `rto` | 3, or 4 when the round trip disagrees |
//! | [`PlanSearch`] | Wang et al. 2024, optillm's `plansearch` | 2 + 2p for p plans, plus p judge calls with [`Selector::Judge`] |
//! | [`Leap`] | Zhang et al. 2024, optillm's `leap` | 1 + e + m + (1 if m > 0) + 1 for e examples and m mistakes; e + m + (1 if m > 0) + 1 with given examples |
//! | [`Pipeline`] | optillm's `a&b` | the sum of its stages |
//!
//! The [`registry`] builds any of them from a name (mars's or optillm's slug) and shared
//! [`Defaults`], and parses pipelines such as `re2&cot_reflection`.
//!
//! Usage is measured, never estimated: it is the sum of what the inner calls reported. A call
//! that failed (and was dropped under [`FailurePolicy::Drop`]) still counts as a model call, with
//! unknown token counts, so the token sums of such an outcome are `None`.
//!
//! Strategies never name a backend; the decisions they make (voting, rating parsing, seed and
//! temperature schedules, the choice of a best candidate) are pure functions in [`voting`],
//! [`rating`], [`sampling`] and [`selection`].

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::client::{
    BatchRequest, ChatRequest, Completion, EventStream, Finish, FinishReason, ModelClient, Role,
    SamplingOptions, StreamEvent, Usage, collect_completion,
};
use crate::error::{Error, Result, truncate_for_error};

/// Longest error text kept in a trace's [`CallFailure`]; longer ones are cut and marked.
const MAX_RECORDED_ERROR_BYTES: usize = 2048;

pub mod baseline;
pub mod best_of_n;
pub mod cot_reflection;
pub mod diverse_sampling;
pub mod leap;
pub mod mixture_of_agents;
pub mod pipeline;
pub mod plansearch;
pub mod rating;
pub mod registry;
pub mod reread;
pub mod rto;
pub mod sampling;
pub mod selection;
pub mod self_consistency;
pub mod voting;

pub use baseline::Baseline;
pub use best_of_n::{BestOfN, BestOfNAggregator, BestOfNConfig};
pub use cot_reflection::{CotReflection, CotReflectionConfig};
pub use diverse_sampling::{DiverseSampling, DiverseSamplingAggregator, DiverseSamplingConfig};
pub use leap::{Leap, LeapConfig};
pub use mixture_of_agents::{MixtureOfAgents, MixtureOfAgentsConfig};
pub use pipeline::Pipeline;
pub use plansearch::{PlanSearch, PlanSearchConfig};
pub use registry::{Defaults, StrategyName, StrategySpec};
pub use reread::{ReRead, ReReadAggregator, ReReadConfig};
pub use rto::{RoundTrip, RoundTripConfig};
pub use selection::{JudgeConfig, Selector, Verifier};
pub use self_consistency::{SelfConsistency, SelfConsistencyConfig};
pub use voting::AnswerKey;

/// What a strategy produced: the answer and a trace of how it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The strategy's name (`"baseline"`, `"reread"`, ..., the names of
    /// [`StrategyName::name`]), or a pipeline's (`"reread&cot_reflection"`).
    pub strategy: String,
    /// The chosen answer: the text of `candidates[winner]`, or the part of it the strategy
    /// extracted (CoT reflection's `<output>` section).
    pub answer: String,
    /// Why the chosen answer's generation stopped.
    pub finish_reason: FinishReason,
    /// Index of the chosen candidate in `candidates`.
    pub winner: usize,
    /// Every candidate, in the order it was requested, including dropped ones.
    pub candidates: Vec<Candidate>,
    /// The sum over every inner call (candidates, judge calls and steps); `total_time` is the
    /// strategy's wall time; `time_to_first_token` is `None` (no text was streamed by `run`).
    pub usage: Usage,
    /// The calls of a multi-step strategy that are not candidates (observations, plans,
    /// descriptions, principles, ...) in the order they were made, and records of decisions
    /// made without a call (a stage skipped, how an answer was extracted); empty for the
    /// strategies that make neither.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// For a [`Pipeline`], the outcome of each stage, in order; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Outcome>,
}

impl Outcome {
    /// The chosen candidate.
    pub fn winner_candidate(&self) -> Option<&Candidate> {
        self.candidates.get(self.winner)
    }

    /// The calls that failed and whose candidates were dropped.
    pub fn failures(&self) -> impl Iterator<Item = &CallFailure> {
        self.candidates.iter().filter_map(|c| c.dropped.as_ref())
    }
}

/// One intermediate call of a multi-step strategy, or a record of a decision it made without a
/// call (then `usage.model_calls` is 0 and `finish_reason` is `None`); in [`Outcome::steps`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What the call was for, e.g. `"observations"`, `"plan 2"`, `"extract output"`.
    pub stage: String,
    /// The reply, verbatim (for a record, what the strategy kept).
    pub text: String,
    /// What the call cost, as the inner client reported it; zero for a record.
    pub usage: Usage,
    /// Why the reply's generation stopped (`Length`: cut off at the token limit); `None` for a
    /// record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// What the strategy made of the reply, when that is worth knowing (e.g. that a reply had
    /// no list to parse and was used whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Step {
    /// The step of a call that answered with `completion`.
    pub(crate) fn new(stage: impl Into<String>, completion: Completion) -> Self {
        Step {
            stage: stage.into(),
            text: completion.text,
            usage: completion.usage,
            finish_reason: Some(completion.finish_reason),
            note: None,
        }
    }

    /// A record of a decision made without a call: no model call, zero tokens, `text` what the
    /// strategy kept, `note` why.
    pub(crate) fn record(stage: impl Into<String>, text: String, note: impl Into<String>) -> Self {
        Step {
            stage: stage.into(),
            text,
            usage: Usage {
                prompt_tokens: Some(0),
                completion_tokens: Some(0),
                ..Usage::default()
            },
            finish_reason: None,
            note: Some(note.into()),
        }
    }

    /// The same step with `note` recorded.
    pub(crate) fn noted(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// One candidate answer and how the strategy judged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The sampling options it was generated with (temperature, seed, ...).
    pub options: SamplingOptions,
    /// Its text; empty when its generation failed.
    pub text: String,
    /// Why its generation stopped; `None` when it failed.
    pub finish_reason: Option<FinishReason>,
    /// What generating it cost, as the inner client reported it; for a failed generation, one
    /// model call with unknown token counts.
    pub usage: Usage,
    /// How selection saw it.
    pub score: Score,
    /// Set when a call for this candidate failed and the candidate was left out of selection
    /// (only under [`FailurePolicy::Drop`]).
    pub dropped: Option<CallFailure>,
}

impl Candidate {
    /// A candidate whose call failed under [`FailurePolicy::Drop`]: no text, one model call of
    /// unknown cost, left out of selection.
    pub(crate) fn failed(options: SamplingOptions, failure: CallFailure) -> Self {
        Candidate {
            options,
            text: String::new(),
            finish_reason: None,
            usage: failed_call_usage(),
            score: Score::Unscored,
            dropped: Some(failure),
        }
    }

    /// A candidate whose generation succeeded, not scored yet.
    pub(crate) fn generated(options: SamplingOptions, completion: Completion) -> Self {
        Candidate {
            options,
            text: completion.text,
            finish_reason: Some(completion.finish_reason),
            usage: completion.usage,
            score: Score::Unscored,
            dropped: None,
        }
    }
}

/// How a strategy's selection scored one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Score {
    /// Not scored: a single-call strategy, or a dropped candidate.
    Unscored,
    /// A majority vote: the candidate's normalised answer and how many candidates share it.
    Vote {
        /// The normalised answer that votes were counted over (see [`voting`]).
        key: String,
        /// How many candidates gave this normalised answer, this one included.
        votes: usize,
    },
    /// A rating by the model acting as judge.
    Judge {
        /// The rating, 0 to 10; 0 when the reply could not be parsed.
        rating: f64,
        /// Whether a rating could be read from the reply (see [`rating::parse_rating`]).
        parsed: bool,
        /// The judge's reply, verbatim.
        reply: String,
        /// What the judge call cost.
        usage: Usage,
    },
    /// A score from a user-supplied [`Verifier`].
    Verifier {
        /// The score; `None` when the verifier returned NaN (ranked below every number).
        score: Option<f64>,
    },
    /// A verifier score, then a majority vote among the candidates with the top score
    /// (self-consistency with a verifier).
    VerifiedVote {
        /// The verifier's score; `None` when it returned NaN (ranked below every number).
        score: Option<f64>,
        /// The normalised answer that votes were counted over (see [`voting`]).
        key: String,
        /// How many top-scored candidates gave this normalised answer, this one included; 0
        /// when this candidate's score was below the top and it did not vote.
        votes: usize,
    },
}

/// A call that failed, recorded in the trace when its candidate was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFailure {
    /// Which call, e.g. `"candidate 2 of 5"` or `"judge call for candidate 1"`.
    pub call: String,
    /// The error, as displayed (cut at 2 KiB).
    pub error: String,
}

/// What a strategy does when one of its inner calls fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Return [`Error::StrategyCall`] naming the failed call.
    #[default]
    Fail,
    /// Drop that candidate, record the failure in its [`Candidate::dropped`], and carry on with
    /// the others; [`Error::AllCandidatesFailed`] if none is left.
    Drop,
}

/// A strategy held behind a pointer: a [`ModelClient`] that can also return its trace.
///
/// Every strategy in this module implements it, so the benchmark can hold `Box<dyn Strategy>`
/// and still record each [`Outcome`].
pub trait Strategy: ModelClient {
    /// The strategy's name, as recorded in [`Outcome::strategy`].
    fn name(&self) -> &str;

    /// Answers `request` and returns the trace; the same as the strategy's inherent `run`.
    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>>;
}

/// Turns a strategy's run into the event stream of its [`ModelClient`] impl: the answer as one
/// delta (none if empty), then `Done` with the outcome's usage and the measured times.
pub(crate) fn outcome_stream<'a, F>(run: F) -> EventStream<'a>
where
    F: Future<Output = Result<Outcome>> + Send + 'a,
{
    async_stream::stream! {
        let started = Instant::now();
        let outcome = match run.await {
            Ok(outcome) => outcome,
            Err(err) => {
                yield Err(err);
                return;
            }
        };
        let mut usage = outcome.usage;
        if !outcome.answer.is_empty() {
            usage.time_to_first_token = Some(started.elapsed());
            yield Ok(StreamEvent::Delta(outcome.answer));
        }
        usage.total_time = started.elapsed();
        yield Ok(StreamEvent::Done(Finish { reason: outcome.finish_reason, usage }));
    }
    .boxed()
}

/// Forwards an inner stream as it arrives, replacing the times in its `Done` with the ones
/// measured here (the strategy's own wall time and time to first token).
pub(crate) fn pass_through(inner: EventStream<'_>) -> EventStream<'_> {
    async_stream::stream! {
        let started = Instant::now();
        let mut first_token = None;
        let mut inner = inner;
        while let Some(event) = inner.next().await {
            match event {
                Ok(StreamEvent::Delta(text)) => {
                    first_token.get_or_insert_with(|| started.elapsed());
                    yield Ok(StreamEvent::Delta(text));
                }
                Ok(StreamEvent::Done(mut finish)) => {
                    finish.usage.time_to_first_token = first_token;
                    finish.usage.total_time = started.elapsed();
                    yield Ok(StreamEvent::Done(finish));
                }
                Err(err) => {
                    yield Err(err);
                    return;
                }
            }
        }
    }
    .boxed()
}

/// The usage of a call that failed: one model call, token counts unknown.
pub(crate) fn failed_call_usage() -> Usage {
    Usage {
        model_calls: 1,
        ..Usage::default()
    }
}

/// Sends `samples` through one [`ModelClient::complete_batch`] call and turns the results into
/// candidates, applying `policy` to failures. The candidates' scores are left
/// [`Score::Unscored`] for the caller to fill in.
pub(crate) async fn generate_candidates<C: ModelClient + ?Sized>(
    inner: &C,
    strategy: &'static str,
    batch: BatchRequest,
    policy: FailurePolicy,
) -> Result<Vec<Candidate>> {
    let samples = batch.samples.clone();
    let n = samples.len();
    let results = inner.complete_batch(batch).await;
    if results.len() != n {
        return Err(Error::Protocol {
            detail: format!(
                "complete_batch returned {} results for {n} samples",
                results.len()
            ),
        });
    }
    let mut candidates = Vec::with_capacity(n);
    for (index, (options, result)) in samples.into_iter().zip(results).enumerate() {
        let call = format!("candidate {index} of {n}");
        match result {
            Ok(completion) => candidates.push(Candidate::generated(options, completion)),
            Err(source) => {
                let dropped = on_failure(strategy, call, source, policy)?;
                tracing::warn!(strategy, call = %dropped.call, error = %dropped.error, "dropped a candidate");
                candidates.push(Candidate::failed(options, dropped));
            }
        }
    }
    Ok(candidates)
}

/// Applies `policy` to a failed call: the typed error under [`FailurePolicy::Fail`], the record
/// of the failure under [`FailurePolicy::Drop`].
pub(crate) fn on_failure(
    strategy: &'static str,
    call: String,
    source: Error,
    policy: FailurePolicy,
) -> Result<CallFailure> {
    match policy {
        FailurePolicy::Fail => Err(Error::StrategyCall {
            strategy,
            call,
            source: Box::new(source),
        }),
        FailurePolicy::Drop => Ok(CallFailure {
            call,
            error: truncate_for_error(&source.to_string(), MAX_RECORDED_ERROR_BYTES),
        }),
    }
}

/// [`Error::AllCandidatesFailed`] when every candidate was dropped; `Ok` otherwise.
pub(crate) fn ensure_survivor(strategy: &'static str, candidates: &[Candidate]) -> Result<()> {
    if candidates.iter().any(|c| c.dropped.is_none()) {
        return Ok(());
    }
    let first_error = candidates
        .iter()
        .find_map(|c| c.dropped.as_ref())
        .map(|f| format!("{}: {}", f.call, f.error))
        .unwrap_or_else(|| "no candidate was requested".to_owned());
    Err(Error::AllCandidatesFailed {
        strategy,
        candidates: candidates.len(),
        first_error,
    })
}

/// The trace of a strategy that answers with one call of `request` (Baseline, ReRead): one
/// unscored candidate, which wins. `options` are the caller's sampling options, recorded as the
/// candidate's.
pub(crate) async fn single_call_outcome<C: ModelClient + ?Sized>(
    inner: &C,
    strategy: &'static str,
    options: SamplingOptions,
    request: ChatRequest,
    started: Instant,
) -> Result<Outcome> {
    let completion = collect_completion(inner.stream_chat(request)).await?;
    let candidates = vec![Candidate::generated(options, completion)];
    let usage = total_usage(&candidates, &[], started);
    finish_outcome(strategy, candidates, 0, usage)
}

/// Sums the usage of every candidate and every judge call, and sets the wall time.
pub(crate) fn total_usage(candidates: &[Candidate], extra: &[Usage], started: Instant) -> Usage {
    let mut usage = Usage::default();
    for candidate in candidates {
        usage.accumulate(&candidate.usage);
    }
    for judge in extra {
        usage.accumulate(judge);
    }
    usage.time_to_first_token = None;
    usage.total_time = started.elapsed();
    usage
}

/// Builds the outcome once a winner is chosen.
pub(crate) fn finish_outcome(
    strategy: &'static str,
    candidates: Vec<Candidate>,
    winner: usize,
    usage: Usage,
) -> Result<Outcome> {
    let chosen = candidates.get(winner).ok_or_else(|| Error::Protocol {
        detail: format!(
            "{strategy} chose candidate {winner} of {}",
            candidates.len()
        ),
    })?;
    let answer = chosen.text.clone();
    let finish_reason = chosen.finish_reason.clone().unwrap_or(FinishReason::Stop);
    Ok(Outcome {
        strategy: strategy.to_owned(),
        answer,
        finish_reason,
        winner,
        candidates,
        usage,
        steps: Vec::new(),
        stages: Vec::new(),
    })
}

/// One intermediate call: its reply as a [`Step`] named `stage`, or [`Error::StrategyCall`]
/// naming it. (Steps are never dropped: a strategy cannot go on without them.)
pub(crate) async fn call_step<C: ModelClient + ?Sized>(
    inner: &C,
    strategy: &'static str,
    stage: String,
    request: ChatRequest,
) -> Result<Step> {
    let completion = call_named(inner, strategy, &stage, request).await?;
    Ok(Step::new(stage, completion))
}

/// One call that the strategy cannot go on without: its completion, or
/// [`Error::StrategyCall`] naming it `call`.
pub(crate) async fn call_named<C: ModelClient + ?Sized>(
    inner: &C,
    strategy: &'static str,
    call: &str,
    request: ChatRequest,
) -> Result<Completion> {
    collect_completion(inner.stream_chat(request))
        .await
        .map_err(|source| Error::StrategyCall {
            strategy,
            call: call.to_owned(),
            source: Box::new(source),
        })
}

/// Independent intermediate calls, at most `concurrency` in flight; the steps come back in the
/// order of `calls`. The first failure is the error.
pub(crate) async fn call_steps<C: ModelClient + ?Sized>(
    inner: &C,
    strategy: &'static str,
    calls: Vec<(String, ChatRequest)>,
    concurrency: usize,
) -> Result<Vec<Step>> {
    let results: Vec<Result<Step>> = futures::stream::iter(calls)
        .map(|(stage, request)| call_step(inner, strategy, stage, request))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// The usage of every step, for [`total_usage`].
pub(crate) fn steps_usage(steps: &[Step]) -> Vec<Usage> {
    steps.iter().map(|s| s.usage.clone()).collect()
}

/// `request` with its last user message replaced by `rewrite` of it; [`Error::Unsupported`]
/// when there is no user message.
pub(crate) fn rewrite_last_user_message(
    request: ChatRequest,
    strategy: &str,
    rewrite: impl FnOnce(&str) -> String,
) -> Result<ChatRequest> {
    let mut request = request;
    let message = request
        .messages
        .iter_mut()
        .rev()
        .find(|m| m.role == Role::User)
        .ok_or_else(|| Error::Unsupported {
            detail: format!("{strategy} needs a user message, and the request has none"),
        })?;
    message.content = rewrite(&message.content);
    Ok(request)
}

/// `request` with `extra` appended to its system prompt (after a blank line), or as the system
/// prompt when there is none: the caller's instructions are kept, never replaced.
pub(crate) fn append_to_system(request: ChatRequest, extra: &str) -> ChatRequest {
    let mut request = request;
    request.system = Some(match request.system.take() {
        Some(system) if !system.trim().is_empty() => format!("{system}\n\n{extra}"),
        _ => extra.to_owned(),
    });
    request
}

/// The sampling options of a step derived from the request's: its seed and token limit kept,
/// `temperature` set when given.
pub(crate) fn step_options(base: &SamplingOptions, temperature: Option<f32>) -> SamplingOptions {
    SamplingOptions {
        temperature: temperature.or(base.temperature),
        ..base.clone()
    }
}

/// The request a seed-style entry point builds: `query` as the user message and
/// `system_prompt` as the system prompt (none when empty).
pub(crate) fn seed_request(query: &str, system_prompt: &str) -> ChatRequest {
    let request = ChatRequest::new(query);
    if system_prompt.is_empty() {
        request
    } else {
        request.with_system(system_prompt)
    }
}
