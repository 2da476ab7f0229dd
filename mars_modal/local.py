"""`python modal_benchmark.py --local`: the same jobs, merge and Markdown on this machine with
a benchmark binary built here, models one after another; and `--help`, which describes the
options of both entry points (`modal run`'s own help can only list their names)."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from mars_modal import app as modal_app
from mars_modal.image import REPO_ROOT
from mars_modal.jobs import BINARY, failure, gpu_name, ollama_version, parse_models, run_binary
from mars_modal.jobs import run_options
from mars_modal.markdown import finish
from mars_modal.records import Job, ModelResult, RunOptions, Runner

# The build for --local: the embedded engine on the CPU (the image's build adds CUDA).
LOCAL_BUILD = "cargo build --release --example comprehensive_benchmark"
HINT = ("Run on Modal with `modal run modal_benchmark.py --models ...`, or here with "
        "`python modal_benchmark.py --local ...`; `python modal_benchmark.py --help` describes "
        "both. See MODAL_BENCHMARK_SETUP.md.")

MODELS_HELP = (
    "comma-separated models: `embedded` (the embedded llama.cpp engine's default model), "
    "`embedded:PRESET` (one of the engine's model presets, e.g. embedded:qwen2.5-coder-1.5b), "
    "`FILE.gguf` (a GGUF file for the embedded engine{where}), or anything else as an Ollama "
    "model (e.g. qwen2.5-coder:1.5b{ollama})")
# The options both entry points pass to the benchmark binary; unset, the binary's default.
BENCHMARK_HELP = {
    "strategies": "comma-separated strategies by mars name or optillm slug, `_verifier` "
                  "variants, pipelines `a&b`, or the groups `seed` and `all` (the binary's "
                  "--list-strategies prints them)",
    "tasks": "`seed`, `ladder`, `all`, or a HumanEval-Rust JSONL file on this machine (read "
             "here and sent with every job)",
    "samples": "samples per (task, strategy); unset, the binary's default",
    "seed": "the seed every sample's seed derives from; unset, the binary's default",
    "max_tokens": "token limit of every generation; unset, the binary's default",
    "temperature": "sampling temperature; unset, the binary's default",
    "candidates": "candidates of the strategies that draw several; unset, the binary's default",
    "concurrency": "samples generated and graded at once; unset, the binary's default",
    "output": "where the merged Markdown goes; its .json and _files/ folder of plots go next "
              "to it",
}
MODAL_HELP = {
    **BENCHMARK_HELP,
    "models": MODELS_HELP.format(where=" in the volume's gguf/ folder",
                                 ollama=", pulled in the container"),
    "gpu": "Modal GPU type for this run, e.g. T4, L4, A10G, L40S, A100, A100-80GB, H100; unset, "
           "MARS_MODAL_GPU, else L4",
    "timeout": "seconds each container may run; unset, MARS_MODAL_TIMEOUT, else 3600",
}
LOCAL_HELP = {
    **BENCHMARK_HELP,
    "local": "run here without Modal (required; the Modal path is `modal run`)",
    "models": MODELS_HELP.format(where=", a path here",
                                 ollama=", served by a running Ollama at OLLAMA_HOST"),
    "binary": f"the benchmark binary built here with `{LOCAL_BUILD}` (default: "
              f"{BINARY} in this checkout)",
    "timeout": "seconds each model's benchmark may run",
}
_INTS = ("samples", "seed", "max_tokens", "candidates", "concurrency")


def modal_entry_help(width: int = 80) -> str:
    """The Modal entry point's options, from `app.main`'s own signature and `MODAL_HELP`."""
    lines = ["Modal entry point: modal run modal_benchmark.py [options]",
             "(modal run's own options, such as --detach, go before the file name)", ""]
    entry = modal_app.main.info.raw_f
    if entry is None:  # a local entry point always keeps its function
        raise RuntimeError("the Modal entry point lost its function")
    for name, param in inspect.signature(entry).parameters.items():
        kind = str(param.annotation).removesuffix(" | None").upper()
        default = "" if param.default is None else f" (default: {param.default})"
        lines.append(f"  --{name.replace('_', '-')} {kind}")
        lines += textwrap.wrap(MODAL_HELP[name] + default, width, initial_indent=" " * 24,
                               subsequent_indent=" " * 24)
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modal_benchmark.py",
        usage="python modal_benchmark.py --local [options]\n"
              "       modal run modal_benchmark.py [options]",
        description=textwrap.fill(
            "Runs the mars benchmark binary on Modal's GPUs (one container per model) or here "
            "(--local), and merges the reports into one Markdown file, its JSON and plots. "
            "See MODAL_BENCHMARK_SETUP.md.", 80),
        epilog=modal_entry_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--local", action="store_true", required=True, help=LOCAL_HELP["local"])
    p.add_argument("--models", default="embedded", help=LOCAL_HELP["models"] +
                   " (default: %(default)s)")
    for name in ("strategies", "tasks"):
        p.add_argument(f"--{name}", default="seed", help=LOCAL_HELP[name] +
                       " (default: %(default)s)")
    for name in _INTS:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help=LOCAL_HELP[name])
    p.add_argument("--temperature", type=float, help=LOCAL_HELP["temperature"])
    p.add_argument("--binary", default=str(REPO_ROOT / BINARY), help=LOCAL_HELP["binary"])
    p.add_argument("--timeout", type=float, default=float(modal_app.TIMEOUT_S),
                   help=LOCAL_HELP["timeout"] + " (default: %(default)s)")
    p.add_argument("--output", default="MODAL_BENCHMARK_RESULTS.md",
                   help=LOCAL_HELP["output"] + " (default: %(default)s)")
    return p


def run_local(job: Job, options: RunOptions, binary: str, timeout_s: float,
              workdir: Path) -> ModelResult:
    """One job on this machine: the embedded engine, or a local Ollama server."""
    model = job.model
    if job.backend == "ollama":
        host = os.environ.get("OLLAMA_HOST", modal_app.OLLAMA_HOST)
        base = host if "://" in host else f"http://{host}"
        if ollama_version(base) is None:
            return failure(job, f"no Ollama server answers at {base} (start `ollama serve`)")
    if job.gguf is not None:
        path = Path(job.gguf).resolve()  # the runs' working directories are elsewhere
        if not path.is_file():
            return failure(job, f"the GGUF file {path} does not exist")
        model = str(path)
    result = run_binary(binary, job, options, workdir, dict(os.environ), timeout_s, model)
    return result.with_facts(gpu=gpu_name())


def main(argv: list[str]) -> int:
    if not any(a in ("--local", "-h", "--help") for a in argv):
        print(HINT, file=sys.stderr)
        return 2
    p = parser()
    args = p.parse_args(argv)
    binary = Path(args.binary).resolve()
    if not binary.is_file():
        p.error(f"{args.binary} does not exist; build it with `{LOCAL_BUILD}`")
    try:
        jobs = parse_models(args.models)
        options = run_options(args.strategies, args.tasks, args.samples, args.seed,
                              args.max_tokens, args.temperature, args.candidates,
                              args.concurrency)
    except (ValueError, OSError) as err:
        p.error(str(err))
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="mars-local-") as tmp:
        for job in jobs:
            print(f"running {job.label} ...", flush=True)
            workdir = Path(tmp) / job.slug
            workdir.mkdir()
            results.append(run_local(job, options, str(binary), args.timeout, workdir))
    return finish(results, options, Runner("local", None, time.monotonic() - started),
                  Path(args.output))
