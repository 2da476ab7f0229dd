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

use super::calls::Calls;
use super::request::rewrite_last_user_message;
use super::trace::Outcome;
use super::wrapper::{Algorithm, Configured, StrategyClient, run_seed};
use crate::client::{ChatRequest, ModelClient};
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

/// RE2 re-reading over an inner client (see the [module docs](self)); `new` fails with
/// [`Error::InvalidConfig`] on a blank instruction.
pub type ReRead<C> = StrategyClient<ReReadConfig, C>;

impl Algorithm for ReReadConfig {
    const NAME: &'static str = "reread";
    const STREAMS: bool = true;

    fn validate(&self) -> Result<()> {
        if self.instruction.trim().is_empty() {
            return Err(Error::InvalidConfig {
                field: "instruction",
                reason: "the re-read instruction must not be blank".into(),
            });
        }
        Ok(())
    }

    /// The re-read request ([`reread_request`]).
    fn rewrite(&self, request: ChatRequest) -> Result<ChatRequest> {
        reread_request(request, &self.instruction)
    }

    /// Answers the re-read request with one call; the candidate records the caller's options.
    async fn run(&self, calls: &Calls<'_>, request: ChatRequest) -> Result<Outcome> {
        let options = request.options.clone();
        calls.single(options, self.rewrite(request)?).await
    }
}

impl Configured for ReReadConfig {}

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
        run_seed(query, system_prompt, config, client).await
    }
}

#[cfg(test)]
#[path = "reread_tests.rs"]
mod tests;
