//! The `Calls` context: how a strategy's algorithm reaches its inner client.
//!
//! A strategy's run gets one [`Calls`]: the inner client, the strategy's name, its failure
//! policy and its concurrency bound, and the time the run started. Candidates, named steps, and
//! judge and verifier scoring (in [`selection`](super::selection)) go through it, so no helper
//! threads those four values by hand, and every failure is named and handled one way.
//!
//! When the run's caller streams, the context also holds an [`AnswerSink`]: the call a strategy
//! makes through [`Calls::final_call`] (the one whose reply is the answer) sends its text there
//! as it arrives.

use std::num::NonZeroUsize;

use futures::StreamExt;
use tokio::time::Instant;

use super::trace::{CallFailure, Candidate, FailurePolicy, Outcome, Step};
use super::wrapper::AnswerSink;
use crate::client::{
    BatchRequest, ChatRequest, Completion, FinishReason, ModelClient, SamplingOptions, StreamEvent,
    Usage, collect_completion,
};
use crate::error::{Error, Result, truncate_for_error};

/// Longest error text kept in a trace's [`CallFailure`]; longer ones are cut and marked.
const MAX_RECORDED_ERROR_BYTES: usize = 2048;

/// What a strategy's failed calls do, and how many of its calls may be in flight at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// What a failed candidate or judge call does.
    pub on_failure: FailurePolicy,
    /// At most this many calls in flight.
    pub concurrency: NonZeroUsize,
}

impl CallPolicy {
    /// The policy `on_failure` with at most `concurrency` calls in flight.
    pub fn new(on_failure: FailurePolicy, concurrency: NonZeroUsize) -> Self {
        CallPolicy {
            on_failure,
            concurrency,
        }
    }
}

impl Default for CallPolicy {
    /// Fail on a failed call; [`BatchRequest::DEFAULT_CONCURRENCY`] calls in flight.
    fn default() -> Self {
        CallPolicy::new(FailurePolicy::Fail, BatchRequest::DEFAULT_CONCURRENCY)
    }
}

/// One run's access to the inner client: the client, the strategy's name (in errors and
/// traces), what a failed call does, and how many calls may be in flight at once.
///
/// [`StrategyClient`](super::StrategyClient) makes one per run and hands it to the strategy's
/// [`Algorithm::run`](super::Algorithm::run).
#[derive(Clone, Copy)]
pub struct Calls<'a> {
    client: &'a dyn ModelClient,
    strategy: &'static str,
    policy: CallPolicy,
    started: Instant,
    sink: Option<&'a AnswerSink>,
}

impl std::fmt::Debug for Calls<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls")
            .field("strategy", &self.strategy)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<'a> Calls<'a> {
    /// The context of a run of `strategy` over `client` that starts now.
    pub(crate) fn new(
        client: &'a dyn ModelClient,
        strategy: &'static str,
        policy: CallPolicy,
    ) -> Self {
        Calls {
            client,
            strategy,
            policy,
            started: Instant::now(),
            sink: None,
        }
    }

    /// The same context, whose final call sends its text to `sink` as it arrives.
    pub(crate) fn streaming_to(self, sink: Option<&'a AnswerSink>) -> Self {
        Calls { sink, ..self }
    }

    /// The inner client.
    pub fn client(&self) -> &'a dyn ModelClient {
        self.client
    }

    /// The strategy's name, as errors and traces give it.
    pub fn strategy(&self) -> &'static str {
        self.strategy
    }

    /// What a failed call does, and how many calls may be in flight.
    pub fn policy(&self) -> CallPolicy {
        self.policy
    }

    /// At most this many calls in flight.
    pub fn concurrency(&self) -> NonZeroUsize {
        self.policy.concurrency
    }

    /// Samples `request` once per entry of `samples` through one
    /// [`ModelClient::complete_batch`] call; failures follow the policy, and
    /// [`Error::AllCandidatesFailed`] when none is left. The candidates' scores are left
    /// [`Score::Unscored`](super::Score::Unscored) for the caller to fill in.
    pub(crate) async fn candidates(
        &self,
        request: ChatRequest,
        samples: Vec<SamplingOptions>,
    ) -> Result<Vec<Candidate>> {
        self.candidates_within(request, samples, self.policy.concurrency)
            .await
    }

    /// [`candidates`](Self::candidates) with at most `concurrency` of them in flight (for a
    /// strategy that runs another call beside the batch).
    pub(crate) async fn candidates_within(
        &self,
        request: ChatRequest,
        samples: Vec<SamplingOptions>,
        concurrency: NonZeroUsize,
    ) -> Result<Vec<Candidate>> {
        let n = samples.len();
        let batch = BatchRequest {
            request,
            samples: samples.clone(),
            concurrency,
        };
        let results = self.client.complete_batch(batch).await;
        if results.len() != n {
            return Err(Error::Protocol {
                detail: format!(
                    "complete_batch returned {} results for {n} samples",
                    results.len()
                ),
            });
        }
        self.candidates_from(samples, results, |index| {
            format!("candidate {index} of {n}")
        })
    }

    /// Turns the results of candidate calls into candidates, in order, applying the policy to
    /// failures; `call` names the call of candidate `index` in errors and traces.
    pub(crate) fn candidates_from(
        &self,
        options: Vec<SamplingOptions>,
        results: Vec<Result<Completion>>,
        call: impl Fn(usize) -> String,
    ) -> Result<Vec<Candidate>> {
        let mut candidates = Vec::with_capacity(results.len());
        for (index, (options, result)) in options.into_iter().zip(results).enumerate() {
            match result {
                Ok(completion) => candidates.push(Candidate::generated(options, completion)),
                Err(source) => {
                    let dropped = self.failed(call(index), source)?;
                    let strategy = self.strategy;
                    tracing::warn!(strategy, call = %dropped.call, error = %dropped.error, "dropped a candidate");
                    candidates.push(Candidate::failed(options, dropped));
                }
            }
        }
        Ok(candidates)
    }

    /// Applies the failure policy to the failed call `call`: the typed error under
    /// [`FailurePolicy::Fail`], the record of the failure under [`FailurePolicy::Drop`].
    pub(crate) fn failed(&self, call: String, source: Error) -> Result<CallFailure> {
        match self.policy.on_failure {
            FailurePolicy::Fail => Err(Error::StrategyCall {
                strategy: self.strategy,
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
    pub(crate) fn ensure_survivor(&self, candidates: &[Candidate]) -> Result<()> {
        if candidates.iter().any(|c| c.dropped.is_none()) {
            return Ok(());
        }
        let first_error = candidates
            .iter()
            .find_map(|c| c.dropped.as_ref())
            .map(|f| format!("{}: {}", f.call, f.error))
            .unwrap_or_else(|| "no candidate was requested".to_owned());
        Err(self.all_failed(candidates.len(), first_error))
    }

    /// [`Error::AllCandidatesFailed`] for this strategy.
    pub(crate) fn all_failed(&self, candidates: usize, first_error: String) -> Error {
        Error::AllCandidatesFailed {
            strategy: self.strategy,
            candidates,
            first_error,
        }
    }

    /// One call that the strategy cannot go on without: its completion, or
    /// [`Error::StrategyCall`] naming it `call`.
    pub(crate) async fn named(&self, call: &str, request: ChatRequest) -> Result<Completion> {
        collect_completion(self.client.stream_chat(request))
            .await
            .map_err(|source| Error::StrategyCall {
                strategy: self.strategy,
                call: call.to_owned(),
                source: Box::new(source),
            })
    }

    /// The call whose reply is the answer (MoA's aggregation, LEAP's answer, ...): its
    /// completion, or [`Error::StrategyCall`] naming it `call`. When the run streams, its text
    /// is sent as it arrives, so a strategy makes this call only when its reply is sure to be
    /// the answer, [`Outcome::answer`] verbatim.
    pub(crate) async fn final_call(&self, call: &str, request: ChatRequest) -> Result<Completion> {
        self.final_call_with(call, request, str::to_owned).await
    }

    /// [`final_call`](Self::final_call) for a strategy whose answer is a part of the reply
    /// (CoT reflection's `<output>`): what is sent of each delta is what `view` makes of it,
    /// and all that `view` returns, joined, must be the beginning of the answer.
    pub(crate) async fn final_call_with(
        &self,
        call: &str,
        request: ChatRequest,
        view: impl FnMut(&str) -> String + Send,
    ) -> Result<Completion> {
        self.answer(request, view)
            .await
            .map_err(|source| Error::StrategyCall {
                strategy: self.strategy,
                call: call.to_owned(),
                source: Box::new(source),
            })
    }

    /// The answering call, its deltas sent (through `view`) to the sink when there is one;
    /// errors are the inner client's, unchanged.
    async fn answer(
        &self,
        request: ChatRequest,
        mut view: impl FnMut(&str) -> String + Send,
    ) -> Result<Completion> {
        let stream = self.client.stream_chat(request);
        let Some(sink) = self.sink else {
            return collect_completion(stream).await;
        };
        let forwarded = stream.inspect(move |event| {
            if let Ok(StreamEvent::Delta(text)) = event {
                sink.send(view(text));
            }
        });
        collect_completion(forwarded.boxed()).await
    }

    /// One intermediate call: its reply as a [`Step`] named `stage`, or [`Error::StrategyCall`]
    /// naming it. (Steps are never dropped: a strategy cannot go on without them.)
    pub(crate) async fn step(&self, stage: String, request: ChatRequest) -> Result<Step> {
        let completion = self.named(&stage, request).await?;
        Ok(Step::new(stage, completion))
    }

    /// Independent intermediate calls, within the concurrency bound; the steps come back in the
    /// order of `calls`. The first failure is the error.
    pub(crate) async fn steps(&self, calls: Vec<(String, ChatRequest)>) -> Result<Vec<Step>> {
        let results: Vec<Result<Step>> = futures::stream::iter(calls)
            .map(|(stage, request)| self.step(stage, request))
            .buffered(self.concurrency().get())
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Independent calls whose failures the caller handles, within the concurrency bound; the
    /// results come back in the order of `requests`.
    pub(crate) async fn answers(&self, requests: Vec<ChatRequest>) -> Vec<Result<Completion>> {
        let client = self.client;
        futures::stream::iter(requests)
            .map(|request| collect_completion(client.stream_chat(request)))
            .buffered(self.concurrency().get())
            .collect()
            .await
    }

    /// Sums the usage of every candidate and of `extra` (steps, judge calls), with the run's
    /// wall time so far.
    pub(crate) fn usage(&self, candidates: &[Candidate], extra: &[Usage]) -> Usage {
        let mut usage = Usage::default();
        for candidate in candidates {
            usage.accumulate(&candidate.usage);
        }
        for call in extra {
            usage.accumulate(call);
        }
        usage.time_to_first_token = None;
        usage.total_time = self.started.elapsed();
        usage
    }

    /// The outcome once `winner` is chosen: its text as the answer, the usage of every
    /// candidate, of `steps` and of `extra` calls (judge calls) summed, and `steps` as the
    /// trace's steps.
    pub(crate) fn finish(
        &self,
        candidates: Vec<Candidate>,
        winner: usize,
        steps: Vec<Step>,
        extra: &[Usage],
    ) -> Result<Outcome> {
        let mut calls: Vec<Usage> = steps.iter().map(|s| s.usage.clone()).collect();
        calls.extend_from_slice(extra);
        let usage = self.usage(&candidates, &calls);
        let strategy = self.strategy;
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
            steps,
            stages: Vec::new(),
        })
    }

    /// The trace of a strategy that answers with one call of `request` (Baseline, ReRead): one
    /// unscored candidate, which wins. `options` are the caller's sampling options, recorded as
    /// the candidate's. The call is the run's final call. Errors are the inner client's,
    /// unchanged.
    pub(crate) async fn single(
        &self,
        options: SamplingOptions,
        request: ChatRequest,
    ) -> Result<Outcome> {
        let completion = self.answer(request, str::to_owned).await?;
        let candidates = vec![Candidate::generated(options, completion)];
        self.finish(candidates, 0, Vec::new(), &[])
    }
}
