//! BestOfN: the requests it sends, judge and verifier selection, ties.

use std::sync::Arc;

use mars::strategies::sampling::derive_seeds;
use mars::strategies::{BestOfN, BestOfNConfig, JudgeConfig, Score, Selector, Verifier};
use mars::{ChatRequest, ScriptedClient, Turn};

use super::{bounded, is_judge_call, judged_text, sample_index, usage};

// ---------------------------------------------------------------------------------------------
// BestOfN

/// Candidates answer by seed; judge calls rate by a table keyed on the candidate's text.
fn judged_client(
    answers: &'static [&'static str],
    ratings: &'static [(&'static str, &'static str)],
) -> ScriptedClient {
    let n = answers.len();
    ScriptedClient::from_fn(move |_, request| {
        if is_judge_call(request) {
            let text = judged_text(request);
            let reply = ratings
                .iter()
                .find(|(a, _)| *a == text)
                .map_or("?", |(_, r)| r);
            Turn::text(reply).with_usage(usage(100, 2))
        } else {
            Turn::text(answers[sample_index(request, 0, n)]).with_usage(usage(10, 5))
        }
    })
}

#[tokio::test]
async fn best_of_n_sends_n_candidates_then_n_judge_calls() {
    static ANSWERS: [&str; 3] = ["alpha", "beta", "gamma"];
    static RATINGS: [(&str, &str); 3] = [("alpha", "4"), ("beta", "8"), ("gamma", "6")];
    let config = BestOfNConfig {
        n: 3,
        temperature: Some(0.7),
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::new(judged_client(&ANSWERS, &RATINGS), config).unwrap();
    let request = ChatRequest::new("Q").with_system("S");
    let outcome = bounded(strategy.run(request)).await.unwrap();
    let sent = strategy.inner().requests();
    assert_eq!(sent.len(), 6);
    let (candidates, judges) = sent.split_at(3);
    assert!(candidates.iter().all(|r| !is_judge_call(r)));
    assert!(
        candidates
            .iter()
            .all(|r| r.options.temperature == Some(0.7))
    );
    let seeds: Vec<u64> = candidates.iter().map(|r| r.options.seed.unwrap()).collect();
    assert_eq!(seeds, derive_seeds(0, 3));
    assert!(judges.iter().all(is_judge_call));
    let mut judged: Vec<String> = judges.iter().map(judged_text).collect();
    judged.sort();
    assert_eq!(judged, ["alpha", "beta", "gamma"]);
    let judge = JudgeConfig::default();
    for call in judges {
        assert_eq!(call.system.as_deref(), Some("S"));
        assert_eq!(call.messages[0].content, "Q");
        assert_eq!(call.options.temperature, Some(judge.temperature));
        assert_eq!(call.options.max_tokens, Some(judge.max_tokens));
    }
    assert_eq!(outcome.answer, "beta");
    // Usage sums every call: 3 candidates (10 + 5) and 3 judge calls (100 + 2).
    assert_eq!(outcome.usage.model_calls, 6);
    assert_eq!(outcome.usage.prompt_tokens, Some(3 * 10 + 3 * 100));
    assert_eq!(outcome.usage.completion_tokens, Some(3 * 5 + 3 * 2));
}

#[tokio::test]
async fn best_of_n_parses_junk_ratings_as_zero_and_records_them() {
    static ANSWERS: [&str; 3] = ["one", "two", "three"];
    static RATINGS: [(&str, &str); 3] = [
        ("one", "Rating: 6/10"),
        ("two", "I cannot judge this."),
        ("three", "**9**"),
    ];
    let config = BestOfNConfig {
        n: 3,
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::new(judged_client(&ANSWERS, &RATINGS), config).unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    assert_eq!(outcome.answer, "three");
    let scores: Vec<(f64, bool, &str)> = outcome
        .candidates
        .iter()
        .map(|c| match &c.score {
            Score::Judge {
                rating,
                parsed,
                reply,
                ..
            } => (*rating, *parsed, reply.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        scores,
        [
            (6.0, true, "Rating: 6/10"),
            (0.0, false, "I cannot judge this."),
            (9.0, true, "**9**"),
        ]
    );
}

#[tokio::test]
async fn best_of_n_judge_ties_go_to_the_shorter_answer_then_the_lower_index() {
    static ANSWERS: [&str; 4] = ["a long answer", "short", "tiny!", "x"];
    static RATINGS: [(&str, &str); 4] = [
        ("a long answer", "7"),
        ("short", "7"),
        ("tiny!", "7"),
        ("x", "2"),
    ];
    let strategy =
        BestOfN::new(judged_client(&ANSWERS, &RATINGS), BestOfNConfig::default()).unwrap();
    let outcome = bounded(strategy.run("Q".into())).await.unwrap();
    assert_eq!((outcome.winner, outcome.answer.as_str()), (1, "short"));
}

#[tokio::test]
async fn best_of_n_with_a_verifier_makes_no_judge_calls() {
    let answers = ["fn f() -> i32 { 0 }", "fn f() -> u64 { 1 }", "no code"];
    let inner =
        ScriptedClient::from_fn(move |_, request| Turn::text(answers[sample_index(request, 0, 3)]));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_verifier = Arc::clone(&seen);
    let verifier = Verifier::new(move |request: &ChatRequest, candidate: &str| {
        seen_by_verifier
            .lock()
            .unwrap()
            .push(request.last_user_message().unwrap_or("").to_owned());
        let score = match candidate {
            c if c.contains("u64") => 2.0,
            c if c.contains("fn") => 1.0,
            _ => f64::NAN,
        };
        async move { score }
    });
    let config = BestOfNConfig {
        n: 3,
        selector: Selector::Verifier(verifier),
        ..BestOfNConfig::default()
    };
    let strategy = BestOfN::new(inner, config).unwrap();
    let outcome = bounded(strategy.run("Write f".into())).await.unwrap();
    assert_eq!(strategy.inner().requests().len(), 3, "no judge calls");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["Write f", "Write f", "Write f"]
    );
    assert_eq!(outcome.answer, answers[1]);
    let scores: Vec<_> = outcome.candidates.iter().map(|c| c.score.clone()).collect();
    assert_eq!(
        scores,
        [
            Score::Verifier { score: Some(1.0) },
            Score::Verifier { score: Some(2.0) },
            Score::Verifier { score: None },
        ]
    );
    assert_eq!(outcome.usage.model_calls, 3);
}
