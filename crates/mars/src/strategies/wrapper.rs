//! The one wrapper every strategy shares: [`StrategyClient<M, C>`], a strategy's configuration
//! `M` (its [`Algorithm`]) over an inner client `C`.
//!
//! A strategy is its configuration plus its algorithm: the configuration type implements
//! [`Algorithm`] (its name, its validation, and `run` over a [`Calls`] context). The wrapper,
//! written once here as tower writes `Timeout<S>` once, supplies `new` (validating), `inner`,
//! `into_inner`, `config`, the inherent `run`, and the [`ModelClient`] and [`Strategy`] impls.
//! The public names are aliases: `BestOfN<C>` is `StrategyClient<BestOfNConfig, C>`.
//!
//! Streaming: see [`StrategyClient`].

use std::pin::Pin;
use std::task::Poll;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::calls::{CallPolicy, Calls};
use super::request::seed_request;
use super::trace::Outcome;
use crate::client::{
    BatchRequest, ChatRequest, Completion, EventStream, Finish, ModelClient, StreamEvent,
    complete_concurrently,
};
use crate::error::{Error, Result};

/// A strategy's algorithm, implemented by its configuration type (`BestOfNConfig`, ...).
///
/// [`StrategyClient`] runs it over an inner client; each strategy module implements it once.
pub trait Algorithm: Send + Sync {
    /// The strategy's name, as recorded in [`Outcome::strategy`] and the registry.
    const NAME: &'static str;

    /// Whether the strategy answers with exactly one call of [`rewrite`](Self::rewrite)'s
    /// request, so that its [`ModelClient`] impl can stream that call's answer as it arrives
    /// (Baseline, ReRead). When false, the stream runs the strategy and sends the chosen answer
    /// as one delta.
    const STREAMS: bool = false;

    /// [`Error::InvalidConfig`] naming the first invalid field; `new` calls it.
    fn validate(&self) -> Result<()>;

    /// What a failed candidate or judge call does, and how many inner calls may be in flight
    /// (default [`CallPolicy::default`]: fail, [`BatchRequest::DEFAULT_CONCURRENCY`]).
    fn policy(&self) -> CallPolicy {
        CallPolicy::default()
    }

    /// For a strategy that [`STREAMS`](Self::STREAMS): the one request it sends for `request`.
    fn rewrite(&self, request: ChatRequest) -> Result<ChatRequest> {
        Ok(request)
    }

    /// Answers `request` with the calls of `calls` and returns the trace.
    fn run(
        &self,
        calls: &Calls<'_>,
        request: ChatRequest,
    ) -> impl Future<Output = Result<Outcome>> + Send;
}

/// An [`Algorithm`] whose `new` takes its configuration: every strategy but Baseline, which has
/// none (`Baseline::new(inner)`).
pub trait Configured: Algorithm {}

/// A strategy held behind a pointer: a [`ModelClient`] that can also return its trace.
///
/// Every strategy in this module implements it, so the benchmark can hold `Box<dyn Strategy>`
/// and still record each [`Outcome`].
pub trait Strategy: ModelClient {
    /// The strategy's name, as recorded in [`Outcome::strategy`].
    fn name(&self) -> &str;

    /// Answers `request` and returns the trace; the same as the strategy's inherent `run`.
    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>>;

    /// [`run`](Self::run), sending the answer's text to `sink` as it is generated where the
    /// strategy can tell which call answers (see [`StrategyClient`]); the outcome is the
    /// one `run` returns. What is sent is always the beginning of [`Outcome::answer`]: the
    /// caller sends the rest when the run ends. The default sends nothing.
    fn run_streaming(
        &self,
        request: ChatRequest,
        sink: AnswerSink,
    ) -> BoxFuture<'_, Result<Outcome>> {
        drop(sink);
        self.run(request)
    }
}

/// Where a run sends its answer's text while the final call generates it, when the run's
/// caller streams ([`Strategy::run_streaming`]); made by the strategies' streams.
#[derive(Debug, Clone)]
pub struct AnswerSink {
    deltas: mpsc::UnboundedSender<String>,
}

impl AnswerSink {
    /// A sink and the receiver of what is sent to it.
    pub(crate) fn channel() -> (AnswerSink, mpsc::UnboundedReceiver<String>) {
        let (deltas, receiver) = mpsc::unbounded();
        (AnswerSink { deltas }, receiver)
    }

    /// Sends `text` on, unless it is empty. A stream that stopped listening was dropped, and
    /// the run with it, so a failed send is nothing to report.
    pub(crate) fn send(&self, text: String) {
        if !text.is_empty() {
            let _ = self.deltas.unbounded_send(text);
        }
    }
}

/// The strategy configured by `M` over the inner client `C`: one wrapper for every strategy,
/// whose public names are aliases (`BestOfN<C>` is `StrategyClient<BestOfNConfig, C>`).
///
/// Generic over what it wraps and without bounds on the struct, as tower's `Timeout<S>`.
///
/// Streaming: the [`ModelClient`] impl sends the answer's text as soon as the strategy can know
/// it is the answer. Single-call strategies ([`Algorithm::STREAMS`]: Baseline, ReRead) pass their
/// one call through. Multi-step strategies make the call whose reply is the answer as the run's
/// final call (see [`Calls`]): MoA's aggregation, CoT reflection's one call (only the text of its
/// `<output>` section is sent), RTO's synthesis, LEAP's answer; its text is sent on as it arrives
/// while the run goes on to the same [`Outcome`] that `run` returns, and a
/// [`Pipeline`](super::Pipeline) streams its last stage so. Strategies that choose among
/// candidates (best-of-n, self-consistency, diverse sampling, PlanSearch) cannot know their
/// winner before every candidate is in, nor can RTO when its round trip agrees (the first reply,
/// already generated, wins): their answer is sent as one delta when the run ends. Either way the
/// stream is the deltas, which join to the answer `run` gives for the same request and seed,
/// then one `Done` with the usage summed over every inner call (`model_calls` included) and the
/// strategy's own times; or an error, after which nothing comes. Dropping the stream drops the
/// run, and so every inner call in flight.
#[derive(Debug, Clone)]
pub struct StrategyClient<M, C> {
    inner: C,
    config: M,
}

impl<M: Configured, C> StrategyClient<M, C> {
    /// Wraps `inner`; fails with [`Error::InvalidConfig`] naming the first invalid field of
    /// `config`.
    pub fn new(inner: C, config: M) -> Result<Self> {
        Self::build(inner, config)
    }
}

impl<M: Algorithm, C> StrategyClient<M, C> {
    /// The name recorded in [`Outcome::strategy`].
    pub const NAME: &'static str = M::NAME;

    /// Validates `config` and wraps `inner` (behind every `new`).
    pub(crate) fn build(inner: C, config: M) -> Result<Self> {
        config.validate()?;
        Ok(Self::unvalidated(inner, config))
    }

    /// Wraps `inner` with a configuration that cannot be invalid (Baseline's).
    pub(crate) fn unvalidated(inner: C, config: M) -> Self {
        StrategyClient { inner, config }
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
    pub fn config(&self) -> &M {
        &self.config
    }
}

impl<M: Algorithm, C: ModelClient> StrategyClient<M, C> {
    /// Answers `request` and returns the trace (see the strategy's module docs).
    pub async fn run(&self, request: ChatRequest) -> Result<Outcome> {
        self.run_to(request, None).await
    }

    /// `run`, with the final call's text sent to `sink` as it arrives when there is one.
    async fn run_to(&self, request: ChatRequest, sink: Option<AnswerSink>) -> Result<Outcome> {
        let calls =
            Calls::new(&self.inner, M::NAME, self.config.policy()).streaming_to(sink.as_ref());
        self.config.run(&calls, request).await
    }
}

impl<M: Algorithm, C: ModelClient> ModelClient for StrategyClient<M, C> {
    /// A strategy that [`STREAMS`](Algorithm::STREAMS) streams its one call's answer as it
    /// arrives; any other runs, streaming its final call's answer as it arrives (or, for a
    /// strategy that chooses among candidates, the chosen answer as one delta at the end; see
    /// [`StrategyClient`]). Either way the terminal event carries the summed usage and the
    /// strategy's own times.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        if !M::STREAMS {
            return answer_stream(move |sink| self.run_to(request, Some(sink)));
        }
        match self.config.rewrite(request) {
            Ok(request) => pass_through(self.inner.stream_chat(request)),
            Err(err) => futures::stream::once(async { Err(err) }).boxed(),
        }
    }

    /// A strategy that [`STREAMS`](Algorithm::STREAMS) rewrites the shared conversation once
    /// and hands the batch to the inner client, so a backend that batches still can; any other
    /// runs once per sample, within the batch's concurrency.
    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<Result<Completion>>> {
        if !M::STREAMS {
            return Box::pin(complete_concurrently(self, batch));
        }
        let BatchRequest {
            request,
            samples,
            concurrency,
        } = batch;
        match self.config.rewrite(request) {
            Ok(request) => self.inner.complete_batch(BatchRequest {
                request,
                samples,
                concurrency,
            }),
            Err(err) => {
                let detail = err.to_string();
                let errors = samples
                    .iter()
                    .map(|_| {
                        Err(Error::Unsupported {
                            detail: detail.clone(),
                        })
                    })
                    .collect();
                Box::pin(async move { errors })
            }
        }
    }
}

impl<M: Algorithm, C: ModelClient> Strategy for StrategyClient<M, C> {
    fn name(&self) -> &str {
        M::NAME
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(StrategyClient::run(self, request))
    }

    fn run_streaming(
        &self,
        request: ChatRequest,
        sink: AnswerSink,
    ) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(self.run_to(request, Some(sink)))
    }
}

/// Runs the strategy configured by `config` once on `query` with `system_prompt` (none when
/// empty) over `client`: what the seed's entry points (`run_reread`, ...) do.
pub(crate) async fn run_seed<M: Configured, C: ModelClient + ?Sized>(
    query: &str,
    system_prompt: &str,
    config: M,
    client: &C,
) -> Result<Outcome> {
    StrategyClient::build(client, config)?
        .run(seed_request(query, system_prompt))
        .await
}

/// What a streamed run did next: sent text, or ended.
enum Progress {
    Delta(String),
    Finished(Box<Result<Outcome>>),
}

/// Turns a run that sends its answer's text to a sink into the event stream of a strategy's
/// [`ModelClient`] impl: each text sent, as it is sent; when the run ends, the rest of its
/// answer (all of it when nothing was sent) as one delta; then `Done` with the outcome's usage
/// and the times measured here. Text sent that is not the beginning of the answer is
/// [`Error::Protocol`] (an algorithm marked as final a call that did not answer). Dropping the
/// stream drops the run.
pub(crate) fn answer_stream<'a, F, Fut>(start: F) -> EventStream<'a>
where
    F: FnOnce(AnswerSink) -> Fut + Send + 'a,
    Fut: Future<Output = Result<Outcome>> + Send + 'a,
{
    async_stream::stream! {
        let started = Instant::now();
        let (sink, mut deltas) = AnswerSink::channel();
        let mut run: Pin<Box<Fut>> = Box::pin(start(sink));
        let mut streamed = String::new();
        let mut first_token = None;
        let result = loop {
            let progress = futures::future::poll_fn(|cx| {
                if let Poll::Ready(Some(text)) = deltas.poll_next_unpin(cx) {
                    return Poll::Ready(Progress::Delta(text));
                }
                if let Poll::Ready(result) = run.as_mut().poll(cx) {
                    return Poll::Ready(Progress::Finished(Box::new(result)));
                }
                match deltas.poll_next_unpin(cx) {
                    Poll::Ready(Some(text)) => Poll::Ready(Progress::Delta(text)),
                    _ => Poll::Pending,
                }
            })
            .await;
            match progress {
                Progress::Delta(text) => {
                    first_token.get_or_insert_with(|| started.elapsed());
                    streamed.push_str(&text);
                    yield Ok(StreamEvent::Delta(text));
                }
                Progress::Finished(result) => break *result,
            }
        };
        // Text sent in the run's last steps, before it ended.
        deltas.close();
        while let Some(text) = deltas.next().await {
            first_token.get_or_insert_with(|| started.elapsed());
            streamed.push_str(&text);
            yield Ok(StreamEvent::Delta(text));
        }
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(err) => {
                yield Err(err);
                return;
            }
        };
        let Some(rest) = outcome.answer.strip_prefix(streamed.as_str()) else {
            yield Err(Error::Protocol {
                detail: format!(
                    "{} streamed {} bytes that are not the beginning of its answer",
                    outcome.strategy,
                    streamed.len()
                ),
            });
            return;
        };
        if !rest.is_empty() {
            first_token.get_or_insert_with(|| started.elapsed());
            yield Ok(StreamEvent::Delta(rest.to_owned()));
        }
        let mut usage = outcome.usage;
        usage.time_to_first_token = first_token;
        usage.total_time = started.elapsed();
        yield Ok(StreamEvent::Done(Finish { reason: outcome.finish_reason, usage }));
    }
    .boxed()
}

/// Forwards an inner stream as it arrives, replacing the times in its `Done` with the ones
/// measured here (the strategy's own wall time and time to first token).
fn pass_through(inner: EventStream<'_>) -> EventStream<'_> {
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

#[cfg(test)]
#[path = "wrapper_tests.rs"]
mod tests;
