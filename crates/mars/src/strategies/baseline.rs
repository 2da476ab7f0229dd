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

use super::calls::Calls;
use super::trace::Outcome;
use super::wrapper::{Algorithm, StrategyClient};
use crate::client::ChatRequest;
use crate::error::Result;

/// Baseline's configuration: there is nothing to configure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaselineConfig;

/// One pass through the inner client, request unchanged (see the [module docs](self)).
pub type Baseline<C> = StrategyClient<BaselineConfig, C>;

impl<C> Baseline<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        StrategyClient::unvalidated(inner, BaselineConfig)
    }
}

impl Algorithm for BaselineConfig {
    const NAME: &'static str = "baseline";
    const STREAMS: bool = true;

    fn validate(&self) -> Result<()> {
        Ok(())
    }

    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        calls.single(request.options.clone(), request).await
    }
}
