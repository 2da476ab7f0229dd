use super::*;
use crate::client::Message;

#[test]
fn rust_is_asked_for_by_word_or_fence_in_the_system_prompt_or_a_user_turn() {
    let cases = [
        (None, "Write a Rust function that reverses a string.", true),
        (None, "Reply in ```rust\nfn x() {}\n```", true),
        (Some("Answer in RUST."), "Reverse a string.", true),
        (
            None,
            "Write a function that reverses a string, in Python.",
            false,
        ),
        (None, "Is rustic furniture back in fashion?", false),
        (None, "Trust me, write it in C.", false),
    ];
    for (system, user, want) in cases {
        let mut request = ChatRequest::new(user);
        request.system = system.map(str::to_owned);
        assert_eq!(asks_for_rust(&request), want, "{system:?} {user:?}");
    }
    // An assistant turn that mentions Rust is not the user asking for it.
    let mut request = ChatRequest::new("Reverse a string.");
    request
        .messages
        .push(Message::assistant("Here it is in Rust: ..."));
    assert!(!asks_for_rust(&request));
}

#[test]
fn functions_a_candidate_defines_are_found_in_order_without_main() {
    let cases: [(&str, &[&str]); 6] = [
        ("fn add(a: i32, b: i32) -> i32 { a + b }", &["add"]),
        (
            "fn helper() {}\npub fn solve<T>(x: T) {}\nfn main() {}",
            &["helper", "solve"],
        ),
        ("fn main() { println!(\"hi\"); }", &[]),
        ("let define_fn = 1; fnord(2);", &[]),
        ("fn  spaced (x: u8) {} fn spaced(y: u8) {}", &["spaced"]),
        ("", &[]),
    ];
    for (code, want) in cases {
        assert_eq!(defined_functions(code), want, "{code:?}");
    }
}

#[test]
fn the_prompt_is_the_user_turns_joined() {
    let mut request = ChatRequest::new("first").with_system("system text");
    request.messages.push(Message::assistant("assistant text"));
    request.messages.push(Message::user("second"));
    assert_eq!(user_text(&request), "first\n\nsecond");
}

#[test]
fn a_grading_scores_one_half_or_nothing_and_compile_only_passes_what_compiles() {
    let grade = |verdict, compiled| Grade {
        verdict,
        detail: None,
        code_hash: None,
        feedback: Some(Feedback {
            compiled,
            issue: None,
        }),
        tests_passed: 0,
    };
    let cases = [
        (grade(Verdict::Pass, true), false, 1.0),
        (grade(Verdict::TestFailure, true), false, 0.5),
        (grade(Verdict::CompileError, false), false, 0.0),
        (grade(Verdict::Timeout, true), false, 0.0),
        // With nothing to run, compiling is the check.
        (grade(Verdict::TestFailure, true), true, 1.0),
        (grade(Verdict::CompileError, false), true, 0.0),
    ];
    for (grade, compile_only, want) in cases {
        let verdict = grade.verdict;
        assert_eq!(
            verification_of(Ok(grade), compile_only).score,
            want,
            "{verdict:?} compile_only={compile_only}"
        );
    }
    let failed = verification_of(
        Err(Error::Unsupported {
            detail: "gone".into(),
        }),
        false,
    );
    assert_eq!(failed.score, 0.0);
    assert!(matches!(
        failed.feedback.and_then(|f| f.issue),
        Some(Issue::Other { message }) if message.contains("checker failed")
    ));
}
