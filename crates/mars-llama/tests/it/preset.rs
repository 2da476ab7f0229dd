//! The default preset, live: Qwen2.5-Coder-0.5B-Instruct fetched by the resolver, its chat
//! template's default system prompt read, and a seed task solved at temperature 0.

use std::num::NonZeroUsize;

use mars::ChatRequest;
use mars::ModelClientExt;
use mars::eval::grade::{Grader, Tests, Verdict};
use mars::eval::run::RunConfig;
use mars::eval::sandbox::{Sandbox, SandboxConfig};
use mars::eval::tasks::{TaskSet, builtin};
use mars_llama::model::DEFAULT_PRESET;
use mars_llama::{LlamaConfig, LlamaEngine};

use crate::common::{THREADS, greedy, preset_path, seeded, within};

/// The default preset (fetched on first use), with the tests' threads and `configure` applied.
async fn load_default_preset(
    configure: impl FnOnce(LlamaConfig) -> LlamaConfig + Send + 'static,
) -> LlamaEngine {
    tokio::task::spawn_blocking(move || {
        let config = LlamaConfig {
            threads: NonZeroUsize::new(THREADS),
            ..LlamaConfig::new(preset_path(DEFAULT_PRESET))
        };
        LlamaEngine::load(configure(config))
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn the_default_preset_answers_prime_check_with_code_that_passes_the_hidden_tests() {
    let engine = load_default_preset(|config| config).await;
    assert_eq!(
        engine.default_system_prompt(),
        Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    );
    let task = builtin(TaskSet::Seed)
        .into_iter()
        .find(|t| t.id == "prime_check")
        .unwrap();
    // The request the benchmark sends, greedy.
    let request = ChatRequest::new(task.prompt.clone())
        .with_system(RunConfig::default().system_prompt)
        .with_options(greedy(256));
    let answer = within(engine.complete(request)).await.unwrap();
    let grader = Grader::new(Sandbox::new(SandboxConfig::default()).await.unwrap());
    let grade = grader
        .grade(&task, &answer.text, Tests::Hidden)
        .await
        .unwrap();
    assert_eq!(
        grade.verdict,
        Verdict::Pass,
        "{}\n{:?}",
        answer.text,
        grade.detail
    );
}

/// On Qwen2.5 Q4_K_M a prompt chunk batched with other sequences' tokens, or a decode call of 4
/// or more sequences, changes a sequence's logits (measured with
/// `examples/determinism_probe.rs` and the benchmark); the engine evaluates prompts alone and
/// decodes at most 3 sequences per call, so five requests that join one another mid-answer
/// give the texts they give alone. (With `deterministic: false`, 64 tokens were enough for one
/// of the five texts to change.)
#[tokio::test]
async fn the_default_preset_gives_the_same_texts_decoded_together_as_alone() {
    let engine = load_default_preset(|config| LlamaConfig {
        context_size: 1024,
        slots: 5,
        batch_size: 32,
        // Every prompt evaluated, also the second time: joining requests evaluate theirs while
        // the others decode.
        prefix_cache: false,
        ..config
    })
    .await;
    let requests: Vec<ChatRequest> = [
        "Write a Rust function that reverses a string.",
        "Write a Rust function that sums a slice of integers.",
        "Write a Rust function that checks whether a number is even.",
        "Write a Rust function that returns the largest element of a slice.",
        "Write a Rust function that counts the vowels in a string.",
    ]
    .iter()
    .enumerate()
    .map(|(i, prompt)| ChatRequest::new(*prompt).with_options(seeded(i as u64, 64)))
    .collect();
    let mut alone = Vec::new();
    for request in &requests {
        alone.push(within(engine.complete(request.clone())).await.unwrap().text);
    }
    let together = within(futures::future::join_all(requests.iter().enumerate().map(
        |(i, request)| {
            let engine = &engine;
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(100 * i as u64)).await;
                engine.complete(request.clone()).await.unwrap().text
            }
        },
    )))
    .await;
    assert_eq!(together, alone);
    assert_eq!(engine.stats().most_sequences_in_a_call, 3);
}
