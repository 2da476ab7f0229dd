"""docs/study/analyze.py reads a study's --jsonl files: paired counts against baseline with
McNemar's exact test, cut-off answers, and what repair rounds and CodeT's tests did."""

import importlib.util
import json

from conftest import REPO_ROOT

SPEC = importlib.util.spec_from_file_location("analyze", REPO_ROOT / "docs/study/analyze.py")
analyze = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(analyze)


def record(task, strategy, verdict, trace=None, calls=1):
    row = {"task_id": task, "strategy": strategy, "sample": 0, "verdict": verdict,
           "model_calls": calls, "answer": ""}
    if trace is not None:
        row["trace"] = trace
    return row


def attempt(chain, n, note, text):
    return {"stage": f"chain {chain} attempt {n}", "text": text, "note": note}


def repair_trace(codes, notes, feedback, finish="stop"):
    return {
        "finish_reason": finish,
        "candidates": [{"text": c} for c in codes],
        "steps": [attempt(0, i, n, f) for i, (n, f) in enumerate(zip(notes, feedback))],
    }


def test_mcnemar_exact_p_values():
    assert analyze.mcnemar_p(0, 0) == 1.0
    # 6 discordant pairs all one way: 2 * (1/2)^6.
    assert abs(analyze.mcnemar_p(6, 0) - 2 / 64) < 1e-12
    assert abs(analyze.mcnemar_p(1, 5) - 2 * (1 + 6) / 64) < 1e-12
    assert analyze.mcnemar_p(3, 3) == 1.0


def test_paired_counts_compare_the_same_task_and_sample():
    rows = [record("a", "baseline", "pass"), record("b", "baseline", "compile_error"),
            record("c", "baseline", "compile_error"),
            record("a", "repair", "test_failure"), record("b", "repair", "pass"),
            record("c", "repair", "pass")]
    [(name, b, c, p)] = analyze.paired(analyze.by_strategy(rows))
    assert (name, b, c) == ("repair", 2, 1)
    assert p == 1.0


def test_two_runs_are_paired_strategy_by_strategy():
    on = [record("a", "codet", "pass"), record("b", "codet", "pass"),
          record("c", "codet", "compile_error"), record("a", "baseline", "pass")]
    off = [record("a", "codet", "compile_error"), record("b", "codet", "pass"),
           record("c", "codet", "pass"), record("d", "codet", "pass")]
    # Baseline ran only in the first; task d only in the second: neither is paired.
    [(name, pass_a, pass_b, b, c, p)] = analyze.across(on, off)
    assert (name, pass_a, pass_b, b, c) == ("codet", 2, 2, 1, 1)
    assert p == 1.0


def test_repair_rounds_count_fixes_and_ignored_feedback():
    error = "The code does not compile. The first compiler error is:\nerror[E0308]: mismatched types"
    other = "The code does not compile. The first compiler error is:\nerror[E0277]: no"
    rows = [
        # Passed the verifier at once, and the hidden tests.
        record("a", "repair", "pass", repair_trace(["x"], ["candidate 0: score 1, passed"],
                                                   ["passed"])),
        # Repaired on the second round; the first repair repeated the same code.
        record("b", "repair", "test_failure", repair_trace(
            ["y", "y", "z"],
            ["candidate 0: score 0, compile error", "candidate 1: score 0, compile error",
             "candidate 2: score 1, passed"],
            [error, error, "passed"]), calls=3),
        # Never repaired: new code, same first error; then a different error.
        record("c", "repair", "compile_error", repair_trace(
            ["p", "q", "r"],
            ["candidate 0: score 0, compile error"] * 3, [error, error, other]), calls=3),
    ]
    stats = analyze.repair_rounds(rows)
    assert stats["samples"] == 3
    assert stats["model calls"] == 7
    assert stats["first answer passed the verifier"] == 1
    assert stats["  ... and the hidden tests"] == 1
    assert stats["first answer failed the verifier"] == 2
    assert stats["  repaired: a later attempt passed the verifier"] == 1
    assert stats["    ... but failed the hidden tests"] == 1
    assert stats["  not repaired within the rounds"] == 1
    assert stats["repair attempts"] == 4
    assert stats["  attempt returned the same code as before"] == 1
    assert stats["  attempt failed with the same first error as before"] == 1


def test_codet_counts_generated_tests_and_empty_matrices():
    def trace(parsed, matrix):
        return {"steps": [
            {"stage": "generated tests", "text": "", "note": f"{parsed} test lines parsed"},
            {"stage": "test matrix", "text": matrix, "note": ""}]}
    rows = [record("a", "codet", "pass", trace(3, "candidate 0: P.. passes 1; group\n")),
            record("b", "codet", "test_failure",
                   trace(0, "candidate 0: .. passes 0; x\ncandidate 1: .. passes 0; y\n"))]
    stats = analyze.codet_tests(rows)
    assert stats["samples"] == 2
    assert stats["generated tests parsed"] == 3
    assert stats["samples with no usable generated test"] == 1
    assert stats["samples where no candidate passed any test"] == 1


def test_the_report_prints_markdown_for_a_file(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    rows = [record("a", "baseline", "compile_error", {"finish_reason": "length"}),
            record("a", "repair", "pass", repair_trace(["x"], ["candidate 0: score 1, passed"],
                                                       ["passed"]))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert analyze.main(["analyze.py", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| baseline | 1 | 0 | 1 | 0 | 0 | 1 |" in out
    assert "| repair | 1 | 0 | +1 | 1 |" in out
    assert "- first answer passed the verifier: 1" in out
