#!/usr/bin/env bash
# Everything a fresh machine needs before the README's test command, idempotent and fast when
# already done: system packages (cmake, clang/libclang, a C++ toolchain), llama.cpp's
# llama-server (the real OpenAI-compatible peer of the live tests; built once and cached outside
# the clone), and the Python packages of the Modal runner's tests. The default model is fetched
# by the tests themselves on first use (mars_llama::model), into ~/.cache/mars/models.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh
scripts/build-llama-server.sh >/dev/null
python3 -m pip install --quiet --disable-pip-version-check -r requirements-modal.txt pytest
