use super::*;
use crate::Error;
use crate::client::ModelClient;
use crate::client::{FinishReason, Message, SamplingOptions, Usage};
use crate::{ScriptedClient, Turn};

#[test]
fn extraction_table() {
    use Extraction::*;
    let cases: &[(&str, &str, Extraction)] = &[
        // Proper tags, the format the instructions ask for.
        (
            "<thinking>\n2 + 2\n<reflection>\nfine\n</reflection>\n</thinking>\n<output>\n4\n</output>",
            "4",
            OutputTag,
        ),
        // Any case, spaces inside the brackets.
        (
            "<thinking>x</thinking>< OUTPUT >Paris</ output >",
            "Paris",
            OutputTag,
        ),
        // Several sections: the first with text, which is known (and streamed) before the
        // others; a blank one does not count.
        (
            "<output>first</output> <output>second</output>",
            "first",
            OutputTag,
        ),
        (
            "<output> </output><output>second</output>",
            "second",
            OutputTag,
        ),
        (
            "<output>kept</output> <output>  </output>",
            "kept",
            OutputTag,
        ),
        (
            "<output>kept</output> then <output>cut off",
            "kept",
            OutputTag,
        ),
        // A tag opened again ends a section with text, and restarts a blank one.
        ("<output>a <output>b</output>", "a", OutputTag),
        ("<output> <output>b</output>", "b", OutputTag),
        // Tags inside <thinking> are not the answer while one outside has text...
        (
            "<thinking>I will answer in <output> tags.</thinking>\n<output>4</output>",
            "4",
            OutputTag,
        ),
        (
            "<thinking><output>draft</output></thinking><output>final</output>",
            "final",
            OutputTag,
        ),
        // ...and are read when the reply is complete when none is: the last complete one.
        (
            "<thinking>t <reflection>r</reflection> <output>4</output> <output>5</output>",
            "5",
            OutputTag,
        ),
        (
            "<thinking><output>draft</output></thinking><output> </output>",
            "draft",
            OutputTag,
        ),
        ("<thinking>t <output>cut off", "cut off", UnclosedOutputTag),
        // A <thinking> tag inside the answer is text of it.
        (
            "<output>use <thinking> tags</output>",
            "use <thinking> tags",
            OutputTag,
        ),
        // Code inside the output is kept verbatim.
        (
            "<output>\n```rust\nfn f() -> u8 { 1 < 2 }\n```\n</output>",
            "```rust\nfn f() -> u8 { 1 < 2 }\n```",
            OutputTag,
        ),
        // A missing closing tag: to the end.
        (
            "<thinking>t</thinking><output>\n42 and more",
            "42 and more",
            UnclosedOutputTag,
        ),
        ("<output></output><output>late", "late", UnclosedOutputTag),
        // No tags at all: the whole reply.
        ("Just the answer: 7.", "Just the answer: 7.", NoOutputTag),
        // No output tag: the whole reply, thinking and reflection included.
        (
            "<thinking>long <reflection>r</reflection> more</thinking>\n\nThe answer is 4.",
            "<thinking>long <reflection>r</reflection> more</thinking>\n\nThe answer is 4.",
            NoOutputTag,
        ),
        (
            "<Reflection>r</Reflection>Answer: yes",
            "<Reflection>r</Reflection>Answer: yes",
            NoOutputTag,
        ),
        // Cut off inside an unclosed <thinking> (the token limit): nothing is lost.
        (
            "Sure!\n<thinking>Plan: ```rust\nfn f() {}\n```",
            "Sure!\n<thinking>Plan: ```rust\nfn f() {}\n```",
            NoOutputTag,
        ),
        (
            "Before <thinking>never closed",
            "Before <thinking>never closed",
            NoOutputTag,
        ),
        // Stray tags are kept, and a blank output section is no answer.
        (
            "</thinking>4</output>",
            "</thinking>4</output>",
            NoOutputTag,
        ),
        (
            "<thinking>t</thinking><output> </output>5",
            "<thinking>t</thinking><output> </output>5",
            NoOutputTag,
        ),
        ("<output>\n</output>", "<output>\n</output>", NoOutputTag),
        // Junk that only looks like tags.
        (
            "a < b > c <outputs> </out> <output",
            "a < b > c <outputs> </out> <output",
            NoOutputTag,
        ),
        // Nothing but reasoning: the whole reply, trimmed.
        (
            "  <thinking>a</thinking><reflection>b</reflection>\n",
            "<thinking>a</thinking><reflection>b</reflection>",
            NoOutputTag,
        ),
        ("", "", NoOutputTag),
        ("  \n ", "", NoOutputTag),
        // Multibyte text around and inside the tags.
        ("é<output>ü</output>", "ü", OutputTag),
        ("日本<output>語の答え</output>🙂", "語の答え", OutputTag),
        ("<thinking>ß</thinking><output>ñ…", "ñ…", UnclosedOutputTag),
        ("é < ü >ø</output", "é < ü >ø</output", NoOutputTag),
        ("<🙂output>x", "<🙂output>x", NoOutputTag),
        // Cut off inside a tag: an open section's text runs to the end, the rest kept.
        ("<output>42</outp", "42</outp", UnclosedOutputTag),
        ("<output>42 < ", "42 <", UnclosedOutputTag),
        ("<output> \u{3000}", "<output>", NoOutputTag),
    ];
    for &(reply, expected, extraction) in cases {
        assert_eq!(
            extract_output(reply),
            (expected.to_owned(), extraction),
            "{reply:?}"
        );
        reads_the_same_in_any_deltas(reply);
    }
}

/// However `reply` is cut into deltas, an [`OutputReader`] sends the beginning of the answer
/// as it reads, and finishes with [`extract_output`]'s answer.
fn reads_the_same_in_any_deltas(reply: &str) {
    let whole = extract_output(reply);
    let bounds: Vec<usize> = reply.char_indices().map(|(at, _)| at).skip(1).collect();
    // Every cut in two, every cut in three, and one character at a time.
    let mut cuts: Vec<Vec<usize>> = bounds.iter().map(|&at| vec![at]).collect();
    for (i, &a) in bounds.iter().enumerate() {
        cuts.extend(bounds[i + 1..].iter().map(|&b| vec![a, b]));
    }
    cuts.push(bounds.clone());
    for cut in cuts {
        let mut reader = OutputReader::new();
        let mut sent = String::new();
        let mut from = 0;
        for at in cut.into_iter().chain([reply.len()]) {
            sent.push_str(&reader.push(&reply[from..at]));
            assert!(whole.0.starts_with(&sent), "{reply:?}: sent {sent:?}");
            from = at;
        }
        assert_eq!(reader.finish(), whole, "{reply:?}");
    }
}

#[test]
fn the_reader_sends_the_answer_as_it_is_generated() {
    let mut reader = OutputReader::new();
    let sent: Vec<String> = [
        "<thinking>in <output> tags</thinking>",
        "\n< OUT",
        "PUT >\n  def",
        " f():  ",
        "\n    return 1\n",
        "</output",
        ">\n<output>late</output>",
    ]
    .into_iter()
    .map(|delta| reader.push(delta))
    .collect();
    assert_eq!(sent, ["", "", "def", " f():", "  \n    return 1", "", ""]);
    let answer = "def f():  \n    return 1".to_owned();
    assert_eq!(reader.finish(), (answer, Extraction::OutputTag));
}

#[test]
fn invalid_configs_are_rejected() {
    let cases = [
        (
            CotReflectionConfig {
                instructions: " \n".into(),
                ..CotReflectionConfig::default()
            },
            "instructions",
        ),
        (
            CotReflectionConfig {
                temperature: Some(f32::INFINITY),
                ..CotReflectionConfig::default()
            },
            "temperature",
        ),
    ];
    for (config, expected_field) in cases {
        match CotReflection::new((), config).unwrap_err() {
            Error::InvalidConfig { field, .. } => assert_eq!(field, expected_field),
            other => panic!("{other:?}"),
        }
    }
    assert!(CotReflection::new((), CotReflectionConfig::default()).is_ok());
}

#[tokio::test]
async fn the_system_prompt_is_kept_and_extended_and_the_output_returned() {
    let reply = "<thinking>\nsum\n<reflection>ok</reflection>\n</thinking>\n<output>4</output>";
    let client = ScriptedClient::new([Turn::text(reply)
        .with_usage(Usage {
            prompt_tokens: Some(120),
            completion_tokens: Some(15),
            ..Usage::default()
        })
        .with_finish_reason(FinishReason::Length)]);
    let strategy = CotReflection::new(client, CotReflectionConfig::default()).unwrap();
    let options = SamplingOptions {
        temperature: Some(0.2),
        seed: Some(3),
        max_tokens: Some(512),
        ..SamplingOptions::default()
    };
    let request = ChatRequest {
        system: Some("You are terse.".into()),
        messages: vec![
            Message::user("hi"),
            Message::assistant("hello"),
            Message::user("What is 2 + 2?"),
        ],
        options: options.clone(),
    };
    let outcome = strategy.run(request.clone()).await.unwrap();

    let sent = strategy.inner().requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].system.as_deref(),
        Some(format!("You are terse.\n\n{DEFAULT_INSTRUCTIONS}").as_str())
    );
    assert_eq!(sent[0].messages, request.messages);
    assert_eq!(sent[0].options, options, "the request's options are kept");

    assert_eq!(outcome.strategy, "cot_reflection");
    assert_eq!(outcome.answer, "4");
    assert_eq!(outcome.finish_reason, FinishReason::Length);
    assert_eq!(outcome.candidates.len(), 1);
    assert_eq!(outcome.candidates[0].text, reply);
    assert_eq!(outcome.candidates[0].options, options);
    assert_eq!(outcome.steps.len(), 1);
    let step = &outcome.steps[0];
    assert_eq!(
        (step.stage.as_str(), step.text.as_str()),
        ("extract output", "4")
    );
    assert_eq!(step.note.as_deref(), Some("an <output> section"));
    assert_eq!(step.usage.model_calls, 0);
    assert_eq!(outcome.usage.model_calls, 1);
    assert_eq!(outcome.usage.prompt_tokens, Some(120));
    assert_eq!(outcome.usage.completion_tokens, Some(15));
}

#[tokio::test]
async fn a_configured_temperature_fills_in_only_an_unset_one_and_no_system_prompt_is_fine() {
    let config = CotReflectionConfig {
        instructions: "Think, reflect, output.".into(),
        temperature: Some(0.6),
    };
    let client = ScriptedClient::new([
        Turn::text("<output>x</output>"),
        Turn::text("<output>x</output>"),
    ]);
    let strategy = CotReflection::new(client, config).unwrap();
    let request = ChatRequest::new("q").with_options(SamplingOptions {
        temperature: Some(0.0),
        max_tokens: Some(9),
        ..SamplingOptions::default()
    });
    strategy.run(request.clone()).await.unwrap();
    let sent = &strategy.inner().requests()[0];
    assert_eq!(sent.system.as_deref(), Some("Think, reflect, output."));
    // The request's temperature wins.
    assert_eq!(sent.options.temperature, Some(0.0));
    assert_eq!(sent.options.max_tokens, Some(9));
    // A request without one gets the configured temperature.
    let unset = ChatRequest::new("q").with_options(SamplingOptions {
        temperature: None,
        ..request.options
    });
    strategy.run(unset).await.unwrap();
    let sent = &strategy.inner().requests()[1];
    assert_eq!(sent.options.temperature, Some(0.6));
    assert_eq!(sent.options.max_tokens, Some(9));
}

#[tokio::test]
async fn a_reply_without_output_tag_falls_back_to_the_whole_reply_and_the_trace_says_so() {
    // Cut off by the token limit inside <thinking>: the code must survive.
    let reply = "Sure!\n<thinking>The function:\n```rust\nfn f() {}\n```\n  ";
    let whole = reply.trim();
    let strategy = CotReflection::new(
        ScriptedClient::new([Turn::text(reply)]),
        CotReflectionConfig::default(),
    )
    .unwrap();
    let outcome = strategy.run("q".into()).await.unwrap();
    assert_eq!(outcome.answer, whole);
    assert!(outcome.answer.contains("```rust\nfn f() {}\n```"));
    assert_eq!(outcome.candidates[0].text, reply);
    let step = &outcome.steps[0];
    assert_eq!(step.stage, "extract output");
    assert_eq!(step.text, whole);
    assert_eq!(
        step.note.as_deref(),
        Some("no <output> section with text: the whole reply")
    );
    assert_eq!(step.usage.model_calls, 0);
    assert_eq!(step.usage.completion_tokens, Some(0));
    assert_eq!(step.finish_reason, None);
    // The stream carries the answer (the reply trimmed), not the raw reply.
    let strategy = CotReflection::new(
        ScriptedClient::new([Turn::text(reply)]),
        CotReflectionConfig::default(),
    )
    .unwrap();
    let streamed = crate::collect_completion(strategy.stream_chat("q".into()))
        .await
        .unwrap();
    assert_eq!(streamed.text, whole);
    assert_eq!(streamed.usage.model_calls, 1);
}

#[tokio::test]
async fn an_error_in_the_call_names_it() {
    let strategy = CotReflection::new(
        ScriptedClient::new([Turn::error("model crashed")]),
        CotReflectionConfig::default(),
    )
    .unwrap();
    match strategy.run("q".into()).await.unwrap_err() {
        Error::StrategyCall {
            strategy,
            call,
            source,
        } => {
            assert_eq!((strategy, call.as_str()), ("cot_reflection", "answer"));
            assert!(source.to_string().contains("model crashed"), "{source}");
        }
        other => panic!("{other:?}"),
    }
}
