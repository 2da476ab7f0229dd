//! The benchmark's verifier beyond its score: feedback from the visible examples, extra tests
//! run beside them, and the strategies that need it (`repair`, `codet`) built by the benchmark.

use mars::eval::grade::{Tests, Verdict};
use mars::eval::run::visible_examples_verifier;
use mars::{ChatRequest, ScriptedClient, Turn};

use crate::eval::{config, fenced, grader, task};

#[tokio::test]
async fn the_verifier_explains_failures_from_the_visible_examples_only() {
    use mars::strategies::feedback::{Feedback, Issue};
    let grader = grader().await;
    let prime = task("prime_check");
    let verifier = visible_examples_verifier(grader.clone(), prime.clone());
    let check = |code: &str| verifier.check(&ChatRequest::new(""), code);
    let broken = check(&fenced("fn is_prime(n: u64) -> bool { n }")).await;
    assert_eq!(broken.score, 0.0);
    let feedback = broken.feedback.unwrap();
    assert!(!feedback.compiled);
    let Some(Issue::CompileError {
        message,
        line,
        source_line,
    }) = feedback.issue
    else {
        panic!("a compile error: {feedback:?}");
    };
    assert!(message.starts_with("error[E0308]"), "{message}");
    assert_eq!(line, Some(1));
    assert_eq!(
        source_line.as_deref(),
        Some("fn is_prime(n: u64) -> bool { n }")
    );

    let wrong = check(&fenced("fn is_prime(n: u64) -> bool { n % 2 == 0 }")).await;
    assert_eq!(wrong.score, 0.5);
    assert_eq!(
        wrong.feedback.unwrap(),
        Feedback {
            compiled: true,
            issue: Some(Issue::FailedExample {
                example: Some("is_prime(7)".into()),
                expected: Some("true".into()),
                actual: Some("false".into()),
                message: "assertion `left == right` failed: is_prime(7)".into(),
            }),
        }
    );
    let right = check(&fenced(prime.reference.as_deref().unwrap())).await;
    assert_eq!(
        (right.score, right.feedback),
        (1.0, Some(Feedback::passed()))
    );
    let prose = check("I cannot help with that.").await;
    assert_eq!(prose.feedback.unwrap().issue, Some(Issue::NoCode));
    // Grading against the hidden tests gives no feedback, so none can leak them.
    let hidden = grader
        .grade(
            &prime,
            &fenced("fn is_prime(n: u64) -> bool { n == 7 }"),
            Tests::Hidden,
        )
        .await
        .unwrap();
    assert_eq!(
        (hidden.verdict, hidden.feedback),
        (Verdict::TestFailure, None)
    );
}

#[tokio::test]
async fn extra_tests_run_beside_the_visible_examples_and_a_broken_one_fails_alone() {
    let grader = grader().await;
    let prime = task("prime_check");
    let overfit = fenced("fn is_prime(n: u64) -> bool { n == 7 }");
    let extra = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let good = extra(&[
        "assert_eq!(is_prime(7), true);",
        "assert_eq!(is_prime(11), true);",
    ]);
    let results = grader.run_tests(&prime, &overfit, &good).await.unwrap();
    let summary: Vec<(&str, bool, bool)> = results
        .iter()
        .map(|r| (r.test.as_str(), r.visible, r.passed))
        .collect();
    assert_eq!(
        summary,
        [
            ("`is_prime(7)` returns `true`", true, true),
            ("`is_prime(10)` returns `false`", true, true),
            ("assert_eq!(is_prime(7), true);", false, true),
            ("assert_eq!(is_prime(11), true);", false, false),
        ]
    );
    // A test that does not compile fails alone; the others keep their results.
    let mut with_bad = good.clone();
    with_bad.insert(1, "assert_eq!(is_prime(\"x\"), true);".into());
    let passed: Vec<bool> = grader
        .run_tests(&prime, &overfit, &with_bad)
        .await
        .unwrap()
        .iter()
        .map(|r| r.passed)
        .collect();
    assert_eq!(passed, [true, true, true, false, false]);
    // Code that does not compile passes nothing.
    let broken = fenced("fn is_prime(n: u64) -> bool { n }");
    let results = grader.run_tests(&prime, &broken, &good).await.unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| !r.passed));
}

#[tokio::test]
async fn generated_tests_cannot_report_a_pass_for_another_test() {
    let grader = grader().await;
    let prime = task("prime_check");
    let overfit = fenced("fn is_prime(n: u64) -> bool { n == 7 }");
    let extra: Vec<String> = [
        // Calls the reporter of the seal for every test, by the names it had.
        "assert!({ for i in 0..MARS_A.len() { mars_report(i, &()); } true });",
        // Closes its test function (the `)` and `(` hide in char literals) to add a test.
        "assert!('(' == 'x'); } #[test] fn evil() { assert!(true); drop(')');",
        "assert_eq!(is_prime(11), true);",
        "assert_eq!(is_prime(7), true);",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    let passed: Vec<bool> = grader
        .run_tests(&prime, &overfit, &extra)
        .await
        .unwrap()
        .iter()
        .map(|r| r.passed)
        .collect();
    assert_eq!(passed, [true, true, false, false, false, true]);
}

#[tokio::test]
async fn without_visible_examples_a_test_that_does_not_compile_fails_alone() {
    let grader = grader().await;
    let mut bare = task("prime_check");
    bare.visible_tests = String::new();
    let reference = fenced(bare.reference.as_deref().unwrap());
    let extra: Vec<String> = [
        "assert_eq!(is_prime(11), true);",
        "assert_eq!(is_prime(\"x\"), true);",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    let results = grader.run_tests(&bare, &reference, &extra).await.unwrap();
    let passed: Vec<(bool, bool)> = results.iter().map(|r| (r.visible, r.passed)).collect();
    assert_eq!(passed, [(false, true), (false, false)]);
    // Code that does not compile still passes nothing.
    let broken = fenced("fn is_prime(n: u64) -> bool { n }");
    let results = grader.run_tests(&bare, &broken, &extra).await.unwrap();
    assert!(results.iter().all(|r| !r.passed));
}

#[tokio::test]
async fn a_generated_test_that_exits_does_not_take_the_others_down() {
    let grader = grader().await;
    let prime = task("prime_check");
    let reference = fenced(prime.reference.as_deref().unwrap());
    let extra: Vec<String> = [
        // Runs first (libtest runs in name order) and ends the binary with status 0.
        "assert!({ ::std::process::exit(0); true });",
        "assert_eq!(is_prime(11), true);",
        "assert_eq!(is_prime(9), true);",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    let passed: Vec<bool> = grader
        .run_tests(&prime, &reference, &extra)
        .await
        .unwrap()
        .iter()
        .map(|r| r.passed)
        .collect();
    assert_eq!(passed, [true, true, false, true, false]);
}

#[tokio::test]
async fn without_visible_examples_compiling_is_what_the_verifier_checks() {
    use mars::strategies::feedback::Feedback;
    let grader = grader().await;
    let mut bare = task("prime_check");
    bare.visible_tests = String::new();
    let verifier = visible_examples_verifier(grader.clone(), bare.clone());
    let check = |code: String| {
        let verifier = verifier.clone();
        async move { verifier.check(&ChatRequest::new(""), &code).await }
    };
    let compiles = check(fenced("fn is_prime(n: u64) -> bool { n == 7 }")).await;
    assert_eq!(
        (compiles.score, compiles.feedback),
        (1.0, Some(Feedback::passed()))
    );
    let broken = check(fenced("fn is_prime(n: u64) -> bool { n }")).await;
    assert_eq!(broken.score, 0.0);
    assert!(!broken.feedback.unwrap().compiled);
    // The grade itself is unchanged: compiling alone never passes the hidden tests' grading.
    let grade = grader
        .grade(
            &bare,
            &fenced("fn is_prime(n: u64) -> bool { n == 7 }"),
            Tests::Visible,
        )
        .await
        .unwrap();
    assert_eq!(grade.verdict, Verdict::TestFailure);
}

#[tokio::test]
async fn a_candidate_cannot_write_its_own_feedback() {
    use mars::strategies::feedback::Issue;
    let grader = grader().await;
    let prime = task("prime_check");
    let verifier = visible_examples_verifier(grader.clone(), prime.clone());
    // Writes a made-up failure to the raw stderr and stdout (past libtest's capture), then
    // answers wrongly for 7.
    let forger = fenced(
        "fn is_prime(n: u64) -> bool {\n\
         use std::io::Write;\n\
         let fake = \"thread 'x' panicked at <anon>:1:1:\\nassertion `left == right` failed: made_up(1)\\n  left: 1\\n right: 1\\n\";\n\
         let _ = std::io::stderr().write_all(fake.as_bytes());\n\
         let _ = std::io::stdout().write_all(fake.as_bytes());\n\
         n % 2 == 0\n}",
    );
    let check = verifier.check(&ChatRequest::new(""), &forger).await;
    assert_eq!(check.score, 0.5);
    let Some(Issue::FailedExample {
        example, actual, ..
    }) = check.feedback.unwrap().issue
    else {
        panic!("a failed example");
    };
    assert_eq!(
        (example.as_deref(), actual.as_deref()),
        (Some("is_prime(7)"), Some("false"))
    );
}

#[tokio::test]
async fn repair_and_codet_get_the_visible_examples_verifier_in_the_benchmark() {
    use mars::eval::run::{build_strategy, request_for};
    use mars::strategies::codet::DEFAULT_TEST_INSTRUCTION;
    use mars::strategies::sampling::derive_seeds;
    let grader = grader().await;
    let prime = task("prime_check");
    let reference = fenced(prime.reference.as_deref().unwrap());
    let overfit = fenced("fn is_prime(n: u64) -> bool { n == 7 }");

    // Repair: a first answer that does not compile, then the reference once shown the error.
    let answers = [
        fenced("fn is_prime(n: u64) -> bool { n }"),
        reference.clone(),
    ];
    let client = ScriptedClient::from_fn(move |i, _| Turn::text(answers[i.min(1)].clone()));
    let run = config("repair", 1);
    let strategy = build_strategy(&run.strategies[0], &client, &grader, &prime, &run).unwrap();
    let outcome = strategy.run(request_for(&prime, &run, 1)).await.unwrap();
    assert_eq!(outcome.answer, reference);
    assert_eq!(outcome.usage.model_calls, 2);
    let shown = client.requests()[1]
        .last_user_message()
        .unwrap_or_default()
        .to_owned();
    assert!(shown.contains("error[E0308]: mismatched types"), "{shown}");
    assert!(shown.contains("at line 1 of the code"), "{shown}");

    // CodeT: two candidates overfit the examples, one is right; the generated tests side with
    // it (2 × 3 tests passed against 1 × 7).
    let seeds = derive_seeds(1, 3);
    let (right, wrong) = (reference.clone(), overfit.clone());
    let client = ScriptedClient::from_fn(move |_, request| {
        let prompt = request.last_user_message().unwrap_or_default();
        if prompt.ends_with(DEFAULT_TEST_INSTRUCTION) {
            Turn::text(
                "assert_eq!(is_prime(2), true);\nassert_eq!(is_prime(3), true);\n\
                 assert_eq!(is_prime(5), true);\nassert_eq!(is_prime(13), true);\n\
                 assert_eq!(is_prime(9), false);",
            )
        } else if request.options.seed == Some(seeds[1]) {
            Turn::text(right.clone())
        } else {
            Turn::text(wrong.clone())
        }
    });
    let run = config("codet", 1);
    let strategy = build_strategy(&run.strategies[0], &client, &grader, &prime, &run).unwrap();
    let outcome = strategy.run(request_for(&prime, &run, 1)).await.unwrap();
    assert_eq!(outcome.answer, reference, "{:#?}", outcome.steps);
    assert_eq!(outcome.usage.model_calls, 4);
    let matrix = &outcome.steps[1];
    assert!(
        matrix.text.contains("candidate 1: PPPPPPP passes 7"),
        "{}",
        matrix.text
    );
}
