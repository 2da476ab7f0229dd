"""Modal cloud runner for the mars benchmark: one GPU container per model, reports merged.

    modal run modal_benchmark.py --models tinyllama,qwen2.5-coder:1.5b --strategies seed
    python modal_benchmark.py --local --models embedded --strategies baseline --samples 1

Every container runs the real benchmark binary (`comprehensive_benchmark`, built into the image
from this repository) against one model: an Ollama model pulled into a `modal.Volume`, or a GGUF
file run by the embedded llama.cpp engine. The per-model Markdown and SVG plot are rendered by
the binary itself (`--markdown`, `--svg`); this script only merges several JSON reports into
MODAL_BENCHMARK_RESULTS.md (summary, strategy-by-model tables, cross-model recommendations
computed from the reports, failures) and MODAL_BENCHMARK_RESULTS.json. `--local` runs the same
pipeline on this machine without Modal. See MODAL_BENCHMARK_SETUP.md.

Read at import, because Modal applies the function decorator then: MARS_MODAL_GPU (default
"L4"), MARS_MODAL_TIMEOUT (seconds per container, default 3600), MARS_MODAL_VOLUME (default
"mars-models"), MARS_MODAL_CUDA_ARCHS (the CUDA architectures the image's llama.cpp is built
for, default "75;80;86;89;90"). `--gpu` and `--timeout` of `modal run` override the first two
per call through `Function.with_options`. Importing this module never contacts Modal.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import modal

REPO_ROOT = Path(__file__).resolve().parent
GPU = os.environ.get("MARS_MODAL_GPU", "L4")
TIMEOUT_S = int(os.environ.get("MARS_MODAL_TIMEOUT", "3600"))
VOLUME_NAME = os.environ.get("MARS_MODAL_VOLUME", "mars-models")
VOLUME_PATH = "/models"
# Grading compiles every answer with rustc: a few cores keep that off the critical path.
CPU = 4.0
MEMORY_MB = 16384
REMOTE_REPO = "/mars"
BINARY = "target/release/examples/comprehensive_benchmark"
OLLAMA_HOST = "127.0.0.1:11434"
BUILTIN_TASKS = ("seed", "ladder", "all")

# The embedded engine is built with llama.cpp's CUDA backend: a CUDA devel image has nvcc and
# the libraries, and the driver comes from Modal's GPU host at run time. CUDA code is compiled
# for these GPU generations (T4, A100, A10G, L4/L40S, H100); fewer build faster.
CUDA_IMAGE = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
CUDA_ARCHITECTURES = os.environ.get("MARS_MODAL_CUDA_ARCHS", "75;80;86;89;90")
APT_PACKAGES = [
    "build-essential", "cmake", "clang", "libclang-dev", "curl", "ca-certificates", "git",
    "pkg-config", "util-linux", "zstd", "pciutils",
]
# Paths of this repository that the Rust build does not need: leaving them out keeps the image's
# cached build valid while the Python side changes, and keeps target/ and models out of it.
BUILD_IGNORE = [
    ".git", "target", "**/target", "**/__pycache__", ".pytest_cache", ".venv", "venv",
    "**/*.gguf", "modal_benchmark.py", "requirements-modal.txt", "tests/python",
    "MODAL_BENCHMARK_*", "NOTES-*.md",
]
CARGO_BUILD = ("cargo build --release -p mars -p mars-llama --features mars-llama/cuda "
               "--example comprehensive_benchmark")


def toolchain_channel(root: Path = REPO_ROOT) -> str:
    """The Rust channel pinned by rust-toolchain.toml. Inside a container the file is absent and
    the image is not rebuilt there, so any value will do."""
    try:
        return tomllib.loads((root / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "stable"


def build_image() -> modal.Image:
    """CUDA devel image, build tools, rustup's toolchain, Ollama, and the benchmark built in
    release with the embedded engine's CUDA backend."""
    rustup = (
        "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y "
        f"--profile minimal --default-toolchain {toolchain_channel()}"
    )
    return (
        modal.Image.from_registry(CUDA_IMAGE, add_python="3.11")
        .apt_install(*APT_PACKAGES)
        .env({
            "PATH": "/root/.cargo/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:"
                    "/usr/sbin:/usr/bin:/bin",
            "CMAKE_CUDA_ARCHITECTURES": CUDA_ARCHITECTURES,
        })
        .run_commands(rustup, "curl -fsSL https://ollama.com/install.sh | sh")
        .add_local_dir(REPO_ROOT, REMOTE_REPO, copy=True, ignore=BUILD_IGNORE)
        .workdir(REMOTE_REPO)
        .run_commands(CARGO_BUILD)
    )


image = build_image()
models_volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
app = modal.App("mars-benchmark", image=image)


# --- jobs: what one container (or one local run) does ------------------------------------------

def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "model"


def parse_models(spec: str) -> list[dict[str, Any]]:
    """`embedded` is the engine's default GGUF, `NAME.gguf` a GGUF file (in the volume's gguf/
    directory on Modal, a path with --local), anything else an Ollama model."""
    jobs, seen = [], set()
    for label in (m.strip() for m in spec.split(",")):
        if not label:
            continue
        if label in seen:
            raise ValueError(f"model {label!r} is listed twice")
        seen.add(label)
        if label == "embedded":
            jobs.append({"label": label, "backend": "embedded", "model": None, "gguf": None})
        elif label.endswith(".gguf"):
            jobs.append({"label": label, "backend": "embedded", "model": None, "gguf": label})
        else:
            jobs.append({"label": label, "backend": "ollama", "model": label, "gguf": None})
    if not jobs:
        raise ValueError("no model named (--models)")
    for job in jobs:
        job["slug"] = slug(job["label"])
    return jobs


def run_options(
    strategies: str | None = None, tasks: str | None = None, samples: int | None = None,
    seed: int | None = None, max_tokens: int | None = None, temperature: float | None = None,
    candidates: int | None = None, concurrency: int | None = None,
) -> dict[str, Any]:
    """The benchmark options every job shares; `None` leaves the binary's default. A task file
    is read here and travels with the job, since a container cannot see this machine's files."""
    args: list[str] = []
    for flag, value in [
        ("--strategies", strategies), ("--samples", samples), ("--seed", seed),
        ("--max-tokens", max_tokens), ("--temperature", temperature),
        ("--candidates", candidates), ("--concurrency", concurrency),
    ]:
        if value is not None:
            args += [flag, str(value)]
    tasks = tasks or "seed"
    tasks_jsonl = None
    if tasks not in BUILTIN_TASKS:
        tasks_jsonl = Path(tasks).read_text()
    return {"args": args, "tasks": tasks, "tasks_jsonl": tasks_jsonl}


def benchmark_command(binary: str, job: dict[str, Any], options: dict[str, Any], out: Path,
                      tasks: str, model_path: str | None) -> list[str]:
    cmd = [binary, "--backend", job["backend"]]
    if job["backend"] == "ollama":
        cmd += ["--model", job["model"]]
    if model_path is not None:
        cmd += ["--model-path", model_path]
    name = job["slug"]
    return cmd + ["--tasks", tasks, *options["args"], "--json", str(out / f"{name}.json"),
                  "--markdown", str(out / f"{name}.md"), "--svg", str(out / f"{name}.svg"),
                  "--quiet"]


def _tail(*texts: str | bytes | None, limit: int = 4000) -> str:
    parts = [t.decode(errors="replace") if isinstance(t, bytes) else t for t in texts if t]
    return "\n".join(parts)[-limit:]


def failure(job: dict[str, Any], error: str, log: str = "", **extra: Any) -> dict[str, Any]:
    return {**job, "ok": False, "error": error, "log_tail": log, **extra}


def run_binary(binary: str, job: dict[str, Any], options: dict[str, Any], workdir: Path,
               env: dict[str, str], timeout_s: float,
               model_path: str | None = None) -> dict[str, Any]:
    """Runs the benchmark for one job and collects its JSON report, Markdown and SVG."""
    tasks = options["tasks"]
    if options["tasks_jsonl"] is not None:
        tasks = str(workdir / "tasks.jsonl")
        Path(tasks).write_text(options["tasks_jsonl"])
    cmd = benchmark_command(binary, job, options, workdir, tasks, model_path)
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        return failure(job, f"the benchmark did not finish within {timeout_s:.0f} s",
                       _tail(err.stdout, err.stderr), wall_s=time.monotonic() - started)
    except OSError as err:
        return failure(job, f"could not start the benchmark binary {binary}: {err}")
    wall_s = time.monotonic() - started
    log = _tail(proc.stdout, proc.stderr)
    if proc.returncode != 0:
        return failure(job, f"the benchmark exited with status {proc.returncode}", log,
                       wall_s=wall_s)
    files = {ext: workdir / f"{job['slug']}.{ext}" for ext in ("json", "md", "svg")}
    try:
        report = json.loads(files["json"].read_text())
        markdown = files["md"].read_text()
        svg = files["svg"].read_text()
    except (OSError, ValueError) as err:
        return failure(job, f"the benchmark exited 0 but its output is unreadable: {err}", log,
                       wall_s=wall_s)
    return {**job, "ok": True, "error": None, "report": report, "markdown": markdown, "svg": svg,
            "wall_s": wall_s, "log_tail": log}


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


def ollama_version(base_url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{base_url}/api/version", timeout=2) as response:
            return json.loads(response.read()).get("version")
    except (OSError, ValueError):
        return None


def wait_for_ollama(base_url: str, timeout_s: float, server: subprocess.Popen | None) -> str | None:
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


# --- the Modal side ----------------------------------------------------------------------------

def run_in_container(job: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The GPU function's body: prepare the model, run the binary, keep the volume's cache."""
    started = time.monotonic()
    budget = max(60.0, job["timeout_s"] - 120.0)  # leave time to report, not be killed
    workdir = Path(tempfile.mkdtemp(prefix="mars-"))
    binary = f"{REMOTE_REPO}/{BINARY}"
    env = dict(os.environ)
    extra: dict[str, Any] = {"gpu": gpu_name()}
    if job["backend"] == "embedded":
        model_path = None
        if job["gguf"] is not None:
            model_path = f"{VOLUME_PATH}/gguf/{job['gguf']}"
            if not Path(model_path).is_file():
                return failure(job, f"{model_path} is not in volume {VOLUME_NAME}; upload it with "
                               f"`modal volume put {VOLUME_NAME} {job['gguf']} gguf/{job['gguf']}`",
                               **extra)
        else:
            # The engine fetches its default model into $XDG_CACHE_HOME/mars/models: the volume.
            env["XDG_CACHE_HOME"] = f"{VOLUME_PATH}/cache"
        result = run_binary(binary, job, options, workdir, env, budget, model_path)
        models_volume.commit()
        return {**result, **extra}
    env["OLLAMA_HOST"] = OLLAMA_HOST
    env["OLLAMA_MODELS"] = f"{VOLUME_PATH}/ollama"
    log_path = workdir / "ollama.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(["ollama", "serve"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    base_url = f"http://{OLLAMA_HOST}"
    try:
        extra["ollama_version"] = wait_for_ollama(base_url, 120, server)
        if extra["ollama_version"] is None:
            return failure(job, "ollama serve did not answer /api/version within 120 s",
                           _tail(log_path.read_bytes()), **extra)
        try:
            pull = subprocess.run(["ollama", "pull", job["model"]], env=env, capture_output=True,
                                  timeout=max(60.0, budget / 2))
        except subprocess.TimeoutExpired as err:
            return failure(job, f"ollama pull {job['model']} timed out",
                           _tail(err.stdout, err.stderr), **extra)
        if pull.returncode != 0:
            return failure(job, f"ollama pull {job['model']} failed (status {pull.returncode})",
                           _tail(pull.stdout, pull.stderr), **extra)
        models_volume.commit()
        extra["setup_s"] = time.monotonic() - started
        remaining = max(60.0, budget - extra["setup_s"])
        result = run_binary(binary, job, options, workdir, env, remaining)
        try:
            ps = subprocess.run(["ollama", "ps"], env=env, capture_output=True, text=True,
                                timeout=30)
            extra["ollama_ps"] = ps.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            extra["ollama_ps"] = None
        return {**result, **extra}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@app.function(gpu=GPU, timeout=TIMEOUT_S, cpu=CPU, memory=MEMORY_MB,
              volumes={VOLUME_PATH: models_volume})
def run_benchmark(job: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """One model's benchmark in one GPU container; returns its report or a structured failure."""
    return run_in_container(job, options)


def configured_function(gpu: str | None, timeout: int | None) -> Any:
    """`run_benchmark`, with the GPU and timeout of this call when they differ from the
    import-time configuration (the decorator has already run by the time arguments are parsed)."""
    if (gpu is None or gpu == GPU) and (timeout is None or timeout == TIMEOUT_S):
        return run_benchmark
    return run_benchmark.with_options(gpu=gpu or GPU, timeout=timeout or TIMEOUT_S)


@app.local_entrypoint()
def main(
    models: str = "tinyllama", strategies: str = "seed", tasks: str = "seed",
    samples: int | None = None, seed: int | None = None, max_tokens: int | None = None,
    temperature: float | None = None, candidates: int | None = None,
    concurrency: int | None = None, gpu: str | None = None, timeout: int | None = None,
    output: str = "MODAL_BENCHMARK_RESULTS.md",
) -> None:
    """Fans out one container per model with `.map()`, then merges and writes the results."""
    jobs = parse_models(models)
    options = run_options(strategies, tasks, samples, seed, max_tokens, temperature, candidates,
                          concurrency)
    for job in jobs:
        job["timeout_s"] = timeout or TIMEOUT_S
    function = configured_function(gpu, timeout)
    print(f"running {len(jobs)} model(s) on Modal, GPU {gpu or GPU}: {models}")
    started = time.monotonic()
    outputs = function.map(jobs, kwargs={"options": options}, return_exceptions=True)
    results = [
        out if isinstance(out, dict)
        else failure(job, f"the container failed: {type(out).__name__}: {out}")
        for job, out in zip(jobs, outputs, strict=True)
    ]
    runner = {"kind": "modal", "gpu": gpu or GPU, "wall_s": time.monotonic() - started}
    if finish(results, options, runner, Path(output)) != 0:
        sys.exit(1)


# --- merging and writing -----------------------------------------------------------------------

def percent(p: float) -> str:
    return f"{p * 100:.0f}%"


def pass_cell(p: dict[str, Any]) -> str:
    """The same shape as the Rust tables' pass cell: `50% (2/4) [15–85%]`."""
    return (f"{percent(p['rate'])} ({p['successes']}/{p['trials']}) "
            f"[{p['low'] * 100:.0f}–{p['high'] * 100:.0f}%]")


def beats(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """`a`'s 95% interval lies entirely above `b`'s (as `Proportion::beats` in Rust)."""
    return a["trials"] > 0 and b["trials"] > 0 and a["low"] > b["high"]


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _opt(value: float | None, fmt: str = "{:.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def strategy_order(results: list[dict[str, Any]]) -> list[str]:
    order: list[str] = []
    for r in results:
        for s in r["report"]["strategies"]:
            if s["strategy"] not in order:
                order.append(s["strategy"])
    return order


def best_strategy(report: dict[str, Any]) -> dict[str, Any] | None:
    tried = [s for s in report["strategies"] if s["pass"]["trials"] > 0]
    return max(tried, key=lambda s: s["pass"]["rate"], default=None)


def backend_errors(report: dict[str, Any]) -> tuple[int, int]:
    errors = sum(s["verdicts"].get("backend_error", 0) for s in report["strategies"])
    return errors, sum(s["pass"]["trials"] for s in report["strategies"])


def recommend(results: list[dict[str, Any]]) -> list[str]:
    """Cross-model conclusions computed from the reports; each model's own conclusions are in
    its section, written by the Rust binary."""
    ok = [r for r in results if r["ok"]]
    failed = [r["label"] for r in results if not r["ok"]]
    out: list[str] = []
    pairs = [(r["label"], s) for r in ok for s in r["report"]["strategies"] if s["pass"]["trials"]]
    if not pairs:
        out.append("No model produced a graded sample, so nothing can be compared.")
    elif all(s["pass"]["successes"] == 0 for _, s in pairs):
        out.append(f"No (model, strategy) pair passed any sample ({len(pairs)} pairs): try easier "
                   "tasks (--tasks ladder), more --max-tokens or larger models.")
    else:
        top = max(s["pass"]["rate"] for _, s in pairs)
        leaders = [(m, s) for m, s in pairs if s["pass"]["rate"] == top]
        model, lead = leaders[0]
        names = ", ".join(f"{m} with {s['strategy']}" for m, s in leaders)
        p = lead["pass"]
        out.append(f"Highest pass rate: {names} at {percent(top)} ({p['successes']}/{p['trials']}; "
                   f"95% interval {percent(p['low'])}–{percent(p['high'])}).")
        others = [s for m, s in pairs if (m, s["strategy"]) != (model, lead["strategy"])]
        beaten = sum(beats(p, s["pass"]) for s in others)
        if others and beaten == len(others):
            out.append("It beats every other (model, strategy) pair beyond the 95% intervals.")
        elif others:
            out.append(f"It beats {beaten} of the {len(others)} other (model, strategy) pairs "
                       f"beyond the 95% intervals; the intervals of the other "
                       f"{len(others) - beaten} overlap its own, so more --samples are needed to "
                       "rank them.")
        efficient = [(m, s) for m, s in pairs if (s.get("passes_per_1k_tokens") or 0) > 0]
        if efficient:
            m, s = max(efficient, key=lambda ms: ms[1]["passes_per_1k_tokens"])
            out.append(f"Most passes per 1,000 tokens: {m} with {s['strategy']} "
                       f"({s['passes_per_1k_tokens']:.2f}).")
        with_base = []
        for r in ok:
            by_name = {s["strategy"]: s for s in r["report"]["strategies"]}
            if "baseline" in by_name:
                with_base.append((r["label"], by_name))
        separated = False
        for name in strategy_order(ok):
            if name == "baseline":
                continue
            compared = [(m, b) for m, b in with_base if name in b]
            wins = [m for m, b in compared if beats(b[name]["pass"], b["baseline"]["pass"])]
            losses = [m for m, b in compared if beats(b["baseline"]["pass"], b[name]["pass"])]
            if wins or losses:
                separated = True
                out.append(f"{name} vs baseline beyond the 95% intervals: better for "
                           f"{len(wins)} of {len(compared)} models ({', '.join(wins) or 'none'}), "
                           f"worse for {len(losses)} ({', '.join(losses) or 'none'}).")
        if with_base and not separated and len(strategy_order(ok)) > 1:
            out.append("No strategy beat or lost to baseline beyond the 95% intervals for any "
                       "model: the differences above may be noise.")
    for r in ok:
        errors, total = backend_errors(r["report"])
        if total and errors == total:
            out.append(f"{r['label']}: all {total} samples were backend errors; its numbers "
                       "measure the backend failing, not the model.")
        elif errors:
            out.append(f"{r['label']}: {errors} of {total} samples were backend errors, so its "
                       "pass rates understate the model.")
    if failed:
        out.append(f"{len(failed)} of {len(results)} models produced no report "
                   f"({', '.join(failed)}); see Failed models.")
    return out


def merged_json(results: list[dict[str, Any]], options: dict[str, Any], runner: dict[str, Any],
                generated_at: str) -> dict[str, Any]:
    keep = ("label", "backend", "model", "gguf", "ok", "error", "wall_s", "setup_s", "gpu",
            "ollama_version", "ollama_ps", "log_tail", "report")
    return {
        "kind": "mars-benchmark-merge",
        "version": 1,
        "generated_at": generated_at,
        "runner": runner,
        "options": {"tasks": options["tasks"], "args": options["args"]},
        "models": [{k: r.get(k) for k in keep} for r in results],
        "recommendations": recommend(results),
    }


def embed_report(markdown: str, plot: str | None, plot_path: str) -> str:
    """The binary's Markdown under a model heading: its title dropped, headings one level down,
    the plot link pointing into the assets folder."""
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    lines = ["#" + line if re.match(r"#{1,5} ", line) else line for line in lines]
    text = "\n".join(lines).strip() + "\n"
    return text.replace(f"]({plot})", f"]({plot_path})") if plot else text


def render_markdown(merged: dict[str, Any], results: list[dict[str, Any]], assets: str) -> str:
    ok = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    runner = merged["runner"]
    where = (f"Modal, GPU {runner['gpu']}" if runner["kind"] == "modal"
             else "this machine (--local, no Modal)")
    out = ["# mars benchmark across models\n",
           f"- run on {where}, {merged['generated_at']}; {runner['wall_s']:.0f} s wall in all",
           f"- models: {len(results)} requested, {len(ok)} reported, {len(failed)} failed",
           f"- tasks: {merged['options']['tasks']}; options: "
           f"`{' '.join(merged['options']['args']) or '(binary defaults)'}`"]
    configs = {json.dumps(r["report"]["config"], sort_keys=True) for r in ok}
    if len(configs) == 1:
        c = ok[0]["report"]["config"]
        out.append(f"- every model: strategies {', '.join(c['strategies'])}; samples per (task, "
                   f"strategy) {c['samples']}; seed {c['seed']}; max tokens {c['max_tokens']}; "
                   f"temperature {c['temperature']}; candidates {c['candidates']}")
    out.append("- merged data: the JSON file next to this one; per-model plots in "
               f"`{assets}/`\n")
    out.append("## Summary\n")
    rows = []
    for r in results:
        gpu = r.get("gpu") or "–"
        if not r["ok"]:
            rows.append([r["label"], r["backend"], "failed", "–", "–", "–", "–",
                         _opt(r.get("wall_s")), gpu])
            continue
        report = r["report"]
        best = best_strategy(report)
        errors, total = backend_errors(report)
        if best is None or best["pass"]["successes"] == 0:
            lead = ["none passed", "–"]
        else:
            lead = [best["strategy"], pass_cell(best["pass"])]
        rows.append([r["label"], f"{report['backend']['kind']} ({report['backend']['model']})",
                     "ok", *lead, str(total), str(errors), _opt(r.get("wall_s")), gpu])
    out.append(_table(["model", "backend", "status", "best strategy", "its pass rate [95% CI]",
                       "samples", "backend errors", "benchmark s", "GPU"], rows))
    if ok:
        names = strategy_order(ok)
        header = ["strategy"] + [r["label"] for r in ok]
        by_model = [{s["strategy"]: s for s in r["report"]["strategies"]} for r in ok]
        out.append("## Pass rate by strategy and model\n")
        out.append(_table(header, [[n] + [pass_cell(m[n]["pass"]) if n in m else "–"
                                          for m in by_model] for n in names]))
        out.append("## Mean tokens per sample by strategy and model\n")
        out.append(_table(header, [[n] + [_opt(m[n]["mean_total_tokens"]) if n in m else "–"
                                          for m in by_model] for n in names]))
    out.append("## Recommendations\n")
    out += [f"- {line}" for line in merged["recommendations"]] + [""]
    if failed:
        out.append("## Failed models\n")
        out.append(_table(["model", "backend", "error"],
                          [[r["label"], r["backend"], r["error"]] for r in failed]))
        for r in failed:
            if r.get("log_tail"):
                out.append(f"<details><summary>{r['label']}: output tail</summary>\n\n```text\n"
                           f"{r['log_tail'].replace('```', '` ` `')}\n```\n</details>\n")
    for r in ok:
        out.append(f"## {r['label']}\n")
        fact = f"- benchmark: {r['wall_s']:.0f} s wall"
        if r.get("setup_s") is not None:
            fact += f", after {r['setup_s']:.0f} s starting Ollama and pulling the model"
        out.append(fact + (f" on {r['gpu']}\n" if r.get("gpu") else "\n"))
        if r.get("ollama_ps"):
            out.append(f"`ollama ps` after the run:\n\n```text\n{r['ollama_ps']}\n```\n")
        plot = f"{r['slug']}.svg" if r.get("svg") else None
        out.append(embed_report(r["markdown"], plot, f"{assets}/{r['slug']}.svg"))
    return "\n".join(out).rstrip() + "\n"


def write_results(results: list[dict[str, Any]], options: dict[str, Any],
                  runner: dict[str, Any], output: Path) -> dict[str, Any]:
    """Writes OUTPUT (Markdown), OUTPUT's .json, and OUTPUT's _files/ folder of SVG plots."""
    generated_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    merged = merged_json(results, options, runner, generated_at)
    assets = output.parent / f"{output.stem}_files"
    assets.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r["ok"] and r.get("svg"):
            (assets / f"{r['slug']}.svg").write_text(r["svg"])
    output.with_suffix(".json").write_text(json.dumps(merged, indent=2) + "\n")
    output.write_text(render_markdown(merged, results, assets.name))
    return merged


def finish(results: list[dict[str, Any]], options: dict[str, Any], runner: dict[str, Any],
           output: Path) -> int:
    write_results(results, options, runner, output)
    for r in results:
        status = "ok" if r["ok"] else f"FAILED: {r['error']}"
        print(f"  {r['label']}: {status}")
    print(f"wrote {output}, {output.with_suffix('.json')} and {output.stem}_files/")
    return 0 if any(r["ok"] for r in results) else 1


# --- the local pipeline ------------------------------------------------------------------------

def run_local(job: dict[str, Any], options: dict[str, Any], binary: str, timeout_s: float,
              workdir: Path) -> dict[str, Any]:
    """One job on this machine: the embedded engine (or a local Ollama server)."""
    if job["backend"] == "ollama":
        host = os.environ.get("OLLAMA_HOST", OLLAMA_HOST)
        base = host if "://" in host else f"http://{host}"
        if ollama_version(base) is None:
            return failure(job, f"no Ollama server answers at {base} (start `ollama serve`)")
    model_path = str(Path(job["gguf"]).resolve()) if job["gguf"] else None
    result = run_binary(binary, job, options, workdir, dict(os.environ), timeout_s, model_path)
    return {**result, "gpu": gpu_name()}


def local_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", required=True,
                        help="run here without Modal (the Modal path is `modal run`)")
    parser.add_argument("--models", default="embedded")
    parser.add_argument("--strategies", default="seed")
    parser.add_argument("--tasks", default="seed")
    for flag, kind in [("--samples", int), ("--seed", int), ("--max-tokens", int),
                       ("--temperature", float), ("--candidates", int), ("--concurrency", int)]:
        parser.add_argument(flag, type=kind)
    parser.add_argument("--binary", default=str(REPO_ROOT / BINARY))
    parser.add_argument("--timeout", type=float, default=float(TIMEOUT_S),
                        help="seconds per model")
    parser.add_argument("--output", default="MODAL_BENCHMARK_RESULTS.md")
    args = parser.parse_args(argv)
    binary = Path(args.binary).resolve()  # the runs' working directories are elsewhere
    if not binary.is_file():
        parser.error(f"{args.binary} does not exist; build it with `{CARGO_BUILD}`")
    jobs = parse_models(args.models)
    options = run_options(args.strategies, args.tasks, args.samples, args.seed, args.max_tokens,
                          args.temperature, args.candidates, args.concurrency)
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="mars-local-") as tmp:
        for job in jobs:
            print(f"running {job['label']} ...", flush=True)
            workdir = Path(tmp) / job["slug"]
            workdir.mkdir()
            results.append(run_local(job, options, str(binary), args.timeout, workdir))
    runner = {"kind": "local", "gpu": None, "wall_s": time.monotonic() - started}
    return finish(results, options, runner, Path(args.output))


if __name__ == "__main__":
    if "--local" not in sys.argv[1:]:
        print("Run on Modal with `modal run modal_benchmark.py --models ...`, or here with "
              "`python modal_benchmark.py --local ...`; see MODAL_BENCHMARK_SETUP.md.",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(local_main(sys.argv[1:]))
