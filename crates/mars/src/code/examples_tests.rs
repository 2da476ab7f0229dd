use super::*;
use ExampleForm::{Arrow, Assert, AssertEq, Doctest, Equals, Prose};

/// An expected example in a table: call, expected value (or [`HOLDS`], [`FAILS`]), form, line.
type Row<'a> = (&'a str, &'a str, ExampleForm, usize);

const HOLDS: &str = "<holds>";
const FAILS: &str = "<fails>";

fn example(&(call, expected, form, line): &Row<'_>) -> Example {
    let expected = match expected {
        HOLDS => Expectation::Holds,
        FAILS => Expectation::Fails,
        value => Expectation::Equals(value.to_owned()),
    };
    Example {
        call: call.to_owned(),
        expected,
        form,
        line,
    }
}

/// Each text, searched for `f`, gives exactly these examples and skips nothing.
fn check(cases: &[(&str, &[Row<'_>])]) {
    for (text, rows) in cases {
        let found = find_examples(text, "f");
        let expected: Vec<Example> = rows.iter().map(example).collect();
        assert_eq!(found.examples, expected, "{text:?}");
        assert_eq!(found.skipped, [], "{text:?}");
    }
}

#[test]
fn doctests_in_every_container() {
    check(&[
        ("/// >>> f(2)\n/// 4", &[("f(2)", "4", Doctest, 1)]),
        ("// >>> f(2)\n//\n// 4", &[("f(2)", "4", Doctest, 1)]),
        (
            "//! >>> f(vec![1, 2])\n//! vec![2, 1]",
            &[("f(vec![1, 2])", "vec![2, 1]", Doctest, 1)],
        ),
        ("/*\n >>> f(2)\n 4\n*/", &[("f(2)", "4", Doctest, 2)]),
        ("/**\n * >>> f(2)\n * 4\n */", &[("f(2)", "4", Doctest, 2)]),
        ("```\n>>> f(2)\n4\n```", &[("f(2)", "4", Doctest, 2)]),
        (
            "Examples:\n\n>>> f(\"a\")  // note\n\"b\";",
            &[("f(\"a\")", "\"b\"", Doctest, 3)],
        ),
        (
            "- >>> f(2)\n  4\n1. >>> f(3)\n   9",
            &[("f(2)", "4", Doctest, 1), ("f(3)", "9", Doctest, 3)],
        ),
        (
            "/// >>> f(-1.5)\n/// String::from(\"x\")",
            &[("f(-1.5)", "String::from(\"x\")", Doctest, 1)],
        ),
    ]);
}

#[test]
fn assertions_in_every_container() {
    check(&[
        ("/// assert_eq!(f(2), 4);", &[("f(2)", "4", AssertEq, 1)]),
        ("// assert_eq!(4, f(2));", &[("f(2)", "4", AssertEq, 1)]),
        (
            "/* assert_eq!(f(2), 4, \"f({}) is wrong\", 2); */",
            &[("f(2)", "4", AssertEq, 1)],
        ),
        (
            "/*\n * std::assert_eq!(f(2), 4);\n */",
            &[("f(2)", "4", AssertEq, 2)],
        ),
        (
            "```rust\nassert_eq!(\n    f(vec![1, 2]),\n    3,\n);\n```",
            &[("f(vec![1, 2])", "3", AssertEq, 3)],
        ),
        (
            "- ::core::assert_eq!(f(&[1, 2]), Some(3));",
            &[("f(&[1, 2])", "Some(3)", AssertEq, 1)],
        ),
        (
            "core::assert_eq!(&f(\"a,b\"), \"a\");",
            &[("&f(\"a,b\")", "\"a\"", AssertEq, 1)],
        ),
        ("/// assert!(f(2));", &[("f(2)", HOLDS, Assert, 1)]),
        ("/// assert!(!f(3));", &[("f(3)", FAILS, Assert, 1)]),
        ("* assert!(f(2) == 4);", &[("f(2)", "4", Assert, 1)]),
        ("assert!(4 == f(2), \"msg\");", &[("f(2)", "4", Assert, 1)]),
        (
            "assert!(f(1).is_empty());",
            &[("f(1).is_empty()", HOLDS, Assert, 1)],
        ),
        (
            "assert!(f(1) == 2 && f(2) == 3);",
            &[("f(1) == 2 && f(2) == 3", HOLDS, Assert, 1)],
        ),
        (
            "assert!(!f(1) || f(2));",
            &[("!f(1) || f(2)", HOLDS, Assert, 1)],
        ),
        (
            "assert!(f(|x| x + 1));",
            &[("f(|x| x + 1)", HOLDS, Assert, 1)],
        ),
    ]);
}

#[test]
fn comparisons_and_arrows_in_every_container() {
    check(&[
        ("/// f(2) == 4", &[("f(2)", "4", Equals, 1)]),
        (
            "Cases:\n* f(2) == 4,\n* f(3) == 9;",
            &[("f(2)", "4", Equals, 2), ("f(3)", "9", Equals, 3)],
        ),
        ("We need `f(2) == 4`.", &[("f(2)", "4", Equals, 1)]),
        ("f(2) == 4 // four", &[("f(2)", "4", Equals, 1)]),
        (
            "f(1) == 2, f(2) == 3.",
            &[("f(1)", "2", Equals, 1), ("f(2)", "3", Equals, 1)],
        ),
        (
            "f(2) == 4 and f(3) == 9",
            &[("f(2)", "4", Equals, 1), ("f(3)", "9", Equals, 1)],
        ),
        (
            "f(1) == 2 && f(2) == 3",
            &[("f(1)", "2", Equals, 1), ("f(2)", "3", Equals, 1)],
        ),
        (
            "f(\"a, b\") == vec![\"a\", \"b\"]",
            &[("f(\"a, b\")", "vec![\"a\", \"b\"]", Equals, 1)],
        ),
        ("// f(2) -> 4", &[("f(2)", "4", Arrow, 1)]),
        ("/* f(2) => 4 */", &[("f(2)", "4", Arrow, 1)]),
        (
            "```\nf(2) → 4\nf(3) ==> 9\nf(4) ⇒ 16\n```",
            &[
                ("f(2)", "4", Arrow, 2),
                ("f(3)", "9", Arrow, 3),
                ("f(4)", "16", Arrow, 4),
            ],
        ),
        (
            "- `f(2)` -> `4`\n- f(3) ➞ 9",
            &[("f(2)", "4", Arrow, 1), ("f(3)", "9", Arrow, 2)],
        ),
        ("f(1) -> (1, \"a\")", &[("f(1)", "(1, \"a\")", Arrow, 1)]),
        ("f(3) -> 3 as f64", &[("f(3)", "3 as f64", Arrow, 1)]),
        ("f('a') -> 'b'", &[("f('a')", "'b'", Arrow, 1)]),
        (
            "f(\"日本\") == \"本日\"",
            &[("f(\"日本\")", "\"本日\"", Equals, 1)],
        ),
        (
            "f(2) == P { x: 1 }\nstruct P { x: i32 }",
            &[("f(2)", "P { x: 1 }", Equals, 1)],
        ),
    ]);
}

#[test]
fn prose_in_every_container() {
    check(&[
        (
            "For example `f(2)` returns `4`.",
            &[("f(2)", "4", Prose, 1)],
        ),
        ("f(2) returns 4.", &[("f(2)", "4", Prose, 1)]),
        (
            "/// `f(2)` is `4`, and f(3) is 9.",
            &[("f(2)", "4", Prose, 1), ("f(3)", "9", Prose, 1)],
        ),
        (
            "// f(2) should return 4; f(3) should be 9",
            &[("f(2)", "4", Prose, 1), ("f(3)", "9", Prose, 1)],
        ),
        (
            "/*\n * f(\"ab\") returns: \"ba\"\n */",
            &[("f(\"ab\")", "\"ba\"", Prose, 2)],
        ),
        (
            "- f(2) evaluates to 4 and f(3) yields 9",
            &[("f(2)", "4", Prose, 1), ("f(3)", "9", Prose, 1)],
        ),
        ("1. f(2) gives 4 (two squared)", &[("f(2)", "4", Prose, 1)]),
        ("```\n// f(0) equals -1\n```", &[("f(0)", "-1", Prose, 2)]),
        (
            "f(&[1]) outputs true, f(&[]) produces false.",
            &[("f(&[1])", "true", Prose, 1), ("f(&[])", "false", Prose, 1)],
        ),
        (
            "`f(2)` Should Be `vec![1, 2]`",
            &[("f(2)", "vec![1, 2]", Prose, 1)],
        ),
        ("f(1) is equal to None here", &[("f(1)", "None", Prose, 1)]),
    ]);
}

#[test]
fn what_is_not_an_example() {
    let fib = "fn f(n: u64) -> u64 {\n    if n < 2 {\n        return n;\n    }\n    f(n - 1) + f(n - 2)\n}";
    check(&[
        ("", &[]),
        ("fn f(x: i32) -> i32 {", &[]),
        ("pub(crate) fn f(x: i32) -> i32", &[]),
        ("Write `fn f(a: i32, b: i32) -> i32`.", &[]),
        ("Implement `f(a: i32, mut b: i32) -> i32`.", &[]),
        ("g(2) == 4", &[]),
        ("g(f(2)) == 4", &[]),
        ("let y = g(f(2) == 4);", &[]),
        ("my_f(2) == 4 and f_2(1) == 3", &[]),
        ("x.f(2) == 4", &[]),
        ("Foo::f(2) == 4 and Self::f(3) == 9", &[]),
        (fib, &[]),
        ("match n { 0 => 1, _ => n * f(n - 1) }", &[]),
        ("if f(2) == 4 {\n    return;\n}", &[]),
        ("f(2) = 1 + (2 / 2) = 2\nf(4) = f(3) + f(2)", &[]),
        ("`f(s)` returns the number of vowels in `s`.", &[]),
        ("f(x) is a function; f(n) returns n squared.", &[]),
        ("Write f(n) that gives the n-th prime.", &[]),
        ("assert_ne!(f(2), 5);\ndebug_assert!(f(2) > 0);", &[]),
        ("f (2) == 4", &[]),
        ("def f(n: int) -> int:", &[]),
    ]);
    assert_eq!(find_examples("f(2) == 4", ""), PromptExamples::default());
    assert_eq!(find_examples("f(2) == 4", "f("), PromptExamples::default());
}

#[test]
fn what_is_skipped_and_why() {
    let cases: &[(&str, &str)] = &[
        (">>> f(1, 2\n3", "the call `f(1, 2` does not parse as Rust"),
        ("f(1, 2 == 3", "the call's parentheses do not balance"),
        (
            ">>> f('abc')\n'cba'",
            "the call `f('abc')` does not parse as Rust",
        ),
        (
            "f(1) == 'abc'",
            "the expected value `'abc'` does not parse as Rust",
        ),
        (
            ">>> f(3)\n[1, 2",
            "the expected value `[1, 2` does not parse as Rust",
        ),
        (
            "f(1) -> [1, 2, ...]",
            "the expected value `[1, 2, ...]` does not parse as Rust",
        ),
        ("f(n) -> 0", "the call uses the free variable `n`"),
        ("f(x) == y", "the call uses the free variable `x`"),
        (
            "f(1) == g(2)",
            "the expected value uses the free variable `g`",
        ),
        (
            "f(1) == vec![x]",
            "the expected value uses the free variable `x`",
        ),
        (
            "f(format!(\"{}\", y)) == 3",
            "the call uses the free variable `y`",
        ),
        (
            ">>> f(1)\nTrue",
            "the expected value names `True`, which the prompt does not define",
        ),
        (
            "f(1) returns True.",
            "the expected value names `True`, which the prompt does not define",
        ),
        (
            "f(4) -> f(3) + f(2)",
            "the expected value calls `f` itself: a recurrence, not an example",
        ),
        ("/// >>> f(1)", "no expected value follows the `>>>` line"),
        ("f(1) ==", "nothing follows `==`"),
        ("assert_eq!(f(1));", "`assert_eq!` needs two arguments"),
        (
            "assert_eq!(f(1), 2\n\nmore",
            "the assertion's parentheses do not close",
        ),
        (
            "assert!(!f('ab'));",
            "the call `f('ab')` does not parse as Rust",
        ),
    ];
    for &(text, reason) in cases {
        let found = find_examples(text, "f");
        assert_eq!(found.examples, [], "{text:?}");
        let reasons: Vec<&str> = found.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons, [reason], "{text:?}");
    }
}

#[test]
fn skipped_text_is_clipped_and_deep_nesting_is_refused() {
    let deep = format!("f({}1) == 2", "!".repeat(1000));
    let found = find_examples(&deep, "f");
    assert_eq!(found.skipped.len(), 1);
    assert!(
        found.skipped[0]
            .reason
            .ends_with("is too long or too deeply nested to check")
    );
    assert_eq!(found.skipped[0].text.chars().count(), 200);
    assert!(found.skipped[0].text.ends_with('…'));
    let nested = format!(">>> f({}1{})\n2", "(".repeat(40), ")".repeat(40));
    assert_eq!(find_examples(&nested, "f").skipped.len(), 1);
}

#[test]
fn a_doctest_without_value_is_skipped_and_the_next_kept() {
    let found = find_examples(">>> f(1)\n>>> f(2)\n3", "f");
    assert_eq!(found.examples, [example(&("f(2)", "3", Doctest, 2))]);
    let skipped: Vec<_> = found
        .skipped
        .iter()
        .map(|s| (s.line, s.text.as_str()))
        .collect();
    assert_eq!(skipped, [(1, ">>> f(1)")]);
}

#[test]
fn duplicates_are_kept_once_in_text_order() {
    let text = "`f(2)` returns `4`\n>>> f(2)\n4\nassert_eq!(f( 2 ), 4);\nassert!(g(1));\nf(3) == 9";
    let found = find_examples(text, "f");
    let expected = [("f(2)", "4", Prose, 1), ("f(3)", "9", Equals, 6)];
    assert_eq!(
        found.examples,
        expected.iter().map(example).collect::<Vec<_>>()
    );
    assert_eq!(find_examples("f(x) == 1\nf(x) == 1", "f").skipped.len(), 1);
}

#[test]
fn names_the_prompt_defines_are_allowed() {
    let text = "const LIMIT: u32 = 3;\nfn helper(x: u32) -> u32 { x }\nf(LIMIT) == helper(2)\n\
                f(i32::MAX) == std::cmp::Ordering::Less\nf(|x| x * 2) == String::new()";
    let found = find_examples(text, "f");
    assert_eq!(found.skipped, []);
    assert_eq!(found.examples.len(), 3);
}

#[test]
fn multipl_e_prompt() {
    let text = "/// Return the largest prime factor of n. Assume n > 1 and is not a prime.\n\
                /// >>> largest_prime_factor(13195)\n/// 29\n/// >>> largest_prime_factor(2048)\n\
                /// 2\nfn largest_prime_factor(n: isize) -> isize {\n";
    let found = find_examples(text, "largest_prime_factor");
    let expected = [
        ("largest_prime_factor(13195)", "29", Doctest, 2),
        ("largest_prime_factor(2048)", "2", Doctest, 4),
    ];
    assert_eq!(
        found.examples,
        expected.iter().map(example).collect::<Vec<_>>()
    );
    assert_eq!(found.skipped, []);
    assert_eq!(
        requested_function(text).as_deref(),
        Some("largest_prime_factor")
    );
}

const FIB4_MULTIPL_E: &str = "\
/// The Fib4 number sequence is a sequence similar to the Fibbonacci sequnece that's defined as follows:
/// fib4(0) -> 0
/// fib4(1) -> 0
/// fib4(2) -> 2
/// fib4(3) -> 0
/// fib4(n) -> fib4(n-1) + fib4(n-2) + fib4(n-3) + fib4(n-4).
/// Please write a function to efficiently compute the n-th element of the fib4 number sequence.  Do not use recursion.
/// >>> fib4(5)
/// 4
/// >>> fib4(6)
/// 8
/// >>> fib4(7)
/// 14
fn fib4(n: isize) -> isize {
";

const FIB4_HUMANEVAL_RUST: &str = "
/*
The Fib4 number sequence is a sequence similar to the Fibbonacci sequnece that's defined as follows:
    fib4(0) -> 0
    fib4(1) -> 0
    fib4(2) -> 2
    fib4(3) -> 0
    fib4(n) -> fib4(n-1) + fib4(n-2) + fib4(n-3) + fib4(n-4).
    Please write a function to efficiently compute the n-th element of the fib4 number sequence.  Do not use recursion.

*/
use std::{slice::Iter, cmp::{max, self}, mem::replace, collections::{HashSet, HashMap}, ops::Index};
use rand::Rng;

fn fib4(n:i32) -> i32{
";

#[test]
fn fib4_prompts_keep_the_values_and_skip_the_recurrence() {
    let arrows = |first_line| {
        let values = [(0_usize, "0"), (1, "0"), (2, "2"), (3, "0")];
        values.map(|(n, v)| example(&(&format!("fib4({n})"), v, Arrow, n + first_line)))
    };
    let found = find_examples(FIB4_MULTIPL_E, "fib4");
    let doctests = [
        ("fib4(5)", "4", Doctest, 8),
        ("fib4(6)", "8", Doctest, 10),
        ("fib4(7)", "14", Doctest, 12),
    ];
    let expected = [&arrows(2)[..], &doctests.map(|row| example(&row))[..]].concat();
    assert_eq!(found.examples, expected);
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(found.skipped[0].line, 6);
    assert_eq!(
        found.skipped[0].reason,
        "the call uses the free variable `n`"
    );
    assert!(found.skipped[0].text.starts_with("fib4(n) -> fib4(n-1) +"));

    let found = find_examples(FIB4_HUMANEVAL_RUST, "fib4");
    assert_eq!(found.examples, arrows(4));
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(
        requested_function(FIB4_HUMANEVAL_RUST).as_deref(),
        Some("fib4")
    );
}

#[test]
fn chat_prompt() {
    let text = "Write `fn add(a: i32, b: i32) -> i32` in Rust. \
                For example `add(2, 3)` returns `5` and add(-1, 1) gives 0.";
    let found = find_examples(text, "add");
    let expected = [("add(2, 3)", "5", Prose, 1), ("add(-1, 1)", "0", Prose, 1)];
    assert_eq!(
        found.examples,
        expected.iter().map(example).collect::<Vec<_>>()
    );
    assert_eq!(found.skipped, []);
    assert_eq!(requested_function(text).as_deref(), Some("add"));
}

#[test]
fn rustdoc_prompt() {
    let text = "/// Sums the even numbers of `v`.\n///\n/// # Examples\n///\n/// ```\n\
                /// assert_eq!(sum_even(&[1, 2, 3, 4]), 6);\n/// let v = vec![5, 7];\n\
                /// assert_eq!(sum_even(&v), 0);\n/// assert!(sum_even(&[]) == 0);\n/// ```\n\
                pub fn sum_even(v: &[i64]) -> i64 {\n    v.iter().filter(|x| *x % 2 == 0).sum()\n}\n";
    let found = find_examples(text, "sum_even");
    let expected = [
        ("sum_even(&[1, 2, 3, 4])", "6", AssertEq, 6),
        ("sum_even(&[])", "0", Assert, 9),
    ];
    assert_eq!(
        found.examples,
        expected.iter().map(example).collect::<Vec<_>>()
    );
    let skipped: Vec<_> = found
        .skipped
        .iter()
        .map(|s| (s.line, s.reason.as_str()))
        .collect();
    assert_eq!(skipped, [(8, "the call uses the free variable `v`")]);
}

#[test]
fn assertions_and_tests_render() {
    let (two, three) = (
        example(&("f(2)", "4", Doctest, 1)),
        example(&("f(3)", FAILS, Assert, 2)),
    );
    assert_eq!(two.assertion(), "::core::assert_eq!(f(2), 4, \"f(2)\");");
    // The call is the message, a format string: its braces and quotes are escaped.
    assert_eq!(
        example(&("f(\"{x}\")", "1", Equals, 1)).assertion(),
        "::core::assert_eq!(f(\"{x}\"), 1, \"f(\\\"{{x}}\\\")\");"
    );
    assert_eq!(
        example(&("f(2)", HOLDS, Assert, 1)).assertion(),
        "::core::assert!(f(2));"
    );
    assert_eq!(
        example(&("f(1) > 2", FAILS, Assert, 1)).assertion(),
        "::core::assert!(!(f(1) > 2));"
    );
    assert_eq!(render_tests("prompt_examples", &[]), "");
    let rendered = render_tests("prompt_examples", &[two, three]);
    let expected = "#[cfg(test)]\nmod prompt_examples {\n    use super::*;\n\n    \
                    #[test]\n    fn example_0() {\n        ::core::assert_eq!(f(2), 4, \"f(2)\");\n    }\n\n    \
                    #[test]\n    fn example_1() {\n        ::core::assert!(!(f(3)));\n    }\n}\n";
    assert_eq!(rendered, expected);
    let file = syn::parse_file(&format!("fn f(x: i32) -> i32 {{ x }}\n{rendered}"));
    assert!(file.is_ok(), "{rendered}");
}

#[test]
fn serde_names_are_snake_case() {
    assert_eq!(serde_json::to_string(&AssertEq).unwrap(), "\"assert_eq\"");
    let equals = Expectation::Equals("4".to_owned());
    assert_eq!(
        serde_json::to_string(&equals).unwrap(),
        "{\"equals\":\"4\"}"
    );
    assert_eq!(
        serde_json::to_string(&Expectation::Holds).unwrap(),
        "\"holds\""
    );
}

#[test]
fn requested_function_table() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            "fn helper(x: i32) -> i32 { x }\nfn solve(v: Vec<i32>) -> i32",
            Some("solve"),
        ),
        ("fn solve() {}\nfn main() { solve(); }", Some("solve")),
        ("pub fn f(x: u8) -> u8", Some("f")),
        ("pub(crate) fn g(x: u8) -> u8", Some("g")),
        ("async fn h() {}", Some("h")),
        ("const fn k() -> u8 { 1 }\nunsafe fn u() {}", Some("u")),
        ("fn f<T: Ord>(v: &[T]) -> T", Some("f")),
        (
            "Implement `fn sum_list(v: &[i32]) -> i32` please.",
            Some("sum_list"),
        ),
        (
            "Write `fn solve(n: u32) -> u32`; solve(2) == 4. Use `fn helper(x: u32) -> u32`.",
            Some("solve"),
        ),
        (
            "`fn a() -> u8`, `fn b() -> u8`: a() == 1, b() == 2.",
            Some("b"),
        ),
        ("Write a function that adds two numbers.", None),
        ("fn main() {}", None),
        ("a fn named thing, infn x()", None),
        ("", None),
    ];
    for &(text, expected) in cases {
        assert_eq!(requested_function(text).as_deref(), expected, "{text:?}");
    }
}

#[test]
fn odd_input_does_not_panic() {
    let odd = [
        ">>>",
        ">>> f(",
        "f(",
        "f(\"",
        "f('",
        "f(')",
        "assert!(",
        "assert_eq!(f(1), \"",
        "f(1) == \"",
        "`f(1)` returns `",
        "f(1) →",
        "f(1) == 'é'",
        "f(é) == ü",
        "/* f(1) == 2",
        "*/",
        "f(1) == 2 // é",
        "\u{feff}f(1) == 2\r\n",
        "f(1)\u{2028}== 2",
        "f(())]]]) == 1",
        "f(1) == )",
        "1. ",
        "*",
    ];
    for text in odd {
        for entry in ["f", "ƒ", "assert"] {
            let _ = find_examples(text, entry);
        }
        let _ = requested_function(text);
    }
    assert_eq!(
        find_examples("ƒ(1) == 2", "ƒ").examples,
        [example(&("ƒ(1)", "2", Equals, 1))]
    );
    for prompt in [FIB4_MULTIPL_E, FIB4_HUMANEVAL_RUST] {
        for (cut, _) in prompt.char_indices() {
            let _ = find_examples(&prompt[..cut], "fib4");
            let _ = find_examples(&prompt[cut..], "fib4");
        }
    }
}
