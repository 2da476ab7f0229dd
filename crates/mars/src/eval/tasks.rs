//! Benchmark tasks: the built-in seed and ladder tasks, and HumanEval-Rust-shaped JSONL files
//! (read by [`load`], in the `file` submodule).
//!
//! A task has visible examples, shown in its prompt and turned into `visible_tests` (which a
//! verifier may run): a built-in task's from its spec, a JSONL row's as its prompt shows them
//! (none when it shows none). Its hidden tests are used only to grade. A verifier must never
//! see `hidden_tests`.

use serde::{Deserialize, Serialize};

mod file;

pub use file::{GROUPS, load, load_jsonl, parse_jsonl};

/// Which group a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskSet {
    /// The seed's tasks: `prime_check` and `fibonacci`.
    Seed,
    /// Easier tasks, so that small models have a measurable pass rate.
    Ladder,
    /// Loaded from a JSONL file.
    File,
}

/// One programming task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id, e.g. `prime_check`.
    pub id: String,
    /// The group it came from.
    pub set: TaskSet,
    /// The function the answer must define.
    pub entry_point: String,
    /// The prompt sent to the model.
    pub prompt: String,
    /// Code placed before an answer that does not define the entry point itself (HumanEval
    /// prompts end in an open function whose body the model completes). Empty for built-ins.
    pub prelude: String,
    /// `#[test]` functions checking the examples shown in the prompt.
    pub visible_tests: String,
    /// Example-like text in the prompt that was not made a visible test (it did not parse as
    /// Rust, or named something the prompt does not define); 0 for built-ins.
    #[serde(default)]
    pub skipped_examples: u32,
    /// `#[test]` functions that grade the answer; never shown to the model or to verifiers.
    pub hidden_tests: String,
    /// A known-correct solution, when there is one.
    pub reference: Option<String>,
}

/// A built-in task, before it is rendered into a prompt and tests.
struct Spec {
    id: &'static str,
    set: TaskSet,
    entry_point: &'static str,
    signature: &'static str,
    description: &'static str,
    reference: &'static str,
    /// (call, expected) pairs shown in the prompt.
    visible: &'static [(&'static str, &'static str)],
    /// (call, expected) pairs only the grader sees.
    hidden: &'static [(&'static str, &'static str)],
}

const SPECS: &[Spec] = &[
    Spec {
        id: "add",
        set: TaskSet::Ladder,
        entry_point: "add",
        signature: "fn add(a: i32, b: i32) -> i32",
        description: "Return the sum of `a` and `b`.",
        reference: "fn add(a: i32, b: i32) -> i32 { a + b }",
        visible: &[("add(2, 3)", "5"), ("add(-1, 1)", "0")],
        hidden: &[
            ("add(0, 0)", "0"),
            ("add(100, -250)", "-150"),
            ("add(40, 2)", "42"),
        ],
    },
    Spec {
        id: "is_even",
        set: TaskSet::Ladder,
        entry_point: "is_even",
        signature: "fn is_even(n: i64) -> bool",
        description: "Return true when `n` is even.",
        reference: "fn is_even(n: i64) -> bool { n % 2 == 0 }",
        visible: &[("is_even(4)", "true"), ("is_even(7)", "false")],
        hidden: &[
            ("is_even(0)", "true"),
            ("is_even(-3)", "false"),
            ("is_even(-10)", "true"),
            ("is_even(1_000_001)", "false"),
        ],
    },
    Spec {
        id: "square",
        set: TaskSet::Ladder,
        entry_point: "square",
        signature: "fn square(n: i64) -> i64",
        description: "Return `n` multiplied by itself.",
        reference: "fn square(n: i64) -> i64 { n * n }",
        visible: &[("square(3)", "9"), ("square(-4)", "16")],
        hidden: &[
            ("square(0)", "0"),
            ("square(1)", "1"),
            ("square(12)", "144"),
            ("square(-1000)", "1_000_000"),
        ],
    },
    Spec {
        id: "max_of_two",
        set: TaskSet::Ladder,
        entry_point: "max_of_two",
        signature: "fn max_of_two(a: i32, b: i32) -> i32",
        description: "Return the larger of `a` and `b`.",
        reference: "fn max_of_two(a: i32, b: i32) -> i32 { if a > b { a } else { b } }",
        visible: &[("max_of_two(3, 9)", "9"), ("max_of_two(5, 2)", "5")],
        hidden: &[
            ("max_of_two(-1, -5)", "-1"),
            ("max_of_two(7, 7)", "7"),
            ("max_of_two(0, -3)", "0"),
        ],
    },
    Spec {
        id: "absolute",
        set: TaskSet::Ladder,
        entry_point: "absolute",
        signature: "fn absolute(n: i64) -> i64",
        description: "Return the absolute value of `n`.",
        reference: "fn absolute(n: i64) -> i64 { if n < 0 { -n } else { n } }",
        visible: &[("absolute(-5)", "5"), ("absolute(3)", "3")],
        hidden: &[
            ("absolute(0)", "0"),
            ("absolute(-1)", "1"),
            ("absolute(123_456)", "123_456"),
        ],
    },
    Spec {
        id: "sum_slice",
        set: TaskSet::Ladder,
        entry_point: "sum_slice",
        signature: "fn sum_slice(values: &[i64]) -> i64",
        description: "Return the sum of all numbers in `values` (0 for an empty slice).",
        reference: "fn sum_slice(values: &[i64]) -> i64 { values.iter().sum() }",
        visible: &[("sum_slice(&[1, 2, 3])", "6"), ("sum_slice(&[])", "0")],
        hidden: &[
            ("sum_slice(&[-5, 5])", "0"),
            ("sum_slice(&[10])", "10"),
            ("sum_slice(&[1, -2, 3, -4, 100])", "98"),
        ],
    },
    Spec {
        id: "factorial",
        set: TaskSet::Ladder,
        entry_point: "factorial",
        signature: "fn factorial(n: u32) -> u64",
        description: "Return n! (the product 1 * 2 * ... * n); factorial(0) is 1.",
        reference: "fn factorial(n: u32) -> u64 { (1..=n as u64).product() }",
        visible: &[("factorial(3)", "6"), ("factorial(0)", "1")],
        hidden: &[
            ("factorial(1)", "1"),
            ("factorial(5)", "120"),
            ("factorial(10)", "3_628_800"),
            ("factorial(20)", "2_432_902_008_176_640_000"),
        ],
    },
    Spec {
        id: "count_vowels",
        set: TaskSet::Ladder,
        entry_point: "count_vowels",
        signature: "fn count_vowels(s: &str) -> usize",
        description: "Return how many characters of `s` are vowels (a, e, i, o, u, in either case).",
        reference: "fn count_vowels(s: &str) -> usize { s.chars().filter(|c| \"aeiouAEIOU\".contains(*c)).count() }",
        visible: &[
            ("count_vowels(\"hello\")", "2"),
            ("count_vowels(\"sky\")", "0"),
        ],
        hidden: &[
            ("count_vowels(\"\")", "0"),
            ("count_vowels(\"AEIOU\")", "5"),
            ("count_vowels(\"Programming in Rust\")", "5"),
        ],
    },
    Spec {
        id: "reverse_string",
        set: TaskSet::Ladder,
        entry_point: "reverse_string",
        signature: "fn reverse_string(s: &str) -> String",
        description: "Return the characters of `s` in reverse order.",
        reference: "fn reverse_string(s: &str) -> String { s.chars().rev().collect() }",
        visible: &[
            ("reverse_string(\"abc\")", "\"cba\""),
            ("reverse_string(\"\")", "\"\""),
        ],
        hidden: &[
            ("reverse_string(\"a\")", "\"a\""),
            ("reverse_string(\"rust lang\")", "\"gnal tsur\""),
            ("reverse_string(\"héllo\")", "\"olléh\""),
        ],
    },
    Spec {
        id: "is_palindrome",
        set: TaskSet::Ladder,
        entry_point: "is_palindrome",
        signature: "fn is_palindrome(s: &str) -> bool",
        description: "Return true when `s` reads the same forwards and backwards (compare characters exactly).",
        reference: "fn is_palindrome(s: &str) -> bool { s.chars().eq(s.chars().rev()) }",
        visible: &[
            ("is_palindrome(\"level\")", "true"),
            ("is_palindrome(\"rust\")", "false"),
        ],
        hidden: &[
            ("is_palindrome(\"\")", "true"),
            ("is_palindrome(\"a\")", "true"),
            ("is_palindrome(\"abba\")", "true"),
            ("is_palindrome(\"abca\")", "false"),
            ("is_palindrome(\"Aa\")", "false"),
        ],
    },
    Spec {
        id: "prime_check",
        set: TaskSet::Seed,
        entry_point: "is_prime",
        signature: "fn is_prime(n: u64) -> bool",
        description: "Return true when `n` is a prime number. 0 and 1 are not prime.",
        reference: "fn is_prime(n: u64) -> bool {\n    if n < 2 {\n        return false;\n    }\n    let mut i = 2;\n    while i * i <= n {\n        if n % i == 0 {\n            return false;\n        }\n        i += 1;\n    }\n    true\n}",
        visible: &[("is_prime(7)", "true"), ("is_prime(10)", "false")],
        hidden: &[
            ("is_prime(0)", "false"),
            ("is_prime(1)", "false"),
            ("is_prime(2)", "true"),
            ("is_prime(3)", "true"),
            ("is_prime(4)", "false"),
            ("is_prime(97)", "true"),
            ("is_prime(561)", "false"),
            ("is_prime(7919)", "true"),
            ("is_prime(104_729)", "true"),
        ],
    },
    Spec {
        id: "fibonacci",
        set: TaskSet::Seed,
        entry_point: "fibonacci",
        signature: "fn fibonacci(n: u32) -> u64",
        description: "Return the n-th Fibonacci number, where fibonacci(0) = 0 and fibonacci(1) = 1.",
        reference: "fn fibonacci(n: u32) -> u64 {\n    let (mut a, mut b) = (0u64, 1u64);\n    for _ in 0..n {\n        let next = a + b;\n        a = b;\n        b = next;\n    }\n    a\n}",
        visible: &[("fibonacci(1)", "1"), ("fibonacci(10)", "55")],
        hidden: &[
            ("fibonacci(0)", "0"),
            ("fibonacci(2)", "1"),
            ("fibonacci(3)", "2"),
            ("fibonacci(20)", "6765"),
            ("fibonacci(50)", "12_586_269_025"),
            ("fibonacci(90)", "2_880_067_194_370_816_120"),
        ],
    },
];

/// The tests of a built-in task. Each result is bound to the signature's return type, written
/// as an absolute path, and compared with `::core::assert_eq!`: an answer can neither replace
/// the macro nor return a type of its own whose `PartialEq` says yes to everything.
fn render_tests(module: &str, signature: &str, cases: &[(&str, &str)]) -> String {
    let ret = signature
        .split_once("->")
        .and_then(|(_, ret)| absolute_type(ret.trim()));
    let mut out = format!("#[cfg(test)]\nmod {module} {{\n    use super::*;\n");
    for (i, (call, expected)) in cases.iter().enumerate() {
        let message = call.replace('\\', "\\\\").replace('"', "\\\"");
        let (bind, left) = match &ret {
            Some(ty) => (format!("        let got: {ty} = {call};\n"), "got"),
            None => (String::new(), *call),
        };
        out.push_str(&format!(
            "\n    #[test]\n    fn case_{i}() {{\n{bind}        ::core::assert_eq!({left}, {expected}, \"{message}\");\n    }}\n"
        ));
    }
    out.push_str("}\n");
    out
}

/// The absolute path of a built-in task's return type, so an answer's own `i64` or `String`
/// cannot stand in for it.
fn absolute_type(ty: &str) -> Option<String> {
    const PRIMITIVES: &[&str] = &[
        "bool", "char", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64",
        "u128", "usize", "f32", "f64",
    ];
    match ty {
        "String" => Some("::std::string::String".to_owned()),
        _ if PRIMITIVES.contains(&ty) => Some(format!("::core::primitive::{ty}")),
        _ => None,
    }
}

/// The prompt of a built-in task.
fn render_prompt(spec: &Spec) -> String {
    let examples: String = spec
        .visible
        .iter()
        .map(|(call, expected)| format!("- `{call}` returns `{expected}`\n"))
        .collect();
    format!(
        "Write a Rust function with this exact signature:\n\n```rust\n{}\n```\n\n{}\n\nExamples:\n{}\n\
         Reply with one ```rust code block that contains the complete function. \
         Do not write a main function or tests.",
        spec.signature, spec.description, examples
    )
}

impl Spec {
    fn task(&self) -> Task {
        Task {
            id: self.id.to_owned(),
            set: self.set,
            entry_point: self.entry_point.to_owned(),
            prompt: render_prompt(self),
            prelude: String::new(),
            visible_tests: render_tests("mars_visible_tests", self.signature, self.visible),
            skipped_examples: 0,
            hidden_tests: render_tests("mars_hidden_tests", self.signature, self.hidden),
            reference: Some(self.reference.to_owned()),
        }
    }
}

/// The built-in tasks of one set, in a fixed order (easiest first).
pub fn builtin(set: TaskSet) -> Vec<Task> {
    SPECS
        .iter()
        .filter(|s| s.set == set)
        .map(Spec::task)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sets_are_complete_and_distinct() {
        let seed = builtin(TaskSet::Seed);
        let ids: Vec<_> = seed.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["prime_check", "fibonacci"]);
        assert_eq!(seed[0].entry_point, "is_prime");
        let ladder = builtin(TaskSet::Ladder);
        assert_eq!(ladder.len(), 10);
        let mut all: Vec<_> = seed.iter().chain(&ladder).map(|t| t.id.clone()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12, "ids are unique");
    }

    #[test]
    fn prompts_show_visible_examples_but_not_hidden_ones() {
        for task in builtin(TaskSet::Seed)
            .into_iter()
            .chain(builtin(TaskSet::Ladder))
        {
            let spec = SPECS.iter().find(|s| s.id == task.id).unwrap();
            assert!(task.prompt.contains(spec.signature), "{}", task.id);
            for (call, _) in spec.visible {
                assert!(task.prompt.contains(call), "{}: {call}", task.id);
                assert!(task.visible_tests.contains(call));
            }
            for (call, _) in spec.hidden {
                assert!(task.hidden_tests.contains(call));
                assert!(
                    !task.prompt.contains(&format!("`{call}`")),
                    "{}: hidden {call} leaked",
                    task.id
                );
            }
        }
    }
}
