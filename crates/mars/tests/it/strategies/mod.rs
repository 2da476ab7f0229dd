//! Strategies over `ScriptedClient`: the requests they send, how they select, what they report.
//!
//! This file holds the shared helpers and the Baseline, ReRead and DiverseSampling cases; the
//! others are in the submodules.

// Test helpers outside `#[test]` functions fail the test by panicking, as the tests do.
#![allow(clippy::expect_used, clippy::panic)]

mod best_of_n;
mod composition;
mod failures;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use mars::strategies::sampling::derive_seeds;
use mars::strategies::{
    Baseline, DiverseSampling, DiverseSamplingConfig, ReRead, ReReadConfig, Score,
};
use mars::{
    BatchRequest, ChatRequest, Completion, EventStream, ModelClient, ModelClientExt, Role,
    SamplingOptions, ScriptedClient, StreamEvent, Turn, Usage,
};
use tokio::time::Instant;

/// Bounds every test in time so that a hang fails instead of blocking the suite.
pub(super) async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

pub(super) fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: Some(prompt),
        completion_tokens: Some(completion),
        ..Usage::default()
    }
}

pub(super) fn is_judge_call(request: &ChatRequest) -> bool {
    request
        .last_user_message()
        .is_some_and(|m| m.starts_with("Rate the above response"))
}

/// The candidate a judge call rates (the assistant message before the instruction).
pub(super) fn judged_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// Index of a request's seed in the seeds a strategy derives from `base`.
pub(super) fn sample_index(request: &ChatRequest, base: u64, n: usize) -> usize {
    let seed = request.options.seed.expect("samples carry a seed");
    derive_seeds(base, n)
        .iter()
        .position(|&s| s == seed)
        .expect("a derived seed")
}

/// Counts `complete_batch` calls and forwards everything to the wrapped client.
pub(super) struct BatchCounter<C> {
    pub(super) inner: C,
    pub(super) batches: AtomicUsize,
}

impl<C: ModelClient> ModelClient for BatchCounter<C> {
    fn stream_chat(&self, request: ChatRequest) -> EventStream<'_> {
        self.inner.stream_chat(request)
    }

    fn complete_batch(&self, batch: BatchRequest) -> BoxFuture<'_, Vec<mars::Result<Completion>>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.inner.complete_batch(batch)
    }
}

// ---------------------------------------------------------------------------------------------
// Baseline and ReRead

#[tokio::test]
async fn baseline_sends_the_request_unchanged() {
    let request = ChatRequest::new("Q?")
        .with_system("S")
        .with_options(SamplingOptions {
            temperature: Some(0.3),
            seed: Some(5),
            ..SamplingOptions::default()
        });
    let strategy = Baseline::new(ScriptedClient::new([
        Turn::text("A").with_usage(usage(7, 1))
    ]));
    let outcome = bounded(strategy.run(request.clone())).await.unwrap();
    assert_eq!(strategy.inner().requests(), [request]);
    assert_eq!((outcome.answer.as_str(), outcome.winner), ("A", 0));
    assert_eq!(outcome.usage.prompt_tokens, Some(7));
    assert_eq!(outcome.usage.model_calls, 1);
}

#[tokio::test]
async fn reread_sends_the_question_twice_and_keeps_the_rest() {
    let request = ChatRequest::new("What is 2 + 2?")
        .with_system("Be brief.")
        .with_options(SamplingOptions {
            temperature: Some(0.4),
            max_tokens: Some(10),
            ..SamplingOptions::default()
        });
    let strategy = ReRead::new(
        ScriptedClient::new([Turn::text("4")]),
        ReReadConfig::default(),
    )
    .unwrap();
    let outcome = bounded(strategy.run(request.clone())).await.unwrap();
    let sent = strategy.inner().requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].last_user_message(),
        Some("What is 2 + 2?\nRead the question again: What is 2 + 2?")
    );
    assert_eq!(sent[0].system.as_deref(), Some("Be brief."));
    assert_eq!(sent[0].options, request.options);
    assert_eq!(outcome.strategy, "reread");
    assert_eq!(outcome.answer, "4");
    assert_eq!(outcome.candidates[0].options, request.options);
}

#[tokio::test(start_paused = true)]
async fn reread_streams_deltas_as_the_inner_client_produces_them() {
    let inner =
        ScriptedClient::new([Turn::chunks(["a", "b", "c"]).with_delay(Duration::from_millis(100))]);
    let strategy = ReRead::new(inner, ReReadConfig::default()).unwrap();
    let started = Instant::now();
    let mut stream = strategy.stream("Q");
    let mut arrivals = Vec::new();
    while let Some(event) = bounded(stream.next()).await {
        arrivals.push((event.unwrap(), started.elapsed()));
    }
    assert_eq!(arrivals.len(), 4, "three deltas then Done");
    assert_eq!(arrivals[0].0, StreamEvent::Delta("a".into()));
    // The first delta comes when the inner client yields it, long before the inner call ends.
    assert!(arrivals[0].1 < Duration::from_millis(200), "{arrivals:?}");
    assert!(arrivals[3].1 >= Duration::from_millis(400), "{arrivals:?}");
    let StreamEvent::Done(finish) = &arrivals[3].0 else {
        panic!("last event is Done: {arrivals:?}");
    };
    assert_eq!(finish.usage.model_calls, 1);
    assert!(finish.usage.total_time >= Duration::from_millis(400));
}

// ---------------------------------------------------------------------------------------------
// DiverseSampling

#[tokio::test]
async fn diverse_sampling_sends_spaced_temperatures_and_derived_seeds_in_one_batch() {
    let inner = BatchCounter {
        inner: ScriptedClient::from_fn(|i, _| Turn::text(format!("answer {i}"))),
        batches: AtomicUsize::new(0),
    };
    let config = DiverseSamplingConfig {
        n: 5,
        ..DiverseSamplingConfig::default()
    };
    let strategy = DiverseSampling::new(inner, config).unwrap();
    let request = ChatRequest::new("Q").with_options(SamplingOptions {
        seed: Some(42),
        max_tokens: Some(20),
        ..SamplingOptions::default()
    });
    let outcome = bounded(strategy.run(request)).await.unwrap();
    assert_eq!(
        strategy.inner().batches.load(Ordering::SeqCst),
        1,
        "one batch"
    );
    let sent = strategy.inner().inner.requests();
    let temperatures: Vec<f32> = sent
        .iter()
        .map(|r| r.options.temperature.unwrap())
        .collect();
    for (got, want) in temperatures.iter().zip([0.2, 0.4, 0.6, 0.8, 1.0]) {
        assert!((got - want).abs() < 1e-6, "{temperatures:?}");
    }
    let seeds: Vec<u64> = sent.iter().map(|r| r.options.seed.unwrap()).collect();
    assert_eq!(seeds, derive_seeds(42, 5));
    assert!(sent.iter().all(|r| r.options.max_tokens == Some(20)));
    assert!(sent.iter().all(|r| r.last_user_message() == Some("Q")));
    // The trace lists each sample's temperature and seed.
    let traced: Vec<_> = outcome
        .candidates
        .iter()
        .map(|c| c.options.seed.unwrap())
        .collect();
    assert_eq!(traced, seeds);
}

#[tokio::test]
async fn diverse_sampling_votes_over_normalised_code() {
    let answers = [
        "```rust\nfn f() -> u32 { 1 }\n```",
        "Here:\n```rust\n// returns two\nfn f() -> u32 { 2 }\n```",
        "```\nfn f() -> u32 {  2 }\n```\nThis returns 2.",
        "```rust\nfn f() -> u32 { 3 }\n```",
        "```rust\n\nfn f()  -> u32 { 2 }\n```",
    ];
    let inner =
        ScriptedClient::from_fn(move |_, request| Turn::text(answers[sample_index(request, 0, 5)]));
    let strategy = DiverseSampling::new(inner, DiverseSamplingConfig::default()).unwrap();
    let outcome = bounded(strategy.run("Write f".into())).await.unwrap();
    assert_eq!(outcome.winner, 1, "the first sample of the largest group");
    assert_eq!(outcome.answer, answers[1]);
    let votes: Vec<usize> = outcome
        .candidates
        .iter()
        .map(|c| match c.score {
            Score::Vote { votes, .. } => votes,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(votes, [1, 3, 3, 1, 3]);
}

#[tokio::test]
async fn diverse_sampling_breaks_ties_towards_the_lowest_temperature() {
    let answers = ["B", "A", "A", "B"];
    let inner =
        ScriptedClient::from_fn(move |_, request| Turn::text(answers[sample_index(request, 0, 4)]));
    let config = DiverseSamplingConfig {
        n: 4,
        ..DiverseSamplingConfig::default()
    };
    let strategy = DiverseSampling::new(inner, config).unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    assert_eq!((outcome.winner, outcome.answer.as_str()), (0, "B"));
    assert_eq!(outcome.candidates[0].options.temperature, Some(0.2));
}
