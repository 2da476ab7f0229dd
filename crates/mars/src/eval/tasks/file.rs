//! Task files: the `--tasks` spec (a group name or a JSONL file) and the JSONL loader for
//! HumanEval-Rust rows, MultiPL-E's shape included.
//!
//! Two row shapes are read. A HumanEval-Rust row's `test` holds `#[test]` functions. A MultiPL-E
//! row's `test` (or `tests`) starts with the `}` that closes the prompt's function and puts its
//! asserts in `fn main`; the loader drops that `}` (the grader closes a body answer's open
//! braces itself, so a complete function and a bare body both compile), and the grader runs
//! `main` as one test. A row whose test holds neither a `#[test]` function nor `fn main` is rejected: it
//! would pass every answer.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{Task, TaskSet, builtin};
use crate::code::defines_function;
use crate::code::examples::{find_examples, render_tests};
use crate::error::{Error, Result, truncate_for_error};

/// The group names `--tasks` accepts besides a file path. `humaneval-rust` is graded at load,
/// in a sandbox: [`crate::eval::humaneval::load`] reads it, not [`load`].
pub const GROUPS: [&str; 4] = ["seed", "ladder", "all", crate::eval::humaneval::GROUP];

/// The tasks a `--tasks` spec names: a group (`seed`, `ladder`, `all`) or an existing JSONL
/// file. Anything else is an error that lists the groups.
pub fn load(spec: &str) -> Result<Vec<Task>> {
    match spec {
        crate::eval::humaneval::GROUP => Err(invalid(format!(
            "{spec} grades its canonical solutions at load: read it with eval::humaneval::load"
        ))),
        "seed" => Ok(builtin(TaskSet::Seed)),
        "ladder" => Ok(builtin(TaskSet::Ladder)),
        "all" => Ok(builtin(TaskSet::Seed)
            .into_iter()
            .chain(builtin(TaskSet::Ladder))
            .collect()),
        path if Path::new(path).is_file() => load_jsonl(Path::new(path)),
        other => Err(invalid(if Path::new(other).exists() {
            format!("{other} is not a regular file")
        } else {
            format!(
                "{other:?} is neither a task group ({}) nor an existing JSONL file",
                GROUPS.join(", ")
            )
        })),
    }
}

/// Reads tasks from a JSONL file; see [`parse_jsonl`]. Errors name the file.
pub fn load_jsonl(path: &Path) -> Result<Vec<Task>> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| invalid(format!("cannot read {}: {err}", path.display())))?;
    parse_jsonl(&text, &path.display().to_string())
}

/// Reads tasks from JSONL text, one row per line: `task_id` (or `name`), `prompt`, `test` (or
/// `tests`), and optionally `entry_point` (else the last function the prompt opens) and
/// `canonical_solution`. Blank lines are skipped. `origin` (a file name) starts every error,
/// with the line: a row that does not decode, a duplicate id, a row without tests, a text
/// without rows. A row's visible tests are the examples its prompt shows
/// ([`crate::code::examples::find_examples`]: `>>> f(x)` then the value, `assert_eq!`, `f(x) ==
/// y`, "`f(x)` returns `y`", ...), never its hidden `test`; a prompt that shows none leaves
/// `visible_tests` empty (a verifier then only compiles).
pub fn parse_jsonl(text: &str, origin: &str) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    let mut lines_of: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: String| invalid(format!("{origin} line {number}: {reason}"));
        let row: Row = serde_json::from_str(line).map_err(|err| {
            at(format!(
                "not a task row ({err}): {}",
                truncate_for_error(line, 200)
            ))
        })?;
        let task = row.into_task().map_err(at)?;
        if let Some(first) = lines_of.insert(task.id.clone(), number) {
            return Err(at(format!(
                "task_id {:?} again (first on line {first})",
                task.id
            )));
        }
        tasks.push(task);
    }
    if tasks.is_empty() {
        return Err(invalid(format!("{origin} holds no task")));
    }
    Ok(tasks)
}

fn invalid(reason: String) -> Error {
    Error::InvalidConfig {
        field: "tasks",
        reason,
    }
}

/// One row of a HumanEval-Rust or MultiPL-E JSONL file.
#[derive(Debug, Deserialize)]
struct Row {
    #[serde(default)]
    task_id: Option<String>,
    /// MultiPL-E's name for `task_id`.
    #[serde(default)]
    name: Option<String>,
    prompt: String,
    #[serde(default)]
    entry_point: Option<String>,
    #[serde(default)]
    test: Option<String>,
    /// MultiPL-E's name for `test`.
    #[serde(default)]
    tests: Option<String>,
    #[serde(default)]
    canonical_solution: Option<String>,
}

impl Row {
    fn into_task(self) -> std::result::Result<Task, String> {
        let id = self.task_id.or(self.name).ok_or("no task_id (or name)")?;
        let test = self.test.or(self.tests).ok_or("no test (or tests)")?;
        let entry_point = match self.entry_point {
            Some(name) if !name.trim().is_empty() => name,
            _ => last_function(&self.prompt)
                .ok_or("no entry_point, and the prompt opens no function")?,
        };
        if !defines_function(&self.prompt, &entry_point) {
            return Err(format!("the prompt does not open fn {entry_point}"));
        }
        let hidden_tests = hidden_tests(&test)?;
        let examples = find_examples(&self.prompt, &entry_point);
        let prompt = format!(
            "Complete this Rust function. Reply with one ```rust code block that contains the \
             complete function, including its signature.\n\n```rust\n{}\n```",
            self.prompt.trim_end()
        );
        Ok(Task {
            id,
            set: TaskSet::File,
            reference: self
                .canonical_solution
                .map(|body| format!("{}{}", self.prompt, body)),
            entry_point,
            prompt,
            prelude: self.prompt,
            visible_tests: render_tests(VISIBLE_MODULE, &examples.examples),
            skipped_examples: examples.skipped.len() as u32,
            hidden_tests,
        })
    }
}

/// The module a row's prompt examples are rendered into.
const VISIBLE_MODULE: &str = "mars_visible_tests";

/// The name of the last function `prompt` declares.
fn last_function(prompt: &str) -> Option<String> {
    prompt.rmatch_indices("fn ").find_map(|(i, _)| {
        let name: String = prompt[i + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty() && defines_function(&prompt[i..], &name)).then_some(name)
    })
}

/// The hidden tests of a row's `test` text: `#[test]` functions as they are; MultiPL-E's
/// `fn main` of asserts (after the `}` that closes the prompt's function, which is dropped) as
/// it is, which the grader runs as one test ([`crate::eval::harness::find_tests`]). The grader
/// also calls every assertion macro by its std path, so an answer cannot redefine them.
fn hidden_tests(test: &str) -> std::result::Result<String, String> {
    let (closes_prompt, body) = match test.trim_start().strip_prefix('}') {
        Some(rest) => (true, rest),
        None => (false, test),
    };
    if defines_function(body, "main") && !body.contains("#[test]") {
        return Ok(body.trim().to_owned());
    }
    if closes_prompt {
        return Err("the test closes the prompt's function but has no fn main of asserts".into());
    }
    if !body.contains("#[test]") {
        return Err(
            "the test holds no #[test] function and no fn main: it would pass anything".into(),
        );
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTIPL_E: &str = r#"{"name":"HumanEval_53_add","language":"rs","prompt":"/// Add two numbers x and y\n/// >>> add(2, 3)\n/// 5\nfn add(x: isize, y: isize) -> isize {\n","tests":"}\n\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(0, 1), 1);\n    assert_eq!(candidate(5, 7), 12);\n}\n"}"#;

    fn reason(err: Error) -> String {
        match err {
            Error::InvalidConfig { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn humaneval_rows_parse_and_bad_rows_name_file_and_line() {
        let text = concat!(
            r#"{"task_id":"Rust/0","prompt":"fn inc(x: i32) -> i32 {\n","entry_point":"inc","test":"\n#[cfg(test)]\nmod tests { use super::*; #[test] fn t() { assert_eq!(inc(1), 2); } }","canonical_solution":"    x + 1\n}\n"}"#,
            "\n\n",
            r##"{"task_id":"Rust/1","prompt":"fn f() {","entry_point":"f","test":"#[test] fn t() { f() }"}"##,
            "\n"
        );
        let tasks = parse_jsonl(text, "t.jsonl").unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].id, "Rust/0");
        assert_eq!(tasks[0].prelude, "fn inc(x: i32) -> i32 {\n");
        assert_eq!(
            tasks[0].reference.as_deref(),
            Some("fn inc(x: i32) -> i32 {\n    x + 1\n}\n")
        );
        assert!(tasks[0].hidden_tests.contains(" assert_eq!(inc(1), 2)"));
        assert_eq!(tasks[1].reference, None);
        let both = r##"{"task_id":"x","name":"y","prompt":"fn f() {\n","test":"#[test] fn t() {}","tests":"}\nfn main() {}"}"##;
        let task = parse_jsonl(both, "b.jsonl").unwrap().remove(0);
        assert_eq!(task.id, "x", "task_id wins over name");
        assert_eq!(
            task.hidden_tests, "#[test] fn t() {}",
            "test wins over tests"
        );
        let nameless = r##"{"prompt":"fn f() {","test":"#[test] fn t() {}"}"##;
        let err = reason(parse_jsonl(nameless, "b.jsonl").unwrap_err());
        assert_eq!(err, "b.jsonl line 1: no task_id (or name)");
        let err = reason(parse_jsonl("\n{\"task_id\":\"a\"}\n{oops", "t.jsonl").unwrap_err());
        assert!(err.starts_with("t.jsonl line 2: not a task row"), "{err}");
    }

    #[test]
    fn empty_files_duplicates_and_testless_rows_are_rejected() {
        assert_eq!(
            reason(parse_jsonl("\n \n", "e.jsonl").unwrap_err()),
            "e.jsonl holds no task"
        );
        let row = |id: &str, test: &str| {
            serde_json::json!({"task_id": id, "prompt": "fn f() {\n", "test": test}).to_string()
        };
        let twice = format!(
            "{}\n{}\n",
            row("a", "#[test] fn t() {}"),
            row("a", "#[test] fn u() {}")
        );
        let err = reason(parse_jsonl(&twice, "d.jsonl").unwrap_err());
        assert_eq!(err, "d.jsonl line 2: task_id \"a\" again (first on line 1)");
        for test in ["", "fn helper() {}", "}\n\nfn helper() {}"] {
            let err = reason(parse_jsonl(&row("a", test), "n.jsonl").unwrap_err());
            assert!(
                err.starts_with("n.jsonl line 1: the test"),
                "{test:?}: {err}"
            );
        }
    }

    #[test]
    fn multipl_e_rows_run_main_as_one_test_without_the_stray_brace() {
        let tasks = parse_jsonl(MULTIPL_E, "m.jsonl").unwrap();
        let task = &tasks[0];
        assert_eq!(task.id, "HumanEval_53_add");
        assert_eq!(task.entry_point, "add", "taken from the prompt");
        assert!(
            task.prelude
                .ends_with("fn add(x: isize, y: isize) -> isize {\n")
        );
        let tests = &task.hidden_tests;
        assert!(tests.starts_with("fn main() {"), "{tests}");
        assert!(tests.contains("    assert_eq!(candidate(5, 7), 12);"));
        assert_eq!(
            crate::eval::harness::find_tests(tests).len(),
            1,
            "main is the one test"
        );
        assert_eq!(tests.matches('{').count(), tests.matches('}').count());
    }

    #[test]
    fn the_spec_is_a_group_or_a_file_and_unknown_names_list_the_groups() {
        assert_eq!(load("seed").unwrap().len(), 2);
        assert_eq!(load("ladder").unwrap().len(), 10);
        assert_eq!(load("all").unwrap().len(), 12);
        let err = reason(load("ladderr").unwrap_err());
        assert_eq!(
            err,
            "\"ladderr\" is neither a task group (seed, ladder, all, humaneval-rust) nor an \
             existing JSONL file"
        );
        let err = reason(load("humaneval-rust").unwrap_err());
        assert!(err.contains("eval::humaneval::load"), "{err}");
        let dir = std::env::temp_dir();
        let err = reason(load(dir.to_str().unwrap()).unwrap_err());
        assert!(err.ends_with("is not a regular file"), "{err}");
        let path = dir.join(format!("mars-tasks-{}.jsonl", std::process::id()));
        std::fs::write(&path, format!("{MULTIPL_E}\n")).unwrap();
        let loaded = load(path.to_str().unwrap()).unwrap();
        std::fs::write(&path, "{oops\n").unwrap();
        let err = reason(load(path.to_str().unwrap()).unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded[0].id, "HumanEval_53_add");
        assert!(
            err.starts_with(&format!("{} line 1:", path.display())),
            "{err}"
        );
    }
}
