use super::*;
use crate::Error;
use crate::client::{ModelClientExt, SamplingOptions};
use crate::strategies::test_support::{self, options, positions, tokens};
use crate::{ScriptedClient, Turn};

const C1: &str = "Here you go:\n```rust\nfn add(a: i32, b: i32) -> i32 { a + b }\n```\nDone.";
const C1_SAME: &str = "```rust\nfn add(a: i32, b: i32) -> i32 {\n    // sum\n    a + b\n}\n```";
const C1_OTHER: &str = "```rust\nfn add(a: i32, b: i32) -> i32 { b + a }\n```";
const DESCRIPTION: &str = "  Write a Rust function add(a: i32, b: i32) -> i32 returning a + b.\n";
const SYNTHESIS: &str = "```rust\nfn add(a: i32, b: i32) -> i32 { a.wrapping_add(b) }\n```";

/// A conversation with a system prompt, an earlier exchange and a seeded last question.
fn conversation() -> ChatRequest {
    test_support::conversation("You write Rust.", "Write add", options(0.9, 3, 512))
}

/// The options of every call: the request's (its temperature wins over the configured 0.1).
fn expected_options() -> SamplingOptions {
    conversation().options
}

fn strategy(replies: Vec<Turn>) -> RoundTrip<ScriptedClient> {
    RoundTrip::new(ScriptedClient::new(replies), RoundTripConfig::default()).unwrap()
}

#[test]
fn code_of_a_reply_table() {
    let cases: &[(&str, &str, CodeSource)] = &[
        (
            C1,
            "fn add(a: i32, b: i32) -> i32 { a + b }",
            CodeSource::FirstBlock,
        ),
        (
            "```\n\n```\n```py\nx = 1\n```",
            "x = 1",
            CodeSource::FirstBlock,
        ),
        ("```rust\nfn cut(", "fn cut(", CodeSource::FirstBlock),
        (
            "  I cannot help with that.  ",
            "I cannot help with that.",
            CodeSource::RawText,
        ),
        ("fn bare() {}", "fn bare() {}", CodeSource::RawText),
        ("", "", CodeSource::RawText),
    ];
    for (reply, code, source) in cases {
        let extracted = round_trip_code(reply);
        assert_eq!(
            (extracted.code.as_str(), extracted.source),
            (*code, *source),
            "{reply:?}"
        );
    }
}

#[test]
fn agreement_ignores_layout_and_comments_but_not_code() {
    let c1 = round_trip_code(C1).code;
    assert!(codes_agree(&c1, &round_trip_code(C1_SAME).code));
    assert!(!codes_agree(&c1, &round_trip_code(C1_OTHER).code));
    assert!(!codes_agree("", ""), "an empty code never agrees");
    assert!(!codes_agree("// only a comment", "   "));
    assert!(codes_agree("no code at all", "no   code\nat all"));
}

#[test]
fn prompts_carry_what_the_model_needs() {
    let prompt = synthesis_prompt("Write add", "fn a() {}", "fn b() {}");
    let parts = ["Write add", "```\nfn a() {}\n```", "```\nfn b() {}\n```"];
    let positions = positions(&prompt, &parts);
    assert!(positions[0] < positions[1] && positions[1] < positions[2]);
    assert!(prompt.contains("Reply with the code only"));

    let second = second_code_request(&conversation(), "Describe");
    assert_eq!(second.system, conversation().system);
    assert_eq!(second.messages, [Message::user("Describe")]);
    assert_eq!(second.options, conversation().options);
}

#[tokio::test]
async fn agreement_returns_the_first_reply_after_three_calls() {
    let strategy = strategy(vec![
        Turn::text(C1),
        Turn::text(DESCRIPTION),
        Turn::text(C1_SAME),
    ]);
    let outcome = strategy.run(conversation()).await.unwrap();
    assert_eq!(outcome.strategy, "rto");
    assert_eq!((outcome.winner, outcome.answer.as_str()), (0, C1));
    assert_eq!(outcome.candidates.len(), 2);
    assert_eq!(outcome.candidates[1].text, C1_SAME);
    assert_eq!(outcome.steps.len(), 1);
    assert_eq!(outcome.steps[0].text, DESCRIPTION);
    let note = outcome.steps[0].note.as_deref().unwrap();
    assert!(note.starts_with("round trip agreed"), "{note}");
    assert_eq!(outcome.usage.model_calls, 3);
    assert_eq!(strategy.inner().remaining(), 0);

    let requests = strategy.inner().requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0],
        conversation().with_options(expected_options()),
        "the first code answers the caller's request, at the round trip's temperature"
    );
    assert_eq!(
        requests[2],
        ChatRequest {
            system: Some("You write Rust.".into()),
            messages: vec![Message::user(DESCRIPTION.trim())],
            options: expected_options(),
        },
        "the second code answers the description alone"
    );
}

#[tokio::test]
async fn the_description_call_continues_the_conversation() {
    let strategy = strategy(vec![
        Turn::text(C1),
        Turn::text(DESCRIPTION),
        Turn::text(C1_SAME),
    ]);
    strategy.run(conversation()).await.unwrap();
    let expected = ChatRequest {
        system: Some("You write Rust.".into()),
        messages: vec![
            Message::user("Hi"),
            Message::assistant("Hello."),
            Message::user("Write add"),
            Message::assistant(C1),
            Message::user(DESCRIBE_INSTRUCTION),
        ],
        options: expected_options(),
    };
    assert_eq!(strategy.inner().requests()[1], expected);
}

#[tokio::test]
async fn disagreement_adds_a_synthesis_that_answers() {
    let strategy = strategy(vec![
        Turn::text(C1).with_usage(tokens(10, 5)),
        Turn::text(DESCRIPTION).with_usage(tokens(20, 6)),
        Turn::text(C1_OTHER).with_usage(tokens(8, 7)),
        Turn::text(SYNTHESIS).with_usage(tokens(30, 8)),
    ]);
    let outcome = strategy.run(conversation()).await.unwrap();
    assert_eq!((outcome.winner, outcome.answer.as_str()), (2, SYNTHESIS));
    assert_eq!(outcome.candidates.len(), 3);
    assert_eq!(
        outcome.winner_candidate().map(|c| c.text.as_str()),
        Some(SYNTHESIS)
    );
    let note = outcome.steps[0].note.as_deref().unwrap();
    assert!(note.starts_with("round trip disagreed"), "{note}");
    assert_eq!(outcome.usage.model_calls, 4);
    assert_eq!(outcome.usage.prompt_tokens, Some(68));
    assert_eq!(outcome.usage.completion_tokens, Some(26));

    let requests = strategy.inner().requests();
    let synthesis = &requests[3];
    assert_eq!(synthesis.system.as_deref(), Some("You write Rust."));
    assert_eq!(synthesis.messages[..2], conversation().messages[..2]);
    assert_eq!(
        synthesis.last_user_message(),
        Some(
            synthesis_prompt(
                "Write add",
                "fn add(a: i32, b: i32) -> i32 { a + b }",
                "fn add(a: i32, b: i32) -> i32 { b + a }",
            )
            .as_str()
        )
    );
    assert_eq!(synthesis.options, expected_options());
}

#[tokio::test]
async fn junk_replies_without_code_blocks_are_compared_whole() {
    let strategy = strategy(vec![
        Turn::text("I would add the numbers."),
        Turn::text("Add two numbers."),
        Turn::text("Just add them."),
        Turn::text("no code here either"),
    ]);
    let outcome = strategy.run("Write add".into()).await.unwrap();
    assert_eq!(outcome.answer, "no code here either");
    let note = outcome.steps[0].note.as_deref().unwrap();
    assert!(
        note.contains("the first reply has no fenced code block"),
        "{note}"
    );
    assert!(
        note.contains("the second reply has no fenced code block"),
        "{note}"
    );
    let synthesis = strategy.inner().requests()[3].clone();
    assert!(
        synthesis
            .last_user_message()
            .unwrap()
            .contains("```\nI would add the numbers.\n```")
    );

    let same_junk = self::strategy(vec![
        Turn::text("no idea"),
        Turn::text("Say no idea."),
        Turn::text("no   idea\n"),
    ]);
    let outcome = same_junk.run("Write add".into()).await.unwrap();
    assert_eq!((outcome.winner, outcome.usage.model_calls), (0, 3));
}

#[tokio::test]
async fn a_blank_description_falls_back_to_the_question() {
    let strategy = strategy(vec![
        Turn::text(C1),
        Turn::text("  \n"),
        Turn::text(C1_SAME),
    ]);
    let outcome = strategy.run(conversation()).await.unwrap();
    assert_eq!(outcome.winner, 0);
    assert_eq!(
        strategy.inner().requests()[2].messages,
        [Message::user("Write add")]
    );
    let note = outcome.steps[0].note.as_deref().unwrap();
    assert!(note.contains("the description was blank"), "{note}");
}

#[tokio::test]
async fn blank_replies_never_agree() {
    let strategy = strategy(vec![
        Turn::text(""),
        Turn::text("Nothing to describe."),
        Turn::text(""),
        Turn::text(SYNTHESIS),
    ]);
    let outcome = strategy.run("Write add".into()).await.unwrap();
    assert_eq!((outcome.winner, outcome.answer.as_str()), (2, SYNTHESIS));
}

#[tokio::test]
async fn an_error_in_each_stage_names_it() {
    let stages = ["first code", "description", "second code", "synthesis"];
    for (failing, stage) in stages.iter().enumerate() {
        let replies = [C1, DESCRIPTION, C1_OTHER, SYNTHESIS];
        let client = ScriptedClient::from_fn(move |i, _| {
            if i == failing {
                Turn::error("down")
            } else {
                Turn::text(replies[i])
            }
        });
        let strategy = RoundTrip::new(client, RoundTripConfig::default()).unwrap();
        match strategy.run("Write add".into()).await.unwrap_err() {
            Error::StrategyCall {
                strategy: name,
                call,
                source,
            } => {
                assert_eq!((name, call.as_str()), ("rto", *stage));
                assert!(matches!(
                    crate::ScriptedError::of(&source),
                    Some(crate::ScriptedError::Failed { .. })
                ));
            }
            other => panic!("{stage}: {other:?}"),
        }
        assert_eq!(strategy.inner().requests().len(), failing + 1, "{stage}");
    }
}

#[tokio::test]
async fn configuration_and_requests_it_refuses() {
    match RoundTrip::new(
        (),
        RoundTripConfig {
            temperature: Some(f32::NAN),
        },
    )
    .unwrap_err()
    {
        Error::InvalidConfig { field, .. } => assert_eq!(field, "temperature"),
        other => panic!("{other:?}"),
    }
    let strategy = strategy(Vec::new());
    let request = ChatRequest {
        messages: Vec::new(),
        ..ChatRequest::new("unused")
    };
    let err = strategy.run(request).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(strategy.inner().requests().is_empty());

    let keep = RoundTrip::new(
        ScriptedClient::new([Turn::text(C1), Turn::text(DESCRIPTION), Turn::text(C1)]),
        RoundTripConfig { temperature: None },
    )
    .unwrap();
    let completion = keep.complete(conversation()).await.unwrap();
    assert_eq!(completion.text, C1);
    assert_eq!(completion.usage.model_calls, 3);
    assert!(
        keep.inner()
            .requests()
            .iter()
            .all(|r| r.options == conversation().options)
    );
}

#[tokio::test]
async fn a_request_without_a_temperature_gets_the_configured_one() {
    let strategy = strategy(vec![
        Turn::text(C1),
        Turn::text(DESCRIPTION),
        Turn::text(C1_SAME),
    ]);
    let mut request = conversation();
    request.options.temperature = None;
    strategy.run(request).await.unwrap();
    for sent in strategy.inner().requests() {
        let expected = SamplingOptions {
            temperature: Some(0.1),
            ..conversation().options
        };
        assert_eq!(sent.options, expected);
    }
}
