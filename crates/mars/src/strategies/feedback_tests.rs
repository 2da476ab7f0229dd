use super::*;

fn failed(compiled: bool, issue: Issue) -> Feedback {
    Feedback {
        compiled,
        issue: Some(issue),
    }
}

#[test]
fn feedback_renders_each_fact_it_has() {
    let compile = |line, source_line: Option<&str>| Issue::CompileError {
        message: "error[E0308]: mismatched types".into(),
        line,
        source_line: source_line.map(str::to_owned),
    };
    let example = |example: Option<&str>, expected: Option<&str>, actual: Option<&str>| {
        Issue::FailedExample {
            example: example.map(str::to_owned),
            expected: expected.map(str::to_owned),
            actual: actual.map(str::to_owned),
            message: "assertion `left == right` failed".into(),
        }
    };
    let cases: Vec<(Feedback, &str)> = vec![
        (Feedback::passed(), "The code passes every example."),
        (
            failed(false, Issue::NoCode),
            "The answer contains no code that defines the requested function.",
        ),
        (
            failed(false, compile(Some(3), Some("n"))),
            "The code does not compile. The first compiler error is:\n\
             error[E0308]: mismatched types\nat line 3 of the code: `n`",
        ),
        (
            failed(false, compile(Some(3), None)),
            "The code does not compile. The first compiler error is:\n\
             error[E0308]: mismatched types\nat line 3 of the code",
        ),
        (
            failed(false, compile(None, Some("assert_eq!(f(1), 2);"))),
            "The code does not compile. The first compiler error is:\n\
             error[E0308]: mismatched types\nin the examples' test code: `assert_eq!(f(1), 2);`",
        ),
        (
            failed(false, compile(None, None)),
            "The code does not compile. The first compiler error is:\n\
             error[E0308]: mismatched types",
        ),
        (
            failed(true, example(Some("f(1)"), Some("2"), Some("3"))),
            "The code compiles, but an example fails: `f(1)` should be `2`, but the code \
             returned `3`.",
        ),
        (
            failed(true, example(Some("assert!(g());"), None, None)),
            "The code compiles, but an example fails: `assert!(g());`: assertion `left == \
             right` failed",
        ),
        (
            failed(true, example(None, None, None)),
            "The code compiles, but an example fails: assertion `left == right` failed",
        ),
        (
            failed(
                true,
                Issue::Timeout {
                    message: "the tests hit their time limit".into(),
                },
            ),
            "The code did not finish in time (the tests hit their time limit); it may loop \
             forever.",
        ),
        (
            failed(
                true,
                Issue::Crash {
                    message: "the test binary was killed by signal 6".into(),
                },
            ),
            "The code crashed: the test binary was killed by signal 6.",
        ),
        (
            failed(
                true,
                Issue::Other {
                    message: "Too slow.".into(),
                },
            ),
            "Too slow.",
        ),
    ];
    for (feedback, expected) in cases {
        assert_eq!(render_feedback(&feedback), expected, "{feedback:?}");
    }
}

#[test]
fn labels_name_the_issue() {
    assert_eq!(feedback_label(&Feedback::passed()), "passed");
    assert_eq!(feedback_label(&failed(false, Issue::NoCode)), "no code");
    let timeout = Issue::Timeout {
        message: String::new(),
    };
    assert_eq!(feedback_label(&failed(true, timeout)), "timeout");
}

#[test]
fn feedback_serialises_with_a_kind_tag() {
    let feedback = failed(
        true,
        Issue::Crash {
            message: "signal 6".into(),
        },
    );
    let json = serde_json::to_value(&feedback).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"compiled": true, "issue": {"kind": "crash", "message": "signal 6"}})
    );
    assert_eq!(serde_json::from_value::<Feedback>(json).unwrap(), feedback);
}
