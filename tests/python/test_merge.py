"""Merging several models' reports into MODAL_BENCHMARK_RESULTS.md and .json: two reports made
by the real binary from recorded answers (fixtures/generate.py) and one failed model. Every
number and comparison with baseline the merge shows is one the binary's report carries."""

import copy
import json
import math
import re

import pytest

from conftest import REPO_ROOT

from mars_modal import merge
from mars_modal.jobs import failure, parse_models, run_options
from mars_modal.markdown import pass_cell, write_results
from mars_modal.records import ModelResult, Runner

FIXTURES = REPO_ROOT / "tests/python/fixtures"
RUNNER = Runner("modal", "L4", 321.0)


def failed_model() -> ModelResult:
    (job,) = parse_models("qwen2.5-coder:1.5b")
    return failure(job, "ollama pull qwen2.5-coder:1.5b failed (status 1)",
                   "Error: pull model manifest: file does not exist")


def results() -> list[ModelResult]:
    ok = [ModelResult.from_json(json.loads((FIXTURES / f"result-{n}.json").read_text()))
          for n in ("strong", "weak")]
    return ok + [failed_model()]


def options():
    return run_options("baseline,reread", "seed", samples=2)


@pytest.fixture
def written(tmp_path):
    rs = results()
    merged = write_results(rs, options(), RUNNER, tmp_path / "RESULTS.md")
    return {"results": rs, "merged": merged, "dir": tmp_path,
            "md": (tmp_path / "RESULTS.md").read_text(),
            "json": json.loads((tmp_path / "RESULTS.json").read_text())}


def section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n## ", start + len(heading) + 2)
    return markdown[start:end if end >= 0 else None]


def table(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows
            if not row.startswith("|---")]


def test_files_written_next_to_the_markdown(written):
    assert (written["dir"] / "RESULTS_files/strong-model.svg").read_text() == \
        written["results"][0].svg
    assert (written["dir"] / "RESULTS_files/weak-model.svg").is_file()
    assert not (written["dir"] / "RESULTS_files/qwen2.5-coder-1.5b.svg").exists()
    assert written["json"] == written["merged"]


def test_strategy_by_model_table_shows_the_reports_numbers(written):
    rows = table(section(written["md"], "## Pass rate by strategy and model"))
    assert rows[0] == ["strategy", "strong-model", "weak-model"]
    reports = [r.report for r in written["results"][:2]]
    assert [r[0] for r in rows[1:]] == [s["strategy"] for s in reports[0]["strategies"]]
    for row in rows[1:]:
        for cell, report in zip(row[1:], reports, strict=True):
            (summary,) = [s for s in report["strategies"] if s["strategy"] == row[0]]
            p = summary["pass"]
            rate, successes, trials, low, high = re.fullmatch(
                r"(\d+)% \((\d+)/(\d+)\) \[(\d+)–(\d+)%\]", cell).groups()
            assert (int(successes), int(trials)) == (p["successes"], p["trials"])
            assert int(rate) == round(p["rate"] * 100)
            assert (int(low), int(high)) == (round(p["low"] * 100), round(p["high"] * 100))
    tokens = table(section(written["md"], "## Mean tokens per sample by strategy and model"))
    for row in tokens[1:]:
        for cell, report in zip(row[1:], reports, strict=True):
            (summary,) = [s for s in report["strategies"] if s["strategy"] == row[0]]
            assert int(cell) == round(summary["mean_total_tokens"])


def test_summary_lists_every_model_and_the_failure(written):
    rows = {r[0]: r for r in table(section(written["md"], "## Summary"))[1:]}
    assert set(rows) == {"strong-model", "weak-model", "qwen2.5-coder:1.5b"}
    strong = written["results"][0].report
    best = max(strong["strategies"], key=lambda s: s["pass"]["rate"])
    assert rows["strong-model"][2:5] == ["ok", best["strategy"], pass_cell(best["pass"])]
    assert rows["strong-model"][5] == str(sum(s["pass"]["trials"] for s in strong["strategies"]))
    assert rows["weak-model"][6] == "1"  # the sample without a recorded answer
    assert rows["qwen2.5-coder:1.5b"][2] == "failed"
    failures = table(section(written["md"], "## Failed models"))
    assert failures[1] == ["qwen2.5-coder:1.5b", "ollama",
                           "ollama pull qwen2.5-coder:1.5b failed (status 1)"]
    assert "file does not exist" in section(written["md"], "## Failed models")
    assert "- models: 3 requested, 2 reported, 1 failed" in written["md"]
    assert "run on Modal, GPU L4" in written["md"]


def test_each_model_section_embeds_the_binarys_own_markdown(written):
    for r in written["results"][:2]:
        own = section(written["md"], f"## {r.label}")
        rust_tables = [line for line in r.markdown.splitlines() if line.startswith("|")]
        assert rust_tables and all(line in own for line in rust_tables)
        assert "### Strategies" in own and "### Per task" in own
        link = re.search(r"!\[[^\]]*\]\(([^)]+)\)", own).group(1)
        assert link == f"RESULTS_files/{r.job.slug}.svg"
        assert (written["dir"] / link).is_file()
    assert "# mars benchmark report" not in written["md"]


def test_merged_json_keeps_reports_and_the_same_recommendations(written):
    merged = written["json"]
    assert [m["label"] for m in merged["models"]] == [r.label for r in written["results"]]
    assert merged["models"][0]["report"] == written["results"][0].report
    assert set(merged["models"][0]) == set(merge.MERGED_FIELDS)
    assert merged["models"][2]["report"] is None and not merged["models"][2]["ok"]
    bullets = [line[2:] for line in section(written["md"], "## Recommendations").splitlines()
               if line.startswith("- ")]
    assert bullets == merged["recommendations"]


def wilson(successes: int, trials: int) -> dict:
    z = 1.959963984540054
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    half = z * spread / (1 + z * z / trials)
    return {"successes": successes, "trials": trials, "rate": p,
            "low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def with_pass(rs: list[ModelResult], label: str, strategy: str, successes: int, trials: int,
              vs_baseline: str | None = "overlapping"):
    """Rewrites one strategy's numbers as the binary would report them, `vs_baseline`
    included (the merge reads that field and compares no intervals itself)."""
    (r,) = [r for r in rs if r.label == label]
    (s,) = [s for s in r.report["strategies"] if s["strategy"] == strategy]
    s["pass"] = wilson(successes, trials)
    s["verdicts"] = {"pass": successes, "test_failure": trials - successes}
    s["vs_baseline"] = None if strategy == "baseline" else vs_baseline


def test_recommendations_follow_the_fixture_data():
    rs = results()
    advice = merge.recommend(rs)
    strong = {s["strategy"]: s for s in rs[0].report["strategies"]}
    lead = max(strong.values(), key=lambda s: s["pass"]["rate"])
    p = lead["pass"]
    assert advice[0] == (f"Highest pass rate: strong-model with {lead['strategy']} at "
                         f"{merge.percent(p['rate'])} ({p['successes']}/{p['trials']}; 95% "
                         f"interval {merge.percent(p['low'])}–{merge.percent(p['high'])}).")
    # The binary found every strategy's interval overlapping baseline's in both reports.
    assert [s["vs_baseline"] for r in rs[:2] for s in r.report["strategies"]] == \
        [None, "overlapping", None, "overlapping"]
    assert not any("It beats" in line for line in advice)
    assert any(line.startswith("No strategy beat or lost to baseline") for line in advice)
    assert "weak-model: 1 of 8 samples were backend errors, so its pass rates understate the " \
        "model." in advice
    assert advice[-1] == "1 of 3 models produced no report (qwen2.5-coder:1.5b); see Failed models."


def test_recommendations_name_separated_winners():
    rs = copy.deepcopy(results())
    # What the binary reports for these numbers (`VsBaseline::of`, tested in report.rs).
    with_pass(rs, "strong-model", "reread", 95, 100, vs_baseline="better")
    with_pass(rs, "strong-model", "baseline", 40, 100)
    with_pass(rs, "weak-model", "reread", 10, 100, vs_baseline="worse")
    with_pass(rs, "weak-model", "baseline", 30, 100)
    advice = merge.recommend(rs)
    assert advice[0].startswith("Highest pass rate: strong-model with reread at 95% (95/100;")
    assert ("reread vs baseline beyond the 95% intervals: better for 1 of 2 models "
            "(strong-model), worse for 1 (weak-model).") in advice
    assert not any(line.startswith("No strategy beat or lost") for line in advice)


def test_recommendations_take_the_comparison_from_the_report_not_the_numbers():
    # Numbers whose intervals are far apart, but the report says they overlap: the merge
    # follows the report (the statistics live in one place, the binary).
    rs = copy.deepcopy(results())
    with_pass(rs, "strong-model", "reread", 95, 100, vs_baseline="overlapping")
    with_pass(rs, "strong-model", "baseline", 5, 100)
    advice = merge.recommend(rs)
    assert not any(line.startswith("reread vs baseline") for line in advice)
    assert any(line.startswith("No strategy beat or lost to baseline") for line in advice)


def test_recommendations_when_nothing_passed_or_nothing_ran():
    rs = copy.deepcopy(results())
    for label in ("strong-model", "weak-model"):
        for strategy in ("baseline", "reread"):
            with_pass(rs, label, strategy, 0, 4)
    assert merge.recommend(rs)[0].startswith(
        "No (model, strategy) pair passed any sample (4 pairs)")
    only_failed = [failed_model()]
    assert merge.recommend(only_failed) == [
        "No model produced a graded sample, so nothing can be compared.",
        "1 of 1 models produced no report (qwen2.5-coder:1.5b); see Failed models."]


def test_a_run_with_only_failures_still_writes_both_files(tmp_path):
    write_results([failed_model()], options(), RUNNER, tmp_path / "R.md")
    text = (tmp_path / "R.md").read_text()
    assert "## Failed models" in text and "## Pass rate by strategy and model" not in text
    assert json.loads((tmp_path / "R.json").read_text())["models"][0]["ok"] is False


def test_summary_and_sections_say_what_was_measured(tmp_path):
    rs = copy.deepcopy(results())
    for strategy in ("baseline", "reread"):
        with_pass(rs, "weak-model", strategy, 0, 4)
    rs[0] = rs[0].with_facts(
        setup_s=42.4, gpu="NVIDIA L4, 23034 MiB",
        ollama_ps="NAME  ID  SIZE  PROCESSOR  UNTIL\nm  1  1 GB  100% GPU  4 minutes")
    write_results(rs, options(), RUNNER, tmp_path / "R.md")
    text = (tmp_path / "R.md").read_text()
    rows = {r[0]: r for r in table(section(text, "## Summary"))[1:]}
    assert rows["weak-model"][3:5] == ["none passed", "–"]
    assert rows["strong-model"][8] == "NVIDIA L4, 23034 MiB"
    strong = section(text, "## strong-model")
    assert (f"- benchmark: {rs[0].wall_s:.0f} s wall, after 42 s starting Ollama and pulling "
            "the model on NVIDIA L4, 23034 MiB") in strong
    assert ("```text\nNAME  ID  SIZE  PROCESSOR  UNTIL\nm  1  1 GB  100% GPU  4 minutes\n```"
            in strong)
    assert "starting Ollama" not in section(text, "## weak-model")
