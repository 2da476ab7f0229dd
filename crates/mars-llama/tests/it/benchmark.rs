//! Every strategy of the registry, and a pipeline, end to end on the embedded model inside the
//! benchmark's run matrix: real generations, graded in the sandbox.

use std::collections::HashSet;
use std::time::Duration;

use mars::FinishReason;
use mars::eval::grade::{Grader, Verdict};
use mars::eval::report::{BackendInfo, Report};
use mars::eval::run::{AnswerSource, RunConfig, build_strategy, request_for, run_matrix};
use mars::eval::sandbox::{Sandbox, SandboxConfig};
use mars::eval::tasks::{TaskSet, builtin};
use mars::strategies::repair::CUT_OFF_NOTE;
use mars::strategies::{StrategyName, StrategySpec};

use crate::common::{engine, within};

#[tokio::test]
async fn every_registered_strategy_runs_in_the_benchmark_on_the_embedded_model() {
    let mut config = SandboxConfig::default();
    config.run.wall = Duration::from_secs(3);
    let grader = Grader::new(Sandbox::new(config).await.unwrap());
    let tasks: Vec<_> = builtin(TaskSet::Seed).into_iter().take(1).collect();
    let strategies = StrategySpec::parse_list("all, re2&cot_reflection").unwrap();
    // Every name the registry knows, each verifier variant, and the pipeline.
    assert_eq!(
        strategies.len(),
        StrategyName::ALL.len()
            + StrategyName::ALL
                .iter()
                .filter(|s| s.takes_verifier())
                .count()
            + 1
    );
    let run = RunConfig {
        strategies: strategies.clone(),
        samples: 1,
        max_tokens: 32,
        candidates: 2,
        concurrency: 1,
        ..RunConfig::default()
    };
    let records = within(run_matrix(
        AnswerSource::Model(engine()),
        &grader,
        &tasks,
        &run,
        &HashSet::new(),
        |_| {},
    ))
    .await
    .unwrap();
    assert_eq!(records.len(), strategies.len());
    for record in &records {
        let name = record.strategy.as_str();
        assert_ne!(
            record.verdict,
            Verdict::BackendError,
            "{name}: {:?}",
            record.detail
        );
        assert!(!record.answer.trim().is_empty(), "{name} answered nothing");
        assert!(
            record.completion_tokens.is_some_and(|t| t > 0),
            "{name}: {record:?}"
        );
        let least_calls = match name {
            "baseline" | "reread" | "cot_reflection" => 1,
            // Two calls of re2, then cot_reflection's.
            "reread&cot_reflection" => 2,
            // The candidates (2); a judge adds one call per candidate.
            "diverse_sampling"
            | "self_consistency"
            | "self_consistency_verifier"
            | "best_of_n_verifier" => 2,
            "best_of_n" => 4,
            // Two proposers and the aggregator.
            "mixture_of_agents" => 3,
            // Observations, derived observations, 2 plans, 2 codes (+ 2 judge calls).
            "plansearch_verifier" => 6,
            "plansearch" => 8,
            // Code, description, code again (+ a synthesis when they differ).
            "rto" => 3,
            // Example extraction and the final answer at least.
            "leap" => 2,
            // One attempt; up to two repairs when the visible examples fail.
            "repair" => 1,
            // Two candidates and the test call.
            "codet" => 3,
            // Lightweight at 32 tokens: 2 agents, then 1 or 2 verifications each.
            "mars" | "mars_verifier" => 4,
            other => panic!("no expectation for {other}"),
        };
        assert!(
            record.model_calls >= least_calls,
            "{name}: {} calls, expected at least {least_calls}",
            record.model_calls
        );
        match name {
            "repair" => assert!(record.model_calls <= 3, "{name}: {record:?}"),
            "codet" => assert_eq!(record.model_calls, 3, "{name}: {record:?}"),
            // 2 agents and 4 verifications, 2 rounds of 2 improvements and 4 verifications,
            // and a synthesis, at most.
            "mars" | "mars_verifier" => assert!(record.model_calls <= 19, "{name}: {record:?}"),
            _ => {}
        }
    }
    let backend = BackendInfo {
        kind: "embedded".into(),
        model: "SmolLM2-135M-Instruct".into(),
        reason: "test".into(),
    };
    let report = Report::build(backend, run, &tasks, "test".into(), records);
    let listed: Vec<&str> = report
        .strategies
        .iter()
        .map(|s| s.strategy.as_str())
        .collect();
    let expected: Vec<&str> = strategies.iter().map(StrategySpec::as_str).collect();
    assert_eq!(listed, expected, "the report lists every strategy in order");
}

/// `repair` on the embedded model in the run matrix: the benchmark gives it the visible-examples
/// verifier, and each attempt's check is in the trace with the feedback the model was shown.
#[tokio::test]
async fn repair_runs_in_the_benchmark_on_the_embedded_model() {
    let mut config = SandboxConfig::default();
    config.run.wall = Duration::from_secs(3);
    let grader = Grader::new(Sandbox::new(config).await.unwrap());
    let tasks: Vec<_> = builtin(TaskSet::Seed).into_iter().take(1).collect();
    let run = RunConfig {
        strategies: StrategySpec::parse_list("repair").unwrap(),
        samples: 1,
        max_tokens: 48,
        concurrency: 1,
        ..RunConfig::default()
    };
    let records = within(run_matrix(
        AnswerSource::Model(engine()),
        &grader,
        &tasks,
        &run,
        &HashSet::new(),
        |_| {},
    ))
    .await
    .unwrap();
    let [record] = records.as_slice() else {
        panic!("one record: {records:?}");
    };
    assert_ne!(record.verdict, Verdict::BackendError, "{:?}", record.detail);
    assert!((1..=3).contains(&record.model_calls), "{record:?}");
    assert_eq!(record.candidates, record.model_calls);

    // The same cell's strategy, run directly for its trace.
    let task = &tasks[0];
    let spec = &run.strategies[0];
    let strategy = build_strategy(spec, engine(), &grader, task, &run).unwrap();
    let outcome = within(strategy.run(request_for(task, &run, run.sample_seed(0))))
        .await
        .unwrap();
    assert_eq!(outcome.steps.len(), outcome.candidates.len());
    for (i, step) in outcome.steps.iter().enumerate() {
        let last = i + 1 == outcome.steps.len();
        // Every check but the last failed (else the run would have stopped there), and a
        // failed check's text is the feedback the next repair prompt showed: led by the
        // cut-off note exactly when that attempt stopped at the token limit.
        if !last {
            assert_ne!(step.text, "passed", "{outcome:#?}");
            let cut_off = outcome.candidates[i].finish_reason == Some(FinishReason::Length);
            let feedback = match step.text.strip_prefix(CUT_OFF_NOTE) {
                Some(rest) => {
                    assert!(cut_off, "{outcome:#?}");
                    rest.trim_start()
                }
                None => {
                    assert!(!cut_off, "{outcome:#?}");
                    step.text.as_str()
                }
            };
            assert!(feedback.starts_with("The "), "{}", step.text);
        }
    }
}
