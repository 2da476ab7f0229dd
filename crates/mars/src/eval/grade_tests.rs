use super::*;
use crate::eval::tasks::{TaskSet, builtin};

#[test]
fn assembly_adds_the_prelude_only_when_needed() {
    let mut task = builtin(TaskSet::Ladder).remove(0);
    task.prelude = "fn add(a: i32, b: i32) -> i32 {\n".into();
    let body_only = assemble(&task, "    a + b\n}", Tests::Hidden);
    assert!(body_only.contains("fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"));
    let whole = assemble(
        &task,
        "fn add(a: i32, b: i32) -> i32 { a + b }",
        Tests::Hidden,
    );
    assert_eq!(whole.matches("fn add").count(), 1);
    assert!(whole.contains("mars_hidden_tests"));
    assert!(!whole.contains("mars_visible_tests"));
    let visible = assemble(
        &task,
        "fn add(a: i32, b: i32) -> i32 { a + b }",
        Tests::Visible,
    );
    assert!(visible.contains("mars_visible_tests") && !visible.contains("mars_hidden_tests"));
}

fn execution(termination: Termination, stdout: &str, stderr: &str) -> Execution {
    let captured = |text: &str| crate::eval::sandbox::Captured {
        bytes: text.as_bytes().to_vec(),
        discarded: 0,
    };
    Execution {
        termination,
        limit: None,
        stdout: captured(stdout),
        stderr: captured(stderr),
        wall: std::time::Duration::ZERO,
        isolation: Default::default(),
    }
}

#[test]
fn a_pass_needs_every_token_and_exit_0() {
    let tests = "#[test] fn a() {}\n#[test] fn b() {}\n";
    let sealed = harness::seal(tests, &[9, 100, 200, 1, 2]);
    let module = &sealed.module;
    let both = "MARS-PASS 0 0000000000000064\nMARS-PASS 1 00000000000000c8\n";
    let failed =
        format!("test {module}::a ... ok\ntest {module}::b ... FAILED\ntest result: FAILED.");
    let panicked = format!("thread '{module}::b' (7) panicked at <anon>:2:1:");
    let table: &[(Termination, &str, &str, Verdict, Option<&str>)] = &[
        (Termination::Exited(0), "", both, Verdict::Pass, None),
        (
            Termination::Exited(0),
            "test result: ok. 2 passed",
            "MARS-PASS 0 0000000000000064\n",
            Verdict::Crash,
            Some("exited (code 0) before the tests finished (1 of 2"),
        ),
        (
            Termination::Exited(0),
            "test result: ok. 2 passed",
            "",
            Verdict::Crash,
            Some("before the tests finished (0 of 2"),
        ),
        (
            Termination::Exited(0),
            "",
            &format!("{both}MARS-PASS 1 00000000000000c9\n"),
            Verdict::Crash,
            Some("forged"),
        ),
        (
            Termination::Exited(101),
            &failed,
            &format!("MARS-PASS 0 0000000000000064\n{panicked}"),
            Verdict::TestFailure,
            Some("thread 'b' panicked"),
        ),
        (
            Termination::Exited(101),
            "running 2 tests",
            "",
            Verdict::Crash,
            Some("exited (code 101) before the tests finished"),
        ),
        (
            Termination::Exited(3),
            "",
            both,
            Verdict::Crash,
            Some("exited with code 3"),
        ),
        (
            Termination::Signaled(6),
            "",
            "",
            Verdict::Crash,
            Some("signal 6"),
        ),
    ];
    for (termination, stdout, stderr, verdict, detail) in table {
        let outcome = TestOutcome {
            compile: execution(Termination::Exited(0), "", ""),
            run: Some(execution(*termination, stdout, stderr)),
        };
        let (got, got_detail) = judge(&outcome, &sealed);
        assert_eq!(got, *verdict, "{termination:?} {stdout:?} {stderr:?}");
        let got_detail = got_detail.unwrap_or_default();
        assert!(
            got_detail.contains(detail.unwrap_or_default()),
            "{got_detail:?}"
        );
        assert!(!got_detail.contains(module.as_str()), "{got_detail:?}");
    }
    let untested = TestOutcome {
        compile: execution(Termination::Exited(0), "", ""),
        run: None,
    };
    let none = harness::seal("", &[1]);
    assert_eq!(judge(&untested, &none).0, Verdict::TestFailure);
}

#[test]
fn a_bare_body_gets_its_closing_braces() {
    let mut task = builtin(TaskSet::Ladder).remove(0);
    task.prelude = "/// Adds {a} and {b}.\nfn add(a: i32, b: i32) -> i32 {\n".into();
    let body = assemble(
        &task,
        "    let s = \"}\"; let c = '{'; a + b",
        Tests::Hidden,
    );
    assert!(body.contains("a + b\n}\n\n"), "{body}");
    let closed = assemble(&task, "    a + b\n}", Tests::Hidden);
    assert!(closed.contains("a + b\n}\n\n#[cfg(test)]"), "{closed}");
    let nested = assemble(&task, "    if a > 0 { a + b", Tests::Hidden);
    assert!(nested.contains("a + b\n}\n}\n\n"), "{nested}");
    assert_eq!(open_braces("fn f<'a>(x: &'a str) { /* { */ // {\n"), 1);
    assert_eq!(open_braces("{ '\\'' 'é' '\\u{7b}' \"\\\"{\""), 1);
}

#[test]
fn thread_ids_are_left_out_of_details() {
    assert_eq!(
        without_thread_id("thread 'mars_hidden_tests::case_2' (46) panicked at <anon>:26:9:"),
        "thread 'mars_hidden_tests::case_2' panicked at <anon>:26:9:"
    );
    assert_eq!(
        without_thread_id("error[E0308]: mismatched types"),
        "error[E0308]: mismatched types"
    );
}

#[test]
fn fnv1a_matches_reference_values() {
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
}
