use super::*;
use crate::Error;
use crate::client::ModelClient;
use crate::client::{Message, Usage};
use crate::strategies::Score;
use crate::strategies::Strategy;
use crate::strategies::sampling::derive_seeds;
use crate::{ScriptedClient, Turn};

/// A client answering each sample by its seed: the sample whose seed is the `i`-th of
/// `config.samples(base)` gets `turns[i]`, whatever order the samples are polled in.
fn by_seed(
    config: &SelfConsistencyConfig,
    base: &SamplingOptions,
    turns: Vec<Turn>,
) -> ScriptedClient {
    let seeds: Vec<Option<u64>> = config.samples(base).iter().map(|s| s.seed).collect();
    ScriptedClient::from_fn(move |_, request| {
        let i = seeds
            .iter()
            .position(|s| *s == request.options.seed)
            .expect("a sample seed");
        turns[i].clone()
    })
}

fn votes(outcome: &Outcome) -> Vec<usize> {
    outcome
        .candidates
        .iter()
        .map(|c| match c.score {
            Score::Vote { votes, .. } | Score::VerifiedVote { votes, .. } => votes,
            Score::Unscored => 0,
            ref other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn samples_share_a_temperature_and_get_distinct_seeds() {
    let config = SelfConsistencyConfig {
        n: 3,
        ..SelfConsistencyConfig::default()
    };
    let base = SamplingOptions {
        temperature: Some(0.1),
        seed: Some(11),
        max_tokens: Some(32),
        ..SamplingOptions::default()
    };
    // The request's temperature wins over the configured 0.7, which fills in an unset one.
    let samples = config.samples(&base);
    assert!(
        samples
            .iter()
            .all(|s| s.temperature == Some(0.1) && s.max_tokens == Some(32))
    );
    let seeds: Vec<_> = samples.iter().filter_map(|s| s.seed).collect();
    assert_eq!(seeds, derive_seeds(11, 3));
    let unset = SamplingOptions {
        temperature: None,
        ..base.clone()
    };
    assert!(
        config
            .samples(&unset)
            .iter()
            .all(|s| s.temperature == Some(0.7))
    );
    let keep = SelfConsistencyConfig {
        temperature: None,
        ..config.clone()
    };
    assert!(
        keep.samples(&base)
            .iter()
            .all(|s| s.temperature == Some(0.1))
    );
    let unseeded = config.samples(&SamplingOptions::default());
    assert_eq!(
        unseeded[0].seed,
        Some(derive_seeds(DEFAULT_BASE_SEED, 1)[0])
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let cases: &[(SelfConsistencyConfig, &str)] = &[
        (
            SelfConsistencyConfig {
                n: 0,
                ..SelfConsistencyConfig::default()
            },
            "n",
        ),
        (
            SelfConsistencyConfig {
                temperature: Some(f32::NAN),
                ..SelfConsistencyConfig::default()
            },
            "temperature",
        ),
        (
            SelfConsistencyConfig {
                temperature: Some(-0.5),
                ..SelfConsistencyConfig::default()
            },
            "temperature",
        ),
    ];
    for (config, expected_field) in cases {
        match SelfConsistency::new((), config.clone()).unwrap_err() {
            Error::InvalidConfig { field, .. } => assert_eq!(field, *expected_field),
            other => panic!("{other:?}"),
        }
    }
    assert!(SelfConsistency::new((), SelfConsistencyConfig::default()).is_ok());
}

#[test]
fn only_the_top_scores_are_kept() {
    type Case<'a> = (&'a [Option<Option<f64>>], &'a [bool]);
    let cases: &[Case] = &[
        (&[], &[]),
        (&[None, None], &[false, false]),
        (
            &[Some(Some(0.0)), Some(Some(1.0)), Some(Some(1.0))],
            &[false, true, true],
        ),
        // NaN (recorded as `None`) ranks below any number, even a negative one.
        (&[Some(None), Some(Some(-3.0))], &[false, true]),
        // With no number at all, every NaN-scored survivor is kept.
        (&[Some(None), None, Some(None)], &[true, false, true]),
        // Dropped candidates are never kept.
        (&[None, Some(Some(0.5))], &[false, true]),
    ];
    for &(scores, expected) in cases {
        assert_eq!(top_scored(scores), expected, "{scores:?}");
    }
}

#[tokio::test]
async fn the_majority_final_answer_wins_across_wordings() {
    let config = SelfConsistencyConfig {
        n: 4,
        ..SelfConsistencyConfig::default()
    };
    let base = SamplingOptions {
        seed: Some(5),
        max_tokens: Some(100),
        temperature: Some(0.0),
        ..SamplingOptions::default()
    };
    let replies = [
        "2 + 2 is 5",
        "Adding the numbers, the answer is 4.",
        "We get $\\boxed{4}$",
        "Five.\n5",
    ];
    let turns = replies.iter().map(|r| Turn::text(*r)).collect();
    let client = by_seed(&config, &base, turns);
    let strategy = SelfConsistency::new(client, config.clone()).unwrap();
    let request = ChatRequest {
        system: Some("Show your work.".into()),
        messages: vec![
            Message::user("hi"),
            Message::assistant("hello"),
            Message::user("What is 2 + 2?"),
        ],
        options: base.clone(),
    };
    let outcome = strategy.run(request.clone()).await.unwrap();
    assert_eq!(outcome.strategy, "self_consistency");
    // By final answer "4" has two votes and every other answer one ("2 + 2 is 5" has no
    // marker, so its key is its whole last line).
    assert_eq!(outcome.winner, 1);
    assert_eq!(outcome.answer, replies[1]);
    assert_eq!(votes(&outcome), [1, 2, 2, 1]);
    assert_eq!(
        outcome.candidates[2].score,
        Score::Vote {
            key: "4".into(),
            votes: 2
        }
    );
    assert_eq!(
        outcome.candidates[3].score,
        Score::Vote {
            key: "5".into(),
            votes: 1
        }
    );
    // Every sample is the caller's conversation with its own derived seed, at the caller's
    // temperature.
    let sent = strategy.inner().requests();
    assert_eq!(sent.len(), 4);
    let mut seeds: Vec<_> = sent.iter().map(|r| r.options.seed).collect();
    seeds.sort_unstable();
    let mut expected: Vec<_> = derive_seeds(5, 4).into_iter().map(Some).collect();
    expected.sort_unstable();
    assert_eq!(seeds, expected);
    for r in &sent {
        assert_eq!(r.system, request.system);
        assert_eq!(r.messages, request.messages);
        assert_eq!(r.options.temperature, request.options.temperature);
        assert_eq!(r.options.max_tokens, Some(100));
    }
    // The same replies keyed by whole text (diverse sampling's default) would tie and pick the
    // first sample: the final-answer key is what makes "4" win.
    let auto = SelfConsistencyConfig {
        answer_key: AnswerKey::Auto,
        ..config.clone()
    };
    let turns = replies.iter().map(|r| Turn::text(*r)).collect();
    let strategy = SelfConsistency::new(by_seed(&auto, &base, turns), auto).unwrap();
    assert_eq!(strategy.run(request).await.unwrap().winner, 0);
}

#[tokio::test]
async fn a_verifier_filters_out_a_failing_majority() {
    let failing = "```rust\nfn add(a: u8, b: u8) -> u8 { a - b }\n```";
    let passing_a = "Here:\n```rust\nfn add(a: u8, b: u8) -> u8 {\n    a + b\n}\n```";
    let passing_b = "```\n// adds\nfn add(a: u8, b: u8) -> u8 { a + b }\n```";
    let other_passing = "```rust\nfn add(a: u8, b: u8) -> u8 { b + a }\n```";
    let replies = [
        failing,
        passing_a,
        failing,
        other_passing,
        failing,
        passing_b,
    ];
    let verifier = Verifier::new(|request: &ChatRequest, candidate: &str| {
        assert_eq!(request.last_user_message(), Some("Write add"));
        let score = if candidate.contains("a - b") {
            0.0
        } else {
            1.0
        };
        async move { score }
    });
    let config = SelfConsistencyConfig {
        n: replies.len(),
        verifier: Some(verifier),
        ..SelfConsistencyConfig::default()
    };
    let base = SamplingOptions::default();
    let turns = replies.iter().map(|r| Turn::text(*r)).collect();
    let strategy = SelfConsistency::new(by_seed(&config, &base, turns), config.clone()).unwrap();
    let outcome = strategy.run("Write add".into()).await.unwrap();
    assert_eq!(
        outcome.winner, 1,
        "the first of the two passing answers that agree"
    );
    assert_eq!(outcome.answer, passing_a);
    assert_eq!(votes(&outcome), [0, 2, 0, 1, 0, 2]);
    match &outcome.candidates[0].score {
        Score::VerifiedVote { score, votes, key } => {
            assert_eq!((*score, *votes), (Some(0.0), 0));
            assert!(key.contains("a - b"), "{key}");
        }
        other => panic!("{other:?}"),
    }
    match &outcome.candidates[5].score {
        Score::VerifiedVote { score, votes, .. } => assert_eq!((*score, *votes), (Some(1.0), 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        outcome.usage.model_calls, 6,
        "the verifier makes no model call"
    );

    // Without the verifier the failing answer has the majority.
    let plain = SelfConsistencyConfig {
        verifier: None,
        ..config
    };
    let turns = replies.iter().map(|r| Turn::text(*r)).collect();
    let strategy = SelfConsistency::new(by_seed(&plain, &base, turns), plain).unwrap();
    assert_eq!(
        strategy.run("Write add".into()).await.unwrap().answer,
        failing
    );
}

#[tokio::test]
async fn a_failed_sample_fails_the_run_or_is_dropped() {
    let config = SelfConsistencyConfig {
        n: 3,
        ..SelfConsistencyConfig::default()
    };
    let base = SamplingOptions::default();
    let turns = || {
        vec![
            Turn::text("The answer is 7"),
            Turn::error("backend down"),
            Turn::text("\\boxed{7}"),
        ]
    };
    let strategy = SelfConsistency::new(by_seed(&config, &base, turns()), config.clone()).unwrap();
    match strategy.run("q".into()).await.unwrap_err() {
        Error::StrategyCall { strategy, call, .. } => assert_eq!(
            (strategy, call.as_str()),
            ("self_consistency", "candidate 1 of 3")
        ),
        other => panic!("{other:?}"),
    }

    let drop = SelfConsistencyConfig {
        on_failure: FailurePolicy::Drop,
        ..config
    };
    let strategy = SelfConsistency::new(by_seed(&drop, &base, turns()), drop).unwrap();
    let outcome = strategy.run("q".into()).await.unwrap();
    assert_eq!(outcome.winner, 0);
    assert_eq!(votes(&outcome), [2, 0, 2]);
    assert_eq!(outcome.candidates[1].score, Score::Unscored);
    let failure = outcome.failures().next().expect("one failure");
    assert_eq!(failure.call, "candidate 1 of 3");
    assert!(failure.error.contains("backend down"), "{}", failure.error);
    assert_eq!(outcome.usage.model_calls, 3, "the failed call still counts");
    assert_eq!(
        outcome.usage.prompt_tokens, None,
        "unknown for the failed call"
    );
}

#[tokio::test]
async fn usage_sums_every_sample() {
    let config = SelfConsistencyConfig {
        n: 3,
        ..SelfConsistencyConfig::default()
    };
    let base = SamplingOptions::default();
    let turns = (1..=3u64)
        .map(|i| {
            Turn::text("4").with_usage(Usage {
                prompt_tokens: Some(10),
                completion_tokens: Some(i),
                ..Usage::default()
            })
        })
        .collect();
    let strategy = SelfConsistency::new(by_seed(&config, &base, turns), config).unwrap();
    let outcome = strategy.run("q".into()).await.unwrap();
    assert_eq!(outcome.usage.model_calls, 3);
    assert_eq!(outcome.usage.prompt_tokens, Some(30));
    assert_eq!(outcome.usage.completion_tokens, Some(6));
    assert!(outcome.steps.is_empty());
}

#[tokio::test]
async fn streams_the_chosen_answer() {
    let config = SelfConsistencyConfig {
        n: 1,
        ..SelfConsistencyConfig::default()
    };
    let strategy = SelfConsistency::new(ScriptedClient::new([Turn::text("only")]), config).unwrap();
    let completion = crate::collect_completion(strategy.stream_chat("q".into()))
        .await
        .unwrap();
    assert_eq!(completion.text, "only");
    assert_eq!(completion.usage.model_calls, 1);
    assert_eq!(Strategy::name(&strategy), "self_consistency");
}

#[tokio::test]
async fn junk_replies_vote_together_deterministically_and_lose_to_any_answer() {
    type Case<'a> = (&'a [&'a str], usize, &'a [usize]);
    let cases: &[Case] = &[
        // All blank: one empty key, the earliest sample wins.
        (&["", " \n", "\t"], 0, &[3, 3, 3]),
        // "..." and "**" normalise to the empty key as well.
        (&["...", "  ", "**", "..."], 0, &[4, 4, 4, 4]),
        // Junk outnumbering a real answer still loses to it.
        (&["...", "", "4", "..."], 2, &[3, 3, 1, 3]),
        (&["", "...", "**", "five", "5"], 3, &[3, 3, 3, 1, 1]),
    ];
    let base = SamplingOptions {
        seed: Some(9),
        ..SamplingOptions::default()
    };
    let request = ChatRequest::new("Q").with_options(base.clone());
    for &(replies, winner, expected_votes) in cases {
        let config = SelfConsistencyConfig {
            n: replies.len(),
            ..SelfConsistencyConfig::default()
        };
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let turns = replies.iter().map(|r| Turn::text(*r)).collect();
            let strategy =
                SelfConsistency::new(by_seed(&config, &base, turns), config.clone()).unwrap();
            outcomes.push(strategy.run(request.clone()).await.unwrap());
        }
        let outcome = &outcomes[0];
        assert_eq!(outcome.winner, winner, "{replies:?}");
        assert_eq!(outcome.answer, replies[winner], "{replies:?}");
        assert_eq!(votes(outcome), expected_votes, "{replies:?}");
        for (candidate, reply) in outcome.candidates.iter().zip(replies) {
            if AnswerKey::FinalAnswer.key(reply).is_empty() {
                let Score::Vote { key, .. } = &candidate.score else {
                    panic!("{:?}", candidate.score)
                };
                assert_eq!(key, "", "{reply:?}");
            }
        }
        // The same replies give the same outcome, apart from the measured time.
        let scores = |o: &Outcome| {
            (
                o.winner,
                o.answer.clone(),
                o.candidates
                    .iter()
                    .map(|c| c.score.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(scores(&outcomes[0]), scores(&outcomes[1]), "{replies:?}");
    }
}
