//! Nested strategies, boxed strategies, concurrency and the seed's entry points.

use std::time::Duration;

use futures::StreamExt;
use mars::strategies::{
    Baseline, BestOfN, BestOfNAggregator, BestOfNConfig, DiverseSampling,
    DiverseSamplingAggregator, DiverseSamplingConfig, ReRead, ReReadAggregator, ReReadConfig,
    Selector, Strategy, Verifier,
};
use mars::{ChatRequest, ModelClient, ModelClientExt, ScriptedClient, StreamEvent, Turn};
use tokio::time::Instant;

use super::{bounded, is_judge_call, judged_text, sample_index, usage};

// ---------------------------------------------------------------------------------------------
// Composition

#[tokio::test]
async fn best_of_n_over_reread_rereads_every_call() {
    let inner = ScriptedClient::from_fn(|_, request| {
        let last = request.last_user_message().unwrap_or("");
        if last.starts_with("Rate the above response") {
            Turn::text(if judged_text(request) == "answer 1" {
                "9"
            } else {
                "1"
            })
        } else {
            Turn::text(format!("answer {}", sample_index(request, 0, 2)))
        }
    });
    let reread = ReRead::new(inner, ReReadConfig::default()).unwrap();
    let strategy = BestOfN::new(
        reread,
        BestOfNConfig {
            n: 2,
            ..BestOfNConfig::default()
        },
    )
    .unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    assert_eq!(outcome.answer, "answer 1");
    let sent = strategy.inner().inner().requests();
    assert_eq!(sent.len(), 4);
    for request in &sent[..2] {
        assert_eq!(
            request.last_user_message(),
            Some("Q\nRead the question again: Q")
        );
    }
    for request in &sent[2..] {
        let last = request.last_user_message().unwrap();
        assert!(
            last.contains("\nRead the question again: Rate the above"),
            "{last}"
        );
    }
    assert_eq!(outcome.usage.model_calls, 4);
}

#[tokio::test]
async fn diverse_sampling_over_best_of_n_sums_every_inner_call() {
    let inner = ScriptedClient::from_fn(|_, request| {
        Turn::text(format!("seed {}", request.options.seed.unwrap())).with_usage(usage(2, 1))
    });
    let verifier = Verifier::new(|_: &ChatRequest, candidate: &str| {
        let score = candidate.len() as f64;
        async move { score }
    });
    let best_of = BestOfN::new(
        inner,
        BestOfNConfig {
            n: 2,
            selector: Selector::Verifier(verifier),
            ..BestOfNConfig::default()
        },
    )
    .unwrap();
    let strategy = DiverseSampling::new(
        best_of,
        DiverseSamplingConfig {
            n: 3,
            ..DiverseSamplingConfig::default()
        },
    )
    .unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    assert_eq!(outcome.usage.model_calls, 6);
    assert_eq!(outcome.usage.prompt_tokens, Some(12));
    assert_eq!(outcome.usage.completion_tokens, Some(6));
    assert_eq!(outcome.candidates[0].usage.model_calls, 2);
    // The six innermost samples all got distinct seeds.
    let mut seeds: Vec<u64> = strategy
        .inner()
        .inner()
        .requests()
        .iter()
        .map(|r| r.options.seed.unwrap())
        .collect();
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 6);
}

#[tokio::test]
async fn strategies_work_as_boxed_model_clients_and_boxed_strategies() {
    let client = || {
        ScriptedClient::from_fn(|_, request| {
            Turn::text(if is_judge_call(request) { "5" } else { "42" }).with_usage(usage(1, 1))
        })
    };
    let clients: Vec<(Box<dyn ModelClient>, u32)> = vec![
        (Box::new(Baseline::new(client())), 1),
        (
            Box::new(ReRead::new(client(), ReReadConfig::default()).unwrap()),
            1,
        ),
        (
            Box::new(DiverseSampling::new(client(), DiverseSamplingConfig::default()).unwrap()),
            5,
        ),
        (
            Box::new(BestOfN::new(client(), BestOfNConfig::default()).unwrap()),
            8,
        ),
    ];
    for (client, calls) in &clients {
        let events: Vec<_> = bounded(client.stream("Q").collect::<Vec<_>>()).await;
        let events: Vec<StreamEvent> = events.into_iter().map(Result::unwrap).collect();
        assert_eq!(events[0], StreamEvent::Delta("42".into()));
        assert_eq!(events.len(), 2, "deltas, then exactly one Done: {events:?}");
        let StreamEvent::Done(finish) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(finish.usage.model_calls, *calls);
        assert_eq!(finish.usage.prompt_tokens, Some(u64::from(*calls)));
    }
    let strategies: Vec<Box<dyn Strategy>> = vec![
        Box::new(Baseline::new(client())),
        Box::new(BestOfN::new(client(), BestOfNConfig::default()).unwrap()),
    ];
    for strategy in &strategies {
        let outcome = bounded(strategy.run("Q".into())).await.unwrap();
        assert_eq!(outcome.strategy, strategy.name());
        assert_eq!(outcome.answer, "42");
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency (paused clock: deterministic durations)

#[tokio::test(start_paused = true)]
async fn candidates_run_concurrently_within_the_bound() {
    // Each call sleeps 200 ms before its delta and 200 ms before Done: 400 ms per call.
    let slow = || {
        ScriptedClient::from_fn(|_, request| {
            let text = if is_judge_call(request) { "5" } else { "A" };
            Turn::text(text).with_delay(Duration::from_millis(200))
        })
    };
    let one_call = Duration::from_millis(400);
    for (concurrency, rounds) in [(4, 1), (2, 2), (1, 4)] {
        let config = DiverseSamplingConfig {
            n: 4,
            concurrency: concurrency.try_into().unwrap(),
            ..DiverseSamplingConfig::default()
        };
        let strategy = DiverseSampling::new(slow(), config).unwrap();
        let started = Instant::now();
        let outcome = bounded(strategy.run("Q".into())).await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= one_call * rounds, "{concurrency}: {elapsed:?}");
        assert!(
            elapsed < one_call * (rounds + 1),
            "{concurrency}: {elapsed:?}"
        );
        assert_eq!(
            outcome.usage.total_time,
            elapsed.min(outcome.usage.total_time)
        );
        assert!(outcome.usage.total_time >= one_call * rounds);
    }
    // Best-of-4 with a judge: one round of candidates, then one round of judge calls.
    let strategy = BestOfN::new(slow(), BestOfNConfig::default()).unwrap();
    let started = Instant::now();
    bounded(strategy.run("Q".into())).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= one_call * 2 && elapsed < one_call * 3,
        "{elapsed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The seed's entry points

#[tokio::test]
async fn seed_entry_points_run_the_strategies() {
    let client = ScriptedClient::from_fn(|_, request| {
        Turn::text(if is_judge_call(request) { "7" } else { "ok" })
    });
    let outcome = ReReadAggregator::run_reread("Q", "S", ReReadConfig::default(), &client)
        .await
        .unwrap();
    assert_eq!(outcome.answer, "ok");
    let outcome = DiverseSamplingAggregator::run_diverse_sampling(
        "Q",
        "",
        DiverseSamplingConfig::default(),
        &client,
    )
    .await
    .unwrap();
    assert_eq!(outcome.candidates.len(), 5);
    let dynamic: &dyn ModelClient = &client;
    let (solution, metadata) =
        BestOfNAggregator::run_best_of_n("Q", "S", BestOfNConfig::default(), dynamic)
            .await
            .unwrap();
    assert_eq!(solution, "ok");
    assert_eq!(metadata.candidates.len(), 4);
    let sent = client.requests();
    assert_eq!(sent[0].system.as_deref(), Some("S"));
    assert_eq!(sent[1].system, None, "an empty system prompt is not sent");
}

#[tokio::test]
async fn a_strategy_wraps_a_boxed_client_and_its_trace_round_trips_through_json() {
    let inner: Box<dyn ModelClient> = Box::new(ScriptedClient::from_fn(|_, request| {
        Turn::text(if is_judge_call(request) {
            "6/10"
        } else {
            "fn main() {}"
        })
    }));
    let strategy = BestOfN::new(inner, BestOfNConfig::default()).unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    let json = serde_json::to_string(&outcome).unwrap();
    assert!(json.contains(r#""kind":"judge""#), "{json}");
    let back: mars::Outcome = serde_json::from_str(&json).unwrap();
    assert_eq!(back, outcome);
}
