use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::strategies::feedback::{Feedback, Issue, Verification};
use crate::strategies::test_support::tokens;
use crate::strategies::trace::Score;
use crate::{ScriptedClient, Turn};

const QUESTION: &str = "Write fn add(a: i32, b: i32) -> i32.";

/// What the scripted model says to each kind of call.
#[derive(Clone)]
struct Script {
    /// The agents' answers, by temperature: agent 0 at 0.3, agent 1 at 0.6, agent 2 at 1.0.
    agents: [&'static str; 3],
    /// The verdict of verification attempt `n` (0-based) of a solution, from its text.
    verdict: fn(&str, usize) -> &'static str,
    /// An improvement's reply, from the solution it improves.
    improve: fn(&str) -> String,
}

/// A scripted model following `script`; every reply costs 10 prompt and 5 completion tokens.
/// Counts verification attempts per solution text.
fn model(script: Script) -> ScriptedClient {
    let attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    ScriptedClient::from_fn(move |_, request| {
        let user = request.last_user_message().unwrap_or_default().to_owned();
        let system = request.system.as_deref().unwrap_or_default();
        let text = if system == prompts::VERIFIER_SYSTEM {
            let solution = between(&user, "Proposed solution:\n", "\n\nCheck its logic");
            let mut attempts = attempts.lock().unwrap();
            let n = attempts.entry(solution.clone()).or_default();
            let verdict = (script.verdict)(&solution, *n);
            *n += 1;
            format!(
                "Checked.\n- Overall assessment: {verdict}\n- Confidence: 7/10\n- Issue: {solution} is off"
            )
        } else if system == prompts::EXTRACTION_SYSTEM {
            "APPROACH: direct computation\nKEY_INSIGHTS: add the inputs\nPATTERN: one expression"
                .to_owned()
        } else if user.starts_with("Improve a solution") {
            (script.improve)(&between(
                &user,
                "Current solution:\n",
                "\n\nVerification feedback",
            ))
        } else if user.starts_with("Here is a problem and") {
            format!("aggregate-{}", request.options.seed.unwrap_or_default())
        } else if user.starts_with("You are one of several agents") {
            format!("enhanced-{}", request.options.seed.unwrap_or_default())
        } else if user.starts_with("Synthesise") {
            "synthesis".to_owned()
        } else if user == QUESTION {
            let t = request.options.temperature.unwrap_or_default();
            let agent = [0.3f32, 0.6, 1.0]
                .iter()
                .position(|x| (x - t).abs() < 1e-6)
                .expect("an agent's temperature");
            script.agents[agent].to_owned()
        } else {
            panic!("unexpected call: {user}")
        };
        Turn::text(text).with_usage(tokens(10, 5))
    })
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).expect("start") + start.len();
    let to = text[from..].find(end).expect("end") + from;
    text[from..to].to_owned()
}

/// The default configuration with phase 2 off and no lightweight switch.
fn plain() -> MarsConfig {
    MarsConfig {
        aggregation: None,
        strategy_network: false,
        lightweight_at: None,
        ..MarsConfig::default()
    }
}

fn ask(max_tokens: Option<u32>) -> ChatRequest {
    ChatRequest::new(QUESTION)
        .with_system("Answer with Rust code only.")
        .with_options(SamplingOptions {
            temperature: Some(0.7),
            seed: Some(11),
            max_tokens,
            ..SamplingOptions::default()
        })
}

/// MARS with `config` over `client`, asked the question with `max_tokens`.
async fn run(client: &ScriptedClient, config: MarsConfig, max_tokens: Option<u32>) -> Outcome {
    Mars::new(client, config)
        .unwrap()
        .run(ask(max_tokens))
        .await
        .unwrap()
}

/// The stages of the outcome's steps that name `prefix`.
fn stages(outcome: &Outcome, prefix: &str) -> Vec<String> {
    outcome
        .steps
        .iter()
        .filter(|s| s.stage.starts_with(prefix))
        .map(|s| s.stage.clone())
        .collect()
}

fn note_of<'a>(outcome: &'a Outcome, stage: &str) -> &'a str {
    outcome
        .steps
        .iter()
        .find(|s| s.stage == stage)
        .and_then(|s| s.note.as_deref())
        .unwrap_or_else(|| panic!("no step {stage}"))
}

/// Every call was counted: calls, and 10 + 5 tokens each.
fn assert_usage(outcome: &Outcome, client: &ScriptedClient, calls: u64) {
    assert_eq!(client.requests().len() as u64, calls);
    assert_eq!(u64::from(outcome.usage.model_calls), calls);
    assert_eq!(outcome.usage.prompt_tokens, Some(10 * calls));
    assert_eq!(outcome.usage.completion_tokens, Some(5 * calls));
}

fn always(verdict: &'static str) -> fn(&str, usize) -> &'static str {
    match verdict {
        "CORRECT" => |_, _| "CORRECT",
        _ => |_, _| "INCORRECT",
    }
}

#[tokio::test]
async fn two_consecutive_correct_verdicts_verify_and_the_most_confident_wins() {
    let script = Script {
        agents: ["zero", "one", "two, therefore"],
        // zero: C C (verified in 2); one: C I, then a third cannot give two in a row (2 calls);
        // two: I C C (verified in 3).
        verdict: |text, n| match (text, n) {
            ("zero", _) => "CORRECT",
            ("one", 0) => "CORRECT",
            ("one", _) => "INCORRECT",
            (_, 0) => "INCORRECT",
            _ => "CORRECT",
        },
        improve: |_| panic!("no round: two solutions are verified"),
    };
    let client = model(script);
    let outcome = run(&client, plain(), None).await;
    // "therefore" raises the heuristic confidence: 0.6 against 0.5.
    assert_eq!(outcome.answer, "two, therefore");
    assert_usage(&outcome, &client, 3 + 2 + 2 + 3);
    // Each solution is verified by the agent whose temperature differs most from its author's.
    assert_eq!(
        stages(&outcome, "verify"),
        [
            "verify agent 0, attempt 1, by agent 2",
            "verify agent 1, attempt 1, by agent 2",
            "verify agent 2, attempt 1, by agent 0",
            "verify agent 0, attempt 2, by agent 2",
            "verify agent 1, attempt 2, by agent 2",
            "verify agent 2, attempt 2, by agent 0",
            "verify agent 2, attempt 3, by agent 0",
        ]
    );
    assert_eq!(
        note_of(&outcome, "verify agent 1, attempt 2, by agent 2"),
        "INCORRECT, confidence 7"
    );
    assert!(note_of(&outcome, "selection").contains("2 of 3 solutions verified"));
    // Every verification call runs at 0.1; the agents at their own temperatures.
    let temps: Vec<f32> = client
        .requests()
        .iter()
        .map(|r| r.options.temperature.unwrap())
        .collect();
    assert_eq!(&temps[..3], &[0.3, 0.6, 1.0]);
    assert!(temps[3..].iter().all(|t| *t == 0.1));
    // Scores are the share of CORRECT verdicts.
    assert_eq!(
        outcome.candidates[1].score,
        Score::Verifier { score: Some(0.5) }
    );
}

#[tokio::test]
async fn unverified_solutions_are_improved_and_rounds_stop_at_consensus() {
    let script = Script {
        agents: ["a - b", "a * b", "b - a"],
        verdict: |text, _| {
            if text.starts_with("fixed") {
                "CORRECT"
            } else {
                "INCORRECT"
            }
        },
        improve: |old| format!("fixed {old}"),
    };
    let client = model(script);
    let outcome = run(&client, plain(), None).await;
    // 3 agents; 2 verifications each (I I, and a third could not give two in a row);
    // round 1: 3 improvements, 2 verifications each; 3 verified >= consensus 2: stop.
    assert_usage(&outcome, &client, 3 + 6 + 3 + 6);
    assert_eq!(outcome.answer, "fixed a - b");
    let improvements: Vec<ChatRequest> = client
        .requests()
        .into_iter()
        .filter(|r| r.last_user_message().unwrap().starts_with("Improve"))
        .collect();
    let temps: Vec<f32> = improvements
        .iter()
        .map(|r| r.options.temperature.unwrap())
        .collect();
    assert_eq!(temps, [0.3 * 0.8, 0.6 * 0.8, 1.0 * 0.8]);
    // The improvement keeps the conversation's system prompt and shows the verifier's report.
    assert_eq!(
        improvements[0].system.as_deref(),
        Some("Answer with Rust code only.")
    );
    assert!(
        improvements[0]
            .last_user_message()
            .unwrap()
            .contains("Overall assessment: INCORRECT")
    );
    assert_eq!(
        stages(&outcome, "population after round"),
        ["population after round 1"]
    );
}

#[tokio::test]
async fn without_a_verified_solution_the_rounds_end_and_a_synthesis_answers() {
    let script = Script {
        agents: ["a - b", "a * b", "b - a"],
        verdict: always("INCORRECT"),
        improve: |old| format!("{old}!"),
    };
    let client = model(script);
    let config = MarsConfig {
        max_rounds: 2,
        ..plain()
    };
    let outcome = run(&client, config, None).await;
    // 3 agents, 6 verifications, 2 rounds of 3 improvements and 6 verifications, 1 synthesis.
    assert_usage(&outcome, &client, 3 + 6 + 2 * (3 + 6) + 1);
    assert_eq!(outcome.answer, "synthesis");
    assert_eq!(outcome.winner, outcome.candidates.len() - 1);
    let last = client.requests().pop().unwrap();
    assert_eq!(last.options.temperature, Some(0.3));
    let prompt = last.last_user_message().unwrap();
    assert!(prompt.contains("a - b!!") && prompt.contains("0 CORRECT, 18 INCORRECT"));
    assert!(note_of(&outcome, "selection").contains("a synthesis of agent 0, agent 1, agent 2"));
}

#[tokio::test]
async fn two_agreeing_solutions_win_by_vote_when_none_is_verified() {
    let script = Script {
        agents: [
            "```rust\nfn add() {}\n```",
            "wrong",
            "```rust\nfn  add() {} // same\n```",
        ],
        verdict: always("INCORRECT"),
        improve: |_| panic!("no rounds"),
    };
    let client = model(script);
    let config = MarsConfig {
        max_rounds: 0,
        ..plain()
    };
    let outcome = run(&client, config, None).await;
    assert_usage(&outcome, &client, 3 + 6);
    assert_eq!(outcome.answer, "```rust\nfn add() {}\n```");
    assert!(note_of(&outcome, "selection").contains("2 of 3 agree"));
}

#[tokio::test]
async fn a_small_token_limit_switches_to_the_lightweight_configuration() {
    let script = Script {
        agents: ["zero", "one", "unused"],
        verdict: |text, _| {
            if text == "one" {
                "CORRECT"
            } else {
                "INCORRECT"
            }
        },
        improve: |_| panic!("one solution is verified"),
    };
    let client = model(script);
    let outcome = run(&client, MarsConfig::default(), Some(4000)).await;
    // 2 agents; one CORRECT verdict verifies "one"; "zero" gets its 2 attempts.
    assert_usage(&outcome, &client, 2 + 1 + 2);
    assert_eq!(outcome.answer, "one");
    assert!(note_of(&outcome, "configuration").starts_with("lightweight"));
    // Above the limit, the default configuration runs (3 agents, aggregation on).
    let client = model(Script {
        agents: ["zero", "one", "two"],
        verdict: always("CORRECT"),
        improve: |_| panic!("verified"),
    });
    let outcome = run(&client, MarsConfig::default(), Some(4001)).await;
    assert_eq!(note_of(&outcome, "configuration"), "default");
    assert_eq!(stages(&outcome, "population after aggregation").len(), 3);
}

#[tokio::test]
async fn aggregation_loops_replace_the_population_and_every_call_is_counted() {
    let client = model(Script {
        agents: ["zero", "one", "two"],
        verdict: always("CORRECT"),
        improve: |_| panic!("verified"),
    });
    let config = MarsConfig {
        lightweight_at: None,
        ..MarsConfig::default()
    };
    let outcome = run(&client, config, None).await;
    // 3 agents; 3 loops of 2 groups; the aggregates (confidence 0.8) push the agents' answers
    // (0.5) out of the population of 6, so the strategy network has no agent solution left;
    // 6 solutions verified twice each.
    assert_usage(&outcome, &client, 3 + 6 + 12);
    assert!(stages(&outcome, "strategy of").is_empty());
    assert!(outcome.answer.starts_with("aggregate-"));
    let groups = stages(&outcome, "population after aggregation loop 0");
    assert_eq!(
        groups,
        ["population after aggregation loop 0 (groups [0, 1, 2], [0, 1, 2])"]
    );
}

#[tokio::test]
async fn the_strategy_network_extracts_and_enhances_with_peers_strategies() {
    let client = model(Script {
        agents: ["zero", "one", "two"],
        verdict: always("CORRECT"),
        improve: |_| panic!("verified"),
    });
    let config = MarsConfig {
        strategy_network: true,
        ..plain()
    };
    let outcome = run(&client, config, None).await;
    // 3 extractions; each agent's answer enhanced with its peers' strategies (3 calls);
    // 6 solutions verified twice each.
    assert_usage(&outcome, &client, 3 + 3 + 3 + 12);
    let enhanced: Vec<ChatRequest> = client
        .requests()
        .into_iter()
        .filter(|r| {
            r.last_user_message()
                .unwrap()
                .starts_with("You are one of several")
        })
        .collect();
    let temps: Vec<f32> = enhanced
        .iter()
        .map(|r| r.options.temperature.unwrap())
        .collect();
    assert_eq!(temps, [0.3 * 0.9, 0.6 * 0.9, 1.0 * 0.9]);
    // Confidence 0.5 is below 0.6: the two most confident strategies (agents 0 and 1) are
    // shared, each with the others.
    let peers = |i: usize| {
        enhanced[i]
            .last_user_message()
            .unwrap()
            .matches("Peer strategy")
            .count()
    };
    assert_eq!([peers(0), peers(1), peers(2)], [1, 1, 2]);
    assert!(
        enhanced[0]
            .last_user_message()
            .unwrap()
            .contains("- Approach: direct computation")
    );
}

/// A code verifier: code that adds passes; other code fails the example `add(2, 3)`.
fn adds() -> Verifier {
    Verifier::with_feedback(|_, code: &str| {
        let passed = code.contains("a + b");
        let issue = (!passed).then(|| Issue::FailedExample {
            example: Some("add(2, 3)".into()),
            expected: Some("5".into()),
            actual: Some("-1".into()),
            message: "assertion failed".into(),
        });
        async move {
            Verification {
                score: if passed { 1.0 } else { 0.5 },
                feedback: Some(Feedback {
                    compiled: true,
                    issue,
                }),
            }
        }
    })
}

#[tokio::test]
async fn with_a_verifier_only_code_that_passes_counts_as_verified() {
    let client = model(Script {
        agents: ["a - b", "a + b", "unused"],
        verdict: always("CORRECT"),
        improve: |_| panic!("one solution is verified"),
    });
    let config = MarsConfig {
        verifier: Some(adds()),
        ..MarsConfig::default()
    };
    let outcome = run(&client, config, Some(256)).await;
    // The model calls both CORRECT; only "a + b" passes its check.
    assert_eq!(outcome.answer, "a + b");
    assert_usage(&outcome, &client, 2 + 2);
    assert_eq!(note_of(&outcome, "code check of agent 0"), "score 0.5");
    assert!(note_of(&outcome, "selection").contains("1 of 2 solutions verified"));
}

#[tokio::test]
async fn the_checks_feedback_reaches_the_improvement_prompt() {
    let client = model(Script {
        agents: ["a - b", "b - a", "unused"],
        verdict: always("CORRECT"),
        improve: |_| "a + b".to_owned(),
    });
    let config = MarsConfig {
        verifier: Some(adds()),
        ..MarsConfig::default()
    };
    let outcome = run(&client, config, Some(256)).await;
    // 2 agents, 1 verification each; round 1: 2 improvements, 1 verification each.
    assert_usage(&outcome, &client, 2 + 2 + 2 + 2);
    assert_eq!(outcome.answer, "a + b");
    let improvement = client
        .requests()
        .into_iter()
        .find(|r| r.last_user_message().unwrap().starts_with("Improve"))
        .unwrap();
    let prompt = improvement.last_user_message().unwrap().to_owned();
    assert!(prompt.contains("Running the code showed:"), "{prompt}");
    assert!(prompt.contains("`add(2, 3)` should be `5`, but the code returned `-1`"));
    // Both verdicts (the model's and the check's) are in the trace.
    assert_eq!(stages(&outcome, "code check of agent 0").len(), 2);
}

#[tokio::test]
async fn a_failed_verification_is_incomplete_under_drop_and_an_error_under_fail() {
    let client = ScriptedClient::from_fn(|_, request| {
        if request.system.as_deref() == Some(prompts::VERIFIER_SYSTEM) {
            Turn::error("verifier down")
        } else {
            Turn::text("answer").with_usage(tokens(10, 5))
        }
    });
    let config = MarsConfig {
        on_failure: FailurePolicy::Drop,
        max_rounds: 0,
        ..plain()
    };
    let outcome = run(&client, config, None).await;
    // No verdict: all INCOMPLETE, and the three equal answers agree.
    assert_eq!(outcome.answer, "answer");
    assert!(
        note_of(&outcome, "verify agent 0, attempt 1, by agent 2")
            .starts_with("INCOMPLETE: the call failed")
    );
    // Failed calls are counted, with unknown tokens.
    assert_eq!(outcome.usage.model_calls as usize, client.requests().len());
    let err = Mars::new(&client, plain())
        .unwrap()
        .run(ask(None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StrategyCall { .. }), "{err}");
}

#[test]
fn invalid_configurations_are_refused() {
    let client = ScriptedClient::new([]);
    for (config, field) in [
        (
            MarsConfig {
                agents: 0,
                ..MarsConfig::default()
            },
            "agents",
        ),
        (
            MarsConfig {
                passes_required: 4,
                ..MarsConfig::default()
            },
            "passes_required",
        ),
        (
            MarsConfig {
                agent_temperatures: vec![],
                ..MarsConfig::default()
            },
            "agent_temperatures",
        ),
        (
            MarsConfig {
                verifier_temperature: -1.0,
                ..MarsConfig::default()
            },
            "verifier_temperature",
        ),
    ] {
        match Mars::new(&client, config) {
            Err(Error::InvalidConfig { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn verdicts_are_read_from_the_assessment_line_not_from_echoed_templates() {
    let cases = [
        (
            "- Overall assessment (CORRECT/INCORRECT/INCOMPLETE): INCORRECT",
            Assessment::Incorrect,
            true,
        ),
        (
            "Overall assessment (CORRECT/INCORRECT/INCOMPLETE)\nThe code is CORRECT.",
            Assessment::Correct,
            true,
        ),
        (
            "Verdict: correct. It is not incorrect anywhere.",
            Assessment::Incomplete,
            false,
        ),
        (
            "**Overall assessment:** **INCOMPLETE**",
            Assessment::Incomplete,
            true,
        ),
        ("The solution is correct.", Assessment::Incomplete, false),
        ("", Assessment::Incomplete, false),
    ];
    for (reply, assessment, parsed) in cases {
        let verdict = parse_verdict(reply);
        assert_eq!(
            (verdict.assessment, verdict.parsed),
            (assessment, parsed),
            "{reply:?}"
        );
    }
    let confidence = |text: &str| parse_verdict(text).confidence;
    assert_eq!(confidence("Confidence level (1-10): 8/10"), Some(8));
    assert_eq!(confidence("confidence: 9 out of 10"), Some(9));
    assert_eq!(confidence("Confidence: 10"), Some(10));
    assert_eq!(confidence("Confidence level (1-10):"), None);
    assert_eq!(confidence("Confidence: 42"), None);
    assert_eq!(confidence("no number here"), None);
}
