//! Baseline: one call with the request unchanged, the yardstick for every other strategy.
//!
//! Source: none; this is plain single-pass inference, as optillm's `none` approach.
//!
//! Algorithm: the request goes to the inner client exactly as it came. The answer streams back
//! as it is generated. The trace holds that answer as its only candidate.
//!
//! Cost: 1 model call. Errors are the inner client's, unchanged.
//!
//! ```
//! use mars::strategies::Baseline;
//! use mars::{ModelClientExt, ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let strategy = Baseline::new(ScriptedClient::new([Turn::text("4")]));
//! let outcome = strategy.run("What is 2 + 2?".into()).await?;
//! assert_eq!(outcome.answer, "4");
//! assert_eq!(outcome.usage.model_calls, 1);
//! assert_eq!(strategy.inner().requests()[0].last_user_message(), Some("What is 2 + 2?"));
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{Outcome, Strategy, pass_through, single_call_outcome};
use crate::client::{BatchRequest, ChatRequest, Completion, EventStream, ModelClient};
use crate::error::Result;

/// One pass through the inner client, request unchanged (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Baseline<C> {
    inner: C,
}

impl<C> Baseline<C> {
    /// The name recorded in [`Outcome::strategy`].
    pub const NAME: &'static str = "baseline";

    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Baseline { inner }
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Gives the wrapped client back.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: ModelClient> Baseline<C> {
    /// Answers `request` with one call and returns the trace.
    pub async fn run(&self, request: ChatRequest) -> Result<Outcome> {
        let started = Instant::now();
        let options = request.options.clone();
        single_call_outcome(&self.inner, Self::NAME, options, request, started).await
    }
}

impl<C: ModelClient> ModelClient for Baseline<C> {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        pass_through(self.inner.stream_chat(request))
    }

    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<Result<Completion>>> {
        self.inner.complete_batch(batch)
    }
}

impl<C: ModelClient> Strategy for Baseline<C> {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(Baseline::run(self, request))
    }
}
