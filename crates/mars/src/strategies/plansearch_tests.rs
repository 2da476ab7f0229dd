use super::super::selection::{JudgeConfig, Verifier};
use super::super::{Score, Step};
use super::*;
use crate::Error;
use crate::backends::scripted::{ScriptedClient, Turn};
use crate::client::{Message, Role, Usage};
use crate::strategies::sampling::derive_seeds;
use crate::strategies::test_support::{conversation, options};

#[test]
fn lists_are_parsed_from_numbered_and_bulleted_replies() {
    let cases: &[(&str, &[&str])] = &[
        ("1. a\n2. b\n3. c", &["a", "b", "c"]),
        ("1) a\n2) b", &["a", "b"]),
        ("- a\n* b\n• c", &["a", "b", "c"]),
        ("Here are my observations:\n\n1. a\n2. b", &["a", "b"]),
        // Wrapped text continues the item; a conclusion after a blank line does not.
        (
            "1. first\ncontinued\n2. second\n\nThese should help.",
            &["first continued", "second"],
        ),
        // Indented explanations and nested bullets belong to their item.
        (
            "1. **Sort**\n\n   Sorting groups equal values.\n   - nested\n2. Hash",
            &["**Sort** Sorting groups equal values. - nested", "Hash"],
        ),
        (
            "**1.** bold number\n**2.** again",
            &["bold number", "again"],
        ),
        ("1: colon\n2: too", &["colon", "too"]),
        // An empty marker takes the next line as its text.
        ("1.\nlate text\n2. b", &["late text", "b"]),
        // Not lists: prose, decimals, times, horizontal rules, emphasis.
        ("", &[]),
        ("Just a paragraph.\nAnother line.", &[]),
        ("3.14 is pi\n10:30 meeting", &[]),
        ("---\n**Bold header**", &[]),
        ("* * *\n- -", &[]),
        ("1234. too many digits", &[]),
    ];
    for &(text, expected) in cases {
        assert_eq!(parse_list(text), expected, "{text:?}");
    }
}

#[test]
fn plan_subsets_take_one_observation_and_every_derived_one() {
    // (initial, derived, plans) and the subsets expected.
    type Case = ((usize, usize, usize), &'static [&'static [usize]]);
    let cases: &[Case] = &[
        ((3, 2, 3), &[&[0, 3, 4], &[1, 3, 4], &[2, 3, 4]]),
        // More plans than observations: cycle through the combined list.
        ((1, 1, 3), &[&[0, 1], &[1], &[0, 1]]),
        ((2, 0, 3), &[&[0], &[1], &[0]]),
        ((0, 0, 2), &[&[], &[]]),
        ((3, 2, 1), &[&[0, 3, 4]]),
    ];
    for &((initial, derived, plans), expected) in cases {
        assert_eq!(plan_subsets(initial, derived, plans), expected);
    }
}

#[test]
fn prompts_carry_what_each_stage_needs() {
    let obs = observations_prompt("Q?", 4);
    assert!(obs.contains("Q?") && obs.contains("write 4 useful"));
    let derived = derived_prompt("Q?", &["x".into(), "y".into()], 2);
    assert!(derived.contains("1. x\n2. y") && derived.contains("write 2 new"));
    assert!(plan_prompt("Q?", &["x"]).contains("Useful observations:\n1. x"));
    let bare = plan_prompt("Q?", &[]);
    assert!(!bare.contains("observations") && bare.contains("Describe step by step"));
    assert!(code_prompt("Q?", "  do it \n").starts_with("Q?\n\nFollow this plan:\n\ndo it\n\n"));
}

#[test]
fn invalid_configs_are_rejected() {
    let cases: Vec<(PlanSearchConfig, &str)> = vec![
        (
            PlanSearchConfig {
                observations: 0,
                ..PlanSearchConfig::default()
            },
            "observations",
        ),
        (
            PlanSearchConfig {
                derived: 0,
                ..PlanSearchConfig::default()
            },
            "derived",
        ),
        (
            PlanSearchConfig {
                plans: 0,
                ..PlanSearchConfig::default()
            },
            "plans",
        ),
        (
            PlanSearchConfig {
                selector: Selector::Judge(JudgeConfig {
                    max_tokens: 0,
                    ..JudgeConfig::default()
                }),
                ..PlanSearchConfig::default()
            },
            "selector.max_tokens",
        ),
        (
            PlanSearchConfig {
                selector: Selector::Judge(JudgeConfig {
                    instruction: "  ".into(),
                    ..JudgeConfig::default()
                }),
                ..PlanSearchConfig::default()
            },
            "selector.instruction",
        ),
        (
            PlanSearchConfig {
                selector: Selector::Judge(JudgeConfig {
                    temperature: -0.5,
                    ..JudgeConfig::default()
                }),
                ..PlanSearchConfig::default()
            },
            "selector.temperature",
        ),
    ];
    for (config, expected_field) in cases {
        match PlanSearch::new((), config).unwrap_err() {
            Error::InvalidConfig { field, .. } => assert_eq!(field, expected_field),
            other => panic!("{other:?}"),
        }
    }
}

/// What each stage is asked, told apart by its prompt.
#[derive(Debug, PartialEq)]
enum Stage {
    Observations,
    Derived,
    Plan,
    Code,
    Judge,
}

fn stage(request: &ChatRequest) -> Stage {
    let prompt = request.last_user_message().unwrap_or_default();
    if prompt.contains("Rate the above response") {
        Stage::Judge
    } else if prompt.contains("Follow this plan") {
        Stage::Code
    } else if prompt.contains("Write no code") {
        Stage::Plan
    } else if prompt.contains("new observations") {
        Stage::Derived
    } else {
        Stage::Observations
    }
}

/// The letter of the observation (`obs A`...) or plan (`plan-A`...) a prompt mentions.
fn letter(prompt: &str, prefix: &str) -> char {
    ['A', 'B', 'C']
        .into_iter()
        .find(|l| prompt.contains(&format!("{prefix}{l}")))
        .unwrap_or('?')
}

/// The reply of a model whose plan for observation X is `plan-X` and whose code for it is
/// `code X`; the judge rates code X with `ratings(X)`.
fn reply(request: &ChatRequest, ratings: fn(char) -> &'static str) -> Turn {
    let prompt = request.last_user_message().unwrap_or_default();
    match stage(request) {
        Stage::Observations => Turn::text("Observations:\n1. obs A\n2. obs B\n3. obs C\n4. obs D"),
        Stage::Derived => Turn::text("- der X\n- der Y"),
        Stage::Plan => Turn::text(format!("plan-{}", letter(prompt, "obs "))),
        Stage::Code => Turn::text(format!("code {}", letter(prompt, "plan-"))),
        Stage::Judge => {
            let candidate = &request.messages[request.messages.len() - 2].content;
            Turn::text(ratings(letter(candidate, "code ")))
        }
    }
}

fn model(ratings: fn(char) -> &'static str) -> ScriptedClient {
    ScriptedClient::from_fn(move |_, request| reply(request, ratings))
}

fn request() -> ChatRequest {
    conversation("Use Rust.", "Find duplicates.", options(0.3, 7, 200))
}

#[tokio::test]
async fn each_stage_is_asked_with_what_came_before() {
    let strategy = PlanSearch::new(model(|_| "5"), PlanSearchConfig::default()).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let requests = strategy.inner().requests();
    assert_eq!(requests.len(), 2 + 3 + 3 + 3);
    for sent in &requests {
        assert_eq!(
            sent.system.as_deref(),
            Some("Use Rust."),
            "system prompt kept"
        );
        assert_eq!(
            sent.messages[..2],
            request().messages[..2],
            "earlier turns kept"
        );
        assert!(sent.messages[2].content.contains("Find duplicates."));
    }
    let by_stage =
        |s: Stage| -> Vec<&ChatRequest> { requests.iter().filter(|r| stage(r) == s).collect() };
    // Only the three kept observations reach the derived call; obs D was cut.
    let derived = by_stage(Stage::Derived)[0].last_user_message().unwrap();
    assert!(derived.contains("1. obs A\n2. obs B\n3. obs C") && !derived.contains("obs D"));
    assert_eq!(
        outcome.steps[0].note.as_deref(),
        Some("4 observations listed, the first 3 kept")
    );
    assert_eq!(outcome.steps[1].note, None);
    // Plan i sees observation i and both derived ones, not the other observations.
    let seeds = strategy.config().plan_options(&request().options);
    for (i, plan) in by_stage(Stage::Plan).into_iter().enumerate() {
        let prompt = plan.last_user_message().unwrap();
        let own = ['A', 'B', 'C'][i];
        assert!(
            prompt.contains(&format!("1. obs {own}\n2. der X\n3. der Y")),
            "{prompt}"
        );
        assert_eq!(prompt.matches("obs ").count(), 1, "{prompt}");
        assert_eq!(plan.options, seeds[i]);
    }
    assert!(
        seeds
            .iter()
            .all(|o| o.temperature == Some(0.3) && o.max_tokens == Some(200))
    );
    // The code call of plan i contains that plan; its candidate records the call's options.
    for (i, code) in by_stage(Stage::Code).into_iter().enumerate() {
        let own = ['A', 'B', 'C'][i];
        assert!(
            code.last_user_message()
                .unwrap()
                .contains(&format!("plan-{own}"))
        );
        assert_eq!(outcome.candidates[i].text, format!("code {own}"));
        assert_eq!(outcome.candidates[i].options, code.options);
    }
    let stages: Vec<&str> = outcome.steps.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "observations",
            "derived observations",
            "plan 0",
            "plan 1",
            "plan 2"
        ]
    );
    assert_eq!(outcome.steps[3].text, "plan-B");
}

#[tokio::test]
async fn the_judge_picks_the_best_rated_program() {
    let ratings = |l: char| match l {
        'A' => "Rating: 4",
        'B' => "9/10",
        _ => "no idea",
    };
    let strategy = PlanSearch::new(model(ratings), PlanSearchConfig::default()).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    assert_eq!(outcome.answer, "code B");
    assert_eq!(outcome.winner, 1);
    assert!(matches!(
        outcome.candidates[2].score,
        Score::Judge {
            rating: 0.0,
            parsed: false,
            ..
        }
    ));
    let judged: Vec<_> = strategy
        .inner()
        .requests()
        .into_iter()
        .filter(|r| stage(r) == Stage::Judge)
        .collect();
    assert_eq!(judged.len(), 3);
    assert_eq!(judged[0].system.as_deref(), Some("Use Rust."));
    assert_eq!(outcome.usage.model_calls, 2 + 2 * 3 + 3);
}

#[tokio::test]
async fn a_verifier_selects_without_judge_calls() {
    let verifier = Verifier::new(|_request: &ChatRequest, candidate: &str| {
        let score = if candidate.ends_with('C') { 1.0 } else { 0.0 };
        async move { score }
    });
    let config = PlanSearchConfig {
        selector: Selector::Verifier(verifier),
        ..PlanSearchConfig::default()
    };
    let strategy = PlanSearch::new(model(|_| unreachable!()), config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    assert_eq!(outcome.answer, "code C");
    assert!(matches!(
        outcome.candidates[0].score,
        Score::Verifier { score: Some(0.0) }
    ));
    assert_eq!(outcome.usage.model_calls, 2 + 2 * 3);
    assert!(
        strategy
            .inner()
            .requests()
            .iter()
            .all(|r| stage(r) != Stage::Judge)
    );
}

/// A model whose code call for plan B fails.
fn model_failing_code_b() -> ScriptedClient {
    ScriptedClient::from_fn(|_, request| {
        let prompt = request.last_user_message().unwrap_or_default();
        if stage(request) == Stage::Code && prompt.contains("plan-B") {
            return Turn::error("out of memory");
        }
        reply(request, |l| if l == 'A' { "3" } else { "6" })
    })
}

#[tokio::test]
async fn a_failed_program_is_dropped_or_named() {
    let config = PlanSearchConfig {
        on_failure: FailurePolicy::Drop,
        ..PlanSearchConfig::default()
    };
    let strategy = PlanSearch::new(model_failing_code_b(), config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    assert_eq!(outcome.answer, "code C", "selected among the survivors");
    let failure = outcome.candidates[1].dropped.as_ref().unwrap();
    assert_eq!(failure.call, "code for plan 1");
    assert!(failure.error.contains("out of memory"));
    // No judge call for the dropped program; the failed call still counts.
    assert_eq!(outcome.usage.model_calls, 2 + 3 + 3 + 2);
    assert_eq!(outcome.usage.prompt_tokens, None);

    let strategy = PlanSearch::new(model_failing_code_b(), PlanSearchConfig::default()).unwrap();
    match strategy.run(request()).await.unwrap_err() {
        Error::StrategyCall { strategy, call, .. } => {
            assert_eq!((strategy, call.as_str()), ("plansearch", "code for plan 1"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn failed_observation_and_plan_calls_are_errors_naming_them() {
    for (failing, expected) in [
        (Stage::Observations, "observations"),
        (Stage::Derived, "derived observations"),
        (Stage::Plan, "plan 2"),
    ] {
        let client = ScriptedClient::from_fn(move |_, request| {
            let prompt = request.last_user_message().unwrap_or_default();
            let is_failing =
                stage(request) == failing && (failing != Stage::Plan || prompt.contains("obs C"));
            if is_failing {
                Turn::error("boom")
            } else {
                Turn::text("1. obs A\n2. obs B\n3. obs C")
            }
        });
        let config = PlanSearchConfig {
            on_failure: FailurePolicy::Drop,
            ..PlanSearchConfig::default()
        };
        let strategy = PlanSearch::new(client, config).unwrap();
        match strategy.run(request()).await.unwrap_err() {
            Error::StrategyCall { call, .. } => assert_eq!(call, expected),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_reply_without_a_list_is_used_whole_and_noted() {
    let client = ScriptedClient::from_fn(|_, request| match stage(request) {
        Stage::Observations => Turn::text("  Use a hash set.  "),
        Stage::Derived => Turn::text(""),
        Stage::Plan => Turn::text("a plan"),
        Stage::Code => Turn::text("code"),
        Stage::Judge => Turn::text("5"),
    });
    let config = PlanSearchConfig {
        plans: 2,
        ..PlanSearchConfig::default()
    };
    let strategy = PlanSearch::new(client, config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let notes: Vec<_> = outcome
        .steps
        .iter()
        .map(|s: &Step| s.note.as_deref())
        .collect();
    assert_eq!(
        notes[..2],
        [
            Some("no list found: the whole reply is used as one observation"),
            Some("the reply was blank: no derived observations"),
        ]
    );
    // Both plans are built on the one observation there is.
    let plans: Vec<_> = strategy
        .inner()
        .requests()
        .into_iter()
        .filter(|r| stage(r) == Stage::Plan)
        .collect();
    assert_eq!(plans.len(), 2);
    for plan in plans {
        assert!(
            plan.last_user_message()
                .unwrap()
                .contains("1. Use a hash set.\n\n")
        );
    }
}

#[tokio::test]
async fn usage_sums_every_call() {
    let client = ScriptedClient::from_fn(|_, request| {
        let reply = match stage(request) {
            Stage::Observations => "1. obs A",
            Stage::Derived => "1. der X",
            Stage::Plan => "plan",
            Stage::Code => "code",
            Stage::Judge => "7",
        };
        Turn::text(reply).with_usage(Usage {
            prompt_tokens: Some(10),
            completion_tokens: Some(3),
            model_calls: 1,
            ..Usage::default()
        })
    });
    let config = PlanSearchConfig {
        plans: 2,
        ..PlanSearchConfig::default()
    };
    let strategy = PlanSearch::new(client, config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let calls = 2 + 2 * 2 + 2;
    assert_eq!(strategy.inner().requests().len(), calls);
    assert_eq!(outcome.usage.model_calls, calls as u32);
    assert_eq!(outcome.usage.prompt_tokens, Some(10 * calls as u64));
    assert_eq!(outcome.usage.completion_tokens, Some(3 * calls as u64));
}

#[tokio::test]
async fn a_request_without_a_user_message_is_refused() {
    let strategy = PlanSearch::new(model(|_| "1"), PlanSearchConfig::default()).unwrap();
    let request = ChatRequest {
        messages: vec![Message {
            role: Role::Assistant,
            content: "hi".into(),
        }],
        ..ChatRequest::default()
    };
    let err = strategy.run(request).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(strategy.inner().requests().is_empty());
}

#[tokio::test]
async fn a_request_without_a_seed_gets_seeded_calls() {
    let config = PlanSearchConfig {
        base_seed: 11,
        plans: 2,
        ..PlanSearchConfig::default()
    };
    let strategy = PlanSearch::new(model(|_| "5"), config).unwrap();
    let mut unseeded = request();
    unseeded.options.seed = None;
    strategy.run(unseeded.clone()).await.unwrap();
    let requests = strategy.inner().requests();
    let plan_seeds = derive_seeds(11, 2);
    let (mut plans, mut programs) = (0, 0);
    for sent in &requests {
        let expected = match stage(sent) {
            Stage::Observations | Stage::Derived | Stage::Judge => 11,
            Stage::Plan => {
                plans += 1;
                plan_seeds[plans - 1]
            }
            Stage::Code => {
                programs += 1;
                plan_seeds[programs - 1]
            }
        };
        assert_eq!(sent.options.seed, Some(expected), "{:?}", stage(sent));
    }
    let observation_calls: Vec<&ChatRequest> = requests
        .iter()
        .filter(|r| matches!(stage(r), Stage::Observations | Stage::Derived))
        .collect();
    assert_eq!(observation_calls.len(), 2);
    for sent in observation_calls {
        let seeded = SamplingOptions {
            seed: Some(11),
            ..unseeded.options.clone()
        };
        assert_eq!(sent.options, seeded, "the request's other options kept");
    }
}
