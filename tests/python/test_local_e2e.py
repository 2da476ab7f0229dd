"""`python modal_benchmark.py --local`: the whole pipeline on this machine with the real binary
and the embedded engine's small preset, and the command line's own errors."""

import json
import re
import subprocess
import sys

from conftest import REPO_ROOT

from mars_modal.local import LOCAL_BUILD

SCRIPT = str(REPO_ROOT / "modal_benchmark.py")
# The small preset, named explicitly: the tests stay fast whatever the binary's default model.
SMALL = "embedded:smollm2-135m"


def run(*args: str, cwd, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_without_local_it_points_to_modal_run(tmp_path):
    out = run("--models", "tinyllama", cwd=tmp_path)
    assert out.returncode == 2
    assert "modal run modal_benchmark.py" in out.stderr
    assert "--help" in out.stderr


def test_a_missing_binary_is_an_error_with_the_build_command(tmp_path):
    out = run("--local", "--binary", str(tmp_path / "nope"), cwd=tmp_path)
    assert out.returncode == 2
    assert LOCAL_BUILD in out.stderr
    assert "cuda" not in out.stderr  # the local build runs on the CPU
    assert not (tmp_path / "MODAL_BENCHMARK_RESULTS.md").exists()


def test_bad_models_and_task_files_are_errors_before_any_run(tmp_path):
    stand_in = tmp_path / "bench"
    stand_in.write_text("")  # never run: the arguments fail first
    for args, message in [
        (["--models", "embedded:"], "'embedded:' names no model"),
        (["--models", "tinyllama,tinyllama"], "'tinyllama' is listed twice"),
        (["--tasks", str(tmp_path / "nope.jsonl")], "nope.jsonl"),
    ]:
        out = run("--local", "--binary", str(stand_in), *args, cwd=tmp_path)
        assert out.returncode == 2, args
        assert message in out.stderr, (args, out.stderr)
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
    out = run("--local", "--binary", str(binary), "--models", f"{SMALL},missing.gguf",
              "--tasks", "seed", "--strategies", "baseline", "--samples", "1",
              "--max-tokens", "64", "--output", str(output), cwd=tmp_path, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    merged = json.loads(output.with_suffix(".json").read_text())
    embedded, missing = merged["models"]
    assert embedded["ok"], embedded["error"]
    report = embedded["report"]
    assert report["backend"]["kind"] == "embedded"
    assert "smollm2" in report["backend"]["model"].lower()
    assert report["config"]["strategies"] == ["baseline"]
    assert (report["config"]["samples"], report["config"]["max_tokens"]) == (1, 64)
    assert report["tasks"] == ["prime_check", "fibonacci"]
    assert len(report["samples"]) == 2
    # The model really generated: measured tokens, not backend errors.
    assert all(s["verdict"] != "backend_error" and s["completion_tokens"] > 0
               for s in report["samples"])
    # A GGUF file that is not there fails before the binary starts, naming the path.
    assert not missing["ok"]
    assert missing["error"] == f"the GGUF file {tmp_path / 'missing.gguf'} does not exist"

    markdown = output.read_text()
    (summary,) = report["strategies"]
    p = summary["pass"]
    # The cross-model table (Python) and the embedded table (Rust) agree with the JSON.
    row = [line for line in markdown.splitlines() if line.startswith("| baseline |")]
    cell = row[0].split("|")[2].strip()
    assert cell == f"{round(p['rate'] * 100)}% ({p['successes']}/{p['trials']}) " \
                   f"[{round(p['low'] * 100)}–{round(p['high'] * 100)}%]"
    rust = rust_row(markdown[markdown.index(f"\n## {SMALL}\n"):], "baseline")
    assert rust[1] == cell
    assert rust[6] == f"{summary['mean_total_tokens']:.0f}"
    assert rust[3] == f"{summary['latency_p50_ms']:.0f}"
    assert re.search(r"\| missing\.gguf \| embedded \| failed \|", markdown)
    assert (tmp_path / "RESULTS_files/embedded-smollm2-135m.svg").read_text().startswith("<svg")


def test_a_failing_benchmark_is_reported_with_its_own_message(binary, tmp_path):
    # The binary rejects the strategy: that model fails with the binary's exit status and
    # message, the files are still written, and with no model reported the run exits 1.
    output = tmp_path / "RESULTS.md"
    out = run("--local", "--binary", str(binary), "--models", SMALL, "--strategies",
              "no_such_strategy", "--output", str(output), cwd=tmp_path, timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    (model,) = json.loads(output.with_suffix(".json").read_text())["models"]
    assert not model["ok"] and model["report"] is None
    assert model["error"] == "the benchmark exited with status 2"
    assert "no_such_strategy" in model["log_tail"]
    assert "## Failed models" in output.read_text()
