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

use crate::common::{THREADS, greedy, preset_path, within};

#[tokio::test]
async fn the_default_preset_answers_prime_check_with_code_that_passes_the_hidden_tests() {
    let path = tokio::task::spawn_blocking(|| preset_path(DEFAULT_PRESET))
        .await
        .unwrap();
    let engine = tokio::task::spawn_blocking(move || {
        LlamaEngine::load(LlamaConfig {
            threads: NonZeroUsize::new(THREADS),
            ..LlamaConfig::new(path)
        })
    })
    .await
    .unwrap()
    .unwrap();
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
