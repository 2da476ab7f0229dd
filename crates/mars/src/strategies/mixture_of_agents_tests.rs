use super::*;
use crate::Error;
use crate::client::ModelClient;
use crate::client::{ModelClientExt, Role};
use crate::strategies::sampling::derive_seeds;
use crate::strategies::test_support::{self, options, positions, tokens};
use crate::{ScriptedClient, Turn};

fn config(n: usize) -> MixtureOfAgentsConfig {
    MixtureOfAgentsConfig {
        n,
        ..MixtureOfAgentsConfig::default()
    }
}

/// A conversation with a system prompt, an earlier exchange and a seeded last question.
fn conversation() -> ChatRequest {
    test_support::conversation("You are terse.", "Write add", options(0.3, 7, 256))
}

#[test]
fn aggregate_prompt_numbers_every_proposal_after_the_question() {
    let prompt = aggregate_prompt("Write add", &["fn a() {}\n", "  fn b() {}", "fn c() {}"]);
    let question = prompt.find("Write add").unwrap();
    let parts = [
        "--- Answer 1 ---\nfn a() {}\n",
        "--- Answer 2 ---\nfn b() {}\n",
        "--- Answer 3 ---\nfn c() {}\n",
    ];
    let positions = positions(&prompt, &parts);
    assert!(question < positions[0] && positions[0] < positions[1] && positions[1] < positions[2]);
    assert!(!prompt.contains("Answer 4"));
    assert!(prompt.contains("one final answer"));
    assert!(prompt.contains("complete code in one fenced code block"));
    let single = aggregate_prompt("Q", &["only"]);
    assert!(single.contains("--- Answer 1 ---\nonly\n") && !single.contains("Answer 2"));
}

#[test]
fn proposal_and_aggregator_options() {
    let config = config(3);
    let base = conversation().options;
    let proposals = config.proposal_options(&base, 3);
    let seeds: Vec<_> = proposals.iter().filter_map(|o| o.seed).collect();
    assert_eq!(seeds, derive_seeds(7, 3));
    // The request's temperature (0.3) wins over the configured ones.
    assert!(
        proposals
            .iter()
            .all(|o| o.temperature == Some(0.3) && o.max_tokens == Some(256))
    );
    let aggregator = config.aggregator_options(&base);
    assert_eq!(
        (
            aggregator.temperature,
            aggregator.seed,
            aggregator.max_tokens
        ),
        (Some(0.3), Some(7), Some(256))
    );
    // The configured ones fill in a request without a temperature.
    let unset = SamplingOptions {
        temperature: None,
        ..base.clone()
    };
    assert!(
        config
            .proposal_options(&unset, 3)
            .iter()
            .all(|o| o.temperature == Some(0.7))
    );
    assert_eq!(config.aggregator_options(&unset).temperature, Some(0.0));
    let keep = MixtureOfAgentsConfig {
        temperature: None,
        aggregator_temperature: None,
        ..config
    };
    assert!(
        keep.proposal_options(&base, 2)
            .iter()
            .all(|o| o.temperature == Some(0.3))
    );
    assert_eq!(keep.aggregator_options(&base).temperature, Some(0.3));
    let unseeded = keep.proposal_options(&SamplingOptions::default(), 1);
    assert_eq!(
        unseeded[0].seed,
        Some(derive_seeds(DEFAULT_BASE_SEED, 1)[0])
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let cases = [
        (config(0), "n"),
        (
            MixtureOfAgentsConfig {
                temperature: Some(-0.5),
                ..config(3)
            },
            "temperature",
        ),
        (
            MixtureOfAgentsConfig {
                aggregator_temperature: Some(f32::NAN),
                ..config(3)
            },
            "aggregator_temperature",
        ),
    ];
    for (config, expected) in cases {
        match MixtureOfAgents::new((), config).unwrap_err() {
            Error::InvalidConfig { field, .. } => assert_eq!(field, expected),
            other => panic!("{other:?}"),
        }
    }
    match MixtureOfAgents::with_proposers((), Vec::new(), config(3)).unwrap_err() {
        Error::InvalidConfig { field, .. } => assert_eq!(field, "proposers"),
        other => panic!("{other:?}"),
    }
    let proposer: Arc<dyn ModelClient> = Arc::new(ScriptedClient::new([]));
    assert!(
        MixtureOfAgents::with_proposers((), vec![proposer], config(0)).is_ok(),
        "n is not used with listed proposers"
    );
}

#[tokio::test]
async fn proposals_then_one_aggregation_keeping_the_conversation() {
    let replies = [
        "fn a() {}",
        "fn b() {}",
        "fn c() {}",
        "```rust\nfn best() {}\n```",
    ];
    let client = ScriptedClient::from_fn(move |i, _| Turn::text(replies[i]));
    let strategy = MixtureOfAgents::new(client, config(3)).unwrap();
    let outcome = strategy.run(conversation()).await.unwrap();

    assert_eq!(outcome.strategy, "mixture_of_agents");
    assert_eq!(outcome.answer, "```rust\nfn best() {}\n```");
    assert_eq!((outcome.winner, outcome.candidates.len()), (3, 4));
    assert_eq!(
        outcome.winner_candidate().map(|c| c.text.as_str()),
        Some(outcome.answer.as_str())
    );
    assert!(outcome.steps.is_empty());

    let requests = strategy.inner().requests();
    assert_eq!(requests.len(), 4);
    for proposal in &requests[..3] {
        assert_eq!(proposal.system, conversation().system);
        assert_eq!(proposal.messages, conversation().messages);
        // The request's temperature, not the configured one.
        assert_eq!(proposal.options.temperature, Some(0.3));
    }
    let mut seeds: Vec<_> = requests[..3]
        .iter()
        .filter_map(|r| r.options.seed)
        .collect();
    seeds.sort_unstable();
    let mut expected = derive_seeds(7, 3);
    expected.sort_unstable();
    assert_eq!(seeds, expected);

    let aggregate = &requests[3];
    assert_eq!(aggregate.system.as_deref(), Some("You are terse."));
    assert_eq!(aggregate.messages[..2], conversation().messages[..2]);
    assert_eq!(aggregate.messages.len(), 3);
    assert_eq!(aggregate.messages[2].role, Role::User);
    let texts: Vec<&str> = outcome.candidates[..3]
        .iter()
        .map(|c| c.text.as_str())
        .collect();
    assert_eq!(
        aggregate.last_user_message(),
        Some(aggregate_prompt("Write add", &texts).as_str())
    );
    // The request's temperature and seed, not the configured aggregator temperature.
    assert_eq!(
        (aggregate.options.temperature, aggregate.options.seed),
        (Some(0.3), Some(7))
    );
    assert_eq!(outcome.candidates[3].options, aggregate.options);
}

#[tokio::test]
async fn usage_sums_the_proposals_and_the_aggregation() {
    let client = ScriptedClient::new([
        Turn::text("a").with_usage(tokens(10, 1)),
        Turn::text("b").with_usage(tokens(10, 2)),
        Turn::text("c").with_usage(tokens(10, 3)),
        Turn::text("abc").with_usage(tokens(40, 4)),
    ]);
    let strategy = MixtureOfAgents::new(client, config(3)).unwrap();
    let outcome = strategy.run("Q".into()).await.unwrap();
    assert_eq!(outcome.usage.model_calls, 4);
    assert_eq!(outcome.usage.prompt_tokens, Some(70));
    assert_eq!(outcome.usage.completion_tokens, Some(10));
}

#[tokio::test]
async fn as_a_client_it_streams_the_aggregation() {
    let client = ScriptedClient::new(["x", "y", "z"].map(Turn::text));
    let strategy = MixtureOfAgents::new(client, config(2)).unwrap();
    let completion = strategy.complete("Q").await.unwrap();
    assert_eq!(completion.text, "z");
    assert_eq!(completion.usage.model_calls, 3);
}

#[tokio::test]
async fn dropped_proposals_are_left_out_of_the_aggregation() {
    let client = ScriptedClient::from_fn(|i, _| match i {
        1 => Turn::chunks(["PARTIAL-DROPPED"]).then_fail("boom"),
        3 => Turn::text("synthesis"),
        _ => Turn::text(format!("SURVIVOR-{i}")),
    });
    let config = MixtureOfAgentsConfig {
        on_failure: FailurePolicy::Drop,
        concurrency: NonZeroUsize::MIN,
        ..config(3)
    };
    let strategy = MixtureOfAgents::new(client, config).unwrap();
    let outcome = strategy.run("Q".into()).await.unwrap();
    assert_eq!(outcome.answer, "synthesis");
    assert_eq!(outcome.failures().count(), 1);
    assert!(outcome.candidates[1].dropped.is_some());
    let prompt = strategy.inner().requests()[3]
        .last_user_message()
        .unwrap()
        .to_owned();
    assert!(prompt.contains("--- Answer 1 ---\nSURVIVOR-0"), "{prompt}");
    assert!(prompt.contains("--- Answer 2 ---\nSURVIVOR-2"), "{prompt}");
    assert!(!prompt.contains("PARTIAL-DROPPED") && !prompt.contains("Answer 3"));
    assert_eq!(outcome.usage.model_calls, 4, "the failed call still counts");
    assert_eq!(outcome.usage.prompt_tokens, None);
}

#[tokio::test]
async fn every_proposal_failing_stops_before_the_aggregator() {
    let client = ScriptedClient::from_fn(|_, _| Turn::error("down"));
    let config = MixtureOfAgentsConfig {
        on_failure: FailurePolicy::Drop,
        ..config(2)
    };
    let strategy = MixtureOfAgents::new(client, config).unwrap();
    let err = strategy.run("Q".into()).await.unwrap_err();
    assert!(
        matches!(err, Error::AllCandidatesFailed { candidates: 2, .. }),
        "{err:?}"
    );
    assert_eq!(strategy.inner().requests().len(), 2);
}

#[tokio::test]
async fn a_failed_proposal_fails_the_run_by_default() {
    let client = ScriptedClient::from_fn(|i, _| {
        if i == 1 {
            Turn::error("down")
        } else {
            Turn::text("ok")
        }
    });
    let strategy = MixtureOfAgents::new(client, config(3)).unwrap();
    match strategy.run("Q".into()).await.unwrap_err() {
        Error::StrategyCall { strategy, call, .. } => {
            assert_eq!(
                (strategy, call.as_str()),
                ("mixture_of_agents", "candidate 1 of 3")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failed_aggregation_names_the_call() {
    let client = ScriptedClient::new([Turn::text("a"), Turn::text("b"), Turn::error("down")]);
    let strategy = MixtureOfAgents::new(client, config(2)).unwrap();
    match strategy.run("Q".into()).await.unwrap_err() {
        Error::StrategyCall { call, source, .. } => {
            assert_eq!(call, "aggregate");
            assert!(matches!(
                crate::ScriptedError::of(&source),
                Some(crate::ScriptedError::Failed { .. })
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_request_without_a_user_message_is_refused_before_any_call() {
    let strategy = MixtureOfAgents::new(ScriptedClient::new([]), config(2)).unwrap();
    let request = ChatRequest {
        messages: Vec::new(),
        ..ChatRequest::new("unused")
    };
    let err = strategy.run(request).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(strategy.inner().requests().is_empty());
}

fn proposer(reply: &str) -> Arc<ScriptedClient> {
    Arc::new(ScriptedClient::new([
        Turn::text(reply).with_usage(tokens(5, 1))
    ]))
}

#[tokio::test]
async fn listed_proposers_each_answer_once_and_the_wrapped_client_aggregates() {
    let proposers = [proposer("from A"), proposer("from B"), proposer("from C")];
    let listed: Vec<Arc<dyn ModelClient>> = proposers
        .iter()
        .map(|p| Arc::clone(p) as Arc<dyn ModelClient>)
        .collect();
    let aggregator = ScriptedClient::new([Turn::text("merged").with_usage(tokens(30, 1))]);
    let strategy = MixtureOfAgents::with_proposers(aggregator, listed, config(1)).unwrap();
    assert_eq!(strategy.proposers().len(), 3);
    let outcome = strategy.run(conversation()).await.unwrap();

    assert_eq!(outcome.answer, "merged");
    assert_eq!((outcome.winner, outcome.candidates.len()), (3, 4));
    let seeds = derive_seeds(7, 3);
    for (index, (proposer, seed)) in proposers.iter().zip(seeds).enumerate() {
        let requests = proposer.requests();
        assert_eq!(requests.len(), 1, "proposer {index}");
        assert_eq!(requests[0].system, conversation().system);
        assert_eq!(requests[0].messages, conversation().messages);
        assert_eq!(
            (requests[0].options.seed, requests[0].options.temperature),
            (Some(seed), Some(0.3))
        );
    }
    let aggregate = strategy.inner().requests();
    assert_eq!(aggregate.len(), 1);
    assert_eq!(aggregate[0].system, conversation().system);
    assert_eq!(
        aggregate[0].last_user_message(),
        Some(aggregate_prompt("Write add", &["from A", "from B", "from C"]).as_str())
    );
    assert_eq!(outcome.usage.model_calls, 4);
    assert_eq!(outcome.usage.prompt_tokens, Some(45));
    assert_eq!(outcome.usage.completion_tokens, Some(4));
}

#[tokio::test]
async fn a_failed_listed_proposer_follows_the_policy() {
    let broken = Arc::new(ScriptedClient::new([Turn::error("down")]));
    let listed: Vec<Arc<dyn ModelClient>> = vec![proposer("from A"), broken, proposer("from C")];
    let strategy =
        MixtureOfAgents::with_proposers(ScriptedClient::new([]), listed, config(3)).unwrap();
    match strategy.run("Q".into()).await.unwrap_err() {
        // Named as a failed proposal of the wrapped client is.
        Error::StrategyCall { call, .. } => assert_eq!(call, "candidate 1 of 3"),
        other => panic!("{other:?}"),
    }
    assert!(strategy.inner().requests().is_empty(), "no aggregation");

    let drop = MixtureOfAgentsConfig {
        on_failure: FailurePolicy::Drop,
        ..config(3)
    };
    let broken = Arc::new(ScriptedClient::new([Turn::error("down")]));
    let listed: Vec<Arc<dyn ModelClient>> = vec![proposer("from A"), broken, proposer("from C")];
    let strategy =
        MixtureOfAgents::with_proposers(ScriptedClient::new([Turn::text("merged")]), listed, drop)
            .unwrap();
    let outcome = strategy.run("Q".into()).await.unwrap();
    assert_eq!(outcome.answer, "merged");
    assert_eq!(
        outcome
            .failures()
            .map(|f| f.call.as_str())
            .collect::<Vec<_>>(),
        ["candidate 1 of 3"]
    );
    assert_eq!(
        strategy.inner().requests()[0].last_user_message(),
        Some(aggregate_prompt("Q", &["from A", "from C"]).as_str())
    );
}

#[tokio::test]
async fn blank_proposals_are_kept_in_the_trace_but_not_aggregated() {
    let replies = ["SURVIVOR-0", " \n\t", "", "SURVIVOR-3", "synthesis"];
    let client = ScriptedClient::from_fn(move |i, _| Turn::text(replies[i]));
    let config = MixtureOfAgentsConfig {
        concurrency: NonZeroUsize::MIN,
        ..config(4)
    };
    let strategy = MixtureOfAgents::new(client, config).unwrap();
    let outcome = strategy.run("Q".into()).await.unwrap();

    assert_eq!(outcome.answer, "synthesis");
    assert_eq!((outcome.winner, outcome.candidates.len()), (4, 5));
    assert_eq!(outcome.candidates[1].text, " \n\t");
    assert!(outcome.candidates[1].dropped.is_none());
    assert_eq!(outcome.failures().count(), 0, "blank is not failed");
    let requests = strategy.inner().requests();
    assert_eq!(requests.len(), 5);
    assert_eq!(
        requests[4].last_user_message(),
        Some(aggregate_prompt("Q", &["SURVIVOR-0", "SURVIVOR-3"]).as_str())
    );
    let records: Vec<_> = outcome
        .steps
        .iter()
        .map(|s| (s.stage.as_str(), s.note.as_deref(), s.usage.model_calls))
        .collect();
    assert_eq!(
        records,
        [
            ("candidate 1 of 4", Some(BLANK_PROPOSAL_NOTE), 0),
            ("candidate 2 of 4", Some(BLANK_PROPOSAL_NOTE), 0),
        ]
    );
    assert_eq!(outcome.usage.model_calls, 5);
}

#[tokio::test]
async fn only_blank_proposals_fail_without_calling_the_aggregator() {
    let client = ScriptedClient::from_fn(|i, _| match i {
        0 | 1 => Turn::text(if i == 0 { "" } else { "  \n" }),
        _ => Turn::text("the aggregator must not be called"),
    });
    let strategy = MixtureOfAgents::new(client, config(2)).unwrap();
    match strategy.run("Q".into()).await.unwrap_err() {
        Error::AllCandidatesFailed {
            strategy,
            candidates,
            first_error,
        } => {
            assert_eq!((strategy, candidates), ("mixture_of_agents", 2));
            assert!(
                first_error.contains("every proposal was blank"),
                "{first_error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(strategy.inner().requests().len(), 2, "no aggregation");

    // Listed proposers: one blank, one failed and dropped.
    let broken = Arc::new(ScriptedClient::new([Turn::error("down")]));
    let listed: Vec<Arc<dyn ModelClient>> = vec![proposer(" "), broken];
    let drop = MixtureOfAgentsConfig {
        on_failure: FailurePolicy::Drop,
        ..config(1)
    };
    let strategy = MixtureOfAgents::with_proposers(ScriptedClient::new([]), listed, drop).unwrap();
    match strategy.run("Q".into()).await.unwrap_err() {
        Error::AllCandidatesFailed {
            candidates,
            first_error,
            ..
        } => {
            assert_eq!(candidates, 2);
            assert!(
                first_error.contains("every proposal was blank (only whitespace) or failed"),
                "{first_error}"
            );
            assert!(first_error.contains("candidate 1 of 2"), "{first_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(strategy.inner().requests().is_empty(), "no aggregation");
}
