//! The benchmark report: per-strategy and per-(strategy, task) aggregates computed from graded
//! samples, data-driven recommendations, and a versioned, serialisable schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::eval::grade::Verdict;
use crate::eval::run::{RunConfig, SampleRecord};
use crate::eval::stats::{Proportion, mean, pass_at_k, percentile};
use crate::eval::tasks::Task;
use crate::strategies::StrategySpec;

/// Version of the report's JSON schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// Which backend answered, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `embedded`, `ollama`, `openai` or `scripted`.
    pub kind: String,
    /// The model's name or path.
    pub model: String,
    /// Why this backend was used.
    pub reason: String,
}

/// The examples the tasks' prompts show, which a verifier runs (never the hidden tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExamplesSummary {
    /// Tasks with at least one visible example.
    pub tasks_with_examples: u32,
    /// Visible examples over every task.
    pub examples: u32,
    /// Example-like text in the prompts that was skipped (did not parse as Rust, or named
    /// something the prompt does not define).
    pub skipped: u32,
    /// Whether the verifier ran them (`false`: `--verifier-examples off`, compile only).
    pub used_by_verifier: bool,
}

impl ExamplesSummary {
    /// The summary of `tasks`' visible examples, for a run of `config`.
    pub fn of(tasks: &[Task], config: &RunConfig) -> Self {
        let counts: Vec<u32> = tasks
            .iter()
            .map(|t| crate::eval::harness::find_tests(&t.visible_tests).len() as u32)
            .collect();
        ExamplesSummary {
            tasks_with_examples: counts.iter().filter(|&&n| n > 0).count() as u32,
            examples: counts.iter().sum(),
            skipped: tasks.iter().map(|t| t.skipped_examples).sum(),
            used_by_verifier: config.verifier_examples,
        }
    }
}

/// Where a strategy's pass rate stands against baseline's in the same run, by their 95% intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VsBaseline {
    /// Its interval lies entirely above baseline's.
    Better,
    /// Its interval lies entirely below baseline's.
    Worse,
    /// The intervals overlap: the samples cannot rank the two.
    Overlapping,
}

impl VsBaseline {
    /// How `pass` compares with `baseline` ([`Proportion::beats`] both ways).
    pub fn of(pass: &Proportion, baseline: &Proportion) -> Self {
        if pass.beats(baseline) {
            VsBaseline::Better
        } else if baseline.beats(pass) {
            VsBaseline::Worse
        } else {
            VsBaseline::Overlapping
        }
    }
}

/// pass@k for one k.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassAtK {
    /// k.
    pub k: u32,
    /// The mean over tasks of the unbiased estimator.
    pub value: f64,
}

/// Aggregates of one strategy over all tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategySummary {
    /// The strategy.
    pub strategy: StrategySpec,
    /// Pass rate with its 95% Wilson interval.
    pub pass: Proportion,
    /// pass@k for k up to the samples per task.
    pub pass_at_k: Vec<PassAtK>,
    /// How many samples got each verdict.
    pub verdicts: BTreeMap<Verdict, u64>,
    /// Median latency, milliseconds.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency, milliseconds.
    pub latency_p95_ms: Option<f64>,
    /// Median time to first token, milliseconds.
    pub ttft_p50_ms: Option<f64>,
    /// Mean prompt tokens per sample (over samples that reported them).
    pub mean_prompt_tokens: Option<f64>,
    /// Mean completion tokens per sample.
    pub mean_completion_tokens: Option<f64>,
    /// Mean prompt + completion tokens per sample.
    pub mean_total_tokens: Option<f64>,
    /// Mean model calls per sample.
    pub mean_calls: Option<f64>,
    /// Mean generation speed, completion tokens per second of generation time.
    pub mean_generation_tokens_per_s: Option<f64>,
    /// Passes per 1,000 tokens spent.
    pub passes_per_1k_tokens: Option<f64>,
    /// Mean total tokens relative to baseline in the same run.
    pub tokens_vs_baseline: Option<f64>,
    /// Median latency relative to baseline in the same run.
    pub wall_vs_baseline: Option<f64>,
    /// Pass rate against baseline's in the same run, beyond the 95% intervals; `None` for
    /// baseline itself and when baseline was not run.
    pub vs_baseline: Option<VsBaseline>,
}

/// Aggregates of one (strategy, task) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    /// The task.
    pub task_id: String,
    /// The strategy.
    pub strategy: StrategySpec,
    /// Pass rate with its 95% Wilson interval.
    pub pass: Proportion,
    /// pass@k for k up to the samples.
    pub pass_at_k: Vec<PassAtK>,
    /// Median latency, milliseconds.
    pub latency_p50_ms: Option<f64>,
    /// Mean prompt + completion tokens per sample.
    pub mean_total_tokens: Option<f64>,
    /// The most common failing verdict and its first error line, if any sample failed.
    pub typical_failure: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The version of mars that wrote it.
    pub mars_version: String,
    /// The backend.
    pub backend: BackendInfo,
    /// What was run.
    pub config: RunConfig,
    /// Task ids, in order.
    pub tasks: Vec<String>,
    /// The visible examples of the tasks, and whether the verifier ran them.
    #[serde(default)]
    pub examples: ExamplesSummary,
    /// The sandbox isolation that grading ran under, in words.
    pub isolation: String,
    /// Per strategy, in the configured order.
    pub strategies: Vec<StrategySummary>,
    /// Per (strategy, task).
    pub cells: Vec<CellSummary>,
    /// Conclusions drawn from the numbers above.
    pub recommendations: Vec<String>,
    /// Every graded sample, ordered by strategy, task and sample.
    pub samples: Vec<SampleRecord>,
}

fn ks(samples: u32) -> Vec<u32> {
    let mut ks: Vec<u32> = [1, 2, 5, 10, samples]
        .into_iter()
        .filter(|&k| k >= 1 && k <= samples)
        .collect();
    ks.sort_unstable();
    ks.dedup();
    ks
}

fn total_tokens(r: &SampleRecord) -> Option<f64> {
    Some((r.prompt_tokens? + r.completion_tokens?) as f64)
}

fn mean_of(records: &[&SampleRecord], f: impl Fn(&SampleRecord) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = records.iter().filter_map(|r| f(r)).collect();
    mean(&values)
}

fn pass_count(records: &[&SampleRecord]) -> u64 {
    records
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .count() as u64
}

/// pass@k averaged over tasks, each task with its own n and c; tasks with fewer than k samples
/// are left out.
fn mean_pass_at_k(by_task: &BTreeMap<&str, Vec<&SampleRecord>>, k: u32) -> Option<f64> {
    let values: Vec<f64> = by_task
        .values()
        .filter_map(|rs| pass_at_k(rs.len() as u64, pass_count(rs), u64::from(k)))
        .collect();
    mean(&values)
}

impl Report {
    /// Computes the report of `samples` (any order) for a run of `config` over `tasks`.
    pub fn build(
        backend: BackendInfo,
        config: RunConfig,
        tasks: &[Task],
        isolation: String,
        mut samples: Vec<SampleRecord>,
    ) -> Report {
        let task_order: BTreeMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let strategy_order = |s: &StrategySpec| config.strategies.iter().position(|k| k == s);
        samples.sort_by_key(|r| {
            (
                strategy_order(&r.strategy),
                task_order.get(r.task_id.as_str()).copied(),
                r.sample,
            )
        });
        let mut strategies = Vec::new();
        let mut cells = Vec::new();
        for strategy in &config.strategies {
            let records: Vec<&SampleRecord> =
                samples.iter().filter(|r| &r.strategy == strategy).collect();
            let mut by_task: BTreeMap<&str, Vec<&SampleRecord>> = BTreeMap::new();
            for r in &records {
                by_task.entry(r.task_id.as_str()).or_default().push(r);
            }
            strategies.push(summarise(
                strategy.clone(),
                &records,
                &by_task,
                config.samples,
            ));
            for task in tasks {
                let Some(rs) = by_task.get(task.id.as_str()) else {
                    continue;
                };
                let latencies: Vec<f64> = rs.iter().map(|r| r.latency_ms).collect();
                cells.push(CellSummary {
                    task_id: task.id.clone(),
                    strategy: strategy.clone(),
                    pass: Proportion::wilson(pass_count(rs), rs.len() as u64),
                    pass_at_k: ks(rs.len() as u32)
                        .into_iter()
                        .filter_map(|k| {
                            pass_at_k(rs.len() as u64, pass_count(rs), u64::from(k))
                                .map(|value| PassAtK { k, value })
                        })
                        .collect(),
                    latency_p50_ms: percentile(&latencies, 50.0),
                    mean_total_tokens: mean_of(rs, total_tokens),
                    typical_failure: typical_failure(rs),
                });
            }
        }
        if let Some(base) = strategies
            .iter()
            .find(|s| s.strategy.is_baseline())
            .cloned()
        {
            for s in &mut strategies {
                s.tokens_vs_baseline = ratio(s.mean_total_tokens, base.mean_total_tokens);
                s.wall_vs_baseline = ratio(s.latency_p50_ms, base.latency_p50_ms);
                s.vs_baseline =
                    (!s.strategy.is_baseline()).then(|| VsBaseline::of(&s.pass, &base.pass));
            }
        }
        let recommendations = recommend(&strategies, &samples);
        Report {
            schema_version: SCHEMA_VERSION,
            mars_version: env!("CARGO_PKG_VERSION").to_owned(),
            backend,
            tasks: tasks.iter().map(|t| t.id.clone()).collect(),
            examples: ExamplesSummary::of(tasks, &config),
            config,
            isolation,
            strategies,
            cells,
            recommendations,
            samples,
        }
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

fn summarise(
    strategy: StrategySpec,
    records: &[&SampleRecord],
    by_task: &BTreeMap<&str, Vec<&SampleRecord>>,
    samples: u32,
) -> StrategySummary {
    let latencies: Vec<f64> = records.iter().map(|r| r.latency_ms).collect();
    let ttfts: Vec<f64> = records.iter().filter_map(|r| r.ttft_ms).collect();
    let mut verdicts = BTreeMap::new();
    for r in records {
        *verdicts.entry(r.verdict).or_insert(0) += 1;
    }
    let passes = pass_count(records);
    let spent: Vec<f64> = records.iter().filter_map(|r| total_tokens(r)).collect();
    let passes_per_1k_tokens = (spent.len() == records.len() && !spent.is_empty())
        .then(|| spent.iter().sum::<f64>())
        .filter(|&total| total > 0.0)
        .map(|total| passes as f64 * 1000.0 / total);
    StrategySummary {
        strategy,
        pass: Proportion::wilson(passes, records.len() as u64),
        pass_at_k: ks(samples)
            .into_iter()
            .filter_map(|k| mean_pass_at_k(by_task, k).map(|value| PassAtK { k, value }))
            .collect(),
        verdicts,
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p95_ms: percentile(&latencies, 95.0),
        ttft_p50_ms: percentile(&ttfts, 50.0),
        mean_prompt_tokens: mean_of(records, |r| r.prompt_tokens.map(|t| t as f64)),
        mean_completion_tokens: mean_of(records, |r| r.completion_tokens.map(|t| t as f64)),
        mean_total_tokens: mean_of(records, total_tokens),
        mean_calls: mean_of(records, |r| Some(f64::from(r.model_calls))),
        mean_generation_tokens_per_s: mean_of(records, |r| r.generation_tokens_per_s),
        passes_per_1k_tokens,
        tokens_vs_baseline: None,
        wall_vs_baseline: None,
        vs_baseline: None,
    }
}

fn typical_failure(records: &[&SampleRecord]) -> Option<String> {
    let mut counts: BTreeMap<Verdict, (usize, Option<&str>)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.verdict != Verdict::Pass) {
        let entry = counts.entry(r.verdict).or_insert((0, None));
        entry.0 += 1;
        if entry.1.is_none() {
            entry.1 = r.detail.as_deref();
        }
    }
    let (verdict, (_, detail)) = counts
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(&a.0)))?;
    Some(match detail {
        Some(detail) => format!("{}: {detail}", verdict.as_str()),
        None => verdict.as_str().to_owned(),
    })
}

fn percent(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

impl Report {
    /// The strategies every one of whose samples is a backend error: for them the run measured
    /// the backend, not the model.
    pub fn backend_failed(&self) -> Vec<&StrategySpec> {
        self.strategies
            .iter()
            .filter(|s| all_backend_errors(s))
            .map(|s| &s.strategy)
            .collect()
    }
}

fn all_backend_errors(s: &StrategySummary) -> bool {
    s.pass.trials > 0 && s.verdicts.get(&Verdict::BackendError) == Some(&s.pass.trials)
}

/// What backend errors did to the run: one line per strategy that had any, naming the first
/// error, so that a dead server is not read as a weak model.
fn backend_lines(strategies: &[StrategySummary], samples: &[SampleRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for s in strategies {
        let failed = s.verdicts.get(&Verdict::BackendError).copied().unwrap_or(0);
        if failed == 0 {
            continue;
        }
        let first = samples
            .iter()
            .find(|r| r.strategy == s.strategy && r.verdict == Verdict::BackendError)
            .and_then(|r| r.detail.as_deref())
            .unwrap_or("no detail recorded");
        out.push(if all_backend_errors(s) {
            format!(
                "Every sample of {} ({failed}) is a backend error, so it says nothing about the \
                 model: {first}. Check the backend (server, model name, limits) and run again.",
                s.strategy.as_str()
            )
        } else {
            format!(
                "{failed} of {} samples of {} are backend errors, counted as failures: {first}.",
                s.pass.trials,
                s.strategy.as_str()
            )
        });
    }
    out
}

/// Conclusions that follow from the summaries (and, for backend errors, the samples' details).
pub fn recommend(strategies: &[StrategySummary], samples: &[SampleRecord]) -> Vec<String> {
    let mut out = backend_lines(strategies, samples);
    if strategies.is_empty() || strategies.iter().all(all_backend_errors) {
        return out;
    }
    if strategies.iter().all(|s| s.pass.successes == 0) {
        out.push(
            "No strategy passed any sample: the model is too weak for these tasks at this token \
             budget; try easier tasks (--tasks ladder), more --max-tokens or a larger model."
                .to_owned(),
        );
        return out;
    }
    let best_rate = strategies.iter().map(|s| s.pass.rate).fold(0.0, f64::max);
    let leaders: Vec<&StrategySummary> = strategies
        .iter()
        .filter(|s| s.pass.rate == best_rate)
        .collect();
    let names: Vec<&str> = leaders.iter().map(|s| s.strategy.as_str()).collect();
    let lead = leaders[0];
    out.push(format!(
        "Highest pass rate: {} at {} ({}/{}; 95% interval {}–{}).",
        names.join(", "),
        percent(lead.pass.rate),
        lead.pass.successes,
        lead.pass.trials,
        percent(lead.pass.low),
        percent(lead.pass.high)
    ));
    if let Some(efficient) = strategies
        .iter()
        .filter(|s| s.passes_per_1k_tokens.is_some_and(|v| v > 0.0))
        .max_by(|a, b| {
            a.passes_per_1k_tokens
                .partial_cmp(&b.passes_per_1k_tokens)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    {
        out.push(format!(
            "Most passes per 1,000 tokens: {} ({:.2}).",
            efficient.strategy.as_str(),
            efficient.passes_per_1k_tokens.unwrap_or_default()
        ));
    }
    match strategies.iter().find(|s| s.strategy.is_baseline()) {
        Some(base) => {
            let winners: Vec<&StrategySummary> = strategies
                .iter()
                .filter(|s| s.vs_baseline == Some(VsBaseline::Better))
                .collect();
            if winners.is_empty() {
                out.push(format!(
                    "No strategy beat baseline ({}) beyond its 95% interval; with {} samples per \
                     strategy the differences above may be noise.",
                    percent(base.pass.rate),
                    base.pass.trials
                ));
            }
            for s in winners {
                let cost = s
                    .tokens_vs_baseline
                    .map(|r| format!(" at {r:.1}x baseline's tokens"))
                    .unwrap_or_default();
                out.push(format!(
                    "{} beat baseline beyond the 95% intervals ({} vs {}){cost}.",
                    s.strategy.as_str(),
                    percent(s.pass.rate),
                    percent(base.pass.rate)
                ));
            }
        }
        None => out.push("Baseline was not run, so no strategy is compared with it.".to_owned()),
    }
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
