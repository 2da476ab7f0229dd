"""Modal cloud runner for the mars benchmark: one GPU container per model, reports merged.

    modal run modal_benchmark.py --models tinyllama,qwen2.5-coder:1.5b --strategies seed
    python modal_benchmark.py --local --models embedded:smollm2-135m --strategies baseline
    python modal_benchmark.py --help

Every container runs the real benchmark binary (`comprehensive_benchmark`, built into the image
from this repository) against one model: an Ollama model pulled into a `modal.Volume`, or the
embedded llama.cpp engine with a model preset or a GGUF file. The per-model Markdown and SVG
plot are rendered by the binary itself; the runner merges the JSON reports into
MODAL_BENCHMARK_RESULTS.md and .json. `--local` runs the same pipeline on this machine without
Modal. The code is the package `mars_modal/` beside this file; see MODAL_BENCHMARK_SETUP.md.

`modal run` finds the app and its entry point here; importing this file never contacts Modal.
"""

import sys

from mars_modal.app import app, main, run_benchmark  # noqa: F401  (what `modal run` looks up)
from mars_modal.local import main as local_main

if __name__ == "__main__":
    sys.exit(local_main(sys.argv[1:]))
