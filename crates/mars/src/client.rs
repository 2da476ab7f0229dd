//! The `ModelClient` trait, its request and event types, and conveniences over them.
//!
//! Every backend (Ollama, OpenAI-compatible servers, the embedded engine, the scripted fake) and
//! every strategy implements [`ModelClient`]. The contract of a stream is written on
//! [`EventStream`]: zero or more [`StreamEvent::Delta`]s, then exactly one
//! [`StreamEvent::Done`], or an error item after which the stream yields nothing more.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model. Prefer [`ChatRequest::system`] for the system prompt.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The wire name shared by Ollama and the OpenAI API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub content: String,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Provider-neutral sampling options; each backend maps them to its wire names.
///
/// `None` (or an empty `stop`) leaves the backend's default in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingOptions {
    /// Softmax temperature; 0 means greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: Option<f32>,
    /// Keep only the `top_k` most likely tokens.
    pub top_k: Option<u32>,
    /// Seed of the sampler, for reproducible samples where the backend supports it.
    pub seed: Option<u64>,
    /// Most tokens to generate (Ollama: `num_predict`).
    pub max_tokens: Option<u32>,
    /// Generation stops before any of these strings.
    pub stop: Vec<String>,
}

/// What a client is asked: a conversation, an optional system prompt and sampling options.
///
/// Built from a plain prompt with `ChatRequest::from("...")` (or just by passing `&str`,
/// `String` or `&String` where `impl Into<ChatRequest>` is taken).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The system prompt, sent first.
    pub system: Option<String>,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Sampling options.
    pub options: SamplingOptions,
}

impl ChatRequest {
    /// A request with one user message.
    pub fn new(prompt: impl Into<String>) -> Self {
        ChatRequest {
            system: None,
            messages: vec![Message::user(prompt)],
            options: SamplingOptions::default(),
        }
    }

    /// Sets the system prompt.
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Replaces the sampling options.
    pub fn with_options(mut self, options: SamplingOptions) -> Self {
        self.options = options;
        self
    }

    /// The content of the last user message, if any.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
    }
}

impl From<&str> for ChatRequest {
    fn from(prompt: &str) -> Self {
        ChatRequest::new(prompt)
    }
}

impl From<String> for ChatRequest {
    fn from(prompt: String) -> Self {
        ChatRequest::new(prompt)
    }
}

impl From<&String> for ChatRequest {
    fn from(prompt: &String) -> Self {
        ChatRequest::new(prompt.as_str())
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer or hit a stop string.
    Stop,
    /// The token limit was reached.
    Length,
    /// Any other reason the backend gave, verbatim (e.g. Ollama's `load`, OpenAI's
    /// `content_filter`). An empty string means the backend gave none.
    Other(String),
}

impl FinishReason {
    /// Maps a backend's reason string to a variant.
    pub fn from_wire(reason: &str) -> Self {
        match reason {
            "stop" | "eos" | "stop_sequence" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

/// What one answer cost, as measured (never estimated).
///
/// Token counts are `None` when the backend did not report them. Durations that the server
/// measured (`*_eval_duration`, `load_duration`) are `None` where the backend does not report
/// them. A strategy's usage sums all of its inner calls (see [`Usage::accumulate`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt as the backend counted them.
    pub prompt_tokens: Option<u64>,
    /// Tokens generated.
    pub completion_tokens: Option<u64>,
    /// Client-side time from sending the request to the first text delta (`None` if there was
    /// no text).
    pub time_to_first_token: Option<Duration>,
    /// Client-side time from sending the request to the terminal event.
    pub total_time: Duration,
    /// Server-side time spent evaluating the prompt.
    pub prompt_eval_duration: Option<Duration>,
    /// Server-side time spent generating.
    pub eval_duration: Option<Duration>,
    /// Server-side time spent loading the model.
    pub load_duration: Option<Duration>,
    /// How many model calls this usage covers (1 for a plain backend call).
    pub model_calls: u32,
}

impl Usage {
    /// Adds another call's usage to this one, as a strategy does over its inner calls.
    ///
    /// Token counts stay `Some` only while every part reported them; server durations are
    /// summed over the parts that reported them; `total_time` and `time_to_first_token` are
    /// left to the caller, who knows whether the calls overlapped in time.
    pub fn accumulate(&mut self, other: &Usage) {
        fn add_count(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            Some(a? + b?)
        }
        fn add_dur(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            }
        }
        if self.model_calls == 0 {
            self.prompt_tokens = other.prompt_tokens;
            self.completion_tokens = other.completion_tokens;
        } else {
            self.prompt_tokens = add_count(self.prompt_tokens, other.prompt_tokens);
            self.completion_tokens = add_count(self.completion_tokens, other.completion_tokens);
        }
        self.prompt_eval_duration = add_dur(self.prompt_eval_duration, other.prompt_eval_duration);
        self.eval_duration = add_dur(self.eval_duration, other.eval_duration);
        self.load_duration = add_dur(self.load_duration, other.load_duration);
        self.model_calls += other.model_calls;
    }

    /// Completion tokens per second of server-side generation time, where both are known.
    pub fn generation_tokens_per_second(&self) -> Option<f64> {
        let tokens = self.completion_tokens? as f64;
        let secs = self.eval_duration?.as_secs_f64();
        (secs > 0.0).then(|| tokens / secs)
    }
}

/// The terminal event of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finish {
    /// Why generation stopped.
    pub reason: FinishReason,
    /// What the answer cost.
    pub usage: Usage,
}

/// One item of an [`EventStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the answer's text, in order.
    Delta(String),
    /// The end of the answer; always the last event.
    Done(Finish),
}

/// A stream of answer events.
///
/// Contract, kept by every implementation in this crate and checked by its conformance tests:
/// zero or more `Ok(Delta)`, then exactly one `Ok(Done)`; or, at any point, one `Err` after
/// which the stream ends. A stream that ends without `Done` is a bug in the backend, reported
/// by [`collect_completion`] as [`Error::Truncated`]. Dropping the stream cancels the request.
pub type EventStream<'a> = BoxStream<'a, Result<StreamEvent>>;

/// A finished answer: its full text, why it stopped and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer.
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// What it cost.
    pub usage: Usage,
}

/// Several samples of one conversation that differ only in their sampling options.
///
/// Strategies that draw several candidates (diverse sampling, best-of-n) send one of these, so
/// that a backend able to share the prompt's evaluation between samples can do so.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    /// The conversation; its `options` are ignored in favour of `samples`.
    pub request: ChatRequest,
    /// One entry per completion wanted.
    pub samples: Vec<SamplingOptions>,
    /// At most this many samples are in flight at once (for backends that do not batch).
    pub concurrency: NonZeroUsize,
}

impl BatchRequest {
    /// Default bound on samples in flight.
    pub const DEFAULT_CONCURRENCY: NonZeroUsize = NonZeroUsize::MIN.saturating_add(3);

    /// A batch with the default concurrency bound.
    pub fn new(request: ChatRequest, samples: Vec<SamplingOptions>) -> Self {
        BatchRequest {
            request,
            samples,
            concurrency: Self::DEFAULT_CONCURRENCY,
        }
    }

    /// The full request of sample `index`.
    pub fn request_for(&self, index: usize) -> Option<ChatRequest> {
        let options = self.samples.get(index)?.clone();
        Some(ChatRequest {
            options,
            ..self.request.clone()
        })
    }
}

/// A language model that answers chat requests as a stream of events.
///
/// Object-safe, so it can be held as `Box<dyn ModelClient>` or `Arc<dyn ModelClient>`. The one
/// required method is [`ModelClient::stream_chat`]; [`ModelClientExt`] adds conveniences.
///
/// ```
/// use mars::{ModelClientExt, ScriptedClient, Turn};
///
/// # tokio_test_block_on(async {
/// let client = ScriptedClient::new([Turn::text("4")]);
/// let completion = client.complete("What is 2 + 2?").await?;
/// assert_eq!(completion.text, "4");
/// assert_eq!(client.requests()[0].last_user_message(), Some("What is 2 + 2?"));
/// # Ok::<_, mars::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub trait ModelClient: Send + Sync {
    /// Starts answering `request`. Nothing is sent before the stream is first polled.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_>;

    /// Answers every sample of `batch`, returning results in the order of `batch.samples`.
    ///
    /// The default runs the samples as separate requests, at most `batch.concurrency` at a time.
    /// Backends that can decode several sequences together override it.
    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<Result<Completion>>> {
        Box::pin(complete_concurrently(self, batch))
    }
}

/// Runs each sample of `batch` as its own request, at most `batch.concurrency` at a time; the
/// default behind [`ModelClient::complete_batch`].
pub async fn complete_concurrently<C: ModelClient + ?Sized>(
    client: &C,
    batch: BatchRequest,
) -> Vec<Result<Completion>> {
    let limit = batch.concurrency.get();
    let requests: Vec<ChatRequest> = (0..batch.samples.len())
        .filter_map(|i| batch.request_for(i))
        .collect();
    futures::stream::iter(requests)
        .map(|request| collect_completion(client.stream_chat(request)))
        .buffered(limit)
        .collect()
        .await
}

/// Drains a stream into a [`Completion`], enforcing the stream contract.
///
/// A stream that ends without [`StreamEvent::Done`] gives [`Error::Truncated`]; an event after
/// `Done` gives [`Error::Protocol`].
pub async fn collect_completion(mut stream: EventStream<'_>) -> Result<Completion> {
    let mut text = String::new();
    let mut finish: Option<Finish> = None;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Delta(delta) => {
                if finish.is_some() {
                    return Err(Error::Protocol {
                        detail: "a text delta arrived after the terminal event".into(),
                    });
                }
                text.push_str(&delta);
            }
            StreamEvent::Done(done) => {
                if finish.is_some() {
                    return Err(Error::Protocol {
                        detail: "a second terminal event arrived".into(),
                    });
                }
                finish = Some(done);
            }
        }
    }
    let finish = finish.ok_or(Error::Truncated {
        text_bytes: text.len(),
    })?;
    Ok(Completion {
        text,
        finish_reason: finish.reason,
        usage: finish.usage,
    })
}

/// Conveniences over any [`ModelClient`], kept apart from the trait as tower keeps `ServiceExt`.
pub trait ModelClientExt: ModelClient {
    /// Streams the answer to anything that converts into a [`ChatRequest`] (`&str`, `&String`,
    /// `String`, a `ChatRequest`).
    fn stream(&self, request: impl Into<ChatRequest>) -> EventStream<'_> {
        self.stream_chat(request.into())
    }

    /// Answers a request and waits for the whole text.
    fn complete(
        &self,
        request: impl Into<ChatRequest>,
    ) -> impl std::future::Future<Output = Result<Completion>> + Send + '_ {
        collect_completion(self.stream_chat(request.into()))
    }
}

impl<C: ModelClient + ?Sized> ModelClientExt for C {}

impl<C: ModelClient + ?Sized> ModelClient for &C {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        (**self).stream_chat(request)
    }

    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<Result<Completion>>> {
        (**self).complete_batch(batch)
    }
}

impl<C: ModelClient + ?Sized> ModelClient for Arc<C> {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        (**self).stream_chat(request)
    }

    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<Result<Completion>>> {
        (**self).complete_batch(batch)
    }
}

impl<C: ModelClient + ?Sized> ModelClient for Box<C> {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        (**self).stream_chat(request)
    }

    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<Result<Completion>>> {
        (**self).complete_batch(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> StreamEvent {
        StreamEvent::Done(Finish {
            reason: FinishReason::Stop,
            usage: Usage::default(),
        })
    }

    #[tokio::test]
    async fn collect_rejects_missing_terminal_event() {
        let stream = futures::stream::iter(vec![Ok(StreamEvent::Delta("par".into()))]).boxed();
        let err = collect_completion(stream).await.unwrap_err();
        assert!(matches!(err, Error::Truncated { text_bytes: 3 }), "{err:?}");
    }

    #[tokio::test]
    async fn collect_rejects_events_after_done() {
        let stream = futures::stream::iter(vec![Ok(done()), Ok(StreamEvent::Delta("x".into()))]);
        let err = collect_completion(stream.boxed()).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        let stream = futures::stream::iter(vec![Ok(done()), Ok(done())]);
        let err = collect_completion(stream.boxed()).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn collect_joins_deltas() {
        let stream = futures::stream::iter(vec![
            Ok(StreamEvent::Delta("a".into())),
            Ok(StreamEvent::Delta("é".into())),
            Ok(done()),
        ]);
        let completion = collect_completion(stream.boxed()).await.unwrap();
        assert_eq!(completion.text, "aé");
        assert_eq!(completion.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn usage_accumulates_counts_and_calls() {
        let call = Usage {
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            eval_duration: Some(Duration::from_millis(100)),
            model_calls: 1,
            ..Usage::default()
        };
        let mut sum = Usage::default();
        sum.accumulate(&call);
        sum.accumulate(&call);
        assert_eq!(sum.prompt_tokens, Some(20));
        assert_eq!(sum.completion_tokens, Some(10));
        assert_eq!(sum.eval_duration, Some(Duration::from_millis(200)));
        assert_eq!(sum.model_calls, 2);
        sum.accumulate(&Usage {
            prompt_tokens: None,
            model_calls: 1,
            ..call
        });
        assert_eq!(
            sum.prompt_tokens, None,
            "an unknown count makes the sum unknown"
        );
        assert_eq!(sum.completion_tokens, Some(15));
    }

    #[test]
    fn finish_reason_maps_wire_names() {
        assert_eq!(FinishReason::from_wire("stop"), FinishReason::Stop);
        assert_eq!(FinishReason::from_wire("length"), FinishReason::Length);
        assert_eq!(
            FinishReason::from_wire("load"),
            FinishReason::Other("load".into())
        );
    }

    #[test]
    fn requests_build_from_plain_prompts() {
        let prompt = String::from("hi");
        assert_eq!(ChatRequest::from(&prompt), ChatRequest::new("hi"));
        assert_eq!(ChatRequest::from("hi").last_user_message(), Some("hi"));
    }

    #[test]
    fn trait_is_dyn_compatible() {
        fn takes(_: &dyn ModelClient) {}
        let boxed: Box<dyn ModelClient> = Box::new(crate::ScriptedClient::new([]));
        takes(&boxed);
        let shared: Arc<dyn ModelClient> = Arc::new(crate::ScriptedClient::new([]));
        takes(&shared);
    }
}
