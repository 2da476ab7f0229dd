//! The benchmark binary (`examples/comprehensive_benchmark/`) run as a user runs it: bad
//! input fails before any work with exit status 2 and a message naming the problem; a dead
//! backend is exit 1; a run killed with SIGKILL resumes without losing or repeating a sample.
//!
//! The binary is the one `cargo test --workspace` (or `cargo build --example
//! comprehensive_benchmark`) builds next to this test binary.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use mars::eval::journal::read_records;
use mars::eval::tasks::{TaskSet, builtin};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::server::{Reply, TestServer};

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile.join("examples").join(format!(
        "comprehensive_benchmark{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        binary.is_file(),
        "{} is missing: `cargo test --workspace` builds it, or `cargo build -p mars --example \
         comprehensive_benchmark`",
        binary.display()
    );
    binary
}

/// A scratch directory for one test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mars-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("--quiet")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .kill_on_drop(true);
    command
}

async fn run(args: &[&str]) -> Output {
    command(args).output().await.unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts exit status `code` and that the output says every one of `needles`.
fn expect(output: &Output, code: i32, needles: &[&str]) {
    let all = text(output);
    assert_eq!(output.status.code(), Some(code), "{all}");
    for needle in needles {
        assert!(all.contains(needle), "{needle:?} not said:\n{all}");
    }
}

fn fenced(code: &str) -> String {
    format!("```rust\n{code}\n```")
}

/// One JSONL answer row per (task, sample) for the baseline strategy.
fn answers(rows: &[(&str, u32, String)]) -> String {
    rows.iter()
        .map(|(task, sample, answer)| {
            json!({"task_id": task, "strategy": "baseline", "sample": sample, "answer": answer})
                .to_string()
                + "\n"
        })
        .collect()
}

fn seed_answers() -> String {
    let tasks = builtin(TaskSet::Seed);
    let rows: Vec<(&str, u32, String)> = tasks
        .iter()
        .map(|t| (t.id.as_str(), 0, fenced(t.reference.as_deref().unwrap())))
        .collect();
    answers(&rows)
}

/// The arguments of a run of the baseline strategy: `--backend backend`, then `source` (the
/// flag that says where answers come from) and its value; a served backend gets `--model
/// tinyllama`.
fn baseline<'a>(backend: &'a str, source: [&'a str; 2], samples: &'a str) -> Vec<&'a str> {
    let [flag, value] = source;
    let mut args = vec![
        "--backend",
        backend,
        flag,
        value,
        "--strategies",
        "baseline",
        "--samples",
        samples,
    ];
    if matches!(backend, "openai" | "ollama") {
        args.extend(["--model", "tinyllama"]);
    }
    args
}

fn scripted_baseline<'a>(answers: &'a str, samples: &'a str) -> Vec<&'a str> {
    baseline("scripted", ["--answers", answers], samples)
}

#[tokio::test]
async fn bad_numbers_are_rejected_when_parsed() {
    for (args, says) in [
        (&["--temperature", "-1"][..], "must be finite and 0 or more"),
        (&["--temperature=-1"], "must be finite and 0 or more"),
        (&["--temperature", "nan"], "must be finite and 0 or more"),
        (&["--temperature", "inf"], "must be finite and 0 or more"),
        (&["--temperature", "warm"], "is not a number"),
        (
            &["--samples", "0"],
            "0 is not a whole number from 1 to 4294967295",
        ),
        (&["--samples", "-1"], "-1 is not a whole number from 1 to"),
        (&["--samples", "2.5"], "2.5 is not a whole number"),
        (&["--max-tokens", "0"], "is not a whole number from 1 to"),
        (
            &["--candidates", "0"],
            "0 is not a whole number from 1 to 1024",
        ),
        (
            &["--candidates", "5000"],
            "5000 is not a whole number from 1 to 1024",
        ),
        (&["--concurrency", "0"], "from 1 to 256"),
        (
            &["--compile-timeout", "0"],
            "must be more than 0 and at most 3600",
        ),
        (
            &["--run-timeout", "-5"],
            "must be more than 0 and at most 3600",
        ),
        (
            &["--run-timeout", "1e30"],
            "must be more than 0 and at most 3600",
        ),
        (
            &["--memory-mb", "0"],
            "0 is not a whole number from 64 to 1048576",
        ),
        (&["--seed", "-1"], "-1 is not a whole number from 0 to"),
    ] {
        let output = run(args).await;
        let flag = args[0].split('=').next().unwrap();
        expect(&output, 2, &[flag, says]);
    }
}

#[tokio::test]
async fn help_documents_the_exit_status() {
    let output = run(&["--help"]).await;
    expect(
        &output,
        0,
        &[
            "Exit status:",
            "0  the run completed",
            "1  the run completed, but every sample",
            "2  bad configuration",
        ],
    );
}

#[tokio::test]
async fn bad_task_and_answer_files_name_the_file_and_line() {
    let dir = Scratch::new("inputs");
    let row = |id: &str, test: &str| {
        json!({"task_id": id, "prompt": "fn f() -> i32 {\n", "entry_point": "f", "test": test})
            .to_string()
    };
    let good = row("a", "#[test] fn t() { assert_eq!(f(), 1); }");
    let empty = dir.file("empty.jsonl", "\n\n");
    let twice = dir.file("twice.jsonl", &format!("{good}\n{good}\n"));
    let broken = dir.file("broken.jsonl", &format!("{good}\n{{\"task_id\": 3\n"));
    let testless = dir.file(
        "testless.jsonl",
        &format!("{}\n", row("a", "fn helper() {}")),
    );
    let answers_ok = dir.file("answers.jsonl", &seed_answers());
    let answers_bad = dir.file("bad-answers.jsonl", "{\"task_id\": \"prime_check\"\n");
    let first = seed_answers().lines().next().unwrap().to_owned();
    let answers_twice = dir.file("twice-answers.jsonl", &format!("{first}\n{first}\n"));
    let missing = dir.path("missing.jsonl");
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["--tasks", "ladderr"],
            vec!["\"ladderr\" is neither a task group (seed, ladder, all, humaneval-rust)".into()],
        ),
        (
            vec!["--tasks", &empty],
            vec![format!("{empty} holds no task")],
        ),
        (
            vec!["--tasks", &twice],
            vec![format!(
                "{twice} line 2: task_id \"a\" again (first on line 1)"
            )],
        ),
        (
            vec!["--tasks", &broken],
            vec![format!("{broken} line 2: not a task row")],
        ),
        (
            vec!["--tasks", &testless],
            vec![format!("{testless} line 1: the test holds no #[test]")],
        ),
        (
            vec!["--backend", "scripted"],
            vec!["--backend scripted needs --answers FILE".into()],
        ),
        (
            vec!["--backend", "scripted", "--answers", &missing],
            vec![format!("could not read {missing}")],
        ),
        (
            vec!["--backend", "scripted", "--answers", &answers_bad],
            vec![format!("{answers_bad} line 1")],
        ),
        (
            vec!["--backend", "scripted", "--answers", &answers_twice],
            vec![format!(
                "{answers_twice} line 2: a second answer for the same sample"
            )],
        ),
        (
            vec!["--backend", "embedded", "--answers", &answers_ok],
            vec!["--answers is read only by --backend scripted".into()],
        ),
    ];
    for (args, says) in cases {
        let says: Vec<&str> = says.iter().map(String::as_str).collect();
        expect(&run(&args).await, 2, &says);
    }
}

#[tokio::test]
async fn output_paths_are_checked_before_the_run() {
    let dir = Scratch::new("outputs");
    let answers = dir.file("answers.jsonl", &seed_answers());
    let journal = dir.file("journal.jsonl", "{\"kept\": true}\n");
    let missing_parent = dir.path("no/such/dir/r.md");
    let here = dir.path("");
    let scripted = scripted_baseline(&answers, "1");
    for (flag, path, says) in [
        (
            "--json",
            "/proc/x.json",
            "--json /proc/x.json: cannot be written",
        ),
        ("--json", here.as_str(), "is a directory"),
        ("--markdown", missing_parent.as_str(), "cannot be written"),
        ("--svg", "/proc/x.svg", "--svg /proc/x.svg"),
        (
            "--jsonl",
            journal.as_str(),
            "pass --resume to continue that run, or --force to overwrite it",
        ),
    ] {
        let mut args = scripted.clone();
        args.extend([flag, path]);
        let output = run(&args).await;
        expect(&output, 2, &[path, says]);
        assert!(
            !text(&output).contains("backend:"),
            "nothing ran: {}",
            text(&output)
        );
    }
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        "{\"kept\": true}\n",
        "kept"
    );
    // A journal with a bad line that is not the last one cannot be resumed.
    let first = seed_answers().lines().next().unwrap().to_owned();
    let damaged = dir.file("damaged.jsonl", &format!("{{oops\n{first}\n"));
    let mut args = scripted;
    args.extend(["--jsonl", &damaged, "--resume"]);
    expect(
        &run(&args).await,
        2,
        &[&format!("{damaged}: line 1: not a sample record")],
    );
}

#[tokio::test]
async fn a_write_that_fails_at_the_end_is_exit_2_and_the_other_outputs_are_written() {
    let dir = Scratch::new("late-write");
    let answers = dir.file("answers.jsonl", &seed_answers());
    let markdown = dir.path("report.md");
    // /dev/full opens for writing and fails every write.
    let mut args = scripted_baseline(&answers, "1");
    args.extend(["--json", "/dev/full", "--markdown", &markdown]);
    let output = run(&args).await;
    expect(&output, 2, &["could not write /dev/full"]);
    assert!(
        std::fs::read_to_string(&markdown)
            .unwrap()
            .contains("baseline")
    );
}

#[tokio::test]
async fn backends_are_checked_before_the_run() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for backend in ["openai", "ollama"] {
        let output = run(&["--backend", backend]).await;
        expect(&output, 2, &["need --model NAME (the served model)"]);
    }
    let output = run(&["--backend", "openai", "--model", "tinyllama"]).await;
    expect(
        &output,
        2,
        &["--openai-url", "OPENAI_BASE_URL", "no default endpoint"],
    );
    let output = run(&[
        "--backend",
        "openai",
        "--model",
        "tinyllama",
        "--openai-url",
        &format!("{closed}/v1"),
    ])
    .await;
    expect(
        &output,
        2,
        &[&format!("the server at {closed}/v1 does not answer")],
    );
    let output = command(&["--backend", "openai", "--model", "tinyllama"])
        .env("OPENAI_BASE_URL", format!("{closed}/v2"))
        .output()
        .await
        .unwrap();
    expect(
        &output,
        2,
        &[&format!("the server at {closed}/v2 does not answer")],
    );
    let output = command(&["--backend", "ollama", "--model", "tinyllama"])
        .env("OLLAMA_HOST", &closed)
        .output()
        .await
        .unwrap();
    expect(
        &output,
        2,
        &[&format!("Ollama does not answer at {closed}")],
    );
    let tags = r#"{"models":[{"name":"qwen2.5-coder:1.5b"}]}"#;
    let server = TestServer::start(vec![Reply::status(200, tags)]).await;
    let output = command(&["--backend", "ollama", "--model", "tinyllama"])
        .env("OLLAMA_HOST", server.url())
        .output()
        .await
        .unwrap();
    expect(
        &output,
        2,
        &["does not have tinyllama", "ollama pull tinyllama"],
    );
    let output = run(&["--backend", "embedded", "--model", "/nonexistent/m.gguf"]).await;
    expect(
        &output,
        2,
        &["/nonexistent/m.gguf", "is not a file, nor a model preset"],
    );
    // A name that is neither a preset nor a file goes to Ollama under auto; Ollama is closed.
    let output = command(&["--model", "no-such-model"])
        .env("OLLAMA_HOST", &closed)
        .output()
        .await
        .unwrap();
    expect(
        &output,
        2,
        &["no-such-model is not a preset", "nor a GGUF file"],
    );
}

#[tokio::test]
async fn a_backend_that_fails_every_call_is_exit_1_and_named_not_blamed_on_the_model() {
    let models = r#"{"data":[{"id":"tinyllama"}]}"#;
    // After the model list, every connection gets the server's default: HTTP 500.
    let server = TestServer::start(vec![Reply::status(200, models)]).await;
    let url = format!("{}/v1", server.url());
    let output = run(&baseline("openai", ["--openai-url", &url], "1")).await;
    expect(
        &output,
        1,
        &[
            "Every sample of baseline (2) is a backend error",
            "HTTP 500",
            "every sample of baseline is a backend error",
        ],
    );
    assert!(!text(&output).contains("too weak"), "{}", text(&output));
}

#[tokio::test]
async fn multipl_e_rows_replayed_through_scripted_are_graded_right() {
    let dir = Scratch::new("multipl-e");
    let row = json!({
        "name": "HumanEval_53_add", "language": "rs",
        "prompt": "/// Add two numbers x and y\n/// >>> add(2, 3)\n/// 5\nfn add(x: isize, y: isize) -> isize {\n",
        "tests": "}\n\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(0, 1), 1);\n    assert_eq!(candidate(5, 7), 12);\n    assert_eq!(candidate(7, 5), 12);\n}\n"
    });
    let tasks = dir.file("multipl-e.jsonl", &format!("{row}\n"));
    let id = "HumanEval_53_add";
    let rows = [
        (
            id,
            0,
            fenced("fn add(x: isize, y: isize) -> isize {\n    x + y\n}"),
        ),
        (
            id,
            1,
            fenced("fn add(x: isize, y: isize) -> isize {\n    x - y\n}"),
        ),
        (id, 2, fenced("    x + y")),
        (id, 3, fenced("    if x > 4 { x - y } else { x + y }")),
        (
            id,
            4,
            fenced("fn add(x: isize, y: isize) -> isize { x * y + 1 }\nfn main() {}"),
        ),
        (
            id,
            5,
            fenced(
                "fn add(x: isize, y: isize) -> isize { x + y }\nfn main() { std::process::exit(0) }",
            ),
        ),
    ];
    let answers = dir.file("answers.jsonl", &answers(&rows));
    let json = dir.path("report.json");
    let mut args = scripted_baseline(&answers, "6");
    args.extend(["--tasks", &tasks, "--json", &json]);
    let output = run(&args).await;
    expect(&output, 0, &["backend: scripted"]);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let verdicts: Vec<&str> = report["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [
            "pass",
            "test_failure",
            "pass",
            "test_failure",
            // The answer's own `main` neither collides with the tests' nor runs.
            "test_failure",
            "pass"
        ],
        "{}",
        text(&output)
    );
    assert_eq!(report["backend"]["model"], "recorded answers");
    // --model names the model that recorded the answers; the grades stay the same.
    let named = dir.path("named.json");
    let mut args = scripted_baseline(&answers, "6");
    args.extend([
        "--tasks",
        &tasks,
        "--json",
        &named,
        "--model",
        "qwen2.5-coder-0.5b",
    ]);
    let output = run(&args).await;
    expect(&output, 0, &["backend: scripted (qwen2.5-coder-0.5b)"]);
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&named).unwrap()).unwrap();
    assert_eq!(again["backend"]["model"], "qwen2.5-coder-0.5b");
    assert_eq!(again["samples"], report["samples"]);
}

/// An OpenAI stream that answers `text`.
fn sse(text: &str) -> Reply {
    let mut body = String::new();
    for record in [
        json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 20}}),
    ] {
        body.push_str(&format!("data: {record}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    Reply::ok(
        "text/event-stream",
        vec![crate::server::Part::Bytes(body.into_bytes())],
    )
}

#[tokio::test]
async fn a_run_killed_with_sigkill_resumes_without_losing_or_repeating_a_sample() {
    let dir = Scratch::new("sigkill");
    let journal = dir.path("run.jsonl");
    let json = dir.path("report.json");
    // One answer defines both seed functions, so every cell passes.
    let both: String = builtin(TaskSet::Seed)
        .iter()
        .map(|t| fenced(t.reference.as_deref().unwrap()) + "\n")
        .collect();
    let not_offered = Reply::status(404, "no model list here");
    // The first run: three answers, then the fourth call never gets its head.
    let mut hang = sse(&both);
    hang.head_delay = Duration::from_secs(3600);
    let mut first = vec![not_offered.clone(), sse(&both), sse(&both), sse(&both)];
    first.extend(std::iter::repeat_n(hang, 4));
    let server = TestServer::start(first).await;
    let url = format!("{}/v1", server.url());
    let mut args = baseline("openai", ["--openai-url", &url], "3");
    args.extend(["--concurrency", "1", "--jsonl", &journal]);
    let mut child = command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = |path: &str| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    let waited = tokio::time::timeout(Duration::from_secs(300), async {
        while lines(&journal) < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the first three samples were never journaled"
    );
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let killed = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(
        killed.lines().count(),
        3,
        "the fourth call was still waiting"
    );

    let second = vec![not_offered, sse(&both), sse(&both), sse(&both)];
    let server = TestServer::start(second).await;
    let url = format!("{}/v1", server.url());
    let mut resumed_args = args.to_vec();
    resumed_args[3] = &url;
    resumed_args.extend(["--resume", "--json", &json]);
    let output = run(&resumed_args).await;
    expect(&output, 0, &["6 samples"]);
    assert_eq!(
        server.requests().len(),
        4,
        "only the three missing samples were asked for"
    );

    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.starts_with(&killed), "the kept lines are untouched");
    let (records, kept) = read_records(&text).unwrap();
    assert_eq!(kept, text.len());
    let mut cells: Vec<(String, u32)> = records
        .iter()
        .map(|r| (r.task_id.clone(), r.sample))
        .collect();
    cells.sort();
    let mut expected: Vec<(String, u32)> = ["fibonacci", "prime_check"]
        .iter()
        .flat_map(|t| (0..3).map(move |s| (t.to_string(), s)))
        .collect();
    expected.sort();
    assert_eq!(cells, expected, "every cell once");
    for record in &records {
        assert_eq!(record.verdict.as_str(), "pass", "{record:?}");
        assert_eq!(record.strategy.as_str(), "baseline");
        assert_eq!(record.answer, both);
        assert_eq!(record.completion_tokens, Some(20));
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["samples"].as_array().unwrap().len(), 6);
}
