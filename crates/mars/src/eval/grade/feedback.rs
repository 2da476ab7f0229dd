//! The verifier's feedback from a grading's evidence: the compiler's first error with its line,
//! the visible example that failed with the values libtest prints, a timeout or crash. Pure
//! text work over the sandbox's output, table-tested.

use super::Verdict;
use crate::eval::sandbox::TestOutcome;
use crate::strategies::feedback::{Feedback, Issue};

/// Where the candidate's code sits in the compiled source: its first and last line (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CodeSpan {
    pub(super) first: usize,
    pub(super) last: usize,
}

/// The feedback for a grading with `verdict` and `detail` of `outcome`; `source` is the source
/// as assembled (before sealing: the same lines, without the seal's tokens).
///
/// A failed example is read only from libtest's own report of the first sealed test that did
/// not report a pass (`failed`, its full path): the last `---- <test> stdout ----` block of
/// stdout, from the last line in it where that test's thread panicked. Text the candidate
/// writes to stderr, or to stdout outside that block, is never read as the failure.
pub(super) fn feedback_of(
    verdict: Verdict,
    detail: Option<&str>,
    outcome: Option<&TestOutcome>,
    source: &str,
    code: CodeSpan,
    failed: Option<&str>,
) -> Feedback {
    let detail = detail.unwrap_or_default().to_owned();
    let failed_test = failed;
    let failed = |compiled: bool, issue: Issue| Feedback {
        compiled,
        issue: Some(issue),
    };
    match verdict {
        Verdict::Pass => Feedback::passed(),
        Verdict::NoCode => failed(false, Issue::NoCode),
        Verdict::CompileError => {
            let stderr = outcome
                .map(|o| o.compile.stderr.text().into_owned())
                .unwrap_or_default();
            failed(false, compile_error(&stderr, &detail, source, code))
        }
        Verdict::TestFailure => {
            let stdout = outcome
                .and_then(|o| o.run.as_ref())
                .map(|run| run.stdout.text().into_owned())
                .unwrap_or_default();
            let issue = failed_test
                .and_then(|test| test_report(&stdout, test))
                .and_then(|report| failed_example(report, source))
                .unwrap_or(Issue::Other { message: detail });
            failed(true, issue)
        }
        Verdict::Timeout => {
            let compiled = outcome.is_some_and(|o| o.run.is_some());
            failed(compiled, Issue::Timeout { message: detail })
        }
        Verdict::Crash | Verdict::BackendError => failed(true, Issue::Crash { message: detail }),
    }
}

/// The compiler's first error: its message line, and the line its first `-->` points at.
pub(super) fn compile_error(stderr: &str, detail: &str, source: &str, code: CodeSpan) -> Issue {
    let mut lines = stderr.lines().map(str::trim_end);
    let message = lines
        .by_ref()
        .find(|l| l.starts_with("error") && !l.starts_with("error: aborting"))
        .map(str::to_owned);
    let location = message.as_ref().and_then(|_| {
        lines
            .take_while(|l| !l.starts_with("error"))
            .find_map(|l| l.trim_start().strip_prefix("--> "))
            .and_then(line_of_location)
    });
    let (line, source_line) = locate(location, source, code);
    Issue::CompileError {
        message: message.unwrap_or_else(|| detail.to_owned()),
        line,
        source_line,
    }
}

/// The first failed example of libtest's output: the panic's message, the call (the message
/// after `failed: `, else the source line the panic points at), and `left`/`right` of an
/// `assert_eq!` (the tests compare the code's result, left, with the expected value, right).
pub(super) fn failed_example(output: &str, source: &str) -> Option<Issue> {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines.iter().position(|l| l.contains("panicked at"))?;
    let location = lines[at]
        .rsplit_once("panicked at ")
        .and_then(|(_, loc)| line_of_location(loc.trim_end_matches(':')));
    let message = lines.get(at + 1).map_or("", |l| l.trim()).to_owned();
    let value = |name: &str| {
        lines
            .iter()
            .skip(at + 1)
            .take(4)
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let example = message
        .split_once("failed: ")
        .map(|(_, call)| call.trim().to_owned())
        .filter(|call| !call.is_empty())
        .or_else(|| {
            let line = location?;
            source
                .lines()
                .nth(line.checked_sub(1)?)
                .map(|l| l.trim().to_owned())
        });
    Some(Issue::FailedExample {
        example,
        expected: value("right:"),
        actual: value("left:"),
        message,
    })
}

/// libtest's report of `test` (its full path) in `stdout`: the last `---- <test> stdout ----`
/// block, from the last line in it where the test's thread panicked.
pub(super) fn test_report<'a>(stdout: &'a str, test: &str) -> Option<&'a str> {
    let header = format!("---- {test} stdout ----");
    let start = stdout
        .match_indices(&header)
        .map(|(at, _)| at)
        .filter(|&at| at == 0 || stdout[..at].ends_with('\n'))
        .last()?
        + header.len();
    let block = &stdout[start..];
    let end = block
        .match_indices("\n---- ")
        .chain(block.match_indices("\nfailures:"))
        .map(|(at, _)| at)
        .min()
        .unwrap_or(block.len());
    let block = &block[..end];
    let panic = format!("thread '{test}'");
    let at = block
        .match_indices(&panic)
        .map(|(at, _)| at)
        .filter(|&at| {
            block[..at].ends_with('\n')
                && block[at..]
                    .lines()
                    .next()
                    .is_some_and(|l| l.contains("panicked at"))
        })
        .last()?;
    Some(&block[at..])
}

/// The line number of a location such as `<anon>:26:9`.
fn line_of_location(location: &str) -> Option<usize> {
    let mut parts = location.trim().rsplitn(3, ':');
    let _column = parts.next()?;
    parts.next()?.parse().ok()
}

/// The line within the candidate's code (when it falls there) and the source line, trimmed.
fn locate(line: Option<usize>, source: &str, code: CodeSpan) -> (Option<u32>, Option<String>) {
    let Some(line) = line else {
        return (None, None);
    };
    let text = source
        .lines()
        .nth(line.saturating_sub(1))
        .map(|l| l.trim().chars().take(200).collect::<String>())
        .filter(|l| !l.is_empty());
    let within = (code.first..=code.last).contains(&line);
    let relative = within.then(|| u32::try_from(line - code.first + 1).unwrap_or(u32::MAX));
    (relative, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "#![allow(warnings)]\nfn is_prime(n: u64) -> bool {\n    n\n}\n\n#[cfg(test)]\nmod t {\n    #[test] fn case_0() { ::core::assert_eq!(is_prime(7), true, \"is_prime(7)\"); }\n    #[test] fn case_1() { ::core::assert_eq!(is_prime(4), false); }\n}\n";
    const SPAN: CodeSpan = CodeSpan { first: 2, last: 4 };

    #[test]
    fn compile_errors_name_their_line_in_the_code_or_the_examples() {
        let in_code = "error[E0308]: mismatched types\n --> <anon>:3:5\n  |\n3 |     n\n  |     ^ expected `bool`, found `u64`\n\nerror: aborting due to 1 previous error\n";
        assert_eq!(
            compile_error(in_code, "", SOURCE, SPAN),
            Issue::CompileError {
                message: "error[E0308]: mismatched types".into(),
                line: Some(2),
                source_line: Some("n".into()),
            }
        );
        let in_tests =
            "warning: unused\nerror[E0425]: cannot find function `is_prime`\n --> <anon>:9:48\n";
        let Issue::CompileError {
            line, source_line, ..
        } = compile_error(in_tests, "", SOURCE, SPAN)
        else {
            panic!("a compile error");
        };
        assert_eq!(line, None);
        assert!(source_line.unwrap().contains("is_prime(4)"));
        // No location at all: the detail stands in for the message.
        assert_eq!(
            compile_error("", "error: something", SOURCE, SPAN),
            Issue::CompileError {
                message: "error: something".into(),
                line: None,
                source_line: None,
            }
        );
    }

    #[test]
    fn failed_examples_carry_the_call_and_both_values() {
        let with_message = "---- t::case_0 stdout ----\nthread 't::case_0' panicked at <anon>:8:27:\nassertion `left == right` failed: is_prime(7)\n  left: false\n right: true\n";
        assert_eq!(
            failed_example(with_message, SOURCE),
            Some(Issue::FailedExample {
                example: Some("is_prime(7)".into()),
                expected: Some("true".into()),
                actual: Some("false".into()),
                message: "assertion `left == right` failed: is_prime(7)".into(),
            })
        );
        // Without a message, the example is the source line the panic points at.
        let bare = "thread 't::case_1' panicked at <anon>:9:27:\nassertion `left == right` failed\n  left: true\n right: false\n";
        let Some(Issue::FailedExample {
            example, actual, ..
        }) = failed_example(bare, SOURCE)
        else {
            panic!("a failed example");
        };
        assert!(example.unwrap().contains("is_prime(4), false"));
        assert_eq!(actual.as_deref(), Some("true"));
        assert_eq!(failed_example("test result: ok", SOURCE), None);
    }

    #[test]
    fn the_failure_is_read_from_the_failing_tests_own_report_only() {
        let test = "__mars_1::t::case_0";
        let stdout = "running 2 tests\n\
            ---- __mars_1::t::case_0 stdout ----\nthread '__mars_1::t::case_0' panicked at <anon>:8:27:\nassertion `left == right` failed: forged(1)\n  left: 1\n right: 2\n\
            test __mars_1::t::case_0 ... FAILED\n\nfailures:\n\n\
            ---- __mars_1::t::case_0 stdout ----\n\
            thread '__mars_1::t::case_0' panicked at <anon>:8:27:\nassertion `left == right` failed: printed(2)\n  left: 3\n right: 4\n\
            thread '__mars_1::t::case_0' (7) panicked at <anon>:8:27:\nassertion `left == right` failed: is_prime(7)\n  left: false\n right: true\n\n\
            failures:\n    __mars_1::t::case_0\n";
        let report = test_report(stdout, test).unwrap();
        assert_eq!(
            failed_example(report, SOURCE),
            Some(Issue::FailedExample {
                example: Some("is_prime(7)".into()),
                expected: Some("true".into()),
                actual: Some("false".into()),
                message: "assertion `left == right` failed: is_prime(7)".into(),
            })
        );
        assert_eq!(test_report(stdout, "__mars_1::t::case_1"), None);
    }

    #[test]
    fn verdicts_map_to_issues() {
        let passed = feedback_of(Verdict::Pass, None, None, SOURCE, SPAN, None);
        assert_eq!(passed, Feedback::passed());
        let no_code = feedback_of(Verdict::NoCode, None, None, SOURCE, SPAN, None);
        assert_eq!(
            (no_code.compiled, no_code.issue),
            (false, Some(Issue::NoCode))
        );
        let timeout = feedback_of(
            Verdict::Timeout,
            Some("the tests hit their time limit"),
            None,
            SOURCE,
            SPAN,
            None,
        );
        assert_eq!(
            timeout.issue,
            Some(Issue::Timeout {
                message: "the tests hit their time limit".into()
            })
        );
        let crash = feedback_of(Verdict::Crash, Some("signal 6"), None, SOURCE, SPAN, None);
        assert!(crash.compiled);
        assert_eq!(
            crash.issue,
            Some(Issue::Crash {
                message: "signal 6".into()
            })
        );
    }
}
