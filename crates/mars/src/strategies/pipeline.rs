//! Pipeline: strategies run one after another, each stage's answer the next stage's question.
//!
//! Source: optillm's `&` operator (`re2&cot_reflection`), which feeds each approach's response
//! to the next as its query.
//!
//! Algorithm: the first stage answers the request. Every later stage answers the same request
//! with its last user message replaced by the previous stage's answer (the system prompt,
//! earlier messages and sampling options, seed included, are kept: a seeded pipeline is
//! reproducible, and stages that sample derive the same seeds from it). The last stage's answer is the pipeline's;
//! the trace keeps every stage's [`Outcome`] in [`Outcome::stages`].
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

use super::{Outcome, Strategy, outcome_stream, rewrite_last_user_message};
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
        let started = Instant::now();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(self.stages.len());
        for (index, stage) in self.stages.iter().enumerate() {
            let stage_request = match outcomes.last() {
                None => request.clone(),
                Some(previous) => {
                    let answer = previous.answer.clone();
                    rewrite_last_user_message(request.clone(), Self::NAME, |_| answer)?
                }
            };
            let outcome = stage
                .run(stage_request)
                .await
                .map_err(|source| Error::StrategyCall {
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
    /// Runs every stage, then streams the last stage's answer as one delta.
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        outcome_stream(Pipeline::run(self, request))
    }
}

impl Strategy for Pipeline<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, request: ChatRequest) -> BoxFuture<'_, Result<Outcome>> {
        Box::pin(Pipeline::run(self, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::{Baseline, BestOfN, BestOfNConfig};
    use crate::{ScriptedClient, Turn};

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: Some(prompt),
            completion_tokens: Some(completion),
            model_calls: 1,
            ..Usage::default()
        }
    }

    #[tokio::test]
    async fn each_stage_answers_the_previous_answer_and_usage_is_summed() {
        let client = ScriptedClient::from_fn(|i, _| match i {
            0 => Turn::text("first").with_usage(usage(10, 1)),
            1 | 2 => Turn::text(if i == 1 { "second a" } else { "second" }).with_usage(usage(5, 2)),
            _ => Turn::text("Rating: 9").with_usage(usage(7, 1)),
        });
        let bon = BestOfNConfig {
            n: 2,
            ..BestOfNConfig::default()
        };
        let stages: Vec<Box<dyn Strategy + '_>> = vec![
            Box::new(Baseline::new(&client)),
            Box::new(BestOfN::new(&client, bon).unwrap()),
        ];
        let pipeline = Pipeline::new("baseline&best_of_n", stages).unwrap();
        let request =
            ChatRequest::new("Q")
                .with_system("Be brief.")
                .with_options(crate::SamplingOptions {
                    max_tokens: Some(9),
                    ..Default::default()
                });
        let outcome = pipeline.run(request).await.unwrap();
        assert_eq!(outcome.strategy, "baseline&best_of_n");
        // Both judged 9: the shorter candidate wins.
        assert_eq!(outcome.answer, "second");
        assert_eq!(outcome.candidates.len(), 2);
        assert_eq!(outcome.stages.len(), 2);
        assert_eq!(outcome.stages[0].answer, "first");
        let requests = client.requests();
        assert_eq!(requests.len(), 5);
        assert_eq!(requests[0].last_user_message(), Some("Q"));
        for later in &requests[1..3] {
            assert_eq!(later.last_user_message(), Some("first"));
            assert_eq!(later.system.as_deref(), Some("Be brief."));
            assert_eq!(later.options.max_tokens, Some(9));
        }
        assert_eq!(outcome.usage.model_calls, 5);
        assert_eq!(outcome.usage.prompt_tokens, Some(10 + 5 + 5 + 7 + 7));
        assert_eq!(outcome.usage.completion_tokens, Some(1 + 2 + 2 + 1 + 1));
    }

    #[tokio::test]
    async fn a_failed_stage_names_itself_and_stops_the_pipeline() {
        let client = ScriptedClient::new([Turn::error("boom"), Turn::text("never")]);
        let stages: Vec<Box<dyn Strategy + '_>> = vec![
            Box::new(Baseline::new(&client)),
            Box::new(Baseline::new(&client)),
        ];
        let pipeline = Pipeline::new("baseline&baseline", stages).unwrap();
        let err = pipeline.run("Q".into()).await.unwrap_err();
        match &err {
            Error::StrategyCall { strategy, call, .. } => {
                assert_eq!(
                    (*strategy, call.as_str()),
                    ("pipeline", "stage 0 (baseline)")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("boom") || format!("{err:?}").contains("boom"));
        assert_eq!(client.requests().len(), 1);
    }

    #[test]
    fn an_empty_pipeline_is_rejected() {
        assert!(matches!(
            Pipeline::new("x", Vec::new()),
            Err(Error::InvalidConfig {
                field: "stages",
                ..
            })
        ));
    }
}
