//! Pipeline: strategies run one after another, each stage's answer the next stage's question.
//!
//! Source: optillm's `&` operator (`re2&cot_reflection`), which feeds each approach's response
//! to the next as its query.
//!
//! Algorithm: the first stage answers the request. Every later stage answers the same request
//! with its last user message replaced by the previous stage's answer (the system prompt,
//! earlier messages and sampling options, seed included, are kept: a seeded pipeline is
//! reproducible, and stages that sample derive the same seeds from it). The last stage's answer
//! is the pipeline's; the trace keeps every stage's [`Outcome`] in [`Outcome::stages`]. A stream
//! of the pipeline streams its last stage as that stage streams on its own
//! ([`Strategy::run_streaming`]): its final call's text as it arrives, or a chosen answer at the
//! end.
//!
//! Cost: the sum of the stages' calls, one stage after another.
//!
//! ```
//! use mars::strategies::{Baseline, Pipeline, ReRead, ReReadConfig, Strategy};
//! use mars::{ScriptedClient, Turn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = ScriptedClient::new([Turn::text("draft"), Turn::text("final")]);
//! let stages: Vec<Box<dyn Strategy + '_>> = vec![
//!     Box::new(Baseline::new(&client)),
//!     Box::new(ReRead::new(&client, ReReadConfig::default())?),
//! ];
//! let pipeline = Pipeline::new("baseline&reread", stages)?;
//! let outcome = pipeline.run("Question?".into()).await?;
//! assert_eq!(outcome.answer, "final");
//! assert_eq!(outcome.stages.len(), 2);
//! // The second stage was asked the first stage's answer.
//! assert_eq!(
//!     client.requests()[1].last_user_message(),
//!     Some("draft\nRead the question again: draft"),
//! );
//! # Ok::<_, mars::Error>(()) }).unwrap();
//! ```

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::request::rewrite_last_user_message;
use super::trace::Outcome;
use super::wrapper::{AnswerSink, Strategy, answer_stream};
use crate::client::{ChatRequest, EventStream, ModelClient, Usage};
use crate::error::{Error, Result};

/// Strategies run in sequence (see the [module docs](self)).
pub struct Pipeline<'a> {
    name: String,
    stages: Vec<Box<dyn Strategy + 'a>>,
}

impl std::fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stages: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("stages", &stages)
            .finish()
    }
}

impl<'a> Pipeline<'a> {
    /// The strategy name in errors about a stage.
    pub const NAME: &'static str = "pipeline";

    /// A pipeline named `name` (recorded in [`Outcome::strategy`], e.g. `"reread&best_of_n"`)
    /// over `stages`; [`Error::InvalidConfig`] when there is no stage or the name is blank.
    pub fn new(name: impl Into<String>, stages: Vec<Box<dyn Strategy + 'a>>) -> Result<Self> {
        let name = name.into();
        if stages.is_empty() {
            return Err(Error::InvalidConfig {
                field: "stages",
                reason: "a pipeline needs at least one stage".into(),
            });
        }
        if name.trim().is_empty() {
            return Err(Error::InvalidConfig {
                field: "name",
                reason: "a pipeline needs a name".into(),
            });
        }
        Ok(Pipeline { name, stages })
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Box<dyn Strategy + 'a>] {
        &self.stages
    }

    /// Runs every stage in turn and returns the trace: the last stage's answer, candidates and
    /// winner, the usage of every stage summed, and each stage's outcome in `stages`. A failed
    /// stage is [`Error::StrategyCall`] naming it; the later stages do not run.
    pub async fn run(&self, request: ChatRequest) -> Result<Outcome> {
        self.run_to(request, None).await
    }

    /// `run`, the last stage streaming its answer's text to `sink` when there is one.
    async fn run_to(&self, request: ChatRequest, mut sink: Option<AnswerSink>) -> Result<Outcome> {
        let started = Instant::now();
        let last = self.stages.len().saturating_sub(1);
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(self.stages.len());
        for (index, stage) in self.stages.iter().enumerate() {
            let stage_request = match outcomes.last() {
                None => request.clone(),
                Some(previous) => {
                    let answer = previous.answer.clone();
                    rewrite_last_user_message(request.clone(), Self::NAME, |_| answer)?
                }
            };
            let run = match sink.take() {
                Some(sink) if index == last => stage.run_streaming(stage_request, sink),
                other => {
                    sink = other;
                    stage.run(stage_request)
                }
            };
            let outcome = run.await.map_err(|source| Error::StrategyCall {
                strategy: Self::NAME,
                call: format!("stage {index} ({})", stage.name()),
                source: Box::new(source),
            })?;
            outcomes.push(outcome);
        }
        let mut usage = Usage::default();
        for outcome in &outcomes {
            usage.accumulate(&outcome.usage);
        }
        usage.time_to_first_token = None;
        usage.total_time = started.elapsed();
        let last = outcomes.last().cloned().ok_or_else(|| Error::Protocol {
            detail: "a pipeline ran no stage".into(),
        })?;
        Ok(Outcome {
            strategy: self.name.clone(),
            usage,
            steps: Vec::new(),
            stages: outcomes,
            ..last
        })
    }
}

impl ModelClient for Pipeline<'_> {
    /// Runs every stage but the last, then streams the last one as it streams on its own (see
    /// the [module docs](self)); the terminal event carries every stage's usage summed.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        answer_stream(move |sink| self.run_to(request, Some(sink)))
    }
}

impl Strategy for Pipeline<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(Pipeline::run(self, request))
    }

    fn run_streaming(
        &self,
        request: ChatRequest,
        sink: AnswerSink,
    ) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(self.run_to(request, Some(sink)))
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
