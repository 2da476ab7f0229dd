use super::*;
use crate::client::Role;
use crate::strategies::feedback::{Feedback, Issue};
use crate::strategies::sampling::derive_seeds;
use crate::strategies::test_support::{conversation, options, tokens};
use crate::{ScriptedClient, Turn};

/// A verifier that passes the texts in `passing`; every other text fails with a compile error
/// that names the text, at line 2.
fn verifier(passing: &'static [&'static str]) -> Verifier {
    Verifier::with_feedback(move |_request, text: &str| {
        let ok = passing.contains(&text);
        let issue = (!ok).then(|| Issue::CompileError {
            message: format!("error[E0308]: mismatched types in {text}"),
            line: Some(2),
            source_line: Some("n".into()),
        });
        let score = if ok {
            1.0
        } else if text.contains("better") {
            0.5
        } else {
            0.0
        };
        async move {
            Verification {
                score,
                feedback: Some(Feedback {
                    compiled: ok,
                    issue,
                }),
            }
        }
    })
}

/// A model whose first answers depend on the seed (chain `c` answers `c0`) and whose repair of
/// `cK` is `c(K+1)`; every reply reports 10 prompt and 5 completion tokens.
fn model(chains: usize) -> ScriptedClient {
    let seeds = derive_seeds(7, chains);
    ScriptedClient::from_fn(move |_, request| {
        let is_repair = request
            .last_user_message()
            .is_some_and(|m| m.starts_with("Your code was checked"));
        let text = if is_repair {
            let previous = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::Assistant)
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let previous = previous
                .trim_start_matches("```rust\n")
                .trim_end_matches("\n```");
            let (chain, attempt) = previous.split_at(1);
            format!("{chain}{}", attempt.parse::<u32>().unwrap_or(0) + 1)
        } else {
            let seed = request.options.seed.unwrap_or_default();
            let chain = seeds.iter().position(|s| *s == seed).unwrap_or(99);
            format!("{}0", ["a", "b", "c"][chain])
        };
        Turn::text(text).with_usage(tokens(10, 5))
    })
}

fn config(n: usize, rounds: usize, passing: &'static [&'static str]) -> RepairConfig {
    RepairConfig {
        n,
        rounds,
        verifier: Some(verifier(passing)),
        ..RepairConfig::default()
    }
}

fn ask() -> ChatRequest {
    ChatRequest::new("Write f")
        .with_system("Be brief.")
        .with_options(options(0.2, 7, 64))
}

#[tokio::test]
async fn the_repair_prompt_shows_the_feedback_after_the_failed_code() {
    let client = model(1);
    let request = conversation("Be brief.", "Write f", options(0.2, 7, 64));
    let outcome = Repair::new(&client, config(1, 2, &["a1"]))
        .unwrap()
        .run(request.clone())
        .await
        .unwrap();
    assert_eq!(outcome.answer, "a1");
    let requests = client.requests();
    let repair = &requests[1];
    // The caller's system prompt and conversation, the failed code, then the feedback.
    assert_eq!(repair.system.as_deref(), Some("Be brief."));
    assert_eq!(repair.messages[..3], request.messages[..]);
    assert_eq!(repair.messages[3].role, Role::Assistant);
    assert_eq!(repair.messages[3].content, "```rust\na0\n```");
    let prompt = &repair.messages[4].content;
    assert_eq!(repair.messages[4].role, Role::User);
    assert_eq!(
        *prompt,
        repair_message(
            "The code does not compile. The first compiler error is:\n\
             error[E0308]: mismatched types in a0\nat line 2 of the code: `n`",
            DEFAULT_REPAIR_INSTRUCTION
        )
    );
    // The repair call keeps the request's options, with its own seed.
    assert_eq!(repair.options.temperature, Some(0.2));
    assert_eq!(repair.options.max_tokens, Some(64));
    assert_ne!(repair.options.seed, requests[0].options.seed);
    // Each check is a step with its feedback.
    let stages: Vec<&str> = outcome.steps.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages, ["chain 0 attempt 0", "chain 0 attempt 1"]);
    assert!(outcome.steps[0].text.contains("mismatched types in a0"));
    assert_eq!(outcome.steps[1].text, "passed");
    assert_eq!(
        outcome.steps[0].note.as_deref(),
        Some("candidate 0: score 0, compile error")
    );
}

#[tokio::test]
async fn code_cut_off_at_the_token_limit_is_named_before_the_compiler_error() {
    // The first answer stops at the token limit; its repair (a complete answer) does not.
    let client = ScriptedClient::from_fn(|i, _| {
        if i == 0 {
            Turn::text("a0").with_finish_reason(FinishReason::Length)
        } else {
            Turn::text("a1")
        }
    });
    let outcome = Repair::new(&client, config(1, 2, &[]))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    let requests = client.requests();
    assert_eq!(requests.len(), 3);
    let compile_error = "The code does not compile. The first compiler error is:\n\
                         error[E0308]: mismatched types in ";
    // The cut-off attempt's feedback leads with the note; the complete one's does not.
    assert_eq!(
        requests[1].last_user_message(),
        Some(
            repair_message(
                &format!("{CUT_OFF_NOTE}\n\n{compile_error}a0\nat line 2 of the code: `n`"),
                DEFAULT_REPAIR_INSTRUCTION
            )
            .as_str()
        )
    );
    assert_eq!(
        requests[2].last_user_message(),
        Some(
            repair_message(
                &format!("{compile_error}a1\nat line 2 of the code: `n`"),
                DEFAULT_REPAIR_INSTRUCTION
            )
            .as_str()
        )
    );
    // The trace shows the feedback as the model saw it.
    assert!(outcome.steps[0].text.starts_with(CUT_OFF_NOTE));
    assert!(!outcome.steps[1].text.contains(CUT_OFF_NOTE));
}

#[tokio::test]
async fn a_pass_on_the_first_attempt_makes_no_repair_call() {
    let client = model(1);
    let outcome = Repair::new(&client, config(1, 2, &["a0"]))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(outcome.answer, "a0");
    assert_eq!(client.requests().len(), 1);
    assert_eq!(outcome.usage.model_calls, 1);
    assert_eq!(
        outcome.candidates[0].score,
        Score::Verifier { score: Some(1.0) }
    );
}

#[tokio::test]
async fn the_rounds_are_a_limit_and_the_best_attempt_wins_when_none_passes() {
    for rounds in [0, 1, 3] {
        let client = model(1);
        let outcome = Repair::new(&client, config(1, rounds, &[]))
            .unwrap()
            .run(ask())
            .await
            .unwrap();
        assert_eq!(client.requests().len(), 1 + rounds, "rounds {rounds}");
        assert_eq!(outcome.candidates.len(), 1 + rounds);
        assert_eq!(outcome.steps.len(), 1 + rounds);
        // Every attempt scores 0: the shortest, then the first, wins.
        assert_eq!(outcome.answer, "a0");
    }
    // A better attempt (scored 0.5) wins over a later worse one.
    let client = ScriptedClient::from_fn(|i, _| Turn::text(["bad", "better", "worse"][i]));
    let outcome = Repair::new(&client, config(1, 2, &[]))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!((outcome.answer.as_str(), outcome.winner), ("better", 1));
}

#[tokio::test]
async fn chains_run_together_and_the_lowest_passing_chain_wins() {
    // Chain b passes in round 1; chain c too; chain a never. Round 2 never happens.
    let client = model(3);
    let outcome = Repair::new(&client, config(3, 2, &["b1", "c1"]))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(outcome.answer, "b1");
    let texts: Vec<&str> = outcome.candidates.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["a0", "b0", "c0", "a1", "b1", "c1"]);
    assert_eq!(outcome.winner, 4);
    // 3 first calls + 3 repairs: under n × (1 + rounds) = 9; usage is their sum.
    assert_eq!(client.requests().len(), 6);
    assert_eq!(outcome.usage.model_calls, 6);
    assert_eq!(outcome.usage.prompt_tokens, Some(60));
    assert_eq!(outcome.usage.completion_tokens, Some(30));
    // The first answers came through one batch with the chains' seeds.
    let seeds: Vec<_> = client.requests()[..3]
        .iter()
        .filter_map(|r| r.options.seed)
        .collect();
    assert_eq!(seeds, derive_seeds(7, 3));
}

#[tokio::test]
async fn calls_never_exceed_n_times_one_plus_rounds() {
    let client = model(2);
    let outcome = Repair::new(&client, config(2, 2, &[]))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(outcome.usage.model_calls, 6);
    assert_eq!(outcome.usage.prompt_tokens, Some(60));
    assert_eq!(outcome.usage.completion_tokens, Some(30));
    assert_eq!(outcome.steps.len(), 6);
}

#[tokio::test]
async fn a_failed_repair_call_fails_the_run_under_the_fail_policy() {
    let client = ScriptedClient::from_fn(|i, _| {
        if i == 0 {
            Turn::text("x")
        } else {
            Turn::error("connection reset")
        }
    });
    let err = Repair::new(&client, config(1, 2, &[]))
        .unwrap()
        .run(ask())
        .await
        .unwrap_err();
    match err {
        Error::StrategyCall { strategy, call, .. } => {
            assert_eq!(
                (strategy, call.as_str()),
                ("repair", "repair round 1 of chain 0")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn under_the_drop_policy_failed_calls_end_their_chain_and_still_count() {
    // Chain a's first call fails; chain b's first repair fails: b0 is the best left.
    let seeds = derive_seeds(7, 2);
    let client = ScriptedClient::from_fn(move |_, request| {
        if request.messages.len() > 1 {
            // A repair call: the only request with more than the question.
            return Turn::error("overloaded");
        }
        if request.options.seed == Some(seeds[0]) {
            Turn::error("connection reset")
        } else {
            Turn::text("b0").with_usage(tokens(10, 5))
        }
    });
    let config = RepairConfig {
        on_failure: FailurePolicy::Drop,
        ..config(2, 2, &[])
    };
    let outcome = Repair::new(&client, config)
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(outcome.answer, "b0");
    // Two first calls and one repair of chain b: no second round for a closed chain.
    assert_eq!(client.requests().len(), 3);
    assert_eq!(outcome.usage.model_calls, 3);
    assert_eq!(
        outcome.usage.prompt_tokens, None,
        "failed calls have unknown usage"
    );
    let failures: Vec<&str> = outcome.failures().map(|f| f.call.as_str()).collect();
    assert_eq!(failures, ["candidate 0 of 2", "repair round 1 of chain 1"]);
    // Every first call failing is an error.
    let client = ScriptedClient::from_fn(|_, _| Turn::error("down"));
    let config = RepairConfig {
        on_failure: FailurePolicy::Drop,
        ..RepairConfig::default()
    };
    let config = RepairConfig {
        verifier: Some(verifier(&[])),
        ..config
    };
    let err = Repair::new(&client, config)
        .unwrap()
        .run(ask())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AllCandidatesFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn a_verifier_without_feedback_is_shown_as_its_score() {
    let client = ScriptedClient::from_fn(|i, _| Turn::text(["one", "two"][i]));
    let config = RepairConfig {
        rounds: 1,
        verifier: Some(Verifier::new(|_, text: &str| {
            let score = if text == "two" { 1.0 } else { 0.25 };
            async move { score }
        })),
        ..RepairConfig::default()
    };
    let outcome = Repair::new(&client, config)
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(outcome.answer, "two");
    let prompt = client.requests()[1]
        .last_user_message()
        .unwrap_or_default()
        .to_owned();
    assert!(
        prompt.contains("The checker scored it 0.25; a passing answer scores at least 1."),
        "{prompt}"
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let with = |f: fn(&mut RepairConfig)| {
        let mut config = config(1, 2, &[]);
        f(&mut config);
        config
    };
    let cases: Vec<(RepairConfig, &str)> = vec![
        (RepairConfig::default(), "verifier"),
        (with(|c| c.n = 0), "n"),
        (with(|c| c.rounds = MAX_ROUNDS + 1), "rounds"),
        (with(|c| c.pass_score = f64::NAN), "pass_score"),
        (with(|c| c.instruction = " ".into()), "instruction"),
        (with(|c| c.temperature = Some(-1.0)), "temperature"),
    ];
    for (config, field) in cases {
        match Repair::new(ScriptedClient::new([]), config) {
            Err(Error::InvalidConfig { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(Repair::new(ScriptedClient::new([]), config(1, MAX_ROUNDS, &[])).is_ok());
}

#[tokio::test]
async fn the_repair_call_shows_the_code_whose_lines_the_feedback_counts() {
    // The feedback points at line 2 of the code; the reply has prose before its block.
    let reply = "Sure! Here is the function.\n\n```rust\nfn f() -> u32 {\n    n\n}\n```\nDone.";
    let client =
        ScriptedClient::from_fn(move |i, _| Turn::text(if i == 0 { reply } else { "fixed" }));
    let outcome = Repair::new(&client, config(1, 1, &["fixed"]))
        .unwrap()
        .run(ChatRequest::new("Write f"))
        .await
        .unwrap();
    assert_eq!(outcome.answer, "fixed");
    let repair = &client.requests()[1];
    let shown = &repair.messages[1];
    assert_eq!(shown.role, Role::Assistant);
    assert_eq!(shown.content, "```rust\nfn f() -> u32 {\n    n\n}\n```");
    assert_eq!(
        shown.content.lines().nth(2),
        Some("    n"),
        "line 2 of the code"
    );
    assert!(
        repair.messages[2]
            .content
            .contains("at line 2 of the code: `n`")
    );
}
