use super::*;
use crate::Error;
use crate::backends::scripted::{ScriptedClient, Turn};
use crate::client::{FinishReason, SamplingOptions};
use crate::strategies::test_support::{conversation, options, usage};

fn ex(question: &str, answer: &str) -> Example {
    Example {
        question: question.into(),
        answer: answer.into(),
    }
}

#[test]
fn examples_are_parsed_from_tags_arrays_or_nothing() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            r#"<output>[{"question": "1+1", "answer": "2"}]</output>"#,
            &[("1+1", "2")],
        ),
        // Fenced JSON inside the tags, numbers as answers, the other key names.
        (
            "Sure.\n<OUTPUT>\n```json\n[{\"question\": \"2*3\", \"answer\": 6},\n {\"input\": \"f(0)\", \"output\": true}]\n```\n</OUTPUT>",
            &[("2*3", "6"), ("f(0)", "true")],
        ),
        // Unclosed tag: the section runs to the end.
        (
            r#"<output>[{"question": "q", "answer": "a"}]"#,
            &[("q", "a")],
        ),
        // No tags: the first JSON array that holds examples.
        (
            "Indices [1, 2] aside, here: [{\"question\": \"q\", \"answer\": \"a\"}] done",
            &[("q", "a")],
        ),
        // Tags without an array: the array elsewhere in the reply.
        (
            "[{\"question\": \"q\", \"answer\": \"a\"}]\n<output>none</output>",
            &[("q", "a")],
        ),
        // Entries without both fields, or with a blank question, are skipped.
        (
            r#"<output>[{"question": "q"}, {"answer": "a"}, {"question": " ", "answer": "a"}, {"question": "ok", "answer": "b"}, 3]</output>"#,
            &[("ok", "b")],
        ),
        // Arrays and objects as compact JSON; null is missing.
        (
            r#"<output>[{"input": [1, 2, 3], "output": 6}, {"input": {"a": 1}, "output": [true]}, {"question": "q", "answer": null}]</output>"#,
            &[("[1,2,3]", "6"), ("{\"a\":1}", "[true]")],
        ),
        ("<output>[]</output>", &[]),
        ("The query has no examples.", &[]),
        ("<output>[{\"question\": \"q\", \"answer\":</output>", &[]),
        ("", &[]),
    ];
    for &(reply, expected) in cases {
        let expected: Vec<Example> = expected.iter().map(|&(q, a)| ex(q, a)).collect();
        assert_eq!(parse_examples(reply), expected, "{reply:?}");
    }
}

#[test]
fn final_answers_are_compared_as_normalised_words() {
    let cases: &[(&str, &str, bool)] = &[
        ("reasoning...\n<output>12</output>", "12", false),
        ("<output> Twelve. </output>", "twelve", false),
        ("<output>The answer is 12</output>", "12", false),
        ("<output>`[1, 2]`</output>", "[1, 2]", false),
        (
            "first <output>3</output> then <output>12</output>",
            "12",
            false,
        ),
        ("no tags\n\nSo the result is 12.\n", "12", false),
        // Overlapping occurrences: the second "1 1" is a whole word.
        ("<output>-1 1 1</output>", "1 1", false),
        ("<output>1 1-1</output>", "1 1", false),
        ("<output>-1 1-1</output>", "1 1", true),
        ("<output>112</output>", "12", true),
        ("<output>-12</output>", "12", true),
        ("<output>12.5</output>", "12", true),
        ("<output>13</output>", "12", true),
        ("<output></output>", "12", true),
        ("", "12", true),
        // Nothing to compare with: not a mistake.
        ("<output>anything</output>", "  ", false),
    ];
    for &(reply, expected, mistake) in cases {
        assert_eq!(
            is_mistake(reply, expected),
            mistake,
            "{reply:?} vs {expected:?}"
        );
    }
    assert_eq!(final_answer("a\n b \n\n"), "b");
    assert_eq!(output_section("x <Output>y</output> z"), Some("y"));
    assert_eq!(output_section("no tag"), None);
}

#[test]
fn invalid_configs_are_rejected() {
    let cases: Vec<(LeapConfig, &str)> = vec![
        (
            LeapConfig {
                max_examples: 0,
                ..LeapConfig::default()
            },
            "max_examples",
        ),
        (
            LeapConfig {
                max_principles: 0,
                ..LeapConfig::default()
            },
            "max_principles",
        ),
        (
            LeapConfig {
                example_temperature: f32::NAN,
                ..LeapConfig::default()
            },
            "example_temperature",
        ),
        (
            LeapConfig {
                examples: vec![ex("q", "a"), ex(" ", "a")],
                ..LeapConfig::default()
            },
            "examples",
        ),
    ];
    for (config, expected_field) in cases {
        match Leap::new((), config).unwrap_err() {
            Error::InvalidConfig { field, .. } => assert_eq!(field, expected_field),
            other => panic!("{other:?}"),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Stage {
    Extract,
    Example,
    Principle,
    HighLevel,
    Final,
}

fn stage(request: &ChatRequest) -> Stage {
    let prompt = request.last_user_message().unwrap_or_default();
    if prompt.contains("Below is a query") {
        Stage::Extract
    } else if prompt.contains("Think step by step, then give your final answer") {
        Stage::Example
    } else if prompt.contains("That answer is wrong") {
        Stage::Principle
    } else if prompt.contains("Condense them") {
        Stage::HighLevel
    } else {
        Stage::Final
    }
}

/// A model that answers `What is a + b?` examples with a * b (right only for 2 + 2), learns
/// `principle <n>` from the mistake on `... + n?`, and condenses with `high_level`.
fn reply(request: &ChatRequest, high_level: &str) -> Turn {
    let prompt = request.last_user_message().unwrap_or_default();
    match stage(request) {
        Stage::Extract => Turn::text(
            r#"<output>[{"question": "What is 2 + 2?", "answer": "4"}, {"question": "What is 2 + 3?", "answer": "5"}]</output>"#,
        ),
        Stage::Example => {
            let numbers: Vec<u32> = prompt
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Turn::text(format!(
                "Multiplying. <output>{}</output>",
                numbers[0] * numbers[1]
            ))
        }
        Stage::Principle => {
            let n = prompt
                .split(" + ")
                .nth(1)
                .and_then(|r| r.get(..1))
                .unwrap_or("?");
            Turn::text(format!("Added wrongly. <output>principle {n}</output>"))
        }
        Stage::HighLevel => Turn::text(high_level),
        Stage::Final => Turn::text("the answer"),
    }
}

fn model(high_level: &'static str) -> ScriptedClient {
    ScriptedClient::from_fn(move |_, request| reply(request, high_level))
}

fn request() -> ChatRequest {
    conversation("Be brief.", "What is 7 + 8?", options(0.1, 3, 64))
}

fn stages(outcome: &Outcome) -> Vec<&str> {
    outcome.steps.iter().map(|s| s.stage.as_str()).collect()
}

#[tokio::test]
async fn given_examples_without_mistakes_need_no_principles() {
    let config = LeapConfig {
        examples: vec![ex("What is 2 + 2?", "4"), ex("What is 1 + 1?", "1")],
        ..LeapConfig::default()
    };
    let client = ScriptedClient::from_fn(|i, request| {
        reply(request, "unused").with_usage(usage(10 + i as u64, 1 + i as u64))
    });
    let strategy = Leap::new(client, config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let requests = strategy.inner().requests();
    let kinds: Vec<Stage> = requests.iter().map(stage).collect();
    assert_eq!(
        kinds,
        [Stage::Example, Stage::Example, Stage::Final],
        "no extraction call"
    );
    for (i, sent) in requests[..2].iter().enumerate() {
        assert_eq!(sent.system.as_deref(), Some("Be brief."));
        assert_eq!(sent.messages[..2], request().messages[..2]);
        // The request's temperature wins over the configured example temperature.
        assert_eq!(sent.options.temperature, Some(0.1));
        assert_eq!(sent.options.max_tokens, Some(64));
        assert_eq!(sent.options.seed, Some(derive_seeds(3, 2)[i]));
    }
    assert!(
        requests[1]
            .last_user_message()
            .unwrap()
            .starts_with("What is 1 + 1?")
    );
    assert_eq!(
        requests[2],
        request(),
        "the final call is the caller's request, untouched"
    );
    assert_eq!(stages(&outcome), ["example 0", "example 1", "principles"]);
    assert_eq!(
        outcome.steps[2].note.as_deref(),
        Some("no mistakes on the 2 examples: answered without principles")
    );
    assert_eq!(outcome.answer, "the answer");
    assert_eq!(outcome.candidates.len(), 1);
    assert_eq!(outcome.usage.model_calls, 3);
    // The skipped `principles` step costs nothing and keeps the sums known.
    assert_eq!(outcome.steps[2].usage.model_calls, 0);
    assert_eq!(outcome.usage.prompt_tokens, Some(10 + 11 + 12));
    assert_eq!(outcome.usage.completion_tokens, Some(1 + 2 + 3));
}

#[tokio::test]
async fn mistakes_teach_principles_that_reach_the_final_system_prompt() {
    let strategy = Leap::new(
        model("1. Add, do not multiply.\n2. Check."),
        LeapConfig::default(),
    )
    .unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let requests = strategy.inner().requests();
    let kinds: Vec<Stage> = requests.iter().map(stage).collect();
    assert_eq!(
        kinds,
        [
            Stage::Extract,
            Stage::Example,
            Stage::Example,
            Stage::Principle,
            Stage::HighLevel,
            Stage::Final
        ]
    );
    assert!(
        requests[0]
            .last_user_message()
            .unwrap()
            .contains("What is 7 + 8?")
    );
    // Only the mistake (2 + 3 answered 6) gets a principle call, with the reply and the answer.
    let principle = requests[3].last_user_message().unwrap();
    assert!(principle.contains("What is 2 + 3?") && principle.contains("<output>6</output>"));
    assert!(principle.contains("the correct answer is:\n5"));
    assert!(
        requests[4]
            .last_user_message()
            .unwrap()
            .contains("1. principle 3")
    );
    let system = requests[5].system.as_deref().unwrap();
    assert!(system.starts_with("Be brief.\n\n"), "{system}");
    assert!(
        system.ends_with("1. Add, do not multiply.\n2. Check."),
        "{system}"
    );
    assert_eq!(requests[5].messages, request().messages);
    assert_eq!(requests[5].options, request().options);
    assert_eq!(
        stages(&outcome),
        [
            "extract examples",
            "example 0",
            "example 1",
            "principle from example 1",
            "high-level principles"
        ]
    );
    assert_eq!(outcome.steps[0].note.as_deref(), Some("2 examples found"));
    assert_eq!(
        outcome.steps[2].note.as_deref(),
        Some("mistake: expected \"5\", answered \"6\"")
    );
    assert_eq!(outcome.usage.model_calls, 1 + 2 + 1 + 1 + 1);
}

#[tokio::test]
async fn usage_sums_every_call() {
    let client = ScriptedClient::from_fn(|_, request| {
        reply(request, "1. p").with_usage(crate::client::Usage {
            prompt_tokens: Some(20),
            completion_tokens: Some(5),
            model_calls: 1,
            ..crate::client::Usage::default()
        })
    });
    let strategy = Leap::new(client, LeapConfig::default()).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let calls = strategy.inner().requests().len();
    assert_eq!(calls, 6);
    assert_eq!(outcome.usage.model_calls, calls as u32);
    assert_eq!(outcome.usage.prompt_tokens, Some(20 * calls as u64));
    assert_eq!(outcome.usage.completion_tokens, Some(5 * calls as u64));
}

#[tokio::test]
async fn junk_extraction_answers_without_principles() {
    let client = ScriptedClient::from_fn(|_, request| match stage(request) {
        Stage::Extract => Turn::text("I could not find any."),
        _ => Turn::text("the answer"),
    });
    let strategy = Leap::new(client, LeapConfig::default()).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    assert_eq!(strategy.inner().requests().len(), 2);
    assert_eq!(stages(&outcome), ["extract examples", "principles"]);
    assert_eq!(outcome.steps[0].note.as_deref(), Some("no examples found"));
    assert!(
        outcome.steps[1]
            .note
            .as_deref()
            .unwrap()
            .starts_with("no examples")
    );
    assert_eq!(outcome.steps[1].usage.model_calls, 0);
    assert_eq!(outcome.usage.model_calls, 2);
    assert_eq!(strategy.inner().requests()[1], request());
}

#[tokio::test]
async fn extracted_examples_and_principles_are_capped() {
    let config = LeapConfig {
        max_examples: 1,
        max_principles: 1,
        examples: Vec::new(),
        ..LeapConfig::default()
    };
    // The first extracted example (2 + 2) is right: make every answer wrong instead.
    let client = ScriptedClient::from_fn(|_, request| match stage(request) {
        Stage::Example => Turn::text("<output>0</output>"),
        _ => reply(request, "- one\n- two"),
    });
    let strategy = Leap::new(client, config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    assert_eq!(
        outcome.steps[0].note.as_deref(),
        Some("2 examples found, the first 1 kept")
    );
    assert_eq!(
        outcome.steps.last().unwrap().note.as_deref(),
        Some("2 principles listed, the first 1 kept")
    );
    let system = strategy.inner().requests().pop().unwrap().system.unwrap();
    assert!(system.ends_with("similar questions:\n1. one"), "{system}");
}

#[tokio::test]
async fn a_high_level_reply_without_a_list_is_used_whole() {
    let strategy = Leap::new(model("  Always add.  "), LeapConfig::default()).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let last_step = outcome.steps.last().unwrap();
    assert_eq!(
        last_step.note.as_deref(),
        Some("no list found: the whole reply is used as one principle")
    );
    let system = strategy.inner().requests().pop().unwrap().system.unwrap();
    assert!(
        system.ends_with("similar questions:\n1. Always add."),
        "{system}"
    );
}

#[tokio::test]
async fn a_failed_call_is_an_error_naming_its_stage() {
    for (failing, expected) in [
        (Stage::Extract, "extract examples"),
        (Stage::Example, "example 1"),
        (Stage::Principle, "principle from example 1"),
        (Stage::HighLevel, "high-level principles"),
        (Stage::Final, "final answer"),
    ] {
        let client = ScriptedClient::from_fn(move |_, request| {
            let is_example_0 = request
                .last_user_message()
                .is_some_and(|p| p.starts_with("What is 2 + 2?"));
            if stage(request) == failing && !(failing == Stage::Example && is_example_0) {
                Turn::error("boom")
            } else {
                reply(request, "1. p")
            }
        });
        let strategy = Leap::new(client, LeapConfig::default()).unwrap();
        match strategy.run(request()).await.unwrap_err() {
            Error::StrategyCall { strategy, call, .. } => {
                assert_eq!((strategy, call.as_str()), ("leap", expected));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn an_example_cut_off_before_its_output_is_unfinished_not_a_mistake() {
    // Example 2 + 3 is answered wrongly but cut off before its `<output>`; 2 + 4 is a real
    // mistake, and a cut-off reply that did give its `<output>` is judged as usual.
    let config = LeapConfig {
        examples: vec![
            ex("What is 2 + 3?", "5"),
            ex("What is 2 + 4?", "6"),
            ex("What is 2 + 2?", "4"),
        ],
        ..LeapConfig::default()
    };
    let client = ScriptedClient::from_fn(|_, request| {
        let prompt = request.last_user_message().unwrap_or_default();
        match stage(request) {
            Stage::Example if prompt.starts_with("What is 2 + 3?") => {
                Turn::text("Multiplying 2 by 3 gives 6, so")
                    .with_finish_reason(FinishReason::Length)
            }
            Stage::Example if prompt.starts_with("What is 2 + 2?") => {
                Turn::text("<output>4").with_finish_reason(FinishReason::Length)
            }
            _ => reply(request, "1. Add."),
        }
    });
    let strategy = Leap::new(client, config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    let requests = strategy.inner().requests();
    let principles: Vec<&str> = requests
        .iter()
        .filter(|r| stage(r) == Stage::Principle)
        .map(|r| r.last_user_message().unwrap())
        .collect();
    assert_eq!(principles.len(), 1, "only the real mistake teaches");
    assert!(principles[0].contains("What is 2 + 4?"));
    assert_eq!(
        stages(&outcome),
        [
            "example 0",
            "example 1",
            "example 2",
            "principle from example 1",
            "high-level principles"
        ]
    );
    let note = outcome.steps[0].note.as_deref().unwrap();
    assert!(
        note.starts_with("unfinished: cut off at the token limit"),
        "{note}"
    );
    assert!(note.contains("no principle learned"), "{note}");
    assert_eq!(outcome.steps[0].finish_reason, Some(FinishReason::Length));
    assert!(
        outcome.steps[1]
            .note
            .as_deref()
            .unwrap()
            .starts_with("mistake")
    );
    assert!(
        outcome.steps[2]
            .note
            .as_deref()
            .unwrap()
            .starts_with("right")
    );

    // With no other mistake, nothing is learned and the skipped step says why.
    let config = LeapConfig {
        examples: vec![ex("What is 2 + 3?", "5")],
        ..LeapConfig::default()
    };
    let client = ScriptedClient::from_fn(|_, request| match stage(request) {
        Stage::Example => Turn::text("2 + 3 is").with_finish_reason(FinishReason::Length),
        _ => Turn::text("the answer"),
    });
    let strategy = Leap::new(client, config).unwrap();
    let outcome = strategy.run(request()).await.unwrap();
    assert_eq!(strategy.inner().requests().len(), 2);
    assert_eq!(stages(&outcome), ["example 0", "principles"]);
    assert_eq!(
        outcome.steps[1].note.as_deref(),
        Some("no mistakes on the 1 examples (1 unfinished): answered without principles")
    );
}

#[tokio::test]
async fn a_request_without_a_seed_gets_seeded_step_calls() {
    let config = LeapConfig {
        base_seed: 42,
        ..LeapConfig::default()
    };
    let strategy = Leap::new(model("1. p"), config).unwrap();
    let mut unseeded = request();
    unseeded.options.seed = None;
    let outcome = strategy.run(unseeded.clone()).await.unwrap();
    let requests = strategy.inner().requests();
    let kinds: Vec<Stage> = requests.iter().map(stage).collect();
    assert_eq!(
        kinds,
        [
            Stage::Extract,
            Stage::Example,
            Stage::Example,
            Stage::Principle,
            Stage::HighLevel,
            Stage::Final
        ]
    );
    let example_seeds = derive_seeds(42, 2);
    let mut examples = 0;
    for sent in &requests {
        let expected = if stage(sent) == Stage::Example {
            examples += 1;
            example_seeds[examples - 1]
        } else {
            42
        };
        assert_eq!(sent.options.seed, Some(expected), "{:?}", stage(sent));
        assert_eq!(sent.options.max_tokens, Some(64), "other options kept");
    }
    let seeded = SamplingOptions {
        seed: Some(42),
        ..unseeded.options
    };
    assert_eq!(requests[5].options, seeded);
    assert_eq!(
        outcome.candidates[0].options, seeded,
        "records what was sent"
    );
}
