use super::*;

#[test]
fn std_macros_and_crate_paths_are_pinned() {
    let table: &[(&str, &str)] = &[
        ("assert_eq!(f(1), 2);", "::core::assert_eq!(f(1), 2);"),
        (
            "assert!(x); assert_ne!(a, b)",
            "::core::assert!(x); ::core::assert_ne!(a, b)",
        ),
        (
            "debug_assert!(x); debug_assert_eq!(a, b); debug_assert_ne!(a, b);",
            "::core::debug_assert!(x); ::core::debug_assert_eq!(a, b); ::core::debug_assert_ne!(a, b);",
        ),
        (
            "panic!(\"no\"); unreachable!()",
            "::core::panic!(\"no\"); ::core::unreachable!()",
        ),
        ("let v = vec![1, 2];", "let v = ::std::vec![1, 2];"),
        ("format!(\"{x}\")", "::std::format!(\"{x}\")"),
        (
            "use std::collections::HashMap;",
            "use ::std::collections::HashMap;",
        ),
        ("core::mem::swap(a, b)", "::core::mem::swap(a, b)"),
        // Already absolute, a method, a field, a string, a comment: untouched.
        ("::core::assert!(x)", "::core::assert!(x)"),
        ("std::assert!(x)", "::std::assert!(x)"),
        ("x.assert_eq(y)", "x.assert_eq(y)"),
        ("\"assert_eq!(a, b)\"", "\"assert_eq!(a, b)\""),
        ("// assert!(x)\n", "// assert!(x)\n"),
        ("r#\"vec![\"#", "r#\"vec![\"#"),
        ("'a' == c; assert!(true)", "'a' == c; ::core::assert!(true)"),
        (
            "fn f<'a>(x: &'a str) { assert!(x.is_empty()) }",
            "fn f<'a>(x: &'a str) { ::core::assert!(x.is_empty()) }",
        ),
        ("assert_eq", "assert_eq"),
        (
            r#"assert_eq!(f("vec![\"x\"] panic!()"), vec![])"#,
            r#"::core::assert_eq!(f("vec![\"x\"] panic!()"), ::std::vec![])"#,
        ),
    ];
    for (input, expected) in table {
        assert_eq!(pin_std_paths(input), *expected, "{input}");
    }
}

#[test]
fn leading_inner_attributes_are_split_off() {
    let code = "//! docs\n#![no_std]\n#![allow(dead_code)]\n  #![cfg(test)] #![feature(never_type)]\n\
                #![no_main]\nfn add() {}\n#![later]";
    let attrs = split_crate_attributes(code);
    assert_eq!(attrs.kept, ["#![allow(dead_code)]"]);
    assert_eq!(
        attrs.dropped,
        [
            "//! docs",
            "#![no_std]",
            "#![cfg(test)]",
            "#![feature(never_type)]",
            "#![no_main]"
        ]
    );
    assert_eq!(attrs.rest, "\nfn add() {}\n#![later]");
    let plain = split_crate_attributes("#[derive(Debug)] struct S;");
    assert!(plain.kept.is_empty() && plain.dropped.is_empty());
    assert_eq!(plain.rest, "#[derive(Debug)] struct S;");
}

const TESTS: &str = r#"#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        assert_eq!(f(1), 2);
        let s = "}";
    }

    #[test]
    #[should_panic]
    fn panics() { f(0); }

    #[test]
    #[ignore]
    fn ignored() {}

    fn helper() -> i32 { 1 }

    mod inner {
        #[test]
        fn fallible() -> Result<(), String> { if true { return Ok(()); } Err("x".into()) }
    }
}
"#;

#[test]
fn tests_are_found_with_their_paths() {
    let found = find_tests(TESTS);
    let paths: Vec<&str> = found.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(
        paths,
        ["tests::plain", "tests::panics", "tests::inner::fallible"]
    );
    assert!(found[1].should_panic && !found[0].should_panic);
    let (a, b) = found[2].ret.unwrap();
    assert_eq!(&TESTS[a..b], "Result<(), String>");
    let (open, close) = found[0].body;
    assert!(TESTS[open..close].starts_with('{') && TESTS[open..close].ends_with('}'));
    assert!(TESTS[open..close].contains("let s = \"}\";"));
}

#[test]
fn a_bare_main_counts_as_one_test() {
    let multipl_e = "fn main() {\n    let candidate = f;\n    assert_eq!(candidate(1), 2);\n}\n";
    let found = find_tests(multipl_e);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "main");
    let sealed = seal(multipl_e, &[7, 11, 13]);
    assert!(
        sealed.tests.contains("#[test] fn main()"),
        "{}",
        sealed.tests
    );
    assert!(find_tests("fn helper() {}").is_empty());
}

#[test]
fn sealing_keeps_lines_and_hides_tokens() {
    let random = [0xabcd, 1, 2, 3, 0x10, 0x20, 0x30];
    let sealed = seal(TESTS, &random);
    assert_eq!(sealed.module, "__mars_000000000000abcd");
    assert_eq!(sealed.tests.lines().count(), TESTS.lines().count() + 13);
    for (line, original) in sealed.tests.lines().zip(TESTS.lines()).skip(1) {
        if original.trim_start().starts_with("assert_eq!") {
            assert_eq!(line, original);
        }
    }
    assert_eq!(
        sealed.args,
        [
            "--test-threads=1",
            "--exact",
            "__mars_000000000000abcd::tests::plain",
            "__mars_000000000000abcd::tests::panics",
            "__mars_000000000000abcd::tests::inner::fallible",
        ]
    );
    // Tokens 1, 2, 3 are stored only XOR their masks 0x10, 0x20, 0x30.
    assert!(
        sealed
            .tests
            .contains("0x0000000000000011, 0x0000000000000022, 0x0000000000000033")
    );
    assert!(!sealed.tests.contains("0x0000000000000001"));
}

#[test]
fn evidence_must_be_complete_and_genuine() {
    let sealed = seal(TESTS, &[5, 100, 200, 300, 1, 2, 3]);
    let all = "MARS-PASS 0 0000000000000064\nnoise\nMARS-PASS 1 00000000000000c8\n  MARS-PASS 2 000000000000012c\n";
    assert_eq!(sealed.evidence(all), Evidence::Complete);
    assert_eq!(
        sealed.evidence("MARS-PASS 0 0000000000000064\n"),
        Evidence::Missing {
            reported: 1,
            expected: 3
        }
    );
    assert_eq!(
        sealed.evidence(&format!("{all}MARS-PASS 1 00000000000000c9\n")),
        Evidence::Forged
    );
    assert_eq!(
        sealed.evidence(&format!("{all}MARS-PASS 9 0\n")),
        Evidence::Forged
    );
    assert_eq!(
        sealed.evidence(&format!("{all}MARS-PASS\n")),
        Evidence::Forged
    );
    let none = seal("fn helper() {}", &[1]);
    assert_eq!(
        none.evidence(""),
        Evidence::Missing {
            reported: 0,
            expected: 0
        }
    );
}

#[test]
fn generated_test_lines_must_be_self_contained() {
    for ok in [
        "assert_eq!(f(1), 2);",
        "assert!(g('(') == '}');",
        "assert_eq!(f(\"{\"), vec![1]);",
        "  assert!(x);  ",
    ] {
        assert!(is_statement_line(ok), "{ok}");
    }
    for bad in [
        "assert!('(' == 'x'); } #[test] fn evil() { assert!(true); drop(')');",
        "assert!(true); }",
        "assert!(f(1) == 2)",
        "assert!(x); let _ = r#\"",
        "assert!(x); /* ;",
        "assert!(x); // a comment",
        "assert!(x]);",
        "",
    ] {
        assert!(!is_statement_line(bad), "{bad}");
    }
}

#[test]
fn the_reporter_is_named_after_the_secret_module() {
    // Generated tests sit inside the seal with `use super::*`: a fixed name for the reporter
    // or the token tables would let them report a pass for every test.
    let sealed = seal("#[test]\nfn a() { assert!(true); }\n", &[0xabc, 1, 2]);
    for fixed in ["MARS_A", "MARS_M", "mars_report", "MarsOk"] {
        assert!(!sealed.tests.contains(fixed), "{fixed} in {}", sealed.tests);
    }
    assert!(
        sealed.tests.contains("fn __mars_0000000000000abc_report("),
        "{}",
        sealed.tests
    );
}
