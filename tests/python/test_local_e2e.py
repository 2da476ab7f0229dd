"""`python modal_benchmark.py --local`: the whole pipeline on this machine with the real binary
and the embedded engine's default model, and the command line's own errors."""

import json
import re
import subprocess
import sys

from conftest import REPO_ROOT

import modal_benchmark as mb

SCRIPT = str(REPO_ROOT / "modal_benchmark.py")


def run(*args: str, cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_without_local_it_points_to_modal_run(tmp_path):
    out = run("--models", "tinyllama", cwd=tmp_path)
    assert out.returncode == 2
    assert "modal run modal_benchmark.py" in out.stderr


def test_a_missing_binary_is_an_error_with_the_build_command(tmp_path):
    out = run("--local", "--binary", str(tmp_path / "nope"), cwd=tmp_path)
    assert out.returncode == 2
    assert mb.CARGO_BUILD in out.stderr
    assert not (tmp_path / "MODAL_BENCHMARK_RESULTS.md").exists()


def rust_row(markdown: str, strategy: str) -> list[str]:
    """A row of the Strategies table the binary rendered (embedded in the merged file)."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] == strategy:
            return cells
    raise AssertionError(f"no row for {strategy}")


def test_local_run_end_to_end_with_the_embedded_model(binary, tmp_path):
    output = tmp_path / "RESULTS.md"
    out = run("--local", "--binary", str(binary), "--models", "embedded,missing.gguf",
              "--tasks", "seed", "--strategies", "baseline", "--samples", "1",
              "--max-tokens", "64", "--output", str(output), cwd=tmp_path, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    merged = json.loads(output.with_suffix(".json").read_text())
    embedded, missing = merged["models"]
    assert embedded["ok"], embedded["error"]
    report = embedded["report"]
    assert report["backend"]["kind"] == "embedded"
    assert report["config"]["strategies"] == ["baseline"]
    assert (report["config"]["samples"], report["config"]["max_tokens"]) == (1, 64)
    assert report["tasks"] == ["prime_check", "fibonacci"]
    assert len(report["samples"]) == 2
    # The model really generated: measured tokens, not backend errors.
    assert all(s["verdict"] != "backend_error" and s["completion_tokens"] > 0
               for s in report["samples"])
    assert not missing["ok"]
    assert missing["error"] == "the benchmark exited with status 2"
    assert "missing.gguf" in missing["log_tail"]

    markdown = output.read_text()
    (summary,) = report["strategies"]
    p = summary["pass"]
    # The cross-model table (Python) and the embedded table (Rust) agree with the JSON.
    row = [line for line in markdown.splitlines() if line.startswith("| baseline |")]
    cell = row[0].split("|")[2].strip()
    assert cell == f"{round(p['rate'] * 100)}% ({p['successes']}/{p['trials']}) " \
                   f"[{round(p['low'] * 100)}–{round(p['high'] * 100)}%]"
    rust = rust_row(markdown[markdown.index("\n## embedded\n"):], "baseline")
    assert rust[1] == cell
    assert rust[6] == f"{summary['mean_total_tokens']:.0f}"
    assert rust[3] == f"{summary['latency_p50_ms']:.0f}"
    assert re.search(r"\| missing\.gguf \| embedded \| failed \|", markdown)
    assert (tmp_path / "RESULTS_files/embedded.svg").read_text().startswith("<svg")
