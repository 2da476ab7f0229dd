use super::*;
use crate::Error;
use crate::strategies::FailurePolicy;
use crate::strategies::calls::CallPolicy;

#[tokio::test]
async fn verifier_calls_are_bounded_by_the_concurrency() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (flight, peak) = (in_flight.clone(), most.clone());
    // The synchronous part of the call counts as in flight until its future ends.
    let verifier = Verifier::new(move |_request: &ChatRequest, _candidate: &str| {
        let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        let flight = flight.clone();
        async move {
            tokio::task::yield_now().await;
            flight.fetch_sub(1, Ordering::SeqCst);
            1.0
        }
    });
    let completion = |text: &str| crate::client::Completion {
        text: text.into(),
        finish_reason: crate::client::FinishReason::Stop,
        usage: Usage::default(),
    };
    let mut candidates: Vec<Candidate> = ["a", "b", "c"]
        .into_iter()
        .map(|t| Candidate::generated(SamplingOptions::default(), completion(t)))
        .collect();
    let client = crate::ScriptedClient::new([]);
    let policy = CallPolicy::new(FailurePolicy::Fail, std::num::NonZeroUsize::MIN);
    let calls = Calls::new(&client, "test", policy);
    let judge_usage = calls
        .score(
            &ChatRequest::new("q"),
            &Selector::Verifier(verifier),
            0,
            &mut candidates,
        )
        .await
        .unwrap();
    assert!(judge_usage.is_empty());
    assert_eq!(most.load(Ordering::SeqCst), 1);
    assert!(
        candidates
            .iter()
            .all(|c| c.score == Score::Verifier { score: Some(1.0) })
    );
}

#[test]
fn best_is_highest_score_then_shortest_then_first() {
    let cases: &[(&[Ranked], Option<usize>)] = &[
        (&[], None),
        (&[None, None], None),
        (&[Some((3.0, 10))], Some(0)),
        (
            &[Some((3.0, 10)), Some((7.0, 500)), Some((5.0, 1))],
            Some(1),
        ),
        // Equal scores: the shorter answer wins.
        (
            &[Some((8.0, 30)), Some((8.0, 12)), Some((8.0, 20))],
            Some(1),
        ),
        // Equal scores and lengths: the lower index wins.
        (&[Some((8.0, 12)), Some((8.0, 12))], Some(0)),
        // Dropped candidates never win.
        (&[None, Some((0.0, 5)), None], Some(1)),
        // NaN loses to any number, even a negative one.
        (&[Some((f64::NAN, 1)), Some((-2.0, 9))], Some(1)),
        (&[Some((0.0, 9)), Some((0.0, 9)), Some((0.0, 3))], Some(2)),
    ];
    for &(candidates, expected) in cases {
        assert_eq!(select_best(candidates), expected, "{candidates:?}");
    }
}

#[test]
fn judge_settings_are_validated_by_field() {
    let judge = |config: JudgeConfig| Selector::Judge(config);
    let cases: Vec<(Selector, Option<&str>)> = vec![
        (Selector::default(), None),
        (
            Selector::Verifier(Verifier::new(|_: &ChatRequest, _: &str| async { 0.0 })),
            None,
        ),
        (
            judge(JudgeConfig {
                instruction: "\n ".into(),
                ..JudgeConfig::default()
            }),
            Some("selector.instruction"),
        ),
        (
            judge(JudgeConfig {
                max_tokens: 0,
                ..JudgeConfig::default()
            }),
            Some("selector.max_tokens"),
        ),
        (
            judge(JudgeConfig {
                temperature: f32::NAN,
                ..JudgeConfig::default()
            }),
            Some("selector.temperature"),
        ),
        (
            judge(JudgeConfig {
                temperature: -0.1,
                ..JudgeConfig::default()
            }),
            Some("selector.temperature"),
        ),
    ];
    for (selector, expected) in cases {
        let field = match validate_selector(&selector) {
            Ok(()) => None,
            Err(Error::InvalidConfig { field, .. }) => Some(field),
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(field, expected, "{selector:?}");
    }
}

#[tokio::test]
async fn verifier_sees_request_and_candidate() {
    let verifier = Verifier::new(|request: &ChatRequest, candidate: &str| {
        let score = (request.last_user_message().unwrap_or("").len() + candidate.len()) as f64;
        async move { score }
    });
    let score = verifier.score(&ChatRequest::new("abc"), "de").await;
    assert_eq!(score, 5.0);
}
