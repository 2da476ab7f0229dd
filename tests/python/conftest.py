"""Shared helpers of the Python tests: the repository on sys.path, the benchmark binary."""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

BINARY_CANDIDATES = [
    REPO_ROOT / "target/release/examples/comprehensive_benchmark",
    REPO_ROOT / "target/debug/examples/comprehensive_benchmark",
]


def find_binary() -> Path | None:
    """MARS_BENCHMARK_BINARY, else the release build, else the debug build `cargo test` leaves."""
    named = os.environ.get("MARS_BENCHMARK_BINARY")
    if named:
        return Path(named)
    return next((p for p in BINARY_CANDIDATES if p.is_file()), None)


@pytest.fixture(scope="session")
def binary() -> Path:
    """The real benchmark binary. Missing, the test is skipped, unless MARS_REQUIRE_BINARY=1 or
    CI=true (CI runs `cargo test --workspace` first, which builds it), where a missing binary is a
    failure."""
    found = find_binary()
    if found is None or not found.is_file():
        message = ("the benchmark binary is not built (cargo build --release --example "
                   "comprehensive_benchmark, or cargo test)")
        if os.environ.get("MARS_REQUIRE_BINARY") == "1" or os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


# `mars serve` tests (test_server_*.py): the binary, a recording fake upstream, servers.

OPENAI_MODELS = ["gpt-fake", "gpt-fake-mini", "moa-gpt-fake-mini"]
OLLAMA_MODELS = ["llama-fake:latest", "qwen-fake:0.5b"]


@pytest.fixture(scope="session")
def mars_bin() -> Path:
    """`mars` (MARS_BIN, else target/debug/mars). Missing, the test fails: the server's tests
    are part of the suite whenever it runs."""
    from fake_upstream.mars_process import BUILD_HINT, find_mars_binary

    found = find_mars_binary(REPO_ROOT)
    if not found.is_file():
        pytest.fail(f"the `mars` binary is missing at {found}: {BUILD_HINT}")
    return found


@pytest.fixture(scope="session")
def upstream():
    """One fake upstream for the session, serving OPENAI_MODELS on its OpenAI routes and
    OLLAMA_MODELS on its Ollama routes."""
    from fake_upstream import FakeUpstream

    server = FakeUpstream(OPENAI_MODELS, OLLAMA_MODELS)
    yield server
    server.close()


@pytest.fixture
def fake(upstream):
    """The session's fake upstream, its recording cleared and its gate open."""
    upstream.reset()
    yield upstream
    upstream.release()


@pytest.fixture
def start_mars(mars_bin, upstream):
    """Starts `mars serve` with both of the fake's wires and extra arguments; every server
    started is stopped after the test."""
    from fake_upstream.mars_process import MarsServer

    started = []

    def start(*args: str, env: dict | None = None) -> MarsServer:
        server = MarsServer(mars_bin, "--openai", upstream.openai_url, "--ollama",
                            upstream.ollama_url, *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def mars(mars_bin, upstream):
    """One `mars serve` for the session, in front of both of the fake's wires."""
    from fake_upstream.mars_process import MarsServer

    server = MarsServer(mars_bin, "--openai", upstream.openai_url, "--ollama",
                        upstream.ollama_url)
    yield server
    server.stop()
