//! `ScriptedClient`: a fake model that replays scripted turns and records what it was asked.
//!
//! Used by the crate's tests and doctests, and by users testing their own code over
//! [`ModelClient`] without a model.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::client::{
    ChatRequest, EventStream, Finish, FinishReason, ModelClient, StreamEvent, Usage,
};
use crate::error::Error;

/// The scripted client's own errors. They reach callers as [`Error::External`] with backend
/// `"scripted client"`; [`ScriptedError::of`] finds them in an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptedError {
    /// The client was asked for more turns than it was given.
    #[error("no turn left (request #{request_index})")]
    Exhausted {
        /// 0-based index of the request that found the script empty.
        request_index: usize,
    },
    /// A failure the script queued ([`Turn::error`], [`Turn::then_fail`]).
    #[error("scripted failure: {message}")]
    Failed {
        /// The message the script gave.
        message: String,
    },
}

impl ScriptedError {
    /// The name of the backend in [`Error::External`].
    pub const BACKEND: &'static str = "scripted client";

    /// The scripted error inside `err`, if `err` is one.
    pub fn of(err: &Error) -> Option<&ScriptedError> {
        match err {
            Error::External { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }
}

impl From<ScriptedError> for Error {
    fn from(err: ScriptedError) -> Self {
        Error::External {
            backend: ScriptedError::BACKEND,
            source: Box::new(err),
        }
    }
}
/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    outcome: Outcome,
    chunks: Vec<String>,
    chunk_delay: Duration,
    usage: Option<Usage>,
    finish_reason: FinishReason,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The chunks, then the terminal event.
    Complete,
    /// The chunks, then an error.
    Fail(String),
    /// The chunks, then the end of the stream with no terminal event (a broken backend).
    Truncate,
}

impl Turn {
    /// An answer streamed as one delta.
    pub fn text(text: impl Into<String>) -> Self {
        Turn::chunks([text.into()])
    }

    /// An answer streamed as the given deltas, in order.
    pub fn chunks<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Turn {
            outcome: Outcome::Complete,
            chunks: chunks.into_iter().map(Into::into).collect(),
            chunk_delay: Duration::ZERO,
            usage: None,
            finish_reason: FinishReason::Stop,
        }
    }

    /// A request that fails with [`ScriptedError::Failed`] before any text.
    pub fn error(message: impl Into<String>) -> Self {
        Turn {
            outcome: Outcome::Fail(message.into()),
            ..Turn::chunks(Vec::<String>::new())
        }
    }

    /// A stream that yields these deltas and then ends without a terminal event, as a broken
    /// backend would; [`collect_completion`](crate::collect_completion) reports it as
    /// [`Error::Truncated`].
    pub fn truncated<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Turn {
            outcome: Outcome::Truncate,
            ..Turn::chunks(chunks)
        }
    }

    /// Makes this turn fail with [`ScriptedError::Failed`] after its deltas.
    pub fn then_fail(mut self, message: impl Into<String>) -> Self {
        self.outcome = Outcome::Fail(message.into());
        self
    }

    /// Waits this long before each delta (and before the terminal event).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Reports this usage instead of the default counting rule (see [`ScriptedClient`]).
    /// `model_calls` and `total_time` are still filled in by the client.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Reports this finish reason (default [`FinishReason::Stop`]).
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        self.finish_reason = reason;
        self
    }

    /// The full text this turn streams.
    pub fn text_content(&self) -> String {
        self.chunks.concat()
    }
}

type Responder = dyn Fn(usize, &ChatRequest) -> Turn + Send + Sync;

enum Source {
    Queue(Mutex<VecDeque<Turn>>),
    Responder(Box<Responder>),
}

/// A [`ModelClient`] that answers from a script and records every request.
///
/// Turns come either from a queue, consumed in the order requests are first polled, or from a
/// responder function of the request's index and content (deterministic under concurrency).
/// Unless a turn sets its usage, the client reports `prompt_tokens` as the number of
/// whitespace-separated words in the system prompt and messages, and `completion_tokens` as the
/// number of words in the answer: a fixed rule, so tests can compute expected sums.
///
/// ```
/// use mars::{ModelClientExt, SamplingOptions, ChatRequest, ScriptedClient, Turn};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = ScriptedClient::new([Turn::chunks(["Hello", ", world"])]);
/// let request = ChatRequest::new("Say hello").with_options(SamplingOptions {
///     temperature: Some(0.2),
///     ..SamplingOptions::default()
/// });
/// let answer = client.complete(request).await?;
/// assert_eq!(answer.text, "Hello, world");
/// assert_eq!(answer.usage.completion_tokens, Some(2));
/// assert_eq!(client.requests()[0].options.temperature, Some(0.2));
/// # Ok::<_, mars::Error>(()) }).unwrap();
/// ```
pub struct ScriptedClient {
    source: Source,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
}

impl std::fmt::Debug for ScriptedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Queue(q) => format!("queue of {}", lock(q).len()),
            Source::Responder(_) => "responder".to_owned(),
        };
        f.debug_struct("ScriptedClient")
            .field("source", &source)
            .field("requests", &lock(&self.requests).len())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

impl ScriptedClient {
    /// A client that answers requests with these turns, in order.
    pub fn new(turns: impl IntoIterator<Item = Turn>) -> Self {
        ScriptedClient {
            source: Source::Queue(Mutex::new(turns.into_iter().collect())),
            requests: Arc::default(),
        }
    }

    /// A client that asks `responder` for the turn of each request, given the request's 0-based
    /// index (in the order requests were first polled) and the request itself.
    pub fn from_fn(
        responder: impl Fn(usize, &ChatRequest) -> Turn + Send + Sync + 'static,
    ) -> Self {
        ScriptedClient {
            source: Source::Responder(Box::new(responder)),
            requests: Arc::default(),
        }
    }

    /// Every request received so far, in the order they were first polled.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }

    /// How many queued turns are left (always 0 for a responder).
    pub fn remaining(&self) -> usize {
        match &self.source {
            Source::Queue(q) => lock(q).len(),
            Source::Responder(_) => 0,
        }
    }

    fn next_turn(&self, request: &ChatRequest) -> Result<Turn, Error> {
        let index = {
            let mut requests = lock(&self.requests);
            requests.push(request.clone());
            requests.len() - 1
        };
        match &self.source {
            Source::Queue(queue) => lock(queue).pop_front().ok_or_else(|| {
                ScriptedError::Exhausted {
                    request_index: index,
                }
                .into()
            }),
            Source::Responder(responder) => Ok(responder(index, request)),
        }
    }
}

impl ModelClient for ScriptedClient {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        async_stream::stream! {
            let started = Instant::now();
            let turn = match self.next_turn(&request) {
                Ok(turn) => turn,
                Err(err) => {
                    yield Err(err);
                    return;
                }
            };
            let mut first_token = None;
            for chunk in &turn.chunks {
                if !turn.chunk_delay.is_zero() {
                    tokio::time::sleep(turn.chunk_delay).await;
                }
                first_token.get_or_insert_with(|| started.elapsed());
                yield Ok(StreamEvent::Delta(chunk.clone()));
            }
            if !turn.chunk_delay.is_zero() {
                tokio::time::sleep(turn.chunk_delay).await;
            }
            match turn.outcome {
                Outcome::Fail(message) => yield Err(ScriptedError::Failed { message }.into()),
                Outcome::Truncate => {}
                Outcome::Complete => {
                    let mut usage = turn.usage.clone().unwrap_or_else(|| {
                        let prompt = request.system.iter().map(|s| word_count(s)).sum::<u64>()
                            + request.messages.iter().map(|m| word_count(&m.content)).sum::<u64>();
                        Usage {
                            prompt_tokens: Some(prompt),
                            completion_tokens: Some(word_count(&turn.text_content())),
                            ..Usage::default()
                        }
                    });
                    usage.model_calls = 1;
                    usage.time_to_first_token = first_token;
                    usage.total_time = started.elapsed();
                    yield Ok(StreamEvent::Done(Finish { reason: turn.finish_reason.clone(), usage }));
                }
            }
        }
        .boxed()
    }
}
