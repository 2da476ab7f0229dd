use std::sync::{Arc, Mutex};

use super::*;
use crate::strategies::sampling::derive_seeds;
use crate::strategies::test_support::{options, tokens};
use crate::{ScriptedClient, Turn};

const WRONG: &str = "fn sq(x: i32) -> i32 { x + x }";
const RIGHT: &str = "fn sq(x: i32) -> i32 { x * x }";
const TESTS: &str = "Here are tests:\n```rust\nassert_eq!(sq(2), 4);\nassert_eq!(sq(3), 9);\nassert_eq!(sq(0), 0);\n```";

/// Candidate `i` answers `answers[i]` (by its seed); the test call gets `tests`. Every reply
/// reports 10 prompt and 5 completion tokens.
fn model(answers: &'static [&'static str], tests: Turn) -> ScriptedClient {
    let seeds = derive_seeds(7, answers.len());
    ScriptedClient::from_fn(move |_, request| {
        let asks_tests = request
            .last_user_message()
            .is_some_and(|m| m.ends_with(DEFAULT_TEST_INSTRUCTION));
        if asks_tests {
            return tests.clone();
        }
        let seed = request.options.seed.unwrap_or_default();
        match seeds.iter().position(|s| *s == seed) {
            Some(i) => Turn::text(answers[i]).with_usage(tokens(10, 5)),
            None => Turn::error("unknown seed"),
        }
    })
}

/// A test runner over one visible example (`sq(2)`, which both codes pass): `x * x` passes
/// every test, `x + x` only those computing `sq(2)` or `sq(0)`. Records each run's tests.
fn runner(seen: Arc<Mutex<Vec<Vec<String>>>>) -> Verifier {
    Verifier::new(|_, _: &str| async { 0.0 }).with_tests(move |_, code: &str, tests: &[String]| {
        seen.lock().unwrap().push(tests.to_vec());
        let right = code.contains("x * x");
        let mut results = vec![TestResult {
            test: "`sq(2)` returns `4`".into(),
            visible: true,
            passed: true,
        }];
        results.extend(tests.iter().map(|t| TestResult {
            test: t.clone(),
            visible: false,
            passed: right || t.contains("sq(2)") || t.contains("sq(0)"),
        }));
        async move { results }
    })
}

fn config(n: usize, verifier: Verifier) -> CodeTConfig {
    CodeTConfig {
        n,
        verifier: Some(verifier),
        ..CodeTConfig::default()
    }
}

fn ask() -> ChatRequest {
    ChatRequest::new("Write sq")
        .with_system("Be brief.")
        .with_options(options(0.2, 7, 64))
}

#[tokio::test]
async fn the_tests_outvote_a_wrong_majority() {
    // Three candidates agree on the wrong code; two on the right one.
    let answers = &[WRONG, RIGHT, WRONG, RIGHT, WRONG];
    let client = model(answers, Turn::text(TESTS).with_usage(tokens(20, 30)));
    let outcome = CodeT::new(&client, config(5, runner(Arc::default())))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    // With one separating test, agreement still favours the majority: the wrong group passes
    // the example, sq(2) and sq(0), 3 × 3 = 9; the right one passes all 4, 2 × 4 = 8.
    assert_eq!(outcome.answer, WRONG);
    assert_eq!(
        outcome.candidates[0].score,
        Score::Verifier { score: Some(9.0) }
    );
    assert_eq!(
        outcome.candidates[1].score,
        Score::Verifier { score: Some(8.0) }
    );

    // With one more separating test the right pair wins: 2 × 5 = 10 against 3 × 3 = 9.
    let more = "assert_eq!(sq(2), 4);\nassert_eq!(sq(3), 9);\nassert_eq!(sq(0), 0);\nassert_eq!(sq(5), 25);";
    let client = model(answers, Turn::text(more));
    let outcome = CodeT::new(&client, config(5, runner(Arc::default())))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(outcome.answer, RIGHT);
    assert_eq!(outcome.winner, 1);
    let scores: Vec<_> = outcome.candidates.iter().map(|c| c.score.clone()).collect();
    let expected: Vec<Score> = [9.0, 10.0, 9.0, 10.0, 9.0]
        .into_iter()
        .map(|s| Score::Verifier { score: Some(s) })
        .collect();
    assert_eq!(scores, expected);
    // The trace shows the matrix.
    let matrix = outcome
        .steps
        .iter()
        .find(|s| s.stage == "test matrix")
        .unwrap();
    assert!(
        matrix.text.contains("t0 (visible): `sq(2)` returns `4`"),
        "{}",
        matrix.text
    );
    assert!(
        matrix
            .text
            .contains("t4 (generated): assert_eq!(sq(5), 25);")
    );
    assert!(
        matrix
            .text
            .contains("candidate 0: PP.P. passes 3; group [0, 2, 4] of 3: score 9")
    );
    assert!(
        matrix
            .text
            .contains("candidate 1: PPPPP passes 5; group [1, 3] of 2: score 10")
    );
    assert_eq!(
        matrix.note.as_deref(),
        Some("5 candidates × 5 tests (4 generated); winner: candidate 1")
    );
    assert_eq!(matrix.usage.model_calls, 0);
}

#[tokio::test]
async fn the_test_call_asks_from_the_prompt_alone_and_its_tests_reach_the_runner() {
    let client = model(
        &[WRONG, RIGHT],
        Turn::text(TESTS).with_usage(tokens(20, 30)),
    );
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let outcome = CodeT::new(&client, config(2, runner(Arc::clone(&seen))))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    let requests = client.requests();
    let test_call = requests
        .iter()
        .find(|r| {
            r.last_user_message()
                .is_some_and(|m| m.ends_with(DEFAULT_TEST_INSTRUCTION))
        })
        .unwrap();
    assert_eq!(test_call.system.as_deref(), Some("Be brief."));
    assert_eq!(
        test_call.last_user_message(),
        Some(format!("Write sq\n\n{DEFAULT_TEST_INSTRUCTION}").as_str())
    );
    assert_eq!(test_call.messages.len(), 1, "no candidate is shown");
    let parsed = [
        "assert_eq!(sq(2), 4);",
        "assert_eq!(sq(3), 9);",
        "assert_eq!(sq(0), 0);",
    ];
    let runs = seen.lock().unwrap().clone();
    assert_eq!(runs.len(), 2, "one run per candidate");
    assert!(runs.iter().all(|r| *r == parsed));
    let generated = &outcome.steps[0];
    assert_eq!(generated.stage, "generated tests");
    assert_eq!(generated.note.as_deref(), Some("3 test lines parsed"));
    // n + 1 calls; usage sums the candidates' and the test call's.
    assert_eq!(requests.len(), 3);
    assert_eq!(outcome.usage.model_calls, 3);
    assert_eq!(outcome.usage.prompt_tokens, Some(40));
    assert_eq!(outcome.usage.completion_tokens, Some(40));
    assert_eq!(outcome.answer, RIGHT);
}

#[tokio::test]
async fn a_failed_test_call_fails_the_run_or_leaves_the_visible_examples() {
    let failing = || model(&[WRONG, RIGHT], Turn::error("connection reset"));
    let client = failing();
    let err = CodeT::new(&client, config(2, runner(Arc::default())))
        .unwrap()
        .run(ask())
        .await
        .unwrap_err();
    match err {
        Error::StrategyCall { strategy, call, .. } => {
            assert_eq!((strategy, call.as_str()), ("codet", "test generation"));
        }
        other => panic!("{other:?}"),
    }
    let client = failing();
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let config = CodeTConfig {
        on_failure: FailurePolicy::Drop,
        ..config(2, runner(Arc::clone(&seen)))
    };
    let outcome = CodeT::new(&client, config)
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert!(seen.lock().unwrap().iter().all(Vec::is_empty));
    // Both pass the one visible example: a group of 2 × 1 test; the shorter... equal lengths,
    // so the first.
    assert_eq!(outcome.winner, 0);
    assert_eq!(outcome.usage.model_calls, 3, "the failed call counts");
    assert_eq!(outcome.usage.prompt_tokens, None, "its tokens are unknown");
    assert!(
        outcome.steps[0]
            .note
            .as_deref()
            .unwrap()
            .contains("test generation")
    );
}

#[tokio::test]
async fn a_dropped_candidate_is_left_out_of_the_matrix() {
    // Seeds of 3 candidates, but the model knows only 2 answers: the third call fails.
    let seeds = derive_seeds(7, 3);
    let client = ScriptedClient::from_fn(move |_, request| {
        if request
            .last_user_message()
            .is_some_and(|m| m.ends_with(DEFAULT_TEST_INSTRUCTION))
        {
            return Turn::text(TESTS);
        }
        match seeds.iter().position(|s| Some(*s) == request.options.seed) {
            Some(0) => Turn::text(WRONG),
            Some(1) => Turn::text(RIGHT),
            _ => Turn::error("overloaded"),
        }
    });
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let config = CodeTConfig {
        on_failure: FailurePolicy::Drop,
        ..config(3, runner(Arc::clone(&seen)))
    };
    let outcome = CodeT::new(&client, config)
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(outcome.candidates[2].dropped.is_some());
    assert_eq!(outcome.candidates[2].score, Score::Unscored);
    assert_eq!(outcome.answer, RIGHT);
    assert!(outcome.steps[1].text.contains("candidate 2: dropped"));
    assert_eq!(outcome.usage.model_calls, 4);
}

#[test]
fn test_lines_are_parsed_from_replies() {
    let cases: &[(&str, usize, &[&str])] = &[
        ("assert_eq!(f(1), 2);", 10, &["assert_eq!(f(1), 2);"]),
        ("  assert_eq!(f(1), 2)  ", 10, &["assert_eq!(f(1), 2);"]),
        ("- `assert!(g(\"a)\"));`", 10, &["assert!(g(\"a)\"));"]),
        ("* assert_ne!(f(1), 3);", 10, &["assert_ne!(f(1), 3);"]),
        // Unbalanced, cut off, two calls on one line, prose, a let: skipped.
        ("assert_eq!(f(1), 2", 10, &[]),
        ("assert_eq!(f(1), 2); assert_eq!(f(2), 4);", 10, &[]),
        ("The function returns 2 for 1.", 10, &[]),
        ("let x = f(1);", 10, &[]),
        // A char literal holding a bracket is not a bracket, and a line that closes its test
        // function to add one of its own is skipped.
        ("assert!(g('(') == 1);", 10, &["assert!(g('(') == 1);"]),
        (
            "assert!('(' == 'x'); } #[test] fn evil() { assert!(true); drop(')')",
            10,
            &[],
        ),
        ("assert!(f(\"}\") == 1); }", 10, &[]),
        ("assert!(a) == (b)", 10, &[]),
        ("assert!(x, \"/*\"); /* )", 10, &[]),
        (
            "assert_eq!(f(1), 2);\nassert_eq!(f(1), 2);\nassert_eq!(f(2), 4);\nassert_eq!(f(3), 6);",
            2,
            &["assert_eq!(f(1), 2);", "assert_eq!(f(2), 4);"],
        ),
        ("assert_eq!(f(1), 2);", 0, &[]),
    ];
    for &(reply, max, expected) in cases {
        assert_eq!(parse_tests(reply, max), expected, "{reply:?} max {max}");
    }
}

#[test]
fn dual_agreement_is_group_size_times_tests_passed() {
    let row = |r: &[bool]| Some(r.to_vec());
    type Rows = Vec<Option<Vec<bool>>>;
    let cases: Vec<(Rows, Vec<Option<usize>>)> = vec![
        (vec![], vec![]),
        (vec![None], vec![None]),
        (vec![row(&[false, false])], vec![Some(0)]),
        (
            vec![row(&[true, false]), row(&[true, false]), row(&[true, true])],
            vec![Some(2), Some(2), Some(2)],
        ),
        (
            vec![row(&[true, true, false]), None, row(&[true, true, false])],
            vec![Some(4), None, Some(4)],
        ),
    ];
    for (rows, expected) in cases {
        assert_eq!(dual_agreement(&rows), expected, "{rows:?}");
    }
}

#[test]
fn invalid_configs_are_rejected() {
    let runs = runner(Arc::default());
    let with = |f: fn(&mut CodeTConfig)| {
        let mut config = config(2, runner(Arc::default()));
        f(&mut config);
        config
    };
    let scores_only = Verifier::new(|_, _: &str| async { 1.0 });
    let cases: Vec<(CodeTConfig, &str)> = vec![
        (CodeTConfig::default(), "verifier"),
        (config(2, scores_only), "verifier"),
        (with(|c| c.n = 0), "n"),
        (with(|c| c.max_tests = MAX_TESTS + 1), "max_tests"),
        (
            with(|c| c.test_instruction = "\n".into()),
            "test_instruction",
        ),
        (with(|c| c.temperature = Some(f32::NAN)), "temperature"),
    ];
    for (config, field) in cases {
        match CodeT::new(ScriptedClient::new([]), config) {
            Err(Error::InvalidConfig { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(CodeT::new(ScriptedClient::new([]), config(1, runs)).is_ok());
}

#[tokio::test]
async fn when_no_candidate_passes_a_test_the_verifier_check_decides_not_the_length() {
    // No candidate passes any test, so every dual-agreement score is 0.
    let verifier = |checked: Arc<Mutex<usize>>| {
        Verifier::new(move |_, code: &str| {
            *checked.lock().unwrap() += 1;
            let score = if code.contains("x * x") { 0.5 } else { 0.0 };
            async move { score }
        })
        .with_tests(|_, _: &str, tests: &[String]| {
            let results: Vec<TestResult> = tests
                .iter()
                .map(|t| TestResult {
                    test: t.clone(),
                    visible: false,
                    passed: false,
                })
                .collect();
            async move { results }
        })
    };
    let checked: Arc<Mutex<usize>> = Arc::default();
    let client = model(&[RIGHT, "fn sq() {}"], Turn::text(TESTS));
    let outcome = CodeT::new(&client, config(2, verifier(Arc::clone(&checked))))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!((outcome.winner, outcome.answer.as_str()), (0, RIGHT));
    assert_eq!(*checked.lock().unwrap(), 2);
    assert_eq!(outcome.usage.model_calls, 3, "checks are no model calls");
    assert!(
        outcome.steps[1]
            .note
            .as_deref()
            .unwrap()
            .contains("every score 0")
    );
    // Equal checks: the earlier candidate, though longer.
    let client = model(&[WRONG, "fn sq() {}"], Turn::text(TESTS));
    let outcome = CodeT::new(&client, config(2, verifier(Arc::default())))
        .unwrap()
        .run(ask())
        .await
        .unwrap();
    assert_eq!(outcome.winner, 0);
}

/// Counts the calls in flight (from first poll to last event) of the client it wraps, keeping
/// the highest count.
struct Counting {
    inner: ScriptedClient,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
}

impl crate::ModelClient for Counting {
    fn stream_chat(&self, request: ChatRequest) -> crate::client::EventStream<'_> {
        use futures::StreamExt;
        use std::sync::atomic::Ordering;
        let (flight, peak) = (Arc::clone(&self.in_flight), Arc::clone(&self.peak));
        let mut inner = self.inner.stream_chat(request);
        async_stream::stream! {
            let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            while let Some(event) = inner.next().await {
                tokio::task::yield_now().await;
                yield event;
            }
            tokio::task::yield_now().await;
            flight.fetch_sub(1, Ordering::SeqCst);
        }
        .boxed()
    }
}

#[tokio::test]
async fn the_test_call_shares_the_concurrency_bound_with_the_candidates() {
    use std::sync::atomic::Ordering;
    for concurrency in [1, 2, 3] {
        let client = Counting {
            inner: model(&[WRONG, RIGHT, WRONG, RIGHT], Turn::text(TESTS)),
            in_flight: Arc::default(),
            peak: Arc::default(),
        };
        let config = CodeTConfig {
            concurrency: NonZeroUsize::new(concurrency).unwrap(),
            ..config(4, runner(Arc::default()))
        };
        let outcome = CodeT::new(&client, config)
            .unwrap()
            .run(ask())
            .await
            .unwrap();
        assert_eq!(outcome.usage.model_calls, 5);
        assert_eq!(
            client.peak.load(Ordering::SeqCst),
            concurrency,
            "concurrency {concurrency}"
        );
    }
}

#[tokio::test]
async fn under_fail_a_failed_batch_does_not_wait_for_the_test_call() {
    use futures::StreamExt;
    // Every candidate fails at once; the test call never answers.
    struct Stuck(ScriptedClient);
    impl crate::ModelClient for Stuck {
        fn stream_chat(&self, request: ChatRequest) -> crate::client::EventStream<'_> {
            let asks_tests = request
                .last_user_message()
                .is_some_and(|m| m.ends_with(DEFAULT_TEST_INSTRUCTION));
            if asks_tests {
                return futures::stream::pending().boxed();
            }
            self.0.stream_chat(request)
        }
    }
    let client = Stuck(ScriptedClient::from_fn(|_, _| Turn::error("overloaded")));
    let err = CodeT::new(&client, config(2, runner(Arc::default())))
        .unwrap()
        .run(ask())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::StrategyCall { ref call, .. } if call.starts_with("candidate")),
        "{err:?}"
    );
}
