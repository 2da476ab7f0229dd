use super::*;
use crate::Error;
use crate::strategies::Strategy;
use crate::strategies::test_support::usage;
use crate::strategies::{Baseline, BestOfN, BestOfNConfig};
use crate::{ScriptedClient, Turn};

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
