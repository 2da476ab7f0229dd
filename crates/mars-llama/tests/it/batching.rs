//! Continuous batching on the real model: requests decoded together give the texts they give
//! alone, a dropped stream frees its slot, the queue is fair across requests, and prefix reuse
//! is used and changes nothing but time.

use std::num::NonZeroUsize;
use std::time::Instant;

use futures::StreamExt;
use mars::{BatchRequest, ChatRequest, ModelClient, ModelClientExt, SamplingOptions, StreamEvent};
use mars_llama::{LlamaConfig, LlamaEngine};

use crate::common::{THREADS, greedy, model_path, seeded, within};

const PROMPTS: [&str; 4] = [
    "Tell me a short story about a fox.",
    "Write a haiku about rain.",
    "Explain what a compiler does in two sentences.",
    "List three colours and a fruit of each colour.",
];

/// An engine of its own (its counters and queue see only this test), with small slots.
fn engine_with(slots: u32, batch_size: u32, prefix_cache: bool) -> LlamaEngine {
    LlamaEngine::load(LlamaConfig {
        threads: NonZeroUsize::new(THREADS),
        context_size: 1024,
        slots,
        batch_size,
        prefix_cache,
        ..LlamaConfig::new(model_path())
    })
    .unwrap()
}

fn request(i: usize, seed: u64, max_tokens: u32) -> ChatRequest {
    ChatRequest::new(PROMPTS[i % PROMPTS.len()]).with_options(seeded(seed, max_tokens))
}

async fn text(engine: &LlamaEngine, request: ChatRequest) -> String {
    within(engine.complete(request)).await.unwrap().text
}

#[tokio::test]
async fn requests_decoded_together_give_the_texts_they_give_alone() {
    // Without prefix reuse every prompt is evaluated, also the second time: joining requests
    // evaluate theirs while the others decode.
    let engine = engine_with(4, 16, false);
    let requests: Vec<ChatRequest> = (0..4).map(|i| request(i, 100 + i as u64, 32)).collect();
    let mut alone = Vec::new();
    for request in &requests {
        alone.push(text(&engine, request.clone()).await);
    }
    let before = engine.stats();
    // Together, each joining while the others are mid-answer, beside a batch of samples.
    let staggered = requests.iter().enumerate().map(|(i, request)| {
        let engine = &engine;
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(40 * i as u64)).await;
            text(engine, request.clone()).await
        }
    });
    let batch = BatchRequest::new(
        ChatRequest::new(PROMPTS[0]),
        vec![seeded(7, 24), seeded(8, 24)],
    );
    let (together, batched) = within(futures::future::join(
        futures::future::join_all(staggered),
        engine.complete_batch(batch),
    ))
    .await;
    assert_eq!(together, alone);
    let after = engine.stats();
    assert!(
        (2..=3).contains(&after.most_sequences_in_a_call),
        "deterministic decode calls carry 2 to 3 sequences here: {after:?}"
    );
    assert!(after.decode_calls > before.decode_calls);
    for (seed, sample) in [7, 8].into_iter().zip(batched) {
        let single = ChatRequest::new(PROMPTS[0]).with_options(seeded(seed, 24));
        assert_eq!(
            sample.unwrap().text,
            text(&engine, single).await,
            "seed {seed}"
        );
    }
}

#[tokio::test]
async fn a_dropped_stream_frees_its_slot_at_the_next_step() {
    let engine = engine_with(1, 64, true);
    let long =
        ChatRequest::new("Write a long, detailed story about a dragon who learns to bake bread.")
            .with_options(greedy(300));
    // Alone, the answer runs long: the cancellation below is not an early end of its own.
    let full = within(engine.complete(long.clone())).await.unwrap();
    let full_tokens = full.usage.completion_tokens.unwrap();
    assert!(full_tokens >= 200, "{full_tokens} tokens: too short a test");

    let before = engine.stats().decoded_tokens;
    let mut stream = engine.stream_chat(long);
    let first = within(stream.next()).await;
    assert!(
        matches!(first, Some(Ok(StreamEvent::Delta(_)))),
        "{first:?}"
    );
    drop(stream);
    // One slot: this waits for the dropped stream's slot.
    let next = within(engine.complete(request(1, 5, 4))).await.unwrap();
    assert!(!next.text.is_empty());
    let spent = engine.stats().decoded_tokens - before;
    assert!(
        spent < full_tokens / 2,
        "{spent} tokens decoded after the drop (the whole answer is {full_tokens})"
    );
}

#[tokio::test]
async fn a_request_behind_a_large_batch_is_not_starved() {
    let engine = engine_with(1, 64, true);
    let batch = BatchRequest::new(
        request(0, 0, 0),
        (0..4).map(|s| seeded(30 + s, 48)).collect(),
    );
    let batch_done = async {
        let results = engine.complete_batch(batch).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        Instant::now()
    };
    let single_done = async {
        // Submitted after the batch is queued.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let answer = engine.complete(request(2, 3, 8)).await.unwrap();
        assert!(!answer.text.is_empty());
        Instant::now()
    };
    let (batch_done, single_done) = within(futures::future::join(batch_done, single_done)).await;
    assert!(
        single_done < batch_done,
        "the single request waited for the whole batch of four"
    );
}

#[tokio::test]
async fn a_repeated_prompt_is_reused_whole_and_answers_alike() {
    let engine = engine_with(2, 16, true);
    let cold = engine_with(2, 16, false);
    let first = request(3, 9, 24);
    let prompt_tokens = engine.count_prompt_tokens(&first).unwrap() as u64;
    let a = text(&engine, first.clone()).await;
    let reused_before = engine.stats().prompt_tokens_reused;
    let b = text(&engine, first.clone()).await;
    let stats = engine.stats();
    assert_eq!(stats.prompt_tokens_reused - reused_before, prompt_tokens);
    assert_eq!(a, b);
    assert_eq!(text(&cold, first.clone()).await, a);
    assert_eq!(text(&cold, first.clone()).await, a);
    assert_eq!(cold.stats().prompt_tokens_reused, 0);
    // Without the cache, the samples of one request still share its prompt's evaluation.
    let evaluated = cold.stats().prompt_tokens_evaluated;
    let batch = BatchRequest::new(first, vec![seeded(9, 24), seeded(10, 24), seeded(11, 24)]);
    let results = within(cold.complete_batch(batch)).await;
    assert_eq!(results[0].as_ref().unwrap().text, a);
    assert_eq!(
        cold.stats().prompt_tokens_evaluated - evaluated,
        prompt_tokens
    );
}

#[tokio::test]
async fn a_shared_prefix_is_reused_in_whole_blocks_and_answers_alike() {
    let engine = engine_with(2, 16, true);
    let cold = engine_with(2, 16, false);
    let system = "You are a careful assistant. You answer briefly and you never invent facts. \
                  When you are unsure, you say so plainly.";
    let ask = |question: &str| {
        ChatRequest::new(question)
            .with_system(system)
            .with_options(seeded(4, 24))
    };
    let warmup = ask("What is the capital of France?");
    let question = ask("Name a large animal.");
    text(&engine, warmup).await;
    let before = engine.stats();
    let warm = text(&engine, question.clone()).await;
    let after = engine.stats();
    let reused = after.prompt_tokens_reused - before.prompt_tokens_reused;
    assert!(reused >= 32, "{reused} tokens reused");
    assert_eq!(reused % 16, 0, "{reused} tokens reused: not whole blocks");
    let evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated;
    let prompt_tokens = engine.count_prompt_tokens(&question).unwrap() as u64;
    assert_eq!(reused + evaluated, prompt_tokens);
    assert_eq!(text(&cold, question).await, warm);
}

#[tokio::test]
async fn samples_beyond_the_slots_wait_and_answer_alike() {
    let engine = engine_with(2, 16, true);
    let samples: Vec<SamplingOptions> = (0..5).map(|s| seeded(60 + s, 12)).collect();
    let batch = BatchRequest::new(request(1, 0, 0), samples.clone());
    let results = within(engine.complete_batch(batch)).await;
    assert_eq!(results.len(), 5);
    assert!(engine.stats().most_sequences_in_a_call <= 2);
    for (options, result) in samples.into_iter().zip(results) {
        let single = ChatRequest::new(PROMPTS[1]).with_options(options);
        assert_eq!(result.unwrap().text, text(&engine, single).await);
    }
}

/// Without `deterministic`, every running sequence shares one call: texts may then depend on
/// what runs beside (so only their form is checked), and all four requests ride together.
#[tokio::test]
async fn without_determinism_every_running_sequence_shares_one_call() {
    let engine = LlamaEngine::load(LlamaConfig {
        threads: NonZeroUsize::new(THREADS),
        context_size: 1024,
        slots: 4,
        deterministic: false,
        ..LlamaConfig::new(model_path())
    })
    .unwrap();
    let answers = within(futures::future::join_all(
        (0..4).map(|i| engine.complete(request(i, 200 + i as u64, 24))),
    ))
    .await;
    for answer in answers {
        let answer = answer.unwrap();
        assert!(!answer.text.is_empty());
        assert!(answer.usage.completion_tokens.is_some_and(|n| n > 0));
    }
    assert_eq!(engine.stats().most_sequences_in_a_call, 4);
}
