"""Merging several models' results: the merged JSON and its cross-model recommendations.

Every rate, interval and comparison with baseline is the binary's (`mars::eval::report`): the
recommendations here pick, count and quote them across models and compute no statistic.
"""

from __future__ import annotations

from typing import Any

from mars_modal.records import ModelResult, Report, RunOptions, Runner, StrategySummary

MERGE_KIND = "mars-benchmark-merge"
MERGE_VERSION = 1
# The fields of a model's result kept in the merged JSON (not its Markdown and plot).
MERGED_FIELDS = ("label", "backend", "model", "gguf", "ok", "error", "wall_s", "setup_s", "gpu",
                 "ollama_version", "ollama_ps", "log_tail", "report")


def percent(p: float) -> str:
    return f"{p * 100:.0f}%"


def reported(results: list[ModelResult]) -> list[tuple[ModelResult, Report]]:
    return [(r, r.report) for r in results if r.ok and r.report is not None]


def strategy_order(results: list[ModelResult]) -> list[str]:
    order: list[str] = []
    for _, report in reported(results):
        for s in report["strategies"]:
            if s["strategy"] not in order:
                order.append(s["strategy"])
    return order


def best_strategy(report: Report) -> StrategySummary | None:
    tried = [s for s in report["strategies"] if s["pass"]["trials"] > 0]
    return max(tried, key=lambda s: s["pass"]["rate"], default=None)


def backend_errors(report: Report) -> tuple[int, int]:
    """Samples that were backend errors, and all samples."""
    errors = sum(s["verdicts"].get("backend_error", 0) for s in report["strategies"])
    return errors, sum(s["pass"]["trials"] for s in report["strategies"])


def _leaders(pairs: list[tuple[str, StrategySummary]]) -> list[str]:
    top = max(s["pass"]["rate"] for _, s in pairs)
    leaders = [(m, s) for m, s in pairs if s["pass"]["rate"] == top]
    names = ", ".join(f"{m} with {s['strategy']}" for m, s in leaders)
    p = leaders[0][1]["pass"]
    out = [(f"Highest pass rate: {names} at {percent(top)} ({p['successes']}/{p['trials']}; "
            f"95% interval {percent(p['low'])}–{percent(p['high'])}).")]
    efficient = [(m, s) for m, s in pairs if (s.get("passes_per_1k_tokens") or 0) > 0]
    if efficient:
        m, s = max(efficient, key=lambda ms: ms[1]["passes_per_1k_tokens"] or 0)
        out.append(f"Most passes per 1,000 tokens: {m} with {s['strategy']} "
                   f"({s['passes_per_1k_tokens']:.2f}).")
    return out


def _against_baseline(results: list[ModelResult]) -> list[str]:
    """Per strategy, the models where the binary found it better or worse than baseline beyond
    the 95% intervals (its `vs_baseline`)."""
    out: list[str] = []
    with_base = [(r.label, {s["strategy"]: s for s in report["strategies"]})
                 for r, report in reported(results)
                 if any(s["strategy"] == "baseline" for s in report["strategies"])]
    for name in strategy_order(results):
        if name == "baseline":
            continue
        compared = [(m, by_name[name]) for m, by_name in with_base if name in by_name]
        wins = [m for m, s in compared if s.get("vs_baseline") == "better"]
        losses = [m for m, s in compared if s.get("vs_baseline") == "worse"]
        if wins or losses:
            out.append(f"{name} vs baseline beyond the 95% intervals: better for "
                       f"{len(wins)} of {len(compared)} models ({', '.join(wins) or 'none'}), "
                       f"worse for {len(losses)} ({', '.join(losses) or 'none'}).")
    if with_base and not out and len(strategy_order(results)) > 1:
        out.append("No strategy beat or lost to baseline beyond the 95% intervals for any "
                   "model: the differences above may be noise.")
    return out


def recommend(results: list[ModelResult]) -> list[str]:
    """Cross-model conclusions, from the reports' own numbers; each model's own conclusions are
    in its section, written by the binary."""
    ok = reported(results)
    failed = [r.label for r in results if not r.ok]
    out: list[str] = []
    pairs = [(r.label, s) for r, report in ok for s in report["strategies"]
             if s["pass"]["trials"]]
    if not pairs:
        out.append("No model produced a graded sample, so nothing can be compared.")
    elif all(s["pass"]["successes"] == 0 for _, s in pairs):
        out.append(f"No (model, strategy) pair passed any sample ({len(pairs)} pairs): try easier "
                   "tasks (--tasks ladder), more --max-tokens or larger models.")
    else:
        out += _leaders(pairs)
        out += _against_baseline(results)
    for r, report in ok:
        errors, total = backend_errors(report)
        if total and errors == total:
            out.append(f"{r.label}: all {total} samples were backend errors; its numbers "
                       "measure the backend failing, not the model.")
        elif errors:
            out.append(f"{r.label}: {errors} of {total} samples were backend errors, so its "
                       "pass rates understate the model.")
    if failed:
        out.append(f"{len(failed)} of {len(results)} models produced no report "
                   f"({', '.join(failed)}); see Failed models.")
    return out


def merged_json(results: list[ModelResult], options: RunOptions, runner: Runner,
                generated_at: str) -> dict[str, Any]:
    """MODAL_BENCHMARK_RESULTS.json: every model's report or failure, the options, and the
    recommendations."""
    models = [{k: r.to_json()[k] for k in MERGED_FIELDS} for r in results]
    return {
        "kind": MERGE_KIND,
        "version": MERGE_VERSION,
        "generated_at": generated_at,
        "runner": {"kind": runner.kind, "gpu": runner.gpu, "wall_s": runner.wall_s},
        "options": {"tasks": options.tasks, "args": list(options.args)},
        "models": models,
        "recommendations": recommend(results),
    }
