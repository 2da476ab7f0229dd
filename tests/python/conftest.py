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
