//! ReRead (RE2): the question stated twice, so the model reads it again before answering.
//!
//! Source: Xu et al., "Re-Reading Improves Reasoning in Large Language Models" (2023,
//! arXiv:2309.06275), as optillm's `re2` approach implements it.
//!
//! Algorithm: the last user message `Q` is replaced by `Q`, a newline, `Read the question
//! again: ` and `Q` once more. The system prompt, earlier messages and sampling options are left
//! as they are. The rewritten request goes to the inner client in one call, whose answer streams
//! through as it is generated.
//!
//! Cost: 1 model call (with a prompt about twice as long). Errors are the inner client's,
//! unchanged.
//!
//! ```
//! use mars::strategies::{ReRead, ReReadConfig};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let strategy = ReRead::new(ScriptedClient::new([Turn::text("4")]), ReReadConfig::default())?;
//! let outcome = strategy.run("What is 2 + 2?".into()).await?;
//! assert_eq!(outcome.answer, "4");
//! assert_eq!(
//!     strategy.inner().requests()[0].last_user_message(),
//!     Some("What is 2 + 2?\nRead the question again: What is 2 + 2?"),
//! );
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{
    Outcome, Strategy, pass_through, rewrite_last_user_message, seed_request, single_call_outcome,
};
use crate::client::{BatchRequest, ChatRequest, Completion, EventStream, ModelClient};
use crate::error::{Error, Result};

/// Configuration of [`ReRead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReReadConfig {
    /// The words between the two statements of the question; must not be blank.
    pub instruction: String,
}

impl Default for ReReadConfig {
    fn default() -> Self {
        ReReadConfig {
            instruction: "Read the question again:".to_owned(),
        }
    }
}

impl ReReadConfig {
    fn validate(&self) -> Result<()> {
        if self.instruction.trim().is_empty() {
            return Err(Error::InvalidConfig {
                field: "instruction",
                reason: "the re-read instruction must not be blank".into(),
            });
        }
        Ok(())
    }
}

/// The RE2 prompt: `question`, a newline, `instruction`, a space and `question` again.
pub fn reread_prompt(question: &str, instruction: &str) -> String {
    format!("{question}\n{instruction} {question}")
}

/// `request` with its last user message rewritten by [`reread_prompt`]; everything else kept.
/// [`Error::Unsupported`] when there is no user message to repeat.
pub fn reread_request(request: ChatRequest, instruction: &str) -> Result<ChatRequest> {
    rewrite_last_user_message(request, "re-read", |question| {
        reread_prompt(question, instruction)
    })
}

/// RE2 re-reading over an inner client (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ReRead<C> {
    inner: C,
    config: ReReadConfig,
}

impl<C> ReRead<C> {
    /// The name recorded in [`Outcome::strategy`].
    pub const NAME: &'static str = "reread";

    /// Wraps `inner`; fails with [`Error::InvalidConfig`] on a blank instruction.
    pub fn new(inner: C, config: ReReadConfig) -> Result<Self> {
        config.validate()?;
        Ok(ReRead { inner, config })
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
    pub fn config(&self) -> &ReReadConfig {
        &self.config
    }
}

impl<C: ModelClient> ReRead<C> {
    /// Answers the re-read request with one call and returns the trace.
    pub async fn run(&self, request: ChatRequest) -> Result<Outcome> {
        let started = Instant::now();
        let options = request.options.clone();
        let request = reread_request(request, &self.config.instruction)?;
        single_call_outcome(&self.inner, Self::NAME, options, request, started).await
    }
}

impl<C: ModelClient> ModelClient for ReRead<C> {
    /// Streams the inner client's answer to the re-read request as it arrives.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        match reread_request(request, &self.config.instruction) {
            Ok(request) => pass_through(self.inner.stream_chat(request)),
            Err(err) => futures::stream::once(async { Err(err) }).boxed(),
        }
    }

    /// Rewrites the shared conversation once and hands the batch to the inner client, so a
    /// backend that batches still can.
    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<Result<Completion>>> {
        let BatchRequest {
            request,
            samples,
            concurrency,
        } = batch;
        match reread_request(request, &self.config.instruction) {
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

impl<C: ModelClient> Strategy for ReRead<C> {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(ReRead::run(self, request))
    }
}

/// The seed's entry point for ReRead, kept for its users.
#[derive(Debug, Clone, Copy)]
pub struct ReReadAggregator;

impl ReReadAggregator {
    /// Runs [`ReRead`] once on `query` with `system_prompt` (none when empty) over `client`.
    pub async fn run_reread<C: ModelClient + ?Sized>(
        query: &str,
        system_prompt: &str,
        config: ReReadConfig,
        client: &C,
    ) -> Result<Outcome> {
        ReRead::new(client, config)?
            .run(seed_request(query, system_prompt))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Message;

    #[test]
    fn prompt_states_the_question_twice() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "What is 2 + 2?",
                "Read the question again:",
                "What is 2 + 2?\nRead the question again: What is 2 + 2?",
            ),
            ("Q", "Again:", "Q\nAgain: Q"),
            ("two\nlines", "R:", "two\nlines\nR: two\nlines"),
        ];
        for &(question, instruction, expected) in cases {
            assert_eq!(reread_prompt(question, instruction), expected);
        }
    }

    #[test]
    fn only_the_last_user_message_is_rewritten() {
        let request = ChatRequest {
            system: Some("sys".into()),
            messages: vec![
                Message::user("first"),
                Message::assistant("reply"),
                Message::user("second"),
            ],
            ..ChatRequest::default()
        };
        let rewritten = reread_request(request.clone(), "Again:").unwrap();
        assert_eq!(rewritten.system, request.system);
        assert_eq!(rewritten.messages[..2], request.messages[..2]);
        assert_eq!(rewritten.messages[2].content, "second\nAgain: second");
    }

    #[test]
    fn a_request_without_user_message_is_refused() {
        let request = ChatRequest {
            messages: vec![Message::assistant("hi")],
            ..ChatRequest::default()
        };
        let err = reread_request(request, "Again:").unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    }

    #[test]
    fn blank_instruction_is_rejected() {
        let config = ReReadConfig {
            instruction: "  ".into(),
        };
        let err = ReRead::new(crate::ScriptedClient::new([]), config).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "instruction",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
