//! Seeded sampling: reproducible whatever ran before, different across seeds, and the same
//! through the batched path as one by one.

use mars::{BatchRequest, ChatRequest, ModelClient, ModelClientExt};
use mars_llama::{LlamaConfig, LlamaEngine};

use crate::common::{THREADS, engine, model_path, seeded, within};

const PROMPT: &str = "Tell me a short story about a fox.";

async fn sample(engine: &LlamaEngine, seed: u64) -> String {
    let request = ChatRequest::new(PROMPT).with_options(seeded(seed, 24));
    within(engine.complete(request)).await.unwrap().text
}

#[tokio::test]
async fn the_same_seed_gives_the_same_text_whatever_ran_before() {
    let first = sample(engine(), 42).await;
    assert!(!first.is_empty());
    // Other work in between: another prompt, another seed, a batch.
    let other = ChatRequest::new("Name a colour.").with_options(seeded(7, 8));
    within(engine().complete(other.clone())).await.unwrap();
    let batch = BatchRequest::new(other, vec![seeded(1, 8), seeded(2, 8)]);
    within(engine().complete_batch(batch)).await;
    assert_eq!(sample(engine(), 42).await, first);
    // A separately loaded engine (its own context, nothing run before, another thread count)
    // agrees too.
    let fresh = LlamaEngine::load(LlamaConfig {
        threads: std::num::NonZeroUsize::new(THREADS + 1),
        ..LlamaConfig::new(model_path())
    })
    .unwrap();
    assert_eq!(sample(&fresh, 42).await, first);
}

#[tokio::test]
async fn different_seeds_give_different_texts() {
    let mut texts = Vec::new();
    for seed in [1, 2, 3] {
        texts.push(sample(engine(), seed).await);
    }
    texts.sort();
    texts.dedup();
    assert!(texts.len() >= 2, "three seeds gave one text: {texts:?}");
}

#[tokio::test]
async fn batched_samples_equal_sequential_samples_with_the_same_seeds() {
    let seeds = [11u64, 12, 13, 14];
    let request = ChatRequest::new(PROMPT);
    let batch = BatchRequest::new(
        request.clone(),
        seeds.iter().map(|&s| seeded(s, 24)).collect(),
    );
    let batched: Vec<_> = within(engine().complete_batch(batch))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for (seed, together) in seeds.iter().zip(&batched) {
        let alone = within(engine().complete(request.clone().with_options(seeded(*seed, 24))))
            .await
            .unwrap();
        assert_eq!(together.text, alone.text, "seed {seed}");
        assert_eq!(
            together.usage.completion_tokens,
            alone.usage.completion_tokens
        );
        assert_eq!(together.usage.prompt_tokens, alone.usage.prompt_tokens);
        assert_eq!(together.usage.model_calls, 1);
    }
    let distinct: std::collections::HashSet<_> = batched.iter().map(|c| &c.text).collect();
    assert!(distinct.len() >= 2, "four seeds gave one text");
}

#[tokio::test]
async fn batches_larger_than_the_sequence_bound_run_in_groups() {
    let small = LlamaEngine::load(LlamaConfig {
        slots: 2,
        threads: std::num::NonZeroUsize::new(THREADS),
        ..LlamaConfig::new(model_path())
    })
    .unwrap();
    let seeds = [21u64, 22, 23];
    let batch = BatchRequest::new(
        ChatRequest::new(PROMPT),
        seeds.iter().map(|&s| seeded(s, 8)).collect(),
    );
    let results = within(small.complete_batch(batch)).await;
    assert_eq!(results.len(), 3);
    for (seed, result) in seeds.iter().zip(results) {
        assert_eq!(result.unwrap().text, {
            let request = ChatRequest::new(PROMPT).with_options(seeded(*seed, 8));
            within(small.complete(request)).await.unwrap().text
        });
    }
}
