//! Failed inner calls under both failure policies, and rejected configurations.

use futures::StreamExt;
use mars::strategies::{
    BestOfN, BestOfNConfig, DiverseSampling, DiverseSamplingConfig, FailurePolicy, Score,
};
use mars::{Error, ModelClientExt, ScriptedClient, ScriptedError, Turn};

use super::{bounded, is_judge_call, judged_text, sample_index, usage};

// ---------------------------------------------------------------------------------------------
// Failures and configuration

/// Candidate 1 (by seed) fails; the others answer with their index.
fn one_failing_candidate(n: usize) -> ScriptedClient {
    ScriptedClient::from_fn(move |_, request| {
        if is_judge_call(request) {
            return Turn::text("5");
        }
        match sample_index(request, 0, n) {
            1 => Turn::error("backend fell over"),
            i => Turn::text(format!("answer {i}")).with_usage(usage(3, 2)),
        }
    })
}

#[tokio::test]
async fn a_failed_candidate_is_a_typed_error_naming_the_call_by_default() {
    let strategy = BestOfN::new(
        one_failing_candidate(3),
        BestOfNConfig {
            n: 3,
            ..BestOfNConfig::default()
        },
    )
    .unwrap();
    let err = bounded(strategy.run("Q".into())).await.unwrap_err();
    match err {
        Error::StrategyCall {
            strategy,
            call,
            source,
        } => {
            assert_eq!((strategy, call.as_str()), ("best_of_n", "candidate 1 of 3"));
            assert!(
                matches!(
                    ScriptedError::of(&source),
                    Some(ScriptedError::Failed { .. })
                ),
                "{source:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let strategy = DiverseSampling::new(
        one_failing_candidate(3),
        DiverseSamplingConfig {
            n: 3,
            ..DiverseSamplingConfig::default()
        },
    )
    .unwrap();
    let err = bounded(strategy.run("Q".into())).await.unwrap_err();
    assert!(
        matches!(&err, Error::StrategyCall { strategy: "diverse_sampling", call, .. } if call == "candidate 1 of 3"),
        "{err:?}"
    );
    // Through the ModelClient interface the same error is the stream's one item.
    let events: Vec<_> = bounded(strategy.stream("Q").collect::<Vec<_>>()).await;
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], Err(Error::StrategyCall { .. })));
}

#[tokio::test]
async fn a_failed_candidate_can_be_dropped_and_recorded() {
    let config = DiverseSamplingConfig {
        n: 3,
        on_failure: FailurePolicy::Drop,
        ..DiverseSamplingConfig::default()
    };
    let strategy = DiverseSampling::new(one_failing_candidate(3), config).unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    assert_eq!(outcome.answer, "answer 0");
    let failures: Vec<_> = outcome.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].call, "candidate 1 of 3");
    assert!(failures[0].error.contains("backend fell over"));
    assert_eq!(outcome.candidates[1].score, Score::Unscored);
    assert_eq!(outcome.candidates[1].finish_reason, None);
    // The failed call counts as a call; its tokens are unknown, so the sums are too.
    assert_eq!(outcome.usage.model_calls, 3);
    assert_eq!(outcome.usage.prompt_tokens, None);

    let config = BestOfNConfig {
        n: 3,
        on_failure: FailurePolicy::Drop,
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::new(one_failing_candidate(3), config).unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    assert_eq!(
        strategy.inner().requests().len(),
        5,
        "3 candidates, 2 judge calls"
    );
    assert_eq!(outcome.answer, "answer 0");
    assert!(outcome.candidates[1].dropped.is_some());
}

#[tokio::test]
async fn a_failed_judge_call_fails_or_drops_its_candidate() {
    let client = || {
        ScriptedClient::from_fn(|_, request| {
            if is_judge_call(request) && judged_text(request) == "answer 0" {
                Turn::error("judge unavailable")
            } else if is_judge_call(request) {
                Turn::text("3")
            } else {
                Turn::text(format!("answer {}", sample_index(request, 0, 2)))
            }
        })
    };
    let config = BestOfNConfig {
        n: 2,
        ..BestOfNConfig::default()
    };
    let err = bounded(
        BestOfN::new(client(), config.clone())
            .unwrap()
            .run("Q".into()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::StrategyCall { call, .. } if call == "judge call for candidate 0"),
        "{err:?}"
    );
    let config = BestOfNConfig {
        on_failure: FailurePolicy::Drop,
        ..config
    };
    let outcome = bounded(BestOfN::new(client(), config).unwrap().run("Q".into()))
        .await
        .unwrap();
    assert_eq!(outcome.answer, "answer 1");
    assert_eq!(
        outcome.candidates[0]
            .dropped
            .as_ref()
            .map(|f| f.call.as_str()),
        Some("judge call for candidate 0")
    );
    assert_eq!(outcome.usage.model_calls, 4);
}

#[tokio::test]
async fn all_candidates_failing_is_an_error_even_when_dropping() {
    let config = BestOfNConfig {
        n: 2,
        on_failure: FailurePolicy::Drop,
        ..BestOfNConfig::default()
    };
    let inner = ScriptedClient::from_fn(|i, _| Turn::error(format!("down {i}")));
    let err = bounded(BestOfN::new(inner, config).unwrap().run("Q".into()))
        .await
        .unwrap_err();
    match err {
        Error::AllCandidatesFailed {
            strategy,
            candidates,
            first_error,
        } => {
            assert_eq!((strategy, candidates), ("best_of_n", 2));
            assert!(
                first_error.starts_with("candidate 0 of 2: "),
                "{first_error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_candidates_are_rejected() {
    let err = BestOfN::new(
        ScriptedClient::new([]),
        BestOfNConfig {
            n: 0,
            ..BestOfNConfig::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { field: "n", .. }),
        "{err:?}"
    );
    let err = DiverseSampling::new(
        ScriptedClient::new([]),
        DiverseSamplingConfig {
            n: 0,
            ..DiverseSamplingConfig::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { field: "n", .. }),
        "{err:?}"
    );
}
