//! Examples read from prompts, in the sandbox: a JSONL row's visible tests come from the
//! examples its prompt shows (and `repair` shows the failed one as feedback), and a verifier
//! built from a chat request alone checks candidates against them.

use std::collections::HashSet;
use std::time::Duration;

use mars::eval::grade::{Tests, Verdict};
use mars::eval::report::{BackendInfo, Report};
use mars::eval::run::{AnswerSource, run_matrix};
use mars::eval::tasks::parse_jsonl;
use mars::eval::verify::{RequestVerifier, VerifyLimits};
use mars::strategies::feedback::Issue;
use mars::strategies::{CodeT, CodeTConfig, Repair, RepairConfig};
use mars::{ChatRequest, ScriptedClient, Turn};

use crate::eval::{config, fenced, grader};

/// MultiPL-E's shape: `///` doctests in the prompt, the hidden tests in `fn main`.
const ROWS: &str = concat!(
    r#"{"name":"HumanEval_53_add","prompt":"/// Add two numbers x and y\n/// >>> add(2, 3)\n/// 5\n/// >>> add(5, 7)\n/// 12\nfn add(x: isize, y: isize) -> isize {\n","tests":"}\n\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(0, 1), 1);\n    assert_eq!(candidate(7, 5), 12);\n}\n"}"#,
    "\n",
    r#"{"name":"no_examples","prompt":"/// Return the double of x.\nfn double(x: isize) -> isize {\n","tests":"}\n\nfn main() {\n    assert_eq!(double(2), 4);\n}\n"}"#,
    "\n"
);

#[tokio::test]
async fn jsonl_rows_get_their_prompts_examples_and_never_their_hidden_tests() {
    let tasks = parse_jsonl(ROWS, "rows.jsonl").unwrap();
    let add = &tasks[0];
    assert!(
        add.visible_tests.contains("add(2, 3)"),
        "{}",
        add.visible_tests
    );
    assert!(add.visible_tests.contains("add(5, 7)"));
    assert!(
        !add.visible_tests.contains("candidate"),
        "no hidden test is visible"
    );
    assert!(
        tasks[1].visible_tests.is_empty(),
        "a prompt without examples stays compile-only"
    );
    let grader = grader().await;
    // An answer that passes the visible examples but not the hidden tests: the verifier cannot
    // tell, and grading can.
    let sneaky = fenced(
        "fn add(x: isize, y: isize) -> isize { if x == 2 { 5 } else if x == 5 { 12 } else { 0 } }",
    );
    let visible = grader.grade(add, &sneaky, Tests::Visible).await.unwrap();
    assert_eq!(visible.verdict, Verdict::Pass, "{:?}", visible.detail);
    assert_eq!(visible.tests_passed, 2);
    let hidden = grader.grade(add, &sneaky, Tests::Hidden).await.unwrap();
    assert_eq!(hidden.verdict, Verdict::TestFailure);
}

#[tokio::test]
async fn a_benchmark_repair_shows_the_failed_prompt_example_and_the_report_counts_examples() {
    let tasks = parse_jsonl(ROWS, "rows.jsonl").unwrap();
    let grader = grader().await;
    let client = ScriptedClient::from_fn(|_, request| {
        let prompt = request.last_user_message().unwrap_or_default();
        if prompt.contains("fn double") {
            Turn::text(fenced("fn double(x: isize) -> isize { x * 2 }"))
        } else if prompt.contains("it failed") {
            Turn::text(fenced("fn add(x: isize, y: isize) -> isize { x + y }"))
        } else {
            Turn::text(fenced("fn add(x: isize, y: isize) -> isize { x - y }"))
        }
    });
    let config = config("repair", 1);
    let records = run_matrix(
        AnswerSource::Model(&client),
        &grader,
        &tasks,
        &config,
        &HashSet::new(),
        |_| {},
    )
    .await
    .unwrap();
    let add = records
        .iter()
        .find(|r| r.task_id == "HumanEval_53_add")
        .unwrap();
    assert_eq!(add.verdict, Verdict::Pass, "{add:?}");
    assert_eq!(add.model_calls, 2, "the first answer, then one repair");
    let trace = serde_json::to_string(add.trace.as_ref().unwrap()).unwrap();
    assert!(trace.contains("add(2, 3)"), "{trace}");
    assert!(
        trace.contains("`add(2, 3)` should be `5`, but the code returned `-1`"),
        "{trace}"
    );
    let double = records.iter().find(|r| r.task_id == "no_examples").unwrap();
    assert_eq!((double.verdict, double.model_calls), (Verdict::Pass, 1));
    let backend = BackendInfo {
        kind: "scripted".into(),
        model: "test".into(),
        reason: "test".into(),
    };
    let report = Report::build(backend, config, &tasks, "test".into(), records);
    assert_eq!(
        (
            report.examples.tasks_with_examples,
            report.examples.examples
        ),
        (1, 2)
    );
    assert!(report.examples.used_by_verifier);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["examples"]["tasks_with_examples"], 1);
}

#[tokio::test]
async fn with_examples_off_the_benchmark_verifier_only_compiles() {
    let tasks = parse_jsonl(ROWS, "rows.jsonl").unwrap();
    let grader = grader().await;
    let client = ScriptedClient::from_fn(|_, _| {
        Turn::text(fenced("fn add(x: isize, y: isize) -> isize { x - y }"))
    });
    let mut config = config("repair", 1);
    config.verifier_examples = false;
    let records = run_matrix(
        AnswerSource::Model(&client),
        &grader,
        &tasks[..1],
        &config,
        &HashSet::new(),
        |_| {},
    )
    .await
    .unwrap();
    // Compiling is all the verifier checks: no repair round, and the hidden tests fail it.
    assert_eq!(records[0].model_calls, 1);
    assert_eq!(records[0].verdict, Verdict::TestFailure);
}

const ADD_PROMPT: &str = "Write a Rust function `fn add(a: i32, b: i32) -> i32`.\n\
    For example, `add(2, 3)` returns `5` and add(-1, 1) gives 0.";

#[tokio::test]
async fn a_request_verifier_scores_explains_and_counts() {
    let grader = grader().await;
    let request = ChatRequest::new(ADD_PROMPT);
    let check = RequestVerifier::new(&request, grader).unwrap();
    assert_eq!(check.entry_point(), Some("add"));
    let verifier = check.verifier();
    let right = verifier
        .check(&request, &fenced("fn add(a: i32, b: i32) -> i32 { a + b }"))
        .await;
    assert_eq!(right.score, 1.0, "{right:?}");
    let wrong = verifier
        .check(&request, &fenced("fn add(a: i32, b: i32) -> i32 { a * b }"))
        .await;
    assert_eq!(wrong.score, 0.5);
    let Some(Issue::FailedExample { example, .. }) = wrong.feedback.and_then(|f| f.issue) else {
        panic!("a failed example");
    };
    assert!(example.unwrap_or_default().contains("add(2, 3)"));
    let broken = verifier
        .check(&request, &fenced("fn add(a: i32) -> i32 { a }"))
        .await;
    assert_eq!(broken.score, 0.0);
    let counts = check.counts();
    assert_eq!(counts.examples, 2);
    assert_eq!(
        (
            counts.candidates,
            counts.candidates_compiled,
            counts.candidates_passed
        ),
        (3, 2, 1)
    );
    assert_eq!((counts.example_runs, counts.example_passes), (4, 2));
    // Extra test lines run beside the examples; a wrong one fails only itself.
    let results = verifier
        .run_tests(
            &request,
            &fenced("fn add(a: i32, b: i32) -> i32 { a + b }"),
            &[
                "assert_eq!(add(1, 1), 2);".into(),
                "assert_eq!(add(1, 1), 3);".into(),
            ],
        )
        .unwrap()
        .await;
    let passed: Vec<bool> = results.iter().map(|r| r.passed).collect();
    assert_eq!(passed, [true, true, true, false]);
    let counts = check.counts();
    assert_eq!(
        (counts.generated_tests_run, counts.generated_tests_passed),
        (2, 1)
    );
}

#[tokio::test]
async fn without_a_signature_the_function_comes_from_the_candidate() {
    let grader = grader().await;
    let request = ChatRequest::new(
        "In Rust, write a function that doubles a number. `double(4)` returns `8`.",
    );
    let check = RequestVerifier::new(&request, grader.clone()).unwrap();
    assert_eq!(check.entry_point(), None);
    let verifier = check.verifier();
    let right = fenced("fn helper() {}\nfn double(x: i64) -> i64 { x * 2 }");
    assert_eq!(verifier.check(&request, &right).await.score, 1.0);
    let wrong = fenced("fn double(x: i64) -> i64 { x + 2 }");
    assert_eq!(verifier.check(&request, &wrong).await.score, 0.5);
    assert_eq!(check.counts().examples, 1);
    // Nothing to check: neither a signature nor Rust.
    let err = RequestVerifier::new(&ChatRequest::new("What is 6 times 7?"), grader).unwrap_err();
    assert!(err.to_string().contains("Rust function"), "{err}");
}

#[tokio::test]
async fn a_spent_sandbox_budget_refuses_checks_and_says_so() {
    let grader = grader().await;
    let request = ChatRequest::new(ADD_PROMPT);
    let limits = VerifyLimits {
        permits: None,
        budget: Some(Duration::from_nanos(1)),
    };
    let check = RequestVerifier::with_limits(&request, grader, limits).unwrap();
    let verification = check
        .verifier()
        .check(&request, &fenced("fn add(a: i32, b: i32) -> i32 { a + b }"))
        .await;
    assert_eq!(verification.score, 0.0);
    let Some(Issue::Other { message }) = verification.feedback.and_then(|f| f.issue) else {
        panic!("an over-budget note");
    };
    assert!(message.contains("budget"), "{message}");
    assert_eq!(check.counts().over_budget, 1);
}

#[tokio::test]
async fn codet_and_repair_from_a_chat_request_pick_and_fix_by_the_prompts_examples() {
    let grader = grader().await;
    let request = ChatRequest::new(ADD_PROMPT);
    let answers = [
        "fn add(a: i32, b: i32) -> i32 { a - b }",
        "fn add(a: i32, b: i32) -> i32 { a + b }",
        "fn add(a: i32, b: i32) -> i32 { a * b }",
    ];
    let candidates = std::sync::atomic::AtomicUsize::new(0);
    let client = ScriptedClient::from_fn(move |_, request| {
        let prompt = request.last_user_message().unwrap_or_default();
        if prompt.contains("write test cases") {
            Turn::text("assert_eq!(add(1, 1), 2);\nassert_eq!(add(0, 7), 7);")
        } else {
            let next = candidates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Turn::text(fenced(answers[next % 3]))
        }
    });
    let check = RequestVerifier::new(&request, grader.clone()).unwrap();
    let codet = CodeT::new(
        &client,
        CodeTConfig {
            verifier: Some(check.verifier()),
            ..CodeTConfig::default()
        },
    )
    .unwrap();
    let outcome = codet.run(request.clone()).await.unwrap();
    assert!(outcome.answer.contains("a + b"), "{}", outcome.answer);

    let check = RequestVerifier::new(&request, grader).unwrap();
    let fixed = ScriptedClient::new([
        Turn::text(fenced(answers[0])),
        Turn::text(fenced(answers[1])),
    ]);
    let repair = Repair::new(
        &fixed,
        RepairConfig {
            verifier: Some(check.verifier()),
            ..RepairConfig::default()
        },
    )
    .unwrap();
    let outcome = repair.run(request).await.unwrap();
    assert!(outcome.answer.contains("a + b"), "{}", outcome.answer);
    assert_eq!(outcome.usage.model_calls, 2);
    let repair_prompt = fixed.requests()[1].last_user_message().unwrap().to_owned();
    assert!(repair_prompt.contains("add(2, 3)"), "{repair_prompt}");
}
