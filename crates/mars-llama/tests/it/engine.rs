//! The engine as a `ModelClient`: streaming, usage, limits, stop strings, the chat template.

use futures::StreamExt;
use mars::{
    ChatRequest, Error, FinishReason, ModelClient, ModelClientExt, SamplingOptions, StreamEvent,
};

use crate::common::{engine, greedy, within};

const PROMPT: &str = "Write three sentences about the sea.";

#[tokio::test]
async fn streams_text_deltas_then_exactly_one_done() {
    // A prompt no other test sends: its evaluation is not skipped by prefix reuse.
    let request =
        ChatRequest::new(format!("{PROMPT} Begin with the tide.")).with_options(greedy(16));
    let events: Vec<_> = within(engine().stream_chat(request).collect()).await;
    let (last, deltas) = events.split_last().expect("no events");
    assert!(!deltas.is_empty(), "no text deltas");
    let mut text = String::new();
    for event in deltas {
        match event {
            Ok(StreamEvent::Delta(delta)) => text.push_str(delta),
            other => panic!("expected a delta, got {other:?}"),
        }
    }
    assert!(!text.trim().is_empty(), "blank text: {text:?}");
    let Ok(StreamEvent::Done(finish)) = last else {
        panic!("the last event is not Done: {last:?}");
    };
    let usage = &finish.usage;
    assert_eq!(usage.model_calls, 1);
    assert!(usage.prompt_eval_duration.is_some_and(|d| !d.is_zero()));
    assert!(usage.eval_duration.is_some_and(|d| !d.is_zero()));
    assert!(
        usage
            .time_to_first_token
            .is_some_and(|t| t <= usage.total_time)
    );
}

#[tokio::test]
async fn usage_counts_equal_the_tokenizer_counts() {
    let request = ChatRequest::new(PROMPT).with_options(greedy(12));
    let completion = within(engine().complete(request.clone())).await.unwrap();
    let prompt_tokens = engine().count_prompt_tokens(&request).unwrap() as u64;
    assert_eq!(completion.usage.prompt_tokens, Some(prompt_tokens));
    assert_eq!(completion.finish_reason, FinishReason::Length);
    assert_eq!(completion.usage.completion_tokens, Some(12));
    assert_eq!(
        engine().count_tokens(&completion.text) as u64,
        12,
        "the text {:?} re-tokenizes to another count",
        completion.text
    );
}

#[tokio::test]
async fn max_tokens_is_respected() {
    for max_tokens in [0u32, 1, 5] {
        let request = ChatRequest::new(PROMPT).with_options(greedy(max_tokens));
        let completion = within(engine().complete(request)).await.unwrap();
        assert_eq!(
            completion.finish_reason,
            FinishReason::Length,
            "max {max_tokens}"
        );
        assert_eq!(
            completion.usage.completion_tokens,
            Some(u64::from(max_tokens))
        );
        assert_eq!(
            completion.text.is_empty(),
            max_tokens == 0,
            "{:?}",
            completion.text
        );
    }
}

#[tokio::test]
async fn stop_strings_spanning_tokens_end_the_answer_before_them() {
    // The pieces of a greedy answer show where its tokens meet; a stop string made of the end
    // of one piece and the start of the next spans two tokens.
    let request = ChatRequest::new(PROMPT).with_options(greedy(40));
    let events: Vec<_> = within(engine().stream_chat(request.clone()).collect()).await;
    let pieces: Vec<String> = events
        .into_iter()
        .filter_map(|e| match e.unwrap() {
            StreamEvent::Delta(d) => Some(d),
            StreamEvent::Done(_) => None,
        })
        .collect();
    let full: String = pieces.concat();
    let k = (3..pieces.len() - 1)
        .find(|&k| pieces[k].chars().count() >= 2 && pieces[k + 1].chars().count() >= 2)
        .expect("no two adjacent pieces of two characters");
    let tail: String = pieces[k]
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head: String = pieces[k + 1].chars().take(2).collect();
    let stop = format!("{tail}{head}");
    let expected = &full[..full.find(&stop).unwrap()];

    let mut options = greedy(40);
    options.stop = vec!["never appears ¤".into(), stop.clone()];
    let stopped: Vec<_> = within(
        engine()
            .stream_chat(request.with_options(options))
            .collect(),
    )
    .await;
    let mut text = String::new();
    let mut finish = None;
    for event in stopped {
        match event.unwrap() {
            StreamEvent::Delta(d) => text.push_str(&d),
            StreamEvent::Done(f) => finish = Some(f),
        }
    }
    assert_eq!(text, expected, "stop {stop:?}");
    assert!(!text.contains(&stop));
    assert_eq!(finish.unwrap().reason, FinishReason::Stop);
}

#[tokio::test]
async fn the_template_default_system_prompt_applies_only_without_one() {
    let engine = engine();
    let default = engine
        .default_system_prompt()
        .expect("SmolLM2 has a default system prompt");
    assert!(default.contains("SmolLM"), "{default}");
    let plain = engine.render_prompt(&ChatRequest::new("Hi")).unwrap();
    assert!(plain.contains(default) && plain.contains("Hi"), "{plain}");
    assert!(plain.ends_with("<|im_start|>assistant\n"), "{plain:?}");
    let own = engine
        .render_prompt(&ChatRequest::new("Hi").with_system("Answer in French."))
        .unwrap();
    assert!(
        own.contains("Answer in French.") && !own.contains(default),
        "{own}"
    );
}

#[tokio::test]
async fn invalid_sampling_options_are_an_error() {
    let options = SamplingOptions {
        top_p: Some(1.5),
        ..SamplingOptions::default()
    };
    let err = within(engine().complete(ChatRequest::new("Hi").with_options(options)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { field: "top_p", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn concurrent_requests_are_served_alike() {
    let request = ChatRequest::new(PROMPT).with_options(greedy(8));
    let runs = within(futures::future::join_all(
        (0..3).map(|_| engine().complete(request.clone())),
    ))
    .await;
    let texts: Vec<String> = runs.into_iter().map(|r| r.unwrap().text).collect();
    assert!(!texts[0].is_empty());
    assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");
}

#[tokio::test]
async fn a_dropped_stream_leaves_the_engine_usable() {
    let request = ChatRequest::new(PROMPT).with_options(greedy(200));
    let mut stream = engine().stream_chat(request);
    let first = within(stream.next()).await;
    assert!(
        matches!(first, Some(Ok(StreamEvent::Delta(_)))),
        "{first:?}"
    );
    drop(stream);
    let after = within(engine().complete(ChatRequest::new(PROMPT).with_options(greedy(3))))
        .await
        .unwrap();
    assert_eq!(after.usage.completion_tokens, Some(3));
}

#[tokio::test]
async fn a_missing_model_file_is_a_clear_error() {
    let err = mars_llama::LlamaEngine::load(mars_llama::LlamaConfig::new("/nonexistent.gguf"))
        .unwrap_err();
    assert!(
        matches!(err, mars_llama::Error::ModelNotFound { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("MARS_MODEL") && text.contains("qwen2.5-coder-0.5b"),
        "{text}"
    );
}

#[tokio::test]
async fn the_context_window_bounds_prompts_and_answers() {
    let small = mars_llama::LlamaEngine::load(mars_llama::LlamaConfig {
        context_size: 96,
        batch_size: 16,
        threads: std::num::NonZeroUsize::new(crate::common::THREADS),
        ..mars_llama::LlamaConfig::new(crate::common::model_path())
    })
    .unwrap();
    let window = u64::from(small.context_size());
    assert!((96..=512).contains(&window), "{window}");
    let long = ChatRequest::new("word ".repeat(600)).with_options(greedy(4));
    let err = within(small.complete(long)).await.unwrap_err();
    assert!(
        matches!(
            mars_llama::Error::downcast(&err),
            Some(mars_llama::Error::ContextWindow { available, .. }) if *available == window
        ),
        "{err}"
    );
    // Without max_tokens, an answer stops when the window is full. A long system prompt (fed in
    // 16-token chunks) leaves about 30 tokens of the window for the story.
    let mut system = String::new();
    let story = loop {
        system.push_str("You tell long, detailed stories. ");
        let request = ChatRequest::new("Write a long story about a dragon.")
            .with_system(system.clone())
            .with_options(SamplingOptions {
                temperature: Some(0.0),
                ..SamplingOptions::default()
            });
        if small.count_prompt_tokens(&request).unwrap() as u64 + 30 >= window {
            break request;
        }
    };
    let completion = within(small.complete(story)).await.unwrap();
    let used =
        completion.usage.prompt_tokens.unwrap() + completion.usage.completion_tokens.unwrap();
    assert_eq!(completion.finish_reason, FinishReason::Length);
    // Every token but the last took a cell of the window.
    assert_eq!(used, window + 1, "{completion:?}");
}
