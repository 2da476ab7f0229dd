"""The merged Markdown (summary, strategy-by-model tables, recommendations, failures, and each
model's own report as the binary rendered it), and writing the result files."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

from mars_modal.merge import backend_errors, best_strategy, merged_json, percent, reported
from mars_modal.merge import strategy_order
from mars_modal.records import ModelResult, Proportion, RunOptions, Runner


def pass_cell(p: Proportion) -> str:
    """The same shape as the Rust tables' pass cell: `50% (2/4) [15–85%]`."""
    return (f"{percent(p['rate'])} ({p['successes']}/{p['trials']}) "
            f"[{p['low'] * 100:.0f}–{p['high'] * 100:.0f}%]")


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _opt(value: float | None, fmt: str = "{:.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def embed_report(markdown: str, plot: str | None, plot_path: str) -> str:
    """The binary's Markdown under a model heading: its title dropped, headings one level down,
    the plot link pointing into the assets folder."""
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    lines = ["#" + line if re.match(r"#{1,5} ", line) else line for line in lines]
    text = "\n".join(lines).strip() + "\n"
    return text.replace(f"]({plot})", f"]({plot_path})") if plot else text


def _header(merged: dict[str, Any], results: list[ModelResult]) -> list[str]:
    ok = reported(results)
    runner = merged["runner"]
    where = (f"Modal, GPU {runner['gpu']}" if runner["kind"] == "modal"
             else "this machine (--local, no Modal)")
    out = ["# mars benchmark across models\n",
           f"- run on {where}, {merged['generated_at']}; {runner['wall_s']:.0f} s wall in all",
           (f"- models: {len(results)} requested, {len(ok)} reported, "
            f"{len(results) - len(ok)} failed"),
           (f"- tasks: {merged['options']['tasks']}; options: "
            f"`{' '.join(merged['options']['args']) or '(binary defaults)'}`")]
    configs = {json.dumps(report["config"], sort_keys=True) for _, report in ok}
    if len(configs) == 1:
        c = ok[0][1]["config"]
        out.append(f"- every model: strategies {', '.join(c['strategies'])}; samples per (task, "
                   f"strategy) {c['samples']}; seed {c['seed']}; max tokens {c['max_tokens']}; "
                   f"temperature {c['temperature']}; candidates {c['candidates']}")
    return out


def _summary(results: list[ModelResult]) -> str:
    rows = []
    for r in results:
        gpu = r.gpu or "–"
        if not r.ok or r.report is None:
            rows.append([r.label, r.job.backend, "failed", "–", "–", "–", "–", _opt(r.wall_s),
                         gpu])
            continue
        report = r.report
        best = best_strategy(report)
        errors, total = backend_errors(report)
        if best is None or best["pass"]["successes"] == 0:
            lead = ["none passed", "–"]
        else:
            lead = [best["strategy"], pass_cell(best["pass"])]
        rows.append([r.label, f"{report['backend']['kind']} ({report['backend']['model']})",
                     "ok", *lead, str(total), str(errors), _opt(r.wall_s), gpu])
    return table(["model", "backend", "status", "best strategy", "its pass rate [95% CI]",
                  "samples", "backend errors", "benchmark s", "GPU"], rows)


def _by_strategy(results: list[ModelResult]) -> list[str]:
    ok = reported(results)
    names = strategy_order(results)
    header = ["strategy"] + [r.label for r, _ in ok]
    by_model = [{s["strategy"]: s for s in report["strategies"]} for _, report in ok]
    return [
        "## Pass rate by strategy and model\n",
        table(header, [[n] + [pass_cell(m[n]["pass"]) if n in m else "–" for m in by_model]
                       for n in names]),
        "## Mean tokens per sample by strategy and model\n",
        table(header, [[n] + [_opt(m[n]["mean_total_tokens"]) if n in m else "–"
                              for m in by_model] for n in names]),
    ]


def _failures(failed: list[ModelResult]) -> list[str]:
    out = ["## Failed models\n",
           table(["model", "backend", "error"],
                 [[r.label, r.job.backend, r.error or ""] for r in failed])]
    for r in failed:
        if r.log_tail:
            out.append(f"<details><summary>{r.label}: output tail</summary>\n\n```text\n"
                       f"{r.log_tail.replace('```', '` ` `')}\n```\n</details>\n")
    return out


def _model_section(r: ModelResult, assets: str) -> list[str]:
    fact = f"- benchmark: {_opt(r.wall_s)} s wall"
    if r.setup_s is not None:
        fact += f", after {r.setup_s:.0f} s starting Ollama and pulling the model"
    out = [f"## {r.label}\n", fact + (f" on {r.gpu}\n" if r.gpu else "\n")]
    if r.ollama_ps:
        out.append(f"`ollama ps` after the run:\n\n```text\n{r.ollama_ps}\n```\n")
    plot = f"{r.job.slug}.svg" if r.svg else None
    out.append(embed_report(r.markdown or "", plot, f"{assets}/{r.job.slug}.svg"))
    return out


def render_markdown(merged: dict[str, Any], results: list[ModelResult], assets: str) -> str:
    failed = [r for r in results if not r.ok]
    out = _header(merged, results)
    out.append("- merged data: the JSON file next to this one; per-model plots in "
               f"`{assets}/`\n")
    out += ["## Summary\n", _summary(results)]
    if reported(results):
        out += _by_strategy(results)
    out.append("## Recommendations\n")
    out += [f"- {line}" for line in merged["recommendations"]] + [""]
    if failed:
        out += _failures(failed)
    for r, _ in reported(results):
        out += _model_section(r, assets)
    return "\n".join(out).rstrip() + "\n"


def write_results(results: list[ModelResult], options: RunOptions, runner: Runner,
                  output: Path) -> dict[str, Any]:
    """Writes OUTPUT (Markdown), OUTPUT's .json, and OUTPUT's _files/ folder of SVG plots."""
    generated_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    merged = merged_json(results, options, runner, generated_at)
    assets = output.parent / f"{output.stem}_files"
    assets.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.ok and r.svg:
            (assets / f"{r.job.slug}.svg").write_text(r.svg)
    output.with_suffix(".json").write_text(json.dumps(merged, indent=2) + "\n")
    output.write_text(render_markdown(merged, results, assets.name))
    return merged


def finish(results: list[ModelResult], options: RunOptions, runner: Runner,
           output: Path) -> int:
    """Writes the results and prints one line per model; 0 when some model reported."""
    write_results(results, options, runner, output)
    for r in results:
        print(f"  {r.label}: {'ok' if r.ok else f'FAILED: {r.error}'}")
    print(f"wrote {output}, {output.with_suffix('.json')} and {output.stem}_files/")
    return 0 if any(r.ok for r in results) else 1
