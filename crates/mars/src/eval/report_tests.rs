use super::*;
use crate::eval::tasks::{TaskSet, builtin};
fn base() -> StrategySpec {
    "baseline".parse().unwrap()
}

fn reread_spec() -> StrategySpec {
    "reread".parse().unwrap()
}

fn record(
    task: &str,
    strategy: StrategySpec,
    sample: u32,
    pass: bool,
    tokens: u64,
) -> SampleRecord {
    SampleRecord {
        task_id: task.into(),
        strategy,
        sample,
        seed: 0,
        verdict: if pass {
            Verdict::Pass
        } else {
            Verdict::CompileError
        },
        detail: (!pass).then(|| "error[E0308]: mismatched types".into()),
        code_hash: None,
        answer: String::new(),
        latency_ms: 100.0 * f64::from(sample + 1),
        ttft_ms: Some(10.0),
        prompt_tokens: Some(tokens / 2),
        completion_tokens: Some(tokens / 2),
        model_calls: 1,
        generation_tokens_per_s: Some(100.0),
        candidates: 1,
        distinct_candidates: 1,
        trace: None,
    }
}

#[test]
fn aggregates_match_hand_computed_values() {
    let tasks = builtin(TaskSet::Seed);
    let config = RunConfig {
        strategies: vec![base(), reread_spec()],
        samples: 2,
        ..RunConfig::default()
    };
    let samples = vec![
        record("prime_check", base(), 0, true, 100),
        record("prime_check", base(), 1, false, 100),
        record("fibonacci", base(), 0, false, 100),
        record("fibonacci", base(), 1, false, 100),
        record("fibonacci", reread_spec(), 1, true, 200),
        record("fibonacci", reread_spec(), 0, true, 200),
        record("prime_check", reread_spec(), 0, true, 200),
        record("prime_check", reread_spec(), 1, true, 200),
    ];
    let backend = BackendInfo {
        kind: "scripted".into(),
        model: "m".into(),
        reason: "test".into(),
    };
    let report = Report::build(backend, config, &tasks, "none".into(), samples);
    let base = &report.strategies[0];
    assert_eq!((base.pass.successes, base.pass.trials), (1, 4));
    // pass@1: mean of 1/2 and 0/2; pass@2: mean of 1 and 0.
    assert_eq!(
        base.pass_at_k,
        vec![PassAtK { k: 1, value: 0.25 }, PassAtK { k: 2, value: 0.5 }]
    );
    assert_eq!(base.latency_p50_ms, Some(150.0));
    assert_eq!(base.mean_total_tokens, Some(100.0));
    assert_eq!(base.passes_per_1k_tokens, Some(2.5));
    assert_eq!(base.verdicts[&Verdict::CompileError], 3);
    let reread = &report.strategies[1];
    assert_eq!(reread.tokens_vs_baseline, Some(2.0));
    assert_eq!(reread.wall_vs_baseline, Some(1.0));
    // 4/4 against 1/4: the intervals [51%, 100%] and [5%, 70%] overlap.
    assert_eq!(reread.vs_baseline, Some(VsBaseline::Overlapping));
    assert_eq!(base.vs_baseline, None);
    assert_eq!(reread.pass.successes, 4);
    // Samples come back ordered by strategy, task, sample.
    let order: Vec<_> = report
        .samples
        .iter()
        .map(|r| (r.strategy.clone(), r.task_id.as_str(), r.sample))
        .collect();
    assert_eq!(order[4], (reread_spec(), "prime_check", 0));
    assert_eq!(order[7], (reread_spec(), "fibonacci", 1));
    let cell = &report.cells[1];
    assert_eq!(cell.task_id, "fibonacci");
    assert_eq!(
        cell.typical_failure.as_deref(),
        Some("compile_error: error[E0308]: mismatched types")
    );
    assert!(report.recommendations[0].starts_with("Highest pass rate: reread at 100% (4/4"));
    assert!(
        report
            .recommendations
            .iter()
            .any(|r| r.starts_with("No strategy beat baseline"))
    );
}

#[test]
fn vs_baseline_follows_the_intervals_both_ways() {
    let cases = [
        ((95, 100), (40, 100), VsBaseline::Better),
        ((10, 100), (30, 100), VsBaseline::Worse),
        ((4, 4), (1, 4), VsBaseline::Overlapping),
        ((0, 0), (0, 10), VsBaseline::Overlapping),
    ];
    for ((s, n), (bs, bn), expected) in cases {
        let got = VsBaseline::of(&Proportion::wilson(s, n), &Proportion::wilson(bs, bn));
        assert_eq!(got, expected, "{s}/{n} against {bs}/{bn}");
    }
    let json = serde_json::to_string(&[VsBaseline::Better, VsBaseline::Overlapping]).unwrap();
    assert_eq!(json, r#"["better","overlapping"]"#);
}

#[test]
fn all_failing_runs_say_so() {
    let summary = StrategySummary {
        strategy: base(),
        pass: Proportion::wilson(0, 4),
        pass_at_k: vec![],
        verdicts: BTreeMap::new(),
        latency_p50_ms: None,
        latency_p95_ms: None,
        ttft_p50_ms: None,
        mean_prompt_tokens: None,
        mean_completion_tokens: None,
        mean_total_tokens: None,
        mean_calls: None,
        mean_generation_tokens_per_s: None,
        passes_per_1k_tokens: None,
        tokens_vs_baseline: None,
        wall_vs_baseline: None,
        vs_baseline: None,
    };
    let mut compile_errors = summary.clone();
    compile_errors.verdicts.insert(Verdict::CompileError, 4);
    let advice = recommend(&[compile_errors], &[]);
    assert_eq!(advice.len(), 1);
    assert!(advice[0].starts_with("No strategy passed any sample"));

    // A dead backend is named, and the model is not blamed.
    let mut dead = summary;
    dead.verdicts.insert(Verdict::BackendError, 4);
    let mut sample = record("fibonacci", base(), 0, false, 0);
    sample.verdict = Verdict::BackendError;
    sample.detail = Some("could not connect to http://127.0.0.1:9/api/chat".into());
    let advice = recommend(&[dead.clone()], &[sample.clone()]);
    assert_eq!(
        advice,
        [
            "Every sample of baseline (4) is a backend error, so it says nothing about the \
          model: could not connect to http://127.0.0.1:9/api/chat. Check the backend \
          (server, model name, limits) and run again."
        ]
    );
    // Half failed in the backend, half did not compile: both are said.
    dead.verdicts.insert(Verdict::BackendError, 2);
    dead.verdicts.insert(Verdict::CompileError, 2);
    let advice = recommend(&[dead], &[sample]);
    assert_eq!(advice.len(), 2, "{advice:?}");
    assert!(advice[0].starts_with("2 of 4 samples of baseline are backend errors"));
    assert!(advice[1].starts_with("No strategy passed any sample"));
}
