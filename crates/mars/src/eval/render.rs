//! Rendering a [`Report`]: terminal tables, Markdown, and an SVG plot of pass rate against
//! tokens. All three are pure functions of the report, so the same report renders the same bytes.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};

use crate::eval::grade::Verdict;
use crate::eval::report::{PassAtK, Report, StrategySummary};

mod svg;

pub use svg::svg;

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}x"))
}

fn pass_cell(s: &crate::eval::stats::Proportion) -> String {
    format!(
        "{:.0}% ({}/{}) [{:.0}–{:.0}%]",
        s.rate * 100.0,
        s.successes,
        s.trials,
        s.low * 100.0,
        s.high * 100.0
    )
}

fn pass_at_k(values: &[PassAtK]) -> String {
    values
        .iter()
        .map(|p| format!("@{}: {:.2}", p.k, p.value))
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdicts(s: &StrategySummary) -> String {
    Verdict::ALL
        .iter()
        .filter_map(|v| s.verdicts.get(v).map(|n| format!("{} {n}", v.as_str())))
        .collect::<Vec<_>>()
        .join(", ")
}

const STRATEGY_HEADER: [&str; 11] = [
    "strategy",
    "pass rate [95% CI]",
    "pass@k",
    "p50 ms",
    "p95 ms",
    "TTFT p50 ms",
    "tokens",
    "calls",
    "gen tok/s",
    "tokens vs base",
    "wall vs base",
];

fn strategy_rows(report: &Report) -> Vec<Vec<String>> {
    report
        .strategies
        .iter()
        .map(|s| {
            vec![
                s.strategy.as_str().to_owned(),
                pass_cell(&s.pass),
                pass_at_k(&s.pass_at_k),
                opt(s.latency_p50_ms, 0),
                opt(s.latency_p95_ms, 0),
                opt(s.ttft_p50_ms, 0),
                opt(s.mean_total_tokens, 0),
                opt(s.mean_calls, 1),
                opt(s.mean_generation_tokens_per_s, 1),
                ratio(s.tokens_vs_baseline),
                ratio(s.wall_vs_baseline),
            ]
        })
        .collect()
}

const CELL_HEADER: [&str; 6] = [
    "task",
    "strategy",
    "pass rate [95% CI]",
    "p50 ms",
    "tokens",
    "typical failure",
];

fn cell_rows(report: &Report) -> Vec<Vec<String>> {
    report
        .cells
        .iter()
        .map(|c| {
            vec![
                c.task_id.clone(),
                c.strategy.as_str().to_owned(),
                pass_cell(&c.pass),
                opt(c.latency_p50_ms, 0),
                opt(c.mean_total_tokens, 0),
                c.typical_failure.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for index in 1..header.len() {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// The strategy comparison, the per-task table and the recommendations, for a terminal.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Strategy comparison");
    let _ = writeln!(out, "{}", table(&STRATEGY_HEADER, strategy_rows(report)));
    let verdict_lines: Vec<String> = report
        .strategies
        .iter()
        .map(|s| format!("  {}: {}", s.strategy.as_str(), verdicts(s)))
        .collect();
    let _ = writeln!(out, "Verdicts\n{}\n", verdict_lines.join("\n"));
    let _ = writeln!(out, "Per task");
    let mut cells = table(&CELL_HEADER, cell_rows(report));
    if let Some(column) = cells.column_mut(5) {
        column.set_cell_alignment(CellAlignment::Left);
    }
    let _ = writeln!(out, "{cells}");
    let _ = writeln!(out, "Recommendations");
    for line in &report.recommendations {
        let _ = writeln!(out, "- {line}");
    }
    out
}

fn markdown_table(out: &mut String, header: &[&str], rows: Vec<Vec<String>>) {
    let escape = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| escape(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// The report as Markdown: summary, strategy table, verdicts, per-task table, recommendations.
/// `plot` is an optional relative path of the SVG to embed.
pub fn markdown(report: &Report, plot: Option<&str>) -> String {
    let mut out = String::new();
    let c = &report.config;
    let _ = writeln!(out, "# mars benchmark report\n");
    let _ = writeln!(
        out,
        "- backend: {} (`{}`): {}",
        report.backend.kind, report.backend.model, report.backend.reason
    );
    let _ = writeln!(out, "- tasks: {}", report.tasks.join(", "));
    let _ = writeln!(
        out,
        "- samples per (task, strategy): {}; seed {}; max tokens {}; temperature {}; candidates {}",
        c.samples, c.seed, c.max_tokens, c.temperature, c.candidates
    );
    let _ = writeln!(out, "- grading sandbox: {}", report.isolation);
    let _ = writeln!(
        out,
        "- mars {} (report schema {})\n",
        report.mars_version, report.schema_version
    );
    let _ = writeln!(out, "## Strategies\n");
    markdown_table(&mut out, &STRATEGY_HEADER, strategy_rows(report));
    let _ = writeln!(out, "\n## Verdicts\n");
    let mut header = vec!["strategy"];
    header.extend(Verdict::ALL.iter().map(|v| v.as_str()));
    let rows = report
        .strategies
        .iter()
        .map(|s| {
            std::iter::once(s.strategy.as_str().to_owned())
                .chain(
                    Verdict::ALL
                        .iter()
                        .map(|v| s.verdicts.get(v).copied().unwrap_or(0).to_string()),
                )
                .collect()
        })
        .collect();
    markdown_table(&mut out, &header, rows);
    if let Some(plot) = plot {
        let _ = writeln!(out, "\n![pass rate against mean tokens per sample]({plot})");
    }
    let _ = writeln!(out, "\n## Per task\n");
    markdown_table(&mut out, &CELL_HEADER, cell_rows(report));
    let _ = writeln!(out, "\n## Recommendations\n");
    for line in &report.recommendations {
        let _ = writeln!(out, "- {line}");
    }
    out
}
