"""The Modal app: the models volume, the GPU function that benchmarks one model in one
container, and `modal run modal_benchmark.py`'s entry point, which fans jobs out with `.map()`
and merges what comes back.

Read at import, because Modal applies the function decorator then: MARS_MODAL_GPU (default
"L4"), MARS_MODAL_TIMEOUT (seconds per container, default 3600), MARS_MODAL_VOLUME (default
"mars-models"). `--gpu` and `--timeout` override the first two per call through
`Function.with_options`. Importing this module never contacts Modal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import modal

from mars_modal.image import REMOTE_REPO, build_image
from mars_modal.jobs import BINARY, failure, gpu_name, parse_models, run_binary, run_options
from mars_modal.jobs import tail, wait_for_ollama
from mars_modal.markdown import finish
from mars_modal.records import Job, ModelResult, RunOptions, Runner

GPU = os.environ.get("MARS_MODAL_GPU", "L4")
TIMEOUT_S = int(os.environ.get("MARS_MODAL_TIMEOUT", "3600"))
VOLUME_NAME = os.environ.get("MARS_MODAL_VOLUME", "mars-models")
VOLUME_PATH = "/models"
# Grading compiles every answer with rustc: a few cores keep that off the critical path.
CPU = 4.0
MEMORY_MB = 16384
OLLAMA_HOST = "127.0.0.1:11434"
# Time kept back from the container's timeout to report instead of being killed.
REPORT_MARGIN_S = 120.0

image = build_image()
models_volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
app = modal.App("mars-benchmark", image=image)


def _embedded(job: Job, options: RunOptions, workdir: Path, budget: float,
              gpu: str | None) -> ModelResult:
    """An embedded job: a GGUF file from the volume, or a preset (or the default model) that
    the engine fetches into its cache, which lives in the volume."""
    env = dict(os.environ)
    model = job.model
    if job.gguf is not None:
        model = f"{VOLUME_PATH}/gguf/{job.gguf}"
        if not Path(model).is_file():
            return failure(job, f"{model} is not in volume {VOLUME_NAME}; upload it with "
                           f"`modal volume put {VOLUME_NAME} {job.gguf} gguf/{job.gguf}`"
                           ).with_facts(gpu=gpu)
    else:
        env["XDG_CACHE_HOME"] = f"{VOLUME_PATH}/cache"
    result = run_binary(f"{REMOTE_REPO}/{BINARY}", job, options, workdir, env, budget, model)
    models_volume.commit()
    return result.with_facts(gpu=gpu)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


def _ollama(job: Job, options: RunOptions, workdir: Path, budget: float,
            gpu: str | None) -> ModelResult:
    """An Ollama job: serve, pull the model into the volume, run the binary against it."""
    started = time.monotonic()
    env = {**os.environ, "OLLAMA_HOST": OLLAMA_HOST, "OLLAMA_MODELS": f"{VOLUME_PATH}/ollama"}
    log_path = workdir / "ollama.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(["ollama", "serve"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        version = wait_for_ollama(f"http://{OLLAMA_HOST}", 120, server)
        facts: dict[str, Any] = {"gpu": gpu, "ollama_version": version}
        if version is None:
            return failure(job, "ollama serve did not answer /api/version within 120 s",
                           tail(log_path.read_bytes())).with_facts(**facts)
        model = job.model or ""
        try:
            pull = subprocess.run(["ollama", "pull", model], env=env, capture_output=True,
                                  timeout=max(60.0, budget / 2))
        except subprocess.TimeoutExpired as err:
            return failure(job, f"ollama pull {model} timed out",
                           tail(err.stdout, err.stderr)).with_facts(**facts)
        if pull.returncode != 0:
            return failure(job, f"ollama pull {model} failed (status {pull.returncode})",
                           tail(pull.stdout, pull.stderr)).with_facts(**facts)
        models_volume.commit()
        facts["setup_s"] = time.monotonic() - started
        remaining = max(60.0, budget - facts["setup_s"])
        result = run_binary(f"{REMOTE_REPO}/{BINARY}", job, options, workdir, env, remaining,
                            model)
        try:
            ps = subprocess.run(["ollama", "ps"], env=env, capture_output=True, text=True,
                                timeout=30)
            facts["ollama_ps"] = ps.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            facts["ollama_ps"] = None
        return result.with_facts(**facts)
    finally:
        _stop(server)


def run_in_container(job: Job, options: RunOptions, timeout_s: float) -> ModelResult:
    """The GPU function's body: prepare the model, run the binary, keep the volume's cache."""
    budget = max(60.0, timeout_s - REPORT_MARGIN_S)
    workdir = Path(tempfile.mkdtemp(prefix="mars-"))
    if job.backend == "embedded":
        return _embedded(job, options, workdir, budget, gpu_name())
    return _ollama(job, options, workdir, budget, gpu_name())


@app.function(gpu=GPU, timeout=TIMEOUT_S, cpu=CPU, memory=MEMORY_MB,
              volumes={VOLUME_PATH: models_volume})
def run_benchmark(job: Job, options: RunOptions, timeout_s: float) -> ModelResult:
    """One model's benchmark in one GPU container; its report or a structured failure."""
    return run_in_container(job, options, timeout_s)


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
    """Fans out one container per model, then merges and writes the results. Every option is
    described by `python modal_benchmark.py --help` (mars_modal.local.MODAL_HELP)."""
    try:
        jobs = parse_models(models)
        options = run_options(strategies, tasks, samples, seed, max_tokens, temperature,
                              candidates, concurrency)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    timeout_s = timeout or TIMEOUT_S
    function = configured_function(gpu, timeout)
    print(f"running {len(jobs)} model(s) on Modal, GPU {gpu or GPU}: {models}")
    started = time.monotonic()
    outputs = function.map(jobs, kwargs={"options": options, "timeout_s": timeout_s},
                           return_exceptions=True)
    results = [
        out if isinstance(out, ModelResult)
        else failure(job, f"the container failed: {type(out).__name__}: {out}")
        for job, out in zip(jobs, outputs, strict=True)
    ]
    runner = Runner("modal", gpu or GPU, time.monotonic() - started)
    if finish(results, options, runner, Path(output)) != 0:
        sys.exit(1)
