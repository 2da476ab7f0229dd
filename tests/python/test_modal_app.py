"""The Modal side, inspected offline: importing never touches the network, the GPU function
carries the configured GPU, timeout and volume, the entrypoint's CLI parses, the image's build
context is the Rust workspace without build outputs, and the runner's package reaches the
container."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import PurePosixPath

import modal
from click.testing import CliRunner
from modal._utils.async_utils import synchronizer
from modal.cli.run import _get_click_command_for_local_entrypoint
from modal.mount import _MountDir

from conftest import REPO_ROOT

import modal_benchmark
from mars_modal import app as mb
from mars_modal import image

# Imports the module with socket audit events recorded, then prints what Modal objects say.
PROBE = r"""
import json, sys
events = []
sys.addaudithook(lambda e, a: events.append(e) if e.startswith("socket.") else None)
import modal_benchmark
from mars_modal import app
spec = modal_benchmark.run_benchmark._spec_
print(json.dumps({
    "events": events,
    "gpu": spec.gpus,
    "volumes": {k: v.name for k, v in spec.volumes.items()},
    "timeout": app.TIMEOUT_S,
}))
"""


def probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARS_MODAL_")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env={**clean, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_opens_no_socket_and_uses_the_default_gpu_and_volume():
    seen = probe()
    assert seen["events"] == []
    assert seen["gpu"] == "L4"
    assert seen["volumes"] == {"/models": "mars-models"}
    assert seen["timeout"] == 3600


def test_environment_configures_gpu_timeout_and_volume_at_import():
    seen = probe(MARS_MODAL_GPU="A100-80GB", MARS_MODAL_TIMEOUT="900",
                 MARS_MODAL_VOLUME="other-models")
    assert seen["events"] == []
    assert seen["gpu"] == "A100-80GB"
    assert seen["volumes"] == {"/models": "other-models"}
    assert seen["timeout"] == 900


def test_function_runs_in_the_benchmark_image_with_cpu_for_grading():
    spec = mb.run_benchmark._spec_
    assert synchronizer._translate_in(spec.image) is synchronizer._translate_in(mb.image)
    assert spec.cpu == mb.CPU and spec.cpu >= 2
    assert spec.volumes["/models"] is synchronizer._translate_in(mb.models_volume)


def options_of(function):
    return synchronizer._translate_in(function)._options


def test_gpu_and_timeout_of_a_call_come_from_with_options():
    assert mb.configured_function(None, None) is mb.run_benchmark
    assert mb.configured_function(mb.GPU, mb.TIMEOUT_S) is mb.run_benchmark
    variant = mb.configured_function("H100", None)
    assert variant is not mb.run_benchmark
    assert options_of(variant).resources.gpu_config.gpu_type == "H100"
    assert options_of(variant).timeout_secs == mb.TIMEOUT_S
    longer = mb.configured_function(None, 7200)
    assert options_of(longer).resources.gpu_config.gpu_type == mb.GPU.upper()
    assert options_of(longer).timeout_secs == 7200


def test_modal_run_finds_the_app_and_entrypoint_in_the_script():
    assert modal_benchmark.app is mb.app
    assert modal_benchmark.main is mb.main
    assert modal_benchmark.run_benchmark is mb.run_benchmark


def test_modal_cli_loads_the_script_and_lists_the_entrypoint_options():
    # `modal run modal_benchmark.py --help` imports the script, finds the app and its one
    # entry point, and answers without contacting Modal.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    out = subprocess.run([sys.executable, "-m", "modal", "run", "modal_benchmark.py", "--help"],
                         cwd=REPO_ROOT, env=clean, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("--models", "--strategies", "--max-tokens", "--gpu", "--timeout", "--output"):
        assert name in out.stdout, name


def test_modal_run_parses_the_entrypoint_options():
    command = _get_click_command_for_local_entrypoint(mb.app, mb.main)
    names = {p.name for p in command.params}
    assert {"models", "strategies", "tasks", "samples", "seed", "max_tokens", "temperature",
            "candidates", "concurrency", "gpu", "timeout", "output"} <= names
    ctx = command.make_context("modal_benchmark.py", [
        "--models", "tinyllama,qwen2.5-coder:1.5b", "--samples", "3", "--temperature", "0.2",
        "--gpu", "A10G", "--max-tokens", "256"])
    assert ctx.params["models"] == "tinyllama,qwen2.5-coder:1.5b"
    assert ctx.params["samples"] == 3 and ctx.params["temperature"] == 0.2
    assert ctx.params["max_tokens"] == 256 and ctx.params["gpu"] == "A10G"
    assert ctx.params["seed"] is None and ctx.params["timeout"] is None
    help_text = CliRunner().invoke(command, ["--help"]).output
    assert "--max-tokens" in help_text


def test_build_context_is_the_workspace_without_outputs_or_python():
    mount = _MountDir(local_dir=REPO_ROOT, remote_path=PurePosixPath(image.REMOTE_REPO),
                      ignore=modal.FilePatternMatcher(*image.BUILD_IGNORE), recursive=True)
    files = {str(remote) for _, remote in mount.get_files_to_upload()}
    for needed in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml", "README.md",
                   "crates/mars/Cargo.toml", "crates/mars/src/lib.rs",
                   "crates/mars/examples/comprehensive_benchmark/main.rs"]:
        assert f"/mars/{needed}" in files, needed
    assert not any("/target/" in f or "/.git/" in f or f.endswith(".gguf") for f in files)
    assert "/mars/modal_benchmark.py" not in files
    assert not any(f.startswith(("/mars/tests/python/", "/mars/mars_modal/")) for f in files)


def test_the_function_brings_the_runner_package_to_the_container():
    # The function is defined in the package, so Modal mounts the whole package with it: the
    # container can import its module and the records its arguments and result are made of.
    info = synchronizer._translate_in(mb.run_benchmark)._source_info
    assert info.module_name == "mars_modal.app"
    (mount,) = info.get_entrypoint_mount().values()
    files = {str(remote) for entry in mount.entries for _, remote in entry.get_files_to_upload()}
    local = {f"/root/mars_modal/{p.name}" for p in (REPO_ROOT / "mars_modal").glob("*.py")}
    assert local <= files and "/root/mars_modal/records.py" in files


def test_image_installs_the_pinned_toolchain():
    pinned = tomllib.loads((REPO_ROOT / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    assert image.toolchain_channel() == pinned
    assert image.toolchain_channel(REPO_ROOT / "no-such-dir") == "stable"
    assert "--example comprehensive_benchmark" in image.CARGO_BUILD
    assert "--release" in image.CARGO_BUILD


def test_image_builds_the_embedded_engine_with_cuda():
    # The feature the build enables exists in the engine crate and forwards to llama.cpp's CUDA.
    manifest = tomllib.loads((REPO_ROOT / "crates/mars-llama/Cargo.toml").read_text())
    assert manifest["features"]["cuda"] == ["llama-cpp-2/cuda"]
    assert "--features mars-llama/cuda" in image.CARGO_BUILD
    assert "-p mars-llama" in image.CARGO_BUILD
    assert image.CUDA_IMAGE.startswith("nvidia/cuda:") and "-devel-" in image.CUDA_IMAGE
    assert all(arch.isdigit() for arch in image.CUDA_ARCHITECTURES.split(";"))
