"""Jobs: model specs, the benchmark binary's command line, one run of it collected into a
`ModelResult` (its report, Markdown and plot, or a structured failure), and Ollama probes."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

from mars_modal.records import REPORT_SCHEMA, Job, ModelResult, RunOptions

# Where the binary is, relative to the repository, on Modal and here.
BINARY = "target/release/examples/comprehensive_benchmark"
BUILTIN_TASKS = ("seed", "ladder", "all")
# The binary's exit status when the run completed and its outputs are written, but every sample
# of some strategy is a backend error (its recommendations name the error): the report is kept.
COMPLETED_WITH_BACKEND_ERRORS = 1
EMBEDDED = "embedded"


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "model"


def _job(label: str) -> Job:
    if label == EMBEDDED:
        return Job(label, "embedded", None, None, slug(label))
    name = label.removeprefix(f"{EMBEDDED}:") if label.startswith(f"{EMBEDDED}:") else None
    if name == "":
        raise ValueError(f"{label!r} names no model: write embedded:PRESET or FILE.gguf")
    if label.endswith(".gguf"):
        return Job(label, "embedded", None, name or label, slug(label))
    if name is not None:
        return Job(label, "embedded", name, None, slug(label))
    return Job(label, "ollama", label, None, slug(label))


def parse_models(spec: str) -> list[Job]:
    """Comma-separated models: `embedded` is the engine's default model, `embedded:NAME` one of
    its presets (the binary knows them), `FILE.gguf` (or `embedded:FILE.gguf`) a GGUF file (in
    the volume's gguf/ folder on Modal, a path with --local), anything else an Ollama model."""
    jobs: list[Job] = []
    for label in (m.strip() for m in spec.split(",")):
        if not label:
            continue
        if any(j.label == label for j in jobs):
            raise ValueError(f"model {label!r} is listed twice")
        jobs.append(_job(label))
    if not jobs:
        raise ValueError("no model named (--models)")
    return jobs


def run_options(
    strategies: str | None = None, tasks: str | None = None, samples: int | None = None,
    seed: int | None = None, max_tokens: int | None = None, temperature: float | None = None,
    candidates: int | None = None, concurrency: int | None = None,
) -> RunOptions:
    """The benchmark options every job shares; `None` leaves the binary's default. A task file
    is read here and travels with the job."""
    args: list[str] = []
    for flag, value in [
        ("--strategies", strategies), ("--samples", samples), ("--seed", seed),
        ("--max-tokens", max_tokens), ("--temperature", temperature),
        ("--candidates", candidates), ("--concurrency", concurrency),
    ]:
        if value is not None:
            args += [flag, str(value)]
    tasks = tasks or "seed"
    tasks_jsonl = None if tasks in BUILTIN_TASKS else Path(tasks).read_text()
    return RunOptions(tuple(args), tasks, tasks_jsonl)


def benchmark_command(binary: str, job: Job, options: RunOptions, out: Path, tasks: str,
                      model: str | None) -> list[str]:
    """The binary's command line. `model` is what `--model` names: the Ollama model, the
    embedded preset or GGUF path, or None for the binary's default."""
    cmd = [binary, "--backend", job.backend]
    if model is not None:
        cmd += ["--model", model]
    name = job.slug
    return cmd + ["--tasks", tasks, *options.args, "--json", str(out / f"{name}.json"),
                  "--markdown", str(out / f"{name}.md"), "--svg", str(out / f"{name}.svg"),
                  "--quiet"]


def tail(*texts: str | bytes | None, limit: int = 4000) -> str:
    parts = [t.decode(errors="replace") if isinstance(t, bytes) else t for t in texts if t]
    return "\n".join(parts)[-limit:]


def failure(job: Job, error: str, log: str = "", wall_s: float | None = None) -> ModelResult:
    return ModelResult(job, ok=False, error=error, log_tail=log, wall_s=wall_s)


def run_binary(binary: str, job: Job, options: RunOptions, workdir: Path, env: dict[str, str],
               timeout_s: float, model: str | None = None) -> ModelResult:
    """Runs the benchmark for one job and collects its JSON report, Markdown and SVG."""
    tasks = options.tasks
    if options.tasks_jsonl is not None:
        tasks = str(workdir / "tasks.jsonl")
        Path(tasks).write_text(options.tasks_jsonl)
    cmd = benchmark_command(binary, job, options, workdir, tasks, model)
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        return failure(job, f"the benchmark did not finish within {timeout_s:.0f} s",
                       tail(err.stdout, err.stderr), time.monotonic() - started)
    except OSError as err:
        return failure(job, f"could not start the benchmark binary {binary}: {err}")
    wall_s = time.monotonic() - started
    log = tail(proc.stdout, proc.stderr)
    status = f"the benchmark exited with status {proc.returncode}"
    if proc.returncode not in (0, COMPLETED_WITH_BACKEND_ERRORS):
        return failure(job, status, log, wall_s)
    files = {ext: workdir / f"{job.slug}.{ext}" for ext in ("json", "md", "svg")}
    try:
        report = json.loads(files["json"].read_text())
        markdown = files["md"].read_text()
        svg = files["svg"].read_text()
    except (OSError, ValueError) as err:
        return failure(job, f"{status} but its output is unreadable: {err}", log, wall_s)
    version = report.get("schema_version") if isinstance(report, dict) else None
    if version != REPORT_SCHEMA:
        return failure(job, f"the benchmark wrote report schema {version}; this runner reads "
                       f"schema {REPORT_SCHEMA} (rebuild the binary from this checkout)", log,
                       wall_s)
    return ModelResult(job, ok=True, report=report, markdown=markdown, svg=svg, wall_s=wall_s,
                       log_tail=log)


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip().replace("\n", "; ") or None


# Ollama runs next to the runner (in the container, or here): no proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ollama_version(base_url: str) -> str | None:
    try:
        with _DIRECT.open(f"{base_url}/api/version", timeout=2) as response:
            version = json.loads(response.read()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None


def wait_for_ollama(base_url: str, timeout_s: float,
                    server: subprocess.Popen[bytes] | None) -> str | None:
    """Polls `/api/version` until it answers; the version, or `None` on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        version = ollama_version(base_url)
        if version is not None:
            return version
        if server is not None and server.poll() is not None:
            return None
        time.sleep(0.5)
    return None
