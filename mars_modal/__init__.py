"""The mars benchmark runner behind `modal_benchmark.py`: the benchmark binary on Modal's GPUs
(one container per model) or on this machine (`--local`), and the per-model reports merged.

Modules, by job:

- `records`: the typed records every other module passes around (jobs, options, results) and
  the fields of the binary's JSON report that the runner reads.
- `jobs`: model specs, the binary's command line, running it and collecting its output or a
  structured failure, and talking to Ollama.
- `image` and `app`: the Modal image, volume and app, the GPU function and `modal run`'s entry
  point. Importing them never contacts Modal.
- `merge` and `markdown`: the merged JSON and its cross-model recommendations, the merged
  Markdown, and writing the result files.
- `local`: `python modal_benchmark.py --local` and the `--help` of both entry points.

Every number and interval comes from the binary's report (`mars::eval::report`); this package
merges reports and formats them, and computes no statistic of its own.
"""
