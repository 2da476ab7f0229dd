//! HumanEval-Rust loading: canonical solutions graded once in the sandbox, failing rows dropped
//! with their reason, grades cached by the dataset's hash.

use std::time::Duration;

use mars::eval::grade::Grader;
use mars::eval::humaneval::load;
use mars::eval::sandbox::{Sandbox, SandboxConfig};

fn row(id: &str, category: &str, solution: &str, test: &str) -> String {
    serde_json::json!({
        "task_id": id, "category": category, "prompt": "fn double(x: i32) -> i32 {\n",
        "canonical_solution": solution, "test": test, "entry_point": "double",
    })
    .to_string()
}

async fn grader() -> Grader {
    let mut config = SandboxConfig::default();
    config.run.wall = Duration::from_secs(5);
    Grader::new(Sandbox::new(config).await.expect("the sandbox works here"))
}

#[tokio::test]
async fn canonical_solutions_are_graded_once_and_failing_rows_dropped() {
    let tests = "#[cfg(test)]\nmod tests {\n    use super::*;\n    #[test]\n    fn t() { assert_eq!(double(4), 8); }\n}\n";
    let text = [
        row("good", "codegen", "    x * 2\n}\n", tests),
        row("wrong", "codegen", "    x + 2\n}\n", tests),
        row("broken", "codegen", "    x *\n}\n", tests),
        row(
            "cut",
            "codegen",
            "    x * 2\n}\n",
            "#[cfg(test)]\nmod tests {\n    // BEGIN_TESTS\n",
        ),
        row("other", "transform", "    x * 2\n}\n", tests),
    ]
    .join("\n");
    let dir = std::env::temp_dir().join(format!("mars-humaneval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rows.jsonl");
    std::fs::write(&path, &text).unwrap();

    let first = grader().await;
    let loaded = load(&path, &dir, &first, 2).await.unwrap();
    assert_eq!(loaded.rows, 4);
    let kept: Vec<&str> = loaded.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(kept, ["good"]);
    let reasons: Vec<(&str, &str)> = loaded
        .dropped
        .iter()
        .map(|d| (d.id.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(
        reasons[0],
        (
            "cut",
            "the test holds no #[test] function and no fn main: it would pass anything"
        )
    );
    assert_eq!(reasons[1].0, "wrong");
    assert!(reasons[1].1.contains("test_failure"), "{reasons:?}");
    assert_eq!(reasons[2].0, "broken");
    assert!(reasons[2].1.contains("compile_error"), "{reasons:?}");
    assert_eq!(first.cached(), 3, "each canonical solution was graded once");

    // The grades are cached: a second load compiles nothing.
    let second = grader().await;
    let again = load(&path, &dir, &second, 2).await.unwrap();
    assert_eq!(again.tasks, loaded.tasks);
    assert_eq!(again.dropped, loaded.dropped);
    assert_eq!(second.cached(), 0);

    // Another dataset (one byte changed) is graded afresh.
    std::fs::write(&path, format!("{text}\n")).unwrap();
    let third = grader().await;
    load(&path, &dir, &third, 2).await.unwrap();
    assert_eq!(third.cached(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}
