//! Every strategy end to end on the embedded model: real calls, real traces.

use std::collections::HashSet;

use mars::strategies::{
    Baseline, BestOfN, BestOfNConfig, DiverseSampling, DiverseSamplingConfig, Outcome, ReRead,
    ReReadConfig, Score, Strategy,
};
use mars::{ChatRequest, SamplingOptions};

use crate::common::{engine, within};

fn request() -> ChatRequest {
    ChatRequest::new("Write a Rust function `fn add(a: i32, b: i32) -> i32`.")
        .with_system("You are a helpful assistant.")
        .with_options(SamplingOptions {
            temperature: Some(0.8),
            seed: Some(11),
            max_tokens: Some(24),
            ..SamplingOptions::default()
        })
}

fn distinct_texts(outcome: &Outcome) -> usize {
    outcome.candidates.iter().map(|c| c.text.as_str()).collect::<HashSet<_>>().len()
}

async fn run(strategy: &dyn Strategy) -> Outcome {
    within(strategy.run(request())).await.unwrap()
}

#[tokio::test]
async fn single_call_strategies_answer_with_one_call() {
    for strategy in [
        Box::new(Baseline::new(engine())) as Box<dyn Strategy>,
        Box::new(ReRead::new(engine(), ReReadConfig::default()).unwrap()),
    ] {
        let outcome = run(strategy.as_ref()).await;
        assert!(!outcome.answer.trim().is_empty(), "{}", strategy.name());
        assert_eq!(outcome.usage.model_calls, 1);
        assert!(outcome.usage.completion_tokens.is_some_and(|t| t > 0 && t <= 24));
    }
}

#[tokio::test]
async fn diverse_sampling_draws_distinct_samples_and_votes() {
    let config = DiverseSamplingConfig { n: 3, ..DiverseSamplingConfig::default() };
    let outcome = run(&DiverseSampling::new(engine(), config).unwrap()).await;
    assert_eq!(outcome.candidates.len(), 3);
    assert_eq!(distinct_texts(&outcome), 3, "{:#?}", outcome.candidates);
    assert_eq!(outcome.usage.model_calls, 3);
    assert!(outcome.candidates.iter().all(|c| matches!(c.score, Score::Vote { .. })));
    let temperatures: Vec<_> = outcome.candidates.iter().map(|c| c.options.temperature).collect();
    assert_eq!(temperatures, [Some(0.2), Some(0.6), Some(1.0)]);
}

#[tokio::test]
async fn best_of_n_draws_distinct_candidates_and_the_model_judges_them() {
    let config = BestOfNConfig { n: 3, ..BestOfNConfig::default() };
    let outcome = run(&BestOfN::new(engine(), config).unwrap()).await;
    assert_eq!(outcome.candidates.len(), 3);
    assert_eq!(distinct_texts(&outcome), 3, "{:#?}", outcome.candidates);
    assert_eq!(outcome.usage.model_calls, 6, "3 candidates and 3 judge calls");
    for candidate in &outcome.candidates {
        assert!(matches!(candidate.score, Score::Judge { .. }), "{:?}", candidate.score);
    }
    assert_eq!(outcome.answer, outcome.candidates[outcome.winner].text);
}
