"""The Modal image: CUDA devel base, build tools, the pinned Rust toolchain, Ollama, and the
benchmark binary built in release with the embedded engine's CUDA backend. Defining it reads
local files but contacts nothing; Modal builds it on the first `modal run`."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import modal

REPO_ROOT = Path(__file__).resolve().parent.parent
REMOTE_REPO = "/mars"

# llama.cpp's CUDA backend needs nvcc and the CUDA libraries at build time (a devel image); the
# driver comes from Modal's GPU host at run time. CUDA code is compiled for these GPU
# generations (T4, A100, A10G, L4/L40S, H100); fewer build faster.
CUDA_IMAGE = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
CUDA_ARCHITECTURES = os.environ.get("MARS_MODAL_CUDA_ARCHS", "75;80;86;89;90")
APT_PACKAGES = [
    "build-essential", "cmake", "clang", "libclang-dev", "curl", "ca-certificates", "git",
    "pkg-config", "util-linux", "zstd", "pciutils",
]
# Paths of this repository that the Rust build does not need: leaving them out keeps the image's
# cached build valid while the Python side changes, and keeps target/ and models out of it. The
# runner's own package reaches the container separately (Modal mounts the package that defines
# the function).
BUILD_IGNORE = [
    ".git", "target", "**/target", "**/__pycache__", ".pytest_cache", ".venv", "venv",
    "**/*.gguf", "modal_benchmark.py", "mars_modal", "requirements-modal.txt", "tests/python",
    "MODAL_BENCHMARK_*", "NOTES-*.md",
]
CARGO_BUILD = ("cargo build --release -p mars -p mars-llama --features mars-llama/cuda "
               "--example comprehensive_benchmark")


def toolchain_channel(root: Path = REPO_ROOT) -> str:
    """The Rust channel pinned by rust-toolchain.toml. Inside a container the file is absent and
    the image is not rebuilt there, so any value will do."""
    try:
        channel = tomllib.loads((root / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "stable"
    return str(channel)


def build_image() -> modal.Image:
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
